// Package redissentinel runs the peer of the Redis benchmark: three
// redis-servers and three Redis Sentinels (Debian's redis-sentinel), one
// of each per node namespace of a fresh lab (DESIGN.md §7), quorum 2, and
// injects the faults of the harbormaster Redis scenarios, measured by the
// same observers (chaos/scenario's writer and writable-master sampler).
// It is not agent/sentinel, the Sentinel-protocol server of the agent.
//
// The writer discovers the master the way a Sentinel client does: it asks
// the sentinels in order (n1, n2, n3 at first; the first that answers
// wins and is asked first next time, as redis-py does) for `SENTINEL
// get-master-addr-by-name mymaster`, writes there, and asks again after
// any failed write (a timeout, a refused connection, READONLY). It does
// not subscribe to +switch-master: like a client whose writes keep
// succeeding, it stays with a master that still takes them.
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
}

// RunTrial builds a fresh lab with the Sentinel setup (down-after
// downAfter), injects fault once, measures it, and tears everything down.
func RunTrial(ctx context.Context, fault string, downAfter time.Duration) (tr Trial, err error) {
	l, err := lab.New(ctx, lab.Options{Nodes: 3, Clients: 1, Name: "sent"})
	if err != nil {
		return tr, err
	}
	defer l.Close() // kills what still runs in the namespaces
	dir, err := os.MkdirTemp("", "hm-sentinel-")
	if err != nil {
		return tr, err
	}
	defer os.RemoveAll(dir)
	s := &setup{l: l, dir: dir, downAfter: downAfter}
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
	tgt := &Target{spawn: spawn(client)}
	for _, n := range nodes {
		tgt.sentinels = append(tgt.sentinels, scenario.NewRedisConn(addr(n.IP, sentinelPort), spawn(client), 50*time.Millisecond))
	}
	key := fmt.Sprintf("harbormaster:lab:writes:%d", time.Now().UnixNano())
	w := scenario.StartRedisWriter(tgt, key, time.Millisecond)
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()
	if !waitFor(ctx, 10*time.Second, func() bool { a, ok := w.LastAck(); return ok && time.Since(a.End) < 50*time.Millisecond }) {
		return tr, fmt.Errorf("sentinel: the writer is not acknowledged")
	}
	if err := scenario.Sleep(ctx, time.Second); err != nil {
		return tr, err
	}
	// diag says what the observers saw last, for a failed trial.
	diag := func() string {
		last, _ := samp.Last()
		a, _ := w.LastAck()
		n, errs := w.Errors()
		out := fmt.Sprintf(" (last sample %s: %v; last ack %s ago; %d write errors %v", last.At.Format("15:04:05.000"), last.Holders, time.Since(a.End).Round(time.Millisecond), n, errs)
		for _, n := range nodes {
			b, _ := os.ReadFile(filepath.Join(dir, n.Name+"-sentinel.log"))
			ls := strings.Split(strings.TrimSpace(string(b)), "\n")
			out += fmt.Sprintf("; %s sentinel log: %s", n.Name, strings.Join(ls[max(0, len(ls)-6):], " | "))
		}
		return out + ")"
	}
	newMaster := func(since time.Time) (string, bool) {
		var nm string
		ok := waitFor(ctx, 4*downAfter+20*time.Second, func() bool {
			ss := samp.SamplesSince(since)
			if len(ss) == 0 {
				return false
			}
			last := ss[len(ss)-1]
			if len(last.Holders) != 1 || last.Holders[0] == m.Name {
				return false
			}
			nm = last.Holders[0]
			a, ok := w.LastAck()
			return ok && a.End.After(last.At.Add(-50*time.Millisecond))
		})
		return nm, ok
	}
	t0 := time.Now()
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
		if err := l.Partition([]string{m.Name}, []string{nodes[1].Name, nodes[2].Name}); err != nil {
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
	w.Stop()
	stopped = true
	fn := nodes[slices.IndexFunc(nodes, func(n lab.Node) bool { return n.Name == final })]
	cli := scenario.NewRedisConn(addr(fn.IP, redisPort), spawn(final), 10*time.Second)
	defer cli.Close()
	list, err := scenario.Strings(cli.Do(ctx, "LRANGE", key, "0", "-1"))
	if err != nil {
		return tr, fmt.Errorf("sentinel: read the final master %s: %w", final, err)
	}
	rep := scenario.AnalyzeWrites(w.Acks(), list, t0, end)
	dual, _ := scenario.DualMasters(samp.SamplesSince(t0.Add(-time.Second)), period)
	tr.FailoverMS = ms(rep.Failover)
	tr.OutageMS = ms(rep.Outage)
	if fault == FaultKill && final == m.Name {
		// Nothing failed over: the longest gap between writes is all the
		// client saw, and the end of that gap would be a random instant.
		tr.FailoverMS = tr.OutageMS
		tr.Note = "no failover (the master kept taking writes): failover_ms is the longest write gap"
	}
	tr.Lost, tr.Acked = len(rep.Lost), rep.Acked
	tr.DualMasterMS = ms(dual)
	return tr, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func addr(ip netip.Addr, port int) string { return netip.AddrPortFrom(ip, uint16(port)).String() }

// setup is the processes of one lab.
type setup struct {
	l         *lab.Lab
	dir       string
	downAfter time.Duration
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
sentinel monitor %s %s %d 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, sentinelPort, filepath.Dir(conf), n.IP, masterName, master.IP, redisPort, masterName, s.downAfter.Milliseconds(), masterName, masterName)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return err
	}
	// The same binary as Debian's redis-sentinel (a symlink to it).
	return s.start(ctx, n.Name, "sentinel", "redis-server", conf, "--sentinel")
}

// waitReady waits until every sentinel knows the two replicas and the two
// other sentinels.
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
			if f["num-slaves"] != "2" || f["num-other-sentinels"] != "2" || strings.Contains(f["flags"], "down") {
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

// Target is the writer's Sentinel-aware WriteTarget.
type Target struct {
	sentinels []*scenario.RedisConn
	spawn     scenario.Spawner
	cur       *scenario.RedisConn
}

// RPush implements scenario.WriteTarget.
func (t *Target) RPush(ctx context.Context, key string, val int64) error {
	if t.cur == nil {
		a, err := t.discover(ctx)
		if err != nil {
			return err
		}
		t.cur = scenario.NewRedisConn(a, t.spawn, 50*time.Millisecond)
	}
	// The write gets its own 50 ms (the connection's timeout): the
	// writer's per-write deadline may already be spent on the discovery,
	// which a Sentinel client does before the write, not within it.
	_, err := t.cur.Do(context.WithoutCancel(ctx), "RPUSH", key, strconv.FormatInt(val, 10))
	if err != nil {
		t.cur.Close()
		t.cur = nil
	}
	return err
}

func (t *Target) discover(ctx context.Context) (string, error) {
	var last error
	for i, s := range t.sentinels {
		v, err := scenario.Strings(s.Do(context.Background(), "SENTINEL", "get-master-addr-by-name", masterName))
		if err == nil && len(v) == 2 {
			// Like redis-py's Sentinel client: the sentinel that answered
			// is asked first next time.
			t.sentinels[0], t.sentinels[i] = t.sentinels[i], t.sentinels[0]
			return v[0] + ":" + v[1], nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel named the master: %v", last)
}

// Close implements scenario.WriteTarget.
func (t *Target) Close() {
	if t.cur != nil {
		t.cur.Close()
	}
	for _, s := range t.sentinels {
		s.Close()
	}
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
