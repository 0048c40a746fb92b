package redisctl

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var hex40 = regexp.MustCompile(`^[0-9a-f]{40}$`)

// infoField returns key's value in INFO section on c.
func infoField(t *testing.T, c *Client, section, key string) string {
	t.Helper()
	s, _ := must(t, c, "INFO", section).(string)
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return v
		}
	}
	t.Fatalf("INFO %s on %s has no %s", section, c.Addr(), key)
	return ""
}

// fullSyncs is how many full resyncs the master c has served.
func fullSyncs(t *testing.T, c *Client) int {
	t.Helper()
	n, err := strconv.Atoi(infoField(t, c, "stats", "sync_full"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestReplication(t *testing.T) {
	m := startRedis(t)
	mc := m.client()
	r := startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.port))
	rc := r.client()
	waitLinked(t, rc)

	mr := repl(t, mc)
	if mr.Role != "master" || mr.LinkUp || mr.MasterHost != "" || mr.Paused || !hex40.MatchString(mr.ReplID) || !hex40.MatchString(mr.RunID) {
		t.Fatalf("master: %+v", mr)
	}
	if mr.ConnectedReplicas != 1 || len(mr.Replicas) != 1 || mr.Replicas[0].IP != "127.0.0.1" || mr.Replicas[0].Port != r.port {
		t.Fatalf("master's replicas: %d %+v, want one on port %d", mr.ConnectedReplicas, mr.Replicas, r.port)
	}
	rr := repl(t, rc)
	if rr.Role != "replica" || rr.MasterHost != "127.0.0.1" || rr.MasterPort != m.port || !rr.LinkUp || rr.Paused ||
		rr.ReplID != mr.ReplID || rr.RunID == mr.RunID || !hex40.MatchString(rr.RunID) || rr.ConnectedReplicas != 0 {
		t.Fatalf("replica: %+v (master %+v)", rr, mr)
	}

	before := mr.Offset
	for i := range 100 {
		must(t, mc, "SET", fmt.Sprint("k", i), "v")
	}
	mr = repl(t, mc)
	if mr.Offset <= before {
		t.Fatalf("master offset %d after 100 writes, want more than %d", mr.Offset, before)
	}
	waitFor(t, 5*time.Second, "the replica to reach the master's offset", func() bool {
		return repl(t, rc).Offset >= mr.Offset
	})
	waitFor(t, 5*time.Second, "the master to see the replica online at its offset", func() bool {
		rs := repl(t, mc).Replicas
		return len(rs) == 1 && rs[0].State == "online" && rs[0].Offset >= mr.Offset
	})

	m.kill()
	waitFor(t, 5*time.Second, "the replica's link to go down", func() bool { return !repl(t, rc).LinkUp })
	rr = repl(t, rc)
	if rr.Role != "replica" || rr.MasterPort != m.port || rr.Offset < mr.Offset {
		t.Fatalf("replica of a dead master: %+v, want a replica keeping offset >= %d", rr, mr.Offset)
	}
	t.Logf("replica of a dead master: offset %d (master's last %d)", rr.Offset, mr.Offset)
}

// TestPromoteFollow moves the master from a to b and back, as a planned
// switchover does: fence, wait for the new master to catch up, promote,
// demote the old one.
func TestPromoteFollow(t *testing.T) {
	ctx := ctxT(t, 15*time.Second)
	a, b := startRedis(t), startRedis(t)
	ac, bc := a.client(), b.client()
	const role = "redis-master"

	if err := ac.Promote(ctx, role, 3); err != nil {
		t.Fatal(err)
	}
	if got := must(t, ac, "GET", EpochKey(role)); got != "3" {
		t.Fatalf("epoch key on the master = %v, want 3", got)
	}
	must(t, ac, "SET", "data", "from-a")
	if err := bc.Follow(ctx, a.addr); err != nil {
		t.Fatal(err)
	}
	waitLinked(t, bc)
	waitValue(t, bc, "data", "from-a")
	waitValue(t, bc, "harbormaster:epoch:redis-master", "3")
	if e, ok, err := bc.Epoch(ctx, role); e != 3 || !ok || err != nil {
		t.Fatalf("Epoch on the replica = %d, %v, %v; want 3", e, ok, err)
	}
	if code := replyCode(t, bc, "SET", "x", "1"); code != "READONLY" {
		t.Fatalf("write on the replica: %q, want READONLY", code)
	}

	// Both calls again change nothing: no new full sync, same history.
	syncs, ra := fullSyncs(t, ac), repl(t, ac)
	if err := bc.Follow(ctx, a.addr); err != nil {
		t.Fatal(err)
	}
	if err := ac.Promote(ctx, role, 3); err != nil {
		t.Fatal(err)
	}
	if n := fullSyncs(t, ac); n != syncs {
		t.Fatalf("repeated Follow: %d full syncs, want %d", n, syncs)
	}
	if r := repl(t, ac); r.ReplID != ra.ReplID || r.ConnectedReplicas != 1 || r.Role != "master" || r.Paused {
		t.Fatalf("repeated Promote on the master: %+v, was %+v", r, ra)
	}
	if r := repl(t, bc); !r.LinkUp || r.MasterPort != a.port {
		t.Fatalf("replica after the repeated calls: %+v", r)
	}

	// Switchover to b at epoch 4.
	if err := ac.PauseWrites(ctx); err != nil {
		t.Fatal(err)
	}
	target := repl(t, ac).Offset
	if err := bc.WaitCaughtUp(ctx, target); err != nil {
		t.Fatal(err)
	}
	if err := bc.Promote(ctx, role, 4); err != nil {
		t.Fatal(err)
	}
	if err := ac.Follow(ctx, b.addr); err != nil {
		t.Fatal(err)
	}
	if r := repl(t, bc); r.Role != "master" || r.Paused {
		t.Fatalf("promoted b: %+v, want an unfenced master", r)
	}
	must(t, bc, "SET", "data", "from-b")
	waitLinked(t, ac)
	waitValue(t, ac, "data", "from-b")
	waitValue(t, ac, EpochKey(role), "4")
	if code := replyCode(t, ac, "SET", "x", "1"); code != "READONLY" {
		t.Fatalf("write on the demoted a: %q, want READONLY", code)
	}
	// a was b's master a moment ago: b's new history continues a's, so a
	// resumes with a partial sync.
	if n := fullSyncs(t, bc); n != 0 {
		t.Fatalf("b served %d full syncs to the demoted a, want 0 (partial resync)", n)
	}

	// A stale epoch is refused and changes nothing.
	err := bc.Promote(ctx, role, 3)
	var se *StaleEpochError
	if !errors.As(err, &se) || se.Stored != 4 || se.Given != 3 || !strings.Contains(err.Error(), b.addr) {
		t.Fatalf("Promote with epoch 3 after 4: %v, want a *StaleEpochError naming %s", err, b.addr)
	}
	err = ac.Promote(ctx, role, 3)
	if !errors.As(err, &se) {
		t.Fatalf("Promote of the replica a with a stale epoch: %v, want a *StaleEpochError", err)
	}
	if r := repl(t, ac); r.Role != "replica" {
		t.Fatalf("a after a refused Promote: %+v, want still a replica", r)
	}
	if err := bc.Follow(ctx, b.addr); err == nil || !strings.Contains(err.Error(), "own address") {
		t.Fatalf("Follow of itself: %v, want a refusal", err)
	}
	if err := bc.Promote(ctx, "", 5); err == nil {
		t.Fatal("Promote with an empty role succeeded")
	}
}

func TestWaitCaughtUp(t *testing.T) {
	m := startRedis(t)
	mc := m.client()
	r := startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.port))
	rc := r.client()
	for i := range 50 {
		must(t, mc, "SET", fmt.Sprint("k", i), strings.Repeat("v", 100))
	}
	target := repl(t, mc).Offset
	if err := rc.WaitCaughtUp(ctxT(t, 10*time.Second), target); err != nil {
		t.Fatal(err)
	}
	if got := repl(t, rc); got.Offset < target || !got.LinkUp {
		t.Fatalf("after WaitCaughtUp: %+v, want offset >= %d and link up", got, target)
	}
	if got := must(t, rc, "GET", "k49"); got != strings.Repeat("v", 100) {
		t.Fatalf("GET k49 on the caught-up replica = %v", got)
	}

	start := time.Now()
	err := rc.WaitCaughtUp(ctxT(t, 300*time.Millisecond), target+1_000_000)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "at offset") || !strings.Contains(err.Error(), r.addr) {
		t.Fatalf("WaitCaughtUp beyond the master's offset: %v, want a deadline error telling the offset", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d >= DefaultTimeout {
		t.Fatalf("WaitCaughtUp returned after %s, want after ctx's 300 ms deadline and before the client's %s fallback", d, DefaultTimeout)
	}
	if err := mc.WaitCaughtUp(ctxT(t, 5*time.Second), 0); err == nil || !strings.Contains(err.Error(), "is a master") {
		t.Fatalf("WaitCaughtUp on a master: %v, want a refusal", err)
	}

	// A replica whose master died is not caught up, whatever its offset.
	m.kill()
	err = rc.WaitCaughtUp(ctxT(t, 300*time.Millisecond), 0)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "link down") {
		t.Fatalf("WaitCaughtUp with the link down: %v, want a deadline error telling the link is down", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	s := startRedis(t)
	c := s.client()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := c.Replication(context.Background()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.mu.Lock()
	idle := len(c.idle)
	c.mu.Unlock()
	if idle > maxIdle {
		t.Fatalf("%d idle connections, want at most %d", idle, maxIdle)
	}
}

// TestReconnect: a kept connection the server closed (CLIENT KILL, a
// restart on the same port) costs no failed call.
func TestReconnect(t *testing.T) {
	s := startRedis(t)
	c := s.client()
	first := repl(t, c)
	if n, _ := must(t, s.client(), "CLIENT", "KILL", "TYPE", "normal").(int64); n != 1 {
		t.Fatalf("CLIENT KILL killed %d clients, want 1: the kept connection", n)
	}
	if r := repl(t, c); r.RunID != first.RunID {
		t.Fatalf("RunID %s after CLIENT KILL, want %s", r.RunID, first.RunID)
	}

	s.kill()
	dir := t.TempDir()
	runRedis(t, s.port, []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir})
	if r := repl(t, c); r.RunID == first.RunID || !hex40.MatchString(r.RunID) {
		t.Fatalf("RunID %q after a restart, want a new one (was %s)", r.RunID, first.RunID)
	}
}
