package scenario

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/FZambia/sentinel"
	redigo "github.com/gomodule/redigo/redis"
	"github.com/harbormaster/harbormaster/chaos/lab"
	goredis "github.com/redis/go-redis/v9"
)

// The clients Harbor ships, each discovering the Redis master through
// Sentinel (harbormaster's Sentinel-compatible listeners, or real
// sentinels in chaos/redissentinel), driven side by side by RedisWriters
// in the client namespace, each on its own list:
//   - ClientRedigo: redigo with FZambia/sentinel, built as Harbor's
//     src/lib/redis/pool.go builds its sentinel pool (jobservice);
//   - ClientGoRedis: go-redis v9 NewFailoverClient with default options
//     (Harbor core);
//   - ClientLab: the lab's Sentinel-protocol writer (SentinelTarget).
// Every dial goes through LabDialer's guard inside the client namespace;
// the dialers keep the timeouts and keep-alives the clients set by default.

// Client names, as in the JSON.
const (
	ClientRedigo  = "redigo"
	ClientGoRedis = "go-redis"
	ClientLab     = "lab"
)

// ClientNames are the clients of a ClientSet, in report order.
var ClientNames = []string{ClientRedigo, ClientGoRedis, ClientLab}

// clientEvery is the period of each client's writes: every write of the
// redigo pool dials (MaxIdle 0), so 5 ms keeps three clients cheap.
const clientEvery = 5 * time.Millisecond

// stallAfter is the time after a fault within which a client must have an
// acknowledged write the final master kept, or the trial is stalled.
const stallAfter = 5 * time.Second

// clientWait bounds the wait, after a fault, for every client to write
// again before the fault is undone.
const clientWait = 20 * time.Second

// labDialerWith is LabDialer with the dialer's timeout and keep-alive.
func labDialerWith(spawn Spawner, d net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if spawn == nil {
		spawn = func(fn func() error) error { return fn() }
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, fmt.Errorf("lab dialer: %w", err)
		}
		var conn net.Conn
		err = spawn(func() error {
			if err := lab.GuardHere(ap.Addr()); err != nil {
				return err
			}
			var derr error
			conn, derr = d.DialContext(ctx, "tcp4", addr)
			return derr
		})
		return conn, err
	}
}

// Tracer receives a line per client event (dials, failed writes) for the
// trial's log; nil drops them.
type Tracer func(format string, args ...any)

func (t Tracer) printf(format string, args ...any) {
	if t != nil {
		t(format, args...)
	}
}

// traced logs every dial of dial (address, time taken, error) with who.
func traced(who string, tr Tracer, dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if tr == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		start := time.Now()
		c, err := dial(ctx, network, addr)
		if d := time.Since(start); err != nil || who != ClientRedigo || d > 100*time.Millisecond {
			tr.printf("%s: dial %s: %s, err %v", who, addr, d.Round(time.Millisecond), err)
		}
		if err != nil || who == ClientRedigo {
			return c, err
		}
		return &tracedConn{Conn: c, who: who, tr: tr}, nil
	}
}

// tracedConn logs failed reads and writes (with the time they took) and
// closes.
type tracedConn struct {
	net.Conn
	who string
	tr  Tracer
}

func (c *tracedConn) Read(b []byte) (int, error) {
	start := time.Now()
	n, err := c.Conn.Read(b)
	if err != nil {
		c.tr.printf("%s: read %s->%s after %s: %v", c.who, c.LocalAddr(), c.RemoteAddr(), time.Since(start).Round(time.Millisecond), err)
	}
	return n, err
}

func (c *tracedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.tr.printf("%s: write %s->%s: %v", c.who, c.LocalAddr(), c.RemoteAddr(), err)
	}
	return n, err
}

func (c *tracedConn) Close() error {
	c.tr.printf("%s: close %s->%s", c.who, c.LocalAddr(), c.RemoteAddr())
	return c.Conn.Close()
}

// RedigoTarget is Harbor's jobservice pool: redigo with FZambia/sentinel,
// MaxIdle 0, MaxActive 1, Wait, TestOnBorrow checking the role, each
// connection dialed to the address the sentinels name, 1 s connect, read
// and write timeouts on sentinel and Redis connections alike.
type RedigoTarget struct {
	pool  *redigo.Pool
	snt   *sentinel.Sentinel
	trace Tracer
}

// NewRedigoTarget builds the pool; it dials nothing yet.
func NewRedigoTarget(sentinels []string, master string, spawn Spawner, trace Tracer) *RedigoTarget {
	const timeout = time.Second
	// redigo's own dialer with DialConnectTimeout: net.Dialer{Timeout,
	// KeepAlive 5m}.
	dial := traced(ClientRedigo, trace, labDialerWith(spawn, net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}))
	opts := []redigo.DialOption{
		redigo.DialReadTimeout(timeout), redigo.DialWriteTimeout(timeout),
		redigo.DialContextFunc(dial),
	}
	snt := &sentinel.Sentinel{
		Addrs:      slices.Clone(sentinels), // reordered in place by FZambia
		MasterName: master,
		Dial:       func(addr string) (redigo.Conn, error) { return redigo.Dial("tcp", addr, opts...) },
	}
	pool := &redigo.Pool{
		MaxIdle:   0,
		MaxActive: 1,
		Wait:      true,
		Dial: func() (redigo.Conn, error) {
			start := time.Now()
			addr, err := snt.MasterAddr()
			if d := time.Since(start); err != nil || d > 100*time.Millisecond {
				trace.printf("%s: MasterAddr after %s: %s, %v (sentinels now in order %v)", ClientRedigo, d.Round(time.Millisecond), addr, err, snt.Addrs)
			}
			if err != nil {
				return nil, err
			}
			return redigo.Dial("tcp", addr, opts...)
		},
		TestOnBorrow: func(c redigo.Conn, _ time.Time) error {
			if !sentinel.TestRole(c, "master") {
				return fmt.Errorf("check role failed")
			}
			return nil
		},
	}
	return &RedigoTarget{pool: pool, snt: snt, trace: trace}
}

// RPush implements WriteTarget. The pool's own timeouts bound it, not
// ctx: Harbor calls Do without a deadline.
func (t *RedigoTarget) RPush(_ context.Context, key string, val int64) error {
	start := time.Now()
	c := t.pool.Get()
	defer c.Close()
	_, err := c.Do("RPUSH", key, val)
	if err != nil {
		t.trace.printf("%s: RPUSH %d after %s: %v", ClientRedigo, val, time.Since(start).Round(time.Millisecond), err)
	}
	return err
}

// Close implements WriteTarget.
func (t *RedigoTarget) Close() {
	_ = t.pool.Close()
	_ = t.snt.Close()
}

// GoRedisTarget is Harbor core's client: go-redis NewFailoverClient with
// default options (MasterName and SentinelAddrs; the Dialer is go-redis's
// default dialer behind the lab guard).
type GoRedisTarget struct {
	cli   *goredis.Client
	trace Tracer
}

// NewGoRedisTarget builds the client; it dials nothing yet.
func NewGoRedisTarget(sentinels []string, master string, spawn Spawner, trace Tracer) *GoRedisTarget {
	// go-redis's NewDialer: DialTimeout (5 s) and its keep-alive config.
	d := net.Dialer{Timeout: 5 * time.Second, KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}}
	return &GoRedisTarget{cli: goredis.NewFailoverClient(&goredis.FailoverOptions{
		MasterName: master, SentinelAddrs: sentinels, Dialer: traced(ClientGoRedis, trace, labDialerWith(spawn, d)),
	}), trace: trace}
}

// RPush implements WriteTarget; go-redis's timeouts bound it, not ctx
// (Harbor core passes request contexts without short deadlines).
func (t *GoRedisTarget) RPush(_ context.Context, key string, val int64) error {
	start := time.Now()
	err := t.cli.RPush(context.Background(), key, val).Err()
	if err != nil {
		t.trace.printf("%s: RPUSH %d after %s: %v", ClientGoRedis, val, time.Since(start).Round(time.Millisecond), err)
	}
	return err
}

// Close implements WriteTarget.
func (t *GoRedisTarget) Close() { _ = t.cli.Close() }

// SetGoRedisLog sends go-redis's log lines (one process-wide logger) to w,
// each stamped with the wall clock to the microsecond; nil discards them.
func SetGoRedisLog(w io.Writer) {
	if w == nil {
		w = io.Discard
	}
	goredis.SetLogger(&stampLogger{w: w})
}

type stampLogger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *stampLogger) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s %s\n", time.Now().Format("15:04:05.000000"), fmt.Sprintf(format, v...))
}

// SentinelTarget is the lab's own Sentinel-protocol writer: it asks the
// sentinels in order for `SENTINEL get-master-addr-by-name` (the first
// that answers is asked first next time, as redis-py does), writes to the
// address named, and asks again after any failed write (a timeout, a
// refused connection, READONLY). It does not subscribe to +switch-master.
type SentinelTarget struct {
	master    string
	sentinels []*RedisConn
	spawn     Spawner
	cur       *RedisConn
}

// NewSentinelTarget returns the writer's target; timeouts 50 ms.
func NewSentinelTarget(sentinels []string, master string, spawn Spawner) *SentinelTarget {
	t := &SentinelTarget{master: master, spawn: spawn}
	for _, a := range sentinels {
		t.sentinels = append(t.sentinels, NewRedisConn(a, spawn, redisTimeout))
	}
	return t
}

// RPush implements WriteTarget.
func (t *SentinelTarget) RPush(ctx context.Context, key string, val int64) error {
	if t.cur == nil {
		a, err := t.discover()
		if err != nil {
			return err
		}
		t.cur = NewRedisConn(a, t.spawn, redisTimeout)
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

func (t *SentinelTarget) discover() (string, error) {
	var last error
	for i, s := range t.sentinels {
		v, err := Strings(s.Do(context.Background(), "SENTINEL", "get-master-addr-by-name", t.master))
		if err == nil && len(v) == 2 {
			t.sentinels[0], t.sentinels[i] = t.sentinels[i], t.sentinels[0]
			return net.JoinHostPort(v[0], v[1]), nil
		}
		last = err
	}
	return "", fmt.Errorf("no sentinel named the master: %v", last)
}

// Close implements WriteTarget.
func (t *SentinelTarget) Close() {
	if t.cur != nil {
		t.cur.Close()
	}
	for _, s := range t.sentinels {
		s.Close()
	}
}

// ClientSet is the three clients writing at once, each to its own list.
type ClientSet struct {
	w    map[string]*RedisWriter
	keys map[string]string
}

// StartClients starts the three clients on lists keyPrefix:<client>,
// discovering master through the sentinels (host:port), from spawn's
// namespace; trace (may be nil) gets the redigo and go-redis clients'
// dials and failed writes.
func StartClients(sentinels []string, master, keyPrefix string, spawn Spawner, trace Tracer) *ClientSet {
	s := &ClientSet{w: map[string]*RedisWriter{}, keys: map[string]string{}}
	for _, n := range ClientNames {
		var t WriteTarget
		switch n {
		case ClientRedigo:
			t = NewRedigoTarget(sentinels, master, spawn, trace)
		case ClientGoRedis:
			t = NewGoRedisTarget(sentinels, master, spawn, trace)
		default:
			t = NewSentinelTarget(sentinels, master, spawn)
		}
		s.keys[n] = keyPrefix + ":" + n
		s.w[n] = StartRedisWriter(t, s.keys[n], clientEvery)
	}
	return s
}

// AckedSince reports whether every client had a write acknowledged at or
// after t.
func (s *ClientSet) AckedSince(t time.Time) bool {
	for _, w := range s.w {
		if a, ok := w.LastAck(); !ok || a.End.Before(t) {
			return false
		}
	}
	return true
}

// Writer returns the client's writer (nil after Stop).
func (s *ClientSet) Writer(name string) *RedisWriter { return s.w[name] }

// Stop stops every client (idempotent).
func (s *ClientSet) Stop() {
	for n, w := range s.w {
		w.Stop()
		delete(s.w, n)
	}
}

// ClientTrial is one client's figures in one trial.
type ClientTrial struct {
	// FirstAckMS is the time from the fault to the client's first
	// acknowledged write after its longest gap among the writes the final
	// master kept (AnalyzeWrites' Failover): its first write after the
	// failover.
	FirstAckMS float64 `json:"first_ack_ms"`
	// OutageMS is its longest gap between any two acknowledged writes.
	OutageMS float64 `json:"outage_ms"`
	Lost     int     `json:"lost_acked_writes"`
	// LostInFlight are the lost writes the client sent less than
	// inFlightWindow before the fault (or after it): replication is
	// asynchronous, so a master may acknowledge a write in the instant its
	// node crashes, before the write's replication stream leaves the node
	// (docs/redis.md, Limits). A lost write sent earlier than that had
	// time to reach a replica: no asynchronous window explains it.
	LostInFlight int `json:"lost_in_flight"`
	Acked        int `json:"acked_writes"`
	// Stalled: no acknowledged write kept by the final master within
	// stallAfter (5 s) of the fault.
	Stalled bool           `json:"stalled"`
	Errors  map[string]int `json:"errors,omitempty"`
}

// Finish stops the clients and measures each against the final master's
// lists (read reads one list).
func (s *ClientSet) Finish(read func(key string) ([]string, error), fault time.Time) (map[string]ClientTrial, error) {
	end := time.Now()
	acks, errs := map[string][]Ack{}, map[string]map[string]int{}
	for n, w := range s.w {
		acks[n] = w.Acks()
		_, errs[n] = w.Errors()
	}
	s.Stop()
	out := map[string]ClientTrial{}
	for _, n := range ClientNames {
		list, err := read(s.keys[n])
		if err != nil {
			return nil, fmt.Errorf("read %s's list %s: %w", n, s.keys[n], err)
		}
		rep := AnalyzeWrites(acks[n], list, fault, end)
		out[n] = ClientTrial{FirstAckMS: msf(rep.Failover), OutageMS: msf(rep.Outage), Lost: len(rep.Lost), LostInFlight: inFlight(rep.Lost, fault),
			Acked: rep.Acked, Stalled: rep.Failover > stallAfter, Errors: errs[n]}
	}
	return out, nil
}

// inFlightWindow is how long before a fault a lost write counts as in
// flight (ClientTrial.LostInFlight): the lab's round trips are well under a
// millisecond, and a master writes a command's replication stream in the
// same event-loop pass as its reply.
const inFlightWindow = 5 * time.Millisecond

// inFlight counts the lost writes sent less than inFlightWindow before the
// fault, or after it.
func inFlight(lost []Ack, fault time.Time) int {
	n := 0
	for _, a := range lost {
		if !a.Start.Before(fault.Add(-inFlightWindow)) {
			n++
		}
	}
	return n
}

// ClientStats summarises one client over the trials of a run.
type ClientStats struct {
	FirstAckMS      Stats `json:"first_ack_ms"`
	LostAckedWrites int   `json:"lost_acked_writes"`
	// LostBeforeFault is the most lost writes of a trial that were sent
	// before the in-flight window (ClientTrial.LostInFlight): the target
	// is none.
	LostBeforeFault int `json:"lost_before_fault"`
	StalledTrials   int `json:"stalled_trials"`
	Trials          int `json:"trials"`
}

// SummarizeClients aggregates per-trial client figures.
func SummarizeClients(trials []map[string]ClientTrial) map[string]ClientStats {
	if len(trials) == 0 {
		return nil
	}
	first := map[string][]float64{}
	out := map[string]ClientStats{}
	for _, tr := range trials {
		for n, ct := range tr {
			first[n] = append(first[n], ct.FirstAckMS)
			s := out[n]
			s.LostAckedWrites = max(s.LostAckedWrites, ct.Lost)
			s.LostBeforeFault = max(s.LostBeforeFault, ct.Lost-ct.LostInFlight)
			if ct.Stalled {
				s.StalledTrials++
			}
			s.Trials++
			out[n] = s
		}
	}
	for n, v := range first {
		s := out[n]
		s.FirstAckMS = summarize(v)
		out[n] = s
	}
	return out
}

// The faults of redis-clients (Options.RedisFault).
const (
	FaultCrashMaster     = "crash-master"
	FaultKillAgent       = "kill-agent"
	FaultPartitionMaster = "partition-master"
	FaultMove            = "move"
)

// RedisClientFaults are the faults redis-clients takes.
var RedisClientFaults = []string{FaultCrashMaster, FaultKillAgent, FaultPartitionMaster, FaultMove}

// redisClientsCluster is redisCluster after a check of the fault.
func redisClientsCluster(co *ClusterOptions, o Options) error {
	if o.RedisFault != "" && !slices.Contains(RedisClientFaults, o.RedisFault) {
		return fmt.Errorf("fault %q: use one of %v", o.RedisFault, RedisClientFaults)
	}
	return redisCluster(co, o)
}

// waitSoleMaster waits until one node other than not alone took writes in
// every sample of the last redisSettle, the first at or after since.
func waitSoleMaster(ctx context.Context, s *MasterSampler, not string, since time.Time, timeout time.Duration) (string, time.Time, bool) {
	var node string
	var first time.Time
	ok := poll(ctx, timeout, func() bool {
		ss := s.SamplesSince(since)
		if len(ss) == 0 {
			return false
		}
		node = soleHolder(ss[len(ss)-1])
		if node == "" || node == not {
			return false
		}
		i := len(ss) - 1
		for i > 0 && soleHolder(ss[i-1]) == node {
			i--
		}
		first = ss[i].At
		return ss[len(ss)-1].At.Sub(first) >= redisSettle
	})
	return node, first, ok
}

// redisClients runs Harbor's clients through one fault (o.RedisFault,
// default crash-master) per trial. The clients discover the master
// through every node's listener.
func redisClients(ctx context.Context, c *Cluster, v View, tr *Trial, o Options) error {
	fault := o.RedisFault
	if fault == "" {
		fault = FaultCrashMaster
	}
	addrs := map[string]string{}
	var sentinels []string
	for i, n := range c.nodes {
		addrs[n.Name] = c.redisAddr(n.Name)
		listener := n.IP
		if o.ListenerVIPs {
			listener = ListenerVIP(i + 1).Addr()
		}
		sentinels = append(sentinels, netip.AddrPortFrom(listener, sentinelPort).String())
	}
	smp := StartMasterSampler(addrs, c.spawner, samplePeriod)
	defer smp.Stop()
	// go-redis's log, stamped, with the trial's events, in the work dir.
	glog, err := os.OpenFile(filepath.Join(c.Dir(), "go-redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer glog.Close()
	SetGoRedisLog(glog)
	defer SetGoRedisLog(nil)
	event := func(format string, args ...any) {
		fmt.Fprintf(glog, "%s lab: trial %d: %s\n", time.Now().Format("15:04:05.000000"), tr.N, fmt.Sprintf(format, args...))
	}
	key := fmt.Sprintf("harbormaster:lab:clients:%d:%d", tr.N, time.Now().UnixNano())
	cs := StartClients(sentinels, redisMasterName, key, c.spawner(client), Tracer(func(format string, args ...any) {
		fmt.Fprintf(glog, "%s %s\n", time.Now().Format("15:04:05.000000"), fmt.Sprintf(format, args...))
	}))
	defer cs.Stop()
	role, err := c.role(ctx, v.Leader, RedisRole)
	if err != nil {
		return err
	}
	m := role.Holder
	ready := time.Now().Add(redisSettle)
	if !poll(ctx, redisWait, func() bool {
		last, _ := smp.Last()
		return time.Now().After(ready) && soleHolder(last) == m && cs.AckedSince(ready)
	}) {
		last, _ := smp.Last()
		var errs []string
		for _, n := range ClientNames {
			k, kinds := cs.Writer(n).Errors()
			errs = append(errs, fmt.Sprintf("%s %d %v", n, k, kinds))
		}
		return fmt.Errorf("redis-clients: the clients are not all acknowledged by the master %s within %s (last sample %v; errors %v)", m, redisWait, last.Holders, errs)
	}
	tr.Holder = m
	tr.note("fault %s; Redis master %s at epoch %d; clients on %s:* through %v", fault, m, role.Epoch, key, sentinels)
	var t0 time.Time
	restore := func() error { return nil }
	switch fault {
	case FaultCrashMaster:
		if t0, err = c.Crash(m); err != nil {
			return err
		}
		restore = func() error { return c.Restore(m) }
	case FaultKillAgent:
		t0 = time.Now()
		if err := c.Signal(m, syscall.SIGKILL); err != nil {
			return err
		}
		restore = func() error {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := c.WaitAgentExit(wctx, m); err != nil {
				return fmt.Errorf("agent on %s did not exit after SIGKILL: %w", m, err)
			}
			return c.StartAgent(m)
		}
	case FaultPartitionMaster:
		t0 = time.Now()
		if err := c.Lab.Partition([]string{m}, c.others(m)); err != nil {
			return err
		}
		restore = c.Lab.Heal
	case FaultMove:
		target := ""
		for _, n := range c.others(m) {
			if target == "" || n != v.Leader {
				target = n
			}
		}
		t0 = time.Now()
		if err := c.Move(ctx, v.Leader, RedisRole, target); err != nil {
			tr.violate("%s: move %s to %s: %v", stamp(t0), RedisRole, target, err)
			return nil
		}
	}
	tr.Fault = t0
	event("%s of the master %s at %s", fault, m, t0.Format("15:04:05.000000"))
	nm, at, ok := waitSoleMaster(ctx, smp, m, t0, redisWait)
	if !ok {
		tr.violate("no Redis failover: %s after the fault at %s no node but %s takes writes alone", redisWait, stamp(t0), m)
		return restore()
	}
	tr.NewHolder = nm
	tr.figure("failover_ms", msf(at.Sub(t0)))
	event("%s took writes alone from %s", nm, at.Format("15:04:05.000000"))
	// Wait for every client to write again (at most clientWait after the
	// fault: a stalled client's gap then runs to the end of the trial)
	// before the fault is undone: a crashed node's listener answering
	// again would end a stall it caused.
	poll(ctx, clientWait-time.Since(t0), func() bool { return cs.AckedSince(at) })
	if err := Sleep(ctx, after); err != nil {
		return err
	}
	if err := restore(); err != nil {
		return err
	}
	final, _, ok := waitSoleMaster(ctx, smp, "", time.Now(), redisWait)
	if !ok {
		final = nm
	}
	if d, vs := DualMasters(smp.SamplesSince(t0.Add(-time.Second)), samplePeriod); d > 0 {
		for _, v := range vs {
			tr.violate("S1/S3: %s", v)
		}
	}
	cli := c.nodeRedis(final)
	defer cli.Close()
	res, err := cs.Finish(func(key string) ([]string, error) {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return Strings(cli.Do(rctx, "LRANGE", key, "0", "-1"))
	}, t0)
	if err != nil {
		tr.violate("%s: the final master %s: %v", stamp(time.Now()), final, err)
		return nil
	}
	tr.Clients = res
	for _, n := range ClientNames {
		r := res[n]
		tr.note("%s: first ack %.0f ms after the fault, %d acknowledged, %d lost (%d sent in the last %s before the fault), errors %v",
			n, r.FirstAckMS, r.Acked, r.Lost, r.LostInFlight, inFlightWindow, r.Errors)
		event("%s: first ack %.0f ms after the fault", n, r.FirstAckMS)
		if fault == FaultMove && r.Lost > 0 {
			tr.violate("a planned move lost %d acknowledged writes of %s", r.Lost, n)
		}
	}
	return nil
}

// clientTargets are issue targets of redis-clients on a crash of the
// master's node: per client, first_ack_ms p99 <= 1.2 s (lan) and no
// stalled trial. The comparison with Sentinel is bench-redis's.
func clientTargets(r *Result) []Target {
	if r.Fault != FaultCrashMaster {
		return nil
	}
	var out []Target
	for _, n := range ClientNames {
		s, ok := r.Clients[n]
		if !ok {
			continue
		}
		if r.Profile == "lan" {
			out = append(out, Target{What: n + " first_ack_ms.p99 <= 1200", Limit: 1200, Measured: s.FirstAckMS.P99, Met: s.FirstAckMS.P99 <= 1200})
		}
		out = append(out, Target{What: n + " stalled_trials == 0", Limit: 0, Measured: float64(s.StalledTrials), Met: s.StalledTrials == 0},
			Target{What: n + " lost_before_fault == 0 (lost writes sent earlier than the crash's 5 ms in-flight window)", Limit: 0,
				Measured: float64(s.LostBeforeFault), Met: s.LostBeforeFault == 0})
	}
	return out
}
