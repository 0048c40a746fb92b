package coordinator

import (
	"testing"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

func regVIP(id string) *fsm.RegisterNode {
	r := reg(id)
	r.VIP = true
	return r
}

func vipRole(name, addr string) spec.Role {
	return spec.Role{Name: name, Type: spec.TypeVIP, Address: spec.MustParsePrefix(addr)}
}

// A vip role only goes to nodes that registered a vip_interface, whatever
// their priority or load.
func TestPlanVIPNeedsAnInterface(t *testing.T) {
	st := mustApply(t, fsm.NewState(), reg("n1"), regVIP("n2"), applySpec(vipRole("vip", "198.18.0.200/24")))
	cmds := Plan(Input{State: st, Live: liveOn("n1", "n2"), Now: t0, Actor: "n1"})
	if len(cmds) != 1 {
		t.Fatalf("plan: %v, want one assign", describeAll(cmds))
	}
	if a, ok := cmds[0].(*fsm.Assign); !ok || a.Node != "n2" || a.HolderGen != gen1("n2") {
		t.Fatalf("plan: %s, want the vip assigned to n2 (the only node with a vip_interface)", describe(cmds[0]))
	}
	// Without any VIP-capable node, nothing is placed.
	st = mustApply(t, fsm.NewState(), reg("n1"), applySpec(vipRole("vip", "198.18.0.200/24")))
	if cmds := Plan(Input{State: st, Live: liveOn("n1"), Now: t0}); len(cmds) != 0 {
		t.Fatalf("plan without a VIP-capable node: %v, want nothing", describeAll(cmds))
	}
}

// An operator's move: after the holder released, the role goes to the
// target even when placement would pick another node; a target that cannot
// hold it falls back to placement.
func TestPlanMoveToTarget(t *testing.T) {
	st := mustApply(t, fsm.NewState(), reg("n1"), reg("n2"), reg("n3"),
		applySpec(role("svc", "n1:30", "n2:20", "n3:10")),
		assign("svc", "n1", "", 1),
		&fsm.RequestRelease{Role: "svc", Epoch: 1, Target: "n3", Actor: "op", Time: t0},
		&fsm.Release{Role: "svc", Node: "n1", Epoch: 1, Time: t0})
	if got := st.Assignment("svc"); got.MoveTo != "n3" || got.Holder != "" {
		t.Fatalf("after the release: %+v, want unassigned with MoveTo n3", got)
	}
	cmds := Plan(Input{State: st, Live: liveOn("n1", "n2", "n3"), Now: t0, Actor: "n1"})
	if len(cmds) != 1 {
		t.Fatalf("plan: %v", describeAll(cmds))
	}
	a, ok := cmds[0].(*fsm.Assign)
	if !ok || a.Node != "n3" || a.Epoch != 2 {
		t.Fatalf("plan: %s, want svc to n3 at epoch 2", describe(cmds[0]))
	}
	next := mustApply(t, st, a)
	if got := next.Assignment("svc"); got.MoveTo != "" || !got.AfterRelease {
		t.Fatalf("after the move: %+v, want MoveTo cleared and AfterRelease set", got)
	}
	// The target went away: ordinary placement picks n1 (priority 30).
	cmds = Plan(Input{State: st, Live: liveOn("n1", "n2"), Now: t0, Actor: "n1"})
	if a, ok := cmds[0].(*fsm.Assign); !ok || a.Node != "n1" {
		t.Fatalf("plan with the target gone: %v, want svc to n1", describeAll(cmds))
	}
}

// Draining a live holder asks it to release; the drained node is never
// chosen; undraining makes it a candidate again.
func TestPlanDrain(t *testing.T) {
	st := mustApply(t, fsm.NewState(), reg("n1"), reg("n2"), applySpec(role("svc", "n1:30", "n2:20")),
		assign("svc", "n1", "", 1), &fsm.SetDrain{Node: "n1", Drained: true, Actor: "op", Time: t0})
	cmds := Plan(Input{State: st, Live: liveOn("n1", "n2"), Now: t0, Actor: "n2"})
	if len(cmds) != 1 {
		t.Fatalf("plan: %v", describeAll(cmds))
	}
	if rr, ok := cmds[0].(*fsm.RequestRelease); !ok || rr.Role != "svc" {
		t.Fatalf("plan: %s, want a release request for the drained holder", describe(cmds[0]))
	}
	st = mustApply(t, st, cmds[0], &fsm.Release{Role: "svc", Node: "n1", Epoch: 1, Time: t0})
	cmds = Plan(Input{State: st, Live: liveOn("n1", "n2"), Now: t0, Actor: "n2"})
	if a, ok := cmds[0].(*fsm.Assign); !ok || a.Node != "n2" {
		t.Fatalf("plan after the release: %v, want svc to n2 (n1 is drained)", describeAll(cmds))
	}
}

// Preemption: off by default (nopreempt); with preempt, a live candidate of
// strictly higher priority takes the role back as a planned move once the
// holder has kept it for preempt_delay.
func TestPlanPreempt(t *testing.T) {
	r := role("svc", "n1:30", "n2:20")
	build := func(r spec.Role) *fsm.State {
		return mustApply(t, fsm.NewState(), reg("n1"), reg("n2"), applySpec(r), assign("svc", "n2", "", 1))
	}
	st := build(r)
	if cmds := Plan(Input{State: st, Live: liveOn("n1", "n2"), Now: t0 + 60_000}); len(cmds) != 0 {
		t.Fatalf("without preempt: %v, want the holder to keep the role", describeAll(cmds))
	}
	r.Preempt, r.PreemptDelay = true, spec.Dur("30s")
	st = build(r)
	if cmds := Plan(Input{State: st, Live: liveOn("n1", "n2"), Now: t0 + 29_999}); len(cmds) != 0 {
		t.Fatalf("within preempt_delay: %v, want nothing", describeAll(cmds))
	}
	cmds := Plan(Input{State: st, Live: liveOn("n1", "n2"), Now: t0 + 30_000, Actor: "n1"})
	if len(cmds) != 1 {
		t.Fatalf("after preempt_delay: %v, want one release request", describeAll(cmds))
	}
	rr, ok := cmds[0].(*fsm.RequestRelease)
	if !ok || rr.Target != "n1" || rr.Epoch != 1 {
		t.Fatalf("after preempt_delay: %s, want a move of svc to n1", describe(cmds[0]))
	}
	mustApply(t, st, rr)
	// A candidate of equal priority never preempts.
	r = role("svc", "n1:20", "n2:20")
	r.Preempt = true
	if cmds := Plan(Input{State: build(r), Live: liveOn("n1", "n2"), Now: t0 + 60_000}); len(cmds) != 0 {
		t.Fatalf("equal priority: %v, want nothing", describeAll(cmds))
	}
}
