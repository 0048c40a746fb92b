package coordinator

import (
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/clock/clocktest"
	"github.com/harbormaster/harbormaster/spec"
)

func preemptAfter(r spec.Role, delay string) spec.Role {
	r.Preempt, r.PreemptDelay = true, spec.Dur(delay)
	return r
}

// timersState: web held by n2 since t0 at epoch 2, having been lost by n1
// at t0.
func timersState(t *testing.T, r spec.Role) *fsm.State {
	t.Helper()
	return mustApply(t, fsm.NewState(), reg("n1"), reg("n2"), applySpec(r),
		assign("web", "n1", "", 1), assign("web", "n2", "n1", 2))
}

// An event the leader inherits is credited with what the replicated stamp
// says has passed at the first sighting; from then on, and for events of
// the term, only the monotonic clock counts: wall steps move nothing.
func TestTimersMeasureOnTheMonotonicClock(t *testing.T) {
	st := timersState(t, role("web", "n1:10", "n2", "n3"))
	clk := clocktest.New(time.UnixMilli(t0).Add(10 * time.Second))
	tm := newTimers()
	check := func(when string, held, lost time.Duration) {
		t.Helper()
		el := tm.observe(st, clk.Now(), clk.Mono())
		if el.Held["web"] != held || el.Lost["web"] != lost {
			t.Fatalf("%s: got held %v, lost %v; want %v, %v", when, el.Held["web"], el.Lost["web"], held, lost)
		}
	}
	check("first pass, 10s after the stamps", 10*time.Second, 10*time.Second)
	clk.StepWall(time.Hour)
	check("after a wall step of +1h", 10*time.Second, 10*time.Second)
	clk.StepWall(-2 * time.Hour)
	clk.Advance(time.Second)
	check("after a wall step of -2h and 1s", 11*time.Second, 11*time.Second)

	// n3 takes web during the term; its stamp is an hour off the
	// leader's wall clock (another proposer's clock, or a step): the
	// hold-down of n2 and the holding time of n3 start at the sighting.
	move := assign("web", "n3", "n2", 3)
	move.Time = clk.Now().Add(-time.Hour).UnixMilli()
	st = mustApply(t, st, reg("n3"), move)
	check("a move seen during the term", 0, 0)
	clk.Advance(2 * time.Second)
	check("2s later", 2*time.Second, 2*time.Second)
}

// A leader whose wall clock is behind the stamps it inherits starts their
// timers at its first sighting (it waits longer, never less).
func TestTimersInheritedStampInTheFutureStartsNow(t *testing.T) {
	st := timersState(t, role("web", "n1:10", "n2"))
	clk := clocktest.New(time.UnixMilli(t0).Add(-time.Hour))
	tm := newTimers()
	if el := tm.observe(st, clk.Now(), clk.Mono()); el.Held["web"] != 0 || el.Lost["web"] != 0 {
		t.Fatalf("stamps an hour ahead of the leader: got %+v, want both 0", el)
	}
}

// Plan measures preempt_delay and hold_down with Elapsed when it is set,
// whatever Now says against the replicated stamps.
func TestPlanTimersUseElapsed(t *testing.T) {
	preempting := timersState(t, preemptAfter(role("web", "n1:10", "n2"), "30s"))
	holding := timersState(t, withHoldDown(preemptAfter(role("web", "n1:10", "n2"), "0s"), "30s"))
	for _, tc := range []struct {
		name    string
		st      *fsm.State
		now     int64
		elapsed time.Duration
		want    int
	}{
		{"preempt: wall 1h on, 29s held", preempting, t0 + time.Hour.Milliseconds(), 29 * time.Second, 0},
		{"preempt: wall 1h back, 30s held", preempting, t0 - time.Hour.Milliseconds(), 30 * time.Second, 1},
		{"hold_down: wall 1h on, lost 29s ago", holding, t0 + time.Hour.Milliseconds(), 29 * time.Second, 0},
		{"hold_down: wall 1h back, lost 30s ago", holding, t0 - time.Hour.Milliseconds(), 30 * time.Second, 1},
	} {
		el := &Elapsed{Held: map[string]time.Duration{"web": tc.elapsed}, Lost: map[string]time.Duration{"web": tc.elapsed}}
		got := Plan(Input{State: tc.st, Live: liveOn("n1", "n2"), Now: tc.now, Elapsed: el, Actor: planActor})
		if len(got) != tc.want {
			t.Errorf("%s: got %q, want %d command(s)", tc.name, describeAll(got), tc.want)
		}
	}
}

// The leader's wall clock steps an hour on, then two hours back: the
// preemption (preempt) or the end of the hold-down (hold_down) that lets
// the preferred n1 take web back comes neither early nor never, exactly
// when the monotonic clock says.
func TestRunWallStepsMoveNoTimer(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    spec.Role
	}{
		{"preempt_delay", preemptAfter(role("web", "n1:10", "n2"), "30s")},
		{"hold_down", withHoldDown(preemptAfter(role("web", "n1:10", "n2"), "0s"), "30s")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktest.New(time.UnixMilli(t0))
			r := newFakeRaft(t, reg("n1"), reg("n2"), applySpec(tc.r),
				assign("web", "n1", "", 1), assign("web", "n2", "n1", 2))
			l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11, "n2": 21}))
			rn := start(t, newCoordinator(r, l, Config{Clock: clk}))
			rn.send(t, true)
			quiet := func(when string) {
				t.Helper()
				passes(t, r, 3)
				if a := r.state().Assignment("web"); a.Releasing || a.Holder != "n2" {
					t.Fatalf("%s: web %+v, want held by n2 and not asked to release", when, a)
				}
			}
			quiet("at once")
			clk.StepWall(time.Hour)
			quiet("after a wall step of +1h")
			clk.Advance(29 * time.Second)
			quiet("29s on")
			clk.StepWall(-2 * time.Hour)
			quiet("after a wall step of -2h")
			clk.Advance(time.Second)
			waitFor(t, "a release request for web towards n1", func() bool {
				a := r.state().Assignment("web")
				return a.Releasing && a.MoveTo == "n1"
			})
		})
	}
}

// A node's graceful stop is timed from the leader's first sighting of it
// when it begins during the term; one already under way when the leader
// took office counts as long past (its release request is not held back).
func TestTimersLeaving(t *testing.T) {
	st := timersState(t, role("web", "n1:10", "n2", "n3"))
	clk := clocktest.New(time.UnixMilli(t0).Add(10 * time.Second))
	tm := newTimers()
	if el := tm.observe(st, clk.Now(), clk.Mono()); len(el.Leaving) != 0 {
		t.Fatalf("no node leaving: Leaving %v", el.Leaving)
	}
	st = mustApply(t, st, leave("n2"))
	if d := tm.observe(st, clk.Now(), clk.Mono()).Leaving["n2"]; d != 0 {
		t.Fatalf("leave seen during the term: %v, want 0", d)
	}
	clk.Advance(1500 * time.Millisecond)
	if d := tm.observe(st, clk.Now(), clk.Mono()).Leaving["n2"]; d != 1500*time.Millisecond {
		t.Fatalf("1.5s later: %v", d)
	}
	if d := newTimers().observe(st, clk.Now(), clk.Mono()).Leaving["n2"]; d < leaveGrace {
		t.Fatalf("a leave inherited by a new leader: %v, want at least leaveGrace", d)
	}
}
