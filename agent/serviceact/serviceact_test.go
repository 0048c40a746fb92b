package serviceact

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
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// backend is a service.Actuator that records whether the service runs.
type backend struct {
	mu      sync.Mutex
	running bool
	starts  int
	stops   int
	closed  bool
	stopErr error
	changed chan struct{}
}

func newBackend() *backend { return &backend{changed: make(chan struct{}, 16)} }

func (b *backend) Start(context.Context, service.Env) error {
	b.mu.Lock()
	b.running = true
	b.starts++
	b.mu.Unlock()
	b.signal()
	return nil
}

func (b *backend) Stop(context.Context, service.Env) error {
	b.mu.Lock()
	defer b.signal()
	defer b.mu.Unlock()
	if b.stopErr != nil {
		return b.stopErr
	}
	b.stops++
	b.running = false
	return nil
}

func (b *backend) Status(context.Context, service.Env) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running, nil
}

// signal wakes waitRunning without ever blocking the worker.
func (b *backend) signal() {
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

func (b *backend) Close() error { b.mu.Lock(); defer b.mu.Unlock(); b.closed = true; return nil }

// calls returns the starts and confirmed stops so far and whether it was closed.
func (b *backend) calls() (starts, stops int, closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.starts, b.stops, b.closed
}

func (b *backend) isRunning() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.running }

// waitRunning waits until the backend's state is want (a hang guard, not
// a timing assertion).
func (b *backend) waitRunning(t *testing.T, want bool, what string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for b.isRunning() != want {
		select {
		case <-b.changed:
		case <-time.After(10 * time.Millisecond): // a missed signal
		case <-deadline:
			t.Fatalf("%s: service running = %v, want %v", what, !want, want)
		}
	}
}

// waitFor polls cond until it holds (a hang guard of 10 s, not a timing
// assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func serviceState(as fsm.Assignment) *fsm.State {
	st := fsm.NewState()
	st.Spec = &spec.Spec{Roles: []spec.Role{{Name: "notary", Type: spec.TypeService, StopTimeout: spec.Dur("1s")}}}
	st.Assignments = map[string]*fsm.Assignment{"notary": &as}
	return st
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestRunsOnlyWhileMayAct: the service starts once the rule allows it and
// stops as soon as any input of the rule says no.
func TestRunsOnlyWhileMayAct(t *testing.T) {
	node := acttest.New("n1")
	b := newBackend()
	x := New(node, Config{Backends: map[string]service.Actuator{"notary": b}, Tick: time.Second, Log: quiet})
	valid := act.Authority{LeaseGen: 4, LeaseValid: true, LeaseUntil: time.Now().Add(time.Hour)}
	held := fsm.Assignment{Role: "notary", Holder: "n1", HolderGen: 4, Epoch: 2}
	node.SetAuthority(valid)
	node.SetState(serviceState(held))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	defer func() { cancel(); <-done }()

	b.waitRunning(t, true, "holder with a valid lease")
	frozen := time.Now()
	for _, tc := range []struct {
		name string
		auth act.Authority
		as   fsm.Assignment
	}{
		// The clock is frozen StopAhead/2 before the lease's end: only the
		// margin can stop the service (the lease itself never runs out).
		{"lease ends within StopAhead", act.Authority{LeaseGen: 4, LeaseValid: true, Now: frozen, LeaseUntil: frozen.Add(StopAhead / 2)}, held},
		{"another generation", valid, fsm.Assignment{Role: "notary", Holder: "n1", HolderGen: 5, Epoch: 2}},
		{"being released", valid, fsm.Assignment{Role: "notary", Holder: "n1", HolderGen: 4, Epoch: 2, Releasing: true}},
		{"stopping", act.Authority{LeaseGen: 4, LeaseValid: true, LeaseUntil: time.Now().Add(time.Hour), Stopping: true}, held},
	} {
		node.SetAuthority(tc.auth)
		node.SetState(serviceState(tc.as))
		x.Wake()
		b.waitRunning(t, false, tc.name)
		// The worker confirms the stop once Stop returns, then nudges.
		waitFor(t, tc.name+": Releasable after the stop", func() bool { return x.Releasable(context.Background(), nil, "notary") })
		node.SetAuthority(valid)
		node.SetState(serviceState(held))
		x.Wake()
		b.waitRunning(t, true, tc.name+", then the holder again")
	}
}

// TestFailedStopFencesAndIsNotReleasable: a stop that fails leaves the role
// unreleasable and fences the node.
func TestFailedStopFencesAndIsNotReleasable(t *testing.T) {
	node := acttest.New("n1")
	b := newBackend()
	x := New(node, Config{Backends: map[string]service.Actuator{"notary": b}, Tick: time.Second, Log: quiet})
	held := fsm.Assignment{Role: "notary", Holder: "n1", HolderGen: 1, Epoch: 1}
	node.SetAuthority(act.Authority{LeaseGen: 1, LeaseValid: true, LeaseUntil: time.Now().Add(time.Hour)})
	node.SetState(serviceState(held))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	b.waitRunning(t, true, "holder")
	b.mu.Lock()
	b.stopErr = errors.New("stop hook exited 1")
	b.mu.Unlock()
	held.Releasing = true
	node.SetState(serviceState(held))
	waitFor(t, "a failed stop to fence the node", func() bool { return len(node.Fences()) > 0 })
	if x.Releasable(context.Background(), nil, "notary") {
		t.Fatal("Releasable = true after a failed stop; the service may still run")
	}
	b.mu.Lock()
	b.stopErr = nil
	b.mu.Unlock()
	cancel()
	<-done
}

// TestReplaceAppliesAtNextStartAndStop: a replaced backend (a reloaded
// services entry) does not restart the running service; the next stop and
// start are the new backend's, and the old one is closed. AfterStop (a
// new mode or unit): the old backend stops the running service and the
// new one starts the next.
func TestReplaceAppliesAtNextStartAndStop(t *testing.T) {
	node := acttest.New("n1")
	b1, b2, b3 := newBackend(), newBackend(), newBackend()
	x := New(node, Config{Backends: map[string]service.Actuator{"notary": b1}, Tick: time.Second, Log: quiet})
	held := fsm.Assignment{Role: "notary", Holder: "n1", HolderGen: 1, Epoch: 1}
	released := held
	released.Releasing = true
	node.SetAuthority(act.Authority{LeaseGen: 1, LeaseValid: true, LeaseUntil: time.Now().Add(time.Hour)})
	node.SetState(serviceState(held))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	defer func() { cancel(); <-done }()
	b1.waitRunning(t, true, "holder")
	_, stopsBefore, _ := b1.calls() // the first pass may stop what a previous agent left (unsure)

	if err := x.Replace("notary", b2, NextCall); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	x.Wake()
	time.Sleep(200 * time.Millisecond) // room for a wrong restart
	if s1, p1, _ := b1.calls(); s1 != 1 || p1 != stopsBefore || !b1.isRunning() {
		t.Fatalf("after Replace the old backend has %d starts, %d stops, running %v; want the service left running", s1, p1, b1.isRunning())
	}
	if s2, _, _ := b2.calls(); s2 != 0 {
		t.Fatalf("the new backend started the running service again (%d starts)", s2)
	}
	node.SetState(serviceState(released))
	waitFor(t, "the new backend to stop the service", func() bool { _, p2, _ := b2.calls(); return p2 == 1 })
	waitFor(t, "Releasable after the stop", func() bool { return x.Releasable(context.Background(), nil, "notary") })
	if _, p1, closed := b1.calls(); p1 != stopsBefore || !closed {
		t.Fatalf("old backend: %d stops (%d before the Replace), closed %v; want no more stops, closed", p1, stopsBefore, closed)
	}
	node.SetState(serviceState(held))
	b2.waitRunning(t, true, "holder again, with the new backend")

	// AfterStop: b2 started the service, so b2 stops it.
	if err := x.Replace("notary", b3, AfterStop); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	node.SetState(serviceState(released))
	b2.waitRunning(t, false, "the old backend stops the instance it started")
	if _, p3, _ := b3.calls(); p3 != 0 {
		t.Fatalf("AfterStop: the new backend ran %d stops of a service it did not start", p3)
	}
	waitFor(t, "Releasable after the stop", func() bool { return x.Releasable(context.Background(), nil, "notary") })
	node.SetState(serviceState(held))
	b3.waitRunning(t, true, "holder again, with the newest backend")

	// A new instance (b4), then another entry for it (b5, NextCall
	// relative to b4): b3 still stops the running one; b5 starts the next;
	// b4 is dropped unused.
	b4, b5 := newBackend(), newBackend()
	if err := x.Replace("notary", b4, AfterStop); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if err := x.Replace("notary", b5, NextCall); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	node.SetState(serviceState(released))
	b3.waitRunning(t, false, "the backend that started the instance stops it")
	waitFor(t, "Releasable after the stop", func() bool { return x.Releasable(context.Background(), nil, "notary") })
	node.SetState(serviceState(held))
	b5.waitRunning(t, true, "holder again, with the last entry")
	if s4, p4, closed := b4.calls(); s4+p4 != 0 || !closed {
		t.Fatalf("the replaced pending backend ran %d starts, %d stops, closed %v; want unused and closed", s4, p4, closed)
	}

	if err := x.Replace("clair", b1, NextCall); err == nil {
		t.Fatal("Replace of a role without a worker succeeded; adding a service role needs a restart")
	}
}
