package coordinator

import (
	"fmt"
	"sort"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// Input is everything Plan looks at: the replicated state, the voters'
// verdicts on leases, and the stamps to put on commands.
type Input struct {
	State *fsm.State
	// Live maps each node that a majority of voters see with a running
	// lease to that lease's generation (lease.Majority.Live).
	Live map[string]uint64
	// Ended reports whether a majority of voters say every grant to node
	// at generation gen has ended (lease.Majority.Ended). Nil means never.
	Ended func(node string, gen uint64) bool
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
//   - a role whose holder is live on the lease generation the role is bound
//     to, and still eligible, stays where it is;
//   - such a holder that is no longer eligible (not a candidate, drained,
//     witness, leaving) or whose role left the spec is asked to release, and
//     the role moves only once it did;
//   - once a majority of voters say the holder's lease of that generation
//     has ended, the role goes to the best eligible live node (the same node
//     if it started a new generation and is still the best) at the next
//     epoch, in one compare-and-set command (S4);
//   - while neither (the holder's generation is not live but has not
//     surely ended), nothing moves;
//   - an unassigned role goes to the best eligible live node: highest
//     priority, then fewest roles held, then lowest node id;
//   - a role with preempt moves (a planned hand-over) from a holder that has
//     kept it for preempt_delay to a live eligible candidate of strictly
//     higher priority.
func Plan(in Input) []fsm.Command {
	st := in.State
	ended := in.Ended
	if ended == nil {
		ended = func(string, uint64) bool { return false }
	}
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
		if a.Holder != "" {
			if gen, ok := in.Live[a.Holder]; ok && gen == a.HolderGen {
				if eligible(st, r, a.Holder) {
					if cmd := preempt(in, r, a, load); cmd != nil {
						out = append(out, cmd)
					}
					continue
				}
				if !a.Releasing {
					out = append(out, &fsm.RequestRelease{Role: r.Name, Epoch: a.Epoch, Actor: in.Actor, Time: in.Now,
						Reason: fmt.Sprintf("node %s is no longer eligible", a.Holder)})
				}
				continue
			}
			if !ended(a.Holder, a.HolderGen) {
				continue // the holder may still act: wait (S4)
			}
		}
		if a.Holder == "" && in.Settling {
			continue
		}
		if a.Holder != "" {
			load[a.Holder]--
		}
		best := pick(st, r, in.Live, load)
		if to := a.MoveTo; to != "" && a.Holder == "" {
			if _, live := in.Live[to]; live && eligible(st, r, to) {
				best = to // an operator's move
			}
		}
		if best == "" {
			if a.Holder != "" {
				load[a.Holder]++
			}
			continue
		}
		reason := "role unassigned"
		if a.MoveTo == best && a.Holder == "" {
			reason = "moved by an operator"
		}
		if a.Holder != "" {
			reason = fmt.Sprintf("lease of %s (generation %d) ended", a.Holder, a.HolderGen)
		}
		load[best]++
		out = append(out, &fsm.Assign{Role: r.Name, Node: best, PrevHolder: a.Holder, HolderGen: in.Live[best],
			Epoch: a.Epoch + 1, Reason: reason, Actor: in.Actor, Time: in.Now})
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
		gen, live := in.Live[a.Holder]
		switch {
		case (!live || gen != a.HolderGen) && ended(a.Holder, a.HolderGen):
			out = append(out, &fsm.Release{Role: name, Node: a.Holder, Epoch: a.Epoch, Time: in.Now,
				Reason: "role removed from the spec; holder lease ended"})
		case !live || gen != a.HolderGen:
			// The holder may still act and cannot answer: wait.
		case !a.Releasing:
			out = append(out, &fsm.RequestRelease{Role: name, Epoch: a.Epoch, Actor: in.Actor, Time: in.Now,
				Reason: "role removed from the spec"})
		}
	}
	return out
}

// preempt returns a planned move of r to a live, eligible candidate of
// strictly higher priority than its holder, when the role preempts and the
// holder has kept it for the preempt delay; nil otherwise.
func preempt(in Input, r spec.Role, a fsm.Assignment, load map[string]int) fsm.Command {
	if !r.Preempt || a.Releasing || in.Now-a.Since < r.PreemptAfter().Milliseconds() {
		return nil
	}
	best := pick(in.State, r, in.Live, load)
	if best == "" || best == a.Holder {
		return nil
	}
	bp, _ := r.Candidate(best)
	hp, _ := r.Candidate(a.Holder)
	if bp <= hp {
		return nil
	}
	return &fsm.RequestRelease{Role: r.Name, Epoch: a.Epoch, Target: best, Actor: in.Actor, Time: in.Now,
		Reason: fmt.Sprintf("preempted by %s (priority %d over %d)", best, bp, hp)}
}

// eligible reports whether node may hold r, liveness aside.
func eligible(st *fsm.State, r spec.Role, node string) bool {
	n, ok := st.Nodes[node]
	if !ok || n.Witness || n.Drained || n.Leaving {
		return false
	}
	if r.Type == spec.TypeVIP && !n.VIP {
		return false
	}
	_, ok = r.Candidate(node)
	return ok
}

func pick(st *fsm.State, r spec.Role, live map[string]uint64, load map[string]int) string {
	type cand struct {
		id       string
		priority int
	}
	var cs []cand
	for _, id := range st.NodeIDs() {
		if _, ok := live[id]; !ok || !eligible(st, r, id) {
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
