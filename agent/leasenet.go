package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/lease"
	"github.com/harbormaster/harbormaster/spec"
)

// leaseNet carries quorum-lease renewals as UDP datagrams on the API port
// (see lease/wire.go for why not gRPC). Every node answers renewals; a
// renewal is retried every eighth of the renew interval until answered
// (under 30% loss in and out, half the datagrams of a round trip are lost).
type leaseNet struct {
	a    *Agent
	conn net.PacketConn

	mu      sync.Mutex
	waiting map[uint64]chan *lease.Reply
	addrs   map[string]*net.UDPAddr
}

func (a *Agent) openLeaseNet(bind string) (*leaseNet, error) {
	c, err := net.ListenPacket("udp", bind)
	if err != nil {
		return nil, err
	}
	return &leaseNet{a: a, conn: c, waiting: map[uint64]chan *lease.Reply{}, addrs: map[string]*net.UDPAddr{}}, nil
}

// dropped applies the test hook that cuts links.
func (ln *leaseNet) dropped(from, to string) bool {
	f := ln.a.opts.LeaseFilter
	return f != nil && f(from, to)
}

// serve answers renewal requests and dispatches replies until the socket is
// closed.
func (ln *leaseNet) serve() {
	buf := make([]byte, lease.MaxDatagram+64)
	self := ln.a.cfg.NodeID
	for {
		n, from, err := ln.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		msg, err := lease.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		switch m := msg.(type) {
		case *lease.Request:
			if !spec.ValidName(m.Node) || m.Gen == 0 || m.TTLMs == 0 || m.TTLMs > 600_000 || ln.dropped(m.Node, self) {
				continue
			}
			v, gen := ln.a.grants.Renew(m.Node, m.Gen, time.Duration(m.TTLMs)*time.Millisecond, time.Now())
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

// renew asks one member to grant this node's lease and waits for its
// answer until ctx ends, sending the request again every retry.
func (ln *leaseNet) renew(ctx context.Context, m member, gen uint64, ttl, retry time.Duration) (*lease.Reply, error) {
	to, err := ln.udpAddr(m.apiAddr)
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
	self := ln.a.cfg.NodeID
	pkt, err := lease.MarshalRequest(lease.Request{Nonce: nonce, Node: self, Gen: gen, TTLMs: uint32(ttl.Milliseconds())})
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(retry)
	defer tick.Stop()
	for {
		if !ln.dropped(self, m.id) {
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
