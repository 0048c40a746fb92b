package agent

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/leasing"
	"github.com/harbormaster/harbormaster/fsm"
)

// The timing warning is recorded once when raised and once when cleared,
// not per renewal; the gauge and the status text follow it, and the text
// names the fix.
func TestTimingWarnRecordsTransitionsOnly(t *testing.T) {
	const lease = 200 * time.Millisecond
	var events []fsm.Event
	gauge := -1.0
	w := &timingWarn{profile: "fast", lease: lease, log: slog.New(slog.DiscardHandler), node: "n1",
		record: func(e fsm.Event) { events = append(events, e) }, gauge: func(v float64) { gauge = v },
		watch: leasing.NewSlowWatch(lease)}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	feed := func(n int, age time.Duration) {
		for range n {
			now = now.Add(50 * time.Millisecond)
			w.observe(now, age)
		}
	}
	feed(600, 55*time.Millisecond)
	if len(events) != 0 || w.current() != "" {
		t.Fatalf("healthy: events %v, warning %q", events, w.current())
	}
	feed(1200, 150*time.Millisecond) // a minute of slow renewals
	if len(events) != 1 || events[0].Kind != fsm.EventTiming || events[0].New != "slow" || events[0].Node != "n1" || gauge != 1 {
		t.Fatalf("slow: events %+v, gauge %v; want one timing event ok -> slow and the gauge at 1", events, gauge)
	}
	msg := w.current()
	for _, want := range []string{"fast profile", "150ms", "`profile: lan`", "docs/troubleshooting.md"} {
		if !strings.Contains(msg, want) || !strings.Contains(events[0].Message, want) {
			t.Errorf("warning %q (event %q) does not say %q", msg, events[0].Message, want)
		}
	}
	feed(1200, 55*time.Millisecond)
	if len(events) != 2 || events[1].New != "ok" || gauge != 0 || w.current() != "" {
		t.Fatalf("recovered: events %+v, gauge %v, warning %q; want a second event slow -> ok", events, gauge, w.current())
	}
}
