// Package clocktest is a fake clock.Clock whose wall clock can be stepped
// while its monotonic clock runs on (or stands still), the way a real wall
// step looks to a process.
package clocktest

import (
	"sync"
	"time"
)

// Fake is a clock.Clock under the test's control: both clocks stand still
// until Advance moves them together; StepWall moves the wall clock alone.
// Safe for concurrent use.
type Fake struct {
	mu   sync.Mutex
	wall time.Time
	mono time.Duration
}

// New returns a fake whose wall clock reads wall and whose Mono reads 0.
func New(wall time.Time) *Fake { return &Fake{wall: wall.Round(0)} }

// Now returns the wall clock, without a monotonic reading (so that Sub
// and Before on it see the wall clock, steps included).
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wall
}

// Mono returns the monotonic clock.
func (f *Fake) Mono() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mono
}

// Advance lets d pass: both clocks move by d (d >= 0).
func (f *Fake) Advance(d time.Duration) {
	if d < 0 {
		panic("clocktest: Advance with a negative duration; use StepWall")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wall = f.wall.Add(d)
	f.mono += d
}

// StepWall steps the wall clock by d (forward or back); Mono does not move.
func (f *Fake) StepWall(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wall = f.wall.Add(d)
}
