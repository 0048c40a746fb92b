package coordinator

import (
	"sync"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
)

// epoch is an arbitrary instant the liveness tests count from.
var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return epoch.Add(d) }

// leaseState registers nodes with the given lease TTLs (ms).
func leaseState(t tb, ttls map[string]int64) *fsm.State {
	t.Helper()
	st := fsm.NewState()
	for _, id := range sortedKeys(ttls) {
		st = mustApply(t, st, &fsm.RegisterNode{Node: id, RaftAddr: id + ":7000", APIAddr: id + ":7001", Voter: true,
			LeaseTTLMillis: ttls[id], Time: t0})
	}
	return st
}

func renew(t tb, st *fsm.State, node string) *fsm.State {
	t.Helper()
	return mustApply(t, st, &fsm.RenewLease{Node: node, Seq: st.Nodes[node].LeaseSeq + 1})
}

func checkLive(t *testing.T, l *Liveness, st *fsm.State, now time.Time, want map[string]bool) {
	t.Helper()
	got := l.Live(st, now)
	if len(got) != len(want) {
		t.Errorf("Live at %v: got %v, want %v", now.Sub(epoch), got, want)
		return
	}
	for id, w := range want {
		if g, ok := got[id]; !ok || g != w {
			t.Errorf("Live at %v: node %s: got %t (present %t), want %t", now.Sub(epoch), id, g, ok, w)
		}
	}
}

func TestLivenessLeaseEndsAfterTTLPlusMargin(t *testing.T) {
	st := leaseState(t, map[string]int64{"n1": 1000, "n2": 2000})
	l := NewLiveness(0.1)
	l.Observe(st, at(0))
	// n1: 1000ms * 1.1 = 1100ms; n2: 2200ms.
	checkLive(t, l, st, at(0), map[string]bool{"n1": true, "n2": true})
	checkLive(t, l, st, at(1099*time.Millisecond), map[string]bool{"n1": true, "n2": true})
	checkLive(t, l, st, at(1100*time.Millisecond), map[string]bool{"n1": false, "n2": true})
	checkLive(t, l, st, at(2199*time.Millisecond), map[string]bool{"n1": false, "n2": true})
	checkLive(t, l, st, at(2200*time.Millisecond), map[string]bool{"n1": false, "n2": false})

	// A renewal seen later extends the lease from the moment it is seen.
	st = renew(t, st, "n1")
	l.Observe(st, at(3*time.Second))
	checkLive(t, l, st, at(3*time.Second+1099*time.Millisecond), map[string]bool{"n1": true, "n2": false})
	checkLive(t, l, st, at(3*time.Second+1100*time.Millisecond), map[string]bool{"n1": false, "n2": false})
}

func TestLivenessZeroMargin(t *testing.T) {
	st := leaseState(t, map[string]int64{"n1": 1000})
	l := NewLiveness(0)
	l.Observe(st, at(0))
	checkLive(t, l, st, at(999*time.Millisecond), map[string]bool{"n1": true})
	checkLive(t, l, st, at(time.Second), map[string]bool{"n1": false})
}

func TestLivenessSameSeqDoesNotExtend(t *testing.T) {
	st := leaseState(t, map[string]int64{"n1": 1000})
	st = renew(t, st, "n1")
	l := NewLiveness(0.1)
	l.Observe(st, at(0))
	// The same state, or another state with the same seq, seen again.
	l.Observe(st, at(500*time.Millisecond))
	st2 := mustApply(t, st, &fsm.RecordEvent{Event: fsm.Event{Kind: fsm.EventOperator, Time: t0}})
	l.Observe(st2, at(1000*time.Millisecond))
	checkLive(t, l, st2, at(1099*time.Millisecond), map[string]bool{"n1": true})
	checkLive(t, l, st2, at(1100*time.Millisecond), map[string]bool{"n1": false})
	if age, ok := l.Age("n1", at(1100*time.Millisecond)); !ok || age != 1100*time.Millisecond {
		t.Errorf("Age: got %v %t, want 1.1s true", age, ok)
	}
	// Re-registering keeps the seq, so it does not extend the lease either.
	st3 := mustApply(t, st2, &fsm.RegisterNode{Node: "n1", RaftAddr: "n1:7000", APIAddr: "n1:7001", Voter: true, LeaseTTLMillis: 1000, Time: t0 + 1})
	l.Observe(st3, at(1050*time.Millisecond))
	checkLive(t, l, st3, at(1100*time.Millisecond), map[string]bool{"n1": false})
}

func TestLivenessAge(t *testing.T) {
	st := leaseState(t, map[string]int64{"n1": 1000})
	l := NewLiveness(0.1)
	if age, ok := l.Age("n1", at(0)); ok || age != 0 {
		t.Errorf("Age before any Observe: got %v %t, want 0 false", age, ok)
	}
	l.Observe(st, at(time.Second))
	if age, ok := l.Age("n1", at(1300*time.Millisecond)); !ok || age != 300*time.Millisecond {
		t.Errorf("Age: got %v %t, want 300ms true", age, ok)
	}
	if age, ok := l.Age("n9", at(1300*time.Millisecond)); ok || age != 0 {
		t.Errorf("Age of an unknown node: got %v %t, want 0 false", age, ok)
	}
	st = renew(t, st, "n1")
	l.Observe(st, at(2*time.Second))
	if age, ok := l.Age("n1", at(2500*time.Millisecond)); !ok || age != 500*time.Millisecond {
		t.Errorf("Age after a renewal: got %v %t, want 500ms true", age, ok)
	}
	l.Reset(at(3 * time.Second))
	if age, ok := l.Age("n1", at(3*time.Second)); !ok || age != 0 {
		t.Errorf("Age right after Reset: got %v %t, want 0 true", age, ok)
	}
}

func TestLivenessNeverObserved(t *testing.T) {
	st := leaseState(t, map[string]int64{"n1": 1000})
	l := NewLiveness(0.1)
	// No Observe and no Reset: nothing is known of n1, so it is not live.
	checkLive(t, l, st, at(0), map[string]bool{"n1": false})
	checkLive(t, l, st, at(time.Hour), map[string]bool{"n1": false})
	// Nodes outside the state are never reported.
	if got := l.Live(fsm.NewState(), at(0)); len(got) != 0 {
		t.Errorf("Live(empty state): got %v, want empty", got)
	}
}

func TestLivenessReset(t *testing.T) {
	l := NewLiveness(0.1)
	// n1 was seen long ago and expired; n2 was seen recently; n3 registered
	// later and was never seen by this tracker.
	st := leaseState(t, map[string]int64{"n1": 1000, "n2": 1000})
	l.Observe(st, at(0))
	st = renew(t, st, "n2")
	l.Observe(st, at(9*time.Second))
	st = mustApply(t, st, &fsm.RegisterNode{Node: "n3", RaftAddr: "n3:7000", APIAddr: "n3:7001", Voter: true, LeaseTTLMillis: 2000, Time: t0})
	checkLive(t, l, st, at(10*time.Second), map[string]bool{"n1": false, "n2": true, "n3": false})
	if _, ok := l.Age("n3", at(10*time.Second)); ok {
		t.Errorf("Age(n3) before it was observed: got ok, want false")
	}

	l.Reset(at(10 * time.Second))
	// Every node gets a full lease from the reset, whatever it had before.
	checkLive(t, l, st, at(10*time.Second+1099*time.Millisecond), map[string]bool{"n1": true, "n2": true, "n3": true})
	checkLive(t, l, st, at(10*time.Second+1100*time.Millisecond), map[string]bool{"n1": false, "n2": false, "n3": true})
	checkLive(t, l, st, at(10*time.Second+2199*time.Millisecond), map[string]bool{"n1": false, "n2": false, "n3": true})
	checkLive(t, l, st, at(10*time.Second+2200*time.Millisecond), map[string]bool{"n1": false, "n2": false, "n3": false})

	// A node first observed after the reset counts from its observation.
	l.Observe(st, at(10*time.Second+500*time.Millisecond))
	checkLive(t, l, st, at(10*time.Second+2699*time.Millisecond), map[string]bool{"n1": false, "n2": false, "n3": true})
	checkLive(t, l, st, at(10*time.Second+2700*time.Millisecond), map[string]bool{"n1": false, "n2": false, "n3": false})

	// A later reset starts the leases again.
	l.Reset(at(20 * time.Second))
	checkLive(t, l, st, at(21*time.Second), map[string]bool{"n1": true, "n2": true, "n3": true})
}

func TestLivenessConcurrentUse(t *testing.T) {
	st := leaseState(t, map[string]int64{"n1": 1000, "n2": 1000})
	l := NewLiveness(0.1)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				now := at(time.Duration(i) * time.Millisecond)
				switch (g + i) % 4 {
				case 0:
					l.Observe(st, now)
				case 1:
					l.Live(st, now)
				case 2:
					l.Age("n1", now)
				case 3:
					l.Reset(now)
				}
			}
		}(g)
	}
	wg.Wait()
	l.Reset(at(time.Second))
	checkLive(t, l, st, at(time.Second), map[string]bool{"n1": true, "n2": true})
}

// A node removed from the node table may still be running (operations.md:
// "Roles it held move when its lease runs out"): while it holds a role it
// keeps the lease last seen here.
func TestLivenessRemovedHolderKeepsItsLease(t *testing.T) {
	st := leaseState(t, map[string]int64{"n1": 1000, "n2": 1000, "n3": 5000})
	st = mustApply(t, st, applySpec(role("web"), role("db")), assign("web", "n1", "", 1))
	l := NewLiveness(0.1)
	l.Observe(st, at(0))
	st = renew(t, st, "n1")
	l.Observe(st, at(500*time.Millisecond))
	st = mustApply(t, st, &fsm.RemoveNode{Node: "n1", Actor: "op", Time: t0}, &fsm.RemoveNode{Node: "n2", Actor: "op", Time: t0})
	l.Observe(st, at(600*time.Millisecond))

	// n1 holds web: live until 500ms + 1.1s. n2 holds nothing: not reported.
	checkLive(t, l, st, at(1599*time.Millisecond), map[string]bool{"n1": true, "n3": true})
	checkLive(t, l, st, at(1600*time.Millisecond), map[string]bool{"n1": false, "n3": true})

	// A new leader's reset gives it a full lease too.
	l.Reset(at(10 * time.Second))
	checkLive(t, l, st, at(11*time.Second), map[string]bool{"n1": true, "n3": true})
	checkLive(t, l, st, at(11100*time.Millisecond), map[string]bool{"n1": false, "n3": true})

	// A removed holder this tracker never saw gets a full lease from the
	// last reset, as long as the longest of the registered nodes' (n3: 5s).
	fresh := NewLiveness(0.1)
	checkLive(t, fresh, st, at(0), map[string]bool{"n1": false, "n3": false})
	fresh.Reset(at(0))
	checkLive(t, fresh, st, at(5499*time.Millisecond), map[string]bool{"n1": true, "n3": true})
	checkLive(t, fresh, st, at(5500*time.Millisecond), map[string]bool{"n1": false, "n3": false})
}
