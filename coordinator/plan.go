package coordinator

import (
	"fmt"
	"sort"
	"strings"
	"time"

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
	// at generation gen ended at least grace ago (lease.Majority.EndedFor;
	// grace is a service role's stop timeout, 0 for other roles). Nil means
	// never.
	Ended func(node string, gen uint64, grace time.Duration) bool
	// Now is the proposer's wall clock in unix ms, stamped on commands.
	Now int64
	// Elapsed, when set, is how long ago each role's timed events happened
	// by the deciding leader's monotonic clock (a timers record): the
	// preempt_delay and hold_down are measured with it, so that a step of
	// the leader's wall clock neither fires them early nor stalls them.
	// Nil: they are measured from the replicated stamps to Now, on the wall
	// clock (explain on any node, tests of the policy alone).
	Elapsed *Elapsed
	// Actor is the deciding node, for the event log.
	Actor string
	// Settling is set while a new leader waits for the members to register
	// (at most one lease): roles without a holder are not placed yet, so the
	// first placement sees every member instead of only the fastest.
	Settling bool
}

// Elapsed is how long ago, by one clock, each role's timed events
// happened, keyed by role name. A role missing from a map has an event
// that just happened (its timer starts now).
type Elapsed struct {
	// Held: since the current holder got the role at its current epoch
	// (fsm.Assignment.Since; the preempt_delay).
	Held map[string]time.Duration
	// Lost: since the role's LostBy lost it (fsm.Assignment.LostAt; the
	// hold_down).
	Lost map[string]time.Duration
	// Unsynced: since a redis-master role was held vacant for want of a
	// synced replica (fsm.Assignment.UnsyncedSince; unsynced_promotion).
	Unsynced map[string]time.Duration
	// Leaving: since the leader saw the node's graceful stop begin
	// (fsm.Node.Leaving), keyed by node id; one inherited from an earlier
	// leader counts as long past.
	Leaving map[string]time.Duration
}

// leaveGrace is how long a leaving node is left to release its roles by
// itself (its graceful stop does, as soon as each actuator has let go)
// before the coordinator asks it to: the request is the fallback, and
// proposing it at once only delays the placement of the roles the node
// has already released (measured in rolling-upgrade).
const leaveGrace = 5 * time.Second

// leavingFor is how long ago node began its graceful stop; without timers
// (explain, tests of the policy alone) it counts as long past.
func (in Input) leavingFor(node string) time.Duration {
	if in.Elapsed == nil {
		return leaveGrace
	}
	d, ok := in.Elapsed.Leaving[node]
	if !ok {
		return leaveGrace
	}
	return d
}

// heldFor is how long a's holder has held its role (preempt_delay).
func (in Input) heldFor(a fsm.Assignment) time.Duration {
	if in.Elapsed == nil {
		return time.Duration(in.Now-a.Since) * time.Millisecond
	}
	return in.Elapsed.Held[a.Role]
}

// unsyncedFor is how long a's redis-master role has been vacant for want
// of a synced replica (unsynced_promotion); 0 when it is not.
func (in Input) unsyncedFor(a fsm.Assignment) time.Duration {
	if a.Unsynced == "" {
		return 0
	}
	if in.Elapsed == nil {
		return time.Duration(in.Now-a.UnsyncedSince) * time.Millisecond
	}
	return in.Elapsed.Unsynced[a.Role]
}

// lostFor is how long ago a's LostBy lost its role (hold_down).
func (in Input) lostFor(a fsm.Assignment) time.Duration {
	if in.Elapsed == nil {
		return time.Duration(in.Now-a.LostAt) * time.Millisecond
	}
	return in.Elapsed.Lost[a.Role]
}

// Plan is the placement policy: a pure function from the state to the
// commands that move it towards the spec. It is deterministic (a followed
// role before the roles that follow it, otherwise roles in name order, ties
// broken by node id) and returns nothing when nothing needs to change. At
// most one command is returned per role; a role that follows one this plan
// assigns gets none (the next plan places it).
//
// Rules:
//   - a role whose holder is live on the lease generation the role is bound
//     to, and still eligible, stays where it is;
//   - such a holder that is no longer eligible (not a candidate, drained,
//     witness, leaving) or whose role left the spec is asked to release, and
//     the role moves only once it did; a leaving holder releases by itself
//     and is asked only after leaveGrace;
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
//     higher priority;
//   - a service role whose holder was lost without a release also waits
//     its stop timeout after the lease surely ended (the time the old
//     holder has to stop the service; the longer of the spec's and the
//     one recorded at assignment).
//
// A node is eligible for a role when it is registered, not a witness, not
// drained or leaving, a candidate, has a vip_interface (vip roles) or the
// service's actuator (service roles), passes every required check, and
// holds the followed role (follow); for a redis-master role, has a Redis
// whose replication offset it reported. Among the live eligible nodes the
// order is (rank): for redis-master roles the current master's replication
// history and the highest offset first; then not held down, fewest
// avoided roles held, highest priority, fewest roles held, lowest id.
func Plan(in Input) []fsm.Command {
	st := in.State
	ended := in.Ended
	if ended == nil {
		ended = func(string, uint64, time.Duration) bool { return false }
	}
	in.Ended = ended
	var out []fsm.Command
	load := map[string]int{}
	for _, a := range st.Assignments {
		if a.Holder != "" {
			load[a.Holder]++
		}
	}
	inSpec := map[string]bool{}
	roles := append([]spec.Role(nil), st.Spec.Roles...)
	depth := followDepths(roles)
	sort.Slice(roles, func(i, j int) bool {
		if di, dj := depth[roles[i].Name], depth[roles[j].Name]; di != dj {
			return di < dj // a followed role before its followers
		}
		return roles[i].Name < roles[j].Name
	})
	// moved: roles this plan assigns. A role that follows one of them
	// waits for the next plan: judged on this state it would go to the
	// followed role's old holder (when that node is back on a new
	// generation), and the plan's commands are applied one by one, so a
	// follower assigned to the new holder could apply while the followed
	// role's assignment was refused.
	moved := map[string]bool{}
	for _, r := range roles {
		inSpec[r.Name] = true
		if r.Follow != "" && moved[r.Follow] {
			continue
		}
		a := st.Assignment(r.Name)
		if a.Holder != "" {
			if gen, ok := in.Live[a.Holder]; ok && gen == a.HolderGen {
				if eligible(st, r, a.Holder) {
					if cmd := preempt(in, r, a, load); cmd != nil {
						out = append(out, cmd)
					}
					continue
				}
				n := st.Nodes[a.Holder]
				if !a.Releasing && (n == nil || !n.Leaving || in.leavingFor(a.Holder) >= leaveGrace) {
					out = append(out, &fsm.RequestRelease{Role: r.Name, Epoch: a.Epoch, Actor: in.Actor, Time: in.Now,
						Reason: fmt.Sprintf("node %s is no longer eligible", a.Holder), Cause: ineligibleCause(st, r, a.Holder)})
				}
				continue
			}
			if !ended(a.Holder, a.HolderGen, stopGrace(r, a)) {
				continue // the holder may still act: wait (S4)
			}
		}
		if a.Holder == "" && in.Settling {
			continue
		}
		if a.Holder != "" {
			load[a.Holder]--
		}
		best := pick(in, r, a, load)
		if to := a.MoveTo; to != "" {
			// An operator's move, also when the holder could not release
			// and its lease ran out (a service whose stop failed). A
			// redis-master move to a Redis outside the role's history
			// needs the operator's acceptance of the loss.
			if _, live := in.Live[to]; live && eligible(st, r, to) && (a.AcceptDataLoss || redisSynced(st, r, a, to)) {
				best = to
			}
		}
		var dataLoss string
		if best != "" && !redisSynced(st, r, a, best) {
			// S10: no replica synced with the role's last master.
			if dataLoss = unsyncedPromotion(st, r, a, best, in.unsyncedFor(a) >= r.UnsyncedAfter()); dataLoss == "" {
				if why := holdReason(r, st.RedisHistoryOf(a)); a.Unsynced != why {
					out = append(out, &fsm.RedisHold{Role: r.Name, Epoch: a.Epoch, Reason: why, Actor: in.Actor, Time: in.Now})
				}
				best = ""
			}
		}
		if best == "" {
			if a.Holder != "" {
				load[a.Holder]++
			}
			continue
		}
		reason, cause := "role unassigned", fsm.CauseFirst
		switch {
		case a.Holder != "":
			reason, cause = fmt.Sprintf("lease of %s (generation %d) ended", a.Holder, a.HolderGen), fsm.CauseLease
			if a.Releasing && a.ReleaseCause != "" {
				// Asked to let go, it did not in time: the request says why.
				reason += " while releasing (" + a.ReleaseCause + ")"
				cause = a.ReleaseCause
			}
		case a.MoveTo == best && (a.ReleaseCause == "" || a.ReleaseCause == fsm.CauseOperator):
			// (no cause: a release committed by a build without causes)
			reason, cause = "moved by an operator", fsm.CauseOperator
		case a.MoveTo == best:
			reason, cause = "moved to "+best+" ("+a.ReleaseCause+")", a.ReleaseCause
		case a.ReleaseCause != "":
			reason, cause = "released ("+a.ReleaseCause+")", a.ReleaseCause
		}
		load[best]++
		if dataLoss != "" {
			reason += "; promoted outside the lost master's replication history: " + dataLoss
			cause = fsm.CauseDataLoss
		}
		out = append(out, &fsm.Assign{Role: r.Name, Node: best, PrevHolder: a.Holder, HolderGen: in.Live[best],
			Epoch: a.Epoch + 1, Reason: reason, Actor: in.Actor, Time: in.Now, DataLoss: dataLoss, Cause: cause})
		moved[r.Name] = true
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
		case (!live || gen != a.HolderGen) && ended(a.Holder, a.HolderGen, time.Duration(a.GraceMillis)*time.Millisecond):
			out = append(out, &fsm.Release{Role: name, Node: a.Holder, Epoch: a.Epoch, Time: in.Now,
				Reason: "role removed from the spec; holder lease ended", Cause: fsm.CauseSpec})
		case !live || gen != a.HolderGen:
			// The holder may still act and cannot answer: wait.
		case !a.Releasing:
			out = append(out, &fsm.RequestRelease{Role: name, Epoch: a.Epoch, Actor: in.Actor, Time: in.Now,
				Reason: "role removed from the spec", Cause: fsm.CauseSpec})
		}
	}
	return out
}

// followDepths gives each role the length of its chain of follows (0: it
// follows none; the spec forbids cycles and unknown names, and the bound
// keeps a state that slipped past it from looping).
func followDepths(roles []spec.Role) map[string]int {
	follows := map[string]string{}
	for _, r := range roles {
		follows[r.Name] = r.Follow
	}
	depth := map[string]int{}
	for _, r := range roles {
		d := 0
		for cur := r.Follow; cur != "" && d <= len(roles); cur = follows[cur] {
			d++
		}
		depth[r.Name] = d
	}
	return depth
}

// preempt returns a planned move of r to a live, eligible candidate of
// strictly higher priority than its holder, when the role preempts and the
// holder has kept it for the preempt delay; nil otherwise.
func preempt(in Input, r spec.Role, a fsm.Assignment, load map[string]int) fsm.Command {
	if !r.Preempt || a.Releasing || in.heldFor(a) < r.PreemptAfter() {
		return nil
	}
	best := pick(in, r, a, load)
	if best == "" || best == a.Holder || !redisSynced(in.State, r, a, best) {
		return nil
	}
	bp, _ := r.Candidate(best)
	hp, _ := r.Candidate(a.Holder)
	if bp <= hp {
		return nil
	}
	return &fsm.RequestRelease{Role: r.Name, Epoch: a.Epoch, Target: best, Actor: in.Actor, Time: in.Now,
		Reason: fmt.Sprintf("preempted by %s (priority %d over %d)", best, bp, hp), Cause: fsm.CausePreempt}
}

// ineligibleCause says why a live holder that is no longer eligible for r
// is asked to let go: drain, shutdown (leaving), spec (not a candidate, or
// its node lost what the role type needs) or check (a required check not
// passing), in that order.
func ineligibleCause(st *fsm.State, r spec.Role, node string) fsm.Cause {
	n := st.Nodes[node]
	switch {
	case n == nil:
		return fsm.CauseSpec
	case n.Drained:
		return fsm.CauseDrain
	case n.Leaving:
		return fsm.CauseShutdown
	}
	if _, ok := r.Candidate(node); !ok || n.Witness {
		return fsm.CauseSpec
	}
	for _, c := range r.Requires {
		if res, ok := st.Checks[node][c]; !ok || !res.Known || !res.Passing {
			return fsm.CauseCheck
		}
	}
	return fsm.CauseSpec
}

// stopGrace is how long after the holder's lease surely ended the role
// may go to another node: the longer of the grace recorded when it was
// assigned and the spec's current one (a shorter stop_timeout applied
// since does not shorten the wait of a holder still running with the old).
func stopGrace(r spec.Role, a fsm.Assignment) time.Duration {
	return max(r.StopGrace(), time.Duration(a.GraceMillis)*time.Millisecond)
}

// eligible reports whether node may hold r, liveness aside.
func eligible(st *fsm.State, r spec.Role, node string) bool {
	return len(disqualify(st, r, node)) == 0
}

// disqualify lists why node may not hold r, liveness aside (nil: it may).
func disqualify(st *fsm.State, r spec.Role, node string) []string {
	n, ok := st.Nodes[node]
	if !ok {
		return []string{"not registered"}
	}
	var why []string
	if n.Witness {
		why = append(why, "witness: holds no roles")
	}
	if n.Drained {
		why = append(why, "drained")
	}
	if n.Leaving {
		why = append(why, "shutting down")
	}
	if _, ok := r.Candidate(node); !ok {
		why = append(why, "not a candidate")
	}
	switch r.Type {
	case spec.TypeVIP:
		if !n.VIP {
			why = append(why, "no vip_interface")
		}
	case spec.TypeService:
		if !r.Marker && !n.RunsService(r.Name) {
			why = append(why, "no actuator for this service (services in its config: "+orNone(n.Services)+")")
		}
	case spec.TypeRedisMaster:
		rs, ok := st.Redis[node]
		switch {
		case n.Redis == "":
			why = append(why, "no redis endpoint in its config")
		case !ok:
			why = append(why, "its Redis has not been reported since it registered")
		case rs.Error != "":
			why = append(why, "its Redis cannot be read: "+rs.Error)
		case rs.Offset < 0:
			why = append(why, "its Redis's replication offset is unknown")
		case rs.Loading:
			why = append(why, "its Redis is loading its data from disk")
		}
	}
	for _, c := range r.Requires {
		res, ok := st.Checks[node][c]
		switch {
		case !ok:
			why = append(why, "required check "+c+" is not run on this node")
		case !res.Known:
			why = append(why, "required check "+c+" has no verdict yet")
		case !res.Passing:
			msg := "required check " + c + " is failing"
			if res.Error != "" {
				msg += ": " + res.Error
			}
			why = append(why, msg)
		}
	}
	if r.Follow != "" {
		f := st.Assignment(r.Follow)
		switch {
		case f.Holder == "":
			why = append(why, "follows "+r.Follow+", which is unassigned")
		case f.Holder != node:
			why = append(why, "follows "+r.Follow+", held by "+f.Holder)
		case f.Releasing:
			why = append(why, "follows "+r.Follow+", which is being released")
		}
	}
	return why
}

// ranked is a live eligible node with its sort keys.
type ranked struct {
	id       string
	priority int
	heldDown bool
	avoided  []string
	offset   int64 // redis-master roles: the last committed replication offset
	// history: redis-master roles: the node's Redis shares the current
	// master's replication history (same replication id), so its offset
	// is comparable.
	history bool
	load    int
}

// rank orders the live eligible nodes for r. For a redis-master role the
// data comes first: nodes in the current master's replication history,
// then the highest replication offset. Then: not held down, fewest avoided
// roles held, highest priority, fewest roles held, lowest id.
func rank(in Input, r spec.Role, a fsm.Assignment, load map[string]int) []ranked {
	st := in.State
	// The replication history of the current (or lost) master: offsets
	// compare only within it.
	h := st.RedisHistoryOf(a)
	var cs []ranked
	for _, id := range st.NodeIDs() {
		if _, ok := in.Live[id]; !ok || !eligible(st, r, id) {
			continue
		}
		p, _ := r.Candidate(id)
		c := ranked{id: id, priority: p, heldDown: heldDown(in, r, a, id), avoided: avoidedHeld(st, r, id), load: load[id]}
		if r.Type == spec.TypeRedisMaster {
			var behind int64
			c.history, behind = st.RedisSynced(h, id)
			c.offset = st.Redis[id].Offset
			if c.history && h != nil {
				c.offset = h.Offset - behind // its position in the history
				if behind < 0 {
					c.offset = 0 // reloaded from its own files: after every replica of the history
				}
			}
		}
		cs = append(cs, c)
	}
	sort.SliceStable(cs, func(i, j int) bool {
		x, y := cs[i], cs[j]
		switch {
		case x.history != y.history: // redis-master: data first
			return x.history
		case x.offset != y.offset:
			return x.offset > y.offset
		case x.heldDown != y.heldDown:
			return !x.heldDown
		case len(x.avoided) != len(y.avoided):
			return len(x.avoided) < len(y.avoided)
		case x.priority != y.priority:
			return x.priority > y.priority
		case x.load != y.load:
			return x.load < y.load
		}
		return x.id < y.id
	})
	return cs
}

// redisSynced reports whether node may take r without losing what the
// role's history holds: always for other role types.
func redisSynced(st *fsm.State, r spec.Role, a fsm.Assignment, node string) bool {
	if r.Type != spec.TypeRedisMaster {
		return true
	}
	ok, _ := st.RedisSynced(st.RedisHistoryOf(a), node)
	return ok
}

// unsyncedPromotion says whether and why the redis-master role r may go to
// node, which has not synced with a's history: an operator accepted the
// loss (a move with accept_data_loss), the lost master's Redis came back
// without its data, or the spec's unsynced_promotion delay has run out
// (waited; measured by the caller). It returns "" when it may not: the
// role stays vacant.
func unsyncedPromotion(s *fsm.State, r spec.Role, a fsm.Assignment, node string, waited bool) string {
	h := a.History
	switch {
	case a.MoveTo == node && a.AcceptDataLoss:
		return fmt.Sprintf("an operator accepted the loss of what %s's Redis had beyond %s's (move --accept-data-loss)", h.Node, node)
	case s.RedisHistoryGone(h):
		return fmt.Sprintf("%s's Redis restarted without the data of its replication history %s (empty, or an older snapshot); it is lost everywhere",
			h.Node, fsm.ShortReplID(h.ReplID))
	case waited && r.UnsyncedAfter() > 0:
		return fmt.Sprintf("no replica synced with %s's Redis for %s (unsynced_promotion: after %s)", h.Node,
			r.UnsyncedAfter(), r.UnsyncedAfter())
	}
	return ""
}

// holdReason words why a redis-master role stays vacant (RedisHold): it
// names the lost master and what gets it a master again. It does not change
// while the vacancy lasts, so it is committed once.
func holdReason(r spec.Role, h *fsm.RedisHistory) string {
	what := fmt.Sprintf("no live candidate's Redis has synced with %s's (replication id %s, offset %d): promoting one loses what %s acknowledged since its replicas last synced",
		h.Node, fsm.ShortReplID(h.ReplID), h.Offset, h.Node)
	if d := r.UnsyncedAfter(); d > 0 {
		return what + fmt.Sprintf("; the role stays vacant until %s's Redis returns, or for %s (unsynced_promotion: after %s)", h.Node, d, d)
	}
	return what + fmt.Sprintf("; the role stays vacant until %s's Redis returns with its data, or an operator runs `harbormaster move %s NODE --accept-data-loss` (unsynced_promotion: never)",
		h.Node, r.Name)
}

func pick(in Input, r spec.Role, a fsm.Assignment, load map[string]int) string {
	cs := rank(in, r, a, load)
	if len(cs) == 0 {
		return ""
	}
	return cs[0].id
}

// heldDown reports whether node lost r less than the role's hold_down ago.
func heldDown(in Input, r spec.Role, a fsm.Assignment, node string) bool {
	hd := r.HoldDownFor()
	return hd > 0 && a.LostBy == node && node != a.Holder && in.lostFor(a) < hd
}

// avoidedHeld lists the roles r avoids that node holds.
func avoidedHeld(st *fsm.State, r spec.Role, node string) []string {
	var out []string
	for _, o := range r.Avoid {
		if st.Assignment(o).Holder == node {
			out = append(out, o)
		}
	}
	return out
}

func orNone(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	return strings.Join(ss, ", ")
}
