// Package vipact is the actuator of vip roles: it tells the node's
// vip.Manager which addresses it may hold (the vip roles this node holds
// while act.MayAct allows), records each acquisition's failover phases,
// re-announces after a change of Raft term or a healed partition, and
// watches, on the nodes that do not hold a VIP, for a foreign host
// answering for it.
package vipact

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
	"github.com/harbormaster/harbormaster/vip"
)

// Timing of the non-holders' conflict probes.
const (
	conflictEvery     = 5 * time.Second
	conflictWait      = 100 * time.Millisecond
	conflictReportGap = time.Minute
)

// quiesceBound bounds how long a graceful stop waits for the addresses to go.
const quiesceBound = 2 * time.Second

// Config is what the VIP actuator needs besides the node.
type Config struct {
	// Iface is the node's vip_interface.
	Iface string
	// MAC is Iface's hardware address ("" when unknown): a conflict probe
	// answered by it is this node's own answer.
	MAC string
	// Kernel and Announcer are netlink and the raw sockets in production,
	// vip/viptest fakes in tests.
	Kernel    vip.Kernel
	Announcer vip.Announcer
	// Manager tunes the vip.Manager (GARP); its Log and OnEvent are set here.
	Manager vip.Config
	// Tick is the backstop period of a pass (the lease renew interval).
	Tick time.Duration
	// Term returns the current Raft term: a change re-announces the held
	// addresses (a new leader may have followed a partition).
	Term func() uint64
	Log  *slog.Logger
	// OnActed, when set, is called once per acquisition of a VIP role at
	// an epoch, at its first announcement: acted is when the address was
	// added, announced when the first gratuitous ARP went out.
	OnActed func(role string, epoch uint64, acted, announced time.Time)
}

// Actuator holds this node's vip roles. Build it with New; Run runs it.
type Actuator struct {
	node act.Node
	cfg  Config
	mgr  *vip.Manager
	wake chan struct{}

	phases    phases
	conflicts atomic.Int64
}

var _ act.Actuator = (*Actuator)(nil)

// New returns the actuator. It starts nothing.
func New(node act.Node, cfg Config) *Actuator {
	x := &Actuator{node: node, cfg: cfg, wake: make(chan struct{}, 1)}
	mc := cfg.Manager
	mc.Log, mc.OnEvent = cfg.Log, x.onEvent
	x.mgr = vip.NewManager(mc, cfg.Kernel, cfg.Announcer)
	return x
}

// Type implements act.Actuator.
func (x *Actuator) Type() spec.RoleType { return spec.TypeVIP }

// Wake implements act.Actuator.
func (x *Actuator) Wake() { act.Poke(x.wake) }

// Conflicts counts the conflict probes a MAC other than the holder's
// answered (harbormaster_vip_conflicts_total).
func (x *Actuator) Conflicts() int64 { return x.conflicts.Load() }

// Reannounce starts a new announcement burst for every held address (a
// peer that was cut off answers again: hosts on its side may still have the
// old holder's MAC).
func (x *Actuator) Reannounce() { x.mgr.Reannounce() }

// Run implements act.Actuator: the manager, the target loop and the
// conflict watch. The manager removes every address it holds when it ends.
func (x *Actuator) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return x.mgr.Run(gctx) })
	g.Go(func() error { x.targetLoop(gctx); return nil })
	g.Go(func() error { x.conflictLoop(gctx); return nil })
	return g.Wait()
}

// Releasable implements act.Actuator: the manager is brought in line with
// the state and the node's authority at once, so that a release is
// committed only after the address is gone.
func (x *Actuator) Releasable(ctx context.Context, st *fsm.State, _ string) bool {
	x.mgr.Update(x.targets(st))
	x.mgr.Sync(ctx)
	return true
}

// Quiesce implements act.Actuator: with the node stopping, the targets are
// empty and the addresses go now.
func (x *Actuator) Quiesce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, quiesceBound)
	defer cancel()
	st, _ := x.node.State()
	x.Releasable(ctx, st, "")
}

// targets computes the addresses this node looks after (every vip role of
// the spec) and those it may hold now: the vip roles it holds while MayAct
// allows. The lease end is the limit the manager fences at (with its own
// FenceGuard), so the rule's margin is 0 here.
func (x *Actuator) targets(st *fsm.State) (managed []vip.Address, want []vip.Desired) {
	auth := x.node.Authority()
	for _, r := range st.Spec.Roles {
		if r.Type != spec.TypeVIP {
			continue
		}
		if !r.Address.IsValid() {
			continue // validated at the edge; nothing to hold
		}
		addr := vip.Address{Prefix: r.Address.Prefix, Iface: x.cfg.Iface}
		managed = append(managed, addr)
		as := st.Assignment(r.Name)
		if !auth.MayAct(as, 0) {
			continue
		}
		want = append(want, vip.Desired{Address: addr, Until: auth.LeaseUntil, Epoch: as.Epoch, NoProbe: as.AfterRelease})
		x.phases.markSeen(key{addr, as.Epoch}, auth.Now)
	}
	return managed, want
}

// targetLoop keeps the manager's targets current: on every state change,
// wake-up and tick. It re-announces the held addresses when the Raft term
// changes.
func (x *Actuator) targetLoop(ctx context.Context) {
	var term uint64
	for {
		st, changed := x.node.State()
		x.mgr.Update(x.targets(st))
		if t := x.cfg.Term(); t != term {
			if term != 0 {
				x.mgr.Reannounce()
			}
			term = t
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-x.wake:
		case <-time.After(x.cfg.Tick):
		}
	}
}

func (x *Actuator) onEvent(e vip.Event) {
	k := key{e.Address, e.Epoch}
	switch e.Kind {
	case vip.EventAdded:
		x.phases.markAdded(k, e.At)
	case vip.EventAnnounced:
		x.reportFailover(k, e.At)
	case vip.EventConflict:
		x.cfg.Log.Warn("another host answers for a VIP", "vip", e.Address.String(), "peer", e.Peer.String(), "epoch", e.Epoch)
	case vip.EventError:
		x.cfg.Log.Warn("VIP operation failed", "vip", e.Address.String(), "err", e.Err)
	}
}

// reportFailover records one event with the phases of an acquisition:
// detected (the coordinator saw the old holder's lease end, or its
// release), decided, seen here, address added, first announcement. Times
// from different nodes' clocks: as good as their synchronisation.
func (x *Actuator) reportFailover(k key, announced time.Time) {
	st, _ := x.node.State()
	var role string
	var as fsm.Assignment
	for _, r := range st.Spec.Roles {
		if r.Type == spec.TypeVIP && r.Address.Prefix == k.addr.Prefix {
			role, as = r.Name, st.Assignment(r.Name)
		}
	}
	if role == "" || as.Epoch != k.epoch || as.Detected == 0 {
		return
	}
	seen, added := x.phases.get(k)
	if x.cfg.OnActed != nil {
		x.cfg.OnActed(role, k.epoch, added, announced)
	}
	detected := time.UnixMilli(as.Detected)
	ms := func(t time.Time) int64 { return t.Sub(detected).Milliseconds() }
	msg := fmt.Sprintf("detected +0 ms, decided +%d ms, seen here +%d ms, address added +%d ms, first announcement +%d ms",
		as.Since-as.Detected, ms(seen), ms(added), ms(announced))
	if as.AfterRelease {
		msg += " (after a release: no probe)"
	}
	x.node.Record(fsm.Event{Time: time.Now().UnixMilli(), Kind: fsm.EventFailover, Node: x.node.ID(),
		Actor: x.node.ID(), Role: role, Epoch: k.epoch, New: x.node.ID(), Message: msg})
}

// conflictLoop is the non-holders' watch for foreign answers: every
// conflictEvery it probes the VIPs this node does not hold and whose turn
// it has (conflictTurn), all in one
// ProbeAll (one wait and one socket per tick; probed one after the other,
// 160 VIPs took 16 s of 100 ms waits, a loop that never rested), and, if a
// MAC other than the holder's registered one answers, logs it, counts it
// and records a vip-conflict event (at most one per role and MAC a minute).
func (x *Actuator) conflictLoop(ctx context.Context) {
	reported := map[string]time.Time{}
	tick := time.NewTicker(conflictEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		x.probeConflicts(ctx, reported, time.Now().Unix()/int64(conflictEvery/time.Second))
	}
}

// conflictTurn reports whether self probes role on tick: the VIP nodes
// other than the holder take turns, one a tick per VIP, the turn moving on
// each tick (numbered by the wall clock, so the nodes agree but for the
// moment a tick changes). Every VIP is probed about once a tick in all,
// not once by every other node: 200 VIPs on 5 nodes were 640 probes and
// their answers every 5 s. A node that is down misses its turns; the
// others' come round.
func conflictTurn(st *fsm.State, holder, self, role string, tick int64) bool {
	var ids []string
	for id, n := range st.Nodes {
		if id != holder && n.VIP && !n.Witness && !n.Leaving {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return false
	}
	slices.Sort(ids)
	h := fnv.New32a()
	h.Write([]byte(role))
	i := (uint64(h.Sum32()) + uint64(tick)) % uint64(len(ids))
	return ids[i] == self
}

// conflictProbe is one VIP another node holds: its role, address, and the
// holder's registered MAC.
type conflictProbe struct {
	role   spec.Role
	as     fsm.Assignment
	addr   vip.Address
	holder net.HardwareAddr
	mac    string // as registered
}

func (x *Actuator) probeConflicts(ctx context.Context, reported map[string]time.Time, tick int64) {
	st, _ := x.node.State()
	self := x.node.ID()
	var ps []conflictProbe
	for _, r := range st.Spec.Roles {
		if r.Type != spec.TypeVIP || !r.Address.IsValid() {
			continue
		}
		as := st.Assignment(r.Name)
		holder, ok := st.Nodes[as.Holder]
		if as.Holder == "" || as.Holder == self || !ok || holder.MAC == "" || as.Releasing ||
			!conflictTurn(st, as.Holder, self, r.Name, tick) {
			continue
		}
		hw, err := net.ParseMAC(holder.MAC)
		if err != nil {
			continue
		}
		ps = append(ps, conflictProbe{role: r, as: as, addr: vip.Address{Prefix: r.Address.Prefix, Iface: x.cfg.Iface}, holder: hw, mac: holder.MAC})
	}
	if len(ps) == 0 {
		return
	}
	addrs := make([]vip.Address, len(ps))
	holders := make(map[vip.Address]net.HardwareAddr, len(ps))
	for i, p := range ps {
		addrs[i] = p.addr
		holders[p.addr] = p.holder
	}
	pctx, cancel := context.WithTimeout(ctx, 2*conflictWait)
	answers := x.cfg.Announcer.ProbeAll(pctx, addrs, func(a vip.Address) net.HardwareAddr { return holders[a] }, conflictWait)
	cancel()
	for i, p := range ps {
		foreign := answers[i].Peer
		if answers[i].Err != nil || foreign == nil || foreign.String() == x.cfg.MAC {
			continue
		}
		x.conflicts.Add(1)
		k := p.role.Name + "/" + foreign.String()
		if time.Since(reported[k]) < conflictReportGap {
			continue
		}
		reported[k] = time.Now()
		x.cfg.Log.Warn("a host other than the holder answers for a VIP", "role", p.role.Name, "vip", p.addr.String(),
			"holder", p.as.Holder, "holder_mac", p.mac, "answer_mac", foreign.String())
		x.node.Record(fsm.Event{Time: time.Now().UnixMilli(), Kind: fsm.EventVIPConflict, Node: self, Actor: self,
			Role: p.role.Name, Old: p.as.Holder + " " + p.mac, New: foreign.String(), Epoch: p.as.Epoch,
			Message: "a MAC other than the holder's answers for " + p.role.Address.String()})
	}
}

// phases dates, per VIP and epoch, when this node first saw it may hold it
// and when the address went in, for the failover event.
type phases struct {
	mu    sync.Mutex
	seen  map[key]time.Time
	added map[key]time.Time
}

type key struct {
	addr  vip.Address
	epoch uint64
}

func (p *phases) markSeen(k key, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen, p.added = map[key]time.Time{}, map[key]time.Time{}
	}
	if _, ok := p.seen[k]; !ok {
		p.seen[k] = t
	}
	if len(p.seen) > 64 { // bounded: drop the oldest epochs' records
		for old := range p.seen {
			if old.epoch+8 < k.epoch {
				delete(p.seen, old)
				delete(p.added, old)
			}
		}
	}
}

func (p *phases) markAdded(k key, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.added != nil {
		p.added[k] = t
	}
}

func (p *phases) get(k key) (seen, added time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[k], p.added[k]
}
