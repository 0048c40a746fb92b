package scenario

import (
	"fmt"
	"math"
)

// The soak's verdict on one series: does it stay flat, or grow?
//
// A series is judged after its warm-up: only the points in the second half
// of its time span count (caches, connection pools and the Go heap fill
// during the first). A least-squares line through those points gives the
// slope and its standard error; both are extrapolated to 24 h. Then:
//
//   - flat: the slope per day is at most the series' bound;
//   - growing: the slope per day is above the bound and significantly
//     above zero: slope − 3 standard errors > 0 (a flat series with
//     independent noise passes that by chance about once in 300; the soak
//     judges 15 series with 3 nodes, so 2 standard errors, once in 40,
//     would call a flat cluster leaking one run in three);
//   - inconclusive: above the bound, but within three standard errors of
//     zero: noise the run was too short to tell from a leak;
//   - too-short: fewer than MinJudgePoints points after the warm-up.
//
// The bounds (SoakBounds) are what a leak would cost in a day of service:
// 10 MiB of RSS, one goroutine or one open file an hour, one percentage
// point of a core, 10 MiB of Raft log.

// Verdict outcomes.
const (
	VerdictFlat         = "flat"
	VerdictGrowing      = "growing"
	VerdictInconclusive = "inconclusive"
	VerdictTooShort     = "too-short"
	// VerdictPreSnapshot is the Raft log's growth before its first
	// snapshot, while it is shorter than a snapshot keeps (judgeRaftLog).
	VerdictPreSnapshot = "pre-snapshot"
)

// sigmas is how many standard errors above zero a slope must be to count
// as growing.
const sigmas = 3

// MinJudgePoints is the fewest points after the warm-up a verdict needs.
const MinJudgePoints = 4

// day is the horizon slopes are extrapolated to, in seconds.
const day = 86400.0

// Point is one value of a series at T seconds from the start of the run.
type Point struct {
	T float64 `json:"t_s"`
	V float64 `json:"v"`
}

// Judgement is the verdict on one series.
type Judgement struct {
	Verdict string `json:"verdict"`
	// Points is the number of points judged (after the warm-up), From and
	// To their first and last time (s from the start of the run).
	Points int     `json:"points"`
	From   float64 `json:"from_s"`
	To     float64 `json:"to_s"`
	// Start and End are the first and last values of the whole series.
	Start float64 `json:"start"`
	End   float64 `json:"end"`
	// SlopePerDay is the least-squares slope after the warm-up,
	// extrapolated to 24 h, SEPerDay its standard error.
	SlopePerDay float64 `json:"slope_per_day"`
	SEPerDay    float64 `json:"se_per_day"`
	// Bound is the largest slope per day that counts as flat.
	Bound float64 `json:"bound_per_day"`
	Why   string  `json:"why"`
}

// Judge judges a series (points in time order) against bound, the largest
// growth per day that counts as flat. It is pure.
func Judge(pts []Point, bound float64) Judgement {
	j := Judgement{Bound: bound, Verdict: VerdictTooShort}
	if len(pts) == 0 {
		j.Why = "no points"
		return j
	}
	j.Start, j.End = pts[0].V, pts[len(pts)-1].V
	mid := pts[0].T + (pts[len(pts)-1].T-pts[0].T)/2
	var tail []Point
	for _, p := range pts {
		if p.T >= mid {
			tail = append(tail, p)
		}
	}
	j.Points = len(tail)
	if len(tail) > 0 {
		j.From, j.To = tail[0].T, tail[len(tail)-1].T
	}
	if len(tail) < MinJudgePoints {
		j.Why = fmt.Sprintf("%d points after the warm-up, %d needed", len(tail), MinJudgePoints)
		return j
	}
	slope, se := fitLine(tail)
	j.SlopePerDay, j.SEPerDay = slope*day, se*day
	switch {
	case j.SlopePerDay <= bound:
		j.Verdict = VerdictFlat
		j.Why = fmt.Sprintf("slope %s/day <= bound %s/day", num(j.SlopePerDay), num(bound))
	case j.SlopePerDay-sigmas*j.SEPerDay > 0:
		j.Verdict = VerdictGrowing
		j.Why = fmt.Sprintf("slope %s/day > bound %s/day, and > 0 by more than %d standard errors (%s)", num(j.SlopePerDay), num(bound), sigmas, num(j.SEPerDay))
	default:
		j.Verdict = VerdictInconclusive
		j.Why = fmt.Sprintf("slope %s/day > bound %s/day, but within %d standard errors (%s) of 0: noise or a slow leak; run longer", num(j.SlopePerDay), num(bound), sigmas, num(j.SEPerDay))
	}
	return j
}

// fitLine returns the least-squares slope of v over t and its standard
// error (0 when the points lie on the line or are too few to tell).
func fitLine(pts []Point) (slope, se float64) {
	n := float64(len(pts))
	var mt, mv float64
	for _, p := range pts {
		mt += p.T
		mv += p.V
	}
	mt, mv = mt/n, mv/n
	var stt, stv float64
	for _, p := range pts {
		stt += (p.T - mt) * (p.T - mt)
		stv += (p.T - mt) * (p.V - mv)
	}
	if stt == 0 {
		return 0, 0
	}
	slope = stv / stt
	if len(pts) <= 2 {
		return slope, 0
	}
	var sse float64
	for _, p := range pts {
		r := p.V - (mv + slope*(p.T-mt))
		sse += r * r
	}
	return slope, math.Sqrt(sse / (n - 2) / stt)
}

// num prints a figure compactly.
func num(v float64) string {
	if math.Abs(v) >= 100 || v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// Process is one agent process's points of a series: the agent on Node
// with PID, in time order.
type Process struct {
	Node string
	PID  int
	Pts  []Point
}

// Longest returns the process whose points span the longest time (the
// first of equals), or false with none. The per-process series (RSS,
// goroutines, fds, CPU) are judged on it: a restarted agent starts from
// zero, so a series across restarts is a sawtooth, and the longest-lived
// process is the one with the most time to show a leak.
func Longest(ps []Process) (Process, bool) {
	best, ok := Process{}, false
	span := func(p Process) float64 {
		if len(p.Pts) == 0 {
			return -1
		}
		return p.Pts[len(p.Pts)-1].T - p.Pts[0].T
	}
	for _, p := range ps {
		if !ok || span(p) > span(best) {
			best, ok = p, true
		}
	}
	return best, ok
}

// SeriesVerdict is the verdict on one series over the nodes.
type SeriesVerdict struct {
	Series  string `json:"series"`
	Verdict string `json:"verdict"`
	// TooShort are the nodes whose agents lived too short a time to judge.
	TooShort []string `json:"too_short,omitempty"`
}

// verdictRank orders verdicts from the least to the most alarming.
var verdictRank = map[string]int{VerdictTooShort: 1, VerdictFlat: 2, VerdictPreSnapshot: 3, VerdictInconclusive: 4, VerdictGrowing: 5}

// SummarizeSoak gives each series, in SoakSeries order, the worst verdict
// of its nodes that could be judged (too-short only when none could): a
// node too short to judge is no evidence either way.
func SummarizeSoak(vs []SoakVerdict) []SeriesVerdict {
	var out []SeriesVerdict
	for _, series := range SoakSeries {
		sv := SeriesVerdict{Series: series}
		for _, v := range vs {
			if v.Series != series {
				continue
			}
			if v.Verdict == VerdictTooShort {
				sv.TooShort = append(sv.TooShort, v.Node)
			}
			if verdictRank[v.Verdict] > verdictRank[sv.Verdict] {
				sv.Verdict = v.Verdict
			}
		}
		if sv.Verdict != "" {
			out = append(out, sv)
		}
	}
	return out
}
