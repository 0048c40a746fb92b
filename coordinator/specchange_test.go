package coordinator

import (
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// checked registers n1 and n2 running check "disk" (passing on both), with
// role "registry" held by n1.
func checkedState(t *testing.T, roles ...spec.Role) *fsm.State {
	t.Helper()
	st := fsm.NewState()
	r1, r2 := reg("n1"), reg("n2")
	r1.Checks, r2.Checks = []string{"disk"}, []string{"disk"}
	st = mustApply(t, st, r1, r2,
		&fsm.CheckUpdate{Node: "n1", Check: "disk", Passing: true, Time: t0},
		&fsm.CheckUpdate{Node: "n2", Check: "disk", Passing: true, Time: t0},
		applySpec(roles...), assign("registry", "n1", "", 1))
	return st
}

func TestCheckSpecRequiresUndefinedCheck(t *testing.T) {
	st := checkedState(t, role("registry"))
	r := role("registry")
	r.Requires = []string{"disk", "nosuchcheck"}
	probs := CheckSpec(st, &spec.Spec{Roles: []spec.Role{r}})
	var fields []string
	for _, p := range probs {
		fields = append(fields, p.String())
	}
	got := strings.Join(fields, "\n")
	if !strings.Contains(got, "roles[registry].requires[1]: check \"nosuchcheck\" is not defined by any registered node (checks they run: disk)") {
		t.Fatalf("CheckSpec = %q, want requires[1] named", got)
	}
	// The held role would lose its holder too.
	if !strings.Contains(got, "is held by n1 now and would have no eligible node") {
		t.Fatalf("CheckSpec = %q, want the held role's stop named", got)
	}
	// A defined check is no problem.
	r.Requires = []string{"disk"}
	if probs := CheckSpec(st, &spec.Spec{Roles: []spec.Role{r}}); len(probs) != 0 {
		t.Fatalf("CheckSpec with a defined check = %v, want none", probs)
	}
}

func TestCheckSpecHeldRoleLosesEveryCandidate(t *testing.T) {
	st := checkedState(t, role("registry"))
	// Only n9 (not registered) may hold it: n1 stops and no one takes over.
	probs := CheckSpec(st, &spec.Spec{Roles: []spec.Role{role("registry", "n9")}})
	if len(probs) != 1 || probs[0].Role != "registry" || !strings.Contains(probs[0].Message, "n1: not a candidate") {
		t.Fatalf("CheckSpec = %v, want registry refused naming n1 not a candidate", probs)
	}
	// Moving it to n2 is fine: a candidate remains.
	if probs := CheckSpec(st, &spec.Spec{Roles: []spec.Role{role("registry", "n2")}}); len(probs) != 0 {
		t.Fatalf("CheckSpec moving to n2 = %v, want none", probs)
	}
	// Removing the role is not a problem: that is what stops it.
	if probs := CheckSpec(st, &spec.Spec{}); len(probs) != 0 {
		t.Fatalf("CheckSpec removing the role = %v, want none", probs)
	}
	// An unheld role with no candidate is not refused (nothing stops).
	if probs := CheckSpec(st, &spec.Spec{Roles: []spec.Role{role("registry"), role("other", "n9")}}); len(probs) != 0 {
		t.Fatalf("CheckSpec adding an unplaceable role = %v, want none", probs)
	}
}

// A held role that has no eligible node under the current spec either
// (its check fails everywhere now) is not the new spec's doing.
func TestCheckSpecAlreadyStopping(t *testing.T) {
	r := role("registry")
	r.Requires = []string{"disk"}
	st := checkedState(t, r)
	st = mustApply(t, st, &fsm.CheckUpdate{Node: "n1", Check: "disk", Passing: false, Time: t0},
		&fsm.CheckUpdate{Node: "n2", Check: "disk", Passing: false, Time: t0})
	r2 := r
	r2.Preempt = true
	if probs := CheckSpec(st, &spec.Spec{Roles: []spec.Role{r2}}); len(probs) != 0 {
		t.Fatalf("CheckSpec = %v, want none", probs)
	}
}

func TestPreviewSpec(t *testing.T) {
	st := checkedState(t, role("registry", "n1", "n2"), role("old"))
	st = mustApply(t, st, assign("old", "n2", "", 1))
	follower := role("vip-ish")
	follower.Follow = "registry"
	next := &spec.Spec{Roles: []spec.Role{role("registry", "n2"), follower, role("new", "n1")}}
	got := PreviewSpec(Input{State: st, Live: liveOn("n1", "n2")}, next)
	want := []RoleChange{
		{Role: "new", Change: RoleAdded, HolderAfter: "n1"},
		{Role: "old", Change: RoleRemoved, HolderNow: "n2", Stops: true, Why: "removed from the spec"},
		{Role: "registry", Change: RoleChanged, Fields: []string{`candidates: [{"node":"n1"},{"node":"n2"}] -> [{"node":"n2"}]`},
			HolderNow: "n1", HolderAfter: "n2"},
		{Role: "vip-ish", Change: RoleAdded, HolderAfter: "n2"},
	}
	if len(got) != len(want) {
		t.Fatalf("PreviewSpec = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Role != w.Role || g.Change != w.Change || strings.Join(g.Fields, "|") != strings.Join(w.Fields, "|") ||
			g.HolderNow != w.HolderNow || g.HolderAfter != w.HolderAfter || g.Stops != w.Stops || g.Why != w.Why {
			t.Errorf("PreviewSpec[%d] = %+v, want %+v", i, g, w)
		}
	}
	// The state is not touched.
	if h := st.Assignment("registry").Holder; h != "n1" {
		t.Fatalf("registry holder after the preview = %q, want n1", h)
	}
	// Unchanged role, holder stays.
	same := PreviewSpec(Input{State: st, Live: liveOn("n1", "n2")}, st.Spec)
	for _, c := range same {
		if c.Change != RoleUnchanged || c.HolderAfter != c.HolderNow {
			t.Errorf("PreviewSpec(same spec) %+v, want unchanged and the same holder", c)
		}
	}
}
