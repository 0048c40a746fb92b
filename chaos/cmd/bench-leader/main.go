// Command bench-leader measures how fast the loopback harbormaster cluster
// recovers from a crash of its Raft leader, and what an idle agent costs.
//
//	go run ./chaos/cmd/bench-leader --bin bin/harbormaster --trials 20
//
// It runs the three agents of testdata/loopback as processes in a fresh
// temporary directory (removed at the end). Each trial waits for a stable
// leader with every role held, SIGKILLs the leader and measures
//
//   - leader failover: from the kill to a surviving node reporting another
//     leader in its Status (both survivors polled every 5 ms);
//   - role failover: from the kill to every role the killed node held having
//     a new, running holder (ListRoles on both survivors, every 5 ms);
//
// then restarts the killed node on its data dir and waits for it to rejoin.
// A leader that holds no role is first asked to transfer leadership to a
// role holder, so that every trial measures both.
//
// Afterwards it leaves the cluster idle (no API calls) for 10 s and reports
// each agent's resident memory (VmRSS) and CPU use over a further 10 s
// (utime+stime from /proc, as a percentage of one core).
//
// It prints a table, or one JSON object with --json. SIGINT or SIGTERM
// kills every agent and removes the directory.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/harbormaster/harbormaster/chaos/procstat"
	"github.com/harbormaster/harbormaster/internal/proccluster"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

const (
	note = "No peer for Raft leader election in this table (keepalived has no equivalent), so there is no ratio column."
	// pollEvery is the polling period of the failover measurements.
	pollEvery = 5 * time.Millisecond
	// rpcTimeout bounds one poll of one node.
	rpcTimeout = 200 * time.Millisecond
)

type options struct {
	bin          string
	trials       int
	json         bool
	idle         time.Duration
	window       time.Duration
	settle       time.Duration
	trialTimeout time.Duration
	portWait     time.Duration
	keep         bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/harbormaster", "harbormaster binary")
	flag.IntVar(&o.trials, "trials", 20, "number of leader kills")
	flag.BoolVar(&o.json, "json", false, "print one JSON object instead of tables")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "idle time before the footprint is measured")
	flag.DurationVar(&o.window, "window", 10*time.Second, "CPU measurement window")
	flag.DurationVar(&o.settle, "settle", time.Second, "how long leader and roles must stay unchanged before a kill")
	flag.DurationVar(&o.trialTimeout, "trial-timeout", 30*time.Second, "give up a trial step after this long")
	flag.DurationVar(&o.portWait, "port-wait", 60*time.Second, "how long to wait for the loopback ports to be free")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data dirs and agent logs)")
	flag.Parse()
	if o.trials < 1 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: bench-leader [--bin PATH] [--trials N] [--json]")
		os.Exit(2)
	}
	os.Exit(run(o))
}

// result is everything the bench prints.
type result struct {
	Note      string    `json:"note"`
	Cluster   string    `json:"cluster"`
	Trials    int       `json:"trials"`
	Metrics   []metric  `json:"metrics"`
	Footprint footprint `json:"footprint"`
}

type metric struct {
	Metric string  `json:"metric"`
	Trials int     `json:"trials"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
	Min    float64 `json:"min_ms"`
}

type footprint struct {
	IdleSeconds   float64 `json:"idle_s"`
	WindowSeconds float64 `json:"window_s"`
	Agents        []agent `json:"agents"`
}

type agent struct {
	Node   string  `json:"node"`
	PID    int     `json:"pid"`
	RSSKiB int64   `json:"rss_kib"`
	RSSMiB float64 `json:"rss_mib"`
	CPUPct float64 `json:"cpu_pct"`
}

func run(o options) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "bench-leader-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-leader:", err)
		return 1
	}
	c, err := proccluster.New(proccluster.Options{Binary: o.bin, Dir: dir})
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "bench-leader:", err)
		return 1
	}
	code := 0
	res, err := bench(ctx, c, o)
	if err != nil {
		code = 1
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench-leader: interrupted; killing the agents")
			code = 130
		} else {
			fmt.Fprintln(os.Stderr, "bench-leader:", err)
			c.PrintLogTails(os.Stderr, 40)
		}
	}
	if cerr := c.Close(); cerr != nil {
		fmt.Fprintln(os.Stderr, "bench-leader: close:", cerr)
		code = 1
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "bench-leader: kept", dir)
	} else {
		os.RemoveAll(dir)
	}
	if err == nil {
		if o.json {
			b, _ := json.MarshalIndent(res, "", "  ")
			fmt.Println(string(b))
		} else {
			printTables(os.Stdout, res)
		}
	}
	return code
}

func bench(ctx context.Context, c *proccluster.Cluster, o options) (*result, error) {
	pctx, cancel := context.WithTimeout(ctx, o.portWait)
	err := c.WaitPortsFree(pctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("the loopback ports stayed busy for %s: %w", o.portWait, err)
	}
	if err := c.StartAll(); err != nil {
		return nil, err
	}
	var leaderMs, roleMs []float64
	for i := 1; i <= o.trials; i++ {
		tr, err := trial(ctx, c, o)
		if err != nil {
			return nil, fmt.Errorf("trial %d: %w", i, err)
		}
		leaderMs = append(leaderMs, ms(tr.leader))
		if tr.roles > 0 {
			roleMs = append(roleMs, ms(tr.role))
		}
		fmt.Fprintf(os.Stderr, "trial %2d/%d: killed %s holding %v: new leader %s after %.1f ms, roles moved after %.1f ms, rejoined in %s\n",
			i, o.trials, tr.killed, tr.held, tr.newLeader, ms(tr.leader), ms(tr.role), tr.rejoin.Round(time.Millisecond))
	}
	res := &result{
		Note:    note,
		Cluster: "3 agents from testdata/loopback on 127.0.0.1, profile lan (heartbeat 250ms, election 250ms, quorum node lease 500ms, renew 100ms); each trial SIGKILLs the leader (moved first to a role holder if it held none)",
		Trials:  o.trials,
		Metrics: []metric{summarize("leader_failover", leaderMs), summarize("role_failover", roleMs)},
	}
	// Wait for the last restarted node to settle before the idle period.
	if _, err := waitStable(ctx, c, o); err != nil {
		return nil, err
	}
	fp, err := measureFootprint(ctx, c, o)
	if err != nil {
		return nil, err
	}
	res.Footprint = fp
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type trialResult struct {
	killed, newLeader string
	held              []string
	roles             int
	leader, role      time.Duration
	rejoin            time.Duration
}

// view is one consistent look at the cluster: the leader all running nodes
// agree on and the roles they all report.
type view struct {
	leader string
	roles  *hmv1.ListRolesResponse
	key    string
}

// look asks every running node and returns a view if they all agree on a
// running leader, every role is held by a running node, every node has
// applied what the leader had committed and the leader sees every node
// alive.
func look(ctx context.Context, c *proccluster.Cluster) (*view, error) {
	ids := c.RunningIDs()
	if len(ids) != len(c.IDs()) {
		return nil, fmt.Errorf("only %v running", ids)
	}
	var v view
	statuses := map[string]*hmv1.StatusResponse{}
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := c.Status(cctx, id)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		if st.Leader == "" || (v.leader != "" && st.Leader != v.leader) {
			return nil, fmt.Errorf("%s reports leader %q, others %q", id, st.Leader, v.leader)
		}
		v.leader = st.Leader
		statuses[id] = st
	}
	ls := statuses[v.leader]
	if ls == nil || !ls.IsLeader {
		return nil, fmt.Errorf("leader %s does not say it leads", v.leader)
	}
	for _, m := range ls.Members {
		if !m.Alive {
			return nil, fmt.Errorf("leader %s does not see %s alive", v.leader, m.Id)
		}
	}
	for id, st := range statuses {
		if st.AppliedIndex+5 < ls.CommitIndex {
			return nil, fmt.Errorf("%s applied %d, leader committed %d", id, st.AppliedIndex, ls.CommitIndex)
		}
	}
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := c.Roles(cctx, id)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		k := rolesKey(r)
		if v.roles != nil && k != v.key {
			return nil, fmt.Errorf("%s reports roles %s, others %s", id, k, v.key)
		}
		for _, x := range r.Roles {
			if x.InSpec && (x.Holder == "" || x.Releasing || !c.Running(x.Holder)) {
				return nil, fmt.Errorf("role %s: holder %q releasing=%t", x.Name, x.Holder, x.Releasing)
			}
		}
		v.roles, v.key = r, k
	}
	return &v, nil
}

func rolesKey(r *hmv1.ListRolesResponse) string {
	var parts []string
	for _, x := range r.Roles {
		parts = append(parts, fmt.Sprintf("%s=%s@%d", x.Name, x.Holder, x.Epoch))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// waitStable waits until look returns the same view for o.settle.
func waitStable(ctx context.Context, c *proccluster.Cluster, o options) (*view, error) {
	ctx, cancel := context.WithTimeout(ctx, o.trialTimeout)
	defer cancel()
	var cur *view
	var since time.Time
	var lastErr error
	for {
		v, err := look(ctx, c)
		switch {
		case err != nil:
			cur, lastErr = nil, err
		case cur == nil || v.leader != cur.leader || v.key != cur.key:
			cur, since = v, time.Now()
		case time.Since(since) >= o.settle:
			return cur, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no stable leader with every role held: %w (last: %v)", ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func held(r *hmv1.ListRolesResponse, node string) map[string]uint64 {
	m := map[string]uint64{}
	for _, x := range r.Roles {
		if x.Holder == node {
			m[x.Name] = x.Epoch
		}
	}
	return m
}

func trial(ctx context.Context, c *proccluster.Cluster, o options) (*trialResult, error) {
	v, err := waitStable(ctx, c, o)
	if err != nil {
		return nil, err
	}
	if len(held(v.roles, v.leader)) == 0 {
		target := ""
		for _, x := range v.roles.Roles {
			if x.Holder != "" {
				target = x.Holder
				break
			}
		}
		if target == "" {
			return nil, errors.New("no role has a holder")
		}
		cl, err := c.Client(v.leader)
		if err != nil {
			return nil, err
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = cl.TransferLeadership(tctx, &hmv1.TransferLeadershipRequest{Target: target})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("transfer leadership %s -> %s: %w", v.leader, target, err)
		}
		if v, err = waitStable(ctx, c, o); err != nil {
			return nil, err
		}
		if len(held(v.roles, v.leader)) == 0 {
			return nil, fmt.Errorf("leader %s still holds no role after the transfer: %s", v.leader, v.key)
		}
	}
	killed := v.leader
	roles := held(v.roles, killed)
	tr := &trialResult{killed: killed, roles: len(roles)}
	for r := range roles {
		tr.held = append(tr.held, r)
	}
	sort.Strings(tr.held)
	var survivors []string
	for _, id := range c.IDs() {
		if id != killed {
			survivors = append(survivors, id)
		}
	}

	mctx, cancel := context.WithTimeout(ctx, o.trialTimeout)
	defer cancel()
	var (
		mu                 sync.Mutex
		leaderAt, rolesAt  time.Duration
		newLeader          string
		leaderDone, rsDone bool
	)
	finished := func() bool { mu.Lock(); defer mu.Unlock(); return leaderDone && rsDone }
	t0 := time.Now()
	if err := c.Kill(killed); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for _, id := range survivors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(pollEvery)
			defer tick.Stop()
			for !finished() && mctx.Err() == nil {
				mu.Lock()
				needLeader, needRoles := !leaderDone, !rsDone
				mu.Unlock()
				if needLeader {
					rctx, rcancel := context.WithTimeout(mctx, rpcTimeout)
					st, err := c.Status(rctx, id)
					rcancel()
					if err == nil && st.Leader != "" && st.Leader != killed {
						at := time.Since(t0)
						mu.Lock()
						if !leaderDone {
							leaderDone, leaderAt, newLeader = true, at, st.Leader
						}
						mu.Unlock()
					}
				}
				if needRoles {
					rctx, rcancel := context.WithTimeout(mctx, rpcTimeout)
					r, err := c.Roles(rctx, id)
					rcancel()
					if err == nil && moved(c, r, killed, roles) {
						at := time.Since(t0)
						mu.Lock()
						if !rsDone {
							rsDone, rolesAt = true, at
						}
						mu.Unlock()
					}
				}
				select {
				case <-mctx.Done():
				case <-tick.C:
				}
			}
		}()
	}
	wg.Wait()
	if !finished() {
		return nil, fmt.Errorf("after SIGKILL of leader %s: new leader found %t, roles %v moved %t within %s",
			killed, leaderDone, tr.held, rsDone, o.trialTimeout)
	}
	tr.leader, tr.role, tr.newLeader = leaderAt, rolesAt, newLeader

	// Restart the killed node on its data dir and wait for it to rejoin.
	if err := c.Start(killed); err != nil {
		return nil, err
	}
	rs := time.Now()
	if _, err := waitRejoin(ctx, c, killed, o); err != nil {
		return nil, err
	}
	tr.rejoin = time.Since(rs)
	return tr, nil
}

// moved reports whether every role in roles left killed for a running
// holder at a greater epoch.
func moved(c *proccluster.Cluster, r *hmv1.ListRolesResponse, killed string, roles map[string]uint64) bool {
	n := 0
	for _, x := range r.Roles {
		old, ok := roles[x.Name]
		if !ok {
			continue
		}
		if x.Holder == "" || x.Holder == killed || x.Epoch <= old || !c.Running(x.Holder) {
			return false
		}
		n++
	}
	return n == len(roles)
}

// waitRejoin waits until the restarted node reports the cluster's leader,
// has applied what that leader had committed and is seen alive by it.
func waitRejoin(ctx context.Context, c *proccluster.Cluster, id string, o options) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.trialTimeout)
	defer cancel()
	var target uint64
	var lastErr error
	for {
		lastErr = func() error {
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			defer rcancel()
			l, err := c.Leader(rctx)
			if err != nil {
				return err
			}
			ls, err := c.Status(rctx, l)
			if err != nil {
				return err
			}
			if target == 0 {
				target = ls.CommitIndex
			}
			st, err := c.Status(rctx, id)
			if err != nil {
				return err
			}
			if st.Leader != l || st.AppliedIndex < target {
				return fmt.Errorf("%s: leader %q applied %d; cluster leader %s committed %d", id, st.Leader, st.AppliedIndex, l, target)
			}
			for _, m := range ls.Members {
				if m.Id == id && !m.Alive {
					return fmt.Errorf("leader %s does not see %s alive yet", l, id)
				}
			}
			return nil
		}()
		if lastErr == nil {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("restarted %s did not rejoin: %w (last: %v)", id, ctx.Err(), lastErr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// summarize computes nearest-rank percentiles of samples (milliseconds).
func summarize(name string, samples []float64) metric {
	m := metric{Metric: name, Trials: len(samples)}
	if len(samples) == 0 {
		return m
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	pct := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	m.P50, m.P99, m.Min, m.Max = pct(50), pct(99), s[0], s[len(s)-1]
	return m
}

// measureFootprint waits o.idle without touching the agents, reads their
// RSS, then their CPU time over o.window.
func measureFootprint(ctx context.Context, c *proccluster.Cluster, o options) (footprint, error) {
	fp := footprint{IdleSeconds: o.idle.Seconds(), WindowSeconds: o.window.Seconds()}
	fmt.Fprintf(os.Stderr, "footprint: idle %s, then CPU over %s\n", o.idle, o.window)
	us, err := procstat.Measure(ctx, c.IDs(), c.PID, o.idle, o.window)
	if err != nil {
		return fp, err
	}
	for _, u := range us {
		fp.Agents = append(fp.Agents, agent{Node: u.Name, PID: u.PID, RSSKiB: u.RSSKiB, RSSMiB: round1(float64(u.RSSKiB) / 1024), CPUPct: u.CPUPct})
	}
	return fp, nil
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

func printTables(w io.Writer, r *result) {
	fmt.Fprintf(w, "bench-leader: %s; %d trials\n", r.Cluster, r.Trials)
	fmt.Fprintln(w, note)
	fmt.Fprintln(w)
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "metric\ttrials\tp50 (ms)\tp99 (ms)\tmax (ms)\tmin (ms)")
	for _, m := range r.Metrics {
		fmt.Fprintf(t, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\n", m.Metric, m.Trials, m.P50, m.P99, m.Max, m.Min)
	}
	t.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "agent footprint: RSS after %.0f s idle; CPU over a %.0f s window, %% of one core\n", r.Footprint.IdleSeconds, r.Footprint.WindowSeconds)
	t = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "node\tpid\tRSS (MiB)\tCPU (%)")
	for _, a := range r.Footprint.Agents {
		fmt.Fprintf(t, "%s\t%d\t%.1f\t%.2f\n", a.Node, a.PID, a.RSSMiB, a.CPUPct)
	}
	t.Flush()
}
