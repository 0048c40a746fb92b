package leasing

import "testing"

func TestPeerWatchReportsAMemberAnsweringAgain(t *testing.T) {
	ms := []Member{{ID: "n1", APIAddr: "a1"}, {ID: "n2", APIAddr: "a2"}, {ID: "n3"}}
	var p peerWatch
	if p.note(ms, map[string]bool{"n1": true, "n2": true}) {
		t.Fatal("first round: nobody was down before, so nobody is back")
	}
	if p.note(ms, map[string]bool{"n1": true}) {
		t.Fatal("n2 stopped answering: not a return")
	}
	if !p.note(ms, map[string]bool{"n1": true, "n2": true}) {
		t.Fatal("n2 answers again: want back = true")
	}
	if p.note(ms, map[string]bool{"n1": true, "n2": true}) {
		t.Fatal("n2 answered twice in a row: not a return")
	}
	// n3 never registered an API address: its silence is not a partition.
	p.note(ms, map[string]bool{"n1": true, "n2": true})
	if p.note(ms, map[string]bool{"n1": true, "n2": true, "n3": true}) {
		t.Fatal("n3 has no API address; its first answer is not a return")
	}
}
