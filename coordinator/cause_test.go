package coordinator

import (
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// failoverCause runs the planning loop from st as a cluster would: Plan,
// apply its commands, and for each release request the holder's release
// loop answers with a Release carrying the request's cause (the agent's
// releaseLoop), until Plan assigns the role to a new holder. It returns
// that assignment's cause, and checks the state keeps it.
func failoverCause(t *testing.T, st *fsm.State, role string, live map[string]uint64, ended func(string, uint64, time.Duration) bool) fsm.Cause {
	t.Helper()
	release := func(role string) {
		a := st.Assignment(role)
		rel := &fsm.Release{Role: role, Node: a.Holder, Epoch: a.Epoch, Reason: "release requested", Cause: a.ReleaseCause, Time: planNow}
		if err := rel.Validate(); err != nil {
			t.Fatalf("Release %+v: %v", rel, err)
		}
		st = mustApply(t, st, rel)
	}
	if st.Assignment(role).Releasing {
		release(role)
	}
	for pass := 0; pass < 4; pass++ {
		cmds := Plan(Input{State: st, Live: live, Ended: ended, Now: planNow + int64(pass), Actor: planActor, Elapsed: &Elapsed{Held: map[string]time.Duration{role: time.Hour}}})
		if len(cmds) == 0 {
			t.Fatalf("pass %d: Plan planned nothing for %s (state %+v)", pass, role, st.Assignment(role))
		}
		st = mustApply(t, st, cmds...)
		for _, c := range cmds {
			switch x := c.(type) {
			case *fsm.Assign:
				if x.Role == role {
					if got := st.Assignment(role).Cause; got != x.Cause {
						t.Errorf("Assignment.Cause after apply: got %q, want the command's %q", got, x.Cause)
					}
					return x.Cause
				}
			case *fsm.RequestRelease:
				release(x.Role)
			}
		}
	}
	t.Fatalf("no assignment of %s after 4 passes", role)
	return ""
}

func TestPlanCauses(t *testing.T) {
	base := func(r spec.Role, extra ...fsm.Command) *fsm.State {
		cmds := append([]fsm.Command{reg("n1"), reg("n2"), reg("n3"), applySpec(r)}, extra...)
		return mustApply(t, fsm.NewState(), cmds...)
	}
	web := role("web", "n1:5", "n2:5", "n3")
	all := liveOn("n1", "n2", "n3")

	t.Run("first", func(t *testing.T) {
		if got := failoverCause(t, base(web), "web", all, nil); got != fsm.CauseFirst {
			t.Errorf("a role never held: got cause %q, want first", got)
		}
	})
	t.Run("lease", func(t *testing.T) {
		st := base(web, assign("web", "n1", "", 1))
		if got := failoverCause(t, st, "web", liveOn("n2", "n3"), endedUpTo("n1")); got != fsm.CauseLease {
			t.Errorf("holder crashed (its lease ended): got cause %q, want lease", got)
		}
	})
	t.Run("preempt", func(t *testing.T) {
		r := role("web", "n1:1", "n2:9", "n3")
		r.Preempt = true
		st := base(r, assign("web", "n1", "", 1))
		if got := failoverCause(t, st, "web", all, nil); got != fsm.CausePreempt {
			t.Errorf("a higher-priority candidate took it back: got cause %q, want preempt", got)
		}
	})
	t.Run("operator", func(t *testing.T) {
		// What agent/api.go Move proposes.
		st := base(web, assign("web", "n1", "", 1), &fsm.RequestRelease{Role: "web", Epoch: 1, Target: "n3",
			Reason: "moved by an operator to n3", Cause: fsm.CauseOperator, Actor: "op", Time: t0})
		if got := failoverCause(t, st, "web", all, nil); got != fsm.CauseOperator {
			t.Errorf("harbormaster move: got cause %q, want operator", got)
		}
	})
	t.Run("operator, logged before causes", func(t *testing.T) {
		st := base(web, assign("web", "n1", "", 1), &fsm.RequestRelease{Role: "web", Epoch: 1, Target: "n3",
			Reason: "moved by an operator to n3", Actor: "op", Time: t0})
		if got := failoverCause(t, st, "web", all, nil); got != fsm.CauseOperator {
			t.Errorf("harbormaster move by an agent without causes: got cause %q, want operator", got)
		}
	})
	t.Run("drain", func(t *testing.T) {
		st := drain(base(web, assign("web", "n1", "", 1)), "n1")
		if got := failoverCause(t, st, "web", all, nil); got != fsm.CauseDrain {
			t.Errorf("holder drained: got cause %q, want drain", got)
		}
	})
	t.Run("check", func(t *testing.T) {
		ping := []string{"ping"}
		st := mustApply(t, fsm.NewState(), regWith("n1", ping, nil), regWith("n2", ping, nil), regWith("n3", ping, nil),
			applySpec(withRequires(web, "ping")), check("n1", "ping", true), check("n2", "ping", true), check("n3", "ping", true),
			assign("web", "n1", "", 1), check("n1", "ping", false))
		if got := failoverCause(t, st, "web", all, nil); got != fsm.CauseCheck {
			t.Errorf("holder's required check failed: got cause %q, want check", got)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		// The agent's graceful stop: Leave, then its own Release.
		st := base(web, assign("web", "n1", "", 1), leave("n1"),
			&fsm.Release{Role: "web", Node: "n1", Epoch: 1, Reason: "agent shutdown", Cause: fsm.CauseShutdown, Time: t0})
		if got := failoverCause(t, st, "web", all, nil); got != fsm.CauseShutdown {
			t.Errorf("holder's graceful stop: got cause %q, want shutdown", got)
		}
	})
	t.Run("spec", func(t *testing.T) {
		st := base(web, assign("web", "n1", "", 1), applySpec(role("web", "n2:5", "n3")))
		if got := failoverCause(t, st, "web", all, nil); got != fsm.CauseSpec {
			t.Errorf("holder no longer a candidate: got cause %q, want spec", got)
		}
	})
}

func TestCauseRefusedAtTheEdge(t *testing.T) {
	for _, c := range []fsm.Command{
		&fsm.Assign{Role: "web", Node: "n1", Epoch: 1, Cause: "moved"},
		&fsm.RequestRelease{Role: "web", Epoch: 1, Cause: "moved"},
		&fsm.Release{Role: "web", Node: "n1", Epoch: 1, Cause: "moved"},
	} {
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "cause") || !strings.Contains(err.Error(), `"moved"`) || !strings.Contains(err.Error(), "operator") {
			t.Errorf("%s with cause \"moved\": got %v, want an error naming the field cause and the valid causes", describe(c), err)
		}
	}
}
