package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/harbormaster/harbormaster/chaos/labtest"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
)

// testCtx ends on SIGINT/SIGTERM, so that a run tears its lab down (every
// namespace deleted, every agent killed) before the test binary exits.
var testCtx context.Context

// builtBin and builtLabBin are the harbormaster and harbormaster-lab
// binaries TestMain built when HM_BIN and HM_LAB_BIN are unset.
var builtBin, builtLabBin string

func TestMain(m *testing.M) {
	ctx, cancel := context.WithCancel(context.Background())
	testCtx = ctx
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		// The running scenario tears its lab down when ctx ends; do not
		// wait forever for it.
		fmt.Fprintf(os.Stderr, "scenario tests: %v: tearing the lab down\n", sig)
		cancel()
		time.Sleep(20 * time.Second)
		fmt.Fprintln(os.Stderr, "scenario tests: teardown took too long")
		os.Exit(1)
	}()
	code := func() int {
		defer cancel()
		if os.Geteuid() == 0 {
			if _, err := lab.Sweep(); err != nil {
				fmt.Fprintln(os.Stderr, "sweep stale labs:", err)
			}
			dir, err := os.MkdirTemp("", "hm-scenario-bin-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			for _, b := range []struct {
				env, name string
				dst       *string
			}{{"HM_BIN", "harbormaster", &builtBin}, {"HM_LAB_BIN", "harbormaster-lab", &builtLabBin}} {
				if os.Getenv(b.env) != "" {
					continue
				}
				*b.dst = filepath.Join(dir, b.name)
				out, err := exec.Command("go", "build", "-o", *b.dst, "github.com/harbormaster/harbormaster/cmd/"+b.name).CombinedOutput()
				if err != nil {
					fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.name, err, out)
					return 1
				}
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// requireLab skips the test unless it can build a lab (root, ip and nft);
// with HM_REQUIRE_LAB=1 it fails instead, so CI cannot pass by skipping.
func requireLab(t *testing.T) { t.Helper(); labtest.Require(t) }

// harbormasterBin returns HM_BIN (set by the Makefile) or the binary
// TestMain built.
func harbormasterBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("HM_BIN"); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	if builtBin == "" {
		t.Fatal("no harbormaster binary: set HM_BIN")
	}
	return builtBin
}

// labBin returns HM_LAB_BIN or the harbormaster-lab binary TestMain
// built: the lab helpers (push, the stand-in services) run it.
func labBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("HM_LAB_BIN"); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	if builtLabBin == "" {
		t.Fatal("no harbormaster-lab binary: set HM_LAB_BIN")
	}
	return builtLabBin
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runScenario runs one trial of the scenario with the default profile and
// checks what every scenario must satisfy: the run completed, every
// invariant held (no violation), and no dual holder.
func runScenario(t *testing.T, name string, mod func(*Options)) Result {
	t.Helper()
	requireLab(t)
	dir := t.TempDir()
	o := Options{
		ClusterOptions: ClusterOptions{Bin: harbormasterBin(t), LabBin: labBin(t), Profile: "lan", Dir: dir, LabName: "test",
			Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))},
		Trials: 1,
	}
	if mod != nil {
		mod(&o)
	}
	start := time.Now()
	res, err := Run(testCtx, name, o)
	if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s took %s; result:\n%s", name, time.Since(start).Round(time.Millisecond), b)
	if res.Trials != o.Trials {
		t.Errorf("%s: %d trials completed, want %d", name, res.Trials, o.Trials)
	}
	if !res.OK || len(res.Violations) > 0 {
		for _, v := range res.Violations {
			t.Errorf("%s: violation: %s", name, v)
		}
		logTails(t, dir)
	}
	if res.DualHolderMS != 0 {
		t.Errorf("%s: dual_holder_ms = %.0f, want 0", name, res.DualHolderMS)
	}
	return res
}

// logTails logs the agents' own log lines (not Raft's) of a failed run,
// and the stand-in services' log without its beats.
func logTails(t *testing.T, dir string) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(dir, "services.log")); err == nil {
		var keep []string
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" && !strings.HasPrefix(l, "beat ") {
				keep = append(keep, l)
			}
		}
		t.Logf("services.log (without beats):\n%s", strings.Join(keep, "\n"))
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		b, err := os.ReadFile(filepath.Join(dir, n+".log"))
		if err != nil {
			continue
		}
		var keep []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "time=") || strings.HasPrefix(l, "===") {
				keep = append(keep, l)
			}
		}
		if len(keep) > 40 {
			keep = keep[len(keep)-40:]
		}
		t.Logf("%s.log (agent lines, last %d):\n%s", n, len(keep), strings.Join(keep, "\n"))
	}
}

// atMost fails the test when a figure's max exceeds limit.
func atMost(t *testing.T, r Result, figure string, limit float64) {
	t.Helper()
	s, ok := r.Figures[figure]
	if !ok {
		t.Errorf("%s: no figure %s", r.Scenario, figure)
		return
	}
	if s.Max > limit {
		t.Errorf("%s: %s max %.0f, want <= %.0f", r.Scenario, figure, s.Max, limit)
	}
}

// Outage bounds of DESIGN.md §5 for the default (lan) profile.
const (
	crashOutageMS     = 1000
	partitionOutageMS = 1500
	// valid_lft of 1 s (the 500 ms lease rounded up to the kernel's whole
	// seconds) plus the kernel's own lateness: the IPv4 lifetime check runs
	// on a timer rounded up to whole jiffies-seconds; measured up to 0.24 s
	// late here. This is the kernel backstop (S5), not the agent, which
	// removes the address itself before its lease ends when it can.
	kernelGoneMS = 1300
)

func TestCrashHolder(t *testing.T) {
	r := runScenario(t, "crash-holder", nil)
	if r.OutageMS.Max >= crashOutageMS {
		t.Errorf("crash-holder: outage %.0f ms, want < %d ms (DESIGN.md §5, default profile)", r.OutageMS.Max, crashOutageMS)
	}
	atMost(t, r, "crashed_addr_gone_ms", kernelGoneMS)
}

func TestKillAgent(t *testing.T) {
	r := runScenario(t, "kill-agent", nil)
	atMost(t, r, "addr_gone_ms", kernelGoneMS)
}

func TestPauseAgent(t *testing.T) {
	r := runScenario(t, "pause-agent", nil)
	atMost(t, r, "addr_gone_ms", kernelGoneMS)
}

func TestPartitionHolder(t *testing.T) {
	r := runScenario(t, "partition-holder", nil)
	if r.OutageMS.Max >= partitionOutageMS {
		t.Errorf("partition-holder: outage %.0f ms, want < %d ms", r.OutageMS.Max, partitionOutageMS)
	}
	atMost(t, r, "holder_dropped_ms", float64((500*time.Millisecond+samplePeriod)/time.Millisecond))
}

func TestOnewayPartition(t *testing.T) {
	r := runScenario(t, "oneway-partition", nil)
	if r.OutageMS.Max >= partitionOutageMS {
		t.Errorf("oneway-partition: outage %.0f ms, want < %d ms", r.OutageMS.Max, partitionOutageMS)
	}
	atMost(t, r, "holder_dropped_ms", float64((500*time.Millisecond+samplePeriod)/time.Millisecond))
}

func TestHeal(t *testing.T) {
	r := runScenario(t, "heal", nil)
	atMost(t, r, "reach_after_heal_ms", 1000)
}

// TestHealClientSide is heal with the client cut off together with the
// holder, the case in which keepalived blackholed clients for 38-47 s
// (DESIGN.md §5: "never: re-announce on heal, 0 s").
func TestHealClientSide(t *testing.T) {
	r := runScenario(t, "heal-client", nil)
	atMost(t, r, "reach_after_heal_ms", 1000)
}

func TestCrashLeader(t *testing.T) {
	r := runScenario(t, "crash-leader", nil)
	if r.OutageMS.Max > 100 {
		t.Errorf("crash-leader: outage %.0f ms, want <= 100 ms", r.OutageMS.Max)
	}
	atMost(t, r, "samples_not_on_holder", 0)
}

func TestLoss30(t *testing.T) {
	r := runScenario(t, "loss-30", func(o *Options) { o.LossDuration = 8 * time.Second })
	// No needless move: nothing failed, only packets were lost. Dropping
	// the VIP (no holder at all) is a needless change too.
	atMost(t, r, "vip_moves", 0)
	atMost(t, r, "vip_drops", 0)
}

// Planned hand-overs must not wait for a lease to end (DESIGN.md §4,
// graceful paths): the outage of one trial must stay well under the 500 ms
// lease. The §5 target (p99 <= 50 ms over many trials) is measured by the
// benchmark (`harbormaster-lab run move --trials 20`), like every target,
// not asserted on the single trial a test runs; the measured
// figures are in docs/bench-vip.md.
const plannedOutageMS = 250

func TestMove(t *testing.T) {
	r := runScenario(t, "move", nil)
	if r.OutageMS.Max > plannedOutageMS {
		t.Errorf("move: outage %.0f ms, want <= %d ms", r.OutageMS.Max, plannedOutageMS)
	}
}

func TestDrain(t *testing.T) {
	r := runScenario(t, "drain", nil)
	if r.OutageMS.Max > plannedOutageMS {
		t.Errorf("drain: outage %.0f ms, want <= %d ms", r.OutageMS.Max, plannedOutageMS)
	}
}

func TestStopAgent(t *testing.T) {
	r := runScenario(t, "stop-agent", nil)
	if r.OutageMS.Max > plannedOutageMS {
		t.Errorf("stop-agent: outage %.0f ms, want <= %d ms", r.OutageMS.Max, plannedOutageMS)
	}
}

// hasFigures fails the test when the result lacks one of the figures (a
// trial that measured nothing proves nothing).
func hasFigures(t *testing.T, r Result, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, ok := r.Figures[n]; !ok {
			t.Errorf("%s: no figure %s", r.Scenario, n)
		}
	}
}

// The scenarios with health checks and services. Their bounds are checked inside the scenarios
// (a bound missed is a violation, which runScenario fails on); the tests
// check that the figures were measured at all, and repeat the bounds that
// are the point of each scenario.

func TestRegistryDown(t *testing.T) {
	requireLab(t)
	labtest.RequireBin(t, "docker-registry")
	r := runScenario(t, "registry-down", nil)
	hasFigures(t, r, "detect_ms", "move_ms", "move_bound_ms", "recover_ms", "samples_back_on_old_holder")
	atMost(t, r, "move_ms", float64((registryFall*registryInterval+registryTimeout+registryMargin)/time.Millisecond))
	atMost(t, r, "samples_back_on_old_holder", 0)
}

// TestFlap runs 45 s of flapping (the scenario's default is 60 s): with
// hold_down the VIP moves 5 times; without it, it would move about 15.
func TestFlap(t *testing.T) {
	r := runScenario(t, "flap", func(o *Options) { o.FlapDuration = 45 * time.Second })
	hasFigures(t, r, "moves", "moves_bound", "flips", "check_events")
	atMost(t, r, "moves", float64(flapMovesBound(45*time.Second)))
	if f, c := r.Figures["flips"].Max, r.Figures["check_events"].Max; c < f {
		t.Errorf("flap: %.0f check events for %.0f flips", c, f)
	}
}

func TestServiceCrashActive(t *testing.T) {
	r := runScenario(t, "service-crash-active", nil)
	hasFigures(t, r, "service_failover_ms", "service_failover_min_ms", "service_failover_bound_ms")
}

func TestServicePartitionActive(t *testing.T) {
	r := runScenario(t, "service-partition-active", nil)
	hasFigures(t, r, "service_failover_ms", "old_stopped_ms")
	atMost(t, r, "old_stopped_ms", float64((500*time.Millisecond+svcStopTimeout)/time.Millisecond))
}

// TestServiceKillAgent: kill -9 of the active's agent; the guard stops
// notary within the lease (plus guardMargin), before the next instance.
func TestServiceKillAgent(t *testing.T) {
	r := runScenario(t, "service-kill-agent", nil)
	hasFigures(t, r, "old_stopped_ms", "service_failover_ms", "stop_to_next_ms")
	atMost(t, r, "old_stopped_ms", float64((500*time.Millisecond+guardMargin)/time.Millisecond))
}

// TestServicePauseAgent: SIGSTOP of the active's agent; the guard stops
// notary at the lease's end though the agent is frozen.
func TestServicePauseAgent(t *testing.T) {
	r := runScenario(t, "service-pause-agent", nil)
	hasFigures(t, r, "old_stopped_ms", "service_failover_ms", "stop_to_next_ms")
	atMost(t, r, "old_stopped_ms", float64((500*time.Millisecond+guardMargin)/time.Millisecond))
}

func TestStopHookHangs(t *testing.T) {
	r := runScenario(t, "stop-hook-hangs", nil)
	hasFigures(t, r, "move_ms", "hook_killed_ms", "fenced_ms", "old_stopped_ms")
}

// TestHostileLAN: every kind of attack from the LAN was made and none was
// accepted (an acceptance is also a violation, which runScenario fails on).
func TestHostileLAN(t *testing.T) {
	r := runScenario(t, "hostile-lan", nil)
	for _, kind := range []string{"api-plaintext", "api-tls-no-cert", "api-foreign-ca-admin", "api-foreign-ca-node",
		"api-other-cluster-admin", "api-other-cluster-node", "raft-plaintext", "raft-tls-no-cert", "raft-foreign-ca-node",
		"flood-api", "flood-raft", "lease-replay-now", "lease-ttl", "lease-replay-later", "lease-gen-next", "lease-names",
		"lease-gen-max"} {
		if r.Attacks[kind] == 0 {
			t.Errorf("hostile-lan: no attempt of %s", kind)
		}
		if n, ok := r.Accepted[kind]; !ok || n != 0 {
			t.Errorf("hostile-lan: %s: accepted %d (reported: %v)", kind, n, ok)
		}
	}
	hasFigures(t, r, "lease_captured", "flood-api_observer_calls")
	if s := r.Figures["lease_captured"]; s.Max == 0 {
		t.Error("hostile-lan: no lease datagram captured: the replays proved nothing")
	}
}

// The Redis scenarios. Dual masters, lost writes where none may
// be lost, a late fence and a Redis that does not rejoin are violations
// inside the scenarios; the tests check the figures were measured and
// repeat the bounds that are the point of each scenario.

// runRedis runs one trial of a Redis scenario and checks what all of them
// must show: the writer's figures, and no two Redis masters at any sample.
func runRedis(t *testing.T, name string, figures ...string) Result {
	t.Helper()
	return runRedisWith(t, name, nil, figures...)
}

// runRedisWith is runRedis with the options changed by mod.
func runRedisWith(t *testing.T, name string, mod func(*Options), figures ...string) Result {
	t.Helper()
	requireLab(t)
	labtest.RequireBin(t, "redis-server")
	r := runScenario(t, name, mod)
	hasFigures(t, r, append([]string{"lost_acked_writes", "acked_writes", "failover_ms"}, figures...)...)
	if r.DualMasterMS == nil || *r.DualMasterMS != 0 {
		t.Errorf("%s: dual_master_ms = %v, want 0", name, r.DualMasterMS)
	}
	if r.LostAckedWrites == nil {
		t.Errorf("%s: no lost_acked_writes", name)
	}
	// A trial without a write load proves nothing: at one write per ms
	// the writer makes about a thousand per second of the trial.
	if s := r.Figures["acked_writes"]; s.Max < 500 {
		t.Errorf("%s: only %.0f acknowledged writes", name, s.Max)
	}
	return r
}

func TestRedisCrashMaster(t *testing.T) {
	r := runRedis(t, "redis-crash-master", "rejoin_ms")
	// DESIGN.md §5: p99 <= 1.2 s (lan); one trial is its own p99.
	atMost(t, r, "failover_ms", 1200)
}

func TestRedisPartitionMaster(t *testing.T) {
	r := runRedis(t, "redis-partition-master", "old_master_fenced_ms", "rejoin_after_heal_ms", "divergent_writes")
	atMost(t, r, "old_master_fenced_ms", float64((500*time.Millisecond+samplePeriod)/time.Millisecond))
	atMost(t, r, "lost_acked_writes", sentinelLossFigure/10)
}

func TestRedisKillAgent(t *testing.T) {
	runRedis(t, "redis-kill-agent", "old_master_demoted_ms")
}

// The fence of a frozen agent's Redis is its guard's: the new master's
// agent cannot reach that Redis to demote it.
func TestRedisPauseAgent(t *testing.T) {
	r := runRedis(t, "redis-pause-agent", "old_master_fenced_ms", "rejoin_after_resume_ms")
	atMost(t, r, "old_master_fenced_ms", float64((500*time.Millisecond+samplePeriod)/time.Millisecond))
}

func TestRedisMove(t *testing.T) {
	r := runRedis(t, "redis-move", "old_master_replica_ms")
	atMost(t, r, "lost_acked_writes", 0)
}

func TestRedisRestartAll(t *testing.T) {
	r := runRedis(t, "redis-restart-all", "agents_restart_ms", "master_redis_restart_ms")
	atMost(t, r, "lost_acked_writes", 0)
}

// The field report: 5 voters, stock Redis settings, the master's node
// crashed while every replica was still in its first full sync.
func TestRedisCrashEarly(t *testing.T) {
	r := runRedisWith(t, "redis-crash-early", func(o *Options) { o.Nodes = 5 },
		"rejoin_ms", "replicas_synced_at_crash", "crash_after_promotion_ms")
	atMost(t, r, "lost_acked_writes", 0)
	if s := r.Figures["crash_after_promotion_ms"]; s.Max < 1000 || s.Max > 3000 {
		t.Errorf("redis-crash-early: crashed %.0f ms after the promotion, want 1000..3000", s.Max)
	}
}

// One trial per policy: never (odd trials), after 3s (even ones).
func TestRedisCrashUnsynced(t *testing.T) {
	r := runRedisWith(t, "redis-crash-unsynced", func(o *Options) { o.Trials = 2 }, "replicas_synced_at_crash", "outcome_mismatch")
	if len(r.PerTrial) != 2 {
		t.Fatalf("redis-crash-unsynced: %d trials", len(r.PerTrial))
	}
	never, delayed := r.PerTrial[0], r.PerTrial[1]
	if never.Outcome != outcomeVacant || never.Figures["unsynced_event"] != 1 || never.Figures["vacant_ms"] < float64(unsyncedWatch/time.Millisecond) {
		t.Errorf("never: outcome %q, figures %v; want vacant for %s with a %s event", never.Outcome, never.Figures, unsyncedWatch, eventRedisUnsynced)
	}
	if delayed.Outcome != outcomePromotedDelay || delayed.Figures["data_loss_event"] != 1 || delayed.Figures["promotion_ms"] < float64(unsyncedDelay/time.Millisecond) {
		t.Errorf("after: outcome %q, figures %v; want promoted no earlier than %s with a %s event", delayed.Outcome, delayed.Figures, unsyncedDelay, eventRedisDataLoss)
	}
	for _, tr := range r.PerTrial {
		if tr.Figures["replicas_synced_at_crash"] != 0 {
			t.Errorf("trial %d: %v replicas synced through the block", tr.N, tr.Figures["replicas_synced_at_crash"])
		}
	}
}

// TestRedisClients: Harbor's clients through the listeners, on the
// recommended listener VIPs, three crashes of the master's node. No client
// stalls or loses a write, and each writes again within 1.2 s: a go-redis
// client subscribed to the listener on the master's node stalled in about
// one crash in three before the listener stepped aside there for it, and
// redigo waited out its connect timeout on the crashed node's address
// before those addresses moved (docs/bench-redis.md).
func TestRedisClients(t *testing.T) {
	labtest.RequireBin(t, "redis-server")
	r := runScenario(t, "redis-clients", func(o *Options) { o.Trials = 3; o.ListenerVIPs = true })
	for _, n := range ClientNames {
		c, ok := r.Clients[n]
		switch {
		case !ok || c.Trials != 3:
			t.Errorf("%s: %+v (present %v), want 3 trials", n, c, ok)
		case c.StalledTrials != 0 || c.LostBeforeFault != 0:
			// Lost writes sent in the last 5 ms before the crash are the
			// asynchronous window (reported, not a violation); any other
			// lost write is.
			t.Errorf("%s: %d stalled trials, %d lost writes sent before the crash's in-flight window (%d lost in all); want none",
				n, c.StalledTrials, c.LostBeforeFault, c.LostAckedWrites)
		case c.FirstAckMS.Max > 1200:
			t.Errorf("%s: first ack %.0f ms after a crash, want <= 1200", n, c.FirstAckMS.Max)
		}
	}
}
