package scenario

import (
	"crypto/rand"

	"github.com/harbormaster/harbormaster/lease"
)

// The only part of hostile-lan that knows the lease datagram format
// (lease/wire.go): how the attacker forges a renewal and how it reads the
// answer. The captured datagrams it replays are sent verbatim and need no
// knowledge of the format.

// forgeRenewal is a renewal request for node at generation gen with a TTL
// of ttlMs, as an attacker who knows the format but holds no key of the
// cluster can make it: the current key id (1, the first key), a fresh
// sequence number, and a MAC under a key of its own.
func forgeRenewal(nonce uint64, node string, gen uint64, ttlMs uint32) ([]byte, error) {
	key := make([]byte, lease.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return lease.MarshalRequest(lease.Request{KeyID: 1, Nonce: nonce, Seq: 1<<62 | nonce&(1<<40-1), Node: node, To: "n1",
		Gen: gen, TTLMs: ttlMs}, key)
}

// leaseGranted reports whether datagram b, received by the attacker, is a
// reply granting a renewal: proof that a node accepted one the attacker
// sent (forged or replayed). The attacker cannot verify the MAC; a node
// answers only requests it admitted, so the header says enough.
func leaseGranted(b []byte) bool {
	// "HMLS" | version 2 | type 2 (reply) | key_id u32 | nonce u64 | gen u64 | verdict u8 ...
	const verdictAt = 4 + 1 + 1 + 4 + 8 + 8
	if len(b) < verdictAt+1+lease.MACSize || string(b[:4]) != "HMLS" || b[4] != 2 || b[5] != 2 {
		return false
	}
	return lease.Verdict(b[verdictAt]) == lease.Granted
}
