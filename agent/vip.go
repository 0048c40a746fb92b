package agent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
	"github.com/harbormaster/harbormaster/vip"
)

// newVIPManager builds the VIP manager when the node has a vip_interface:
// netlink and raw sockets in production, the fakes from Options in tests.
func (a *Agent) newVIPManager() (*vip.Manager, func(), error) {
	if a.cfg.VIPInterface == "" {
		return nil, func() {}, nil
	}
	k, ann := a.opts.VIPKernel, a.opts.VIPAnnouncer
	cleanup := func() {}
	if k == nil {
		nl, err := vip.NewNetlink()
		if err != nil {
			return nil, nil, err
		}
		k = nl
		cleanup = nl.Close
	}
	if ann == nil {
		w := vip.NewWire()
		ann = w
		prev := cleanup
		cleanup = func() { w.Close(); prev() }
	}
	if hw, err := k.HardwareAddr(a.cfg.VIPInterface); err == nil {
		a.vipMAC = hw.String()
	}
	a.vipAnn = ann
	g := a.cfg.GARP
	m := vip.NewManager(vip.Config{GARPRepeat: g.Repeat, GARPInterval: time.Duration(g.Interval),
		GARPRefresh: time.Duration(g.Refresh), Log: a.log, OnEvent: a.onVIPEvent}, k, ann)
	return m, cleanup, nil
}

// vipPhases dates, per VIP and epoch, when this node first saw it may hold
// it and when the address went in, for the failover event.
type vipPhases struct {
	mu    sync.Mutex
	seen  map[vipKey]time.Time
	added map[vipKey]time.Time
}

type vipKey struct {
	addr  vip.Address
	epoch uint64
}

func (p *vipPhases) markSeen(k vipKey, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen, p.added = map[vipKey]time.Time{}, map[vipKey]time.Time{}
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

func (p *vipPhases) markAdded(k vipKey, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.added != nil {
		p.added[k] = t
	}
}

func (p *vipPhases) get(k vipKey) (seen, added time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[k], p.added[k]
}

// reportFailover records one event with the phases of an acquisition:
// detected (the coordinator saw the old holder's lease end, or its
// release), decided, seen here, address added, first announcement. Times
// from different nodes' clocks: as good as their synchronisation.
func (a *Agent) reportFailover(k vipKey, announced time.Time) {
	st := a.State()
	var role string
	var as fsm.Assignment
	for _, r := range st.Spec.Roles {
		if r.Type == spec.TypeVIP && r.Address == k.addr.Prefix.String() {
			role, as = r.Name, st.Assignment(r.Name)
		}
	}
	if role == "" || as.Epoch != k.epoch || as.Detected == 0 {
		return
	}
	seen, added := a.phases.get(k)
	detected := time.UnixMilli(as.Detected)
	ms := func(t time.Time) int64 { return t.Sub(detected).Milliseconds() }
	msg := fmt.Sprintf("detected +0 ms, decided +%d ms, seen here +%d ms, address added +%d ms, first announcement +%d ms",
		as.Since-as.Detected, ms(seen), ms(added), ms(announced))
	if as.AfterRelease {
		msg += " (after a release: no probe)"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := a.Propose(ctx, &fsm.RecordEvent{Event: fsm.Event{Time: time.Now().UnixMilli(), Kind: fsm.EventFailover,
		Node: a.cfg.NodeID, Actor: a.cfg.NodeID, Role: role, Epoch: k.epoch, New: a.cfg.NodeID, Message: msg}})
	if err != nil {
		a.log.Debug("record failover phases", "role", role, "err", err)
	}
}

func (a *Agent) onVIPEvent(e vip.Event) {
	k := vipKey{e.Address, e.Epoch}
	switch e.Kind {
	case vip.EventAdded:
		a.phases.markAdded(k, e.At)
	case vip.EventAnnounced:
		go a.reportFailover(k, e.At) // never block the manager's pass
	case vip.EventConflict:
		a.log.Warn("another host answers for a VIP", "vip", e.Address.String(), "peer", e.Peer.String(), "epoch", e.Epoch)
	case vip.EventError:
		a.log.Warn("VIP operation failed", "vip", e.Address.String(), "err", e.Err)
	}
}

// vipTargets computes, from the state and this node's lease, the VIP
// addresses this node looks after (every vip role of the spec) and those it
// may hold now: the vip roles assigned to it at its current lease
// generation, while the lease is valid, not being released, and the agent
// is not stopping. The lease end is the limit the manager fences at.
func (a *Agent) vipTargets(st *fsm.State) (managed []vip.Address, want []vip.Desired) {
	gen, valid, until := a.Lease()
	for _, r := range st.Spec.Roles {
		if r.Type != spec.TypeVIP {
			continue
		}
		addr, err := vip.ParseAddress(r.Address, a.cfg.VIPInterface)
		if err != nil {
			continue // validated at the edge; nothing to hold
		}
		managed = append(managed, addr)
		as := st.Assignment(r.Name)
		if as.Holder != a.cfg.NodeID || as.HolderGen != gen || !valid || as.Releasing || a.stopping.Load() {
			continue
		}
		want = append(want, vip.Desired{Address: addr, Until: until, Epoch: as.Epoch, NoProbe: as.AfterRelease})
		a.phases.markSeen(vipKey{addr, as.Epoch}, time.Now())
	}
	return managed, want
}

// vipLoop keeps the VIP manager's targets current: on every state change,
// lease change and tick. It re-announces the held VIPs when the Raft term
// changes (a new leader may have followed a partition).
func (a *Agent) vipLoop(ctx context.Context) {
	if a.vips == nil {
		return
	}
	var term uint64
	for {
		st, changed := a.fsm.State()
		a.vips.Update(a.vipTargets(st))
		if t := a.raft.CurrentTerm(); t != term {
			if term != 0 {
				a.vips.Reannounce()
			}
			term = t
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-a.vipWake:
		case <-time.After(a.timing.Renew):
		}
	}
}

// dropVIPs brings the manager in line with the current state and this
// node's stopping flag at once, so that a release is committed only after
// the address is gone.
func (a *Agent) dropVIPs(ctx context.Context) {
	if a.vips == nil {
		return
	}
	a.vips.Update(a.vipTargets(a.State()))
	a.vips.Sync(ctx)
}

// conflictLoop is the non-holders' watch for foreign answers (issue 3):
// every conflictEvery, a node with a vip_interface probes each VIP it does
// not hold and, if a MAC other than the holder's registered one answers,
// logs it, counts it (harbormaster_vip_conflicts_total) and records a
// vip-conflict event (at most one per role and MAC a minute).
func (a *Agent) conflictLoop(ctx context.Context) {
	if a.vips == nil || a.vipAnn == nil {
		return
	}
	const every = 5 * time.Second
	reported := map[string]time.Time{}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := a.State()
		for _, r := range st.Spec.Roles {
			if r.Type != spec.TypeVIP {
				continue
			}
			as := st.Assignment(r.Name)
			holder, ok := st.Nodes[as.Holder]
			if as.Holder == "" || as.Holder == a.cfg.NodeID || !ok || holder.MAC == "" || as.Releasing {
				continue
			}
			addr, err := vip.ParseAddress(r.Address, a.cfg.VIPInterface)
			if err != nil {
				continue
			}
			hw, err := net.ParseMAC(holder.MAC)
			if err != nil {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			foreign, err := a.vipAnn.Probe(pctx, addr, hw, 100*time.Millisecond)
			cancel()
			if err != nil || foreign == nil || foreign.String() == a.vipMAC {
				continue
			}
			a.vipConflicts.Add(1)
			key := r.Name + "/" + foreign.String()
			if time.Since(reported[key]) < time.Minute {
				continue
			}
			reported[key] = time.Now()
			a.log.Warn("a host other than the holder answers for a VIP", "role", r.Name, "vip", addr.String(),
				"holder", as.Holder, "holder_mac", holder.MAC, "answer_mac", foreign.String())
			ectx, ecancel := context.WithTimeout(ctx, 2*time.Second)
			_, _ = a.Propose(ectx, &fsm.RecordEvent{Event: fsm.Event{Time: time.Now().UnixMilli(), Kind: fsm.EventVIPConflict,
				Node: a.cfg.NodeID, Actor: a.cfg.NodeID, Role: r.Name, Old: as.Holder + " " + holder.MAC, New: foreign.String(),
				Epoch: as.Epoch, Message: "a MAC other than the holder's answers for " + r.Address}})
			ecancel()
		}
	}
}
