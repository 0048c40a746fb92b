package serviceact

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/act/acttest"
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/fsm"
)

// fakeGuard records what the worker tells one guard.
type fakeGuard struct {
	epoch    uint64
	mu       sync.Mutex
	renewals []time.Duration
	released bool
	// runningAtRelease: whether the service ran when the guard was
	// released (it must: the agent releases before its own stop).
	runningAtRelease bool
	done             chan struct{}
	once             sync.Once
	// back and env run the starts; starts counts them.
	back   service.Actuator
	env    service.Env
	starts int
}

func (g *fakeGuard) Renew(d time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.renewals = append(g.renewals, d)
	return nil
}

func (g *fakeGuard) Release() error {
	g.mu.Lock()
	g.released = true
	g.mu.Unlock()
	g.exit()
	return nil
}

func (g *fakeGuard) Done() <-chan struct{} { return g.done }

func (g *fakeGuard) startCount() int { g.mu.Lock(); defer g.mu.Unlock(); return g.starts }

// Start runs the backend's start, as the guard process does.
func (g *fakeGuard) Start(ctx context.Context) error {
	g.mu.Lock()
	g.starts++
	g.mu.Unlock()
	return g.back.Start(ctx, g.env)
}
func (g *fakeGuard) exit() { g.once.Do(func() { close(g.done) }) }

func (g *fakeGuard) state() (renewals []time.Duration, released, runningAtRelease bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]time.Duration(nil), g.renewals...), g.released, g.runningAtRelease
}

// guards is a Config.StartGuard that records every guard it starts.
type guards struct {
	mu        sync.Mutex
	b         *backend
	started   []*fakeGuard
	deadlines []time.Duration
	// runningAtStart: whether the service ran when each guard started.
	runningAtStart []bool
}

func (gs *guards) start(_ string, back service.Actuator, env service.Env, _ time.Duration, latest func() time.Duration) (Guard, error) {
	deadline := latest()
	g := &fakeGuard{epoch: env.Epoch, done: make(chan struct{}), back: back, env: env}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	gs.started = append(gs.started, g)
	gs.deadlines = append(gs.deadlines, deadline)
	gs.runningAtStart = append(gs.runningAtStart, gs.b.isRunning())
	return &releaseProbe{fakeGuard: g, b: gs.b}, nil
}

// releaseProbe notes whether the service ran at the release.
type releaseProbe struct {
	*fakeGuard
	b *backend
}

func (p *releaseProbe) Release() error {
	p.mu.Lock()
	p.runningAtRelease = p.b.isRunning()
	p.mu.Unlock()
	return p.fakeGuard.Release()
}

func (gs *guards) all() []*fakeGuard {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return append([]*fakeGuard(nil), gs.started...)
}

// TestGuardLifecycle: the guard starts before the service with the lease's
// end as its deadline, follows each renewal (one write per renewal), is
// replaced (new one first) on a new epoch, and is released before the
// agent's own stop; a guard that exits on its own makes the worker start
// the service again under a new guard.
func TestGuardLifecycle(t *testing.T) {
	node := acttest.New("n1")
	b := newBackend()
	gs := &guards{b: b}
	mono := time.Duration(0)
	var monoMu sync.Mutex
	x := New(node, Config{Backends: map[string]service.Actuator{"notary": b}, Tick: time.Hour, Log: quiet,
		StartGuard: gs.start, Mono: func() time.Duration { monoMu.Lock(); defer monoMu.Unlock(); return mono }})
	until := x.clock.Base().Add(time.Hour)
	node.SetAuthority(act.Authority{LeaseGen: 1, LeaseValid: true, LeaseUntil: until})
	node.SetState(serviceState(heldAs(1)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	defer func() { cancel(); <-done }()

	b.waitRunning(t, true, "holder")
	gs.mu.Lock()
	if len(gs.started) != 1 || gs.runningAtStart[0] || gs.deadlines[0] != time.Hour {
		t.Fatalf("guards %d, running at their start %v, deadlines %v; want 1 started before the service with deadline 1h",
			len(gs.started), gs.runningAtStart, gs.deadlines)
	}
	gs.mu.Unlock()
	g1 := gs.all()[0]
	if n := g1.startCount(); n != 1 {
		t.Fatalf("%d starts through the guard, want the one start to go through it", n)
	}

	// A renewal: the deadline moves to the new lease end; passes without
	// a renewal write the same deadline (the guard writes only changes).
	node.SetAuthority(act.Authority{LeaseGen: 1, LeaseValid: true, LeaseUntil: until.Add(time.Second)})
	x.Wake()
	waitFor(t, "the renewal to reach the guard", func() bool {
		r, _, _ := g1.state()
		return len(r) > 0 && r[len(r)-1] == time.Hour+time.Second
	})

	// A new epoch for the same role on this node: a new guard, then the
	// old one released; the service keeps running.
	node.SetState(serviceState(heldAs(2)))
	waitFor(t, "a guard for epoch 2", func() bool { return len(gs.all()) == 2 })
	waitFor(t, "the epoch-1 guard released", func() bool { _, rel, _ := g1.state(); return rel })
	g2 := gs.all()[1]
	if g2.epoch != 2 || !b.isRunning() {
		t.Fatalf("second guard for epoch %d, service running %v; want epoch 2 and running", g2.epoch, b.isRunning())
	}

	// The guard exits on its own (it stopped the service at the lease's
	// end): the worker starts the service again, under a new guard.
	starts, _, _ := b.calls()
	g2.exit()
	waitFor(t, "a restart under a third guard", func() bool { s, _, _ := b.calls(); return s > starts && len(gs.all()) == 3 })

	// The agent's own stop: the guard is released first.
	g3 := gs.all()[2]
	if s, _, _ := b.calls(); g1.startCount()+g2.startCount()+g3.startCount() != s {
		t.Fatalf("%d starts, %d+%d+%d through the guards; want all through them", s, g1.startCount(), g2.startCount(), g3.startCount())
	}
	rel := serviceState(heldAs(2))
	rel.Assignments["notary"].Releasing = true
	node.SetState(rel)
	b.waitRunning(t, false, "released")
	_, released, runningAtRelease := g3.state()
	if !released || !runningAtRelease {
		t.Fatalf("third guard released %v (the service running then: %v); want released before the stop", released, runningAtRelease)
	}
}

func heldAs(epoch uint64) fsm.Assignment {
	return fsm.Assignment{Role: "notary", Holder: "n1", HolderGen: 1, Epoch: epoch}
}

// TestGuardGetsRenewalFromItsStart: a lease renewal that comes after the
// starting guard got its first deadline, before the worker holds it (so it
// went to no guard), reaches the new guard.
func TestGuardGetsRenewalFromItsStart(t *testing.T) {
	node := acttest.New("n1")
	b := newBackend()
	gs := &guards{b: b}
	var x *Actuator
	renewed := false
	start := func(role string, back service.Actuator, env service.Env, timeout time.Duration, deadline func() time.Duration) (Guard, error) {
		g, err := gs.start(role, back, env, timeout, deadline)
		if !renewed { // the renewal lands after the guard got its first deadline
			renewed = true
			st, _ := node.State()
			x.update(st, act.Authority{Node: "n1", LeaseGen: 1, LeaseValid: true, LeaseUntil: x.clock.Base().Add(2 * time.Hour), Now: time.Now()})
		}
		return g, err
	}
	x = New(node, Config{Backends: map[string]service.Actuator{"notary": b}, Tick: time.Hour, Log: quiet,
		StartGuard: start, Mono: func() time.Duration { return 0 }})
	node.SetAuthority(act.Authority{LeaseGen: 1, LeaseValid: true, LeaseUntil: x.clock.Base().Add(time.Hour)})
	node.SetState(serviceState(heldAs(1)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	defer func() { cancel(); <-done }()
	b.waitRunning(t, true, "holder")
	g := gs.all()[0]
	r, _, _ := g.state()
	gs.mu.Lock()
	first := gs.deadlines[0]
	gs.mu.Unlock()
	if first != time.Hour || len(r) == 0 || r[0] != 2*time.Hour {
		t.Fatalf("the guard's first deadline %s, renewals %v; want 1h, then the 2h lease end that came while it started", first, r)
	}
}

// TestGuardExitDuringItsStartPass: a guard that exits while the worker is
// still in the pass that started it (it stopped the service at once) is
// noticed at once: the worker does not wait for its next status check.
func TestGuardExitDuringItsStartPass(t *testing.T) {
	node := acttest.New("n1")
	b := newBackend()
	gs := &guards{b: b}
	first := true
	start := func(role string, back service.Actuator, env service.Env, timeout time.Duration, deadline func() time.Duration) (Guard, error) {
		g, err := gs.start(role, back, env, timeout, deadline)
		if first {
			first = false
			gs.all()[0].exit()
		}
		return g, err
	}
	x := New(node, Config{Backends: map[string]service.Actuator{"notary": b}, Tick: time.Hour, Log: quiet,
		StartGuard: start, Mono: func() time.Duration { return 0 }})
	node.SetAuthority(act.Authority{LeaseGen: 1, LeaseValid: true, LeaseUntil: x.clock.Base().Add(time.Hour)})
	node.SetState(serviceState(heldAs(1)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// statusEvery (10 s) is what a missed exit would wait for.
	hang := time.Now().Add(statusEvery / 2)
	for len(gs.all()) < 2 {
		if time.Now().After(hang) {
			t.Fatalf("a guard that exited in its first pass was not replaced within %s", statusEvery/2)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGuardExitAfterThaw: the agent was frozen past its lease; its guard
// stopped the service and exited. Thawed, the worker must take the lease's
// end into account before acting on the guard's exit: it stops (an
// idempotent stop), and does not start the service again on the want of
// before the freeze.
func TestGuardExitAfterThaw(t *testing.T) {
	node := acttest.New("n1")
	b := newBackend()
	gs := &guards{b: b}
	x := New(node, Config{Backends: map[string]service.Actuator{"notary": b}, Tick: time.Hour, Log: quiet,
		StartGuard: gs.start, Mono: func() time.Duration { return 0 }})
	node.SetAuthority(act.Authority{LeaseGen: 1, LeaseValid: true, LeaseUntil: x.clock.Base().Add(time.Hour)})
	node.SetState(serviceState(heldAs(1)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	defer func() { cancel(); <-done }()
	b.waitRunning(t, true, "holder")
	// The lease is gone; nothing wakes the target loop (Tick is an hour):
	// only the guard's exit tells the worker.
	node.SetAuthority(act.Authority{LeaseGen: 1, LeaseValid: false})
	gs.all()[0].exit()
	b.waitRunning(t, false, "after the guard's exit with the lease gone")
	if starts, _, _ := b.calls(); starts != 1 || len(gs.all()) != 1 {
		t.Fatalf("%d starts and %d guards; want 1 and 1 (no start on the want of before the freeze)", starts, len(gs.all()))
	}
}
