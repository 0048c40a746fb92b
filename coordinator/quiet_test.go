package coordinator

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/lease"
)

// recentLeases is fakeLeases that also answers Recent with what the test
// sets (the aged round, this node's own view, the round's age), counting
// the calls.
type recentLeases struct {
	*fakeLeases

	mu     sync.Mutex
	recent lease.Majority
	own    lease.View
	age    time.Duration
	calls  int
}

func (l *recentLeases) Recent(time.Time) (lease.Majority, lease.View, time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	return l.recent, l.own, l.age, true
}

func (l *recentLeases) setRecent(m lease.Majority, own lease.View, age time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recent, l.own, l.age = m, own, age
}

func (l *recentLeases) recentCalls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// ticks waits until the coordinator has made n more passes, quiet or not.
func (l *recentLeases) ticks(t *testing.T, n int) {
	t.Helper()
	c0 := l.recentCalls()
	waitFor(t, "more ticks", func() bool { return l.recentCalls() >= c0+n })
}

// quietSetup is three registered nodes, web held by n2, every lease
// running, and a coordinator with Quiet set whose first pass has asked
// the voters.
func quietSetup(t *testing.T) (*fakeRaft, *recentLeases) {
	t.Helper()
	r := newFakeRaft(t, reg("n1"), reg("n2"), reg("n3"), applySpec(role("web", "n2", "n3")), assign("web", "n2", "", 1))
	r.members = []string{"n1", "n2", "n3"}
	all := allRunning(liveOn("n1", "n2", "n3"))
	l := &recentLeases{fakeLeases: newFakeLeases(r, all)}
	l.setRecent(all, all.Views[0], 10*time.Millisecond)
	c := newCoordinator(r, l.fakeLeases, Config{Quiet: time.Second})
	c.leases = l // the RecentLeases
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "the first pass to ask the voters", func() bool { return r.count("majority") >= 1 })
	return r, l
}

// quietAfter checks that n ticks ask the voters no more.
func quietAfter(t *testing.T, r *fakeRaft, l *recentLeases, n int, what string) {
	t.Helper()
	l.ticks(t, 2) // a pass that began before the change may still end by asking
	m0 := r.count("majority")
	l.ticks(t, n)
	if got := r.count("majority") - m0; got != 0 {
		t.Fatalf("%s: the voters were asked %d times in %d ticks, want none", what, got, n)
	}
}

func TestQuietTicksAskNoVoterWhileNothingChanges(t *testing.T) {
	r, l := quietSetup(t)
	quietAfter(t, r, l, 20, "nothing changed")
	if ps := r.proposed(); len(ps) != 1 {
		t.Fatalf("proposals: got %q, want only the leadership event", describeAll(ps))
	}
}

func TestQuietTickAsksTheVotersWhenAnythingMayNeedDoing(t *testing.T) {
	all := allRunning(liveOn("n1", "n2", "n3"))
	n2Ended := allRunning(liveOn("n1", "n3"))
	for _, v := range n2Ended.Views {
		v.Nodes["n2"] = grantOver(gen1("n2"))
	}
	newcomer := voterView(map[string]lease.GrantView{"n1": grantRunning(gen1("n1")), "n2": grantRunning(gen1("n2")),
		"n3": grantRunning(gen1("n3")), "n4": grantRunning(gen1("n4"))})
	for _, tc := range []struct {
		name   string
		recent lease.Majority
		own    lease.View
		age    time.Duration
		state  fsm.Command // applied as another node's command, when set
	}{
		{name: "the round is as old as Quiet", recent: all, own: all.Views[0], age: time.Second},
		{name: "the holder's lease ran out in the aged round", recent: n2Ended, own: all.Views[0], age: 10 * time.Millisecond},
		{name: "this voter grants a lease the round did not show", recent: all, own: newcomer, age: 10 * time.Millisecond},
		{name: "the state changed", recent: all, own: all.Views[0], age: 10 * time.Millisecond, state: reg("n4")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, l := quietSetup(t)
			quietAfter(t, r, l, 5, "before the change")
			m0 := r.count("majority")
			l.setRecent(tc.recent, tc.own, tc.age)
			if tc.state != nil {
				if err := r.apply(tc.state); err != nil {
					t.Fatal(err)
				}
			}
			l.ticks(t, 3)
			if r.count("majority") == m0 {
				t.Fatalf("the voters were not asked again")
			}
		})
	}
}

// An aged round may show a lease ended that a renewal extended since: the
// coordinator asks the voters, and acts only on what they answer.
func TestQuietTickActsOnlyOnFreshAnswers(t *testing.T) {
	r, l := quietSetup(t)
	n2Ended := allRunning(liveOn("n1", "n3"))
	for _, v := range n2Ended.Views {
		v.Nodes["n2"] = grantOver(gen1("n2"))
	}
	l.setRecent(n2Ended, n2Ended.Views[0], 10*time.Millisecond)
	passes(t, r, 10) // the voters say n2's lease runs
	if a := r.state().Assignment("web"); a.Holder != "n2" || a.Epoch != 1 {
		t.Fatalf("web with n2's lease running: got %+v, want n2 at epoch 1", a)
	}
	if ps := r.proposed(); len(ps) != 1 {
		t.Fatalf("proposals: got %q, want only the leadership event", describeAll(ps))
	}
	// The voters now say it ended: it moves, and Detected dates the pass
	// that saw it.
	l.set(n2Ended)
	waitFor(t, "web on n3", holds(r, "web", "n3", gen1("n3"), 2))
}

// Without Quiet, or with Leases that keep no round, every tick asks.
func TestNoQuietTicksWithoutQuiet(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"), reg("n3"), applySpec(role("web", "n2", "n3")), assign("web", "n2", "", 1))
	r.members = []string{"n1", "n2", "n3"}
	all := allRunning(liveOn("n1", "n2", "n3"))
	l := &recentLeases{fakeLeases: newFakeLeases(r, all)}
	l.setRecent(all, all.Views[0], 10*time.Millisecond)
	c := newCoordinator(r, l.fakeLeases, Config{})
	c.leases = l
	rn := start(t, c)
	rn.send(t, true)
	passes(t, r, 10)
	// Recent is read once a pass, for the wake (nextEnd); every pass asks.
	if asked, recent := r.count("majority"), l.recentCalls(); asked < recent-1 {
		t.Fatalf("with Quiet 0: %d passes read Recent, only %d asked the voters; want every pass to ask", recent, asked)
	}
}

// A holder neither live nor surely ended at the last poll (the wait before a
// move) keeps every tick asking: a voter that did not answer then may answer
// now and end it.
func TestQuietTickNotWhileAHolderIsInDoubt(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"), reg("n3"), applySpec(role("web", "n2", "n3")), assign("web", "n2", "", 1))
	r.members = []string{"n1", "n2", "n3"}
	others := map[string]lease.GrantView{"n1": grantRunning(gen1("n1")), "n3": grantRunning(gen1("n3"))}
	with := func(g lease.GrantView) lease.View {
		v := voterView(others)
		v.Nodes["n2"] = g
		return v
	}
	// One voter ended n2's grant, one still runs it, the third did not
	// answer: n2 is neither live nor ended.
	doubt := lease.Majority{Voters: 3, Views: []lease.View{with(grantOver(gen1("n2"))), with(grantRunning(gen1("n2")))}}
	l := &recentLeases{fakeLeases: newFakeLeases(r, doubt)}
	l.setRecent(doubt, doubt.Views[0], 10*time.Millisecond)
	c := newCoordinator(r, l.fakeLeases, Config{Quiet: time.Second})
	c.leases = l
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "the first pass to ask the voters", func() bool { return r.count("majority") >= 1 })
	l.ticks(t, 2)
	m0, t0 := r.count("majority"), l.recentCalls()
	l.ticks(t, 10)
	// A pass reads Recent twice: the quiet check and the wake (nextEnd).
	if asked, ticks := r.count("majority")-m0, (l.recentCalls()-t0)/2; asked < ticks-1 {
		t.Fatalf("the voters were asked %d times in %d ticks with the holder in doubt, want every tick", asked, ticks)
	}
}

// endingLeases are three voters that each grant every node its first
// generation until the node's end time, read at the real clock; Recent
// ages the last Majority's answers by the time since (leasing.Node).
type endingLeases struct {
	r      *fakeRaft
	mu     sync.Mutex
	end    map[string]time.Time
	last   []lease.View
	lastAt time.Time
}

func (l *endingLeases) views(now time.Time) []lease.View {
	var out []lease.View
	for range 3 {
		v := lease.View{SinceGuard: time.Hour, Nodes: map[string]lease.GrantView{}}
		for id, end := range l.end {
			v.Nodes[id] = lease.GrantView{Gen: gen1(id), Remaining: end.Sub(now)}
		}
		out = append(out, v)
	}
	return out
}

func (l *endingLeases) Majority(context.Context) (lease.Majority, error) {
	l.r.record("majority")
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.last, l.lastAt = l.views(now), now
	return lease.Majority{Voters: 3, Views: l.last}, nil
}

func (l *endingLeases) Recent(now time.Time) (lease.Majority, lease.View, time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		return lease.Majority{}, lease.View{}, 0, false
	}
	age := now.Sub(l.lastAt)
	m := lease.Majority{Voters: 3}
	for _, v := range l.last {
		m.Views = append(m.Views, v.Aged(age))
	}
	return m, m.Views[0], age, true
}

// The leader asks the voters when a holder's lease runs out in their last
// answers, not at its next tick: with ticks an hour apart, a lease that
// is not renewed is found ended, and its role moved, within moments of its
// end, and not before it.
func TestLeaderWakesAtAHoldersLeaseEnd(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"), reg("n3"), applySpec(role("web", "n2", "n3")), assign("web", "n2", "", 1))
	r.members = []string{"n1", "n2", "n3"}
	far := time.Now().Add(time.Hour)
	n2End := time.Now().Add(300 * time.Millisecond)
	l := &endingLeases{r: r, end: map[string]time.Time{"n1": far, "n2": n2End, "n3": far}}
	c := newCoordinator(r, nil, Config{Interval: time.Hour, Quiet: time.Hour})
	c.leases = l
	rn := start(t, c)
	rn.send(t, true)
	var moved time.Time
	waitFor(t, "web to move to n3", func() bool {
		if a := r.state().Assignment("web"); a.Holder == "n3" {
			moved = time.Now()
			return true
		}
		return false
	})
	if moved.Before(n2End) {
		t.Fatalf("web moved %v before n2's lease ended", n2End.Sub(moved))
	}
	if late := moved.Sub(n2End); late > time.Second {
		t.Fatalf("web moved %v after n2's lease ended; the next tick was an hour away, so only the wake moves it", late)
	}
	// Idle again: the voters were asked at the start, at the wake (maybe a
	// second time, a millisecond on), and for the move; nothing more.
	m0 := r.count("majority")
	time.Sleep(200 * time.Millisecond)
	if got := r.count("majority") - m0; got != 0 {
		t.Fatalf("the voters were asked %d times in 200 ms after the move with every lease an hour from its end", got)
	}
}
