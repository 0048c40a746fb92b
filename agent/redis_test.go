package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/chaos/labtest"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/tlsid"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// startRedis runs a redis-server on a free loopback port for the test.
func startRedis(t *testing.T) string {
	t.Helper()
	labtest.RequireBin(t, "redis-server")
	return runRedisOn(t, labtest.FreePort(t))
}

// runRedisOn starts a redis-server (stock replication settings, no
// persistence, started fenced as docs/redis.md asks) on port and waits
// until it accepts.
func runRedisOn(t *testing.T, port int) string {
	t.Helper()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--min-replicas-to-write", "1073741824")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not start", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitRedisMaster waits until the redis role has a holder whose Redis is
// master and every other node's Redis replicates from it with its link
// up, and returns the holder and the epoch.
func waitRedisMaster(c *cluster) (master string, epoch uint64) {
	c.t.Helper()
	c.waitFor("a redis master with linked replicas", 10*time.Second, func() bool {
		st := c.nodes[0].agent.State()
		a := st.Assignment("redis")
		master, epoch = a.Holder, a.Epoch
		if master == "" || st.Redis[master].Role != fsm.RedisMaster {
			return false
		}
		for _, id := range st.NodeIDs() {
			r := st.Redis[id]
			if id != master && (r.Role != fsm.RedisReplica || !r.LinkUp || r.Master != st.Nodes[master].Redis) {
				return false
			}
		}
		return true
	})
	return master, epoch
}

// canWrite reports whether a SET on addr succeeds now.
func canWrite(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond, MaxRetries: -1, Protocol: 2})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	return c.Set(ctx, "probe", time.Now().UnixNano(), 0).Err()
}

func TestRedisMasterElectionFailoverAndSentinel(t *testing.T) {
	addrs := []string{startRedis(t), startRedis(t), startRedis(t)}
	sentinels := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: redis, type: redis-master, master_name: mymaster}\n",
		redis: addrs, sentinel: sentinels})
	byRedis := map[string]string{addrs[0]: "n1", addrs[1]: "n2", addrs[2]: "n3"}

	// A master is elected, the others replicate from it, and only the
	// master takes writes.
	master, epoch := waitRedisMaster(c)
	masterAddr := c.node(master).cfg.Redis.Address
	c.waitFor("writes accepted by the master", 5*time.Second, func() bool { return canWrite(masterAddr) == nil })
	for a, n := range byRedis {
		if n != master {
			if err := canWrite(a); err == nil {
				t.Fatalf("replica %s (%s) accepted a write", n, a)
			}
		}
	}
	// The epoch is visible to clients.
	rc := redis.NewClient(&redis.Options{Addr: masterAddr, Protocol: 2})
	defer rc.Close()
	if got, err := rc.Get(context.Background(), "harbormaster:epoch:redis").Uint64(); err != nil || got != epoch {
		t.Fatalf("epoch key on the master: %d, %v; want %d", got, err, epoch)
	}

	// A client that discovers the master through the Sentinel-compatible
	// listener of another node.
	via := sentinels[0]
	if master == "n1" {
		via = sentinels[1]
	}
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "mymaster", SentinelAddrs: []string{via}, Protocol: 2,
		DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	defer fc.Close()
	if err := fc.Set(context.Background(), "via-sentinel", 1, 0).Err(); err != nil {
		t.Fatalf("write through the sentinel-discovered master: %v", err)
	}

	// Cut the master's agent off. Its Redis stays reachable on loopback
	// (its agent could be dead): it stops taking writes before another
	// Redis is promoted, and follows the new master.
	c.isolate(master)
	var next string
	c.waitFor("a new redis master", 10*time.Second, func() bool {
		a := c.node(c.others(master)[0]).agent.State().Assignment("redis")
		next = a.Holder
		return next != "" && next != master && a.Epoch > epoch
	})
	nextAddr := c.node(next).cfg.Redis.Address
	c.waitFor("writes on the new master", 5*time.Second, func() bool { return canWrite(nextAddr) == nil })
	if err := canWrite(masterAddr); err == nil {
		t.Fatalf("the old master %s still accepts writes after %s was promoted", master, next)
	} else if !strings.Contains(err.Error(), "NOREPLICAS") && !strings.Contains(err.Error(), "READONLY") {
		t.Fatalf("old master's write error %v, want NOREPLICAS or READONLY", err)
	}
	// The sentinel client follows the switch.
	c.waitFor("the sentinel client writes to the new master", 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := fc.Set(ctx, "after-switch", 1, 0).Err(); err != nil {
			return false
		}
		v, err := redis.NewClient(&redis.Options{Addr: nextAddr, Protocol: 2}).Get(ctx, "after-switch").Result()
		return err == nil && v == "1"
	})
	c.heal()
	// The old master rejoins as a replica of the new one.
	c.waitFor("the old master replicates from the new one", 10*time.Second, func() bool {
		r := c.node(next).agent.State().Redis[master]
		return r.Role == fsm.RedisReplica && r.Master == nextAddr && r.LinkUp
	})
	if err := canWrite(masterAddr); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("old master after heal: write error %v, want a refusal", err)
	}
}

// counterWriter pushes an increasing counter as fast as it can to
// whichever node is the redis master per the replicated state, and keeps
// every acknowledged value; stop ends it and returns them. ackedBy counts
// the values a node acknowledged so far.
func counterWriter(c *cluster, addrOf func(string) string) (stop func() []int64, ackedBy func(node string) int) {
	quit := make(chan struct{})
	done := make(chan []int64)
	var mu sync.Mutex
	by := map[string]int{}
	go func() {
		var acked []int64
		clients := map[string]*redis.Client{}
		defer func() {
			for _, cl := range clients {
				cl.Close()
			}
		}()
		for i := int64(1); ; i++ {
			select {
			case <-quit:
				done <- acked
				return
			default:
			}
			h := c.nodes[2].agent.State().Assignment("redis").Holder
			if h == "" {
				i--
				time.Sleep(time.Millisecond)
				continue
			}
			cl, ok := clients[h]
			if !ok {
				cl = redis.NewClient(&redis.Options{Addr: addrOf(h), Protocol: 2, MaxRetries: -1, ReadTimeout: 300 * time.Millisecond})
				clients[h] = cl
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			err := cl.RPush(ctx, "counter", i).Err()
			cancel()
			if err != nil {
				i--
				time.Sleep(time.Millisecond)
				continue
			}
			acked = append(acked, i)
			mu.Lock()
			by[h]++
			mu.Unlock()
		}
	}()
	stop = func() []int64 { close(quit); return <-done }
	ackedBy = func(node string) int {
		mu.Lock()
		defer mu.Unlock()
		return by[node]
	}
	return stop, ackedBy
}

// TestRedisPlannedSwitchoverLosesNoAcknowledgedWrite: a move (with a
// target) and a drain (none) of the master under a write load; every
// acknowledged value is on the new master.
func TestRedisPlannedSwitchoverLosesNoAcknowledgedWrite(t *testing.T) {
	for _, how := range []string{"move", "drain"} {
		t.Run(how, func(t *testing.T) {
			addrs := []string{startRedis(t), startRedis(t), startRedis(t)}
			c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: redis, type: redis-master}\n", redis: addrs})
			master, _ := waitRedisMaster(c)
			waitAllAlive(c)
			addrOf := func(n string) string { return c.node(n).cfg.Redis.Address }
			stop, ackedBy := counterWriter(c, addrOf)
			c.waitFor("20 writes acknowledged by the master", 10*time.Second, func() bool { return ackedBy(master) >= 20 })
			var err error
			if how == "move" {
				_, err = c.admin(c.nodes[0]).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "redis", Node: c.others(master)[0], Actor: "test"})
			} else {
				_, err = c.admin(c.nodes[0]).Drain(ctxT(t, 5*time.Second), &hmv1.DrainRequest{Node: master, Drained: true, Actor: "test"})
			}
			if err != nil {
				t.Fatalf("%s: %v", how, err)
			}
			var next string
			c.waitFor("another node is master and takes writes", 10*time.Second, func() bool {
				next = c.nodes[0].agent.State().Assignment("redis").Holder
				return next != "" && next != master && canWrite(addrOf(next)) == nil
			})
			c.waitFor("20 writes acknowledged by the new master", 10*time.Second, func() bool { return ackedBy(next) >= 20 })
			acked := stop()
			if len(acked) < 10 {
				t.Fatalf("only %d writes acknowledged", len(acked))
			}
			cl := redis.NewClient(&redis.Options{Addr: addrOf(next), Protocol: 2})
			defer cl.Close()
			vals, err := cl.LRange(context.Background(), "counter", 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, v := range vals {
				have[v] = true
			}
			var lost []int64
			for _, v := range acked {
				if !have[strconv.FormatInt(v, 10)] {
					lost = append(lost, v)
				}
			}
			if len(lost) > 0 {
				t.Fatalf("%s lost %d of %d acknowledged writes: %v", how, len(lost), len(acked), lost[:min(len(lost), 10)])
			}
			t.Logf("%s from %s to %s: %d acknowledged writes, none lost", how, master, next, len(acked))
		})
	}
}

func TestRedisMasterDownMovesTheRole(t *testing.T) {
	addrs := []string{startRedis(t), startRedis(t), startRedis(t)}
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: redis, type: redis-master}\n", redis: addrs})
	master, epoch := waitRedisMaster(c)
	// The master's Redis dies; its node and agent stay up. The agent
	// reports it unreadable, the coordinator asks it to release, and a
	// replica is promoted.
	rc := redis.NewClient(&redis.Options{Addr: c.node(master).cfg.Redis.Address, Protocol: 2})
	_ = rc.Shutdown(context.Background()).Err() // SHUTDOWN closes the connection: no reply
	rc.Close()
	c.waitFor("a replica promoted", 10*time.Second, func() bool {
		a := c.nodes[0].agent.State().Assignment("redis")
		return a.Holder != "" && a.Holder != master && a.Epoch > epoch && canWrite(c.node(a.Holder).cfg.Redis.Address) == nil
	})
}

// TestRedisRestartedEmptyUnderTheRoleIsNotPromotedAgain: the master's Redis
// restarts empty on its port. Whether the agent sees it down (an error
// report) or only its new run id (a restart faster than a poll), the
// empty Redis must not be promoted again: a replica with the data is.
func TestRedisRestartedEmptyUnderTheRoleIsNotPromotedAgain(t *testing.T) {
	addrs := []string{startRedis(t), startRedis(t), startRedis(t)}
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: redis, type: redis-master}\n", redis: addrs})
	master, _ := waitRedisMaster(c)
	masterAddr := c.node(master).cfg.Redis.Address
	c.waitFor("writes on the master", 5*time.Second, func() bool { return canWrite(masterAddr) == nil })
	rc := redis.NewClient(&redis.Options{Addr: masterAddr, Protocol: 2})
	for i := 0; i < 100; i++ {
		if err := rc.RPush(context.Background(), "data", i).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Let the replicas have it, then restart the master's Redis empty on
	// the same port, faster than the agent calls it down.
	c.waitFor("replicas caught up", 5*time.Second, func() bool {
		for _, a := range addrs {
			if a == masterAddr {
				continue
			}
			n, err := redis.NewClient(&redis.Options{Addr: a, Protocol: 2}).LLen(context.Background(), "data").Result()
			if err != nil || n != 100 {
				return false
			}
		}
		return true
	})
	_ = rc.Shutdown(context.Background()).Err()
	rc.Close()
	_, port, _ := net.SplitHostPort(masterAddr)
	p, _ := strconv.Atoi(port)
	runRedisOn(t, p)
	// The restarted, empty Redis is not promoted again: a replica with the
	// data becomes master, and the data survives.
	c.waitFor("a replica promoted", 10*time.Second, func() bool {
		a := c.nodes[0].agent.State().Assignment("redis")
		return a.Holder != "" && a.Holder != master && canWrite(c.node(a.Holder).cfg.Redis.Address) == nil
	})
	next := c.nodes[0].agent.State().Assignment("redis").Holder
	n, err := redis.NewClient(&redis.Options{Addr: c.node(next).cfg.Redis.Address, Protocol: 2}).LLen(context.Background(), "data").Result()
	if err != nil || n != 100 {
		t.Fatalf("data on the new master %s: %d items, %v; want 100", next, n, err)
	}
}

// TestRedisUnsyncedReplicaIsNotPromoted (S10): the replicas restart empty
// and their full sync is slowed (rdb-key-save-delay on the master) so
// that neither has synced when the master's node is lost (agent cut off,
// Redis gone). The role stays vacant under unsynced_promotion: never, with
// a redis-unsynced event and explain saying why; a move without
// --accept-data-loss is refused; with it (admin), the replica is promoted
// and a redis-data-loss event records the loss.
func TestRedisUnsyncedReplicaIsNotPromoted(t *testing.T) {
	addrs := []string{startRedis(t), startRedis(t), startRedis(t)}
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: redis, type: redis-master}\n", redis: addrs})
	master, epoch := waitRedisMaster(c)
	masterAddr := c.node(master).cfg.Redis.Address
	c.waitFor("writes on the master", 5*time.Second, func() bool { return canWrite(masterAddr) == nil })
	// The master's agent reports its replicas, mapped to members, in sync.
	c.waitFor("both replicas reported in sync by the master", 5*time.Second, func() bool {
		rs := c.nodes[0].agent.State().Redis[master].Replicas
		return len(rs) == 2 && rs[0].InSync && rs[1].InSync && rs[0].Node != "" && rs[1].Node != "" && rs[0].Node != rs[1].Node
	})
	if _, body := get(c.node(master), "/metrics"); strings.Count(body, "harbormaster_redis_replica_in_sync{node=\""+master+"\",replica=") != 2 {
		t.Errorf("master's metrics lack redis_replica_in_sync for its two replicas:\n%s", grepLines(body, "redis_"))
	}
	if set := c.nodes[0].agent.State().Redis[master].Settings; set == nil || set.SyncDelay != 5 || set.Save != "" {
		t.Errorf("master's reported settings %+v; want those of its start (stock sync delay 5, no save)", set)
	}
	mc := redis.NewClient(&redis.Options{Addr: masterAddr, Protocol: 2})
	defer mc.Close()
	ctx := context.Background()
	for i := range 20 {
		if err := mc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Every full sync now takes 20 s at least.
	if err := mc.ConfigSet(ctx, "rdb-key-save-delay", "1000000").Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range c.others(master) {
		a := c.node(id).cfg.Redis.Address
		rc := redis.NewClient(&redis.Options{Addr: a, Protocol: 2})
		_ = rc.Shutdown(ctx).Err()
		rc.Close()
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		runRedisOn(t, p)
	}
	c.waitFor("both replicas reported outside the master's history", 10*time.Second, func() bool {
		st := c.nodes[0].agent.State()
		h := st.Assignment("redis").History
		for _, id := range c.others(master) {
			if ok, _ := st.RedisSynced(h, id); ok || st.Redis[id].Role != fsm.RedisReplica {
				return false
			}
		}
		return h != nil && h.Node == master
	})
	c.isolate(master)
	_ = mc.Shutdown(ctx).Err()
	other := c.node(c.others(master)[0])
	c.waitFor("a redis-unsynced event", 10*time.Second, func() bool {
		for _, e := range other.agent.State().Events {
			if e.Kind == fsm.EventRedisUnsynced && e.Role == "redis" {
				return true
			}
		}
		return false
	})
	time.Sleep(2 * time.Second) // several leases: still nobody promoted
	a := other.agent.State().Assignment("redis")
	if a.Epoch != epoch || a.Holder != master || a.Unsynced == "" {
		t.Fatalf("role after the loss: %+v; want it vacant at epoch %d on the lost %s", a, epoch, master)
	}
	for _, id := range c.others(master) {
		if err := canWrite(c.node(id).cfg.Redis.Address); err == nil {
			t.Fatalf("%s's unsynced Redis takes writes", id)
		}
	}
	ex, err := c.admin(other).Explain(ctxT(t, 5*time.Second), &hmv1.ExplainRequest{Role: "redis"})
	if err != nil || !strings.Contains(ex.Decision, "stays vacant") {
		t.Fatalf("explain: %v, %v; want stays vacant", ex, err)
	}
	roles, err := c.admin(other).ListRoles(ctxT(t, 5*time.Second), &hmv1.ListRolesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles.Roles {
		if r.Name != "redis" {
			continue
		}
		if r.Unsynced == "" || r.RedisHistory.GetNode() != master || len(r.Redis) != 3 {
			t.Fatalf("roles: %v; want the vacancy, %s's history and three Redis", r, master)
		}
		for _, n := range r.Redis {
			if n.Node != master && n.Synced {
				t.Errorf("roles: %s reported synced with the lost master", n.Node)
			}
		}
	}
	if _, body := get(other, "/metrics"); !strings.Contains(body, "harbormaster_redis_role_vacant{node=\""+other.id+"\",role=\"redis\"} 1") {
		t.Errorf("metrics lack redis_role_vacant 1:\n%s", grepLines(body, "redis_"))
	}
	target := c.others(master)[0]
	_, err = c.admin(other).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "redis", Node: target})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--accept-data-loss") {
		t.Fatalf("move without --accept-data-loss: %v, want FailedPrecondition naming the flag", err)
	}
	_, err = hmv1.NewAdminClient(c.connAs(other, string(tlsid.RoleOperate))).Move(ctxT(t, 5*time.Second),
		&hmv1.MoveRequest{Role: "redis", Node: target, AcceptDataLoss: true})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("move --accept-data-loss by an operate operator: %v, want PermissionDenied", err)
	}
	if _, err := c.admin(other).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "redis", Node: target, AcceptDataLoss: true}); err != nil {
		t.Fatalf("move --accept-data-loss: %v", err)
	}
	c.waitFor(target+" promoted", 10*time.Second, func() bool {
		a := other.agent.State().Assignment("redis")
		return a.Holder == target && canWrite(c.node(target).cfg.Redis.Address) == nil
	})
	c.waitFor("the promotion counted on "+target+" with cause data_loss", 2*time.Second, func() bool {
		return scrape(t, c.node(target)).Value("harbormaster_failovers_total",
			map[string]string{"role": "redis", "type": "redis-master", "cause": "data_loss"}) == 1
	})
	var loss string
	for _, e := range other.agent.State().Events {
		if e.Kind == fsm.EventRedisDataLoss {
			loss = e.Message
		}
	}
	if !strings.Contains(loss, master) || !strings.Contains(loss, "accept-data-loss") {
		t.Fatalf("redis-data-loss event %q; want one naming %s and the operator's acceptance", loss, master)
	}
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
