package scenario

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/procstat"
	"github.com/harbormaster/harbormaster/internal/promtext"
)

// MaxScaleRoles is the most vip roles RunScale places: the free addresses
// of the lab's /24 (198.18.0.20-.99, .102-.199, .201-.254) plus VIP.
const MaxScaleRoles = 233

// settleTimeout bounds the wait for every role on its preferred node
// before the crash.
const settleTimeout = 90 * time.Second

// ScaleOptions configures RunScale.
type ScaleOptions struct {
	// Cluster is the cluster every trial starts (its Spec is replaced;
	// Nodes is the number of nodes measured).
	Cluster ClusterOptions
	// Roles is the number of vip roles, VIPRole included (1..MaxScaleRoles).
	Roles int
	// Trials is the number of crashes, each on a fresh cluster (default 1).
	Trials int
	// Idle is the window the idle rates are measured over (default 3 s).
	Idle time.Duration
	// Timeout bounds the wait for every role's new holder (default 30 s).
	Timeout time.Duration
}

// ScaleTrial is one crash of the node holding most roles.
type ScaleTrial struct {
	// Target is the crashed node, Leader the Raft leader (never Target:
	// leadership is moved away first, so the figures are the roles' own).
	Target string `json:"target"`
	Leader string `json:"leader"`
	// Moved is how many of Target's roles got a new holder in a kernel,
	// out of Held; AllMovedMs is when the last one did, FirstMovedMs the
	// first, both from the crash.
	Held         int     `json:"held"`
	Moved        int     `json:"moved"`
	FirstMovedMs float64 `json:"first_moved_ms"`
	AllMovedMs   float64 `json:"all_moved_ms"`
	// RaftEntries is the leader's commit index gain from the crash until
	// every role moved; Commands the reconcile proposals in that time.
	RaftEntries float64 `json:"raft_entries"`
	Commands    float64 `json:"commands"`
	// ReconcileMs is the mean reconcile pass on the leader during the
	// failover, ReconcileIdleMs at idle.
	ReconcileMs     float64 `json:"reconcile_ms"`
	ReconcileIdleMs float64 `json:"reconcile_idle_ms"`
	// Raft entries committed per second and lease datagrams sent per
	// second (all nodes), at idle and during the failover.
	RaftPerSecIdle  float64 `json:"raft_per_sec_idle"`
	RaftPerSecFail  float64 `json:"raft_per_sec_failover"`
	LeasePerSecIdle float64 `json:"lease_per_sec_idle"`
	LeasePerSecFail float64 `json:"lease_per_sec_failover"`
	// CPU in percent of one core: the mean agent and the leader at idle,
	// the leader during the failover. RSSKiB is the largest agent's.
	CPUIdlePct       float64 `json:"cpu_idle_pct"`
	LeaderCPUIdlePct float64 `json:"leader_cpu_idle_pct"`
	LeaderCPUFailPct float64 `json:"leader_cpu_failover_pct"`
	RSSKiB           int64   `json:"rss_kib"`
	// Violations: roles that did not move, and S1 (two holders of one
	// address at once, in the kernels).
	Violations []string `json:"violations,omitempty"`
}

// ScaleResult is one (nodes, roles) point over its trials, with p50/p99
// of each figure.
type ScaleResult struct {
	Nodes   int          `json:"nodes"`
	Roles   int          `json:"roles"`
	Profile string       `json:"profile"`
	Trials  []ScaleTrial `json:"trials"`

	AllMovedMs       Stats    `json:"all_moved_ms"`
	RaftEntries      Stats    `json:"raft_entries"`
	ReconcileMs      Stats    `json:"reconcile_ms"`
	ReconcileIdleMs  Stats    `json:"reconcile_idle_ms"`
	RaftPerSecIdle   Stats    `json:"raft_per_sec_idle"`
	RaftPerSecFail   Stats    `json:"raft_per_sec_failover"`
	LeasePerSecIdle  Stats    `json:"lease_per_sec_idle"`
	LeasePerSecFail  Stats    `json:"lease_per_sec_failover"`
	CPUIdlePct       Stats    `json:"cpu_idle_pct"`
	LeaderCPUIdlePct Stats    `json:"leader_cpu_idle_pct"`
	LeaderCPUFailPct Stats    `json:"leader_cpu_failover_pct"`
	RSSKiB           Stats    `json:"rss_kib"`
	Violations       []string `json:"violations,omitempty"`
	// Error is why a trial could not be measured (set by the caller that
	// keeps going after RunScale's error; the figures cover the trials
	// before it).
	Error string `json:"error,omitempty"`
}

// scaleAddrs returns n vip addresses of the lab's /24, VIP's first, then
// the free ones in order: above the nodes (.20-.99), above c1 (.102-.199)
// and above VIP.
func scaleAddrs(n int) ([]netip.Addr, error) {
	if n < 1 || n > MaxScaleRoles {
		return nil, fmt.Errorf("scale: %d roles: use 1 to %d (the free addresses of the lab's /24)", n, MaxScaleRoles)
	}
	out := []netip.Addr{VIP.Addr()}
	for _, r := range [][2]byte{{20, 99}, {102, 199}, {201, 254}} {
		for b := r[0]; b <= r[1] && len(out) < n; b++ {
			out = append(out, netip.AddrFrom4([4]byte{198, 18, 0, b}))
		}
	}
	return out, nil
}

// scaleSpec writes a spec of len(addrs) vip roles, VIPRole at addrs[0],
// the others vip-NNN. Every node is a candidate of every role; four roles
// in five prefer target (priority 10, with preempt so they settle there),
// the rest prefer the other nodes in turn, and VIPRole prefers target.
// It returns the spec and each role's preferred node.
func scaleSpec(nodes []string, target string, addrs []netip.Addr) (string, []string) {
	var others []string
	for _, n := range nodes {
		if n != target {
			others = append(others, n)
		}
	}
	var b strings.Builder
	b.WriteString("roles:\n")
	pref := make([]string, len(addrs))
	for i, a := range addrs {
		name := VIPRole
		if i > 0 {
			name = fmt.Sprintf("vip-%03d", i)
		}
		pref[i] = target
		if i%5 == 4 {
			pref[i] = others[(i/5)%len(others)]
		}
		var cands []string
		for _, n := range nodes {
			prio := 0
			if n == pref[i] {
				prio = 10
			}
			cands = append(cands, fmt.Sprintf("{node: %s, priority: %d}", n, prio))
		}
		fmt.Fprintf(&b, "  - {name: %s, type: vip, address: %s/24, preempt: true, candidates: [%s]}\n",
			name, a, strings.Join(cands, ", "))
	}
	return b.String(), pref
}

// RunScale crashes, o.Trials times on a fresh cluster each, the node that
// holds most of o.Roles vip roles, and measures how long until every one
// of its roles has a new holder in a kernel, what it cost (Raft entries,
// reconcile passes, lease datagrams, CPU) and what the cluster costs idle.
// A trial that cannot be measured (the cluster never settles) ends the run
// with an error; the result then summarizes the trials before it.
func RunScale(ctx context.Context, o ScaleOptions) (ScaleResult, error) {
	if o.Trials <= 0 {
		o.Trials = 1
	}
	if o.Idle <= 0 {
		o.Idle = 3 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	nodes := max(o.Cluster.Nodes, 3)
	res := ScaleResult{Nodes: nodes, Roles: o.Roles, Profile: o.Cluster.Profile}
	if res.Profile == "" {
		res.Profile = "lan"
	}
	if _, err := scaleAddrs(o.Roles); err != nil {
		return res, err
	}
	var failed error
	for i := 1; i <= o.Trials && failed == nil; i++ {
		tr, err := scaleTrial(ctx, o)
		if err != nil {
			failed = fmt.Errorf("scale %d nodes, %d roles, trial %d: %w", nodes, o.Roles, i, err)
			break
		}
		for _, v := range tr.Violations {
			res.Violations = append(res.Violations, fmt.Sprintf("trial %d: %s", i, v))
		}
		res.Trials = append(res.Trials, tr)
	}
	col := func(f func(ScaleTrial) float64) Stats {
		var v []float64
		for _, t := range res.Trials {
			v = append(v, f(t))
		}
		return summarize(v)
	}
	res.AllMovedMs = col(func(t ScaleTrial) float64 { return t.AllMovedMs })
	res.RaftEntries = col(func(t ScaleTrial) float64 { return t.RaftEntries })
	res.ReconcileMs = col(func(t ScaleTrial) float64 { return t.ReconcileMs })
	res.ReconcileIdleMs = col(func(t ScaleTrial) float64 { return t.ReconcileIdleMs })
	res.RaftPerSecIdle = col(func(t ScaleTrial) float64 { return t.RaftPerSecIdle })
	res.RaftPerSecFail = col(func(t ScaleTrial) float64 { return t.RaftPerSecFail })
	res.LeasePerSecIdle = col(func(t ScaleTrial) float64 { return t.LeasePerSecIdle })
	res.LeasePerSecFail = col(func(t ScaleTrial) float64 { return t.LeasePerSecFail })
	res.CPUIdlePct = col(func(t ScaleTrial) float64 { return t.CPUIdlePct })
	res.LeaderCPUIdlePct = col(func(t ScaleTrial) float64 { return t.LeaderCPUIdlePct })
	res.LeaderCPUFailPct = col(func(t ScaleTrial) float64 { return t.LeaderCPUFailPct })
	res.RSSKiB = col(func(t ScaleTrial) float64 { return float64(t.RSSKiB) })
	return res, failed
}

// scaleTrial starts a cluster, settles every role on its preferred node,
// measures idle, crashes the target and measures the failover.
func scaleTrial(ctx context.Context, o ScaleOptions) (tr ScaleTrial, err error) {
	addrs, err := scaleAddrs(o.Roles)
	if err != nil {
		return tr, err
	}
	nodes := max(o.Cluster.Nodes, 3)
	var names []string
	for i := 1; i <= nodes; i++ {
		names = append(names, fmt.Sprintf("n%d", i))
	}
	tr.Target = names[len(names)-1]
	doc, pref := scaleSpec(names, tr.Target, addrs)
	copts := o.Cluster
	copts.Spec = doc
	c, err := StartCluster(ctx, copts)
	if err != nil {
		return tr, err
	}
	defer c.Close()
	set, err := c.Lab.StartSamplerSet(addrs, samplePeriod)
	if err != nil {
		return tr, err
	}
	defer set.Stop()
	if _, err := c.WaitStable(ctx, time.Second, 60*time.Second); err != nil {
		return tr, err
	}
	settled := func() bool {
		last, ok := set.Last()
		if !ok {
			return false
		}
		for i, hs := range last.Each {
			if !slices.Equal(hs, []string{pref[i]}) {
				return false
			}
		}
		return true
	}
	if !poll(ctx, settleTimeout, settled) {
		last, _ := set.Last()
		off := 0
		for i, hs := range last.Each {
			if !slices.Equal(hs, []string{pref[i]}) {
				off++
			}
		}
		return tr, fmt.Errorf("the roles did not settle on their preferred nodes within %s (%d of %d elsewhere or unheld at the end; the agents' logs say why)",
			settleTimeout, off, len(addrs))
	}
	for _, p := range pref {
		if p == tr.Target {
			tr.Held++
		}
	}
	if tr.Leader, err = c.moveLeaderOff(ctx, tr.Target); err != nil {
		return tr, err
	}

	// Idle.
	idle0, err := c.scaleSnap(ctx, tr.Leader)
	if err != nil {
		return tr, err
	}
	if err := Sleep(ctx, o.Idle); err != nil {
		return tr, err
	}
	idle1, err := c.scaleSnap(ctx, tr.Leader)
	if err != nil {
		return tr, err
	}
	tr.RaftPerSecIdle, tr.LeasePerSecIdle, tr.ReconcileIdleMs = idle1.rates(idle0)
	tr.LeaderCPUIdlePct = idle1.cpuPct(idle0, tr.Leader)
	var sum float64
	for _, n := range names {
		sum += idle1.cpuPct(idle0, n)
		if rss, err := procstat.ReadRSS(idle1.pids[n]); err == nil {
			tr.RSSKiB = max(tr.RSSKiB, rss)
		}
	}
	tr.CPUIdlePct = sum / float64(len(names))

	// The crash.
	before, err := c.scaleSnap(ctx, tr.Leader)
	if err != nil {
		return tr, err
	}
	t0, err := c.Crash(tr.Target)
	if err != nil {
		return tr, err
	}
	moved := func(hs []string) bool { return slices.ContainsFunc(hs, func(h string) bool { return h != tr.Target }) }
	allMoved := func() bool {
		last, ok := set.Last()
		return ok && last.At.After(t0) && !slices.ContainsFunc(last.Each, func(hs []string) bool { return !moved(hs) })
	}
	pollEvery(ctx, samplePeriod, o.Timeout, allMoved)
	after, err := c.scaleSnap(ctx, tr.Leader)
	if err != nil {
		return tr, err
	}
	tr.RaftEntries = after.commit - before.commit
	tr.Commands = after.commands - before.commands
	tr.RaftPerSecFail, tr.LeasePerSecFail, tr.ReconcileMs = after.rates(before)
	tr.LeaderCPUFailPct = after.cpuPct(before, tr.Leader)

	if err := set.Err(); err != nil {
		tr.Violations = append(tr.Violations, err.Error())
	}
	samples := set.SamplesSince(time.Time{})
	first, last := time.Duration(-1), time.Duration(0)
	for i, p := range pref {
		if p != tr.Target {
			continue
		}
		s, ok := firstSample(lab.Of(samples, i), t0, func(s lab.Sample) bool { return moved(s.Holders) })
		if !ok {
			tr.Violations = append(tr.Violations, fmt.Sprintf("%s (%s) has no new holder %s after the crash", roleName(i), addrs[i], o.Timeout))
			continue
		}
		tr.Moved++
		d := s.At.Sub(t0)
		last = max(last, d)
		if first < 0 || d < first {
			first = d
		}
	}
	tr.FirstMovedMs, tr.AllMovedMs = msf(max(first, 0)), msf(last)
	// S1 on every address, the crashed node masked from its crash on.
	masked := excludeOffEach(samples, c.offWindows())
	for i := range addrs {
		if _, ivs := lab.DualHolder(lab.Of(masked, i)); len(ivs) > 0 {
			iv := ivs[0]
			tr.Violations = append(tr.Violations, fmt.Sprintf("S1: %s (%s) held by %v at once from %s for %s (%d runs)",
				roleName(i), addrs[i], iv.Holders, stamp(iv.Start), ms(iv.Duration()), len(ivs)))
		}
	}
	return tr, nil
}

func roleName(i int) string {
	if i == 0 {
		return VIPRole
	}
	return fmt.Sprintf("vip-%03d", i)
}

// excludeOffEach is excludeOff for every address of a set sampler's
// samples.
func excludeOffEach(samples []lab.Sample, off []offWindow) []lab.Sample {
	out := make([]lab.Sample, len(samples))
	for k, s := range samples {
		out[k] = lab.Sample{At: s.At, Holders: excludeOff([]lab.Sample{{At: s.At, Holders: s.Holders}}, off)[0].Holders}
		for _, hs := range s.Each {
			out[k].Each = append(out[k].Each, excludeOff([]lab.Sample{{At: s.At, Holders: hs}}, off)[0].Holders)
		}
	}
	return out
}

// moveLeaderOff makes sure the Raft leader is not node (a transfer when it
// is) and returns the leader.
func (c *Cluster) moveLeaderOff(ctx context.Context, node string) (string, error) {
	var other string
	for _, n := range c.nodes {
		if n.Name != node {
			other = n.Name
			break
		}
	}
	for try := 0; try < 5; try++ {
		st, err := c.Status(ctx, other)
		if err != nil {
			return "", err
		}
		if st.Leader != "" && st.Leader != node {
			return st.Leader, nil
		}
		if st.Leader == node {
			// An error (the leadership moved meanwhile: "not the
			// leader") is settled by the next look.
			if err := c.TransferLeader(ctx, node, other); err != nil {
				c.log.Info("move the leadership off the crash target", "node", node, "err", err)
			}
		}
		if _, err := c.WaitStable(ctx, 500*time.Millisecond, 30*time.Second); err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("the leadership stays on %s", node)
}

// scaleSnap is what one reading of the cluster's counters holds.
type scaleSnap struct {
	at        time.Time
	commit    float64            // the leader's commit index
	commands  float64            // the leader's reconcile proposals
	passes    float64            // the leader's reconcile passes ...
	passTime  float64            // ... and their total seconds
	leaseSent map[string]float64 // lease datagrams sent, by running agent
	ticks     map[string]int64
	pids      map[string]int
}

// scaleSnap scrapes every running agent and reads their CPU time.
func (c *Cluster) scaleSnap(ctx context.Context, leader string) (scaleSnap, error) {
	s := scaleSnap{at: time.Now(), ticks: map[string]int64{}, pids: map[string]int{}, leaseSent: map[string]float64{}}
	for _, n := range c.nodes {
		if !c.Running(n.Name) {
			continue
		}
		if p, err := c.agent(n.Name); err == nil {
			s.pids[n.Name] = p.cmd.Process.Pid
			if t, err := procstat.ReadCPUTicks(s.pids[n.Name]); err == nil {
				s.ticks[n.Name] = t
			}
		}
		body, err := c.Scrape(ctx, n.Name)
		if err != nil {
			return s, err
		}
		fams, err := promtext.Parse(body)
		if err != nil {
			return s, fmt.Errorf("metrics of %s: %w", n.Name, err)
		}
		s.leaseSent[n.Name] = max(fams.Value("harbormaster_lease_datagrams_total", map[string]string{"direction": "sent"}), 0)
		if n.Name != leader {
			continue
		}
		s.commit = fams.Value("harbormaster_raft_commit_index", nil)
		s.commands = max(fams.Value("harbormaster_reconcile_commands_total", nil), 0)
		if f := fams["harbormaster_reconcile_duration_seconds"]; f != nil && len(f.GetMetric()) > 0 {
			h := f.GetMetric()[0].GetHistogram()
			s.passes, s.passTime = float64(h.GetSampleCount()), h.GetSampleSum()
		}
	}
	if s.commit < 0 {
		return s, fmt.Errorf("metrics of the leader %s: no harbormaster_raft_commit_index", leader)
	}
	return s, nil
}

// rates returns, from an earlier snapshot to s, Raft entries committed per
// second, lease datagrams sent per second (by the agents running at both)
// and the mean reconcile pass in milliseconds.
func (s scaleSnap) rates(from scaleSnap) (raft, lease, reconcileMs float64) {
	secs := s.at.Sub(from.at).Seconds()
	if secs <= 0 {
		return 0, 0, 0
	}
	raft = (s.commit - from.commit) / secs
	for n, sent := range s.leaseSent {
		if was, ok := from.leaseSent[n]; ok && s.pids[n] == from.pids[n] {
			lease += (sent - was) / secs
		}
	}
	if n := s.passes - from.passes; n > 0 {
		reconcileMs = (s.passTime - from.passTime) / n * 1000
	}
	return raft, lease, reconcileMs
}

// cpuPct is node's CPU from an earlier snapshot to s, in percent of one
// core (0 when either reading is missing or the process changed).
func (s scaleSnap) cpuPct(from scaleSnap, node string) float64 {
	t1, ok1 := s.ticks[node]
	t0, ok0 := from.ticks[node]
	if !ok0 || !ok1 || s.pids[node] != from.pids[node] {
		return 0
	}
	return procstat.CPUPct(t1-t0, procstat.ClockTicks(), s.at.Sub(from.at))
}
