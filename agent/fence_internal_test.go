package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/clock/clocktest"
)

// The self-fence runs on the monotonic clock: wall steps of +1h and -2h
// neither end it early nor make it last; it ends exactly two leases and a
// renewal after it began.
func TestFenceIgnoresWallSteps(t *testing.T) {
	clk := clocktest.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	propose := func(context.Context, fsm.Command) (uint64, error) { return 0, nil }
	a := &Agent{cfg: &config.Config{NodeID: "n1"}, clock: clk, log: log, events: newRecorder(propose, log), releaseWake: make(chan struct{}, 1),
		timing: config.Timing{Lease: 2 * time.Second, Renew: 500 * time.Millisecond}}
	want := func(when string, fenced bool) {
		t.Helper()
		if got := a.fenced(); got != fenced {
			t.Fatalf("%s: fenced() = %v, want %v", when, got, fenced)
		}
	}
	want("before any fence", false)
	clk.Advance(time.Minute)
	a.fenceSelf("test")
	want("at the fence", true)
	clk.StepWall(time.Hour)
	want("after a wall step of +1h", true)
	clk.Advance(4499 * time.Millisecond)
	clk.StepWall(-2 * time.Hour)
	want("4.499s in, after a wall step of -2h", true)
	clk.Advance(time.Millisecond)
	want("4.5s in (two leases and a renewal)", false)
}
