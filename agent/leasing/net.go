package leasing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/lease"
	"github.com/harbormaster/harbormaster/spec"
)

// readBackoffMax bounds the pause between reads of a failing lease socket.
const readBackoffMax = 100 * time.Millisecond

// leaseNet carries quorum-lease renewals as UDP datagrams on the API port
// (see lease/wire.go for why not gRPC). Every node answers renewals; a
// renewal is retried every eighth of the renew interval until answered
// (under 30% loss in and out, half the datagrams of a round trip are lost).
type leaseNet struct {
	self   string
	grants *lease.Grants
	filter func(from, to string) bool // Options.LeaseFilter (tests)
	log    *slog.Logger
	conn   net.PacketConn

	mu      sync.Mutex
	waiting map[uint64]chan *lease.Reply
	addrs   map[string]*net.UDPAddr
}

// newLeaseNet serves renewals on conn for the node self, answering from
// grants. filter, when set, drops the datagrams it returns true for.
func newLeaseNet(conn net.PacketConn, self string, grants *lease.Grants, filter func(from, to string) bool, log *slog.Logger) *leaseNet {
	return &leaseNet{self: self, grants: grants, filter: filter, log: log, conn: conn,
		waiting: map[uint64]chan *lease.Reply{}, addrs: map[string]*net.UDPAddr{}}
}

// dropped applies the test hook that cuts links.
func (ln *leaseNet) dropped(from, to string) bool {
	return ln.filter != nil && ln.filter(from, to)
}

// close closes the socket: serve returns.
func (ln *leaseNet) close() { _ = ln.conn.Close() }

// serve answers renewal requests and dispatches replies until the socket is
// closed (then it returns nil). A read error that persists is backed off (up
// to readBackoffMax between reads) and logged once, instead of spinning.
func (ln *leaseNet) serve() error {
	buf := make([]byte, lease.MaxDatagram+64)
	self := ln.self
	var backoff time.Duration
	for {
		n, from, err := ln.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if backoff == 0 {
				ln.log.Warn("lease socket read failed; backing off", "err", err)
			}
			backoff = min(max(2*backoff, time.Millisecond), readBackoffMax)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		msg, err := lease.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		switch m := msg.(type) {
		case *lease.Request:
			if !spec.ValidName(m.Node) || m.Gen == 0 || m.TTLMs == 0 || m.TTLMs > uint32(MaxTTL/time.Millisecond) || ln.dropped(m.Node, self) {
				continue
			}
			v, gen := ln.grants.Renew(m.Node, m.Gen, time.Duration(m.TTLMs)*time.Millisecond, time.Now())
			out, err := lease.MarshalReply(lease.Reply{Nonce: m.Nonce, Granter: self, Verdict: v, Gen: gen})
			if err == nil && !ln.dropped(self, m.Node) {
				_, _ = ln.conn.WriteTo(out, from)
			}
		case *lease.Reply:
			if ln.dropped(m.Granter, self) {
				continue
			}
			ln.mu.Lock()
			ch, ok := ln.waiting[m.Nonce]
			ln.mu.Unlock()
			if ok {
				select {
				case ch <- m:
				default:
				}
			}
		}
	}
}

func (ln *leaseNet) udpAddr(apiAddr string) (*net.UDPAddr, error) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if u, ok := ln.addrs[apiAddr]; ok {
		return u, nil
	}
	u, err := net.ResolveUDPAddr("udp", apiAddr)
	if err != nil {
		return nil, err
	}
	ln.addrs[apiAddr] = u
	return u, nil
}

// MaxTTL is the longest lease a voter grants; a request for more is
// ignored. The node config refuses a longer timing.lease.
const MaxTTL = 10 * time.Minute

// wireTTL is ttl in the request's milliseconds. It refuses what the wire's
// uint32 would wrap, or a voter would ignore, rather than ask for another
// lease than the one the node counts on.
func wireTTL(ttl time.Duration) (uint32, error) {
	if ttl < time.Millisecond || ttl > MaxTTL {
		return 0, fmt.Errorf("lease of %s is outside 1ms to %s", ttl, MaxTTL)
	}
	return uint32(ttl / time.Millisecond), nil
}

// renew asks one member to grant this node's lease and waits for its
// answer until ctx ends, sending the request again every retry.
func (ln *leaseNet) renew(ctx context.Context, m Member, gen uint64, ttl, retry time.Duration) (*lease.Reply, error) {
	to, err := ln.udpAddr(m.APIAddr)
	if err != nil {
		return nil, err
	}
	nonce := rand.Uint64()
	ch := make(chan *lease.Reply, 1)
	ln.mu.Lock()
	ln.waiting[nonce] = ch
	ln.mu.Unlock()
	defer func() {
		ln.mu.Lock()
		delete(ln.waiting, nonce)
		ln.mu.Unlock()
	}()
	self := ln.self
	ttlMs, err := wireTTL(ttl)
	if err != nil {
		return nil, err
	}
	pkt, err := lease.MarshalRequest(lease.Request{Nonce: nonce, Node: self, Gen: gen, TTLMs: ttlMs})
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(retry)
	defer tick.Stop()
	for {
		if !ln.dropped(self, m.ID) {
			_, _ = ln.conn.WriteTo(pkt, to)
		}
		select {
		case r := <-ch:
			return r, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}
