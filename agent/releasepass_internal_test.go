package agent

import (
	"context"
	"slices"
	"testing"

	"github.com/harbormaster/harbormaster/fsm"
)

// A release pass judges each role on the state as it is when it gets to
// it: an actuator is never handed the pass's first state after proposals
// changed it (handed it, the VIP actuator removed the addresses of roles
// that had come to the node meanwhile), and a role moved meanwhile is not
// released.
func TestReleasePassUsesTheCurrentState(t *testing.T) {
	mk := func(as ...fsm.Assignment) *fsm.State {
		st := fsm.NewState()
		st.Assignments = map[string]*fsm.Assignment{}
		for _, a := range as {
			st.Assignments[a.Role] = &a
		}
		return st
	}
	releasing := func(role string) fsm.Assignment {
		return fsm.Assignment{Role: role, Holder: "n1", Epoch: 1, Releasing: true}
	}
	cur := mk(releasing("r1"), releasing("r2"), releasing("r3"), fsm.Assignment{Role: "r4", Holder: "n1", Epoch: 1})
	state := func() *fsm.State { return cur }

	var judged []*fsm.State
	var judgedRoles, proposed []string
	releasable := func(_ context.Context, st *fsm.State, role string) bool {
		judged = append(judged, st)
		judgedRoles = append(judgedRoles, role)
		if st != cur {
			t.Errorf("%s judged on a state that is no longer the current one", role)
		}
		return true
	}
	propose := func(_ context.Context, c *fsm.Release) error {
		proposed = append(proposed, c.Role)
		if c.Role == "r2" && c.Cause != "operator" {
			t.Errorf("r2 released with cause %q, want the current request's (operator)", c.Cause)
		}
		if c.Epoch != 1 || c.Node != "n1" {
			t.Errorf("release %+v, want n1's at epoch 1", c)
		}
		// The release commits; meanwhile r3 moved to n2 and r5 came to n1.
		// r2's release was asked again meanwhile, for another cause.
		r2 := releasing("r2")
		r2.ReleaseCause = "operator"
		next := mk(r2, fsm.Assignment{Role: "r3", Holder: "n2", Epoch: 2},
			fsm.Assignment{Role: "r4", Holder: "n1", Epoch: 1}, fsm.Assignment{Role: "r5", Holder: "n1", Epoch: 1})
		if c.Role == "r2" {
			next = mk(fsm.Assignment{Role: "r3", Holder: "n2", Epoch: 2},
				fsm.Assignment{Role: "r4", Holder: "n1", Epoch: 1}, fsm.Assignment{Role: "r5", Holder: "n1", Epoch: 1})
		}
		cur = next
		return nil
	}
	if asked := releasePass(context.Background(), "n1", state, releasable, propose); !asked {
		t.Error("releasePass reported no release asked")
	}
	slices.Sort(proposed)
	if !slices.Equal(proposed, []string{"r1", "r2"}) {
		t.Errorf("released %v, want r1 and r2 (r3 moved to n2 before its turn)", proposed)
	}
	if len(judged) != 2 || judged[0] == judged[1] {
		t.Errorf("judged %v on %d states, want r1 and r2 each on the state of its turn", judgedRoles, len(judged))
	}
	if asked := releasePass(context.Background(), "n1", state, releasable, propose); asked {
		t.Error("a pass with nothing releasing reported a release asked")
	}
}
