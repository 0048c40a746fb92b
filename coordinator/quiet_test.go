package coordinator

import (
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
	if n := l.recentCalls(); n != 0 {
		t.Fatalf("Recent called %d times with Quiet 0, want 0", n)
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
	if asked, ticks := r.count("majority")-m0, l.recentCalls()-t0; asked < ticks-1 {
		t.Fatalf("the voters were asked %d times in %d ticks with the holder in doubt, want every tick", asked, ticks)
	}
}
