package scenario

import (
	"log/slog"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/procstat"
)

// busyCluster is a Cluster around a bare 1-node lab: enough for Busy,
// without agents.
func busyCluster(t *testing.T) *Cluster {
	t.Helper()
	requireLab(t)
	l, err := lab.New(testCtx, lab.Options{Nodes: 1, Name: "busy"})
	if err != nil {
		t.Fatal(err)
	}
	return &Cluster{Lab: l, opts: ClusterOptions{LabBin: labBin(t)}, log: slog.New(slog.DiscardHandler)}
}

// cpuTicks returns a process's user+system time in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	st, err := procstat.ReadCPUTicks(pid)
	if err != nil {
		t.Fatalf("stat of busy worker %d: %v", pid, err)
	}
	return st
}

func TestBusy(t *testing.T) {
	c := busyCluster(t)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = c.Close()
		}
	})
	stop, err := c.Busy(testCtx, "n1", 2)
	if err != nil {
		t.Fatal(err)
	}
	pids := c.BusyPIDs("n1")
	if len(pids) != 2 {
		t.Fatalf("running busy workers on n1: %v, want 2", pids)
	}
	for _, pid := range pids {
		if !c.Lab.Contains("n1", pid) {
			t.Errorf("busy worker %d is not in n1's namespace", pid)
		}
	}
	// They burn CPU: each gains CPU time (polling, no fixed sleep to assert on).
	before := map[int]int64{}
	for _, pid := range pids {
		before[pid] = cpuTicks(t, pid)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range pids {
		for cpuTicks(t, pid) <= before[pid] {
			if time.Now().After(deadline) {
				t.Fatalf("busy worker %d used no CPU in 20 s", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if got := c.BusyPIDs("n1"); len(got) != 0 {
		t.Errorf("busy workers after stop: %v", got)
	}
	for _, pid := range pids {
		if c.Lab.Contains("n1", pid) {
			t.Errorf("busy worker %d still in n1's namespace after stop", pid)
		}
	}

	// Close stops the workers of a Busy never stopped.
	if _, err := c.Busy(testCtx, "n1", 1); err != nil {
		t.Fatal(err)
	}
	left := c.BusyPIDs("n1")
	if len(left) != 1 {
		t.Fatalf("running busy workers: %v, want 1", left)
	}
	closed = true
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := procstat.ReadCPUTicks(left[0]); err == nil {
		t.Errorf("busy worker %d still running after Close", left[0])
	}
}

func TestBusyBadInput(t *testing.T) {
	c := &Cluster{opts: ClusterOptions{}, log: slog.New(slog.DiscardHandler)}
	if _, err := c.Busy(testCtx, "n1", 1); err == nil {
		t.Error("Busy without LabBin: no error")
	}
	c.opts.LabBin = "/nonexistent"
	if _, err := c.Busy(testCtx, "n1", 0); err == nil {
		t.Error("Busy with 0 workers: no error")
	}
}
