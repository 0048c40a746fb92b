package leasing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/lease"
	"github.com/harbormaster/harbormaster/spec"
)

// readBackoffMax bounds the pause between reads of a failing lease socket.
const readBackoffMax = 100 * time.Millisecond

// Sequence numbers are boot<<seqBootShift | counter: the counter restarts
// with the process (and with a new boot when it runs out: Config.NextBoot),
// the boot counter (persisted by the agent, and at least the seconds since
// 2020) does not. Receivers only need them to increase: builds before
// this one used a 40-bit shift and boots in hours, whose numbers are all
// below this one's.
const (
	seqBootShift  = 32
	seqCounterMax = 1<<seqBootShift - 1
	// MaxBoot is the largest boot counter a sequence number carries.
	MaxBoot = 1<<(64-seqBootShift) - 1
)

// Reasons a lease datagram is dropped (Node.Drops, the metrics' label).
const (
	DropMalformed    = "malformed"
	DropUnknownKey   = "unknown-key"
	DropBadMAC       = "bad-mac"
	DropNonMember    = "non-member"
	DropUnregistered = "unregistered"
	DropTTL          = "ttl"
	DropGeneration   = "generation"
	DropReplay       = "replay"
	DropMisdirected  = "misdirected"
	DropUnexpected   = "unexpected-reply"
	DropWrongPeer    = "wrong-granter"
)

var errNoKey = errors.New("no lease key committed yet")

// windowKey names one sender's replay window under one lease key: a
// rotation starts fresh windows (and so clears a sender locked out by a
// boot counter that went backwards, e.g. a wiped data dir).
type windowKey struct {
	node  string
	keyID uint32
}

// waiter is a renewal waiting for its reply: only the member it was sent
// to may answer it.
type waiter struct {
	to string
	ch chan *lease.Reply
}

// leaseNet carries quorum-lease renewals as UDP datagrams on the API port
// (see lease/wire.go for the format and why not gRPC). Every datagram is
// MAC'd with the cluster lease key (fsm.State.LeaseKey); a request is
// granted only to a current member, within the lease it registered, at a
// plausible generation, and with a sequence number its replay window has
// not seen. A renewal is retried every eighth of the renew interval until
// answered (under 30% loss in and out, half the datagrams of a round trip
// are lost), each retry with a new sequence number.
type leaseNet struct {
	self    string
	grants  *lease.Grants
	filter  func(from, to string) bool // Options.LeaseFilter (tests)
	log     *slog.Logger
	conn    net.PacketConn
	state   func() *fsm.State
	members func() ([]Member, error)
	// seqMu guards boot, counter and counterMax (nextSeq).
	seqMu      sync.Mutex
	boot       uint64
	counter    uint64
	counterMax uint64
	nextBoot   func() (uint64, error)
	// sent and received count the lease datagrams written and read
	// (requests and replies alike, whatever became of them).
	sent, received atomic.Uint64

	mu      sync.Mutex
	waiting map[uint64]waiter
	addrs   map[string]*net.UDPAddr
	windows map[windowKey]*lease.ReplayWindow
	drops   map[string]uint64
}

func newLeaseNet(conn net.PacketConn, cfg Config, grants *lease.Grants) *leaseNet {
	return &leaseNet{self: cfg.Self, grants: grants, filter: cfg.Filter, log: cfg.Log, conn: conn, state: cfg.State,
		members: cfg.Members, boot: cfg.Boot, counterMax: seqCounterMax, nextBoot: cfg.NextBoot, waiting: map[uint64]waiter{}, addrs: map[string]*net.UDPAddr{},
		windows: map[windowKey]*lease.ReplayWindow{}, drops: map[string]uint64{}}
}

// dropped applies the test hook that cuts links.
func (ln *leaseNet) dropped(from, to string) bool {
	return ln.filter != nil && ln.filter(from, to)
}

// close closes the socket: serve returns.
func (ln *leaseNet) close() { _ = ln.conn.Close() }

// drop counts a refused datagram; the first of each reason is logged (a
// flood is counted, not logged), except late replies: the answer to a
// retry that arrives after the first answer is normal.
func (ln *leaseNet) drop(reason string, from net.Addr, node string, err error) {
	ln.mu.Lock()
	ln.drops[reason]++
	first := ln.drops[reason] == 1
	ln.mu.Unlock()
	if first && reason != DropUnexpected {
		ln.log.Warn("lease datagram dropped (further drops are counted in harbormaster_lease_datagrams_dropped_total)",
			"reason", reason, "from", from.String(), "sender", node, "err", err)
	}
}

// send writes one datagram and counts it, before the write so that a
// reader who saw the answer sees the count (uncounted if the write fails).
func (ln *leaseNet) send(pkt []byte, to net.Addr) {
	ln.sent.Add(1)
	if _, err := ln.conn.WriteTo(pkt, to); err != nil {
		ln.sent.Add(^uint64(0))
	}
}

// dropCounts returns the drops by reason.
func (ln *leaseNet) dropCounts() map[string]uint64 {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	return maps.Clone(ln.drops)
}

// keys looks a lease key up in the current state.
func (ln *leaseNet) keys(id uint32) []byte { return ln.state().LeaseKeyByID(id) }

// serve answers renewal requests and dispatches replies until the socket is
// closed (then it returns nil). A read error that persists is backed off (up
// to readBackoffMax between reads) and logged once, instead of spinning.
func (ln *leaseNet) serve() error {
	buf := make([]byte, lease.MaxDatagram+64)
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
		ln.received.Add(1)
		msg, err := lease.Unmarshal(buf[:n], ln.keys)
		switch {
		case errors.Is(err, lease.ErrNotLease):
			continue // not ours: not even counted
		case errors.Is(err, lease.ErrUnknownKey):
			ln.drop(DropUnknownKey, from, "", err)
			continue
		case errors.Is(err, lease.ErrBadMAC):
			ln.drop(DropBadMAC, from, "", err)
			continue
		case err != nil:
			ln.drop(DropMalformed, from, "", err)
			continue
		}
		switch m := msg.(type) {
		case *lease.Request:
			ln.answer(m, from)
		case *lease.Reply:
			ln.dispatch(m, from)
		}
	}
}

// answer grants an authenticated request that passes admit and replies
// under the request's key.
func (ln *leaseNet) answer(m *lease.Request, from net.Addr) {
	if ln.dropped(m.Node, ln.self) {
		return
	}
	now := time.Now()
	if reason, err := ln.admit(m, now); reason != "" {
		ln.drop(reason, from, m.Node, err)
		return
	}
	v, gen, err := ln.grants.Renew(m.Node, m.Gen, time.Duration(m.TTLMs)*time.Millisecond, now)
	if err != nil {
		ln.drop(DropGeneration, from, m.Node, err)
		return
	}
	key := ln.keys(m.KeyID)
	out, err := lease.MarshalReply(lease.Reply{KeyID: m.KeyID, Nonce: m.Nonce, Granter: ln.self, Verdict: v, Gen: gen}, key)
	if err == nil && !ln.dropped(ln.self, m.Node) {
		ln.send(out, from)
	}
}

// admit returns why an authenticated request may not touch the grant
// table ("" when it may): its sender must be a current Raft member, ask
// for no longer a lease than it registered (and at most lease.MaxTTL), at
// a plausible generation, with a sequence number not seen before. A
// refused request leaves no trace in the table.
func (ln *leaseNet) admit(m *lease.Request, now time.Time) (string, error) {
	if !spec.ValidName(m.Node) {
		return DropMalformed, fmt.Errorf("node id %q", m.Node)
	}
	if m.To != ln.self {
		return DropMisdirected, fmt.Errorf("addressed to %q, not this node", m.To)
	}
	ms, err := ln.members()
	if err != nil {
		return DropNonMember, err
	}
	if !isMember(ms, m.Node) {
		return DropNonMember, fmt.Errorf("%s is not in the Raft configuration", m.Node)
	}
	reg, ok := ln.state().Nodes[m.Node]
	if !ok {
		return DropUnregistered, fmt.Errorf("%s has not registered its lease length yet", m.Node)
	}
	ttl := time.Duration(m.TTLMs) * time.Millisecond
	if limit := min(time.Duration(reg.LeaseTTLMillis)*time.Millisecond, lease.MaxTTL); ttl <= 0 || ttl > limit {
		return DropTTL, fmt.Errorf("lease of %s asked, %s registered (at most %s)", ttl, time.Duration(reg.LeaseTTLMillis)*time.Millisecond, lease.MaxTTL)
	}
	if !lease.PlausibleGen(m.Gen, now) {
		return DropGeneration, fmt.Errorf("generation %d is more than %s ahead of this node's clock", m.Gen, lease.MaxGenAhead)
	}
	ln.mu.Lock()
	defer ln.mu.Unlock()
	k := windowKey{m.Node, m.KeyID}
	w := ln.windows[k]
	if w == nil {
		w = &lease.ReplayWindow{}
		ln.windows[k] = w
	}
	if !w.Accept(m.Seq) {
		return DropReplay, fmt.Errorf("sequence number %d seen or too old", m.Seq)
	}
	return "", nil
}

func isMember(ms []Member, id string) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

// retain forgets the replay windows of senders that are no longer members
// and of keys no longer held.
func (ln *leaseNet) retain(ms []Member) {
	st := ln.state()
	ln.mu.Lock()
	defer ln.mu.Unlock()
	for k := range ln.windows {
		if !isMember(ms, k.node) || st.LeaseKeyByID(k.keyID) == nil {
			delete(ln.windows, k)
		}
	}
}

// dispatch hands an authenticated reply to the renewal waiting for its
// nonce, if it comes from the member that renewal was sent to.
func (ln *leaseNet) dispatch(m *lease.Reply, from net.Addr) {
	if ln.dropped(m.Granter, ln.self) {
		return
	}
	ln.mu.Lock()
	w, ok := ln.waiting[m.Nonce]
	ln.mu.Unlock()
	switch {
	case !ok:
		ln.drop(DropUnexpected, from, m.Granter, errors.New("no renewal waits for this nonce"))
	case w.to != m.Granter:
		ln.drop(DropWrongPeer, from, m.Granter, fmt.Errorf("the renewal was sent to %s", w.to))
	default:
		select {
		case w.ch <- m:
		default:
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

// nextSeq returns this node's next sequence number. When this boot's
// counter runs out (2^32 datagrams: over a year at 120 a second), it takes
// a new boot from Config.NextBoot and starts the counter again.
func (ln *leaseNet) nextSeq() (uint64, error) {
	ln.seqMu.Lock()
	defer ln.seqMu.Unlock()
	if ln.counter >= ln.counterMax {
		if ln.nextBoot == nil {
			return 0, errors.New("lease sequence numbers of this run are used up; restart the agent")
		}
		b, err := ln.nextBoot()
		if err != nil {
			return 0, fmt.Errorf("lease sequence numbers of this boot are used up and a new boot failed: %w", err)
		}
		if b <= ln.boot {
			return 0, fmt.Errorf("lease boot counter went from %d to %d; it must increase", ln.boot, b)
		}
		ln.boot, ln.counter = b, 0
	}
	ln.counter++
	return ln.boot<<seqBootShift | ln.counter, nil
}

// request encodes a renewal addressed to member to, with a fresh sequence
// number, under the current lease key.
func (ln *leaseNet) request(to string, nonce, gen uint64, ttl time.Duration) ([]byte, error) {
	k := ln.state().LeaseKey
	if k == nil {
		return nil, errNoKey
	}
	seq, err := ln.nextSeq()
	if err != nil {
		return nil, err
	}
	ttlMs, err := wireTTL(ttl)
	if err != nil {
		return nil, err
	}
	return lease.MarshalRequest(lease.Request{KeyID: k.ID, Nonce: nonce, Seq: seq, Node: ln.self, To: to, Gen: gen,
		TTLMs: ttlMs}, k.Secret)
}

// MaxTTL is the longest lease a voter grants; a request for more is
// ignored. The node config refuses a longer timing.lease.
const MaxTTL = lease.MaxTTL

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
	ln.waiting[nonce] = waiter{to: m.ID, ch: ch}
	ln.mu.Unlock()
	defer func() {
		ln.mu.Lock()
		delete(ln.waiting, nonce)
		ln.mu.Unlock()
	}()
	tick := time.NewTicker(retry)
	defer tick.Stop()
	for {
		pkt, err := ln.request(m.ID, nonce, gen, ttl)
		if err != nil {
			return nil, err
		}
		if !ln.dropped(ln.self, m.ID) {
			ln.send(pkt, to)
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
