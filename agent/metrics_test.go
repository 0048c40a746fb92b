package agent_test

import (
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/harbormaster/harbormaster/agent/checks"
	"github.com/harbormaster/harbormaster/internal/conf"
	"github.com/harbormaster/harbormaster/internal/promtext"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// scrape parses nd's /metrics.
func scrape(t *testing.T, nd *tnode) promtext.Families {
	t.Helper()
	_, body := get(nd, "/metrics")
	fams, err := promtext.Parse(body)
	if err != nil {
		t.Fatalf("parse /metrics of %s: %v", nd.id, err)
	}
	return fams
}

// The families of the metrics contract (docs/operations.md "Metrics"),
// scraped from a live agent after failovers by move and by crash: each
// present with its type and label set; the failover counted on the new
// holder with its cause and logged there once.
func TestMetricsFamiliesAfterFailovers(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{vip: true, spec: vipSpec + "  - {name: web, type: service}\n",
		services: []string{"web"}, fake: newFakeServices(),
		checks: []checks.Config{{Name: "disk", Type: "exec", Argv: []string{"true"},
			Interval: conf.Duration(100 * time.Millisecond), Timeout: conf.Duration(100 * time.Millisecond)}}})
	var h *tnode
	c.waitFor("the VIP on one node", 10*time.Second, func() bool { h = vipHolder(c); return h != nil })
	// The service's first start is counted on its holder, cause first.
	c.waitFor("the service's first start counted", 5*time.Second, func() bool {
		web := c.leader().agent.State().Assignment("web").Holder
		return web != "" && scrape(t, c.node(web)).Value("harbormaster_failovers_total",
			map[string]string{"role": "web", "type": "service", "cause": "first"}) == 1
	})

	// A move: counted on the target with cause operator (a target whose
	// lease is not live yet is passed over for placement).
	waitAllAlive(c)
	target := c.node(c.others(h.id)[0])
	if _, err := c.admin(c.nodes[0]).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "registry-vip", Node: target.id}); err != nil {
		t.Fatalf("move: %v", err)
	}
	opLabels := map[string]string{"role": "registry-vip", "type": "vip", "cause": "operator"}
	c.waitFor("the move counted on the target", 5*time.Second, func() bool {
		return scrape(t, target).Value("harbormaster_failovers_total", opLabels) == 1
	})

	// A crash (cut off): counted on the next holder with cause lease.
	c.isolate(target.id)
	var nh *tnode
	c.waitFor("the VIP on another node", 5*time.Second, func() bool {
		nh = vipHolder(c)
		return nh != nil && nh != target
	})
	leaseLabels := map[string]string{"role": "registry-vip", "type": "vip", "cause": "lease"}
	c.waitFor("the crash counted on the new holder", 5*time.Second, func() bool {
		return scrape(t, nh).Value("harbormaster_failovers_total", leaseLabels) == 1
	})
	c.waitFor("the renewals after the cut", 2*time.Second, func() bool {
		return scrape(t, nh).Value("harbormaster_lease_renewal_rtt_seconds", nil) > 0
	})
	fams := scrape(t, nh)
	if got := fams.Value("harbormaster_failovers_total", opLabels); got != -1 && nh != target {
		t.Errorf("%s counts a move it did not take: %v", nh.id, got)
	}
	taken := 0.0 // nh may also have been the first holder
	for _, m := range fams["harbormaster_failovers_total"].GetMetric() {
		taken += m.GetCounter().GetValue()
	}
	for _, phase := range []string{"decided", "acted", "announced"} {
		if n := fams.Value("harbormaster_failover_duration_seconds", map[string]string{"role": "registry-vip", "type": "vip", "phase": phase}); n != taken {
			t.Errorf("failover_duration_seconds{phase=%q} on %s: %v observations, want one per failover counted (%v)", phase, nh.id, n, taken)
		}
	}
	if v := fams.Value("harbormaster_lease_seconds", nil); v <= 0 {
		t.Errorf("lease_seconds: %v, want the profile's lease", v)
	}
	if v := fams.Value("harbormaster_check_runs_total", map[string]string{"check": "disk", "result": "pass"}); v < 1 {
		t.Errorf("check_runs_total{check=disk,result=pass}: %v, want runs", v)
	}
	for _, dir := range []string{"sent", "received"} {
		if v := fams.Value("harbormaster_lease_datagrams_total", map[string]string{"direction": dir}); v < 1 {
			t.Errorf("lease_datagrams_total{direction=%s}: %v, want the renewals counted", dir, v)
		}
	}
	// The leader's reconcile passes: timed, and the move and the failover
	// counted among their proposals.
	lf := scrape(t, c.leader())
	if v := lf.Value("harbormaster_reconcile_duration_seconds", nil); v < 1 {
		t.Errorf("reconcile_duration_seconds on the leader %s: %v observations, want its passes", c.leader().id, v)
	}
	if v := lf.Value("harbormaster_reconcile_commands_total", nil); v < 1 {
		t.Errorf("reconcile_commands_total on the leader %s: %v, want at least the failover", c.leader().id, v)
	}
	if v := fams.Value("harbormaster_raft_leader_changes_total", nil); v < 1 {
		t.Errorf("raft_leader_changes_total: %v, want at least the first election", v)
	}

	want := []struct {
		name   string
		typ    dto.MetricType
		labels []string
	}{
		{"harbormaster_failovers_total", dto.MetricType_COUNTER, []string{"cause", "node", "role", "type"}},
		{"harbormaster_failover_duration_seconds", dto.MetricType_HISTOGRAM, []string{"node", "phase", "role", "type"}},
		{"harbormaster_lease_renewal_rtt_seconds", dto.MetricType_HISTOGRAM, []string{"node"}},
		{"harbormaster_lease_renewal_age_seconds", dto.MetricType_HISTOGRAM, []string{"node"}},
		{"harbormaster_lease_timing_warning", dto.MetricType_GAUGE, []string{"node"}},
		{"harbormaster_lease_seconds", dto.MetricType_GAUGE, []string{"node"}},
		{"harbormaster_lease_lapses_total", dto.MetricType_COUNTER, []string{"node"}},
		{"harbormaster_check_runs_total", dto.MetricType_COUNTER, []string{"check", "node", "result"}},
		{"harbormaster_check_duration_seconds", dto.MetricType_HISTOGRAM, []string{"check", "node"}},
		{"harbormaster_raft_leader_changes_total", dto.MetricType_COUNTER, []string{"node"}},
		{"harbormaster_store_errors_total", dto.MetricType_COUNTER, []string{"node"}},
		{"harbormaster_lease_datagrams_total", dto.MetricType_COUNTER, []string{"direction", "node"}},
		// Raft internals, through go-metrics' Prometheus sink.
		{"raft_commitTime", dto.MetricType_SUMMARY, []string{"node"}},
		{"raft_apply", dto.MetricType_COUNTER, []string{"node"}},
		{"raft_leader_lastContact", dto.MetricType_SUMMARY, []string{"node"}},
	}
	for _, w := range want {
		f := fams[w.name]
		if f == nil {
			t.Errorf("family %s missing", w.name)
			continue
		}
		if f.GetType() != w.typ {
			t.Errorf("family %s: type %s, want %s", w.name, f.GetType(), w.typ)
		}
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName())
			}
			sort.Strings(got)
			if !slices.Equal(got, w.labels) {
				t.Errorf("family %s: labels %q, want %q", w.name, got, w.labels)
				break
			}
		}
	}
	// raft's per-heartbeat keys are blocked (idle cost), the log-carrying
	// parts of appendEntries kept (the agents of this test share one
	// process and one sink: some follower stored the failovers' entries).
	for _, name := range []string{"raft_net_rpcDecode", "raft_net_rpcRespond", "raft_net_getRPCType",
		"raft_rpc_processHeartbeat", "raft_replication_heartbeat", "raft_rpc_appendEntries"} {
		if fams[name] != nil {
			t.Errorf("family %s present; it is raft's per-heartbeat timing, blocked", name)
		}
	}
	for _, name := range []string{"raft_rpc_appendEntries_storeLogs", "raft_rpc_appendEntries_processLogs"} {
		if fams[name] == nil {
			t.Errorf("family %s missing; only appendEntries itself is blocked", name)
		}
	}
	// The FSM applies raft's batches whole (raft.BatchingFSM): raft times
	// the batches, not single applies (docs/operations.md).
	if fams["raft_fsm_applyBatch"] == nil || fams["raft_fsm_apply"] != nil {
		t.Errorf("raft_fsm_applyBatch present %v, raft_fsm_apply present %v; want the batch timing only",
			fams["raft_fsm_applyBatch"] != nil, fams["raft_fsm_apply"] != nil)
	}
	var raftFams []string
	for name, f := range fams {
		if strings.HasPrefix(name, "raft_") {
			raftFams = append(raftFams, name+" "+f.GetType().String())
		}
	}
	sort.Strings(raftFams)
	t.Logf("raft families on %s: %s", nh.id, strings.Join(raftFams, ", "))
	_, body := get(nh, "/metrics")
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		for _, p := range []string{"harbormaster_failover", "harbormaster_lease_", "harbormaster_check_runs", "harbormaster_raft_leader_changes", "harbormaster_store_errors", "raft_commitTime{", "raft_apply"} {
			if strings.HasPrefix(l, p) && !strings.Contains(l, "_bucket{") {
				lines = append(lines, l)
				break
			}
		}
	}
	t.Logf("scrape of %s after the failovers:\n%s", nh.id, strings.Join(lines, "\n"))

	// One log line per failover on the new holder, with cause and phases.
	for _, x := range []struct {
		nd    *tnode
		cause string
	}{{target, "operator"}, {nh, "lease"}} {
		got := c.lw.lines("msg=failover", "node="+x.nd.id, "role=registry-vip", "cause="+x.cause)
		if len(got) != 1 {
			t.Errorf("failover log lines of %s with cause %s: got %d %q, want 1", x.nd.id, x.cause, len(got), got)
			continue
		}
		for _, f := range []string{"detected_ms=0", "decided_ms=", "acted_ms=", "announced_ms="} {
			if !strings.Contains(got[0], f) {
				t.Errorf("failover log line %q lacks %s", got[0], f)
			}
		}
	}
	c.heal()
}

// role_epoch names exactly the spec's roles: one never placed (no
// candidate) shows epoch 0, one removed from the spec disappears, so an
// alert on roles without a holder neither misses the first nor fires for the
// second (deploy/prometheus/alerts.yml, HarbormasterRoleWithoutHolder).
func TestRoleEpochNamesTheSpecsRoles(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: notary, type: service, marker: true}\n" +
		"  - {name: nowhere, type: service, marker: true, candidates: [{node: n9}]}\n"})
	n := c.nodes[0]
	c.waitFor("notary held", 10*time.Second, func() bool { return n.agent.State().Assignment("notary").Holder != "" })
	fams := scrape(t, n)
	if v := fams.Value("harbormaster_role_epoch", map[string]string{"role": "nowhere"}); v != 0 {
		t.Fatalf("role_epoch of a role never placed: %v, want 0", v)
	}
	if v := fams.Value("harbormaster_role_epoch", map[string]string{"role": "notary"}); v < 1 {
		t.Fatalf("role_epoch of notary: %v, want its epoch", v)
	}
	if _, err := c.admin(n).ApplySpec(ctxT(t, 5*time.Second), &hmv1.ApplySpecRequest{Document: "roles:\n  - {name: nowhere, type: service, marker: true, candidates: [{node: n9}]}\n", Actor: "test", Force: true}); err != nil {
		t.Fatalf("apply a spec without notary: %v", err)
	}
	c.waitFor("notary out of the spec", 10*time.Second, func() bool {
		_, ok := n.agent.State().Spec.Role("notary")
		return !ok
	})
	if v := scrape(t, n).Value("harbormaster_role_epoch", map[string]string{"role": "notary"}); v != -1 {
		t.Fatalf("role_epoch of a role removed from the spec: %v, want no series", v)
	}
}
