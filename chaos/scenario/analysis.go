package scenario

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
)

// offWindow is a time during which a node was powered off (lab.Crash until
// lab.Restore).
type offWindow struct {
	node       string
	start, end time.Time // end is zero while the node is still off
}

func (w offWindow) covers(t time.Time) bool {
	return !t.Before(w.start) && (w.end.IsZero() || t.Before(w.end))
}

// excludeOff removes, from every sample taken while a node was powered off,
// that node from the holders. A node crashed with lab.Crash has its switch
// port down and every process killed: it is a machine without power, whose
// kernel state (the VIP still configured until its lifetime runs out) no one
// can reach, and which will not have it when it boots again. Counting it as a
// holder would report a dual holder that no client and no peer can observe.
// The window opens just before lab.Crash is called and closes when
// lab.Restore is called; the scenarios check separately that the address
// left the crashed node's kernel before it was restored.
func excludeOff(samples []lab.Sample, off []offWindow) []lab.Sample {
	if len(off) == 0 {
		return samples
	}
	out := make([]lab.Sample, 0, len(samples))
	for _, s := range samples {
		var hs []string
		for _, h := range s.Holders {
			masked := false
			for _, w := range off {
				if w.node == h && w.covers(s.At) {
					masked = true
					break
				}
			}
			if !masked {
				hs = append(hs, h)
			}
		}
		out = append(out, lab.Sample{At: s.At, Holders: hs})
	}
	return out
}

// between returns the samples taken in [from, to].
func between(samples []lab.Sample, from, to time.Time) []lab.Sample {
	var out []lab.Sample
	for _, s := range samples {
		if !s.At.Before(from) && !s.At.After(to) {
			out = append(out, s)
		}
	}
	return out
}

// dualHolders returns S1 violations in samples (already filtered) and the
// longest overlap. A run of n samples showing two holders counts as
// End-Start plus one sampling period: each sample stands for one period, so
// a single sample is reported as one period, never as 0.
func dualHolders(samples []lab.Sample, period time.Duration) (longest time.Duration, violations []string) {
	_, ivs := lab.DualHolder(samples)
	for _, iv := range ivs {
		d := iv.Duration() + period
		longest = max(longest, d)
		violations = append(violations, fmt.Sprintf("S1: address on %s at once from %s to %s (%d samples, ~%s)",
			strings.Join(iv.Holders, "+"), stamp(iv.Start), stamp(iv.End), iv.Samples, ms(d)))
	}
	return longest, violations
}

// firstSample returns the first sample at or after t satisfying pred.
func firstSample(samples []lab.Sample, t time.Time, pred func(lab.Sample) bool) (lab.Sample, bool) {
	for _, s := range samples {
		if !s.At.Before(t) && pred(s) {
			return s, true
		}
	}
	return lab.Sample{}, false
}

func holds(s lab.Sample, node string) bool { return slices.Contains(s.Holders, node) }

func soleHolder(s lab.Sample) string {
	if len(s.Holders) == 1 {
		return s.Holders[0]
	}
	return ""
}

// moves counts changes from one sole holder to another (a time without
// holder in between does not count as a move by itself), drops (the
// address went from held to held by nobody), and the total time nobody
// held the address, in samples.
func moves(samples []lab.Sample) (n, drops int, holderless time.Duration, timeline []string) {
	last := ""
	for i, s := range samples {
		if len(s.Holders) == 0 && i > 0 {
			holderless += s.At.Sub(samples[i-1].At)
			if len(samples[i-1].Holders) > 0 {
				drops++
				timeline = append(timeline, fmt.Sprintf("%s %s->nobody", stamp(s.At), strings.Join(samples[i-1].Holders, "+")))
			}
		}
		h := soleHolder(s)
		if h == "" {
			continue
		}
		if last != "" && h != last {
			n++
			timeline = append(timeline, fmt.Sprintf("%s %s->%s", stamp(s.At), last, h))
		}
		last = h
	}
	return n, drops, holderless, timeline
}

// outage is the longest time, within [from, to], without a successful
// connect: the gaps between the starts of consecutive successful attempts,
// starting from the last success before from, and the tail up to to when
// the last success is older. With a 10 ms probe period the figure includes
// up to one period of sampling.
type outage struct {
	Longest    time.Duration
	Start, End time.Time // the longest gap
	Failures   int       // failed attempts in the window
	Successes  int
}

func measureOutage(attempts []Attempt, from, to time.Time) outage {
	var o outage
	prev := from
	for _, a := range attempts {
		if a.OK && a.Start.Before(from) {
			prev = a.Start
		}
	}
	for _, a := range attempts {
		if a.Start.Before(from) || a.Start.After(to) {
			continue
		}
		if !a.OK {
			o.Failures++
			continue
		}
		o.Successes++
		if g := a.Start.Sub(prev); g > o.Longest {
			o.Longest, o.Start, o.End = g, prev, a.Start
		}
		prev = a.Start
	}
	if g := to.Sub(prev); g > o.Longest {
		o.Longest, o.Start, o.End = g, prev, to
	}
	return o
}

// firstSuccess returns the first successful attempt started at or after t
// and answered by a node accepted by pred.
func firstSuccess(attempts []Attempt, t time.Time, pred func(node string) bool) (Attempt, bool) {
	for _, a := range attempts {
		if a.OK && !a.Start.Before(t) && pred(a.Node) {
			return a, true
		}
	}
	return Attempt{}, false
}

// Stats summarises one figure over the trials, in milliseconds (or a plain
// count for counted figures).
type Stats struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

// summarize computes nearest-rank percentiles.
func summarize(vals []float64) Stats {
	if len(vals) == 0 {
		return Stats{}
	}
	v := slices.Clone(vals)
	slices.Sort(v)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(v)))) - 1
		return v[max(i, 0)]
	}
	return Stats{P50: rank(0.50), P99: rank(0.99), Max: v[len(v)-1], N: len(v)}
}

func msf(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", msf(d)) }

// stamp formats a time for violation messages: wall clock with
// milliseconds.
func stamp(t time.Time) string { return t.Format("15:04:05.000") }
