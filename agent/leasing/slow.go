package leasing

import (
	"slices"
	"time"
)

// The timing warning (docs/troubleshooting.md, "lease renewals are slow"):
// a lease lapses when a majority's renewal comes more than a lease after
// the previous one was sent, and a lapse costs a move of every role the
// node holds. A renewal's age is that span: from the send of the previous
// renewal a majority granted to the grant that made this one's majority.
// On a machine that keeps up it is about one renew interval (at most a
// third of the lease, config.Resolve enforces it) plus the round trip.
// When the p99 of the ages over the window passes SlowRaise of the lease,
// one renewal in a hundred used up more than half of the lease: one more
// such delay in a row is a lapse, so the profile is too fast for this
// machine or network and the node says so instead of flapping. The
// warning clears when the p99 is back under SlowClear (below the raise
// point, so the warning does not flap itself). No verdict before
// slowMinSamples renewals are in the window (2.5 s of the fast profile,
// 25 s of wan): the p99 of fewer is their maximum, and the elections of a
// starting cluster would raise it.
const (
	SlowRaise      = 0.5
	SlowClear      = 0.4
	SlowWindow     = 30 * time.Second
	slowMinSamples = 50
	slowEvalEvery  = time.Second
)

// SlowWatch judges renewal ages against the lease: the pure state machine
// of the timing warning (no clock: the caller passes the times). Not safe
// for concurrent use.
type SlowWatch struct {
	lease    time.Duration
	at       []time.Time // sample times, oldest first
	ages     []time.Duration
	lastEval time.Time
	slow     bool
	p99      time.Duration
}

// NewSlowWatch returns a watch for leases of length lease.
func NewSlowWatch(lease time.Duration) *SlowWatch { return &SlowWatch{lease: lease} }

// Observe records a renewal's age at now and, at most once a second,
// judges the window. It reports whether the verdict changed (raised or
// cleared) with this observation.
func (w *SlowWatch) Observe(now time.Time, age time.Duration) (changed bool) {
	w.at = append(w.at, now)
	w.ages = append(w.ages, age)
	cut := 0
	for cut < len(w.at) && now.Sub(w.at[cut]) > SlowWindow {
		cut++
	}
	w.at, w.ages = w.at[cut:], w.ages[cut:]
	if !w.lastEval.IsZero() && now.Sub(w.lastEval) < slowEvalEvery {
		return false
	}
	w.lastEval = now
	if len(w.ages) < slowMinSamples {
		return false
	}
	sorted := slices.Clone(w.ages)
	slices.Sort(sorted)
	w.p99 = sorted[(len(sorted)*99+99)/100-1]
	was := w.slow
	switch {
	case !w.slow && w.p99 > time.Duration(float64(w.lease)*SlowRaise):
		w.slow = true
	case w.slow && w.p99 <= time.Duration(float64(w.lease)*SlowClear):
		w.slow = false
	}
	return w.slow != was
}

// Verdict returns whether the warning is raised and the p99 of the ages
// at the last judgement.
func (w *SlowWatch) Verdict() (slow bool, p99 time.Duration) { return w.slow, w.p99 }
