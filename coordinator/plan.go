package coordinator

import (
	"fmt"
	"sort"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// Input is everything Plan looks at: the replicated state, the leader's view
// of which leases are live, and the stamps to put on commands.
type Input struct {
	State *fsm.State
	// Live holds the nodes whose lease has not run out (see Liveness).
	Live map[string]bool
	// Now is the proposer's wall clock in unix ms, stamped on commands.
	Now int64
	// Actor is the deciding node, for the event log.
	Actor string
	// Settling is set while a new leader waits for the members to register
	// (at most one lease): roles without a holder are not placed yet, so the
	// first placement sees every member instead of only the fastest.
	Settling bool
}

// Plan is the placement policy: a pure function from the state to the
// commands that move it towards the spec. It is deterministic (roles in name
// order, ties broken by node id) and returns nothing when nothing needs to
// change. At most one command is returned per role.
//
// Rules:
//   - a role whose holder is live and still eligible stays where it is;
//   - a live holder that is no longer eligible (not a candidate, drained,
//     witness, leaving) or whose role left the spec is asked to release, and the role
//     moves only once it did;
//   - a holder whose lease ran out loses the role to the best eligible live
//     node at the next epoch, in one compare-and-set command (S4: the lease
//     expired by the leader's clock, which starts after the holder's);
//   - an unassigned role goes to the best eligible live node: highest
//     priority, then fewest roles held, then lowest node id.
func Plan(in Input) []fsm.Command {
	st := in.State
	var out []fsm.Command
	load := map[string]int{}
	for _, a := range st.Assignments {
		if a.Holder != "" {
			load[a.Holder]++
		}
	}
	inSpec := map[string]bool{}
	roles := append([]spec.Role(nil), st.Spec.Roles...)
	sort.Slice(roles, func(i, j int) bool { return roles[i].Name < roles[j].Name })
	for _, r := range roles {
		inSpec[r.Name] = true
		a := st.Assignment(r.Name)
		if a.Holder != "" && in.Live[a.Holder] {
			if eligible(st, r, a.Holder) {
				continue
			}
			if !a.Releasing {
				out = append(out, &fsm.RequestRelease{Role: r.Name, Epoch: a.Epoch, Actor: in.Actor, Time: in.Now,
					Reason: fmt.Sprintf("node %s is no longer eligible", a.Holder)})
			}
			continue
		}
		if a.Holder == "" && in.Settling {
			continue
		}
		best := pick(st, r, in.Live, load)
		if best == "" {
			continue
		}
		reason := "role unassigned"
		if a.Holder != "" {
			reason = fmt.Sprintf("lease of %s expired", a.Holder)
			load[a.Holder]--
		}
		load[best]++
		out = append(out, &fsm.Assign{Role: r.Name, Node: best, PrevHolder: a.Holder, Epoch: a.Epoch + 1,
			Reason: reason, Actor: in.Actor, Time: in.Now})
	}
	// Roles that left the spec: their holders let go.
	var gone []string
	for name, a := range st.Assignments {
		if !inSpec[name] && a.Holder != "" {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		a := st.Assignments[name]
		switch {
		case !in.Live[a.Holder]:
			out = append(out, &fsm.Release{Role: name, Node: a.Holder, Epoch: a.Epoch, Time: in.Now,
				Reason: "role removed from the spec; holder lease expired"})
		case !a.Releasing:
			out = append(out, &fsm.RequestRelease{Role: name, Epoch: a.Epoch, Actor: in.Actor, Time: in.Now,
				Reason: "role removed from the spec"})
		}
	}
	return out
}

// eligible reports whether node may hold r, liveness aside.
func eligible(st *fsm.State, r spec.Role, node string) bool {
	n, ok := st.Nodes[node]
	if !ok || n.Witness || n.Drained || n.Leaving {
		return false
	}
	_, ok = r.Candidate(node)
	return ok
}

func pick(st *fsm.State, r spec.Role, live map[string]bool, load map[string]int) string {
	type cand struct {
		id       string
		priority int
	}
	var cs []cand
	for _, id := range st.NodeIDs() {
		if !live[id] || !eligible(st, r, id) {
			continue
		}
		p, _ := r.Candidate(id)
		cs = append(cs, cand{id, p})
	}
	if len(cs) == 0 {
		return ""
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].priority != cs[j].priority {
			return cs[i].priority > cs[j].priority
		}
		if load[cs[i].id] != load[cs[j].id] {
			return load[cs[i].id] < load[cs[j].id]
		}
		return cs[i].id < cs[j].id
	})
	return cs[0].id
}
