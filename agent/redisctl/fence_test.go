package redisctl

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/resp"
)

// configInt reads one parameter with CONFIG GET.
func configInt(t *testing.T, c *Client, param string) int64 {
	t.Helper()
	n, err := asConfigInt(must(t, c, "CONFIG", "GET", param), param)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFence: PauseWrites refuses writes at once (NOREPLICAS), in every
// form, keeps refusing until Unpause, keeps replication going, and Unpause
// restores the operator's settings.
func TestFence(t *testing.T) {
	ctx := ctxT(t, 15*time.Second)
	// The master pings its replica every second: a tick of its
	// replication cron the test can see (below).
	m := startRedis(t, "--repl-ping-replica-period", "1")
	mc := m.client()
	r := startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.port))
	rc := r.client()
	waitLinked(t, rc)
	must(t, mc, "SET", "k", "before")

	if err := mc.PauseWrites(ctx); err != nil {
		t.Fatal(err)
	}
	if !repl(t, mc).Paused {
		t.Fatal("Replication().Paused is false after PauseWrites")
	}
	armed := repl(t, mc).Offset
	if code := replyCode(t, mc, "SET", "k", "fenced"); code != "NOREPLICAS" {
		t.Fatalf("SET under the fence: reply code %q, want NOREPLICAS", code)
	}
	// Refused, not held: the fence holds nothing back. PUBLISH, which
	// CLIENT PAUSE WRITE would hold and the min-replicas check lets
	// through, is answered, and no client is blocked.
	must(t, mc, "PUBLISH", "fence-test", "x")
	if n := blockedClients(t, mc); n != 0 {
		t.Fatalf("%d blocked clients under the fence, want none: the fence must refuse, not hold", n)
	}
	// A transaction is refused as a whole.
	replies, err := mc.exec(ctx, "MULTI", []string{"MULTI"}, []string{"INCR", "n"}, []string{"EXEC"})
	if err != nil {
		t.Fatal(err)
	}
	if re, ok := replies[1].(*resp.Error); !ok || re.Prefix() != "NOREPLICAS" {
		t.Fatalf("INCR in MULTI under the fence: %v, want NOREPLICAS", replies[1])
	}
	if re, ok := replies[2].(*resp.Error); !ok || re.Prefix() != "EXECABORT" {
		t.Fatalf("EXEC under the fence: %v, want EXECABORT", replies[2])
	}
	// So is a script that writes.
	if code := replyCode(t, mc, "EVAL", "return redis.call('SET', KEYS[1], 'script')", "1", "k"); code != "NOREPLICAS" {
		t.Fatalf("writing script under the fence: reply code %q, want NOREPLICAS", code)
	}
	// Reads are served, and the fence does not lift itself. Redis
	// re-counts the good replicas once a second, in the replication cron
	// that also sends the pings: after the second ping since the fence was
	// armed it has done so at least once with the fence armed. (Refused
	// writes add nothing to the offset; only the pings do.)
	waitPings(t, mc, armed, 2)
	if got := must(t, mc, "GET", "k"); got != "before" {
		t.Fatalf("GET k under the fence = %v, want before", got)
	}
	if code := replyCode(t, mc, "DEL", "k"); code != "NOREPLICAS" {
		t.Fatalf("DEL after two replication cron ticks under the fence: reply code %q, want NOREPLICAS (the fence must not expire)", code)
	}
	if got := must(t, mc, "GET", "n"); got != nil {
		t.Fatalf("GET n = %v, want no key: the transaction must not have run", got)
	}
	// Replication goes on under the fence.
	if mr := repl(t, mc); len(mr.Replicas) != 1 || mr.Replicas[0].State != "online" || !repl(t, rc).LinkUp {
		t.Fatalf("replication under the fence: master %+v, replica link up %v", mr, repl(t, rc).LinkUp)
	}
	if err := mc.PauseWrites(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	if v := configInt(t, mc, paramMinRep); v != fenceBase {
		t.Fatalf("min-replicas-to-write = %d after two PauseWrites, want %d", v, fenceBase)
	}

	if err := mc.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	must(t, mc, "SET", "k", "after")
	waitValue(t, rc, "k", "after")
	if repl(t, mc).Paused || configInt(t, mc, paramMinRep) != 0 {
		t.Fatalf("after Unpause: Paused %v, min-replicas-to-write %d; want false, 0", repl(t, mc).Paused, configInt(t, mc, paramMinRep))
	}
	if err := mc.Unpause(ctx); err != nil { // idempotent
		t.Fatal(err)
	}

	// The operator's own min-replicas settings: restored exactly, and a
	// max-lag of 0 (which disables the check) does not disable the fence.
	must(t, mc, "CONFIG", "SET", paramMinRep, "1")
	must(t, mc, "CONFIG", "SET", paramMaxLag, "0")
	if err := mc.PauseWrites(ctx); err != nil {
		t.Fatal(err)
	}
	if code := replyCode(t, mc, "SET", "k", "fenced"); code != "NOREPLICAS" {
		t.Fatalf("SET under the fence with max-lag 0: reply code %q, want NOREPLICAS", code)
	}
	if v, lag := configInt(t, mc, paramMinRep), configInt(t, mc, paramMaxLag); v != fenceBase+1 || lag != fenceMaxLag {
		t.Fatalf("fenced: min-replicas-to-write %d, max-lag %d; want %d, %d", v, lag, fenceBase+1, fenceMaxLag)
	}
	// Another client (an agent restarted) sees and lifts the fence.
	other := m.client()
	if !repl(t, other).Paused {
		t.Fatal("a second client does not see the fence")
	}
	if err := other.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	if v := configInt(t, mc, paramMinRep); v != 1 {
		t.Fatalf("min-replicas-to-write after Unpause = %d, want the operator's 1", v)
	}
	must(t, mc, "SET", "k", "with-one-replica") // one good replica: allowed
}

// waitPings waits until the replication offset of master c, which takes
// no writes, has grown n times from `from`: n ticks of its replication
// cron, which pings the replicas (every repl-ping-replica-period seconds).
// Growths the polling merges count once, so it may wait longer, never
// shorter.
func waitPings(t *testing.T, c *Client, from int64, n int) {
	t.Helper()
	last, seen := from, 0
	waitFor(t, 10*time.Second, fmt.Sprintf("%d replication pings from %s", n, c.Addr()), func() bool {
		if off := repl(t, c).Offset; off > last {
			last, seen = off, seen+1
		}
		return seen >= n
	})
}

// TestUnpauseLiftsClientPause: Unpause also lifts a CLIENT PAUSE left by
// someone else, so a promoted master takes writes.
func TestUnpauseLiftsClientPause(t *testing.T) {
	m := startRedis(t)
	mc := m.client()
	must(t, mc, "CLIENT", "PAUSE", "10000", "WRITE")
	w := send(t, mc, "SET", "k", "v")
	waitBlocked(t, mc, 1)
	if err := mc.Promote(ctxT(t, 5*time.Second), "redis-master", 1); err != nil {
		t.Fatal(err)
	}
	if got := w.wait(t); got != "OK" {
		t.Fatalf("blocked SET after Promote = %v, want OK", got)
	}
}

// TestFollowArmsFence: a replica set up by Follow carries the fence, so a
// promotion by anyone but Promote (here an operator's REPLICAOF NO ONE)
// gives a master that refuses writes; Promote lifts it.
func TestFollowArmsFence(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	m, r := startRedis(t), startRedis(t)
	mc, rc := m.client(), r.client()
	if err := rc.Follow(ctx, m.addr); err != nil {
		t.Fatal(err)
	}
	waitLinked(t, rc)
	if !repl(t, rc).Paused {
		t.Fatal("replica after Follow: fence not armed")
	}
	must(t, rc, "REPLICAOF", "NO", "ONE")
	if code := replyCode(t, rc, "SET", "k", "v"); code != "NOREPLICAS" {
		t.Fatalf("write on a replica promoted by hand: reply code %q, want NOREPLICAS", code)
	}
	if err := rc.Promote(ctx, "redis-master", 2); err != nil {
		t.Fatal(err)
	}
	must(t, rc, "SET", "k", "v")

	// Follow on a master that has clients: from Follow on, their writes
	// are refused (READONLY once a replica).
	must(t, mc, "SET", "old", "1")
	if err := mc.Follow(ctx, r.addr); err != nil {
		t.Fatal(err)
	}
	if code := replyCode(t, mc, "SET", "old", "2"); code != "READONLY" {
		t.Fatalf("write on the demoted master: reply code %q, want READONLY", code)
	}
}

// TestStartFenced: a Redis whose redis.conf (here its command line) sets
// min-replicas-to-write to 2^30 plus the operator's value starts fenced, as
// the package doc recommends, and Promote lifts it to the operator's value
// and records the epoch although the operator's value refuses writes.
func TestStartFenced(t *testing.T) {
	m := startRedis(t, "--min-replicas-to-write", strconv.Itoa(fenceBase+2))
	mc := m.client()
	if r := repl(t, mc); r.Role != "master" || !r.Paused {
		t.Fatalf("started fenced: %+v, want a paused master", r)
	}
	if code := replyCode(t, mc, "SET", "k", "v"); code != "NOREPLICAS" {
		t.Fatalf("write on a server started fenced: reply code %q, want NOREPLICAS", code)
	}
	if err := mc.Promote(ctxT(t, 5*time.Second), "redis-master", 1); err != nil {
		t.Fatal(err)
	}
	if v := configInt(t, mc, paramMinRep); v != 2 {
		t.Fatalf("min-replicas-to-write after Promote = %d, want the operator's 2", v)
	}
	// The operator's 2 replicas are not there, yet the epoch is recorded.
	if got := must(t, mc, "GET", EpochKey("redis-master")); got != "1" {
		t.Fatalf("epoch key = %v, want 1", got)
	}
	if code := replyCode(t, mc, "SET", "k", "v"); code != "NOREPLICAS" {
		t.Fatalf("write without the 2 replicas the operator asks for: reply code %q, want NOREPLICAS", code)
	}
	must(t, mc, "CONFIG", "SET", paramMinRep, "0")
	must(t, mc, "SET", "k", "v")
}
