package coordinator

import (
	"time"

	"github.com/harbormaster/harbormaster/fsm"
)

// timers measures the policy timers (preempt_delay, hold_down) of one term
// of leadership on the leader's monotonic clock.
//
// The state dates the events these timers run from (an assignment's Since,
// a loss's LostAt) with the proposer's wall clock, which may step. So the
// leader dates each event again by its own monotonic clock when it first
// sees it, and measures from there:
//   - an event first seen after the term's first pass happened during the
//     term (the leader saw it within one reconcile of its commit): its
//     timer starts at that sighting, and wall-clock stamps play no part;
//   - an event already in the state at the term's first pass predates the
//     leader: it is credited with the time the replicated stamp says has
//     passed, by the leader's wall clock at that one sighting, never less
//     than zero; from then on only the monotonic clock counts.
//
// A wall-clock step during the term therefore moves no timer. A wall clock
// that is wrong when a leader takes office can only shift the timers of
// the events it inherits: one ahead ends them at once (as a failover after
// they were due would), one behind restarts them from the takeover, which
// only delays a hold-down's end or a preemption by at most its length.
type timers struct {
	passes int
	seen   map[timerKey]time.Duration // Mono of the first sighting minus the credit
}

// timerKey identifies one timed event: the assignment of role to node at
// epoch (held), or node's loss of role at the stamp (lost).
type timerKey struct {
	lost     bool
	unsynced bool
	leaving  bool // node's graceful stop (no stamp in the state: inherited ones count as long past)
	role     string
	node     string
	epoch    uint64
	stamp    int64
}

func newTimers() *timers { return &timers{seen: map[timerKey]time.Duration{}} }

// observe records the sightings of st's timed events at wall and mono (one
// reading of each clock) and returns how long ago each happened. Events no
// longer in the state are forgotten.
func (t *timers) observe(st *fsm.State, wall time.Time, mono time.Duration) *Elapsed {
	inherited := t.passes == 0
	t.passes++
	el := &Elapsed{Held: map[string]time.Duration{}, Lost: map[string]time.Duration{}, Unsynced: map[string]time.Duration{},
		Leaving: map[string]time.Duration{}}
	next := make(map[timerKey]time.Duration, len(t.seen))
	since := func(k timerKey) time.Duration {
		start, ok := t.seen[k]
		if !ok {
			start = mono
			if inherited {
				start -= max(wall.Sub(time.UnixMilli(k.stamp)), 0)
			}
		}
		next[k] = start
		return mono - start
	}
	for role, a := range st.Assignments {
		if a.Holder != "" {
			el.Held[role] = since(timerKey{role: role, node: a.Holder, epoch: a.Epoch, stamp: a.Since})
		}
		if a.LostBy != "" {
			el.Lost[role] = since(timerKey{lost: true, role: role, node: a.LostBy, stamp: a.LostAt})
		}
		if a.Unsynced != "" {
			el.Unsynced[role] = since(timerKey{unsynced: true, role: role, epoch: a.Epoch, stamp: a.UnsyncedSince})
		}
	}
	for id, n := range st.Nodes {
		if n.Leaving {
			el.Leaving[id] = since(timerKey{leaving: true, node: id})
		}
	}
	t.seen = next
	return el
}
