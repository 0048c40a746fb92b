package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/procstat"
	"github.com/harbormaster/harbormaster/internal/promtext"
)

// The soak: a cluster under a steady, repeating load of ordinary events
// (planned moves, holder crashes and restores, agent restarts, moves of
// the Redis master) while every agent is sampled, to tell whether the
// agents' memory, goroutines, open files, CPU and Raft log stay flat.
//
// The last node (the keeper) is never crashed or restarted: its one agent
// process lives the whole run and sees every event from the other side
// (peers leaving and coming back, elections, moves to and from it), so at
// least one process has the whole run to show a leak. The other nodes'
// processes are judged too, each node on its longest-lived process.

// Series names of the soak.
const (
	SeriesRSS        = "rss_kib"
	SeriesGoroutines = "goroutines"
	SeriesFDs        = "open_fds"
	SeriesCPU        = "cpu_pct"
	SeriesRaftDB     = "raft_db_kib"
)

// SoakSeries lists the series in report order.
var SoakSeries = []string{SeriesRSS, SeriesGoroutines, SeriesFDs, SeriesCPU, SeriesRaftDB}

// SoakBounds is each series' largest growth a day that counts as flat (see
// Judge): 10 MiB of RSS; one goroutine, one open file an hour; one
// percentage point of a core; 10 MiB of raft.db.
var SoakBounds = map[string]float64{
	SeriesRSS:        10 * 1024,
	SeriesGoroutines: 24,
	SeriesFDs:        24,
	SeriesCPU:        1,
	SeriesRaftDB:     10 * 1024,
}

// SoakOptions configures Soak.
type SoakOptions struct {
	ClusterOptions
	// Duration is how long the load runs once the cluster is stable
	// (default 1h).
	Duration time.Duration
	// Every is the period of the load's events (default 20s); an event
	// that takes longer (it waits for the cluster to settle) delays the
	// next.
	Every time.Duration
	// Sample is the period of the samples of every agent (default 30s).
	Sample time.Duration
	// Redis adds a redis-master role, a Redis server per node, and moves
	// of the Redis master to the load.
	Redis bool
}

func (o *SoakOptions) defaults() {
	if o.Duration <= 0 {
		o.Duration = time.Hour
	}
	if o.Every <= 0 {
		o.Every = 20 * time.Second
	}
	if o.Sample <= 0 {
		o.Sample = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// SoakSample is one sample of one agent.
type SoakSample struct {
	// T is the time since the start of the load, in seconds.
	T    float64 `json:"t_s"`
	Node string  `json:"node"`
	PID  int     `json:"pid"`
	// RSSKiB is VmRSS, FDs the entries of /proc/PID/fd, CPUSeconds the
	// process's user+system time so far.
	RSSKiB     int64   `json:"rss_kib"`
	FDs        int     `json:"open_fds"`
	CPUSeconds float64 `json:"cpu_s"`
	// CPUPct is the CPU time since the process's previous sample over the
	// wall time between them, in % of one core (0 on its first sample).
	CPUPct float64 `json:"cpu_pct"`
	// Goroutines is the agent's go_goroutines; AppliedIndex its
	// harbormaster_raft_applied_index (-1: the scrape failed).
	Goroutines   float64 `json:"goroutines"`
	AppliedIndex float64 `json:"applied_index"`
	// RaftDBKiB is the size of the data dir's raft.db; SnapshotIndex the
	// index of the newest snapshot in it (0: none).
	RaftDBKiB     int64  `json:"raft_db_kib"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	Err           string `json:"err,omitempty"`
}

// SoakEvent is one event of the load.
type SoakEvent struct {
	T      float64 `json:"t_s"`
	Kind   string  `json:"kind"`
	Node   string  `json:"node"`
	TookMS float64 `json:"took_ms"`
	Err    string  `json:"err,omitempty"`
}

// SoakVerdict is the verdict on one series of one node.
type SoakVerdict struct {
	Series string `json:"series"`
	Node   string `json:"node"`
	// PID is the process judged (0: the series spans the node's restarts,
	// as raft.db does).
	PID int `json:"pid"`
	Judgement
	// Note says more (the Raft log's index, rate and snapshots).
	Note string `json:"note,omitempty"`
}

// SoakResult is the outcome of Soak.
type SoakResult struct {
	Nodes    int    `json:"nodes"`
	Profile  string `json:"profile"`
	Redis    bool   `json:"redis"`
	Keeper   string `json:"keeper"`
	Duration string `json:"duration"`
	Every    string `json:"every"`
	Sample   string `json:"sample"`
	// OK is true when every event succeeded (the cluster settled after
	// each) and no agent exited unexpectedly.
	OK       bool          `json:"ok"`
	Problems []string      `json:"problems,omitempty"`
	Samples  []SoakSample  `json:"samples"`
	Events   []SoakEvent   `json:"events"`
	Verdicts []SoakVerdict `json:"verdicts"`
	// Summary is each series' verdict over the nodes (SummarizeSoak).
	Summary    []SeriesVerdict `json:"summary"`
	Dir        string          `json:"dir,omitempty"`
	Generation map[string]int  `json:"agent_processes"` // per node: how many agent processes it ran
}

// Growing reports whether a series was judged growing.
func (r *SoakResult) Growing() bool {
	for _, v := range r.Verdicts {
		if v.Verdict == VerdictGrowing {
			return true
		}
	}
	return false
}

// Soak builds a lab and cluster, runs the load for o.Duration while
// sampling every agent, tears everything down and judges the series.
func Soak(ctx context.Context, o SoakOptions) (SoakResult, error) {
	o.defaults()
	if o.Every < time.Second || o.Sample < time.Second {
		return SoakResult{}, fmt.Errorf("soak: --every %s and --sample %s must be at least 1s", o.Every, o.Sample)
	}
	co := o.ClusterOptions
	if o.Redis {
		if err := redisCluster(&co, Options{}); err != nil {
			return SoakResult{}, err
		}
	}
	c, err := StartCluster(ctx, co)
	if err != nil {
		return SoakResult{}, err
	}
	defer c.Close()
	if _, err := c.WaitStable(ctx, time.Second, 90*time.Second); err != nil {
		return SoakResult{}, fmt.Errorf("soak: %w", err)
	}
	nodes := c.Nodes()
	s := &soak{c: c, o: o, log: o.Log, start: time.Now(), keeper: nodes[len(nodes)-1].Name, hz: procstat.ClockTicks(),
		prev: map[int]SoakSample{}, pids: map[string][]int{}}
	res := SoakResult{Nodes: len(nodes), Profile: c.opts.Profile, Redis: o.Redis, Keeper: s.keeper,
		Duration: o.Duration.String(), Every: o.Every.String(), Sample: o.Sample.String()}
	if !c.tmpDir {
		res.Dir = c.dir
	}
	o.Log.Info("soak: load starts", "duration", o.Duration, "every", o.Every, "sample", o.Sample, "keeper", s.keeper)

	lctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.sampleLoop(lctx, ctx)
	}()
	s.loadLoop(lctx)
	<-done
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if time.Since(s.lastAll) >= o.Sample/2 {
		s.sampleAll(ctx) // the last sample, at the end of the run
	}

	res.Samples, res.Events = s.samples, s.events
	res.Verdicts = JudgeSoak(s.samples)
	res.Summary = SummarizeSoak(res.Verdicts)
	res.Generation = map[string]int{}
	for n, ps := range s.pids {
		res.Generation[n] = len(ps)
	}
	for _, e := range s.events {
		if e.Err != "" {
			res.Problems = append(res.Problems, fmt.Sprintf("%.0fs %s %s: %s", e.T, e.Kind, e.Node, e.Err))
		}
	}
	res.Problems = append(res.Problems, c.UnexpectedExits()...)
	res.OK = len(res.Problems) == 0
	return res, nil
}

// soak is the state of one run.
type soak struct {
	c      *Cluster
	o      SoakOptions
	log    *slog.Logger
	start  time.Time
	keeper string
	hz     int64 // clock ticks a second

	// Written by the sample loop, read after it ended.
	samples []SoakSample
	prev    map[int]SoakSample // by pid: its previous sample
	pids    map[string][]int   // by node: its agent processes, in order
	lastAll time.Time          // the last round of samples
	// Written by the load loop, read after it ended.
	events []SoakEvent
}

func (s *soak) since() float64 { return time.Since(s.start).Seconds() }

// sampleLoop samples every agent at once and then every o.Sample until
// run ends; the samples' calls are bounded by ctx (the end of the run must
// not cut a sample short).
func (s *soak) sampleLoop(run, ctx context.Context) {
	t := time.NewTicker(s.o.Sample)
	defer t.Stop()
	for {
		s.sampleAll(ctx)
		select {
		case <-run.Done():
			return
		case <-t.C:
			if run.Err() != nil {
				return
			}
		}
	}
}

func (s *soak) sampleAll(ctx context.Context) {
	s.lastAll = time.Now()
	for _, n := range s.c.Nodes() {
		if smp, ok := s.sampleNode(ctx, n.Name); ok {
			s.samples = append(s.samples, smp)
		}
	}
}

// sampleNode samples the node's agent; false when it is not running (an
// event is restarting it), or not serving /metrics yet or serving them
// before its Raft state is back (just started: applied index 0).
func (s *soak) sampleNode(ctx context.Context, node string) (SoakSample, bool) {
	pid, ok := s.c.AgentPID(node)
	if !ok {
		return SoakSample{}, false
	}
	smp := SoakSample{T: s.since(), Node: node, PID: pid, Goroutines: -1, AppliedIndex: -1}
	var errs []error
	rss, err := procstat.ReadRSS(pid)
	errs = append(errs, err)
	smp.RSSKiB = rss
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	errs = append(errs, err)
	smp.FDs = len(fds)
	ticks, err := procstat.ReadCPUTicks(pid)
	errs = append(errs, err)
	smp.CPUSeconds = float64(ticks) / float64(s.hz)
	if err := errors.Join(errs...); err != nil {
		// It exited between AgentPID and the reads.
		if !s.c.Running(node) {
			return SoakSample{}, false
		}
		smp.Err = err.Error()
	}
	if p, ok := s.prev[pid]; ok && smp.T > p.T {
		smp.CPUPct = (smp.CPUSeconds - p.CPUSeconds) / (smp.T - p.T) * 100
	}
	if body, err := s.c.Scrape(ctx, node); err != nil {
		if _, served := s.prev[pid]; !served {
			return SoakSample{}, false // starting: sampled once it serves
		}
		smp.Err = joinErr(smp.Err, err.Error())
	} else if fams, err := promtext.Parse(body); err != nil {
		smp.Err = joinErr(smp.Err, err.Error())
	} else {
		smp.Goroutines = fams.Value("go_goroutines", nil)
		smp.AppliedIndex = fams.Value("harbormaster_raft_applied_index", map[string]string{"node": node})
		if _, served := s.prev[pid]; !served && smp.AppliedIndex == 0 {
			// Serving /metrics before Raft replayed its log (a
			// restarted agent): sampled once it has its state.
			return SoakSample{}, false
		}
		if smp.Goroutines < 0 || smp.AppliedIndex < 0 {
			smp.Err = joinErr(smp.Err, "no go_goroutines or harbormaster_raft_applied_index in /metrics")
		}
	}
	dataDir := filepath.Join(s.c.dir, node)
	if fi, err := os.Stat(filepath.Join(dataDir, "raft.db")); err == nil {
		smp.RaftDBKiB = fi.Size() / 1024
	}
	smp.SnapshotIndex = newestSnapshot(dataDir)
	if smp.Err == "" {
		s.prev[pid] = smp
		if ps := s.pids[node]; len(ps) == 0 || ps[len(ps)-1] != pid {
			s.pids[node] = append(ps, pid)
		}
	}
	return smp, true
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// newestSnapshot returns the index of the newest snapshot in a data dir
// (hashicorp/raft's file snapshot store: snapshots/<id>/meta.json), 0 if
// none.
func newestSnapshot(dataDir string) uint64 {
	dirs, _ := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	var best uint64
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(dataDir, "snapshots", d.Name(), "meta.json"))
		if err != nil {
			continue
		}
		var m struct{ Index uint64 }
		if json.Unmarshal(b, &m) == nil {
			best = max(best, m.Index)
		}
	}
	return best
}

// AgentPID returns the pid of the node's running agent (`ip netns exec`
// execs the agent, so the pid is the agent's own).
func (c *Cluster) AgentPID(node string) (int, bool) {
	p, err := c.agent(node)
	if err != nil || !c.Running(node) {
		return 0, false
	}
	return p.cmd.Process.Pid, true
}

// Load events, in the order the load repeats them.
const (
	EventMove      = "move"
	EventCrash     = "crash-holder"
	EventRestart   = "restart-agent"
	EventMoveRedis = "move-redis"
)

// loadLoop runs an event every o.Every until ctx ends.
func (s *soak) loadLoop(ctx context.Context) {
	cycle := []string{EventMove, EventCrash, EventMove, EventRestart}
	if s.o.Redis {
		cycle = append(cycle, EventMoveRedis)
	}
	var others []string // every node but the keeper
	for _, n := range s.c.Nodes() {
		if n.Name != s.keeper {
			others = append(others, n.Name)
		}
	}
	next := time.Now()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(s.o.Every)
		kind := cycle[i%len(cycle)]
		ev := SoakEvent{T: s.since(), Kind: kind}
		t0 := time.Now()
		node, err := s.event(ctx, kind, others[(i/len(cycle))%len(others)])
		ev.Node, ev.TookMS = node, float64(time.Since(t0).Microseconds())/1000
		if ctx.Err() != nil {
			return // cut short by the end of the run: not an event
		}
		if err != nil {
			ev.Err = err.Error()
			s.log.Warn("soak: event failed", "kind", kind, "node", node, "err", err)
		} else {
			s.log.Info("soak: event", "kind", kind, "node", node, "took", time.Since(t0).Round(time.Millisecond))
		}
		s.events = append(s.events, ev)
		if next.Before(time.Now()) {
			next = time.Now()
		}
	}
}

// stableTimeout bounds the soak's waits for a settled cluster.
const stableTimeout = 60 * time.Second

// event runs one event and waits for the cluster to settle; restartNode is
// the node a restart-agent event restarts (never the keeper). It returns
// the node the event acted on.
func (s *soak) event(ctx context.Context, kind, restartNode string) (string, error) {
	c := s.c
	v, err := c.WaitStable(ctx, time.Second, stableTimeout)
	if err != nil {
		return "", fmt.Errorf("before the event: %w", err)
	}
	switch kind {
	case EventMove:
		to := s.other(v.Holder, "")
		if err := c.Move(ctx, v.Leader, VIPRole, to); err != nil {
			return to, fmt.Errorf("move %s to %s: %w", VIPRole, to, err)
		}
		return to, s.waitHolder(ctx, to)
	case EventCrash:
		h := v.Holder
		if h == s.keeper {
			// The keeper is never crashed: move the VIP off it first.
			h = s.other(h, "")
			if err := c.Move(ctx, v.Leader, VIPRole, h); err != nil {
				return h, fmt.Errorf("move %s off the keeper to %s: %w", VIPRole, h, err)
			}
			if err := s.waitHolder(ctx, h); err != nil {
				return h, err
			}
		}
		if _, err := c.Crash(h); err != nil {
			return h, fmt.Errorf("crash %s: %w", h, err)
		}
		// Wait for the failover (another node holds the VIP), then bring
		// the node back.
		ferr := s.waitFor(ctx, func() bool {
			k := c.Holders()
			return len(k) == 1 && k[0] != h
		}, "the VIP held by another node after the crash of "+h)
		if err := c.Restore(h); err != nil {
			return h, fmt.Errorf("restore %s: %w", h, err)
		}
		if ferr != nil {
			return h, ferr
		}
		return h, s.settle(ctx)
	case EventRestart:
		if err := c.Signal(restartNode, syscall.SIGTERM); err != nil {
			return restartNode, err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.WaitAgentExit(wctx, restartNode)
		cancel()
		if err != nil {
			return restartNode, fmt.Errorf("the agent on %s did not exit on SIGTERM: %w", restartNode, err)
		}
		if err := c.StartAgent(restartNode); err != nil {
			return restartNode, err
		}
		return restartNode, s.settle(ctx)
	case EventMoveRedis:
		roles, err := c.Roles(ctx, v.Leader)
		if err != nil {
			return "", err
		}
		from := ""
		for _, r := range roles.Roles {
			if r.Name == RedisRole {
				from = r.Holder
			}
		}
		to := s.other(from, "")
		if err := c.Move(ctx, v.Leader, RedisRole, to); err != nil {
			return to, fmt.Errorf("move %s to %s: %w", RedisRole, to, err)
		}
		return to, s.waitFor(ctx, func() bool {
			roles, err := c.Roles(ctx, v.Leader)
			if err != nil {
				return false
			}
			for _, r := range roles.Roles {
				if r.Name == RedisRole {
					return r.Holder == to && !r.Releasing
				}
			}
			return false
		}, RedisRole+" held by "+to)
	default:
		return "", fmt.Errorf("unknown event %q", kind)
	}
}

// other returns a node other than not1 and not2, in turn.
func (s *soak) other(not1, not2 string) string {
	var cand []string
	for _, n := range s.c.Nodes() {
		if n.Name != not1 && n.Name != not2 {
			cand = append(cand, n.Name)
		}
	}
	return cand[len(s.events)%len(cand)]
}

func (s *soak) waitHolder(ctx context.Context, to string) error {
	if err := s.waitFor(ctx, func() bool { return slices.Equal(s.c.Holders(), []string{to}) }, "the VIP on "+to); err != nil {
		return err
	}
	return s.settle(ctx)
}

func (s *soak) settle(ctx context.Context) error {
	_, err := s.c.WaitStable(ctx, time.Second, stableTimeout)
	return err
}

// waitFor polls cond every 50 ms for at most stableTimeout.
func (s *soak) waitFor(ctx context.Context, cond func() bool, what string) error {
	deadline := time.Now().Add(stableTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not %s after %s", what, stableTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// JudgeSoak judges every series of every node. The per-process series
// (RSS, goroutines, open files, CPU) are judged on the node's longest-lived
// agent process (Longest); raft.db, which outlives the processes, on all
// of the node's samples. Samples with an error are left out.
func JudgeSoak(samples []SoakSample) []SoakVerdict {
	var nodes []string
	byNode := map[string][]SoakSample{}
	for _, s := range samples {
		if s.Err != "" {
			continue
		}
		if _, ok := byNode[s.Node]; !ok {
			nodes = append(nodes, s.Node)
		}
		byNode[s.Node] = append(byNode[s.Node], s)
	}
	var out []SoakVerdict
	for _, series := range SoakSeries {
		for _, n := range nodes {
			if series == SeriesRaftDB {
				out = append(out, judgeRaftLog(n, byNode[n]))
				continue
			}
			var procs []Process
			for _, s := range byNode[n] {
				if len(procs) == 0 || procs[len(procs)-1].PID != s.PID {
					procs = append(procs, Process{Node: n, PID: s.PID})
				}
				p := &procs[len(procs)-1]
				if series == SeriesCPU && s.CPUPct == 0 && len(p.Pts) == 0 {
					continue // a process's first sample has no CPU rate
				}
				p.Pts = append(p.Pts, Point{s.T, seriesValue(s, series)})
			}
			p, _ := Longest(procs)
			out = append(out, SoakVerdict{Series: series, Node: n, PID: p.PID, Judgement: Judge(p.Pts, SoakBounds[series])})
		}
	}
	return out
}

func seriesValue(s SoakSample, series string) float64 {
	switch series {
	case SeriesRSS:
		return float64(s.RSSKiB)
	case SeriesGoroutines:
		return s.Goroutines
	case SeriesFDs:
		return float64(s.FDs)
	case SeriesCPU:
		return s.CPUPct
	case SeriesRaftDB:
		return float64(s.RaftDBKiB)
	}
	return 0
}

// hashicorp/raft's defaults, which the agent keeps: a snapshot once this
// many entries were written since the last (checked every 120-240 s), after
// which the log keeps the last raftTrailingLogs entries.
const (
	raftSnapshotThreshold = 8192
	raftTrailingLogs      = 10240
	raftSnapshotCheck     = 240 // s, the longest wait between checks
)

// judgeRaftLog judges a node's raft.db over all its samples (the file
// outlives the agent's restarts). The log grows with every event and
// every Redis report until hashicorp/raft snapshots and compacts it; a run
// that saw no snapshot and whose log is still under the entries a
// snapshot keeps cannot show the bound: its growth is VerdictPreSnapshot,
// not VerdictGrowing. Once a snapshot was seen the general rule applies.
func judgeRaftLog(node string, samples []SoakSample) SoakVerdict {
	var pts, idx []Point
	var snap uint64
	for _, s := range samples {
		pts = append(pts, Point{s.T, float64(s.RaftDBKiB)})
		idx = append(idx, Point{s.T, s.AppliedIndex})
		snap = max(snap, s.SnapshotIndex)
	}
	v := SoakVerdict{Series: SeriesRaftDB, Node: node, Judgement: Judge(pts, SoakBounds[SeriesRaftDB])}
	if len(idx) < 2 {
		return v
	}
	rate, _ := fitLine(idx)
	last := idx[len(idx)-1].V
	limit := raftSnapshotThreshold + raftTrailingLogs + rate*raftSnapshotCheck
	v.Note = fmt.Sprintf("log index %.0f, %.0f entries/day; newest snapshot at %d", last, rate*day, snap)
	if snap == 0 && v.Verdict == VerdictGrowing && last < limit {
		v.Verdict = VerdictPreSnapshot
		v.Note += fmt.Sprintf("; no snapshot yet: the log stops growing at ~%.0f entries (snapshot threshold %d + trailing logs %d + up to %d s of writes), index %.0f, after ~%.1f h more at this rate",
			limit, raftSnapshotThreshold, raftTrailingLogs, raftSnapshotCheck, limit, (limit-last)/rate/3600)
	}
	return v
}
