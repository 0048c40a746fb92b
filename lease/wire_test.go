package lease

import (
	"errors"
	"reflect"
	"testing"
)

func TestWireRoundTrip(t *testing.T) {
	req := Request{Nonce: 1<<63 + 5, Node: "n1", Gen: 1795646488408358850, TTLMs: 500}
	b, err := MarshalRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil || !reflect.DeepEqual(got, &req) {
		t.Fatalf("request round trip: got %+v, %v; want %+v", got, err, req)
	}
	rep := Reply{Nonce: 7, Granter: "node-three", Verdict: Stale, Gen: 42}
	b, err = MarshalReply(rep)
	if err != nil {
		t.Fatal(err)
	}
	got, err = Unmarshal(b)
	if err != nil || !reflect.DeepEqual(got, &rep) {
		t.Fatalf("reply round trip: got %+v, %v; want %+v", got, err, rep)
	}
}

func TestWireRejects(t *testing.T) {
	good, _ := MarshalRequest(Request{Nonce: 1, Node: "n1", Gen: 2, TTLMs: 3})
	bad := func(mut func([]byte) []byte) []byte { return mut(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"empty":          nil,
		"wrong magic":    bad(func(b []byte) []byte { b[0] = 'X'; return b }),
		"wrong version":  bad(func(b []byte) []byte { b[4] = 9; return b }),
		"unknown type":   bad(func(b []byte) []byte { b[5] = 7; return b }),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(append([]byte(nil), good...), 'x'),
	} {
		if _, err := Unmarshal(b); err == nil {
			t.Errorf("%s: Unmarshal accepted it", name)
		}
	}
	if _, err := Unmarshal([]byte("GET / HTTP/1.1\r\n\r\n")); !errors.Is(err, ErrNotLease) {
		t.Errorf("foreign datagram: err %v, want ErrNotLease", err)
	}
	if _, err := MarshalRequest(Request{Node: ""}); err == nil {
		t.Error("empty node id accepted")
	}
	rep, _ := MarshalReply(Reply{Nonce: 1, Granter: "n2", Verdict: Granted, Gen: 1})
	rep[22] = 9 // verdict byte
	if _, err := Unmarshal(rep); err == nil {
		t.Error("unknown verdict accepted")
	}
}
