// Package scenario runs the chaos scenarios against a real
// 3-node harbormaster cluster inside a network-namespace lab (DESIGN.md §4,
// §7): it injects one fault per trial (holder crash, agent kill -9, agent
// SIGSTOP, partitions, heal, leader crash, packet loss), watches the VIP
// from the kernels (lab.Sampler, every 10 ms) and from a client (TCP
// connects through the VIP every 10 ms, plus the client's ARP entry), and
// reports every invariant violation with timestamps and the client-visible
// outage.
//
// The health-check and service scenarios give the cluster health checks and services:
// a real docker-registry per node behind a registry-pull check
// (registry-down), an exec check that flaps (flap), and two active/standby
// services run by a stand-in that logs its own activity (the service
// scenarios; see RunStandIn), whose log is checked after every trial: never
// two actives of one role, epochs only growing.
//
// Run builds a fresh lab and cluster, runs the trials of one scenario in
// it, and tears everything down; cmd/harbormaster-lab is its command line.
// Every program that sends lab traffic runs lab.GuardHere on the thread that
// sends: the prober's workers and the admin client's dialer run on threads
// locked into the client namespace.
package scenario

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Options configures Run.
type Options struct {
	ClusterOptions
	// Trials is the number of faults injected, one after the other in the
	// same cluster, which must recover between them (default 1).
	Trials int
	// LossDuration is how long loss-30 keeps the loss on (default 20s).
	LossDuration time.Duration
	// LossPercent is the loss loss-30 sets with lab.Loss on every node,
	// for frames in and, independently, out (default 30). Between two
	// nodes a frame crosses two such filters: 30 % per node is 51 % per
	// direction of a node-to-node path.
	LossPercent int
	// Settle is how long the cluster must be stable before a fault
	// (default 1s).
	Settle time.Duration
	// StableTimeout bounds every wait for a stable cluster (default 60s).
	StableTimeout time.Duration
	// FlapDuration is how long flap toggles the holder's check (default
	// 60s).
	FlapDuration time.Duration
	// RedisFault is redis-clients' fault (RedisClientFaults; default
	// crash-master).
	RedisFault string
	// RedisRole, when set, adds these YAML fields to the Redis scenarios'
	// redis-master role, e.g. "min_synced_replicas: 1".
	RedisRole string
	// ListenerVIPs gives every node's Sentinel-compatible listener an
	// address that survives the node (ListenerVIP): a vip role per node,
	// preferring it, that moves to another node while it is down; the
	// listeners answer on every address (redis-clients' clients then use
	// these addresses). docs/redis.md, "Listener addresses that survive
	// their node".
	ListenerVIPs bool
	// Busy, when positive, keeps that many CPU-burning workers
	// (Cluster.Busy) on every node from the start of the cluster to the
	// end of the trials: the scenario on a machine whose cores are busy.
	Busy int
	// OldBin is rolling-upgrade's previous build (N-1), which every agent
	// starts on before it is replaced by ClusterOptions.Bin (see
	// BuildUpgradeFrom).
	OldBin string
}

func (o *Options) defaults() {
	if o.Trials <= 0 {
		o.Trials = 1
	}
	if o.LossDuration <= 0 {
		o.LossDuration = 20 * time.Second
	}
	if o.LossPercent <= 0 {
		o.LossPercent = 30
	}
	if o.Settle <= 0 {
		o.Settle = time.Second
	}
	if o.StableTimeout <= 0 {
		o.StableTimeout = 60 * time.Second
	}
	if o.FlapDuration <= 0 {
		o.FlapDuration = 60 * time.Second
	}
	if o.Profile == "" {
		o.Profile = "lan"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Trial is the record of one fault.
type Trial struct {
	N int `json:"n"`
	// Holder and Leader are the VIP holder and the Raft leader before the
	// fault; NewHolder the holder afterwards ("" if it did not change).
	Holder    string `json:"holder"`
	Leader    string `json:"leader"`
	NewHolder string `json:"new_holder,omitempty"`
	// Fault is when the fault was injected.
	Fault time.Time `json:"fault"`
	// OutageMS is the client-visible outage of the trial (see measureOutage).
	OutageMS float64 `json:"outage_ms"`
	// DualHolderMS is the longest time two nodes had the address (0: S1 held).
	DualHolderMS float64 `json:"dual_holder_ms"`
	// LostAckedWrites (Redis scenarios) is the number of writes Redis
	// acknowledged to the writer that the final master does not have.
	LostAckedWrites *int `json:"lost_acked_writes,omitempty"`
	// DualMasterMS (Redis scenarios) is the longest time two Redis servers
	// took writes at once (0: S1 held for Redis).
	DualMasterMS *float64 `json:"dual_master_ms,omitempty"`
	// Figures are the scenario's own measurements, in ms unless named
	// otherwise.
	Figures map[string]float64 `json:"figures,omitempty"`
	// Outcome names what happened when a scenario has several acceptable
	// or reportable endings (redis-crash-unsynced: vacant,
	// promoted-after-delay, promoted-early).
	Outcome string `json:"outcome,omitempty"`
	// Attacks and Accepted (hostile-lan) count, per kind of attack, the
	// attempts made and those the cluster accepted (see Result).
	Attacks  map[string]int `json:"attacks,omitempty"`
	Accepted map[string]int `json:"accepted,omitempty"`
	// Clients (redis-clients) are each client's figures.
	Clients    map[string]ClientTrial `json:"clients,omitempty"`
	Violations []string               `json:"violations,omitempty"`
	Notes      []string               `json:"notes,omitempty"`
}

func (t *Trial) violate(format string, args ...any) {
	t.Violations = append(t.Violations, fmt.Sprintf(format, args...))
}

func (t *Trial) note(format string, args ...any) {
	t.Notes = append(t.Notes, fmt.Sprintf(format, args...))
}

// attack counts n attempts of an attack kind; accept counts n of them
// that the cluster accepted (kind appears in Accepted even when n is 0).
func (t *Trial) attack(kind string, n int) {
	if t.Attacks == nil {
		t.Attacks = map[string]int{}
	}
	t.Attacks[kind] += n
}

func (t *Trial) accept(kind string, n int) {
	if t.Accepted == nil {
		t.Accepted = map[string]int{}
	}
	t.Accepted[kind] += n
}

func (t *Trial) figure(name string, v float64) {
	if t.Figures == nil {
		t.Figures = map[string]float64{}
	}
	t.Figures[name] = v
}

// Target is one performance target of DESIGN.md §5 checked against a run.
// Missing a target is not an invariant violation (OK stays true); the tests
// and the table report it.
type Target struct {
	What     string  `json:"what"`
	Limit    float64 `json:"limit"`
	Measured float64 `json:"measured"`
	Met      bool    `json:"met"`
}

// Result is the outcome of a run of one scenario.
type Result struct {
	Scenario string `json:"scenario"`
	Profile  string `json:"profile"`
	// TLS says whether the agents ran with mutual TLS (false: insecure).
	TLS bool `json:"tls"`
	// Trials is the number of trials completed.
	Trials int `json:"trials"`
	// OK is true when every invariant held in every trial.
	OK         bool     `json:"ok"`
	Violations []string `json:"violations"`
	// OutageMS summarises the trials' client-visible outages.
	OutageMS Stats `json:"outage_ms"`
	// DualHolderMS is the longest time, over the trials, that two nodes
	// both had the address.
	DualHolderMS float64 `json:"dual_holder_ms"`
	// LostAckedWrites and DualMasterMS summarise the trials' fields of the
	// same name (Redis scenarios only).
	LostAckedWrites *Stats           `json:"lost_acked_writes,omitempty"`
	DualMasterMS    *float64         `json:"dual_master_ms,omitempty"`
	Figures         map[string]Stats `json:"figures,omitempty"`
	// Attacks (hostile-lan) is the number of attempts per kind of attack
	// over the trials; Accepted how many of them the cluster accepted: an
	// API call that passed authorization, a lease datagram granted, a
	// Raft frame answered, or an attack after which the state changed
	// (then 1 if no single attempt could be blamed). Each acceptance is
	// also a violation naming it.
	Attacks  map[string]int `json:"attacks,omitempty"`
	Accepted map[string]int `json:"accepted,omitempty"`
	Targets  []Target       `json:"targets,omitempty"`
	// Clients (redis-clients) summarises each client over the trials.
	Clients map[string]ClientStats `json:"clients,omitempty"`
	// Fault is redis-clients' fault.
	Fault string `json:"fault,omitempty"`
	// Skipped says why the scenario did not run.
	Skipped  string  `json:"skipped,omitempty"`
	PerTrial []Trial `json:"per_trial"`
	// Dir is the work dir with the agents' logs, when kept.
	Dir string `json:"dir,omitempty"`
}

// TargetsMet reports whether every target was met.
func (r *Result) TargetsMet() bool {
	for _, t := range r.Targets {
		if !t.Met {
			return false
		}
	}
	return true
}

// scenario is one entry of the catalogue.
type scenario struct {
	name  string
	about string
	// skip, when set, says why the scenario cannot run yet.
	skip string
	run  func(ctx context.Context, c *Cluster, v View, tr *Trial, o Options) error
	// targets returns the §5 targets of a finished run for a profile.
	targets func(r *Result) []Target
	// cluster, when set, adapts the cluster to the scenario before it
	// starts: its spec, the nodes' checks and services, daemons.
	cluster func(co *ClusterOptions, o Options) error
	// fresh runs every trial in a cluster of its own (a trial that leaves
	// the cluster changed for good, as an upgrade does).
	fresh bool
}

func catalogue() []scenario {
	return []scenario{
		{name: "crash-holder", about: "lab.Crash of the VIP holder (port down, everything killed); restore and restart it afterwards",
			run: crashHolder, targets: outageTarget(map[string]float64{"lan": 1000, "fast": 400}, true)},
		{name: "kill-agent", about: "SIGKILL of the holder's agent only: the kernel drops the address within its lifetime, no one adds it before",
			run: killAgent},
		{name: "pause-agent", about: "SIGSTOP of the holder's agent for 3 s, then SIGCONT: the address goes with its lifetime, is not re-added while another node holds it",
			run: pauseAgent},
		{name: "partition-holder", about: "the holder cut from the other nodes (the client reaches everyone): it drops the VIP within its lease, the majority takes it",
			run: partitionHolder, targets: outageTarget(map[string]float64{"lan": 1500}, false)},
		{name: "oneway-partition", about: "every frame from the holder to the other nodes dropped (they still reach it)",
			run: onewayPartition, targets: outageTarget(map[string]float64{"lan": 1500}, false)},
		{name: "heal", about: "partition-holder, then heal: within 1 s the client reaches the current holder (no blackhole)",
			run: heal},
		{name: "heal-client", about: "heal with the client on the holder's side of the partition: its ARP entry points at the old holder until the new one is announced; reached within 1 s of the heal",
			run: healClient},
		{name: "crash-leader", about: "lab.Crash of the Raft leader when it is not the VIP holder: the VIP stays, client outage <= 100 ms",
			run: crashLeader},
		{name: "move", about: "planned move of the VIP to another node (`harbormaster move`): outage p99 <= 50 ms",
			run: move, targets: outageTarget(map[string]float64{"lan": 50, "fast": 50}, true)},
		{name: "drain", about: "drain of the holder (`harbormaster drain`), then undrain: outage p99 <= 50 ms",
			run: drain, targets: outageTarget(map[string]float64{"lan": 50, "fast": 50}, true)},
		{name: "stop-agent", about: "SIGTERM of the holder's agent (graceful stop releases at once), then restart: outage p99 <= 50 ms",
			run: stopAgent, targets: outageTarget(map[string]float64{"lan": 50, "fast": 50}, true)},
		{name: "loss-30", about: "30% loss (in and out) on every node for 20 s: no S1 violation, no needless VIP move or drop",
			run: loss30, targets: func(r *Result) []Target {
				m, d := r.Figures["vip_moves"].Max, r.Figures["vip_drops"].Max
				return []Target{{What: "vip_moves (needless) max == 0", Limit: 0, Measured: m, Met: m == 0},
					{What: "vip_drops (needless) max == 0", Limit: 0, Measured: d, Met: d == 0}}
			}},
		{name: "registry-down", about: "SIGSTOP of the holder's docker-registry: its registry-pull check fails (fall 2 x 1 s + 500 ms) and the VIP is handed over; after SIGCONT the check passes and the VIP stays",
			run: registryDown, cluster: registryCluster},
		{name: "flap", about: "the preferred node's exec check flips every 3 s for 60 s: preempt (delay 2 s) with hold_down 15 s keeps VIP moves within 2 per hold-down plus 2",
			run: flap, cluster: flapCluster},
		{name: "service-crash-active", about: "lab.Crash of notary's active node: the next instance starts only after the lost lease plus stop_timeout; never two actives",
			run: serviceCrashActive, cluster: serviceCluster},
		{name: "service-partition-active", about: "notary's active node cut from the others: it stops notary within its lease; the next instance starts after the lease plus stop_timeout",
			run: servicePartitionActive, cluster: serviceCluster},
		{name: "service-kill-agent", about: "SIGKILL of notary's active node's agent only (the node and notary keep running): the service guard stops notary at the lease's end; the next instance starts elsewhere after it, never two actives",
			run: serviceKillAgent, cluster: serviceCluster},
		{name: "service-pause-agent", about: "SIGSTOP of notary's active node's agent for 3 s: the service guard stops notary at the lease's end though the agent is frozen; the next instance starts elsewhere after it; resumed, the agent does not start it again",
			run: servicePauseAgent, cluster: serviceCluster},
		{name: "stop-hook-hangs", about: "notary's stop hook stops the service then hangs during a move: killed at stop_timeout, no release, the node fences itself, notary starts on the target after stop_timeout + lease + stop_timeout",
			run: stopHookHangs, cluster: serviceCluster},
		{name: "redis-crash-master", about: "lab.Crash of the Redis master's node under a write load through the Redis VIP: a replica with the highest offset is promoted, no two masters; restored, the old node becomes a replica",
			run: redisCrashMaster, cluster: redisCluster,
			targets: redisTargets(map[string]float64{"lan": 1200, "fast": 600}, 0, "DESIGN.md §5: none lost on crash")},
		{name: "redis-partition-master", about: "the Redis master's node cut from its peers, the writer still reaching it: it refuses writes before its lease ends, a new master is elected; after the heal it is a replica and its divergent writes are counted",
			run: redisPartitionMaster, cluster: redisCluster,
			targets: redisTargets(nil, sentinelLossFigure/10, "10x fewer than Sentinel's 14,789")},
		{name: "redis-kill-agent", about: "SIGKILL of the Redis master's agent only (its Redis keeps running and reachable): the new master's agent fences and demotes it remotely before promoting; no two masters",
			run: redisKillAgent, cluster: redisCluster},
		{name: "redis-pause-agent", about: "SIGSTOP of the Redis master's agent for 3 s while the other nodes cannot reach its Redis (TCP to its port from them dropped): no remote demotion is possible, its guard process fences it by the lease's end, before a new master takes writes; resumed, it becomes a replica",
			run: redisPauseAgent, cluster: redisCluster},
		{name: "redis-move", about: "`harbormaster move redis` under a write load: no acknowledged write lost",
			run: redisMove, cluster: redisCluster},
		{name: "redis-restart-all", about: "SIGTERM of all three agents and a restart (Redis keeps running), then a rolling restart of every Redis server, master last: re-elected by offset, no two masters, no acknowledged write lost",
			run: redisRestartAll, cluster: redisCluster},
		{name: "redis-crash-early", about: "every Redis restarted empty (a fresh promotion, every replica in its first full sync with stock settings), then lab.Crash of the new master's node 1-3 s after the promotion (drawn per trial): a new master, no acknowledged write lost (the field report: --nodes 5)",
			run: redisCrashEarly, cluster: redisCluster,
			targets: redisTargets(nil, 0, "none lost when the master's node crashes during the replicas' first sync")},
		{name: "redis-crash-unsynced", about: "replicas kept from syncing (TCP to every node's Redis port from the other nodes dropped), every Redis restarted empty, writes acknowledged by the new master, then lab.Crash of its node; odd trials unsynced_promotion never (no promotion for 10 s, event redis-unsynced; then the node is restored empty), even trials after 3s (promotion no earlier than 3 s, event redis-data-loss); the trial's outcome says which",
			run: redisCrashUnsynced, cluster: redisCluster, targets: unsyncedTargets},
		{name: "redis-clients", about: "Harbor's Redis clients (redigo + FZambia/sentinel as jobservice builds it, go-redis NewFailoverClient as core uses it, the lab's Sentinel-protocol writer) discover the master through the Sentinel-compatible listeners while the master's node crashes (--fault: kill-agent, partition-master, move): per client the time to its first acknowledged write, lost writes and stalls",
			run: redisClients, cluster: redisClientsCluster, targets: clientTargets},
		{name: "hostile-lan", about: "an attacker on the LAN (c2, no certificate of the cluster) forges and replays lease datagrams, calls every API method in plain text, without a certificate and with other CAs' certificates, sends forged Raft frames and floods the API and Raft ports: nothing accepted, no failover",
			run: hostileLAN, cluster: hostileCluster},
		{name: "rolling-upgrade", about: "every agent replaced by the new build (--bin) one node at a time, from the previous one (--old-bin; built from git at chaos/scenario.UpgradeFrom when not given), non-voters, followers, the Raft leader last: SIGTERM, start on the new build, wait until caught up; the registry VIP, notary and the Redis master in use throughout; a fresh cluster per trial",
			run: rollingUpgrade, cluster: upgradeCluster, targets: upgradeTargets, fresh: true},
	}
}

// outageTarget checks outage_ms.p99 against a per-profile limit (no
// target for profiles not listed): below it, or at most it with orEqual.
func outageTarget(limit map[string]float64, orEqual bool) func(r *Result) []Target {
	return func(r *Result) []Target {
		l, ok := limit[r.Profile]
		if !ok {
			return nil
		}
		p := r.OutageMS.P99
		if orEqual {
			return []Target{{What: fmt.Sprintf("outage_ms.p99 <= %.0f", l), Limit: l, Measured: p, Met: p <= l}}
		}
		return []Target{{What: fmt.Sprintf("outage_ms.p99 < %.0f", l), Limit: l, Measured: p, Met: p < l}}
	}
}

// Names returns the names of every scenario, skipped ones included, in
// the catalogue's order.
func Names() []string {
	var out []string
	for _, s := range catalogue() {
		out = append(out, s.name)
	}
	return out
}

// About returns a one-line description of the scenario ("" if unknown).
func About(name string) string {
	for _, s := range catalogue() {
		if s.name == name {
			if s.skip != "" {
				return "skipped: " + s.skip
			}
			return s.about
		}
	}
	return ""
}

// Run builds a fresh lab with a 3-node cluster, runs the scenario's trials
// in it and tears it down (also when ctx ends: SIGINT/SIGTERM). It returns
// an error when the lab or the cluster could not be built, or ctx ended;
// everything the product did wrong is in the Result's violations.
func Run(ctx context.Context, name string, o Options) (Result, error) {
	o.defaults()
	res := Result{Scenario: name, Profile: o.Profile, TLS: !o.Insecure, Violations: []string{}, PerTrial: []Trial{}}
	idx := slices.IndexFunc(catalogue(), func(s scenario) bool { return s.name == name })
	if idx < 0 {
		return res, fmt.Errorf("unknown scenario %q; scenarios: %s", name, strings.Join(Names(), ", "))
	}
	sc := catalogue()[idx]
	if name == "redis-clients" {
		if o.RedisFault == "" {
			o.RedisFault = FaultCrashMaster
		}
		res.Fault = o.RedisFault
	}
	if sc.skip != "" {
		res.Skipped = sc.skip
		res.OK = true
		return res, nil
	}
	if sc.fresh && o.Trials > 1 {
		return runFresh(ctx, sc, o, res)
	}
	return runTrials(ctx, sc, o, res)
}

// runFresh runs each trial of sc in a cluster of its own (in a
// subdirectory trial<n> of Dir when Dir is set) and aggregates them.
func runFresh(ctx context.Context, sc scenario, o Options, res Result) (Result, error) {
	for i := 1; i <= o.Trials; i++ {
		one := o
		one.Trials = 1
		if o.Dir != "" {
			one.Dir = filepath.Join(o.Dir, fmt.Sprintf("trial%d", i))
			if err := os.MkdirAll(one.Dir, 0o755); err != nil {
				return res, err
			}
		}
		r, err := runTrials(ctx, sc, one, Result{Scenario: res.Scenario, Profile: res.Profile, TLS: res.TLS, Violations: []string{}, PerTrial: []Trial{}})
		if err != nil {
			return res, fmt.Errorf("trial %d: %w", i, err)
		}
		for _, tr := range r.PerTrial {
			tr.N = i
			res.PerTrial = append(res.PerTrial, tr)
		}
		if len(r.PerTrial) == 0 {
			// The cluster never became stable: its violations are the
			// run's own.
			for _, v := range r.Violations {
				res.Violations = append(res.Violations, fmt.Sprintf("trial %d: %s", i, v))
			}
			break
		}
		res.Trials = i
	}
	if o.Dir != "" {
		res.Dir = o.Dir
	}
	return finish(res, sc), nil
}

// runTrials builds the scenario's cluster and runs o.Trials trials in it.
func runTrials(ctx context.Context, sc scenario, o Options, res Result) (Result, error) {
	name := sc.name
	if sc.cluster != nil {
		if err := sc.cluster(&o.ClusterOptions, o); err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
	}
	c, err := StartCluster(ctx, o.ClusterOptions)
	if err != nil {
		return res, err
	}
	defer func() {
		if err := c.Close(); err != nil {
			o.Log.Warn("teardown", "err", err)
		}
	}()
	if o.Dir != "" {
		res.Dir = o.Dir
	}
	if o.Busy > 0 {
		for _, n := range c.Nodes() {
			if _, err := c.Busy(ctx, n.Name, o.Busy); err != nil {
				return res, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	o.Log.Info("cluster starting", "scenario", name, "profile", o.Profile, "lab", c.Lab.Prefix())
	v, err := c.WaitStable(ctx, o.Settle, o.StableTimeout)
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Violations = append(res.Violations, fmt.Sprintf("%s: the cluster never became stable: %v", stamp(time.Now()), err))
		return finish(res, sc), nil
	}
	for i := 1; i <= o.Trials; i++ {
		start := time.Now()
		tr := Trial{N: i, Holder: v.Holder, Leader: v.Leader}
		o.Log.Info("trial", "scenario", name, "n", i, "holder", v.Holder, "leader", v.Leader, "epoch", v.Epoch)
		if err := sc.run(ctx, c, v, &tr, o); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("%s trial %d: %w", name, i, err)
		}
		// Recovery is part of the trial: restarted nodes rejoining must
		// not break S1 either.
		var rerr error
		v, rerr = c.WaitStable(ctx, o.Settle, o.StableTimeout)
		if rerr != nil && ctx.Err() != nil {
			return res, ctx.Err()
		}
		if rerr != nil {
			tr.violate("%s: the cluster did not recover after the fault: %v", stamp(time.Now()), rerr)
		}
		for _, e := range c.UnexpectedExits() {
			tr.violate("%s", e)
		}
		for _, e := range c.standInViolations(start) {
			tr.violate("%s", e)
		}
		samples := c.SamplesSince(start)
		longest, vs := dualHolders(samples, samplePeriod)
		tr.DualHolderMS = msf(longest)
		tr.Violations = append(vs, tr.Violations...)
		if err := c.Sampler.Err(); err != nil {
			tr.violate("%s: sampler: %v (samples are missing; S1 unproven)", stamp(time.Now()), err)
		}
		o.Log.Info("trial done", "scenario", name, "n", i, "outage_ms", tr.OutageMS, "dual_holder_ms", tr.DualHolderMS,
			"violations", len(tr.Violations), "figures", tr.Figures)
		res.PerTrial = append(res.PerTrial, tr)
		res.Trials = i
		if rerr != nil {
			break
		}
	}
	return finish(res, sc), nil
}

// finish aggregates the trials.
func finish(res Result, sc scenario) Result {
	var outages, lost []float64
	figs := map[string][]float64{}
	for _, tr := range res.PerTrial {
		outages = append(outages, tr.OutageMS)
		if tr.LostAckedWrites != nil {
			lost = append(lost, float64(*tr.LostAckedWrites))
		}
		if tr.DualMasterMS != nil {
			d := *tr.DualMasterMS
			if res.DualMasterMS != nil {
				d = max(d, *res.DualMasterMS)
			}
			res.DualMasterMS = &d
		}
		res.DualHolderMS = max(res.DualHolderMS, tr.DualHolderMS)
		for _, v := range tr.Violations {
			res.Violations = append(res.Violations, fmt.Sprintf("trial %d: %s", tr.N, v))
		}
		for k, v := range tr.Figures {
			figs[k] = append(figs[k], v)
		}
		res.Attacks = addCounts(res.Attacks, tr.Attacks)
		res.Accepted = addCounts(res.Accepted, tr.Accepted)
	}
	res.OutageMS = summarize(outages)
	var clients []map[string]ClientTrial
	for _, tr := range res.PerTrial {
		if tr.Clients != nil {
			clients = append(clients, tr.Clients)
		}
	}
	res.Clients = SummarizeClients(clients)
	if len(lost) > 0 {
		l := summarize(lost)
		res.LostAckedWrites = &l
	}
	if len(figs) > 0 {
		res.Figures = map[string]Stats{}
		for k, v := range figs {
			res.Figures[k] = summarize(v)
		}
	}
	res.OK = len(res.Violations) == 0
	if sc.targets != nil && res.Trials > 0 {
		res.Targets = sc.targets(&res)
	}
	return res
}

// addCounts adds b into a (allocated when b has keys) and returns a.
func addCounts(a, b map[string]int) map[string]int {
	for k, v := range b {
		if a == nil {
			a = map[string]int{}
		}
		a[k] += v
	}
	return a
}

// FigureNames returns the result's figure names, sorted.
func (r *Result) FigureNames() []string {
	var out []string
	for k := range r.Figures {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Sleep waits d or until ctx ends (its error then).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// poll evaluates cond every 5 ms until it holds (returning true) or
// timeout passes or ctx ends (false).
func poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	return pollEvery(ctx, 5*time.Millisecond, timeout, cond)
}

// pollEvery is poll with another period (for conditions that cost the
// agents something, such as admin calls).
func pollEvery(ctx context.Context, every, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || Sleep(ctx, every) != nil {
			return false
		}
	}
}

// logCount counts the lines containing s in the node's agent log from byte
// offset from on; it returns the count and the current size.
func (c *Cluster) logCount(node, s string, from int64) (int, int64) {
	b, err := os.ReadFile(c.LogPath(node))
	if err != nil || int64(len(b)) < from {
		return 0, int64(len(b))
	}
	return strings.Count(string(b[from:]), s), int64(len(b))
}
