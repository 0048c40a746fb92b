package coordinator

import (
	"fmt"
	"testing"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// benchState is 5 VIP-capable nodes and roles vip roles, each held by a
// node in turn: the idle cluster of harbormaster-lab scale.
func benchState(b *testing.B, roles int) *fsm.State {
	b.Helper()
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	var cmds []fsm.Command
	for _, n := range nodes {
		cmds = append(cmds, regVIP(n))
	}
	var rs []spec.Role
	for i := range roles {
		rs = append(rs, vipRole(fmt.Sprintf("vip-%03d", i), fmt.Sprintf("198.18.%d.%d/16", 1+i/250, 1+i%250)))
	}
	cmds = append(cmds, applySpec(rs...))
	for i, r := range rs {
		cmds = append(cmds, assign(r.Name, nodes[i%len(nodes)], "", 1))
	}
	return mustApply(b, fsm.NewState(), cmds...)
}

// BenchmarkPlanIdle is one reconcile's plan on an idle cluster (nothing to
// do): the leader makes it on every tick.
func BenchmarkPlanIdle(b *testing.B) {
	for _, roles := range []int{1, 20, 200} {
		b.Run(fmt.Sprintf("roles=%d", roles), func(b *testing.B) {
			st := benchState(b, roles)
			in := Input{State: st, Live: liveOn("n1", "n2", "n3", "n4", "n5"), Now: t0, Actor: "n1"}
			if cmds := Plan(in); len(cmds) != 0 {
				b.Fatalf("plan on the idle cluster: %v, want nothing", describeAll(cmds))
			}
			b.ReportAllocs()
			for b.Loop() {
				Plan(in)
			}
		})
	}
}

// BenchmarkApplyAssign is one assignment applied to the state of an idle
// cluster of 200 roles: a failover of k roles applies k of them.
func BenchmarkApplyAssign(b *testing.B) {
	st := benchState(b, 200)
	as := st.Assignment("vip-004")
	cmd := assign("vip-004", "n1", as.Holder, as.Epoch+1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fsm.Apply(st, st.Index+1, cmd); err != nil {
			b.Fatal(err)
		}
	}
}
