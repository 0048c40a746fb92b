// Package serviceguard is the dead-man of a running service: a process,
// started by the agent next to each service instance it runs, that stops
// the service at the end of the agent's lease when the agent did not (it
// was killed with SIGKILL, or frozen by SIGSTOP). Without it a dead agent
// stops nothing, and the next holder, which starts the service once the
// old lease surely ended plus the role's stop_timeout, would run a second
// active instance (DESIGN.md S1, S3).
//
// The same process, given a spec with Redis set, is the dead-man of the
// node's Redis (agent/redisact): its "stop" is the Redis's write fence,
// armed at the deadline when the agent did not arm it. See redis.go.
//
// # Protocol
//
// The agent runs its own binary as `harbormaster internal service-guard`
// in a session of its own (a SIGKILL of the agent's process group does not
// reach it), with the agent's stderr and environment, and writes to its
// stdin, one line each (the guard answers "ready" on its stdout once it
// read the spec and catches the signals below):
//   - first, the Spec as JSON: the service's config entry, its Env and the
//     stop timeout;
//   - once the guard answered "ready", "deadline N": the lease's end, N
//     nanoseconds of CLOCK_MONOTONIC (the same clock in every process of the
//     machine), and again whenever the lease was renewed. The first deadline
//     is sent after the guard started (which may take a while on a busy
//     machine), never in the spec: a deadline that passed while the guard
//     started would make it stop a service the agent holds;
//   - "start ID N": run the service's Start (the start hook, or the unit's
//     start) bounded by N nanoseconds; the guard answers "started ID",
//     "start-failed ID MSG" or "start-timeout ID MSG" (MSG a JSON string;
//     timeout: the start ran out of time or was canceled) on its stdout. The agent
//     starts the service through its guard, not itself, so that the guard
//     orders its own stop after the start: a start hook left running by a
//     killed agent would otherwise launch the service after the guard's
//     stop found nothing to stop, and nobody would stop it (chaos seed
//     147025). Starts run one at a time, in order;
//   - "cancel ID": end that start (its hook is killed with its process
//     group) and answer it;
//   - "release" when the agent stops the service itself (or hands the
//     instance to a new guard): the guard ends any start still running and
//     exits without acting.
//
// When the deadline passes with no newer one (the agent is frozen, or its
// lease lapsed), or stdin ends without "release" (the agent died) and then
// the deadline passes, the guard ends any start still running (killing its
// hook's process group) and waits for it, builds the service's backend as
// the agent does (agent/service.New), runs its Stop bounded by the stop
// timeout (a hook still running then is killed with its process group),
// logs one line saying what it did and why, and exits. It catches SIGTERM,
// SIGINT and SIGHUP and does nothing with them: only the protocol ends it
// (and SIGKILL, such as systemd's final one). Caught, not ignored: an
// ignored signal stays ignored across exec, and the service its start hook
// launches must still stop on SIGTERM.
package serviceguard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/agent/service"
)

// Spec is the guard's first line: what it needs to stop the service exactly
// as the agent would.
type Spec struct {
	// Role is the service role's name.
	Role string `json:"role"`
	// Service is the node's config entry of the role (hooks with their
	// env list, or the systemd unit).
	Service service.Config `json:"service"`
	// Env is what the hooks (or the unit) see: role, node, epoch.
	Env service.Env `json:"env"`
	// StopTimeout bounds the stop (the role's stop_timeout).
	StopTimeout time.Duration `json:"stop_timeout_ns"`
	// Redis, when set, makes this the guard of the node's Redis (the
	// redis-master role, agent/redisact) instead of a service's: its
	// "stop" arms the Redis's write fence (redisctl.Client.PauseWrites),
	// retried until it holds or StopTimeout ends; Service and Env are
	// unused. See redis.go.
	Redis *redisctl.Config `json:"redis,omitempty"`
}

// validate checks what the guard cannot do without.
func (s Spec) validate() error {
	if s.Role == "" {
		return errors.New("spec: role is empty")
	}
	if s.StopTimeout <= 0 {
		return fmt.Errorf("spec: stop_timeout_ns %d is not positive", s.StopTimeout)
	}
	if s.Redis != nil {
		return s.Redis.Validate("redis")
	}
	return s.Service.Validate("service")
}

// acted is the guard's log line once it acted (ok) or failed to; gone is
// set when the agent went before it gave any deadline.
func (s Spec) acted(ok, gone bool) string {
	if s.Redis != nil {
		why := "redis guard: the lease ended and the agent did not fence its Redis"
		if gone {
			why = "redis guard: the agent went while it guarded no promotion"
		}
		if ok {
			return why + "; the guard paused its Redis's writes"
		}
		return why + "; the guard's fence failed"
	}
	if ok {
		return "service guard: the lease ended and the agent did not stop the service; the guard stopped it"
	}
	return "service guard: the lease ended and the agent did not stop the service; the guard's stop failed"
}

// Mono is CLOCK_MONOTONIC now, the clock of deadlines.
func Mono() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err)) // cannot fail on Linux
	}
	return time.Duration(ts.Nano())
}

// Clock converts instants of Go's monotonic clock to deadlines on the
// guards' clock (Mono): one instant read on both, the guards' first, so a
// conversion errs early by the time between the two readings, never late,
// and the same instant converts to the same deadline every time (a guard
// is written to only when the lease's end moved).
type Clock struct {
	monoBase time.Duration
	wallBase time.Time
}

// NewClock reads mono (Mono when nil), then Go's clock.
func NewClock(mono func() time.Duration) Clock {
	if mono == nil {
		mono = Mono
	}
	c := Clock{monoBase: mono()}
	c.wallBase = time.Now()
	return c
}

// Deadline is t on the guards' clock.
func (c Clock) Deadline(t time.Time) time.Duration { return c.monoBase + t.Sub(c.wallBase) }

// Base is the instant of Go's clock the conversion was anchored at.
func (c Clock) Base() time.Time { return c.wallBase }

// Outcome is how a guard ended.
type Outcome int

const (
	// Released: the agent said release; the guard did nothing.
	Released Outcome = iota
	// AgentGone: stdin ended without release (the agent died) and the
	// deadline passed; the guard stopped the service.
	AgentGone
	// NoRenewal: the deadline passed with stdin open (the agent is frozen,
	// or its lease lapsed without its own stop); the guard stopped the
	// service.
	NoRenewal
)

func (o Outcome) String() string {
	switch o {
	case Released:
		return "released"
	case AgentGone:
		return "agent gone"
	case NoRenewal:
		return "no renewal"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// protoLine follows "ready": the guard understands start and cancel. A
// guard of an older version sends none, and its agent runs starts itself.
const protoLine = "proto 2\n"

// msg is one line read after the spec.
type msg struct {
	deadline time.Duration // > 0: a renewal
	start    *startReq
	cancel   uint64 // > 0: cancel that start
	release  bool
	eof      bool
	err      error
}

// startReq is a "start ID N" line.
type startReq struct {
	id      uint64
	timeout time.Duration
}

// starter runs the agent's start requests one at a time, in order, and
// answers each on out.
type starter struct {
	back service.Actuator
	env  service.Env
	out  io.Writer
	log  *slog.Logger

	reqs chan startReq
	done chan struct{} // closed when run returned

	mu       sync.Mutex
	closed   bool
	canceled map[uint64]bool               // canceled before they ran
	taken    uint64                        // the highest id run taken up
	running  map[uint64]context.CancelFunc // the one running
	outMu    sync.Mutex
}

func newStarter(back service.Actuator, env service.Env, out io.Writer, log *slog.Logger) *starter {
	s := &starter{back: back, env: env, out: out, log: log, reqs: make(chan startReq, 64),
		done: make(chan struct{}), canceled: map[uint64]bool{}, running: map[uint64]context.CancelFunc{}}
	go s.run()
	return s
}

func (s *starter) run() {
	defer close(s.done)
	for r := range s.reqs {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		s.mu.Lock()
		if s.canceled[r.id] || s.closed {
			cancel()
		}
		delete(s.canceled, r.id)
		s.taken = max(s.taken, r.id)
		s.running[r.id] = cancel
		s.mu.Unlock()
		var err error
		if ctx.Err() != nil {
			err = fmt.Errorf("start canceled before it ran: %w", service.ErrTimeout)
		} else {
			err = s.back.Start(ctx, s.env)
		}
		s.mu.Lock()
		delete(s.running, r.id)
		s.mu.Unlock()
		cancel()
		s.answer(r.id, err)
	}
}

// answer writes the start's result; a write that fails (the agent is gone)
// is only logged.
func (s *starter) answer(id uint64, err error) {
	line := fmt.Sprintf("started %d\n", id)
	if err != nil {
		m, _ := json.Marshal(err.Error())
		verb := "start-failed"
		if errors.Is(err, service.ErrTimeout) {
			verb = "start-timeout"
		}
		line = fmt.Sprintf("%s %d %s\n", verb, id, m)
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if _, werr := io.WriteString(s.out, line); werr != nil {
		s.log.Debug("service guard: answer to a start not delivered", "id", id, "err", werr)
	}
}

// submit queues a start; after close it is answered as canceled.
func (s *starter) submit(r startReq) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.answer(r.id, fmt.Errorf("start refused: the guard is stopping the service: %w", service.ErrTimeout))
		return
	}
	select {
	case s.reqs <- r:
	default:
		s.answer(r.id, errors.New("start refused: too many starts queued in the guard"))
	}
}

// cancel ends start id: at once when it runs, before it runs when queued.
func (s *starter) cancel(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.running[id]; ok {
		c()
		return
	}
	if id > s.taken {
		s.canceled[id] = true // queued, or not read yet
	} // else: it ended already (its answer crossed the cancel)
}

// closeAndWait cancels every start, running or queued, and returns once
// none runs (whatever a start hook would launch is launched, or never will
// be), or once ctx ends.
func (s *starter) closeAndWait(ctx context.Context) {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for _, c := range s.running {
			c()
		}
		close(s.reqs)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-ctx.Done():
		s.log.Error("service guard: a canceled start did not end within the stop's budget; stopping anyway")
	}
}

// Watch runs the guard's loop on in (after the spec line): it waits for
// the first deadline, runs the starts the agent asks for (answering each
// on out), follows the renewals until release (then ends any start and
// returns Released, calling no Stop), or until the deadline passes; then it
// ends any start still running, waits for it, calls back.Stop bounded by
// spec.StopTimeout and returns why, with Stop's error. now is the
// deadlines' clock (Mono). A malformed line counts as the end of stdin: the
// guard acts at the last deadline it had, at once when it had none. The
// goroutine reading in ends when in does.
func Watch(in *bufio.Reader, out io.Writer, spec Spec, back service.Actuator, now func() time.Duration, log *slog.Logger) (Outcome, error) {
	msgs := make(chan msg, 1)
	go read(in, msgs)
	starts := newStarter(back, spec.Env, out, log)
	defer func() {
		// On release, or after the stop: a start that will not end
		// does not keep the guard from exiting.
		ctx, cancel := context.WithTimeout(context.Background(), spec.StopTimeout)
		starts.closeAndWait(ctx)
		cancel()
	}()
	var deadline time.Duration // 0 until the first deadline line
	gone := false
	why := "no renewal before the lease's end (the agent is frozen or lost its lease)"
	// take applies one line; it reports a release.
	take := func(m msg) bool {
		switch {
		case m.release:
			return true
		case m.start != nil:
			starts.submit(*m.start)
		case m.cancel > 0:
			starts.cancel(m.cancel)
		case m.eof || m.err != nil:
			gone, msgs = true, nil // act at the deadline
			why = "stdin closed without release (the agent died)"
			if m.err != nil {
				why = fmt.Sprintf("bad line from the agent (%v)", m.err)
			}
		default:
			deadline = m.deadline
		}
		return false
	}
	for {
		wait := time.Duration(1<<63 - 1)
		switch {
		case deadline > 0:
			wait = max(deadline-now(), 0)
		case gone:
			wait = 0 // the agent went before it sent a deadline
		}
		timer := time.NewTimer(wait)
		select {
		case m := <-msgs:
			timer.Stop()
			if take(m) {
				return Released, nil
			}
			continue
		case <-timer.C:
		}
		if now() < deadline {
			continue // woke early
		}
		// A line that came along with the deadline wins.
		select {
		case m := <-msgs:
			if take(m) {
				return Released, nil
			}
			if now() < deadline {
				continue
			}
		default:
		}
		out := NoRenewal
		if gone {
			out = AgentGone
		}
		late := time.Duration(0)
		if deadline > 0 {
			late = now() - deadline
		}
		// A start still running (the agent died during its start hook)
		// must end before the stop, or it would launch the service after
		// the stop found nothing to stop.
		// The wait counts against the stop's budget, for half of it at
		// most: a hook that does not die (uninterruptible sleep) cannot
		// put the stop off past the lease's end plus stop_timeout.
		ctx, cancel := context.WithTimeout(context.Background(), spec.StopTimeout)
		begin := time.Now()
		wctx, wcancel := context.WithTimeout(ctx, spec.StopTimeout/2)
		starts.closeAndWait(wctx)
		wcancel()
		err := back.Stop(ctx, spec.Env)
		cancel()
		took := time.Since(begin).Round(time.Millisecond)
		l := log.With("role", spec.Role, "epoch", spec.Env.Epoch, "reason", why, "late", late.Round(time.Millisecond), "took", took)
		if spec.Redis != nil {
			l = log.With("redis", spec.Redis.Address, "reason", why, "late", late.Round(time.Millisecond), "took", took)
		}
		if err != nil {
			l.Error(spec.acted(false, deadline == 0), "err", err)
		} else {
			l.Warn(spec.acted(true, deadline == 0))
		}
		return out, err
	}
}

// read sends each line of in as a msg, then the end (eof or an error).
func read(in *bufio.Reader, out chan<- msg) {
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				out <- msg{eof: true}
			} else {
				out <- msg{err: err}
			}
			return
		}
		m := parse(strings.TrimSpace(line))
		out <- m
		if m.err != nil {
			return
		}
	}
}

func parse(line string) msg {
	if line == "release" {
		return msg{release: true}
	}
	if v, ok := strings.CutPrefix(line, "deadline "); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err == nil && n > 0 {
			return msg{deadline: time.Duration(n)}
		}
	}
	if v, ok := strings.CutPrefix(line, "start "); ok {
		id, n, ok := strings.Cut(v, " ")
		i, err1 := strconv.ParseUint(id, 10, 64)
		t, err2 := strconv.ParseInt(n, 10, 64)
		if ok && err1 == nil && err2 == nil && i > 0 && t > 0 {
			return msg{start: &startReq{id: i, timeout: time.Duration(t)}}
		}
	}
	if v, ok := strings.CutPrefix(line, "cancel "); ok {
		if i, err := strconv.ParseUint(v, 10, 64); err == nil && i > 0 {
			return msg{cancel: i}
		}
	}
	return msg{err: fmt.Errorf("unknown line %q (want \"deadline N\", \"start ID N\", \"cancel ID\" or \"release\")", line)}
}

// Main is the guard process's main: it catches and drops SIGTERM, SIGINT
// and SIGHUP (only the protocol ends a guard: a signal meant for the
// agent, such as a Ctrl-C in its terminal, must not take the dead-man with
// it) and SIGPIPE (a closed stdout or stderr turns writes into errors),
// reads the spec from in, builds the service's backend
// (agent/service.New), says "ready" on out (Start waits for it), and runs
// Watch with the machine's monotonic clock, answering starts on out and
// logging to stderr. The signals are caught rather than ignored, so the
// hooks it runs, and the service they launch, get them at their defaults.
func Main(in io.Reader, out, stderr io.Writer) error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		for range sigs {
		}
	}()
	component := "service-guard"
	r := bufio.NewReader(in)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("service guard: no spec on stdin: %w", err)
	}
	var spec Spec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("service guard: spec: %w", err)
	}
	if err := spec.validate(); err != nil {
		return fmt.Errorf("service guard: %w", err)
	}
	var back service.Actuator
	if spec.Redis != nil {
		back, err = newRedisFence(*spec.Redis)
		component = "redis-guard"
	} else {
		back, err = service.New(spec.Role, spec.Service)
	}
	if err != nil {
		return fmt.Errorf("service guard: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", component, "pid", unix.Getpid())
	if c, ok := back.(io.Closer); ok {
		defer c.Close()
	}
	// "ready", exactly, first: an agent of an older version reads those six
	// bytes and nothing more. "proto 2" then tells a current agent that
	// this guard runs starts.
	if _, err := io.WriteString(out, "ready\n"+protoLine); err != nil {
		return fmt.Errorf("service guard: %w", err)
	}
	_, err = Watch(r, out, spec, back, Mono, log)
	return err
}
