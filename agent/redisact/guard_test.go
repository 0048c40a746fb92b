package redisact

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/act/acttest"
	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// fakeGuard records what the actuator tells it; at each deadline it also
// records whether the Redis took writes at that instant.
type fakeGuard struct {
	cli  *redisctl.Client
	done chan struct{}

	mu        sync.Mutex
	deadlines []time.Duration
	writable  []bool // the Redis took writes when the deadline came
	released  bool
	deadline  time.Duration
}

func (g *fakeGuard) Renew(d time.Duration) error {
	r, err := g.cli.Replication(context.Background())
	g.mu.Lock()
	defer g.mu.Unlock()
	if d == g.deadline {
		return nil
	}
	g.deadline = d
	g.deadlines = append(g.deadlines, d)
	g.writable = append(g.writable, err == nil && r.Role == fsm.RedisMaster && !r.Paused)
	return nil
}

func (g *fakeGuard) Release() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.released {
		g.released = true
		select {
		case <-g.done:
		default:
			close(g.done)
		}
	}
	return nil
}

func (g *fakeGuard) Done() <-chan struct{} { return g.done }

// die ends the guard as if its process died (no release).
func (g *fakeGuard) die() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.done:
	default:
		close(g.done)
	}
}

func (g *fakeGuard) seen() ([]time.Duration, []bool, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]time.Duration(nil), g.deadlines...), append([]bool(nil), g.writable...), g.released
}

// guards starts fake guards (failing while fail is set) and keeps them.
type guards struct {
	cli *redisctl.Client

	mu     sync.Mutex
	fail   bool
	starts []*fakeGuard
	first  []time.Duration // each start's first deadline
}

func (gs *guards) start(deadline func() time.Duration) (Guard, error) {
	gs.mu.Lock()
	fail := gs.fail
	gs.mu.Unlock()
	if fail {
		return nil, errors.New("exec: no such file")
	}
	g := &fakeGuard{cli: gs.cli, done: make(chan struct{})}
	d := deadline()
	if d > 0 {
		_ = g.Renew(d)
	}
	gs.mu.Lock()
	gs.starts = append(gs.starts, g)
	gs.first = append(gs.first, d)
	gs.mu.Unlock()
	return g, nil
}

func (gs *guards) all() ([]*fakeGuard, []time.Duration) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return append([]*fakeGuard(nil), gs.starts...), append([]time.Duration(nil), gs.first...)
}

func (gs *guards) setFail(f bool) {
	gs.mu.Lock()
	gs.fail = f
	gs.mu.Unlock()
}

// waitFor polls cond every 5 ms; it fails the test after a hang guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	hang := time.Now().Add(10 * time.Second) // a hang guard, not a timing assertion
	for !cond() {
		if time.Now().After(hang) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func redisState(t *testing.T, cli *redisctl.Client) redisctl.Replication {
	t.Helper()
	r, err := cli.Replication(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// guardedNode is n1 holding the redis-master role at epoch 4 under lease
// generation 3, its lease valid until until.
func guardedNode(addr string, until time.Time) *acttest.Node {
	node := acttest.New("n1")
	st := fsm.NewState()
	st.Spec = &spec.Spec{Roles: []spec.Role{{Name: "redis", Type: spec.TypeRedisMaster}}}
	st.Nodes = map[string]*fsm.Node{"n1": {ID: "n1", Redis: addr}}
	st.Assignments = map[string]*fsm.Assignment{"redis": {Role: "redis", Holder: "n1", HolderGen: 3, Epoch: 4}}
	node.SetState(st)
	node.SetAuthority(act.Authority{LeaseGen: 3, LeaseValid: true, LeaseUntil: until})
	return node
}

func runGuarded(t *testing.T, node *acttest.Node, addr string, gs *guards, mono func() time.Duration) *Actuator {
	t.Helper()
	return runActuatorWith(t, node, Config{Redis: redisctl.Config{Address: addr}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		StartGuard: gs.start, Mono: mono})
}

// guardedRedis starts a Redis (fenced, as the lab starts it) and returns
// its address, a client of it (closed with the test) and the fake guards'
// starter.
func guardedRedis(t *testing.T) (string, *redisctl.Client, *guards) {
	t.Helper()
	addr := startRedis(t)
	cli, err := redisctl.New(redisctl.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return addr, cli, &guards{cli: cli}
}

// The guard of a promotion: a guard is ready before it is needed (started
// with no deadline); the promotion gives it the lease's end less
// GuardAhead, on the guard's clock, while the Redis still refuses writes;
// every renewal moves it on; when the lease runs out the agent fences its
// Redis itself and releases the guard, and a new one is kept ready with
// no deadline.
func TestGuardIsArmedBeforeThePromotionAndReleasedAfterTheFence(t *testing.T) {
	addr, cli, gs := guardedRedis(t)
	// The guard's clock runs a day ahead of Go's: the deadline is
	// converted, not copied.
	mono := func() time.Duration { return time.Duration(time.Now().UnixNano()) + 24*time.Hour }
	until := time.Now().Add(time.Hour)
	node := guardedNode(addr, until)
	x := runGuarded(t, node, addr, gs, mono)

	waitFor(t, "promotion", func() bool { r := redisState(t, cli); return r.Role == fsm.RedisMaster && !r.Paused })
	starts, first := gs.all()
	if len(starts) != 1 || first[0] != 0 {
		t.Fatalf("%d guards started (first deadlines %v); want one, kept ready with no deadline", len(starts), first)
	}
	g := starts[0]
	dls, writable, _ := g.seen()
	if len(dls) != 1 {
		t.Fatalf("deadlines %v; want one, given by the promotion", dls)
	}
	if writable[0] {
		t.Error("the guard got its deadline after the Redis took writes; it must come before the promotion")
	}
	want := time.Duration(until.Add(-GuardAhead).UnixNano()) + 24*time.Hour
	if d := dls[0] - want; d < -5*time.Millisecond || d > 5*time.Millisecond {
		t.Errorf("deadline %v off the lease's end less %s on the guard's clock by %v", dls[0], GuardAhead, d)
	}

	// A renewal (the agent wakes its actuators on each).
	until2 := until.Add(time.Hour)
	node.SetAuthority(act.Authority{LeaseGen: 3, LeaseValid: true, LeaseUntil: until2})
	x.Wake()
	waitFor(t, "renewal", func() bool { dls, _, _ := g.seen(); return len(dls) == 2 })
	if dls, _, _ := g.seen(); dls[1]-dls[0] != time.Hour {
		t.Errorf("renewed deadline moved by %v; want the renewal's hour", dls[1]-dls[0])
	}

	// The lease lapses and is granted again under a new generation: the
	// role was bound to the old one, so the new lease's end is not given
	// to the guard; the agent fences its Redis, then releases the guard;
	// a new one is kept ready with no deadline.
	node.SetAuthority(act.Authority{LeaseGen: 4, LeaseValid: true, LeaseUntil: until2.Add(time.Hour)})
	x.Wake()
	waitFor(t, "release of the guard", func() bool { _, _, rel := g.seen(); return rel })
	if !redisState(t, cli).Paused {
		t.Error("the guard was released before the Redis was fenced")
	}
	if dls, _, _ := g.seen(); len(dls) != 2 {
		t.Errorf("deadlines %v; the lease of another generation must not be given", dls)
	}
	waitFor(t, "a new guard", func() bool { s, _ := gs.all(); return len(s) == 2 })
	if _, first := gs.all(); first[1] != 0 {
		t.Errorf("the next guard was started with deadline %v; want none", first[1])
	}
}

// Without a running guard no promotion: the Redis stays fenced and an
// event says why; once a guard starts, the promotion goes ahead.
func TestNoPromotionWithoutAGuard(t *testing.T) {
	addr := startRedis(t)
	cli, err := redisctl.New(redisctl.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	gs := &guards{cli: cli, fail: true}
	node := guardedNode(addr, time.Now().Add(time.Hour))
	runGuarded(t, node, addr, gs, nil)
	waitFor(t, "the event", func() bool {
		for _, e := range node.Events() {
			if e.Role == "redis" && e.Epoch == 4 && len(e.Message) > 0 && e.Message[:14] == "not promoted: " {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second) // passes go on refusing to promote
	if r := redisState(t, cli); r.Role == fsm.RedisMaster && !r.Paused {
		t.Fatal("the Redis was promoted without a guard")
	}
	n := 0
	for _, e := range node.Events() {
		if e.Role == "redis" && len(e.Message) > 14 && e.Message[:14] == "not promoted: " {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d events for one epoch's refused promotions; want 1 (every event is a Raft entry)", n)
	}
	gs.setFail(false)
	waitFor(t, "promotion once a guard runs", func() bool { r := redisState(t, cli); return r.Role == fsm.RedisMaster && !r.Paused })
	starts, _ := gs.all()
	if len(starts) == 0 {
		t.Fatal("promoted, no guard started")
	}
	if dls, writable, _ := starts[len(starts)-1].seen(); len(dls) == 0 || writable[0] {
		t.Errorf("the guard's deadlines %v (Redis writable at each: %v); want one before the promotion", dls, writable)
	}
}

// promoted runs the actuator on a guarded node and waits for its Redis to
// be promoted; it returns the guard the promotion armed.
func promoted(t *testing.T, cli *redisctl.Client, gs *guards, node *acttest.Node) (*Actuator, *fakeGuard) {
	t.Helper()
	x := runGuarded(t, node, cli.Addr(), gs, nil)
	waitFor(t, "promotion", func() bool { r := redisState(t, cli); return r.Role == fsm.RedisMaster && !r.Paused })
	starts, _ := gs.all()
	g := starts[len(starts)-1]
	if dls, _, _ := g.seen(); len(dls) == 0 {
		t.Fatal("promoted without arming the guard")
	}
	return x, g
}

// The role leaves the spec (a migration's rollback, docs/migrate.md): the
// agent leaves its Redis alone from then on, so the armed guard is
// released within a pass, not left to fence the master at its deadline,
// and no other is started.
func TestRemovingTheRoleReleasesTheArmedGuard(t *testing.T) {
	addr, cli, gs := guardedRedis(t)
	node := guardedNode(addr, time.Now().Add(time.Hour))
	x, g := promoted(t, cli, gs, node)
	cur, _ := node.State()
	st := *cur
	st.Spec = &spec.Spec{}
	node.SetState(&st)
	x.Wake()
	waitFor(t, "release of the armed guard", func() bool { _, _, rel := g.seen(); return rel })
	time.Sleep(300 * time.Millisecond)
	if r := redisState(t, cli); r.Role != fsm.RedisMaster || r.Paused {
		t.Errorf("the unmanaged master: role %s, fenced %v; want it left a writable master", r.Role, r.Paused)
	}
	if starts, _ := gs.all(); len(starts) != 1 {
		t.Errorf("%d guards started; want none after the role left the spec", len(starts)-1)
	}
}

// An armed guard that dies (killed, not released) is replaced at once,
// and the new one gets the current deadline: the master is never left
// unguarded.
func TestAnArmedGuardThatDiesIsReplacedWithTheDeadline(t *testing.T) {
	addr, cli, gs := guardedRedis(t)
	node := guardedNode(addr, time.Now().Add(time.Hour))
	_, g := promoted(t, cli, gs, node)
	dls, _, _ := g.seen()
	g.die()
	waitFor(t, "a replacement", func() bool { s, _ := gs.all(); return len(s) == 2 })
	_, first := gs.all()
	if first[1] != dls[len(dls)-1] {
		t.Errorf("the replacement started with deadline %v; want the armed one's %v", first[1], dls[len(dls)-1])
	}
}
