package scenario

import (
	"log/slog"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/report"
)

// TestChaos runs the chaos matrix's CI subset: two seeds on 3 voters with
// the lan profile and Redis, each a fresh cluster and a 20 s schedule of
// overlapping faults (make chaos runs more; docs/chaos.md). Every run must
// be OK: no violation of S1, S2, S7, liveness or linearizability, no flap,
// no move without a fault. The seeds are fixed so a failure replays with
// `harbormaster-lab chaos --seed S --runs 1 --duration 20s --redis`.
func TestChaos(t *testing.T) {
	requireLab(t)
	o := ChaosOptions{
		ClusterOptions: ClusterOptions{Bin: harbormasterBin(t), LabBin: labBin(t), Profile: "lan", Nodes: 3, Dir: t.TempDir(), LabName: "test",
			Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))},
		Runs: 2, Seed: 101, Duration: 20 * time.Second, Redis: true,
		Each: func(r report.Run) {
			t.Logf("run %d seed %d: ok %t, %d faults, %d moves, %d flaps, figures %v", r.Run, r.Seed, r.OK, len(r.Faults), len(r.Moves), r.Flaps, r.Figures)
		},
	}
	sum, err := Chaos(testCtx, o)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Runs != 2 {
		t.Fatalf("%d runs, want 2", sum.Runs)
	}
	for _, r := range sum.PerRun {
		if len(r.Faults) < 3 {
			t.Errorf("run %d (seed %d) applied %d faults: the schedule proves little", r.Run, r.Seed, len(r.Faults))
		}
		if _, ok := r.Figures["redis_acked"]; !ok || r.Figures["redis_acked"] == 0 {
			t.Errorf("run %d (seed %d): no acknowledged Redis write was read back (figures %v)", r.Run, r.Seed, r.Figures)
		}
		if err := r.Validate(); err != nil {
			t.Errorf("run %d: the record cannot be drawn: %v", r.Run, err)
		}
	}
	for _, v := range sum.Violations {
		t.Errorf("run %d seed %d at %.0f ms: %s: %s", v.Run, v.Seed, v.AtMS, v.Invariant, v.Detail)
	}
	if sum.OK != sum.Runs || sum.Flaps != 0 {
		t.Errorf("%d of %d runs ok, %d flaps", sum.OK, sum.Runs, sum.Flaps)
	}
}
