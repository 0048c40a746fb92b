package scenario

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
)

// The Redis scenarios. Every node runs a real redis-server
// (a Daemon: it dies with its node in Crash and starts again, fenced, in
// Restore: empty, or with the RDB it wrote at its last full sync as a
// replica; stock Redis writes it even with save ""), the spec adds the redis-master role and a VIP that
// follows it, and each trial runs two observers (see rediswriter.go): a
// writer in the client namespace that RPUSHes a counter through the Redis
// VIP once per ms and records every acknowledged write, and a sampler that
// asks every node's Redis every 10 ms, from inside that node's namespace,
// whether it takes a write. After the trial the final master's list is
// read: an acknowledged value missing from it is a lost acknowledged
// write. Two Redis servers taking writes in one sample is a dual master.

const (
	// RedisRole is the redis-master role of the Redis scenarios.
	RedisRole    = "redis"
	redisVIPRole = "redis-vip"
	redisPort    = 6379
	sentinelPort = 26379
	// redisMasterName is the name Sentinel clients ask for.
	redisMasterName = "mymaster"
	// redisSettle is how long one node alone must take writes (and the
	// writer be acknowledged) for the Redis side to count as settled.
	redisSettle = 300 * time.Millisecond
	// redisWait bounds the waits for a master and for a replica.
	redisWait = 10 * time.Second
	// sentinelLossFigure is the fewest acknowledged writes Redis Sentinel
	// lost per trial when its master was cut from its peers while the
	// client still reached it (DESIGN.md §5); the target is 10x fewer.
	sentinelLossFigure = 14789
)

// RedisVIP is the address of the VIP that follows the Redis master.
var RedisVIP = netip.MustParsePrefix("198.18.0.201/24")

// RedisArgv is the command line of a lab node's redis-server: Redis's
// stock settings plus exactly what docs/redis.md ("redis.conf") tells
// users to set, nothing the lab tunes on its own. It listens on every
// address of the node's namespace (lab addresses only: its own and the
// Redis VIP when the node holds it) without a password (protected-mode
// off, the documented setup for a private network), starts fenced
// (min-replicas-to-write out of reach) and runs without persistence (a
// restarted Redis is empty, or holds the RDB its last full sync as a
// replica wrote: docs/redis.md).
func RedisArgv(dir string) []string {
	return []string{"redis-server", "--bind", "0.0.0.0", "--port", strconv.Itoa(redisPort), "--protected-mode", "no",
		"--dir", dir, "--save", "", "--appendonly", "no", "--min-replicas-to-write", "1073741824"}
}

// redisCluster adapts a cluster to the Redis scenarios.
func redisCluster(co *ClusterOptions, o Options) error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("the Redis scenarios need redis-server (apt-get install redis-server): %w", err)
	}
	extra := ""
	if o.RedisRole != "" {
		extra = ", " + o.RedisRole
	}
	co.Spec = fmt.Sprintf(`roles:
  - {name: %s, type: vip, address: %s}
`, VIPRole, VIP) + redisRoleLines(extra)
	nodes := max(co.Nodes, 3)
	if o.ListenerVIPs {
		for i := 1; i <= nodes; i++ {
			// Its own node first (it comes back there: preempt), then any.
			co.Spec += fmt.Sprintf("  - {name: sentinel-n%d, type: vip, address: %s, preempt: true, candidates: [{node: n%d, priority: 100}%s]}\n",
				i, ListenerVIP(i), i, otherCandidates(i, nodes))
		}
	}
	co.Daemons = append(co.Daemons, Daemon{Name: "redis", Argv: func(c *Cluster, n lab.Node) ([]string, error) {
		dir := filepath.Join(c.Dir(), "redis", n.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		return RedisArgv(dir), nil
	}})
	co.NodeExtra = func(c *Cluster, n lab.Node) string {
		if o.ListenerVIPs {
			// Every address of the namespace: its own and the listener
			// VIPs it holds; announced as its own listener VIP.
			i := slices.IndexFunc(c.Nodes(), func(x lab.Node) bool { return x.Name == n.Name }) + 1
			return fmt.Sprintf("redis:\n  address: %s\nsentinel:\n  addr: 0.0.0.0:%d\n  announce: %s\n",
				netip.AddrPortFrom(n.IP, redisPort), sentinelPort, netip.AddrPortFrom(ListenerVIP(i).Addr(), sentinelPort))
		}
		return fmt.Sprintf("redis:\n  address: %s\nsentinel:\n  addr: %s\n",
			netip.AddrPortFrom(n.IP, redisPort), netip.AddrPortFrom(n.IP, sentinelPort))
	}
	return nil
}

// redisRoleLines are the spec's lines of the redis-master role (extra
// appended to its fields) and of the VIP that follows it.
func redisRoleLines(extra string) string {
	return fmt.Sprintf(`  - {name: %s, type: redis-master, master_name: %s%s}
  - {name: %s, type: vip, address: %s, follow: %s}
`, RedisRole, redisMasterName, extra, redisVIPRole, RedisVIP, RedisRole)
}

// ListenerVIP is node ni's listener address with ListenerVIPs:
// 198.18.0.(220+i)/24.
func ListenerVIP(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(220 + i)}), 24)
}

// otherCandidates lists the nodes but ni as priority-0 candidates.
func otherCandidates(i, nodes int) string {
	var b strings.Builder
	for j := 1; j <= nodes; j++ {
		if j != i {
			fmt.Fprintf(&b, ", {node: n%d}", j)
		}
	}
	return b.String()
}

// redisAddr is the node's Redis address.
func (c *Cluster) redisAddr(node string) string {
	return netip.AddrPortFrom(c.Node(node).IP, redisPort).String()
}

// spawner returns the Spawner of a lab host.
func (c *Cluster) spawner(host string) Spawner {
	return func(fn func() error) error { return c.Lab.InNamespace(host, fn) }
}

// nodeRedis returns a client of the node's Redis, dialed from inside the
// node's namespace, with a timeout fit for reading a long list.
func (c *Cluster) nodeRedis(node string) *RedisConn {
	return NewRedisConn(c.redisAddr(node), c.spawner(node), 5*time.Second)
}

// ReplicaOf reports whether the Redis at cli is a replica of master
// (host:port) with its link up.
func ReplicaOf(ctx context.Context, cli *RedisConn, master string) bool {
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	v, err := cli.Do(ctx, "INFO", "replication")
	info, _ := v.(string)
	if err != nil {
		return false
	}
	host, port, _ := strings.Cut(master, ":")
	return strings.Contains(info, "role:slave\r\n") && strings.Contains(info, "master_host:"+host+"\r\n") &&
		strings.Contains(info, "master_port:"+port+"\r\n") && strings.Contains(info, "master_link_status:up\r\n")
}

// redisRig is one trial's observers.
type redisRig struct {
	c     *Cluster
	w     *RedisWriter
	s     *MasterSampler
	key   string
	start time.Time
	// master and epoch are the role's holder and epoch before the fault.
	master string
	epoch  uint64
}

// startRedisObservers starts the Redis observers of the client namespace:
// a sampler of which node's Redis takes writes, and a writer through the
// Redis VIP on key, a write every `every`.
func (c *Cluster) startRedisObservers(key string, every time.Duration) (*MasterSampler, *RedisWriter) {
	addrs := map[string]string{}
	for _, n := range c.nodes {
		addrs[n.Name] = c.redisAddr(n.Name)
	}
	s := StartMasterSampler(addrs, c.spawner, samplePeriod)
	vip := netip.AddrPortFrom(RedisVIP.Addr(), redisPort).String()
	return s, StartRedisWriter(DirectTarget{NewRedisConn(vip, c.spawner(client), redisTimeout)}, key, every)
}

// startRedisRig starts the writer (through the Redis VIP, from the client
// namespace) and the sampler, and waits until the role's holder alone
// takes writes and the writer is acknowledged.
func startRedisRig(ctx context.Context, c *Cluster, v View, tr *Trial) (*redisRig, error) {
	r := &redisRig{c: c, key: fmt.Sprintf("harbormaster:lab:writes:%d:%d", tr.N, time.Now().UnixNano()), start: time.Now()}
	r.s, r.w = c.startRedisObservers(r.key, time.Millisecond)
	role, err := c.role(ctx, v.Leader, RedisRole)
	if err != nil {
		r.close()
		return nil, err
	}
	r.master, r.epoch = role.Holder, role.Epoch
	if _, ok := r.waitMaster(ctx, "", time.Now(), redisWait); !ok {
		last, _ := r.s.Last()
		n, kinds := r.w.Errors()
		r.close()
		return nil, fmt.Errorf("redis: no single master taking the writer's writes within %s (the role's holder is %s; last sample: %v take writes; writer errors %d %v)",
			redisWait, r.master, last.Holders, n, kinds)
	}
	if last, _ := r.s.Last(); !slices.Equal(last.Holders, []string{r.master}) {
		r.close()
		return nil, fmt.Errorf("redis: %v take writes, the role's holder is %s", last.Holders, r.master)
	}
	tr.note("before the fault: Redis master %s at epoch %d (the registry VIP on %s), writer on key %s", r.master, r.epoch, tr.Holder, r.key)
	tr.Holder = r.master
	return r, nil
}

// close stops the observers (idempotent).
func (r *redisRig) close() {
	if r.w != nil {
		r.w.Stop()
		r.w = nil
	}
	if r.s != nil {
		r.s.Stop()
		r.s = nil
	}
}

// waitMaster waits until one node other than not alone took writes in
// every sample of the last redisSettle, the first of them at or after
// since, and the writer was acknowledged at or after that first sample.
// It returns the node and when it first took writes in that run.
func (r *redisRig) waitMaster(ctx context.Context, not string, since time.Time, timeout time.Duration) (string, bool) {
	var node string
	ok := poll(ctx, timeout, func() bool {
		ss := r.s.SamplesSince(since)
		if len(ss) == 0 {
			return false
		}
		last := ss[len(ss)-1]
		node = soleHolder(last)
		if node == "" || node == not {
			return false
		}
		i := len(ss) - 1
		for i > 0 && soleHolder(ss[i-1]) == node {
			i--
		}
		if last.At.Sub(ss[i].At) < redisSettle {
			return false
		}
		a, ok := r.w.LastAck()
		return ok && a.End.After(ss[i].At)
	})
	return node, ok
}

// stoppedAt returns the first sample at or after t after which node never
// took a write again (up to to), and whether it took any write before
// that in [t, to]; ok is false when it still took writes at to.
func (r *redisRig) stoppedAt(node string, t, to time.Time) (at time.Time, ok bool) {
	ss := between(r.s.SamplesSince(t), t, to)
	at = t
	for i, s := range ss {
		if holds(s, node) {
			if i+1 == len(ss) {
				return time.Time{}, false
			}
			at = ss[i+1].At
		}
	}
	return at, true
}

// waitReplica waits until node's Redis replicates from master's with its
// link up; it returns when it saw that.
func (r *redisRig) waitReplica(ctx context.Context, node, master string, timeout time.Duration) (time.Time, bool) {
	cli := r.c.nodeRedis(node)
	defer cli.Close()
	var at time.Time
	ok := pollEvery(ctx, 20*time.Millisecond, timeout, func() bool {
		at = time.Now()
		return ReplicaOf(ctx, cli, r.c.redisAddr(master))
	})
	return at, ok
}

// finishSettled waits (redisWait) for the master the cluster settles on
// after the fault, falls back to elected (the one seen elected) and
// finishes the trial with it.
func (r *redisRig) finishSettled(ctx context.Context, tr *Trial, fault time.Time, elected string) WriteReport {
	final, _ := r.waitMaster(ctx, "", fault, redisWait)
	if final == "" {
		final = elected
	}
	return r.finish(ctx, tr, fault, final)
}

// finish stops the observers, reads the final master's list and records
// the trial's Redis figures: lost_acked_writes (and the trial's field),
// outage_ms (the writer's longest gap since the fault), failover_ms,
// dual_master_ms (a violation when not 0), and checks the final master's
// epoch (S2). final is the node that took writes last.
func (r *redisRig) finish(ctx context.Context, tr *Trial, fault time.Time, final string) WriteReport {
	end := time.Now()
	r.w.Stop()
	acks := r.w.Acks()
	nerr, kinds := r.w.Errors()
	r.w = nil
	samples := r.s.SamplesSince(r.start)
	r.s.Stop()
	r.s = nil
	dual, vs := DualMasters(samples, samplePeriod)
	d := msf(dual)
	tr.DualMasterMS = &d
	for _, v := range vs {
		tr.violate("S1/S3: %s", v)
	}
	tr.note("writer: %d acknowledged, %d failed %v", len(acks), nerr, kinds)
	cli := r.c.nodeRedis(final)
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := Strings(cli.Do(rctx, "LRANGE", r.key, "0", "-1"))
	if err != nil {
		tr.violate("%s: cannot read the writes from the final master %s: %v", stamp(time.Now()), final, err)
		return WriteReport{}
	}
	rep := AnalyzeWrites(acks, list, fault, end)
	lost := len(rep.Lost)
	tr.LostAckedWrites = &lost
	tr.figure("lost_acked_writes", float64(lost))
	tr.figure("acked_writes", float64(rep.Acked))
	tr.OutageMS = msf(rep.Outage)
	tr.figure("failover_ms", msf(rep.Failover))
	if lost > 0 {
		first, last := rep.Lost[0], rep.Lost[lost-1]
		tr.note("%d acknowledged writes are not on the final master %s: values %d..%d, acknowledged from %s to %s (fault at %s)",
			lost, final, first.Val, last.Val, stamp(first.End), stamp(last.End), stamp(fault))
	}
	tr.note("writer outage %s from %s to %s", ms(rep.Outage), stamp(rep.OutageFrom), stamp(rep.OutageTo))
	// S2: the final master's epoch key carries the role's epoch.
	if role, err := r.c.role(ctx, final, RedisRole); err == nil {
		if role.Holder != final {
			tr.violate("%s took writes last, the state says the Redis master is %s", final, role.Holder)
		}
		if final != r.master && role.Epoch <= r.epoch {
			tr.violate("S2: the Redis master moved from %s to %s without a greater epoch (%d, was %d)", r.master, final, role.Epoch, r.epoch)
		}
		v, err := cli.Do(rctx, "GET", "harbormaster:epoch:"+RedisRole)
		if s, _ := v.(string); err != nil || s != strconv.FormatUint(role.Epoch, 10) {
			tr.violate("S2: the final master %s has epoch key %v (%v), the role's epoch is %d", final, v, err, role.Epoch)
		}
	} else {
		tr.violate("%s: the Redis role as %s sees it: %v", stamp(time.Now()), final, err)
	}
	return rep
}

// redisFailover waits for a new master other than old after a fault at t0
// and records it; false (with a violation) if none came.
func (r *redisRig) redisFailover(ctx context.Context, tr *Trial, old string, t0 time.Time) (string, bool) {
	nm, ok := r.waitMaster(ctx, old, t0, redisWait)
	if !ok {
		last, _ := r.s.Last()
		tr.violate("no Redis failover: %s after the fault at %s no node but %s takes writes alone (last sample: %v)",
			redisWait, stamp(t0), old, last.Holders)
		return "", false
	}
	tr.NewHolder = nm
	return nm, true
}

// checkRejoin waits until old replicates from the new master nm; figure
// name (from t, in ms); a violation if it does not within redisWait.
func (r *redisRig) checkRejoin(ctx context.Context, tr *Trial, old, nm string, t time.Time, name string) {
	at, ok := r.waitReplica(ctx, old, nm, redisWait)
	if !ok {
		tr.violate("S7: %s's Redis did not become a replica of the new master %s within %s of %s", old, nm, redisWait, stamp(t))
		return
	}
	tr.figure(name, msf(at.Sub(t)))
}

func redisCrashMaster(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	r, err := startRedisRig(ctx, c, v, tr)
	if err != nil {
		return err
	}
	defer r.close()
	m := r.master
	t0, err := c.Crash(m)
	tr.Fault = t0
	if err != nil {
		return err
	}
	return r.failoverAndRestore(ctx, c, tr, m, t0)
}

// failoverAndRestore follows the crash of master m's node at t0: a new
// master elected, the node restored after a while, the old master back as
// a replica (rejoin_ms), every acknowledged write on the final master.
func (r *redisRig) failoverAndRestore(ctx context.Context, c *Cluster, tr *Trial, m string, t0 time.Time) error {
	nm, ok := r.redisFailover(ctx, tr, m, t0)
	if !ok {
		return c.Restore(m)
	}
	if err := r.restoreRejoin(ctx, c, tr, m, nm); err != nil {
		return err
	}
	r.finishSettled(ctx, tr, t0, nm)
	return nil
}

// restoreRejoin restores m's node after a while and checks that its Redis
// becomes a replica of the new master nm (rejoin_ms).
func (r *redisRig) restoreRejoin(ctx context.Context, c *Cluster, tr *Trial, m, nm string) error {
	if err := Sleep(ctx, after); err != nil {
		return err
	}
	tRestore := time.Now()
	if err := c.Restore(m); err != nil {
		return err
	}
	r.checkRejoin(ctx, tr, m, nm, tRestore, "rejoin_ms")
	return nil
}

// redisPartitionMaster cuts the master's node from its peers; the client
// still reaches it. Its agent must fence its Redis before its lease ends
// (old_master_fenced_ms, from the cut); a new master is elected; after the
// heal the old master becomes a replica, and the writes it acknowledged
// between the cut and its fence are lost: reported, and compared with
// Sentinel's figure (targets).
func redisPartitionMaster(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	r, err := startRedisRig(ctx, c, v, tr)
	if err != nil {
		return err
	}
	defer r.close()
	m := r.master
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Lab.Partition([]string{m}, c.others(m)); err != nil {
		return err
	}
	tc := time.Now()
	tr.figure("cut_install_ms", msf(tc.Sub(t0)))
	nm, ok := r.redisFailover(ctx, tr, m, t0)
	if err := Sleep(ctx, after); err != nil {
		return err
	}
	th := time.Now()
	bound := c.Timing.Lease + samplePeriod
	if at, stopped := r.stoppedAt(m, tc, th); !stopped {
		tr.violate("S3/S6: the cut-off master %s still took writes at the heal %s after the cut at %s", m, ms(th.Sub(tc)), stamp(tc))
	} else {
		d := at.Sub(tc)
		tr.figure("old_master_fenced_ms", msf(d))
		if d > bound {
			tr.violate("S3: the cut-off master %s took writes until %s, %s after the cut at %s, beyond its lease (%s + %s sampling)",
				m, stamp(at), ms(d), stamp(tc), c.Timing.Lease, samplePeriod)
		}
	}
	if err := c.Lab.Heal(); err != nil {
		return err
	}
	if !ok {
		return nil
	}
	r.checkRejoin(ctx, tr, m, nm, th, "rejoin_after_heal_ms")
	rep := r.finish(ctx, tr, t0, nm)
	// Writes acknowledged while the cut was being installed (t0 to tc)
	// or after it may not have reached a replica: they are the divergent
	// writes. One acknowledged before the fault (less a few ms for the
	// replication stream, sent with the reply but asynchronously) had a
	// healthy link and must be kept.
	const replSlack = 5 * time.Millisecond
	divergent, early := 0, 0
	for _, a := range rep.Lost {
		switch {
		case !a.End.Before(t0):
			divergent++
		case a.End.Before(t0.Add(-replSlack)):
			early++
			if early == 1 {
				tr.violate("write %d acknowledged at %s, before the cut began at %s, is lost", a.Val, stamp(a.End), stamp(t0))
			}
		}
	}
	if early > 1 {
		tr.violate("%d writes acknowledged before the cut are lost", early)
	}
	tr.figure("divergent_writes", float64(divergent))
	return nil
}

// redisKillAgent kills the master's agent only: its Redis runs on and the
// writer still reaches it. Nothing fences that Redis from its own node;
// the new master's agent must fence and demote it remotely before it
// promotes its own (no dual master), and it must end up a replica.
func redisKillAgent(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	r, err := startRedisRig(ctx, c, v, tr)
	if err != nil {
		return err
	}
	defer r.close()
	m := r.master
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Signal(m, syscall.SIGKILL); err != nil {
		return err
	}
	nm, ok := r.redisFailover(ctx, tr, m, t0)
	if ok {
		if at, stopped := r.stoppedAt(m, t0, time.Now()); stopped {
			tr.figure("old_master_fenced_ms", msf(at.Sub(t0)))
		}
		// The agent of m is dead: only the new master's agent can have
		// made m's Redis its replica.
		r.checkRejoin(ctx, tr, m, nm, t0, "old_master_demoted_ms")
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.WaitAgentExit(wctx, m); err != nil {
		return fmt.Errorf("agent on %s did not exit after SIGKILL: %w", m, err)
	}
	if err := c.StartAgent(m); err != nil {
		return err
	}
	if !ok {
		return nil
	}
	if err := Sleep(ctx, after); err != nil {
		return err
	}
	r.finishSettled(ctx, tr, t0, nm)
	return nil
}

// redisPauseAgent freezes the master's agent (SIGSTOP) while the other
// nodes cannot reach its Redis (TCP to its Redis port from them dropped;
// the writer still reaches it through the VIP until the VIP goes dark):
// the new master's agent cannot demote it remotely (its connect is lost,
// as under packet loss: chaos seed 550006), and the frozen agent cannot
// fence it. Only the Redis's guard, a process of its own, can: the old
// master must stop taking writes by its lease's end (old_master_fenced_ms,
// from the freeze), before another Redis takes writes (no dual master).
// Resumed and reachable again, it becomes a replica of the new master.
func redisPauseAgent(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	const pause = 3 * time.Second
	r, err := startRedisRig(ctx, c, v, tr)
	if err != nil {
		return err
	}
	defer r.close()
	m := r.master
	if err := c.Lab.BlockTCP(m, redisPort, c.others(m)...); err != nil {
		return err
	}
	healed := false
	defer func() {
		if !healed {
			_ = c.Lab.Heal()
		}
	}()
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Signal(m, syscall.SIGSTOP); err != nil {
		return err
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = c.Signal(m, syscall.SIGCONT)
		}
	}()
	nm, ok := r.redisFailover(ctx, tr, m, t0)
	if err := Sleep(ctx, time.Until(t0.Add(pause))); err != nil {
		return err
	}
	tc := time.Now()
	bound := c.Timing.Lease + samplePeriod
	if at, stopped := r.stoppedAt(m, t0, tc); !stopped {
		tr.violate("S1/S3: the master %s, its agent frozen since %s, still took writes %s later", m, stamp(t0), ms(tc.Sub(t0)))
	} else {
		d := at.Sub(t0)
		tr.figure("old_master_fenced_ms", msf(d))
		if d > bound {
			tr.violate("S3: the master %s, its agent frozen, took writes until %s, %s after the freeze at %s, beyond its lease (%s + %s sampling)",
				m, stamp(at), ms(d), stamp(t0), c.Timing.Lease, samplePeriod)
		}
	}
	if err := c.Signal(m, syscall.SIGCONT); err != nil {
		return err
	}
	resumed = true
	if err := c.Lab.Heal(); err != nil {
		return err
	}
	healed = true
	if !ok {
		return nil
	}
	r.checkRejoin(ctx, tr, m, nm, tc, "rejoin_after_resume_ms")
	if err := Sleep(ctx, after); err != nil {
		return err
	}
	r.finishSettled(ctx, tr, t0, nm)
	return nil
}

// redisMove moves the role with `harbormaster move` under the write load:
// no acknowledged write may be lost.
func redisMove(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	r, err := startRedisRig(ctx, c, v, tr)
	if err != nil {
		return err
	}
	defer r.close()
	m := r.master
	var target string
	for _, n := range c.others(m) {
		if target == "" || n != v.Leader {
			target = n
		}
	}
	tr.note("move %s from %s to %s (leader %s)", RedisRole, m, target, v.Leader)
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Move(ctx, v.Leader, RedisRole, target); err != nil {
		tr.violate("%s: move %s to %s: %v", stamp(t0), RedisRole, target, err)
		return nil
	}
	tr.figure("request_ms", msf(time.Since(t0)))
	nm, ok := r.redisFailover(ctx, tr, m, t0)
	if !ok {
		return nil
	}
	if nm != target {
		tr.violate("%s: moved to %s, not to %s", stamp(time.Now()), nm, target)
	}
	r.checkRejoin(ctx, tr, m, nm, t0, "old_master_replica_ms")
	if err := Sleep(ctx, after); err != nil {
		return err
	}
	rep := r.finish(ctx, tr, t0, nm)
	if n := len(rep.Lost); n > 0 {
		tr.violate("a planned move lost %d acknowledged writes", n)
	}
	return nil
}

// redisRestartAll stops all three agents (SIGTERM) and starts them again
// while Redis keeps running, then restarts every Redis server once, one
// at a time, replicas first (SIGTERM: Redis 7 waits for its replicas
// before it exits; with no persistence each comes back fenced, empty or
// with the RDB of its last full sync as a replica).
// A master is elected again by offset each time, never two, and no
// acknowledged write is lost: an emptied Redis must never be promoted over
// replicas that have the data.
func redisRestartAll(ctx context.Context, c *Cluster, v View, tr *Trial, o Options) error {
	r, err := startRedisRig(ctx, c, v, tr)
	if err != nil {
		return err
	}
	defer r.close()
	t0 := time.Now()
	tr.Fault = t0
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Signal(n.Name, syscall.SIGTERM); err != nil {
				errs[i] = err
				return
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := c.WaitAgentExit(wctx, n.Name); err != nil {
				tr.violate("%s: the agent on %s did not exit within 10 s of SIGTERM", stamp(time.Now()), n.Name)
				_ = c.Signal(n.Name, syscall.SIGKILL)
				_ = c.WaitAgentExit(ctx, n.Name)
			}
		}()
	}
	wg.Wait()
	tr.figure("agents_stopped_ms", msf(time.Since(t0)))
	for i, n := range c.nodes {
		if errs[i] != nil {
			return errs[i]
		}
		if err := c.StartAgent(n.Name); err != nil {
			return err
		}
	}
	m1, ok := r.waitMaster(ctx, "", t0, 30*time.Second)
	if !ok {
		tr.violate("no Redis master took writes within 30 s of restarting every agent at %s", stamp(t0))
		return nil
	}
	if a, ok := r.w.LastAck(); ok {
		tr.figure("agents_restart_ms", msf(a.End.Sub(t0)))
	}
	tr.note("after the agents' restart the master is %s", m1)
	// Rolling restart of the Redis servers, the master last.
	order := append(c.others(m1), m1)
	master := m1
	for _, n := range order {
		tn := time.Now()
		if err := c.restartDaemon(ctx, n, "redis"); err != nil {
			return err
		}
		if n == master {
			// Whoever takes writes next must have the data: re-promoting
			// the emptied Redis shows as lost writes below.
			nm, ok := r.waitMaster(ctx, "", time.Now(), redisWait)
			if !ok {
				tr.violate("no master took writes within %s of restarting the master's (%s) Redis at %s", redisWait, n, stamp(tn))
				return nil
			}
			tr.figure("master_redis_restart_ms", msf(time.Since(tn)))
			tr.note("after %s's Redis restarted the master is %s", n, nm)
			master = nm
			if nm == n {
				tr.figure("emptied_master_repromoted", 1)
				tr.violate("S7: %s's Redis, restarted empty at %s, was promoted again over replicas that had the data", n, stamp(tn))
				break
			}
		}
		if _, ok := r.waitReplica(ctx, n, master, redisWait); !ok {
			tr.violate("S7: %s's restarted Redis did not become a replica of %s within %s", n, master, redisWait)
		}
	}
	tr.NewHolder = master
	if err := Sleep(ctx, after); err != nil {
		return err
	}
	rep := r.finish(ctx, tr, t0, master)
	if n := len(rep.Lost); n > 0 {
		tr.violate("S7: restarts of the agents and of the Redis servers lost %d acknowledged writes", n)
	}
	return nil
}

// restartDaemon stops a node's daemon (SIGTERM, SIGKILL after 15 s) and
// starts it again.
func (c *Cluster) restartDaemon(ctx context.Context, node, name string) error {
	p := c.Daemon(node, name)
	if p == nil {
		return fmt.Errorf("no %s on %s", name, node)
	}
	p.stopping.Store(true)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	case <-ctx.Done():
		return ctx.Err()
	}
	return c.startNamedDaemon(node, name)
}

// redisTargets are the §5 targets of a Redis scenario: failover_ms p99
// per profile (crash only), lost writes.
func redisTargets(failover map[string]float64, lostMax float64, lostWhy string) func(r *Result) []Target {
	return func(r *Result) []Target {
		var out []Target
		if l, ok := failover[r.Profile]; ok {
			p := r.Figures["failover_ms"].P99
			out = append(out, Target{What: fmt.Sprintf("failover_ms.p99 <= %.0f", l), Limit: l, Measured: p, Met: p <= l})
		}
		m := r.Figures["lost_acked_writes"].Max
		out = append(out, Target{What: fmt.Sprintf("lost_acked_writes max <= %.0f (%s)", lostMax, lostWhy), Limit: lostMax, Measured: m, Met: m <= lostMax})
		return out
	}
}
