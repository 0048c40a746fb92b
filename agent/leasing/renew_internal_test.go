package leasing

import (
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/clock/clocktest"
)

// The watchdog's sign of life is measured on the monotonic clock: wall
// steps neither age the last renewal pass (a live agent restarted by
// systemd) nor make it young (a wedged agent that keeps pinging).
func TestSinceRenewIgnoresWallSteps(t *testing.T) {
	clk := clocktest.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	n := &Node{clock: clk}
	clk.Advance(time.Minute)
	n.markRenew()
	clk.StepWall(time.Hour)
	if got := n.SinceRenew(); got != 0 {
		t.Fatalf("after a wall step of +1h: SinceRenew() = %v, want 0", got)
	}
	clk.Advance(3 * time.Second)
	clk.StepWall(-2 * time.Hour)
	if got := n.SinceRenew(); got != 3*time.Second {
		t.Fatalf("3s on, after a wall step of -2h: SinceRenew() = %v, want 3s", got)
	}
}
