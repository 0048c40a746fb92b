package scenario

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/report"
	"github.com/harbormaster/harbormaster/chaos/schedule"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// ChaosOptions configures Chaos.
type ChaosOptions struct {
	ClusterOptions
	// Runs is the number of runs (default 1); run i uses seed Seed+i, so
	// `--seed S --runs 1` replays the run of seed S.
	Runs int
	Seed int64
	// Duration is the span of each run's schedule (default 30s); Tail the
	// quiet time after it (default: the services' settle time + 2 s).
	Duration time.Duration
	Tail     time.Duration
	// Kinds restricts the faults drawn (default: every kind).
	Kinds []schedule.Kind
	// Redis adds a redis-server per node, the redis-master role and its
	// VIP, the Redis faults and the Redis checks (chaosredis.go).
	Redis bool
	// StableTimeout bounds the wait for a stable cluster before a run
	// (default 60s).
	StableTimeout time.Duration
	// Each, when set, receives every run as it ends.
	Each func(report.Run)
}

// chaosSettle is how long after its faults end every role must have one
// holder again, per profile; a move up to that long after a fault ended is
// still charged to it (the holder a heal brings back). A heal that found the roles held needs no
// time; a heal that ends a lost quorum needs the agents' restart (about a
// second), a Raft election and a lease: lan 3 s, fast 2 s.
func chaosSettle(profile string) time.Duration {
	if profile == "fast" {
		return 2 * time.Second
	}
	return 3 * time.Second
}

func (o *ChaosOptions) defaults() {
	if o.Runs <= 0 {
		o.Runs = 1
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Second
	}
	if o.Profile == "" {
		o.Profile = "lan"
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Tail <= 0 {
		o.Tail = chaosSettle(o.Profile) + svcStopTimeout + 2*time.Second
	}
	if o.StableTimeout <= 0 {
		o.StableTimeout = 60 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// chaosRoles are the roles of the chaos cluster: the VIP and the two
// stand-in services of the service scenarios.
var chaosRoles = []string{VIPRole, svcNotary, svcClair}

// Chaos runs o.Runs randomized runs, each in a fresh cluster (see
// chaosRun), and returns the summary. A run whose cluster never became
// stable counts as a run with a liveness violation.
func Chaos(ctx context.Context, o ChaosOptions) (report.Summary, error) {
	o.defaults()
	sum := report.Summary{Profile: o.Profile, Violations: []report.Violation{}, Seeds: []int64{}, PerRun: []report.Run{}}
	if o.LabBin == "" {
		return sum, errNoLabBin
	}
	for i := 0; i < o.Runs; i++ {
		seed := o.Seed + int64(i)
		one := o
		if o.Dir != "" {
			one.Dir = filepath.Join(o.Dir, fmt.Sprintf("nodes%d-seed%d", o.Nodes, seed))
			if err := os.MkdirAll(one.Dir, 0o755); err != nil {
				return sum, err
			}
		}
		run, err := chaosRun(ctx, one, seed)
		if err != nil {
			return sum, fmt.Errorf("run %d (seed %d): %w", i+1, seed, err)
		}
		run.Run = i + 1
		for j := range run.Violations {
			run.Violations[j].Run, run.Violations[j].Seed = run.Run, seed
		}
		sum.Runs++
		if run.OK {
			sum.OK++
		}
		sum.Flaps += run.Flaps
		sum.Seeds = append(sum.Seeds, seed)
		if !slices.Contains(sum.Nodes, run.Nodes) {
			sum.Nodes = append(sum.Nodes, run.Nodes)
		}
		sum.Violations = append(sum.Violations, run.Violations...)
		sum.PerRun = append(sum.PerRun, run)
		if o.Each != nil {
			o.Each(run)
		}
	}
	return sum, nil
}

// chaosRun runs one schedule in a fresh cluster: wait until it is stable,
// start the faults at their times (one goroutine each), wait for the last
// to end and the tail, then analyse what the observers saw.
func chaosRun(ctx context.Context, o ChaosOptions, seed int64) (report.Run, error) {
	run := report.Run{Seed: seed, Nodes: o.Nodes, Profile: o.Profile}
	sp := schedule.Params{Nodes: o.Nodes, Duration: o.Duration, Roles: chaosRoles, Kinds: o.Kinds}
	co := o.ClusterOptions
	prepare := func() error { return serviceCluster(&co, Options{}) }
	if o.Redis {
		sp.Roles, sp.RedisRole = append(slices.Clone(chaosRoles), RedisRole), RedisRole
		prepare = func() error { return chaosRedisCluster(&co) }
	}
	sched, err := schedule.Draw(seed, sp)
	if err != nil {
		return run, err
	}
	if err := prepare(); err != nil {
		return run, err
	}
	c, err := StartCluster(ctx, co)
	if err != nil {
		return run, err
	}
	defer func() {
		if err := c.Close(); err != nil {
			o.Log.Warn("teardown", "err", err)
		}
	}()
	if o.Dir != "" {
		run.Dir = o.Dir
	}
	v, err := c.WaitStable(ctx, time.Second, o.StableTimeout)
	if err != nil {
		if ctx.Err() != nil {
			return run, ctx.Err()
		}
		now := time.Now()
		run.Start = now
		run.Violations = append(run.Violations, report.Violation{Time: now, Invariant: "liveness", Detail: "the cluster never became stable: " + err.Error()})
		return run, nil
	}
	o.Log.Info("chaos run", "seed", seed, "nodes", o.Nodes, "profile", o.Profile, "faults", len(sched), "holder", v.Holder, "leader", v.Leader)

	var rd *chaosRedis
	if o.Redis {
		if rd, err = startChaosRedis(ctx, c, seed); err != nil {
			if ctx.Err() != nil {
				return run, ctx.Err()
			}
			run.Start = time.Now()
			run.Violations = append(run.Violations, report.Violation{Time: run.Start, Invariant: "liveness", Detail: err.Error()})
			return run, nil
		}
		defer rd.stop()
	}

	spec0, err := hmv1.NewAdminClient(c.conns[v.Leader]).GetSpec(ctx, &hmv1.GetSpecRequest{})
	if err != nil {
		return run, fmt.Errorf("spec version before the run: %w", err)
	}
	cas := &casClients{c: c, doc: co.Spec}
	casCtx, stopCAS := context.WithCancel(ctx)
	casDone := make(chan struct{})
	go func() { defer close(casDone); cas.run(casCtx, 2, seed) }()

	load0 := loadAvg1()
	stall := &stallProbe{}
	stallCtx, stopStall := context.WithCancel(ctx)
	stallDone := make(chan struct{})
	go func() { defer close(stallDone); stall.run(stallCtx) }()
	x := &chaosExec{c: c, log: o.Log, busy: map[string]bool{}, cuts: map[int][]lab.Cut{}, loss: map[int]map[string]int{}, leader: v.Leader, redis: rd}
	start := time.Now()
	pollCtx, stopPoll := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	go func() { defer close(pollDone); x.pollLeaders(pollCtx) }()

	var wg sync.WaitGroup
	applied := make([]appliedFault, len(sched))
	for i, f := range sched {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i] = x.inject(ctx, start, f)
		}()
	}
	wg.Wait()
	var last time.Time
	for _, f := range applied {
		if f.To.After(last) {
			last = f.To
		}
	}
	err = Sleep(ctx, time.Until(last.Add(o.Tail)))
	end := time.Now()
	stopPoll()
	stopCAS()
	stopStall()
	<-pollDone
	<-casDone
	<-stallDone
	if err != nil {
		return run, err
	}

	obs := chaosObs{Start: start, End: end, VIP: VIPRole, Samples: c.SamplesSince(start), Services: []string{svcNotary, svcClair},
		Leaders: x.leaders, Attempts: c.Prober.Since(start), Faults: applied}
	if rd != nil {
		obs.Lanes = append(obs.Lanes, rd.lane(start, end))
	}
	if c.svcLog != nil {
		// The stand-ins' beats up to the end are in the log a little
		// later on a busy machine: read it once they had time to land,
		// or a running instance would seem to stop before the end.
		if err := Sleep(ctx, standInFresh); err != nil {
			return run, err
		}
		insts, err := c.svcLog.Instances()
		if err != nil {
			return run, fmt.Errorf("service log: %w", err)
		}
		obs.Instances = insts
	}
	lim := chaosLimits{Settle: chaosSettle(o.Profile), Grace: chaosSettle(o.Profile), Period: samplePeriod, ServiceExtra: svcStopTimeout}
	got := analyseChaos(obs, lim)
	got.Seed, got.Nodes, got.Profile, got.Dir = seed, o.Nodes, o.Profile, run.Dir
	for _, f := range applied {
		if f.Skipped != "" {
			o.Log.Info("fault skipped", "fault", f.Fault.String(), "why", f.Skipped)
		}
		if f.Err != "" {
			got.Violations = append(got.Violations, report.Violation{AtMS: relMS(start, f.From), Time: f.From, Invariant: "lab", Detail: fmt.Sprintf("%s: %s", f.Fault, f.Err)})
		}
	}
	for _, e := range c.UnexpectedExits() {
		got.Violations = append(got.Violations, report.Violation{AtMS: got.DurationMS, Time: end, Invariant: "agent-exit", Detail: e})
	}
	if err := c.Sampler.Err(); err != nil {
		got.Violations = append(got.Violations, report.Violation{AtMS: got.DurationMS, Time: end, Invariant: "S1", Detail: fmt.Sprintf("sampler: %v (samples are missing; S1 unproven)", err)})
	}
	if _, err := c.WaitStable(ctx, time.Second, o.StableTimeout); err != nil {
		if ctx.Err() != nil {
			return run, ctx.Err()
		}
		got.Violations = append(got.Violations, report.Violation{AtMS: relMS(start, time.Now()), Time: time.Now(), Invariant: "liveness", Detail: "the cluster did not become stable after the run: " + err.Error()})
	}
	got.Figures = chaosFigures(got, applied)
	// The machine's load (1-minute average, the lab's 2 cores shared with
	// everything else), so a run on a busy machine reads as one.
	got.Figures["load1_start"], got.Figures["load1_end"] = load0, loadAvg1()
	// How late this process's own 5 ms sleeps woke (the machine's
	// scheduling stalls): a stall longer than the lease lapses every lease
	// on the machine at once, whatever the schedule did.
	got.Figures["stall_max_ms"] = msf(stall.max())
	if rd != nil {
		rd.check(ctx, &got, start, end, applied, c.Timing.Lease)
	}
	ops, okOps, unknown := cas.history()
	got.Figures["cas_ops"], got.Figures["cas_ok"], got.Figures["cas_unknown"] = float64(len(ops)), float64(okOps), float64(unknown)
	vis := ""
	if o.Dir != "" {
		vis = filepath.Join(o.Dir, "cas-history.html")
	}
	switch r := checkCAS(spec0.Version, ops, 30*time.Second, vis); r {
	case porcupine.Illegal:
		where := ""
		if vis != "" {
			where = "; drawn in " + vis
		}
		got.Violations = append(got.Violations, report.Violation{AtMS: got.DurationMS, Time: end, Invariant: "linearizability",
			Detail: fmt.Sprintf("the spec's compare-and-set history (%d operations, %d won, %d unknown) is not linearizable (porcupine)%s", len(ops), okOps, unknown, where)})
	case porcupine.Unknown:
		o.Log.Warn("porcupine timed out on the compare-and-set history", "ops", len(ops))
		got.Figures["cas_unchecked"] = 1
	}
	got.OK = len(got.Violations) == 0
	return got, nil
}

// stallProbe measures how late 5 ms sleeps wake up, the longest so far.
type stallProbe struct {
	mu      sync.Mutex
	longest time.Duration
}

func (p *stallProbe) run(ctx context.Context) {
	const tick = 5 * time.Millisecond
	for ctx.Err() == nil {
		t := time.Now()
		time.Sleep(tick)
		if late := time.Since(t) - tick; late > 0 {
			p.mu.Lock()
			p.longest = max(p.longest, late)
			p.mu.Unlock()
		}
	}
}

func (p *stallProbe) max() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.longest
}

// loadAvg1 is the machine's 1-minute load average (-1 if unreadable).
func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	if _, err := fmt.Sscanf(string(b), "%f", &l); err != nil {
		return -1
	}
	return l
}

// chaosFigures are a run's own measurements.
func chaosFigures(r report.Run, applied []appliedFault) map[string]float64 {
	fig := map[string]float64{"faults": 0, "skipped": 0, "moves": float64(len(r.Moves)), "outage_max_ms": 0, "leader_changes": 0, "apply_max_ms": 0}
	for _, f := range applied {
		if f.Skipped != "" {
			fig["skipped"]++
			continue
		}
		fig["faults"]++
		if f.Network() {
			// How long installing a network fault took: the uncertainty
			// of its time.
			fig["apply_max_ms"] = max(fig["apply_max_ms"], math.Round(msf(f.InEffect.Sub(f.From))))
		}
	}
	for _, o := range r.Outages {
		fig["outage_max_ms"] = max(fig["outage_max_ms"], math.Round(o.ToMS-o.FromMS))
	}
	terms := map[uint64]bool{}
	for _, l := range r.Leaders {
		if l.Holder != "" {
			terms[l.Epoch] = true
		}
	}
	if len(terms) > 0 {
		fig["leader_changes"] = float64(len(terms) - 1)
	}
	return fig
}

// chaosExec applies a schedule's faults to a cluster. Its methods are safe
// for concurrent use: one goroutine per fault.
type chaosExec struct {
	c   *Cluster
	log *slog.Logger

	mu      sync.Mutex
	busy    map[string]bool        // nodes held by a process fault
	cuts    map[int][]lab.Cut      // by fault ID: its directed cuts
	loss    map[int]map[string]int // by fault ID: its loss per host
	leader  string                 // the last leader seen
	leaders []leaderObs            // every reading (pollLeaders)
	redis   *chaosRedis            // nil without Redis
	netMu   sync.Mutex             // serialises SetLinks
}

// pollLeaders reads, every 200 ms, who leads in which term, from the
// running agents' status (the highest term any of them leads in).
func (x *chaosExec) pollLeaders(ctx context.Context) {
	for {
		var wg sync.WaitGroup
		var mu sync.Mutex
		best := leaderObs{At: time.Now()}
		for _, n := range x.c.Nodes() {
			if !x.c.Running(n.Name) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				st, err := x.c.Status(cctx, n.Name)
				if err != nil || !st.IsLeader {
					return
				}
				mu.Lock()
				if st.Term >= best.Term {
					best.Leader, best.Term = n.Name, st.Term
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		x.mu.Lock()
		x.leaders = append(x.leaders, best)
		if best.Leader != "" {
			x.leader = best.Leader
		}
		x.mu.Unlock()
		if Sleep(ctx, 200*time.Millisecond) != nil {
			return
		}
	}
}

// world is what the faults resolve against now.
func (x *chaosExec) world() schedule.World {
	x.mu.Lock()
	defer x.mu.Unlock()
	w := schedule.World{Leader: x.leader, Holders: map[string]string{}, Busy: map[string]bool{}, Client: client}
	for _, n := range x.c.Nodes() {
		w.Nodes = append(w.Nodes, n.Name)
	}
	for n := range x.busy {
		w.Busy[n] = true
	}
	w.Holders[VIPRole] = strings.Join(x.c.Holders(), "+")
	if x.redis != nil {
		w.Holders[RedisRole] = x.redis.holder()
	}
	if x.c.svcLog != nil {
		if insts, err := x.c.svcLog.Instances(); err == nil {
			for _, in := range insts {
				if time.Since(in.End) < standInFresh && !in.Stopped {
					w.Holders[in.Role] = in.Node
				}
			}
		}
	}
	return w
}

// inject waits until the fault's time, resolves and applies it, waits
// until its end and undoes it.
func (x *chaosExec) inject(ctx context.Context, start time.Time, f schedule.Fault) appliedFault {
	af := appliedFault{Fault: f}
	if err := Sleep(ctx, time.Until(start.Add(f.At))); err != nil {
		af.Skipped = "cancelled"
		return af
	}
	w := x.world()
	res, err := schedule.Resolve(f, w)
	if err != nil {
		af.Skipped = err.Error()
		return af
	}
	af.Targets = res.Targets
	process := !f.Network() && f.Kind != schedule.CPU
	if process {
		x.mu.Lock()
		for _, n := range res.Targets {
			if x.busy[n] {
				x.mu.Unlock()
				af.Skipped = n + " became busy"
				return af
			}
		}
		for _, n := range res.Targets {
			x.busy[n] = true
		}
		x.mu.Unlock()
		defer func() {
			x.mu.Lock()
			for _, n := range res.Targets {
				delete(x.busy, n)
			}
			x.mu.Unlock()
		}()
	}
	x.log.Info("fault", "fault", f.String(), "targets", res.Targets)
	af.From = time.Now()
	undo, detail, err := x.apply(ctx, f, res)
	af.InEffect = time.Now()
	af.Detail = detail
	if err != nil {
		af.Err = err.Error()
	}
	if err := Sleep(ctx, time.Until(start.Add(f.End()))); err != nil && undo != nil {
		_ = undo()
	} else if undo != nil {
		if err := undo(); err != nil && af.Err == "" {
			af.Err = "undo: " + err.Error()
		}
	}
	af.To = time.Now()
	return af
}

// apply applies one resolved fault and returns what undoes it.
func (x *chaosExec) apply(ctx context.Context, f schedule.Fault, res schedule.Resolved) (undo func() error, detail string, err error) {
	c := x.c
	node := ""
	if len(res.Targets) > 0 {
		node = res.Targets[0]
	}
	switch f.Kind {
	case schedule.Crash:
		if _, err := c.Crash(node); err != nil {
			return nil, "", err
		}
		return func() error { return c.Restore(node) }, "", nil
	case schedule.KillAgent:
		if err := x.stopAgent(ctx, node, syscall.SIGKILL); err != nil {
			return nil, "", err
		}
		return func() error { return c.StartAgent(node) }, "", nil
	case schedule.Restart:
		if err := x.stopAgent(ctx, node, syscall.SIGTERM); err != nil {
			return nil, "", err
		}
		return func() error { return c.StartAgent(node) }, "", nil
	case schedule.PauseAgent:
		if err := c.Signal(node, syscall.SIGSTOP); err != nil {
			return nil, "", err
		}
		return func() error { return c.Signal(node, syscall.SIGCONT) }, "", nil
	case schedule.WipeData:
		if err := x.stopAgent(ctx, node, syscall.SIGKILL); err != nil {
			return nil, "", err
		}
		dir := filepath.Join(c.Dir(), node)
		if err := os.RemoveAll(dir); err != nil {
			return nil, "", err
		}
		return nil, "data dir " + dir + " removed", c.StartAgent(node)
	case schedule.RollingRestart:
		for _, n := range res.Targets {
			if err := x.stopAgent(ctx, n, syscall.SIGTERM); err != nil {
				return nil, "", err
			}
			if err := c.StartAgent(n); err != nil {
				return nil, "", err
			}
			if err := x.waitReady(ctx, n, 15*time.Second); err != nil {
				return nil, "", err
			}
		}
		return nil, "order " + strings.Join(res.Targets, ","), nil
	case schedule.LeaderCrashMove:
		// The move goes to the leader; its node is crashed 20 ms later,
		// while the move is being committed or carried out.
		moveErr := make(chan error, 1)
		go func() {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			moveErr <- c.Move(cctx, node, f.Role, res.MoveTo)
		}()
		if err := Sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, "", err
		}
		if _, err := c.Crash(node); err != nil {
			return nil, "", err
		}
		detail := fmt.Sprintf("move %s to %s, then crash of the leader %s", f.Role, res.MoveTo, node)
		return func() error {
			if err := <-moveErr; err != nil {
				x.log.Info("move during a leader crash failed (allowed)", "err", err)
			}
			return c.Restore(node)
		}, detail, nil
	case schedule.CPU:
		var procs []*exec.Cmd
		stop := func() error {
			for _, p := range procs {
				_ = p.Process.Kill()
				_ = p.Wait()
			}
			return nil
		}
		for _, n := range res.Targets {
			for range f.Workers {
				p := c.Lab.Command(context.Background(), n, "/bin/sh", "-c", "while :; do :; done")
				if err := p.Start(); err != nil {
					_ = stop()
					return nil, "", err
				}
				procs = append(procs, p)
			}
		}
		return stop, fmt.Sprintf("%d busy processes on each of %s", f.Workers, strings.Join(res.Targets, ",")), nil
	case schedule.Partition, schedule.OneWay, schedule.Loss:
		cuts, loss, detail := networkFault(f, res, x.c.Nodes())
		x.mu.Lock()
		x.cuts[f.ID], x.loss[f.ID] = cuts, loss
		x.mu.Unlock()
		if err := x.syncLinks(); err != nil {
			return nil, detail, err
		}
		return func() error {
			x.mu.Lock()
			delete(x.cuts, f.ID)
			delete(x.loss, f.ID)
			x.mu.Unlock()
			return x.syncLinks()
		}, detail, nil
	case schedule.KillRedis, schedule.PauseRedis:
		return x.applyRedis(f, node)
	}
	return nil, "", fmt.Errorf("unknown fault kind %q", f.Kind)
}

// networkFault returns a network fault's cuts and loss.
func networkFault(f schedule.Fault, res schedule.Resolved, nodes []lab.Node) ([]lab.Cut, map[string]int, string) {
	var cuts []lab.Cut
	switch f.Kind {
	case schedule.Partition:
		for _, a := range res.Sides[0] {
			for _, b := range res.Sides[1] {
				cuts = append(cuts, lab.Cut{From: a, To: b}, lab.Cut{From: b, To: a})
			}
		}
		d := fmt.Sprintf("%s: [%s] | [%s]", f.Shape, strings.Join(res.Sides[0], " "), strings.Join(res.Sides[1], " "))
		if res.Bridge != "" {
			d += " bridge " + res.Bridge
		}
		return cuts, nil, d
	case schedule.OneWay:
		from := res.Targets[0]
		for _, n := range nodes {
			if n.Name != from {
				cuts = append(cuts, lab.Cut{From: from, To: n.Name})
			}
		}
		return cuts, nil, "every frame from " + from + " to the other nodes dropped"
	}
	loss := map[string]int{}
	for _, n := range res.Targets {
		loss[n] = f.Percent
	}
	return nil, loss, fmt.Sprintf("%d%% loss in and out of %s", f.Percent, strings.Join(res.Targets, ","))
}

// syncLinks installs the union of the active network faults.
func (x *chaosExec) syncLinks() error {
	x.netMu.Lock()
	defer x.netMu.Unlock()
	x.mu.Lock()
	var cuts []lab.Cut
	loss := map[string]int{}
	for _, cs := range x.cuts {
		cuts = append(cuts, cs...)
	}
	for _, l := range x.loss {
		for n, p := range l {
			loss[n] = max(loss[n], p)
		}
	}
	x.mu.Unlock()
	return x.c.Lab.SetLinks(cuts, loss)
}

// stopAgent signals the node's agent and waits until it exited.
func (x *chaosExec) stopAgent(ctx context.Context, node string, sig syscall.Signal) error {
	if !x.c.Running(node) {
		return fmt.Errorf("the agent on %s is not running", node)
	}
	if err := x.c.Signal(node, sig); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := x.c.WaitAgentExit(cctx, node); err != nil {
		// A hung stop: SIGQUIT makes the Go runtime write every goroutine's
		// stack into the agent's log (kept with --dir), then exit.
		_ = x.c.Signal(node, syscall.SIGQUIT)
		qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
		_ = x.c.WaitAgentExit(qctx, node)
		qcancel()
		return fmt.Errorf("the agent on %s did not exit within 15 s of %v (sent SIGQUIT: its goroutines are in its log): %w", node, sig, err)
	}
	return nil
}

// waitReady waits until the node's agent reports ready.
func (x *chaosExec) waitReady(ctx context.Context, node string, timeout time.Duration) error {
	ok := pollEvery(ctx, 100*time.Millisecond, timeout, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		st, err := x.c.Status(cctx, node)
		return err == nil && st.Ready
	})
	if !ok {
		return errors.New(node + " not ready after its restart")
	}
	return nil
}
