// Package redissentinel runs the peer of the Redis benchmark: a
// redis-server and a Redis Sentinel (Debian's redis-sentinel) per node
// namespace of a fresh lab (DESIGN.md §7; 3 nodes, or 5), quorum a
// majority, and injects the faults of the harbormaster Redis scenarios,
// measured by the same observers (chaos/scenario's writers and
// writable-master sampler). It is not agent/sentinel, the Sentinel-protocol
// server of the agent.
//
// The writer is chaos/scenario's SentinelTarget, the lab's
// Sentinel-protocol writer; with Options.Clients, Harbor's clients
// (scenario.StartClients) write next to it.
package redissentinel

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/scenario"
)

// Fault names, as in the harbormaster scenarios.
const (
	FaultCrash     = "crash-master"
	FaultPartition = "partition-master"
	FaultKill      = "kill-agent" // the sentinel on the master's node
)

const (
	redisPort    = 6379
	sentinelPort = 26379
	masterName   = "mymaster"
	period       = 10 * time.Millisecond
)

// Trial is one measured fault.
type Trial struct {
	FailoverMS   float64 `json:"failover_ms"`
	OutageMS     float64 `json:"outage_ms"`
	Lost         int     `json:"lost_acked_writes"`
	Acked        int     `json:"acked_writes"`
	DualMasterMS float64 `json:"dual_master_ms"`
	Note         string  `json:"note,omitempty"`
	// Clients are Harbor's clients' figures (RunClientsTrial); the
	// writer figures above are then zero.
	Clients map[string]scenario.ClientTrial `json:"clients,omitempty"`
}

// Options are RunTrialWith's options.
type Options struct {
	// Nodes is the number of nodes, each with a Redis and a sentinel
	// (default 3); the quorum is their majority.
	Nodes int
	// Clients runs Harbor's clients (scenario.StartClients) instead of
	// the lab writer alone.
	Clients bool
}

// RunTrial builds a fresh lab with the Sentinel setup (3 nodes,
// down-after downAfter), injects fault once, measures it with the lab
// writer, and tears everything down.
func RunTrial(ctx context.Context, fault string, downAfter time.Duration) (Trial, error) {
	return RunTrialWith(ctx, fault, downAfter, Options{})
}

// RunTrialWith is RunTrial with options.
func RunTrialWith(ctx context.Context, fault string, downAfter time.Duration, o Options) (tr Trial, err error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	l, err := lab.New(ctx, lab.Options{Nodes: o.Nodes, Clients: 1, Name: "sent"})
	if err != nil {
		return tr, err
	}
	defer l.Close() // kills what still runs in the namespaces
	dir, err := os.MkdirTemp("", "hm-sentinel-")
	if err != nil {
		return tr, err
	}
	defer os.RemoveAll(dir)
	s := &setup{l: l, dir: dir, downAfter: downAfter, quorum: o.Nodes/2 + 1}
	defer s.stop()
	nodes := l.Nodes()
	m := nodes[0]
	for _, n := range nodes {
		if err := s.startRedis(ctx, n, m); err != nil {
			return tr, err
		}
		if err := s.startSentinel(ctx, n, m); err != nil {
			return tr, err
		}
	}
	if err := s.waitReady(ctx); err != nil {
		return tr, err
	}
	spawn := func(h string) scenario.Spawner {
		return func(fn func() error) error { return l.InNamespace(h, fn) }
	}
	addrs := map[string]string{}
	for _, n := range nodes {
		addrs[n.Name] = addr(n.IP, redisPort)
	}
	samp := scenario.StartMasterSampler(addrs, spawn, period)
	defer samp.Stop()
	client := l.Clients()[0].Name
	var sentinels []string
	for _, n := range nodes {
		sentinels = append(sentinels, addr(n.IP, sentinelPort))
	}
	key := fmt.Sprintf("harbormaster:lab:writes:%d", time.Now().UnixNano())
	// w is the lab writer; with o.Clients, cs are Harbor's clients and w
	// is the lab client among them.
	var w *scenario.RedisWriter
	var cs *scenario.ClientSet
	if o.Clients {
		cs = scenario.StartClients(sentinels, masterName, key, spawn(client), nil)
		w = cs.Writer(scenario.ClientLab)
	} else {
		w = scenario.StartRedisWriter(scenario.NewSentinelTarget(sentinels, masterName, spawn(client)), key, time.Millisecond)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if cs != nil {
			cs.Stop()
		} else {
			w.Stop()
		}
	}
	defer stop()
	// acked reports whether every writer was acknowledged at or after t.
	acked := func(t time.Time) bool {
		if cs != nil {
			return cs.AckedSince(t)
		}
		a, ok := w.LastAck()
		return ok && !a.End.Before(t)
	}
	if !waitFor(ctx, 10*time.Second, func() bool { return acked(time.Now().Add(-50 * time.Millisecond)) }) {
		return tr, fmt.Errorf("sentinel: the writers are not acknowledged")
	}
	if err := scenario.Sleep(ctx, time.Second); err != nil {
		return tr, err
	}
	// diag says what the observers saw last, for a failed trial.
	diag := func() string {
		last, _ := samp.Last()
		a, _ := w.LastAck()
		n, errs := w.Errors()
		out := fmt.Sprintf(" (last sample %s: %v; last ack of the lab writer %s ago; %d write errors %v", last.At.Format("15:04:05.000"), last.Holders, time.Since(a.End).Round(time.Millisecond), n, errs)
		for _, n := range nodes {
			b, _ := os.ReadFile(filepath.Join(dir, n.Name+"-sentinel.log"))
			ls := strings.Split(strings.TrimSpace(string(b)), "\n")
			out += fmt.Sprintf("; %s sentinel log: %s", n.Name, strings.Join(ls[max(0, len(ls)-6):], " | "))
		}
		return out + ")"
	}
	// newMaster waits for one node other than m alone to take writes
	// (since since) and for the writers to be acknowledged after that;
	// with Harbor's clients, for all of them or until a stalled one has
	// had clientWait since the fault.
	var t0 time.Time
	newMaster := func(since time.Time) (string, bool) {
		var nm string
		var at time.Time
		ok := waitFor(ctx, 4*downAfter+20*time.Second, func() bool {
			ss := samp.SamplesSince(since)
			if len(ss) == 0 {
				return false
			}
			last := ss[len(ss)-1]
			if len(last.Holders) != 1 || last.Holders[0] == m.Name {
				return false
			}
			if cs != nil {
				// One node alone for settle, as chaos/scenario waits.
				i := len(ss) - 1
				for i > 0 && len(ss[i-1].Holders) == 1 && ss[i-1].Holders[0] == last.Holders[0] {
					i--
				}
				nm, at = last.Holders[0], ss[i].At
				return last.At.Sub(at) >= settle
			}
			nm = last.Holders[0]
			return acked(last.At.Add(-50 * time.Millisecond))
		})
		if ok && cs != nil {
			waitFor(ctx, clientWait-time.Since(t0), func() bool { return acked(at) })
		}
		return nm, ok
	}
	t0 = time.Now()
	final := m.Name
	switch fault {
	case FaultCrash:
		if err := l.Crash(m.Name); err != nil {
			return tr, err
		}
		nm, ok := newMaster(t0)
		if !ok {
			return tr, fmt.Errorf("sentinel: no failover after the crash%s", diag())
		}
		final = nm
		if err := scenario.Sleep(ctx, time.Second); err != nil {
			return tr, err
		}
	case FaultPartition:
		others := make([]string, 0, len(nodes)-1)
		for _, n := range nodes[1:] {
			others = append(others, n.Name)
		}
		if err := l.Partition([]string{m.Name}, others); err != nil {
			return tr, err
		}
		// The writer stays with the cut-off master (its writes succeed), so
		// the new master is the one the majority promoted, in the sampler.
		var nm string
		ok := waitFor(ctx, 4*downAfter+20*time.Second, func() bool {
			last, _ := samp.Last()
			for _, h := range last.Holders {
				if h != m.Name {
					nm = h
					return true
				}
			}
			return false
		})
		if !ok {
			return tr, fmt.Errorf("sentinel: no new master during the partition%s", diag())
		}
		final = nm
		// Healed 500 ms after the promotion, as the harbormaster scenario
		// heals 500 ms after its failover.
		if err := scenario.Sleep(ctx, 500*time.Millisecond); err != nil {
			return tr, err
		}
		if err := l.Heal(); err != nil {
			return tr, err
		}
		// Sentinel turns the old master into a replica after the heal.
		cli := scenario.NewRedisConn(addr(m.IP, redisPort), spawn(m.Name), time.Second)
		defer cli.Close()
		if !waitFor(ctx, 30*time.Second, func() bool { return scenario.ReplicaOf(ctx, cli, addrs[nm]) }) {
			tr.Note = "the old master did not become a replica within 30 s of the heal"
		}
		if _, ok := newMaster(time.Now()); !ok {
			return tr, fmt.Errorf("sentinel: no single master after the heal%s", diag())
		}
	case FaultKill:
		if err := s.killSentinel(m.Name); err != nil {
			return tr, err
		}
		if err := scenario.Sleep(ctx, downAfter+3*time.Second); err != nil {
			return tr, err
		}
	default:
		return tr, fmt.Errorf("sentinel: unknown fault %q", fault)
	}
	end := time.Now()
	fn := nodes[slices.IndexFunc(nodes, func(n lab.Node) bool { return n.Name == final })]
	cli := scenario.NewRedisConn(addr(fn.IP, redisPort), spawn(final), 10*time.Second)
	defer cli.Close()
	read := func(key string) ([]string, error) { return scenario.Strings(cli.Do(ctx, "LRANGE", key, "0", "-1")) }
	dual, _ := scenario.DualMasters(samp.SamplesSince(t0.Add(-time.Second)), period)
	tr.DualMasterMS = ms(dual)
	if cs != nil {
		stopped = true
		res, err := cs.Finish(read, t0)
		if err != nil {
			return tr, fmt.Errorf("sentinel: the final master %s: %w", final, err)
		}
		if fault == FaultKill && final == m.Name {
			// Nothing failed over: the longest gap is all a client saw
			// (its end would be a random instant).
			for n, r := range res {
				r.FirstAckMS = r.OutageMS
				res[n] = r
			}
			tr.Note = "no failover (the master kept taking writes): first_ack_ms is each client's longest gap"
		}
		tr.Clients = res
		return tr, nil
	}
	stop()
	list, err := read(key)
	if err != nil {
		return tr, fmt.Errorf("sentinel: read the final master %s: %w", final, err)
	}
	rep := scenario.AnalyzeWrites(w.Acks(), list, t0, end)
	tr.FailoverMS = ms(rep.Failover)
	tr.OutageMS = ms(rep.Outage)
	if fault == FaultKill && final == m.Name {
		// Nothing failed over: the longest gap between writes is all the
		// client saw, and the end of that gap would be a random instant.
		tr.FailoverMS = tr.OutageMS
		tr.Note = "no failover (the master kept taking writes): failover_ms is the longest write gap"
	}
	tr.Lost, tr.Acked = len(rep.Lost), rep.Acked
	return tr, nil
}

// clientWait bounds the wait, after a fault, for every one of Harbor's
// clients to write again (as in chaos/scenario's redis-clients).
const clientWait = 20 * time.Second

// settle is how long one node alone must take writes to count as the new
// master when Harbor's clients run.
const settle = 300 * time.Millisecond

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func addr(ip netip.Addr, port int) string { return netip.AddrPortFrom(ip, uint16(port)).String() }

// setup is the processes of one lab.
type setup struct {
	l         *lab.Lab
	dir       string
	downAfter time.Duration
	quorum    int
	procs     map[string]*procRef
}

type procRef struct {
	name string
	pid  int
	wait chan error
	kill func()
}

func (s *setup) start(ctx context.Context, node, name string, argv ...string) error {
	if s.procs == nil {
		s.procs = map[string]*procRef{}
	}
	f, err := os.Create(filepath.Join(s.dir, node+"-"+name+".log"))
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := s.l.Command(context.Background(), node, argv...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sentinel: start %s on %s: %w", name, node, err)
	}
	p := &procRef{name: name, pid: cmd.Process.Pid, wait: make(chan error, 1), kill: func() { _ = cmd.Process.Kill() }}
	go func() { p.wait <- cmd.Wait() }()
	s.procs[node+"/"+name] = p
	return nil
}

func (s *setup) stop() {
	for _, p := range s.procs {
		p.kill()
		<-p.wait
	}
	s.procs = nil
}

func (s *setup) killSentinel(node string) error {
	p, ok := s.procs[node+"/sentinel"]
	if !ok {
		return fmt.Errorf("no sentinel on %s", node)
	}
	p.kill()
	return nil
}

// startRedis starts a Redis that takes writes (no fence: Sentinel does not
// fence), a replica of master unless it is the master.
func (s *setup) startRedis(ctx context.Context, n, master lab.Node) error {
	d := filepath.Join(s.dir, n.Name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	argv := scenario.RedisArgv(d)
	i := slices.Index(argv, "--min-replicas-to-write")
	argv[i+1] = "0"
	if n.Name != master.Name {
		argv = append(argv, "--replicaof", master.IP.String(), strconv.Itoa(redisPort))
	}
	return s.start(ctx, n.Name, "redis", argv...)
}

func (s *setup) startSentinel(ctx context.Context, n, master lab.Node) error {
	conf := filepath.Join(s.dir, n.Name, "sentinel.conf")
	body := fmt.Sprintf(`port %d
bind 0.0.0.0
protected-mode no
dir %s
sentinel announce-ip %s
sentinel monitor %s %s %d %d
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, sentinelPort, filepath.Dir(conf), n.IP, masterName, master.IP, redisPort, s.quorum, masterName, s.downAfter.Milliseconds(), masterName, masterName)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return err
	}
	// The same binary as Debian's redis-sentinel (a symlink to it).
	return s.start(ctx, n.Name, "sentinel", "redis-server", conf, "--sentinel")
}

// waitReady waits until every sentinel knows every replica and every
// other sentinel.
func (s *setup) waitReady(ctx context.Context) error {
	var why string
	ok := waitFor(ctx, 30*time.Second, func() bool {
		for _, n := range s.l.Nodes() {
			cli := scenario.NewRedisConn(addr(n.IP, sentinelPort), func(fn func() error) error { return s.l.InNamespace(n.Name, fn) }, 200*time.Millisecond)
			v, err := scenario.Strings(cli.Do(ctx, "SENTINEL", "master", masterName))
			cli.Close()
			if err != nil {
				why = fmt.Sprintf("%s: %v", n.Name, err)
				return false
			}
			f := map[string]string{}
			for i := 0; i+1 < len(v); i += 2 {
				f[v[i]] = v[i+1]
			}
			others := strconv.Itoa(len(s.l.Nodes()) - 1)
			if f["num-slaves"] != others || f["num-other-sentinels"] != others || strings.Contains(f["flags"], "down") {
				why = fmt.Sprintf("%s: %v", n.Name, f["flags"]+" slaves="+f["num-slaves"]+" sentinels="+f["num-other-sentinels"])
				return false
			}
		}
		return true
	})
	if !ok {
		return fmt.Errorf("sentinel: not ready within 30 s: %s", why)
	}
	return nil
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || scenario.Sleep(ctx, 10*time.Millisecond) != nil {
			return false
		}
	}
}
