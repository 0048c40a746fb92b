package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// statusEvery is how often the agent asks an active service's status hook
// (or systemd) whether it still runs, and starts it again if not.
const statusEvery = 10 * time.Second

// serviceFenceAhead is how long before its lease ends (by its own clock)
// the holder starts stopping its services.
const serviceFenceAhead = 50 * time.Millisecond

// serviceSet runs the service roles' actuators (agent/service): one worker
// per service role this node has an actuator for. The service loop tells
// each worker whether this node should run its service now; the worker
// starts and stops it, one hook at a time.
//
// Safety (DESIGN.md S3, S4): a worker runs its service only while this node
// holds the role at its current lease generation with a valid lease, and
// stops it as soon as that ends. The release loop commits a requested
// release only once the worker confirmed the stop. A stop that fails or
// times out is never reported as a release: the node fences itself (lets
// its lease lapse, which drops every role it holds), and the coordinator
// moves the role only after the lease surely ended plus the role's
// stop_timeout.
type serviceSet struct {
	a       *Agent
	workers map[string]*svcWorker // by role name
}

// svcWorker drives one service.
type svcWorker struct {
	role string
	act  service.Actuator
	wake chan struct{}

	mu      sync.Mutex
	want    bool
	epoch   uint64
	timeout time.Duration
	// running: started by this agent and no stop confirmed since (a
	// failed start counts: it may have half-started the service).
	running bool
	// unsure: the last stop failed; the service may still run.
	unsure bool
	// fencedEpoch is the epoch the node last fenced itself for.
	fencedEpoch uint64
	// cancelHook cancels a running start or status hook when the target
	// turns to "not running" (a stop hook is never cancelled).
	cancelHook context.CancelFunc
}

func newServiceSet(a *Agent) (*serviceSet, error) {
	s := &serviceSet{a: a, workers: map[string]*svcWorker{}}
	for _, name := range a.cfg.ServiceNames() {
		act, err := a.opts.serviceActuator(name, a.cfg.Services[name])
		if err != nil {
			return nil, &config.Error{Path: a.cfg.Path, Field: "services." + name, Msg: err.Error()}
		}
		// unsure: a previous agent (crashed, restarted, or the node
		// rebooted with the service enabled) may have left it running.
		// The first pass stops it unless this node holds the role.
		s.workers[name] = &svcWorker{role: name, act: act, wake: make(chan struct{}, 1), timeout: spec.DefaultStopTimeout, unsure: true}
	}
	return s, nil
}

// serviceActuator builds the actuator of a service role: Options'
// ServiceActuator in tests, agent/service otherwise.
func (o Options) serviceActuator(role string, c service.Config) (service.Actuator, error) {
	if o.ServiceActuator != nil {
		return o.ServiceActuator(role, c)
	}
	return service.New(role, c)
}

// stopped reports whether this node runs nothing for role: no actuator, or
// its worker confirmed the stop.
func (s *serviceSet) stopped(role string) bool {
	w, ok := s.workers[role]
	if !ok {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.running && !w.unsure
}

// active lists the roles whose service this node runs now, sorted.
func (s *serviceSet) active() []string {
	var out []string
	for name, w := range s.workers {
		w.mu.Lock()
		if w.running && w.want {
			out = append(out, name)
		}
		w.mu.Unlock()
	}
	sort.Strings(out)
	return out
}

// serviceLoop sets each worker's target from the state and this node's
// lease, on every state change, lease change and tick.
func (a *Agent) serviceLoop(ctx context.Context) {
	s := a.services
	if len(s.workers) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, w := range s.workers {
		wg.Add(1)
		go func() { defer wg.Done(); a.serviceWorker(ctx, w) }()
	}
	defer wg.Wait()
	for {
		st, changed := a.fsm.State()
		s.update(st)
		wait := a.timing.Renew
		if _, valid, until := a.Lease(); valid {
			wait = min(wait, max(time.Until(until)-serviceFenceAhead, time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-a.serviceWake:
		case <-time.After(wait):
		}
	}
}

// update computes the targets: a worker's service should run while this
// node holds the role at its current lease generation, the lease is valid,
// the role is not being released and the agent is not stopping.
func (s *serviceSet) update(st *fsm.State) {
	a := s.a
	gen, valid, until := a.Lease()
	// The stop starts before the lease ends by this node's clock (itself
	// ahead of the voters' verdicts), like the VIP's fence.
	valid = valid && time.Until(until) > serviceFenceAhead
	for name, w := range s.workers {
		r, inSpec := st.Spec.Role(name)
		as := st.Assignment(name)
		want := inSpec && r.Type == spec.TypeService && as.Holder == a.cfg.NodeID && as.HolderGen == gen &&
			valid && !as.Releasing && !a.stopping.Load() && time.Now().UnixNano() >= a.fenceUntil.Load()
		w.mu.Lock()
		changed := w.want != want || (want && w.epoch != as.Epoch)
		w.want = want
		if want {
			w.epoch = as.Epoch
		}
		if inSpec {
			w.timeout = r.StopGrace()
		}
		if !want && w.cancelHook != nil {
			w.cancelHook() // a start still running must not outlive the role
		}
		w.mu.Unlock()
		if changed {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

// serviceWorker makes one service match its target. Hooks get their own
// contexts (not the loop's), so an agent shutting down never kills a stop
// hook halfway: gracefulRelease waits for the stops instead.
func (a *Agent) serviceWorker(ctx context.Context, w *svcWorker) {
	backoff := time.Duration(0)
	lastStatus := time.Now()
	for {
		w.mu.Lock()
		want, running, unsure, epoch, timeout := w.want, w.running, w.unsure, w.epoch, w.timeout
		w.mu.Unlock()
		env := service.Env{Role: w.role, Node: a.cfg.NodeID, Epoch: epoch}
		wait := statusEvery
		switch {
		case want && (!running || unsure):
			// running is set before the hook runs: from now on the release
			// loop waits for a confirmed stop (a start halfway may have
			// started the service).
			hctx, cancel := w.hookContext(timeout)
			w.mu.Lock()
			w.running = true
			w.mu.Unlock()
			err := a.runHook(hctx, w, "start", func(c context.Context) error { return w.act.Start(c, env) })
			cancel()
			w.mu.Lock()
			w.unsure = err != nil // a failed start is retried (and undone by a stop if the role goes)
			w.mu.Unlock()
			if err != nil {
				backoff = min(max(2*backoff, time.Second), 30*time.Second)
				wait = backoff
			} else {
				backoff = 0
				lastStatus = time.Now()
			}
		case !want && (running || unsure):
			sctx, cancel := context.WithTimeout(context.Background(), timeout)
			err := a.runHook(sctx, w, "stop", func(c context.Context) error { return w.act.Stop(c, env) })
			cancel()
			w.mu.Lock()
			if err == nil {
				w.running, w.unsure = false, false
			} else {
				w.unsure = true
			}
			fence := err != nil && w.fencedEpoch != epoch
			if fence {
				w.fencedEpoch = epoch
			}
			w.mu.Unlock()
			if fence {
				a.fenceSelf(fmt.Sprintf("stop of service %s failed: %v", w.role, err))
			}
			a.roleTrigger() // the release loop waits for the stop
			if err != nil {
				wait = max(timeout, time.Second) // retry the stop
			}
		case want && running && time.Since(lastStatus) >= statusEvery:
			lastStatus = time.Now()
			sctx, cancel := w.hookContext(timeout)
			active, err := w.act.Status(sctx, env)
			cancel()
			if err == nil && !active {
				a.log.Warn("service is not running on its active node; starting it again", "role", w.role, "epoch", epoch)
				a.serviceEvent(w.role, epoch, "found stopped on its active node; starting it again")
				w.mu.Lock()
				w.running = false
				w.mu.Unlock()
				continue
			}
		}
		select {
		case <-ctx.Done():
			a.stopOnExit(w)
			return
		case <-w.wake:
		case <-time.After(wait):
		}
	}
}

// hookContext bounds a start or status hook by timeout and lets update
// cancel it when the service must stop.
func (w *svcWorker) hookContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	w.mu.Lock()
	if !w.want {
		cancel() // already unwanted: do not start at all
	}
	w.cancelHook = cancel
	w.mu.Unlock()
	return ctx, func() {
		w.mu.Lock()
		w.cancelHook = nil
		w.mu.Unlock()
		cancel()
	}
}

// stopOnExit stops a service the agent runs when the agent exits without
// a graceful release of it (the role moves after the lease and the stop
// timeout; the service must be gone by then).
func (a *Agent) stopOnExit(w *svcWorker) {
	w.mu.Lock()
	running, unsure, epoch, timeout := w.running, w.unsure, w.epoch, w.timeout
	w.mu.Unlock()
	if !running && !unsure {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := w.act.Stop(ctx, service.Env{Role: w.role, Node: a.cfg.NodeID, Epoch: epoch}); err != nil {
		a.log.Warn("stop on exit failed", "role", w.role, "err", err)
		return
	}
	w.mu.Lock()
	w.running, w.unsure = false, false
	w.mu.Unlock()
	a.log.Info("service stopped on exit", "role", w.role)
}

// runHook runs one start or stop bounded by ctx, logs it and records an
// event.
func (a *Agent) runHook(ctx context.Context, w *svcWorker, what string, f func(context.Context) error) error {
	start := time.Now()
	err := f(ctx)
	w.mu.Lock()
	epoch := w.epoch
	w.mu.Unlock()
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		a.log.Warn("service "+what+" failed", "role", w.role, "epoch", epoch, "took", took, "err", err)
		msg := fmt.Sprintf("%s failed after %s: %v", what, took, err)
		if what == "stop" && errors.Is(err, service.ErrTimeout) {
			msg = fmt.Sprintf("stop timed out after %s (stop_timeout); hook killed, the node fences itself: %v", took, err)
		}
		a.serviceEvent(w.role, epoch, msg)
		return err
	}
	done := map[string]string{"start": "started", "stop": "stopped"}[what]
	a.log.Info("service "+done, "role", w.role, "epoch", epoch, "took", took)
	a.serviceEvent(w.role, epoch, fmt.Sprintf("%s in %s", done, took))
	return nil
}

// serviceEvent records an event without blocking the caller (a cut-off
// node cannot commit it; the worker must not wait for that).
func (a *Agent) serviceEvent(role string, epoch uint64, msg string) {
	e := fsm.Event{Time: time.Now().UnixMilli(), Kind: fsm.EventService, Node: a.cfg.NodeID, Actor: a.cfg.NodeID,
		Role: role, Epoch: epoch, Message: msg}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := a.Propose(ctx, &fsm.RecordEvent{Event: e}); err != nil {
			a.log.Debug("record service event", "role", role, "err", err)
		}
	}()
}

// waitServicesStopped waits until every worker whose service runs has
// confirmed its stop, or ctx ends. It reports whether all stopped.
func (s *serviceSet) waitStopped(ctx context.Context) bool {
	for {
		all := true
		for name := range s.workers {
			if !s.stopped(name) {
				all = false
			}
		}
		if all {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// maxStopTimeout is the longest stop timeout among the service roles this
// node runs (how long a graceful stop waits for them).
func (s *serviceSet) maxStopTimeout() time.Duration {
	var d time.Duration
	for _, w := range s.workers {
		w.mu.Lock()
		d = max(d, w.timeout)
		w.mu.Unlock()
	}
	return d
}

// close releases the actuators' resources (the systemd D-Bus connection).
func (s *serviceSet) close() {
	for _, w := range s.workers {
		if c, ok := w.act.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// fenceSelf stops renewing this node's lease until it has surely lapsed
// everywhere (two leases), so that every role it holds is dropped here at
// the lease's end and moved by the coordinator. It is the answer to a stop
// that cannot be confirmed: never release what may still run.
func (a *Agent) fenceSelf(reason string) {
	until := time.Now().Add(2*a.timing.Lease + a.timing.Renew)
	a.fenceUntil.Store(until.UnixNano())
	a.log.Warn("fencing: letting the lease lapse", "reason", reason, "until", until.Format(time.RFC3339Nano))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _ = a.Propose(ctx, &fsm.RecordEvent{Event: fsm.Event{Time: time.Now().UnixMilli(), Kind: fsm.EventService,
			Node: a.cfg.NodeID, Actor: a.cfg.NodeID, Message: "node fences itself (lease left to lapse): " + reason}})
	}()
	a.roleTrigger()
}
