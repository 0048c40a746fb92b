package fsm

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"testing"
)

// fuzzBase is a state the fuzz target applies commands to, twice over: A
// and B are independent copies restored from the same snapshot bytes.
type fuzzBase struct {
	name string
	snap []byte // WriteSnapshot of the state, to check Apply left it alone
	a, b *State
}

// fuzzBases returns the states FuzzCommandDecode applies to: the empty
// state, the state after the golden commands (no nodes, a released role),
// the golden snapshot's (two nodes, both roles held, one releasing), and
// that one with n2 registered again with a check and a Redis that reported
// (so that check updates and Redis reports apply).
func fuzzBases(f *testing.F, golden [][]byte) []fuzzBase {
	f.Helper()
	afterGolden := NewState()
	for i, b := range golden {
		c, err := Decode(b)
		if err != nil {
			f.Fatalf("%s:%d: %v", goldenCommandsFile, i+1, err)
		}
		if afterGolden, err = Apply(afterGolden, afterGolden.Index+1, c); err != nil {
			f.Fatalf("%s:%d: %v", goldenCommandsFile, i+1, err)
		}
	}
	snapDoc, err := os.ReadFile(goldenSnapshotFile)
	if err != nil {
		f.Fatal(err)
	}
	fromSnapshot, err := ReadSnapshot(bytes.NewReader(snapDoc))
	if err != nil {
		f.Fatalf("%s: %v", goldenSnapshotFile, err)
	}
	withChecks := mustApply(f, fromSnapshot,
		&RegisterNode{Node: "n2", RaftAddr: "10.0.0.2:7000", APIAddr: "10.0.0.2:7001", Voter: true, VIP: true, LeaseTTLMillis: 3000,
			Time: t0 + 20, Checks: []string{"registry-pull", "http"}, Services: []string{"db", "web"}, Redis: "10.0.0.2:6379"},
		&CheckUpdate{Node: "n2", Check: "http", Passing: true, Time: t0 + 21},
		&RedisReport{Node: "n2", Role: RedisMaster, Offset: 10, ReplID: "r1", RunID: "u1", Time: t0 + 21},
	)
	var bases []fuzzBase
	for _, st := range []struct {
		name string
		st   *State
	}{{"empty", NewState()}, {"after golden commands", afterGolden}, {"golden snapshot", fromSnapshot}, {"with checks", withChecks}} {
		var b bytes.Buffer
		if err := WriteSnapshot(&b, st.st); err != nil {
			f.Fatal(err)
		}
		bases = append(bases, fuzzBase{name: st.name, snap: b.Bytes(), a: deepCopy(f, st.st), b: deepCopy(f, st.st)})
	}
	return bases
}

// FuzzCommandDecode feeds arbitrary bytes to Decode, as a log entry or a
// Propose request from another node. Decode and Validate never panic. A
// command that decodes applies to each base state without a panic (Apply
// runs on every decoded entry, valid or not: a committed entry is applied
// whatever it holds), deterministically (two copies of the state give equal
// results), without modifying the state, and to a state that survives a
// snapshot and restore unchanged. A command that validates encodes, and
// its encoding decodes and encodes to the same bytes.
//
// Seeds: every line of testdata/golden/commands-v1.jsonl, plus the files
// under testdata/fuzz/FuzzCommandDecode.
func FuzzCommandDecode(f *testing.F) {
	golden, err := os.ReadFile(goldenCommandsFile)
	if err != nil {
		f.Fatal(err)
	}
	logData, err := parseGoldenCommands(golden)
	if err != nil {
		f.Fatalf("%s: %v", goldenCommandsFile, err)
	}
	for _, b := range logData {
		f.Add(b)
	}
	bases := fuzzBases(f, logData)
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := Decode(data)
		if err != nil {
			var unk *UnknownCommandError
			if cmd != nil {
				t.Fatalf("Decode: got %#v and error %v, want nil with an error", cmd, err)
			}
			if errors.As(err, &unk) && unk.Type&IgnoreUnknownFlag != 0 {
				t.Fatalf("Decode: %v names a type with the ignore flag; the flag is reported without it", err)
			}
			return
		}
		if cmd.Type() != CommandType(data[0])&^IgnoreUnknownFlag {
			t.Fatalf("Decode of type byte %#x gave a %s", data[0], cmd.Type())
		}
		if err := cmd.Validate(); err == nil {
			checkEncoding(t, cmd)
		}
		for _, base := range bases {
			index := base.a.Index + 1
			nextA, errA := Apply(base.a, index, cmd)
			nextB, errB := Apply(base.b, index, cmd)
			var rej *RejectedError
			if errA != nil && !errors.As(errA, &rej) {
				t.Fatalf("%s: Apply(%#v): got %T %v, want nil or a *RejectedError", base.name, cmd, errA, errA)
			}
			if !reflect.DeepEqual(nextA, nextB) || !reflect.DeepEqual(errA, errB) {
				t.Fatalf("%s: Apply(%#v) to two copies of the state differs:\n got %+v, %v\nand %+v, %v",
					base.name, cmd, nextA, errA, nextB, errB)
			}
			if nextA.Index != index {
				t.Fatalf("%s: Apply at index %d: state at index %d", base.name, index, nextA.Index)
			}
			var after bytes.Buffer
			if err := WriteSnapshot(&after, base.a); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after.Bytes(), base.snap) {
				t.Fatalf("%s: Apply(%#v) modified the state it was given:\n got %s\nwant %s", base.name, cmd, after.Bytes(), base.snap)
			}
			if restored := deepCopy(t, nextA); !reflect.DeepEqual(restored, nextA) {
				t.Fatalf("%s: after Apply(%#v), a snapshot restores a different state:\n got %+v\nwant %+v",
					base.name, cmd, restored, nextA)
			}
		}
	})
}

// checkEncoding checks that a valid command encodes (or is refused as too
// large) and that its encoding is a fixed point of Decode and Encode.
func checkEncoding(t *testing.T, cmd Command) {
	t.Helper()
	b, err := Encode(cmd)
	if err != nil {
		if len(b) == 0 && bytes.Contains([]byte(err.Error()), []byte("command limit")) {
			return
		}
		t.Fatalf("Encode(%#v) of a valid command: %v", cmd, err)
	}
	again, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode(%#v)) = %v; encoding %q", cmd, err, b)
	}
	if b2, err := Encode(again); err != nil || !bytes.Equal(b2, b) {
		t.Fatalf("Encode(Decode(%q)) = %q, %v; want the same bytes", b, b2, err)
	}
}
