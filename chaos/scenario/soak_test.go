package scenario

import (
	"log/slog"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/labtest"
)

// TestSoakShort runs the soak for 35 s (an event every 8 s, a sample every
// 5 s) and checks that every agent was sampled, with plausible figures,
// that the load's events ran and settled, and that every series was
// judged. Whether the series are flat takes a long run (docs/chaos.md).
func TestSoakShort(t *testing.T) {
	requireLab(t)
	labtest.RequireBin(t, "redis-server")
	res, err := Soak(testCtx, SoakOptions{
		ClusterOptions: ClusterOptions{Bin: harbormasterBin(t), LabBin: labBin(t), Dir: t.TempDir(), LabName: "testsoak",
			Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))},
		Duration: 35 * time.Second, Every: 8 * time.Second, Sample: 5 * time.Second, Redis: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		t.Errorf("problems: %v", res.Problems)
	}
	kinds := map[string]bool{}
	for _, e := range res.Events {
		kinds[e.Kind] = true
	}
	for _, k := range []string{EventMove, EventCrash, EventRestart} {
		if !kinds[k] {
			t.Errorf("no %s event in %+v", k, res.Events)
		}
	}
	byNode := map[string][]SoakSample{}
	for _, s := range res.Samples {
		if s.Err != "" {
			t.Errorf("sample %+v", s)
			continue
		}
		byNode[s.Node] = append(byNode[s.Node], s)
	}
	if len(byNode) != 3 {
		t.Fatalf("samples of %d nodes, want 3", len(byNode))
	}
	for n, ss := range byNode {
		if len(ss) < 6 {
			t.Errorf("%s: %d samples in 35 s at 5 s, want >= 6", n, len(ss))
		}
		for i, s := range ss {
			switch {
			case s.RSSKiB < 5*1024 || s.RSSKiB > 2<<20:
				t.Errorf("%s: RSS %d KiB", n, s.RSSKiB)
			case s.Goroutines < 10 || s.Goroutines > 10000:
				t.Errorf("%s: %v goroutines", n, s.Goroutines)
			case s.FDs < 5 || s.FDs > 10000:
				t.Errorf("%s: %d open files", n, s.FDs)
			case s.CPUPct < 0 || s.CPUPct > 400 || s.CPUSeconds <= 0:
				t.Errorf("%s: CPU %.2f %% (%.2f s)", n, s.CPUPct, s.CPUSeconds)
			case s.RaftDBKiB <= 0 || s.AppliedIndex <= 0:
				t.Errorf("%s: raft.db %d KiB, applied index %v", n, s.RaftDBKiB, s.AppliedIndex)
			case i > 0 && s.AppliedIndex < ss[i-1].AppliedIndex:
				t.Errorf("%s: applied index went back from %v to %v", n, ss[i-1].AppliedIndex, s.AppliedIndex)
			}
			if n == res.Keeper && s.PID != ss[0].PID {
				t.Errorf("the keeper %s restarted: pid %d, then %d", n, ss[0].PID, s.PID)
			}
		}
	}
	if res.Generation[res.Keeper] != 1 {
		t.Errorf("agent processes %v: the keeper %s should have run one", res.Generation, res.Keeper)
	}
	var procs int
	for _, g := range res.Generation {
		procs += g
	}
	if procs < 5 {
		t.Errorf("agent processes %v: a crash and a restart should have started 2 more than the 3", res.Generation)
	}
	if len(res.Verdicts) != len(SoakSeries)*3 {
		t.Fatalf("%d verdicts, want %d", len(res.Verdicts), len(SoakSeries)*3)
	}
	for _, v := range res.Verdicts {
		if v.Verdict == "" || v.Points == 0 {
			t.Errorf("verdict %+v", v)
		}
	}
}
