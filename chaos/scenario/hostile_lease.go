package scenario

import (
	"github.com/harbormaster/harbormaster/lease"
)

// The only part of hostile-lan that knows the lease datagram format
// (lease/wire.go): how the attacker forges a renewal and how it reads the
// answer. The captured datagrams it replays are sent verbatim and need no
// knowledge of the format.

// forgeRenewal is a renewal request for node at generation gen with a TTL
// of ttlMs, as an attacker who knows the format but holds no key of the
// cluster can make it.
func forgeRenewal(nonce uint64, node string, gen uint64, ttlMs uint32) ([]byte, error) {
	return lease.MarshalRequest(lease.Request{Nonce: nonce, Node: node, Gen: gen, TTLMs: ttlMs})
}

// leaseGranted reports whether datagram b, received by the attacker, is a
// reply granting a renewal: proof that a node accepted one the attacker
// sent (forged or replayed).
func leaseGranted(b []byte) bool {
	m, err := lease.Unmarshal(b)
	if err != nil {
		return false
	}
	r, ok := m.(*lease.Reply)
	return ok && r.Verdict == lease.Granted
}
