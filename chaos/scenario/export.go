package scenario

import (
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
)

// Exported views of the scenario analysis, so that other lab drivers (the
// keepalived baseline of chaos/keepalived, for chaos/cmd/bench-vip) measure
// with exactly the same code as the harbormaster scenarios.

const (
	// SamplePeriod is the kernel sampler's period the scenarios use.
	SamplePeriod = samplePeriod
	// VIPPort is the port of the stand-in service behind the VIP.
	VIPPort = vipPort
	// ClientHost is the lab host the prober runs in.
	ClientHost = client
	// After is how long a trial keeps observing once the client reaches
	// the new holder.
	After = after
)

// Outage is the longest time without a successful connect in a window
// (see MeasureOutage).
type Outage = outage

// MeasureOutage is the scenarios' client-visible outage: the longest gap
// between successful connects within [from, to], counted from the last
// success before from.
func MeasureOutage(attempts []Attempt, from, to time.Time) Outage {
	return measureOutage(attempts, from, to)
}

// DualHolders returns the longest run of samples showing two or more
// holders (plus one period) and one S1 message per run.
func DualHolders(samples []lab.Sample, period time.Duration) (time.Duration, []string) {
	return dualHolders(samples, period)
}

// OffWindow is a time during which a node was powered off (lab.Crash until
// lab.Restore; End zero while still off).
type OffWindow struct {
	Node       string
	Start, End time.Time
}

// ExcludeOff masks powered-off nodes from the samples, as the scenarios do.
func ExcludeOff(samples []lab.Sample, off []OffWindow) []lab.Sample {
	ws := make([]offWindow, len(off))
	for i, w := range off {
		ws[i] = offWindow{node: w.Node, start: w.Start, end: w.End}
	}
	return excludeOff(samples, ws)
}

// Summarize computes the nearest-rank p50/p99/max the scenarios report.
func Summarize(vals []float64) Stats { return summarize(vals) }

// Aggregate fills a Result's summary fields (outage stats, dual holder,
// figures, violations, OK) from its PerTrial records, as Run does; it sets
// no targets.
func Aggregate(r Result) Result { return finish(r, scenario{}) }

// Figure records a named figure on the trial.
func (t *Trial) Figure(name string, v float64) { t.figure(name, v) }

// Violate records an invariant violation on the trial.
func (t *Trial) Violate(format string, args ...any) { t.violate(format, args...) }

// Note records a note on the trial.
func (t *Trial) Note(format string, args ...any) { t.note(format, args...) }

// Ms converts a duration to milliseconds as the scenarios report them.
func Ms(d time.Duration) float64 { return msf(d) }

// Stamp formats a time as the scenarios' messages do.
func Stamp(t time.Time) string { return stamp(t) }
