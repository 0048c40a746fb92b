package clock_test

import (
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/clock"
	"github.com/harbormaster/harbormaster/internal/clock/clocktest"
)

func TestSystemMonoStartsAtZeroAndGrows(t *testing.T) {
	c := clock.System()
	a := c.Mono()
	b := c.Mono()
	if a < 0 || b < a {
		t.Fatalf("Mono readings %v then %v: want 0 <= first <= second", a, b)
	}
}

func TestFakeStepWallLeavesMono(t *testing.T) {
	f := clocktest.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	f.Advance(time.Second)
	f.StepWall(-time.Hour)
	if got, want := f.Now(), time.Date(2029, 12, 31, 23, 0, 1, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("Now after Advance(1s), StepWall(-1h): got %v, want %v", got, want)
	}
	if got := f.Mono(); got != time.Second {
		t.Fatalf("Mono after Advance(1s), StepWall(-1h): got %v, want 1s", got)
	}
}
