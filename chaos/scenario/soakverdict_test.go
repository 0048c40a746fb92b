package scenario

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

// series samples f every 30 s for 25 minutes.
func series(f func(t float64) float64) []Point {
	var pts []Point
	for t := 0.0; t <= 1500; t += 30 {
		pts = append(pts, Point{T: t, V: f(t)})
	}
	return pts
}

// rssKiB is the soak's RSS bound (KiB a day).
var rssKiB = SoakBounds[SeriesRSS]

func TestJudgeFlat(t *testing.T) {
	// A warm-up from 20 to 30 MiB in the first 5 minutes, then flat: the
	// warm-up is not judged.
	j := Judge(series(func(t float64) float64 { return 30720 - 10240*max(0, 1-t/300) }), rssKiB)
	if j.Verdict != VerdictFlat || j.SlopePerDay != 0 {
		t.Fatalf("flat after warm-up: %+v", j)
	}
	if j.Start != 20480 || j.End != 30720 || j.Points != 26 || j.From != 750 || j.To != 1500 {
		t.Fatalf("flat after warm-up: figures %+v", j)
	}
}

func TestJudgeLeaking(t *testing.T) {
	// 1 KiB a minute is 1.4 MiB a day: within 10 MiB a day.
	slow := Judge(series(func(t float64) float64 { return 30720 + t/60 }), rssKiB)
	if slow.Verdict != VerdictFlat {
		t.Fatalf("1 KiB/min: %+v", slow)
	}
	// 10 KiB a minute is 14 MiB a day: a leak.
	j := Judge(series(func(t float64) float64 { return 30720 + 10*t/60 }), rssKiB)
	if j.Verdict != VerdictGrowing || j.SlopePerDay < 14399 || j.SlopePerDay > 14401 {
		t.Fatalf("10 KiB/min: %+v", j)
	}
}

func TestJudgeNoisyFlat(t *testing.T) {
	// Goroutines around 60, ± 8 at random: flat or, when the noise happens
	// to tilt the line above the bound, inconclusive; growing (a false
	// alarm) in under 1 % of 1000 runs.
	var growing int
	for seed := range uint64(1000) {
		r := rand.New(rand.NewPCG(seed, 1))
		j := Judge(series(func(float64) float64 { return float64(60 + r.IntN(17) - 8) }), SoakBounds[SeriesGoroutines])
		switch j.Verdict {
		case VerdictGrowing:
			growing++
		case VerdictTooShort:
			t.Fatalf("seed %d: %+v", seed, j)
		}
	}
	if growing >= 10 {
		t.Fatalf("noise judged growing in %d of 1000 runs, want < 10", growing)
	}
	// The same noise on a leak of two goroutines a minute: growing in
	// over 99 % of runs.
	var missed int
	for seed := range uint64(1000) {
		r := rand.New(rand.NewPCG(seed, 1))
		j := Judge(series(func(t float64) float64 { return float64(60+r.IntN(17)-8) + 2*t/60 }), SoakBounds[SeriesGoroutines])
		if j.Verdict != VerdictGrowing {
			missed++
		}
	}
	if missed >= 10 {
		t.Fatalf("a noisy leak of 2 a minute missed in %d of 1000 runs, want < 10", missed)
	}
}

func TestJudgeStepAfterRestart(t *testing.T) {
	// A node's agent restarted at 600 s: its first process ran flat at
	// 50 MiB; the second warmed up from 20 MiB to 48 MiB over 4 minutes,
	// then stayed flat. Across the restart the series steps down and
	// climbs; on the longest-lived process it is flat.
	var a, b Process
	a.Node, a.PID, b.Node, b.PID = "n1", 100, "n1", 200
	for _, p := range series(func(t float64) float64 {
		if t < 600 {
			return 51200
		}
		return 20480 + 28672*min(1, (t-600)/240)
	}) {
		if p.T < 600 {
			a.Pts = append(a.Pts, p)
		} else {
			b.Pts = append(b.Pts, p)
		}
	}
	across := Judge(append(append([]Point(nil), a.Pts...), b.Pts...), rssKiB)
	if across.Verdict == VerdictFlat {
		t.Fatalf("across the restart: %+v, want not flat (the sawtooth is why the soak judges one process)", across)
	}
	p, ok := Longest([]Process{a, b})
	if !ok || p.PID != 200 {
		t.Fatalf("longest: %+v", p)
	}
	if j := Judge(p.Pts, rssKiB); j.Verdict != VerdictFlat {
		t.Fatalf("longest-lived process: %+v", j)
	}
}

func TestJudgeTooShort(t *testing.T) {
	j := Judge([]Point{{0, 1}, {30, 2}, {60, 3}, {90, 4}, {120, 5}}, 0)
	if j.Verdict != VerdictTooShort || j.Points != 3 {
		t.Fatalf("5 points: %+v", j)
	}
	if j := Judge(nil, 0); j.Verdict != VerdictTooShort {
		t.Fatalf("no points: %+v", j)
	}
}

func TestJudgeExactFDs(t *testing.T) {
	// Open files never vary by noise: one more every 10 minutes is growing
	// (144 a day > 24), though the line is a staircase.
	j := Judge(series(func(t float64) float64 { return 30 + float64(int(t/600)) }), SoakBounds[SeriesFDs])
	if j.Verdict != VerdictGrowing {
		t.Fatalf("one fd per 10 min: %+v", j)
	}
	if j := Judge(series(func(float64) float64 { return 30 }), SoakBounds[SeriesFDs]); j.Verdict != VerdictFlat {
		t.Fatalf("constant fds: %+v", j)
	}
}

// raftSamples is a node's samples every 30 s for 25 minutes: raft.db grows
// 4 KiB and the log 40 entries a sample; snap is the newest snapshot's
// index from 900 s on.
func raftSamples(snap uint64) []SoakSample {
	var ss []SoakSample
	for i := range 51 {
		s := SoakSample{T: float64(30 * i), Node: "n1", PID: 100, RaftDBKiB: int64(64 + 4*i), AppliedIndex: float64(100 + 40*i)}
		if s.T >= 900 {
			s.SnapshotIndex = snap
		}
		ss = append(ss, s)
	}
	return ss
}

func TestJudgeRaftLog(t *testing.T) {
	// No snapshot yet and the log (2100 entries) shorter than a snapshot
	// keeps: the growth cannot be told from the bound.
	v := judgeRaftLog("n1", raftSamples(0))
	if v.Verdict != VerdictPreSnapshot || v.Series != SeriesRaftDB || v.PID != 0 {
		t.Fatalf("before a snapshot: %+v", v)
	}
	// A snapshot was taken and the file still grows: growing.
	if v := judgeRaftLog("n1", raftSamples(1200)); v.Verdict != VerdictGrowing {
		t.Fatalf("after a snapshot: %+v", v)
	}
	// No snapshot, but the log is past what a snapshot would keep: the
	// snapshots are not working.
	long := raftSamples(0)
	for i := range long {
		long[i].AppliedIndex += 30000
	}
	if v := judgeRaftLog("n1", long); v.Verdict != VerdictGrowing {
		t.Fatalf("30000 entries without a snapshot: %+v", v)
	}
}

func TestJudgeSoakPerProcess(t *testing.T) {
	// n1's agent restarted at 300 s: the new process is judged. Its open
	// files are flat; across the restart they would step.
	var ss []SoakSample
	for i := range 51 {
		s := SoakSample{T: float64(30 * i), Node: "n1", PID: 100, FDs: 40, RSSKiB: 30000, Goroutines: 60, CPUPct: 5, RaftDBKiB: 64, AppliedIndex: 10}
		if s.T >= 300 {
			s.PID, s.FDs = 200, 25
		}
		ss = append(ss, s)
	}
	ss = append(ss, SoakSample{T: 1600, Node: "n1", PID: 200, Err: "scrape failed", FDs: 9999})
	vs := JudgeSoak(ss)
	if len(vs) != len(SoakSeries) {
		t.Fatalf("%d verdicts: %+v", len(vs), vs)
	}
	for _, v := range vs {
		if v.Series == SeriesRaftDB {
			if v.PID != 0 {
				t.Errorf("raft.db judged on pid %d, want all of the node's samples", v.PID)
			}
			continue
		}
		if v.PID != 200 || v.Verdict != VerdictFlat {
			t.Errorf("%s: pid %d %s (%s), want the longest-lived process 200, flat", v.Series, v.PID, v.Verdict, v.Why)
		}
		if v.Series == SeriesFDs && (v.Start != 25 || v.End != 25) {
			t.Errorf("open files %v..%v, want 25..25 (the sample with an error left out)", v.Start, v.End)
		}
	}
}

func TestSummarizeSoak(t *testing.T) {
	vs := []SoakVerdict{
		{Series: SeriesRSS, Node: "n1", Judgement: Judgement{Verdict: VerdictTooShort}},
		{Series: SeriesRSS, Node: "n2", Judgement: Judgement{Verdict: VerdictFlat}},
		{Series: SeriesFDs, Node: "n1", Judgement: Judgement{Verdict: VerdictFlat}},
		{Series: SeriesFDs, Node: "n2", Judgement: Judgement{Verdict: VerdictGrowing}},
		{Series: SeriesFDs, Node: "n3", Judgement: Judgement{Verdict: VerdictInconclusive}},
		{Series: SeriesCPU, Node: "n1", Judgement: Judgement{Verdict: VerdictTooShort}},
	}
	got := SummarizeSoak(vs)
	want := []SeriesVerdict{
		{Series: SeriesRSS, Verdict: VerdictFlat, TooShort: []string{"n1"}},
		{Series: SeriesFDs, Verdict: VerdictGrowing},
		{Series: SeriesCPU, Verdict: VerdictTooShort, TooShort: []string{"n1"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
