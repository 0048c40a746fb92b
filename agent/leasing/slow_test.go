package leasing

import (
	"testing"
	"time"
)

// feed observes n renewals of age, one every 50 ms from *t on, and returns
// the changes it saw.
func feed(w *SlowWatch, t *time.Time, n int, age time.Duration) (changes int) {
	for range n {
		*t = t.Add(50 * time.Millisecond)
		if w.Observe(*t, age) {
			changes++
		}
	}
	return changes
}

func TestSlowWatch(t *testing.T) {
	const lease = 200 * time.Millisecond
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	w := NewSlowWatch(lease)

	// A machine that keeps up: ages of one renew interval plus a little.
	if c := feed(w, &now, 600, 55*time.Millisecond); c != 0 {
		t.Fatalf("healthy renewals: %d changes", c)
	}
	if slow, p99 := w.Verdict(); slow || p99 != 55*time.Millisecond {
		t.Fatalf("healthy: slow %t p99 %s", slow, p99)
	}
	// Fewer than 1 % of the renewals late: one outlier is not a verdict.
	if c := feed(w, &now, 1, 150*time.Millisecond) + feed(w, &now, 200, 55*time.Millisecond); c != 0 {
		t.Fatalf("one late renewal: %d changes", c)
	}
	// 2 % of the renewals past half the lease: raised once, not per
	// renewal.
	changes := 0
	for range 30 {
		changes += feed(w, &now, 1, 120*time.Millisecond)
		changes += feed(w, &now, 49, 55*time.Millisecond)
	}
	if slow, p99 := w.Verdict(); !slow || p99 != 120*time.Millisecond || changes != 1 {
		t.Fatalf("2%% late: slow %t p99 %s after %d changes; want raised once, p99 120ms", slow, p99, changes)
	}
	// Between the clear and the raise point: it stays raised.
	if c := feed(w, &now, 700, 90*time.Millisecond); c != 0 {
		t.Fatalf("p99 at 0.45 of the lease: %d changes, want it kept raised", c)
	}
	// Back under the clear point for a whole window: cleared once.
	if c := feed(w, &now, 700, 55*time.Millisecond); c != 1 {
		t.Fatalf("recovered: %d changes, want 1", c)
	}
	if slow, _ := w.Verdict(); slow {
		t.Fatal("recovered: still slow")
	}
}

// Too few renewals in the window (a node just started, or mostly cut
// off) give no verdict either way.
func TestSlowWatchNeedsSamples(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	w := NewSlowWatch(200 * time.Millisecond)
	for range slowMinSamples - 1 {
		now = now.Add(2 * time.Second)
		if w.Observe(now, time.Second) {
			t.Fatal("raised on too few samples")
		}
	}
}
