package scenario

import (
	"bytes"
	"errors"
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
	// Well-formed: it gets as far as the MAC check under the cluster's key
	// id 1, and no further.
	clusterKey := bytes.Repeat([]byte{9}, lease.KeySize)
	if _, err := lease.Unmarshal(b, func(uint32) []byte { return clusterKey }); !errors.Is(err, lease.ErrBadMAC) {
		t.Fatalf("a forged renewal decoded with %v, want ErrBadMAC", err)
	}
}

func TestLeaseGranted(t *testing.T) {
	reply := func(v lease.Verdict) []byte {
		b, err := lease.MarshalReply(lease.Reply{KeyID: 1, Nonce: 1, Granter: "n2", Verdict: v, Gen: 5}, bytes.Repeat([]byte{9}, lease.KeySize))
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
