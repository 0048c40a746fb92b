package agent

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/fsm"
)

// TestEventRecorderBounds: the recorder cuts an event's text to the log's
// bounds and keeps at most eventQueueBytes waiting, dropping (and
// counting) the rest; a proposed event frees its bytes.
func TestEventRecorderBounds(t *testing.T) {
	var proposed []*fsm.RecordEvent
	r := newRecorder(func(_ context.Context, c fsm.Command) (uint64, error) {
		if _, err := fsm.Encode(c); err != nil {
			t.Errorf("the recorder proposed an event that does not encode: %v", err)
		}
		proposed = append(proposed, c.(*fsm.RecordEvent))
		return 1, nil
	}, slog.New(slog.DiscardHandler))

	big := fsm.Event{Kind: fsm.EventService, Node: "n1", Message: strings.Repeat("m", 3*fsm.MaxEventMessage)}
	per := fsm.EventSize(big.Bounded())
	fits := eventQueueBytes / per
	if fits >= eventQueue {
		t.Fatalf("test setup: %d events of %d bytes fit the byte bound; want fewer than the count bound %d", fits, per, eventQueue)
	}
	for range fits + 5 {
		r.Record(big)
	}
	if got := len(r.ch); got != fits {
		t.Fatalf("events queued: %d, want %d (%d bytes of %d each)", got, fits, eventQueueBytes, per)
	}
	if got := r.Dropped(); got != 5 {
		t.Fatalf("events dropped: %d, want 5", got)
	}
	r.one(context.Background(), <-r.ch)
	if got := proposed[0].Event.Message; len(got) != fsm.MaxEventMessage {
		t.Fatalf("proposed message: %d bytes, want it cut to %d", len(got), fsm.MaxEventMessage)
	}
	// The proposed event's bytes are free again.
	r.Record(big)
	if got := len(r.ch); got != fits {
		t.Fatalf("after one proposed and one recorded: %d queued, want %d", got, fits)
	}
	if got := r.Dropped(); got != 5 {
		t.Fatalf("events dropped after a place freed: %d, want 5", got)
	}
}
