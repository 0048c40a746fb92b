// Package serviceact is the actuator of service roles: one worker per
// service role the node has a backend for (agent/service: hooks or a systemd
// unit) starts the service while act.MayAct allows and stops it as soon as
// it does not.
//
// Safety (DESIGN.md S3, S4): the release of a service role is committed only
// once its worker confirmed the stop (Releasable). A stop that fails or
// times out is never a release: the node fences itself (act.Node.Fence: it
// lets its lease lapse, which drops every role it holds), and the
// coordinator moves the role only after the lease surely ended plus the
// role's stop_timeout.
//
// A dead agent stops nothing, so each running service instance has a guard
// (Config.StartGuard, agent/serviceguard): a process of its own that the
// worker starts before the service, asks to run the service's start,
// renews with every lease renewal, and releases before it stops the service
// itself. When the agent is killed or frozen, the guard ends a start still
// running, then stops the service at the lease's end, before the
// coordinator may give the role to another node.
package serviceact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/agent/serviceguard"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// statusEvery is how often the worker asks an active service's backend
// whether it still runs, and starts it again if not.
const statusEvery = 10 * time.Second

// StopAhead is the act.MayAct margin of services: the holder starts
// stopping its services this long before its lease ends by its own clock.
const StopAhead = 50 * time.Millisecond

// Config is what the service actuator needs besides the node.
type Config struct {
	// Backends are the node's service backends, by role name.
	Backends map[string]service.Actuator
	// Tick is the backstop period of a pass (the lease renew interval).
	Tick time.Duration
	Log  *slog.Logger
	// OnActed, when set, is called after each successful start of a role
	// at an epoch (the failover's acted and announced phases).
	OnActed func(role string, epoch uint64, acted, announced time.Time)
	// StartGuard, when set, starts the guard of a service instance the
	// worker is about to start with back at env: it stops the service
	// with back's config, bounded by stopTimeout, once the lease's end
	// (CLOCK_MONOTONIC; deadline returns the latest, read once the guard
	// process is up) passes with no renewal or release. It returns nil,
	// nil for a backend that has no guard (a fake).
	StartGuard func(role string, back service.Actuator, env service.Env, stopTimeout time.Duration, deadline func() time.Duration) (Guard, error)
	// Mono is the guards' clock (CLOCK_MONOTONIC); default
	// serviceguard.Mono.
	Mono func() time.Duration
}

// Guard is the handle of one running guard (*serviceguard.Guard).
type Guard interface {
	// Renew moves the deadline (writes only when it moved).
	Renew(deadline time.Duration) error
	// Release makes the guard exit without acting.
	Release() error
	// Done is closed when the guard process exited.
	Done() <-chan struct{}
	// Start runs the service's start in the guard, so that the guard's
	// stop, if it comes, waits for it (serviceguard.Guard.Start).
	Start(ctx context.Context) error
}

// Actuator runs the node's service roles. Build it with New; Run runs it.
type Actuator struct {
	node act.Node
	cfg  Config
	wake chan struct{}
	// clock converts lease ends to the guards' deadlines.
	clock   serviceguard.Clock
	workers map[string]*worker // by role name; fixed after New (Replace swaps backends, not workers)
}

var _ act.Actuator = (*Actuator)(nil)

// worker drives one service.
type worker struct {
	role string
	wake chan struct{}

	mu sync.Mutex
	// back makes the calls; only the worker's goroutine calls it (and
	// Run's closeBackends once the workers ended).
	back service.Actuator
	// next replaces back at the worker's next call (Replace: a new entry
	// for the same instance, e.g. new hooks); nextStopped replaces it once
	// the service is confirmed stopped (a new mode or unit: the instance
	// running now is stopped the way it was started).
	next, nextStopped service.Actuator

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
	// cancelHook cancels a running start or status call when the target
	// turns to "not running" (a stop is never cancelled).
	cancelHook context.CancelFunc

	// guard is the dead-man of the running instance (nil: none), started
	// for guardEpoch with guardBack's config. deadline is the guard
	// deadline of the lease that last allowed the service (0: none).
	guard      Guard
	guardEpoch uint64
	guardBack  service.Actuator
	deadline   time.Duration
}

// New returns the actuator. It starts nothing.
func New(node act.Node, cfg Config) *Actuator {
	x := &Actuator{node: node, cfg: cfg, wake: make(chan struct{}, 1), workers: map[string]*worker{},
		clock: serviceguard.NewClock(cfg.Mono)}
	for name, b := range cfg.Backends {
		// unsure: a previous agent (crashed, restarted, or the node
		// rebooted with the service enabled) may have left it running.
		// The first pass stops it unless this node holds the role.
		x.workers[name] = &worker{role: name, back: b, wake: make(chan struct{}, 1), timeout: spec.DefaultStopTimeout, unsure: true}
	}
	return x
}

// When says when a backend given to Replace takes over.
type When int

const (
	// NextCall: a new entry for the same instance (e.g. new hooks): the
	// worker's next start, stop or status call uses it, so the next stop
	// of the running service does.
	NextCall When = iota
	// AfterStop: a new instance (the mode or the systemd unit changed: the
	// new backend would not stop what the old one started): the old
	// backend stays until the service is confirmed stopped.
	AfterStop
)

// Replace swaps the backend of a service role (a reloaded services entry),
// taking over at when; a call in flight finishes with the old one, and a
// service running now is not restarted. when is relative to the previous
// Replace (or New's backend). The dropped backend is closed (io.Closer).
// It fails for a role the node has no worker for (adding a service role
// needs a restart). Safe for concurrent use.
func (x *Actuator) Replace(role string, back service.Actuator, when When) error {
	w, ok := x.workers[role]
	if !ok {
		return fmt.Errorf("service role %s has no worker on this node; adding a service role needs a restart", role)
	}
	var dropped service.Actuator // never used: only the worker takes one in
	w.mu.Lock()
	if when == AfterStop || w.nextStopped != nil {
		// A new instance, or another entry for the new instance that
		// waits for the running one to stop.
		dropped, w.nextStopped = w.nextStopped, back
	} else {
		dropped, w.next = w.next, back
	}
	w.mu.Unlock()
	closeBackend(dropped)
	act.Poke(w.wake)
	return nil
}

// backend returns the backend of the worker's next call, taking in a
// replacement (Replace) when it may. It runs on the worker's goroutine, so
// the backend it drops is no longer in use and is closed.
func (x *Actuator) backend(w *worker) service.Actuator {
	w.mu.Lock()
	var old []service.Actuator
	if w.next != nil {
		old = append(old, w.back)
		w.back, w.next = w.next, nil
	}
	if w.nextStopped != nil && !w.running && !w.unsure {
		old = append(old, w.back)
		w.back, w.nextStopped = w.nextStopped, nil
	}
	back := w.back
	w.mu.Unlock()
	for _, b := range old {
		closeBackend(b)
	}
	if len(old) > 0 {
		x.cfg.Log.Info("service entry replaced by a config reload; the next start and stop use it", "role", w.role)
	}
	return back
}

func closeBackend(b service.Actuator) {
	if c, ok := b.(io.Closer); ok {
		_ = c.Close()
	}
}

// Type implements act.Actuator.
func (x *Actuator) Type() spec.RoleType { return spec.TypeService }

// Wake implements act.Actuator.
func (x *Actuator) Wake() { act.Poke(x.wake) }

// Roles lists the service roles this node has a backend for, sorted.
func (x *Actuator) Roles() []string {
	out := make([]string, 0, len(x.workers))
	for name := range x.workers {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Active lists the roles whose service this node runs now, sorted.
func (x *Actuator) Active() []string {
	var out []string
	for name, w := range x.workers {
		w.mu.Lock()
		if w.running && w.want {
			out = append(out, name)
		}
		w.mu.Unlock()
	}
	sort.Strings(out)
	return out
}

// stopped reports whether this node runs nothing for role: no backend, or
// its worker confirmed the stop.
func (x *Actuator) stopped(role string) bool {
	w, ok := x.workers[role]
	if !ok {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.running && !w.unsure
}

// Releasable implements act.Actuator: the release waits for the worker's
// confirmed stop (the worker nudges the node when it has one).
func (x *Actuator) Releasable(_ context.Context, _ *fsm.State, role string) bool {
	return x.stopped(role)
}

// Quiesce implements act.Actuator: it waits until every worker confirmed
// its stop, at most the longest stop timeout plus a second.
func (x *Actuator) Quiesce(ctx context.Context) {
	x.Wake()
	ctx, cancel := context.WithTimeout(ctx, x.maxStopTimeout()+time.Second)
	defer cancel()
	for {
		all := true
		for name := range x.workers {
			all = all && x.stopped(name)
		}
		if all {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// maxStopTimeout is the longest stop timeout among the node's services.
func (x *Actuator) maxStopTimeout() time.Duration {
	var d time.Duration
	for _, w := range x.workers {
		w.mu.Lock()
		d = max(d, w.timeout)
		w.mu.Unlock()
	}
	return d
}

// Run implements act.Actuator: the workers and the target loop. When ctx
// ends, each worker stops a service it still runs (an exit without a
// graceful release: the role moves after the lease and the stop timeout,
// and the service must be gone by then); then the backends are closed.
func (x *Actuator) Run(ctx context.Context) error {
	defer x.closeBackends()
	if len(x.workers) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, w := range x.workers {
		g.Go(func() error { x.work(gctx, w); return nil })
	}
	g.Go(func() error { x.targetLoop(gctx); return nil })
	return g.Wait()
}

func (x *Actuator) closeBackends() {
	for _, w := range x.workers {
		w.mu.Lock()
		backs := []service.Actuator{w.back, w.next, w.nextStopped}
		w.mu.Unlock()
		for _, b := range backs {
			closeBackend(b)
		}
	}
}

// targetLoop sets each worker's target on every state change, wake-up and
// tick, and again StopAhead before the lease ends.
func (x *Actuator) targetLoop(ctx context.Context) {
	for {
		st, changed := x.node.State()
		auth := x.node.Authority()
		x.update(st, auth)
		wait := x.cfg.Tick
		if left := auth.Left(StopAhead); left > 0 {
			wait = min(wait, left)
		} else if auth.LeaseValid {
			wait = min(wait, time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-x.wake:
		case <-time.After(wait):
		}
	}
}

// update computes the targets: a worker's service runs while MayAct allows
// (with the StopAhead margin) and the role is a service role of the spec.
func (x *Actuator) update(st *fsm.State, auth act.Authority) {
	type renewal struct {
		g        Guard
		deadline time.Duration
		role     string
	}
	var renew []renewal
	deadline := time.Duration(0)
	if auth.LeaseValid {
		deadline = x.clock.Deadline(auth.LeaseUntil)
	}
	for name, w := range x.workers {
		r, inSpec := st.Spec.Role(name)
		as := st.Assignment(name)
		want := inSpec && r.Type == spec.TypeService && auth.MayAct(as, StopAhead)
		w.mu.Lock()
		changed := w.want != want || (want && w.epoch != as.Epoch)
		w.want = want
		if want {
			w.epoch = as.Epoch
			w.deadline = deadline
			if w.guard != nil {
				renew = append(renew, renewal{w.guard, deadline, name})
			}
		}
		if inSpec {
			w.timeout = r.StopGrace()
		}
		if !want && w.cancelHook != nil {
			w.cancelHook() // a start still running must not outlive the role
		}
		w.mu.Unlock()
		if changed {
			act.Poke(w.wake)
		}
	}
	for _, r := range renew {
		if err := r.g.Renew(r.deadline); err != nil {
			x.cfg.Log.Warn("service guard not renewed", "role", r.role, "err", err)
		}
	}
}

// work makes one service match its target. Calls get their own contexts
// (not the loop's), so an agent shutting down never kills a stop halfway:
// Quiesce waits for the stops instead.
func (x *Actuator) work(ctx context.Context, w *worker) {
	backoff := time.Duration(0)
	lastStatus := time.Now()
	for {
		w.mu.Lock()
		want, running, unsure, epoch, timeout := w.want, w.running, w.unsure, w.epoch, w.timeout
		w.mu.Unlock()
		env := service.Env{Role: w.role, Node: x.node.ID(), Epoch: epoch}
		wait := statusEvery
		switch {
		case want && (!running || unsure):
			if err := x.start(w, env, timeout); err != nil {
				backoff = min(max(2*backoff, time.Second), 30*time.Second)
				wait = backoff
			} else {
				backoff = 0
				lastStatus = time.Now()
			}
		case !want && (running || unsure):
			if err := x.stop(w, env, timeout); err != nil {
				wait = max(timeout, time.Second) // retry the stop
			}
		case want && running && time.Since(lastStatus) >= statusEvery:
			lastStatus = time.Now()
			if x.foundStopped(w, env, timeout) {
				continue
			}
		}
		if want && running && !unsure {
			// A new epoch, or a reloaded entry, while the service runs:
			// the guard must stop it as the agent now would.
			if err := x.ensureGuard(w, x.backend(w), env, timeout); err != nil {
				wait = min(wait, time.Second)
			}
		}
		// The guard of this pass (one may have started or gone above).
		var guardDone <-chan struct{}
		w.mu.Lock()
		if w.guard != nil {
			guardDone = w.guard.Done()
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			x.stopOnExit(w)
			return
		case <-w.wake:
		case <-guardDone:
			x.guardExited(w)
		case <-time.After(wait):
		}
	}
}

// ensureGuard makes sure the running instance has a guard for env's epoch
// and back's config: it starts a new one, then releases the old one (so
// that the service never runs unguarded). A guard is kept for the instance
// while both stay the same; a new epoch or entry gets a new guard rather
// than a message to the old one, so a guard's spec never changes.
func (x *Actuator) ensureGuard(w *worker, back service.Actuator, env service.Env, timeout time.Duration) error {
	if x.cfg.StartGuard == nil {
		return nil
	}
	w.mu.Lock()
	old, same := w.guard, w.guard != nil && w.guardEpoch == env.Epoch && w.guardBack == back
	deadline := w.deadline
	w.mu.Unlock()
	if same || deadline == 0 {
		return nil
	}
	sent := deadline
	latestDeadline := func() time.Duration {
		w.mu.Lock()
		defer w.mu.Unlock()
		sent = w.deadline
		return sent
	}
	g, err := x.cfg.StartGuard(w.role, back, env, timeout, latestDeadline)
	if err != nil {
		x.cfg.Log.Error("service guard not started; the service is not started without it", "role", w.role, "epoch", env.Epoch, "err", err)
		x.event(w.role, env.Epoch, fmt.Sprintf("guard not started: %v", err))
		return fmt.Errorf("service guard: %w", err)
	}
	if g == nil {
		return nil
	}
	w.mu.Lock()
	w.guard, w.guardEpoch, w.guardBack = g, env.Epoch, back
	latest := w.deadline
	w.mu.Unlock()
	// A renewal while the guard started went to the old guard (or none).
	if latest != sent {
		if err := g.Renew(latest); err != nil {
			x.cfg.Log.Warn("service guard not renewed", "role", w.role, "err", err)
		}
	}
	if old != nil {
		x.releaseGuard(w.role, old)
	}
	return nil
}

// dropGuard releases the worker's guard: the agent is about to stop the
// service itself (or found it stopped).
func (x *Actuator) dropGuard(w *worker) {
	w.mu.Lock()
	g := w.guard
	w.guard, w.guardBack = nil, nil
	w.mu.Unlock()
	if g != nil {
		x.releaseGuard(w.role, g)
	}
}

func (x *Actuator) releaseGuard(role string, g Guard) {
	if err := g.Release(); err != nil {
		x.cfg.Log.Warn("service guard release failed", "role", role, "err", err)
	}
}

// guardExited handles a guard that exited on its own: it stopped the
// service at the lease's end (the agent was frozen, or did not pass a
// renewal on in time), or it died. Either way the service's state is
// unknown: the next pass starts it again if the node still may run it
// (with a new guard), or stops it.
func (x *Actuator) guardExited(w *worker) {
	w.mu.Lock()
	g, epoch := w.guard, w.epoch
	if g != nil {
		select {
		case <-g.Done():
			w.guard, w.guardBack = nil, nil
			w.unsure = w.unsure || w.running
		default:
			g = nil
		}
	}
	w.mu.Unlock()
	if g == nil {
		return
	}
	x.cfg.Log.Warn("service guard exited without a release (it stopped the service at the lease's end, or died); the service is checked again", "role", w.role, "epoch", epoch)
	x.event(w.role, epoch, "guard exited without a release; the service is started or stopped again")
	// The target first: an agent thawed after SIGSTOP still has the want
	// of before the freeze, and must not start the service on it.
	st, _ := x.node.State()
	x.update(st, x.node.Authority())
}

// start runs the backend's Start. running is set before it runs: from then
// on a release waits for a confirmed stop (a start halfway may have started
// the service).
func (x *Actuator) start(w *worker, env service.Env, timeout time.Duration) error {
	back := x.backend(w)
	// The guard first: an agent killed during the start hook leaves a
	// half-started service behind.
	if err := x.ensureGuard(w, back, env, timeout); err != nil {
		return err
	}
	hctx, cancel := w.callContext(timeout)
	w.mu.Lock()
	w.running = true
	g := w.guard
	w.mu.Unlock()
	start := func(c context.Context) error { return back.Start(c, env) }
	if g != nil {
		// Through the guard: an agent killed during the start leaves
		// the start with the guard, which ends it before its own stop.
		start = func(c context.Context) error {
			err := g.Start(c)
			if errors.Is(err, serviceguard.ErrNoStart) {
				return back.Start(c, env) // a guard of an older version
			}
			return err
		}
	}
	err := x.call(hctx, w, opStart, start)
	cancel()
	w.mu.Lock()
	w.unsure = err != nil // a failed start is retried (and undone by a stop if the role goes)
	w.mu.Unlock()
	return err
}

// stop runs the backend's Stop; a stop that fails fences the node (once per
// epoch), and either way the node is nudged (its release waits for this).
func (x *Actuator) stop(w *worker, env service.Env, timeout time.Duration) error {
	back := x.backend(w)
	x.dropGuard(w)
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := x.call(sctx, w, opStop, func(c context.Context) error { return back.Stop(c, env) })
	cancel()
	w.mu.Lock()
	if err == nil {
		w.running, w.unsure = false, false
	} else {
		w.unsure = true
	}
	fence := err != nil && w.fencedEpoch != env.Epoch
	if fence {
		w.fencedEpoch = env.Epoch
	}
	w.mu.Unlock()
	if fence {
		x.node.Fence(fmt.Sprintf("stop of service %s failed: %v", w.role, err))
	}
	x.node.Nudge()
	return err
}

// foundStopped asks the backend whether the service still runs; when it
// does not, the worker forgets it started it, so that the next pass starts
// it again.
func (x *Actuator) foundStopped(w *worker, env service.Env, timeout time.Duration) bool {
	back := x.backend(w)
	sctx, cancel := w.callContext(timeout)
	active, err := back.Status(sctx, env)
	cancel()
	if err != nil || active {
		return false
	}
	x.cfg.Log.Warn("service is not running on its active node; starting it again", "role", w.role, "epoch", env.Epoch)
	x.event(w.role, env.Epoch, "found stopped on its active node; starting it again")
	w.mu.Lock()
	w.running = false
	w.mu.Unlock()
	x.dropGuard(w)
	return true
}

// callContext bounds a start or status call by timeout and lets update
// cancel it when the service must stop.
func (w *worker) callContext(timeout time.Duration) (context.Context, context.CancelFunc) {
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

// stopOnExit stops a service the agent runs when the agent exits without a
// graceful release of it.
func (x *Actuator) stopOnExit(w *worker) {
	w.mu.Lock()
	running, unsure, epoch, timeout := w.running, w.unsure, w.epoch, w.timeout
	w.mu.Unlock()
	if !running && !unsure {
		x.dropGuard(w)
		return
	}
	back := x.backend(w)
	x.dropGuard(w)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := back.Stop(ctx, service.Env{Role: w.role, Node: x.node.ID(), Epoch: epoch}); err != nil {
		x.cfg.Log.Warn("stop on exit failed", "role", w.role, "err", err)
		return
	}
	w.mu.Lock()
	w.running, w.unsure = false, false
	w.mu.Unlock()
	x.cfg.Log.Info("service stopped on exit", "role", w.role)
}

// op is a backend call that changes the service.
type op int

const (
	opStart op = iota
	opStop
)

// call runs one start or stop bounded by ctx, logs it and records an event.
func (x *Actuator) call(ctx context.Context, w *worker, o op, f func(context.Context) error) error {
	what, done := "start", "started"
	if o == opStop {
		what, done = "stop", "stopped"
	}
	begin := time.Now()
	err := f(ctx)
	w.mu.Lock()
	epoch := w.epoch
	w.mu.Unlock()
	took := time.Since(begin).Round(time.Millisecond)
	if err != nil {
		x.cfg.Log.Warn("service "+what+" failed", "role", w.role, "epoch", epoch, "took", took, "err", err)
		msg := fmt.Sprintf("%s failed after %s: %v", what, took, err)
		if o == opStop && errors.Is(err, service.ErrTimeout) {
			msg = fmt.Sprintf("stop timed out after %s (stop_timeout); hook killed, the node fences itself: %v", took, err)
		}
		x.event(w.role, epoch, msg)
		return err
	}
	x.cfg.Log.Info("service "+done, "role", w.role, "epoch", epoch, "took", took)
	x.event(w.role, epoch, fmt.Sprintf("%s in %s", done, took))
	if o == opStart && x.cfg.OnActed != nil {
		now := time.Now()
		x.cfg.OnActed(w.role, epoch, now, now)
	}
	return nil
}

func (x *Actuator) event(role string, epoch uint64, msg string) {
	x.node.Record(fsm.Event{Time: time.Now().UnixMilli(), Kind: fsm.EventService, Node: x.node.ID(),
		Actor: x.node.ID(), Role: role, Epoch: epoch, Message: msg})
}
