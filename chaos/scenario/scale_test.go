package scenario

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/spec"
)

// The scale spec: distinct addresses in the lab's /24 that no host uses,
// VIPRole at VIP first, four roles in five preferring the target, and a
// document the cluster accepts.
func TestScaleSpec(t *testing.T) {
	for _, n := range []int{0, MaxScaleRoles + 1} {
		if _, err := scaleAddrs(n); err == nil || !strings.Contains(err.Error(), "roles") {
			t.Errorf("scaleAddrs(%d): %v, want an error naming the roles", n, err)
		}
	}
	addrs, err := scaleAddrs(MaxScaleRoles)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		b := a.As4()
		if seen[a] || !VIP.Contains(a) || (b[3] >= 11 && b[3] <= 19) || b[3] == 101 || b[3] < 11 || b[3] == 255 {
			t.Fatalf("address %v: a duplicate, outside the lab /24, or a host's", a)
		}
		seen[a] = true
	}
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	doc, pref := scaleSpec(nodes, "n5", addrs[:200])
	if _, err := parseSpec(doc); err != nil {
		t.Fatalf("spec: %v", err)
	}
	s, err := spec.Parse([]byte(doc))
	if err != nil || len(s.Roles) != 200 {
		t.Fatalf("spec: %d roles, %v", len(s.Roles), err)
	}
	on := map[string]int{}
	for _, p := range pref {
		on[p]++
	}
	if on["n5"] != 160 || pref[0] != "n5" || on["n1"] != 10 || on["n4"] != 10 {
		t.Fatalf("preferred nodes %v, want 160 on n5 (VIPRole among them) and the rest spread", on)
	}
}

// TestScale crashes the node holding 16 of 20 vip roles on 3 nodes: every
// one of them gets a new holder, no address is ever held twice, and the
// costs are measured.
func TestScale(t *testing.T) {
	requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r, err := RunScale(ctx, ScaleOptions{
		Cluster: ClusterOptions{Bin: harbormasterBin(t), Profile: "lan", Dir: t.TempDir(), LabName: "scale", Nodes: 3,
			Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))},
		Roles: 20, Trials: 1, Idle: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := r.Trials[0]
	t.Logf("%+v", tr)
	if len(r.Violations) > 0 {
		t.Fatalf("violations: %q", r.Violations)
	}
	if tr.Held != 16 || tr.Moved != tr.Held {
		t.Fatalf("%d of the crashed node's %d roles moved, want all 16", tr.Moved, tr.Held)
	}
	if tr.AllMovedMs <= 0 || tr.AllMovedMs < tr.FirstMovedMs {
		t.Errorf("moved from %v ms to %v ms after the crash", tr.FirstMovedMs, tr.AllMovedMs)
	}
	if tr.RaftEntries < 16 || tr.Commands < 16 {
		t.Errorf("%v Raft entries and %v commands for 16 moves", tr.RaftEntries, tr.Commands)
	}
	if tr.LeasePerSecIdle <= 0 || tr.LeaderCPUIdlePct <= 0 || tr.RSSKiB <= 0 || tr.ReconcileIdleMs <= 0 {
		t.Errorf("idle figures missing: %+v", tr)
	}
	if slices.Contains([]string{"", tr.Target}, tr.Leader) {
		t.Errorf("leader %q during the crash of %s", tr.Leader, tr.Target)
	}
}
