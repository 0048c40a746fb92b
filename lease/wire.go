package lease

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// The datagram format of lease renewals. Renewals travel as UDP datagrams,
// not over a TCP stream: under packet loss a stream stalls for TCP's
// retransmission timeout (200 ms at least, doubling), longer than a lease
// renewal may wait; independent datagrams retried every few tens of
// milliseconds get through. Big-endian:
//
//	request: "HMLS" | version 2 | type 1 | key_id u32 | nonce u64 | seq u64 | gen u64 | ttl_ms u32 | len u8 | node    | len u8 | to | mac [16]
//	reply:   "HMLS" | version 2 | type 2 | key_id u32 | nonce u64 |           gen u64 | verdict u8 | len u8 | granter | mac [16]
//
// mac is HMAC-SHA256 under the cluster lease key key_id (fsm.LeaseKey),
// truncated to 16 bytes, over every byte before it. A request's seq is the
// sender's sequence number (the receiver's replay window); a reply carries
// the nonce of the request it answers and is MAC'd under the request's key.
// A request names its receiver (to): a renewal captured on its way to one
// voter and replayed to another, whose window has not seen its sequence
// number, is refused there.
const (
	wireMagic   = "HMLS"
	wireVersion = 2
	typeRenew   = 1
	typeReply   = 2
	// MACSize is the length of the truncated HMAC-SHA256 tag.
	MACSize = 16
	// headerSize: magic, version, type, key id, nonce.
	headerSize = 4 + 1 + 1 + 4 + 8
	// MaxDatagram bounds a lease datagram.
	MaxDatagram = headerSize + 8 + 8 + 4 + 1 + 255 + 1 + 255 + MACSize
	// KeySize is the length of a lease key.
	KeySize = 32
)

// Request is a renewal request on the wire.
type Request struct {
	// KeyID names the lease key the request is MAC'd with.
	KeyID uint32
	Nonce uint64
	// Seq is the sender's sequence number: strictly increasing over the
	// sender's lifetime, restarts included (ReplayWindow).
	Seq  uint64
	Node string
	// To is the receiver the sender addressed it to.
	To    string
	Gen   uint64
	TTLMs uint32
}

// Reply answers a Request with the same nonce, MAC'd with the request's key.
type Reply struct {
	KeyID   uint32
	Nonce   uint64
	Granter string
	Verdict Verdict
	Gen     uint64
}

// Errors of Unmarshal callers branch on (a receiver counts drops by reason).
var (
	// ErrNotLease: not a harbormaster lease datagram at all.
	ErrNotLease = errors.New("not a harbormaster lease datagram")
	// ErrUnknownKey: MAC'd with a key id the receiver does not hold (not
	// the current or previous cluster lease key, or no key yet).
	ErrUnknownKey = errors.New("lease datagram: unknown key id")
	// ErrBadMAC: the MAC does not verify (forged, corrupted, or another
	// cluster's key).
	ErrBadMAC = errors.New("lease datagram: bad MAC")
)

// Keys looks up a lease key by id; nil when the receiver does not hold it.
type Keys func(id uint32) []byte

func header(t byte, keyID uint32, nonce uint64) []byte {
	b := make([]byte, 0, MaxDatagram)
	b = append(b, wireMagic...)
	b = append(b, wireVersion, t)
	b = binary.BigEndian.AppendUint32(b, keyID)
	return binary.BigEndian.AppendUint64(b, nonce)
}

func mac(key, msg []byte) []byte {
	p := macs.pool(key)
	h := p.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	out := h.Sum(nil)[:MACSize]
	p.Put(h)
	return out
}

// macs keeps keyed HMAC states for reuse: hmac.New hashes the key into
// its pads on every call, two of the four SHA-256 blocks a lease datagram's
// tag costs, and every datagram in and out is tagged (an idle 3-voter
// cluster tags some 160 a second per node). A reused state's Reset
// restores the keyed pads without hashing them again.
var macs = &macCache{pools: map[string]*sync.Pool{}}

type macCache struct {
	mu    sync.Mutex
	pools map[string]*sync.Pool // by key; at most maxMACKeys
}

// maxMACKeys bounds the cache: a node holds the current and the previous
// lease key (fsm.LeaseKey), and a rotation adds one.
const maxMACKeys = 4

func (c *macCache) pool(key []byte) *sync.Pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pools[string(key)]
	if !ok {
		if len(c.pools) >= maxMACKeys {
			clear(c.pools)
		}
		k := bytes.Clone(key)
		p = &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}
		c.pools[string(k)] = p
	}
	return p
}

func seal(b, key []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("lease key of %d bytes, want %d", len(key), KeySize)
	}
	return append(b, mac(key, b)...), nil
}

// MarshalRequest encodes r and MACs it with key (the key named r.KeyID);
// the node id must be 1-255 bytes.
func MarshalRequest(r Request, key []byte) ([]byte, error) {
	if len(r.Node) == 0 || len(r.Node) > 255 {
		return nil, fmt.Errorf("lease request: node id of %d bytes", len(r.Node))
	}
	if len(r.To) == 0 || len(r.To) > 255 {
		return nil, fmt.Errorf("lease request: receiver id of %d bytes", len(r.To))
	}
	b := header(typeRenew, r.KeyID, r.Nonce)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, r.Gen)
	b = binary.BigEndian.AppendUint32(b, r.TTLMs)
	b = append(b, byte(len(r.Node)))
	b = append(b, r.Node...)
	b = append(b, byte(len(r.To)))
	return seal(append(b, r.To...), key)
}

// MarshalReply encodes r and MACs it with key (the key named r.KeyID).
func MarshalReply(r Reply, key []byte) ([]byte, error) {
	if len(r.Granter) == 0 || len(r.Granter) > 255 {
		return nil, fmt.Errorf("lease reply: granter id of %d bytes", len(r.Granter))
	}
	if r.Verdict > Stale {
		return nil, fmt.Errorf("lease reply: verdict %d", r.Verdict)
	}
	b := header(typeReply, r.KeyID, r.Nonce)
	b = binary.BigEndian.AppendUint64(b, r.Gen)
	b = append(b, byte(r.Verdict), byte(len(r.Granter)))
	return seal(append(b, r.Granter...), key)
}

// Unmarshal verifies a datagram's MAC with the key its header names and
// decodes it into a *Request or a *Reply. Nothing of a datagram whose MAC
// does not verify is returned.
func Unmarshal(b []byte, keys Keys) (any, error) {
	if len(b) < 6 || string(b[:4]) != wireMagic {
		return nil, ErrNotLease
	}
	if b[4] != wireVersion {
		return nil, fmt.Errorf("lease datagram version %d: this agent speaks %d", b[4], wireVersion)
	}
	if len(b) < headerSize+MACSize || len(b) > MaxDatagram {
		return nil, fmt.Errorf("lease datagram of %d bytes", len(b))
	}
	keyID := binary.BigEndian.Uint32(b[6:10])
	key := keys(keyID)
	if len(key) != KeySize {
		return nil, ErrUnknownKey
	}
	body, tag := b[:len(b)-MACSize], b[len(b)-MACSize:]
	if !hmac.Equal(tag, mac(key, body)) {
		return nil, ErrBadMAC
	}
	t, nonce, rest := b[5], binary.BigEndian.Uint64(b[10:18]), body[headerSize:]
	str := func(p []byte) (string, error) {
		if len(p) < 1 || int(p[0]) != len(p)-1 || p[0] == 0 {
			return "", errors.New("lease datagram: bad id length")
		}
		return string(p[1:]), nil
	}
	switch t {
	case typeRenew:
		if len(rest) < 21 {
			return nil, errors.New("lease request: too short")
		}
		ids := rest[20:]
		if n := int(ids[0]); 1+n >= len(ids) {
			return nil, errors.New("lease request: bad id length")
		}
		node, err := str(ids[:1+int(ids[0])])
		if err != nil {
			return nil, err
		}
		to, err := str(ids[1+int(ids[0]):])
		if err != nil {
			return nil, err
		}
		return &Request{KeyID: keyID, Nonce: nonce, Seq: binary.BigEndian.Uint64(rest), Gen: binary.BigEndian.Uint64(rest[8:]),
			TTLMs: binary.BigEndian.Uint32(rest[16:]), Node: node, To: to}, nil
	case typeReply:
		if len(rest) < 10 {
			return nil, errors.New("lease reply: too short")
		}
		v := Verdict(rest[8])
		if v > Stale {
			return nil, fmt.Errorf("lease reply: verdict %d", v)
		}
		granter, err := str(rest[9:])
		if err != nil {
			return nil, err
		}
		return &Reply{KeyID: keyID, Nonce: nonce, Gen: binary.BigEndian.Uint64(rest), Verdict: v, Granter: granter}, nil
	}
	return nil, fmt.Errorf("lease datagram: type %d", t)
}

// ReplayWindow is a receiver's memory of one sender's sequence numbers
// (RFC 4303's anti-replay window): it accepts a number above every one
// seen, or one of the WindowSize below the highest not seen yet (the
// concurrent retries of one renewal round may arrive out of order), and
// nothing else. The zero value has seen nothing; it is not safe for
// concurrent use.
type ReplayWindow struct {
	top  uint64 // highest accepted
	seen uint64 // bit i: top-i was accepted
}

// WindowSize is how far below the highest sequence number a late one is
// still accepted.
const WindowSize = 64

// Accept reports whether seq is new and records it. 0 is never accepted.
func (w *ReplayWindow) Accept(seq uint64) bool {
	switch {
	case seq == 0:
		return false
	case seq > w.top:
		if d := seq - w.top; d >= WindowSize {
			w.seen = 1
		} else {
			w.seen = w.seen<<d | 1
		}
		w.top = seq
		return true
	case w.top-seq >= WindowSize:
		return false
	}
	bit := uint64(1) << (w.top - seq)
	if w.seen&bit != 0 {
		return false
	}
	w.seen |= bit
	return true
}
