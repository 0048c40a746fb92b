package coordinator

import (
	"fmt"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// Explanation is a dry run of the placement of one role: what the
// coordinator would do with it now and, per node, why the node is or is not
// the chosen holder (`harbormaster explain ROLE`).
type Explanation struct {
	Role       spec.Role
	Assignment fsm.Assignment
	// Decision says in words what Plan does with the role now.
	Decision string
	// Chosen is the node the placement ranks first now ("" when none
	// qualifies); the holder keeps the role unless it must move.
	Chosen string
	Nodes  []Candidacy
}

// Candidacy is one node's standing for a role.
type Candidacy struct {
	Node      string
	Candidate bool
	Priority  int
	// Eligible: live and qualified; Reasons says why not, or what ranks it
	// down (held down, avoided roles).
	Eligible bool
	Reasons  []string
	// Rank is the node's place among the eligible nodes (1 = first), 0
	// when not eligible.
	Rank        int
	Holder      bool
	HeldDown    bool
	AvoidedHeld []string
	RolesHeld   int
}

// Explain runs the placement policy for one role on in without proposing
// anything. It is pure, like Plan.
func Explain(in Input, role string) (Explanation, error) {
	st := in.State
	r, ok := st.Spec.Role(role)
	if !ok {
		return Explanation{}, fmt.Errorf("role %q is not in the spec (roles: %v)", role, st.Spec.RoleNames())
	}
	a := st.Assignment(role)
	load := map[string]int{}
	for _, x := range st.Assignments {
		if x.Holder != "" {
			load[x.Holder]++
		}
	}
	ex := Explanation{Role: r, Assignment: a}
	order := map[string]int{}
	for i, c := range rank(in, r, a, load) {
		order[c.id] = i + 1
		if i == 0 {
			ex.Chosen = c.id
		}
	}
	for _, id := range st.NodeIDs() {
		p, cand := r.Candidate(id)
		c := Candidacy{Node: id, Candidate: cand, Priority: p, Rank: order[id], Eligible: order[id] > 0,
			Holder: a.Holder == id, HeldDown: heldDown(in, r, a, id), AvoidedHeld: avoidedHeld(st, r, id), RolesHeld: load[id]}
		c.Reasons = disqualify(st, r, id)
		if _, live := in.Live[id]; !live {
			c.Reasons = append(c.Reasons, "lease not live")
		}
		if c.HeldDown {
			c.Reasons = append(c.Reasons, fmt.Sprintf("held down: lost the role %d ms ago (hold_down %s)", in.lostFor(a).Milliseconds(), r.HoldDown))
		}
		for _, o := range c.AvoidedHeld {
			c.Reasons = append(c.Reasons, "holds "+o+", which this role avoids")
		}
		if h := st.RedisHistoryOf(a); r.Type == spec.TypeRedisMaster && h != nil {
			switch synced, behind := st.RedisSynced(h, id); {
			case !synced:
				c.Reasons = append(c.Reasons, fmt.Sprintf("its Redis has not synced with %s's (replication id %s): promoted only by unsynced_promotion or move --accept-data-loss",
					h.Node, fsm.ShortReplID(h.ReplID)))
			case behind > 0 && id != a.Holder:
				c.Reasons = append(c.Reasons, fmt.Sprintf("in %s's replication history, %d bytes behind its last reported offset %d", h.Node, behind, h.Offset))
			}
		}
		ex.Nodes = append(ex.Nodes, c)
	}
	ex.Decision = decide(in, r, a)
	return ex, nil
}

// decide words what Plan does with r now.
func decide(in Input, r spec.Role, a fsm.Assignment) string {
	for _, cmd := range Plan(in) {
		switch x := cmd.(type) {
		case *fsm.Assign:
			if x.Role == r.Name {
				return fmt.Sprintf("assign to %s at epoch %d: %s", x.Node, x.Epoch, x.Reason)
			}
		case *fsm.RequestRelease:
			if x.Role == r.Name {
				return fmt.Sprintf("ask %s to release: %s", a.Holder, x.Reason)
			}
		case *fsm.RedisHold:
			if x.Role == r.Name {
				return "stays vacant: " + x.Reason
			}
		}
	}
	gen, live := in.Live[a.Holder]
	switch {
	case a.Holder != "" && a.Releasing:
		return fmt.Sprintf("waits for %s to release", a.Holder)
	case a.Holder != "" && live && gen == a.HolderGen:
		return "stays on " + a.Holder
	case a.Unsynced != "":
		return "stays vacant: " + a.Unsynced
	case a.Holder != "" && stopGrace(r, a) > 0:
		return fmt.Sprintf("waits: the lease of %s (generation %d) has not surely ended %s ago (stop_timeout)", a.Holder, a.HolderGen, stopGrace(r, a))
	case a.Holder != "":
		return fmt.Sprintf("waits: the lease of %s (generation %d) has not surely ended", a.Holder, a.HolderGen)
	case in.Settling:
		return "waits: the new leader lets the members register first"
	}
	return "waits: no live node qualifies"
}
