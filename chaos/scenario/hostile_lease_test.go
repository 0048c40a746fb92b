package scenario

import (
	"math"
	"testing"

	"github.com/harbormaster/harbormaster/lease"
)

// The wire-format half of hostile-lan: its forged datagrams are what the
// agents' lease listener decodes, and its reading of replies matches
// theirs.

func TestForgeRenewal(t *testing.T) {
	b, err := forgeRenewal(7, "n1", math.MaxUint64, 600_000)
	if err != nil {
		t.Fatal(err)
	}
	m, err := lease.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := m.(*lease.Request)
	if !ok || r.Node != "n1" || r.Gen != math.MaxUint64 || r.TTLMs != 600_000 || r.Nonce != 7 {
		t.Fatalf("decoded %#v", m)
	}
}

func TestLeaseGranted(t *testing.T) {
	reply := func(v lease.Verdict) []byte {
		b, err := lease.MarshalReply(lease.Reply{Nonce: 1, Granter: "n2", Verdict: v, Gen: 5})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	req, err := forgeRenewal(1, "n1", 5, 500)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		b    []byte
		want bool
	}{
		"granted": {reply(lease.Granted), true},
		"stale":   {reply(lease.Stale), false},
		"lapsed":  {reply(lease.Lapsed), false},
		"request": {req, false},
		"garbage": {[]byte("HMLS"), false},
	} {
		if got := leaseGranted(c.b); got != c.want {
			t.Errorf("%s: leaseGranted = %v", name, got)
		}
	}
}
