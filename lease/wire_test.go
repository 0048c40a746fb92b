package lease

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
)

var (
	keyA = bytes.Repeat([]byte{0xa5}, KeySize)
	keyB = bytes.Repeat([]byte{0x5b}, KeySize)
)

// keysAB holds key 1 (keyA) and key 2 (keyB).
func keysAB(id uint32) []byte {
	switch id {
	case 1:
		return keyA
	case 2:
		return keyB
	}
	return nil
}

func TestWireRoundTrip(t *testing.T) {
	req := Request{KeyID: 2, Nonce: 1<<63 + 5, Seq: 7<<40 | 9, Node: "n1", To: "n2", Gen: 1795646488408358850, TTLMs: 500}
	b, err := MarshalRequest(req, keyB)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b, keysAB)
	if err != nil || !reflect.DeepEqual(got, &req) {
		t.Fatalf("request round trip: got %+v, %v; want %+v", got, err, req)
	}
	rep := Reply{KeyID: 1, Nonce: 7, Granter: "node-three", Verdict: Stale, Gen: 42}
	b, err = MarshalReply(rep, keyA)
	if err != nil {
		t.Fatal(err)
	}
	got, err = Unmarshal(b, keysAB)
	if err != nil || !reflect.DeepEqual(got, &rep) {
		t.Fatalf("reply round trip: got %+v, %v; want %+v", got, err, rep)
	}
}

func TestWireRejects(t *testing.T) {
	good, _ := MarshalRequest(Request{KeyID: 1, Nonce: 1, Seq: 1, Node: "n1", To: "n2", Gen: 2, TTLMs: 3}, keyA)
	bad := func(mut func([]byte) []byte) []byte { return mut(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"empty":          nil,
		"wrong magic":    bad(func(b []byte) []byte { b[0] = 'X'; return b }),
		"wrong version":  bad(func(b []byte) []byte { b[4] = 9; return b }),
		"version 1":      bad(func(b []byte) []byte { b[4] = 1; return b }),
		"unknown type":   bad(func(b []byte) []byte { b[5] = 7; return b }),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(append([]byte(nil), good...), 'x'),
	} {
		if _, err := Unmarshal(b, keysAB); err == nil {
			t.Errorf("%s: Unmarshal accepted it", name)
		}
	}
	if _, err := Unmarshal([]byte("GET / HTTP/1.1\r\n\r\n"), keysAB); !errors.Is(err, ErrNotLease) {
		t.Errorf("foreign datagram: err %v, want ErrNotLease", err)
	}
	if _, err := MarshalRequest(Request{Node: ""}, keyA); err == nil {
		t.Error("empty node id accepted")
	}
	if _, err := MarshalRequest(Request{Node: "n1", To: "n2"}, keyA[:16]); err == nil {
		t.Error("a 16-byte key accepted")
	}
	if _, err := MarshalReply(Reply{Granter: "n2", Verdict: 9}, keyA); err == nil {
		t.Error("unknown verdict marshalled")
	}
}

// Every byte of a datagram is covered by the MAC: a forger who flips any
// of them (generation, ttl, node, sequence number, key id) is refused.
func TestWireMACCoversEveryByte(t *testing.T) {
	good, _ := MarshalRequest(Request{KeyID: 1, Nonce: 1, Seq: 5, Node: "n1", To: "n2", Gen: 2, TTLMs: 500}, keyA)
	for i := 6; i < len(good); i++ { // magic and version fail earlier
		b := append([]byte(nil), good...)
		b[i] ^= 0x01
		_, err := Unmarshal(b, keysAB)
		if err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
		if i >= 10 && !errors.Is(err, ErrBadMAC) {
			t.Errorf("byte %d flipped: err %v, want ErrBadMAC", i, err)
		}
	}
}

func TestWireForgedAndWrongKey(t *testing.T) {
	// An attacker without the key: any MAC it makes up fails.
	forged, _ := MarshalRequest(Request{KeyID: 1, Nonce: 1, Seq: 1, Node: "n1", To: "n2", Gen: 1<<64 - 1, TTLMs: 600_000},
		bytes.Repeat([]byte{0}, KeySize))
	if _, err := Unmarshal(forged, keysAB); !errors.Is(err, ErrBadMAC) {
		t.Errorf("forged MAC: err %v, want ErrBadMAC", err)
	}
	// The right id with the wrong key (another cluster's key 1).
	other, _ := MarshalRequest(Request{KeyID: 1, Nonce: 1, Seq: 1, Node: "n1", To: "n2", Gen: 2, TTLMs: 500}, keyB)
	if _, err := Unmarshal(other, keysAB); !errors.Is(err, ErrBadMAC) {
		t.Errorf("wrong key: err %v, want ErrBadMAC", err)
	}
	// A key id the receiver does not hold, and a receiver with no key.
	unknown, _ := MarshalRequest(Request{KeyID: 3, Nonce: 1, Seq: 1, Node: "n1", To: "n2", Gen: 2, TTLMs: 500}, keyA)
	if _, err := Unmarshal(unknown, keysAB); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown key id: err %v, want ErrUnknownKey", err)
	}
	good, _ := MarshalRequest(Request{KeyID: 1, Nonce: 1, Seq: 1, Node: "n1", To: "n2", Gen: 2, TTLMs: 500}, keyA)
	if _, err := Unmarshal(good, func(uint32) []byte { return nil }); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("no key: err %v, want ErrUnknownKey", err)
	}
	// A request replayed as a reply: the type byte is MAC'd.
	b := append([]byte(nil), good...)
	b[5] = typeReply
	if _, err := Unmarshal(b, keysAB); !errors.Is(err, ErrBadMAC) {
		t.Errorf("type changed: err %v, want ErrBadMAC", err)
	}
}

func TestReplayWindow(t *testing.T) {
	var w ReplayWindow
	if w.Accept(0) {
		t.Fatal("sequence number 0 accepted")
	}
	for _, s := range []uint64{10, 11, 12} {
		if !w.Accept(s) {
			t.Fatalf("fresh %d refused", s)
		}
	}
	if w.Accept(11) || w.Accept(12) {
		t.Fatal("a replayed sequence number accepted")
	}
	if !w.Accept(5) { // late, within the window, not seen
		t.Fatal("a late unseen sequence number within the window refused")
	}
	if w.Accept(5) {
		t.Fatal("a late sequence number accepted twice")
	}
	if !w.Accept(100) {
		t.Fatal("a jump ahead refused")
	}
	if w.Accept(100 - WindowSize) {
		t.Fatal("a sequence number below the window accepted")
	}
	if !w.Accept(100 - WindowSize + 1) {
		t.Fatal("the lowest sequence number within the window refused")
	}
	if w.Accept(12) {
		t.Fatal("an old sequence number accepted after the window moved on")
	}
	// A restart's sequence numbers (boot << 40) are above every earlier one.
	if !w.Accept(2<<40|1) || w.Accept(1<<40|1<<39) {
		t.Fatal("boot ordering")
	}
}

// FuzzLeaseWire: decoding arbitrary bytes never panics, and a datagram
// that verifies re-encodes to the same bytes (there is one encoding of each
// datagram, so nothing that verifies can mean two things).
func FuzzLeaseWire(f *testing.F) {
	req, _ := MarshalRequest(Request{KeyID: 1, Nonce: 3, Seq: 1<<40 | 1, Node: "n1", To: "n2", Gen: 1795646488408358850, TTLMs: 500}, keyA)
	rep, _ := MarshalReply(Reply{KeyID: 2, Nonce: 3, Granter: "n2", Verdict: Granted, Gen: 1795646488408358850}, keyB)
	f.Add(req)
	f.Add(rep)
	f.Add([]byte("HMLS"))
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := Unmarshal(b, keysAB)
		if err != nil {
			if msg != nil {
				t.Fatalf("Unmarshal returned %+v with error %v", msg, err)
			}
			return
		}
		var again []byte
		switch m := msg.(type) {
		case *Request:
			again, err = MarshalRequest(*m, keysAB(m.KeyID))
		case *Reply:
			again, err = MarshalReply(*m, keysAB(m.KeyID))
		default:
			t.Fatalf("Unmarshal returned %T", msg)
		}
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encode of %+v: %x, %v; want %x", msg, again, err, b)
		}
	})
}

// The cached keyed states tag exactly as a fresh HMAC does, for more keys
// than the cache keeps, interleaved, from many goroutines at once.
func TestMACCacheMatchesAFreshHMAC(t *testing.T) {
	keys := make([][]byte, maxMACKeys+3)
	for i := range keys {
		keys[i] = bytes.Repeat([]byte{byte(i + 1)}, KeySize)
	}
	fresh := func(key, msg []byte) []byte {
		h := hmac.New(sha256.New, key)
		h.Write(msg)
		return h.Sum(nil)[:MACSize]
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := keys[(g+i)%len(keys)]
				msg := []byte(fmt.Sprintf("datagram %d of %d", i, g))
				if got, want := mac(key, msg), fresh(key, msg); !bytes.Equal(got, want) {
					select {
					case errs <- fmt.Sprintf("key %d, %q: tag %x, want %x", (g+i)%len(keys), msg, got, want):
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	macs.mu.Lock()
	n := len(macs.pools)
	macs.mu.Unlock()
	if n > maxMACKeys {
		t.Fatalf("cache holds %d keys, want at most %d", n, maxMACKeys)
	}
}
