package lease

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The datagram format of lease renewals. Renewals travel as UDP datagrams,
// not over a TCP stream: under packet loss a stream stalls for TCP's
// retransmission timeout (200 ms at least, doubling), longer than a lease
// renewal may wait; independent datagrams retried every few tens of
// milliseconds get through. Big-endian:
//
//	request: "HMLS" | version 1 | type 1 | nonce u64 | gen u64 | ttl_ms u32 | len u8 | node
//	reply:   "HMLS" | version 1 | type 2 | nonce u64 | gen u64 | verdict u8 | len u8 | granter
const (
	wireMagic   = "HMLS"
	wireVersion = 1
	typeRenew   = 1
	typeReply   = 2
	// MaxDatagram bounds a lease datagram.
	MaxDatagram = 4 + 2 + 8 + 8 + 4 + 1 + 255
)

// Request is a renewal request on the wire.
type Request struct {
	Nonce uint64
	Node  string
	Gen   uint64
	TTLMs uint32
}

// Reply answers a Request with the same nonce.
type Reply struct {
	Nonce   uint64
	Granter string
	Verdict Verdict
	Gen     uint64
}

// ErrNotLease is returned for a datagram that is not a lease datagram.
var ErrNotLease = errors.New("not a harbormaster lease datagram")

func header(t byte, nonce uint64) []byte {
	b := make([]byte, 0, MaxDatagram)
	b = append(b, wireMagic...)
	b = append(b, wireVersion, t)
	return binary.BigEndian.AppendUint64(b, nonce)
}

// MarshalRequest encodes r; the node id must be 1-255 bytes.
func MarshalRequest(r Request) ([]byte, error) {
	if len(r.Node) == 0 || len(r.Node) > 255 {
		return nil, fmt.Errorf("lease request: node id of %d bytes", len(r.Node))
	}
	b := header(typeRenew, r.Nonce)
	b = binary.BigEndian.AppendUint64(b, r.Gen)
	b = binary.BigEndian.AppendUint32(b, r.TTLMs)
	b = append(b, byte(len(r.Node)))
	return append(b, r.Node...), nil
}

// MarshalReply encodes r.
func MarshalReply(r Reply) ([]byte, error) {
	if len(r.Granter) == 0 || len(r.Granter) > 255 {
		return nil, fmt.Errorf("lease reply: granter id of %d bytes", len(r.Granter))
	}
	b := header(typeReply, r.Nonce)
	b = binary.BigEndian.AppendUint64(b, r.Gen)
	b = append(b, byte(r.Verdict), byte(len(r.Granter)))
	return append(b, r.Granter...), nil
}

// Unmarshal decodes a datagram into a *Request or a *Reply.
func Unmarshal(b []byte) (any, error) {
	if len(b) < 14 || string(b[:4]) != wireMagic {
		return nil, ErrNotLease
	}
	if b[4] != wireVersion {
		return nil, fmt.Errorf("lease datagram version %d: this agent speaks %d", b[4], wireVersion)
	}
	t, nonce, rest := b[5], binary.BigEndian.Uint64(b[6:14]), b[14:]
	str := func(p []byte) (string, error) {
		if len(p) < 1 || int(p[0]) != len(p)-1 || p[0] == 0 {
			return "", errors.New("lease datagram: bad id length")
		}
		return string(p[1:]), nil
	}
	switch t {
	case typeRenew:
		if len(rest) < 13 {
			return nil, errors.New("lease request: too short")
		}
		node, err := str(rest[12:])
		if err != nil {
			return nil, err
		}
		return &Request{Nonce: nonce, Gen: binary.BigEndian.Uint64(rest), TTLMs: binary.BigEndian.Uint32(rest[8:]), Node: node}, nil
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
		return &Reply{Nonce: nonce, Gen: binary.BigEndian.Uint64(rest), Verdict: v, Granter: granter}, nil
	}
	return nil, fmt.Errorf("lease datagram: type %d", t)
}
