package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuorumTracker: a lack of quorum is a loss only once it lasts longer
// than the threshold (the start grace until quorum was held once); a loss
// is reported once, and its end once, with when it began.
func TestQuorumTracker(t *testing.T) {
	t0 := time.Unix(1767225600, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	q := newQuorumTracker(t0, 100*time.Millisecond, 500*time.Millisecond)

	// Start: no quorum yet, counted from the start, with the start grace.
	if c, _, _ := q.observe(at(400), false); c != quorumSame {
		t.Fatalf("400 ms after start without quorum: %v, want no change (start grace 500 ms)", c)
	}
	if c, since, atStart := q.observe(at(600), false); c != quorumLost || !since.Equal(t0) || !atStart {
		t.Fatalf("600 ms after start without quorum: %v since %v atStart %v, want lost since the start", c, since, atStart)
	}
	if since, lost := q.Lost(); !lost || !since.Equal(t0) {
		t.Fatalf("Lost() = %v, %v; want lost since the start", since, lost)
	}
	if c, _, _ := q.observe(at(700), false); c != quorumSame {
		t.Fatalf("still without quorum: %v, want no second loss", c)
	}
	if c, since, atStart := q.observe(at(800), true); c != quorumRegained || !since.Equal(t0) || !atStart {
		t.Fatalf("quorum back: %v since %v atStart %v, want regained, lost since the start", c, since, atStart)
	}
	if _, lost := q.Lost(); lost {
		t.Fatal("Lost() after regaining quorum")
	}

	// After quorum was held: a lack shorter than an election is no loss.
	q.observe(at(1000), false)
	if c, _, _ := q.observe(at(1090), false); c != quorumSame {
		t.Fatalf("90 ms without quorum: %v, want no change", c)
	}
	if c, _, _ := q.observe(at(1095), true); c != quorumSame {
		t.Fatalf("quorum back after 95 ms: %v, want no change (it was never lost)", c)
	}
	q.observe(at(2000), false)
	if c, since, atStart := q.observe(at(2101), false); c != quorumLost || !since.Equal(at(2000)) || atStart {
		t.Fatalf("101 ms without quorum: %v since %v atStart %v, want lost since 2000 ms", c, since, atStart)
	}
	if c, since, _ := q.observe(at(3000), true); c != quorumRegained || !since.Equal(at(2000)) {
		t.Fatalf("quorum back: %v since %v, want regained, lost since 2000 ms", c, since)
	}
	if c, _, _ := q.observe(at(3100), true); c != quorumSame {
		t.Fatalf("quorum still there: %v, want no second regain", c)
	}
}

// TestQuorumEvent: the event says when quorum was lost and regained.
func TestQuorumEvent(t *testing.T) {
	t0 := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	e := quorumEvent("n3", t0, t0.Add(90*time.Second), false)
	for _, want := range []string{"lost at 2027-01-02T03:04:05Z", "regained at 2027-01-02T03:05:35Z", "1m30s"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("event message %q lacks %q", e.Message, want)
		}
	}
	if e.Node != "n3" || e.Kind != "quorum" || e.Time != t0.Add(90*time.Second).UnixMilli() {
		t.Errorf("event %+v: want node n3, kind quorum, time of the regain", e)
	}
	if e := quorumEvent("n3", t0, t0.Add(time.Second), true); !strings.Contains(e.Message, "agent's start") {
		t.Errorf("event of a lack since the start: %q does not say so", e.Message)
	}
}

// TestStoreHealthProbe: the probe writes the data dir; a probe file that
// cannot be written (a directory in its place: chmod does not stop root)
// fails it once the cached answer is old enough; a reported fault fails it
// at once and clearing it restores the probe's answer.
func TestStoreHealthProbe(t *testing.T) {
	dir := t.TempDir()
	var fault error
	s := newStoreHealth(dir, func() error { return fault })
	t0 := time.Now()
	if err := s.Err(t0); err != nil {
		t.Fatalf("probe of a writable data dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, storeProbeFile)); err != nil {
		t.Fatalf("the probe wrote no file: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, storeProbeFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, storeProbeFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(t0.Add(storeProbeEvery / 2)); err != nil {
		t.Fatalf("within the probe interval the cached answer is used, got %v", err)
	}
	err := s.Err(t0.Add(storeProbeEvery))
	if err == nil || !strings.Contains(err.Error(), "data_dir not writable") {
		t.Fatalf("probe with a directory in place of the probe file: %v, want data_dir not writable", err)
	}
	if err := os.Remove(filepath.Join(dir, storeProbeFile)); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(t0.Add(2 * storeProbeEvery)); err != nil {
		t.Fatalf("probe after the dir is writable again: %v", err)
	}
	fault = os.ErrPermission
	if err := s.Err(t0.Add(2 * storeProbeEvery)); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("with a reported fault: %v, want it", err)
	}
	fault = nil
	if err := s.Err(t0.Add(2 * storeProbeEvery)); err != nil {
		t.Fatalf("fault cleared: %v", err)
	}
}
