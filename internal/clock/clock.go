// Package clock separates the two clocks a node reads: the wall clock, for
// the times it stamps on commands, events and logs, and the monotonic clock,
// for its safety timers (self-fence, watchdog, hold_down, preempt_delay). The
// wall clock may step (an operator, NTP, a VM resumed from a snapshot); the
// monotonic one never does, so a timer measured on it neither fires early
// nor stalls when the wall clock jumps.
//
// Go's time.Time from time.Now carries a monotonic reading, but it is lost
// by every round trip through an integer (UnixNano, UnixMilli, time.Unix),
// by Round(0) and by times read from the replicated state. Mono readings
// are plain durations: they survive being stored in an atomic integer.
package clock

import "time"

// Clock reads the wall clock and the monotonic clock. Implementations are
// safe for concurrent use.
type Clock interface {
	// Now is the wall clock: for timestamps that leave the process. It
	// may step forward or back; never measure a safety timer with it.
	Now() time.Time
	// Mono is the time elapsed on the monotonic clock since a fixed
	// origin of this Clock (>= 0, never decreasing). Only differences of
	// readings of the same Clock mean anything.
	Mono() time.Duration
}

// System returns the machine's clocks; its Mono origin is the call.
func System() Clock { return system{origin: time.Now()} }

type system struct{ origin time.Time }

func (system) Now() time.Time { return time.Now() }

// Mono uses time.Since, which reads the monotonic clock because origin
// carries a monotonic reading.
func (s system) Mono() time.Duration { return time.Since(s.origin) }
