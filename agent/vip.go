package agent

import (
	"context"
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
	g := a.cfg.GARP
	m := vip.NewManager(vip.Config{GARPRepeat: g.Repeat, GARPInterval: time.Duration(g.Interval),
		GARPRefresh: time.Duration(g.Refresh), Log: a.log, OnEvent: a.onVIPEvent}, k, ann)
	return m, cleanup, nil
}

func (a *Agent) onVIPEvent(e vip.Event) {
	switch e.Kind {
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
