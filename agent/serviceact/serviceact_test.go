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
