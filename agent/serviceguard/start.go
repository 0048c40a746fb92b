package serviceguard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/agent/service"
)

// Args are the arguments after the binary that run the guard (a hidden
// command of cmd/harbormaster).
var Args = []string{"internal", "service-guard"}

// writeTimeout bounds one write to a guard's stdin: a guard that stopped
// reading must not block the agent.
const writeTimeout = 200 * time.Millisecond

// exitWait is how long Release waits for the guard to exit.
const exitWait = 2 * time.Second

// Guard is the agent's handle of one guard process. Safe for concurrent
// use.
type Guard struct {
	cmd         *exec.Cmd
	done        chan struct{}
	stopTimeout time.Duration

	mu       sync.Mutex
	w        *os.File // the write end of the guard's stdin; nil once released
	deadline time.Duration
	nextID   uint64
	waiting  map[uint64]chan error // starts waiting for their answer
	// runsStarts: the guard said "proto 2" (it understands start).
	runsStarts bool
}

// ErrNoStart is Start's error when the guard is of a version that cannot
// run starts: the caller runs the start itself.
var ErrNoStart = errors.New("service guard: this guard does not run starts (an older version)")

// Start starts the guard of one service instance: exe (the agent's own
// binary) with Args, in a session of its own, stderr as its stderr, the
// agent's environment (the hooks' env list may pass the agent's values
// through), and spec as its first line; once the guard is ready it sends
// deadline(), the lease's end at that moment (CLOCK_MONOTONIC). The guard
// runs until Release, or until it stopped the service (see the package
// doc).
func Start(exe string, spec Spec, stderr *os.File, deadline func() time.Duration) (*Guard, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	line, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("service guard: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("service guard: %w", err)
	}
	rr, rw, err := os.Pipe()
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("service guard: %w", err)
	}
	cmd := exec.Command(exe, Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Dir = r, rw, stderr, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	r.Close()
	rw.Close()
	if err != nil {
		w.Close()
		rr.Close()
		return nil, fmt.Errorf("service guard: start %s: %w", exe, err)
	}
	g := &Guard{cmd: cmd, done: make(chan struct{}), w: w, stopTimeout: spec.StopTimeout, waiting: map[uint64]chan error{}}
	go func() { _ = cmd.Wait(); close(g.done) }()
	if err := g.write(string(line) + "\n"); err != nil {
		rr.Close()
		g.kill()
		return nil, err
	}
	// Ready: the guard read the spec and catches the signals, so a
	// signal meant for the agent no longer reaches it unprepared.
	_ = rr.SetReadDeadline(time.Now().Add(readyTimeout))
	br := bufio.NewReader(rr)
	ready, err := br.ReadString('\n')
	if err != nil || ready != "ready\n" {
		rr.Close()
		g.kill()
		return nil, fmt.Errorf("service guard %s %v did not answer ready within %s (%v); its stderr is in the agent's log", exe, Args, readyTimeout, err)
	}
	// "proto 2" comes in the same write as "ready"; a guard of an older
	// version (the binary downgraded under a running agent) sends none
	// and cannot run starts.
	_ = rr.SetReadDeadline(time.Now().Add(protoWait))
	if proto, err := br.ReadString('\n'); err == nil && proto == protoLine {
		g.runsStarts = true
	}
	_ = rr.SetReadDeadline(time.Time{})
	go g.answers(rr, br)
	if err := g.Renew(deadline()); err != nil {
		g.kill()
		return nil, err
	}
	return g, nil
}

// readyTimeout bounds the guard's start (exec, Go's start-up, the spec).
const readyTimeout = 5 * time.Second

// protoWait bounds the wait for "proto 2" after "ready". The guard writes
// both lines in one write to a pipe (atomic below PIPE_BUF), so a current
// guard's line is there at once; only an older guard's absence waits.
const protoWait = 200 * time.Millisecond

// answerGrace is how long Start waits for the guard's answer after its
// context ended (and it sent "cancel"): the guard kills the start hook's
// process group at once, so the answer says the start is over.
const answerGrace = 2 * time.Second

// Start runs the service's start in the guard (see the package doc: the
// guard orders its own stop after it) and returns its result. It is bounded
// by ctx's deadline (the role's stop_timeout when ctx has none); when ctx
// ends first it tells the guard to cancel the start and waits for the
// answer, so that a start that returns has ended in the guard too. An
// error that says the guard went is a start whose outcome is unknown: the
// guard was killed (not by the protocol) or did not answer a cancel, and
// its start hook, in a process group of its own, may still run; the agent
// treats it as any failed start, and its stop, under the hooks' lock, stops
// what that hook launched. ErrNoStart: the guard cannot run starts.
func (g *Guard) Start(ctx context.Context) error {
	if !g.runsStarts {
		return ErrNoStart
	}
	timeout := g.stopTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if timeout <= 0 || ctx.Err() != nil {
		cause := context.Cause(ctx)
		if cause == nil {
			cause = context.DeadlineExceeded
		}
		return fmt.Errorf("service start not run: %w (%w)", service.ErrTimeout, cause)
	}
	g.mu.Lock()
	g.nextID++
	id := g.nextID
	ch := make(chan error, 1)
	g.waiting[id] = ch
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.waiting, id)
		g.mu.Unlock()
	}()
	if err := g.write(fmt.Sprintf("start %d %d\n", id, int64(timeout))); err != nil {
		return fmt.Errorf("service start not sent to its guard: %w", err)
	}
	select {
	case err := <-ch:
		return err
	case <-g.done:
		return g.goneErr()
	case <-ctx.Done():
	}
	cancelErr := g.write(fmt.Sprintf("cancel %d\n", id))
	select {
	case err := <-ch:
		if err == nil || errors.Is(err, service.ErrTimeout) {
			return err // nil: it finished as ctx ended
		}
		return fmt.Errorf("%w (%w)", err, service.ErrTimeout)
	case <-g.done:
		return g.goneErr()
	case <-time.After(answerGrace):
		return errors.Join(fmt.Errorf("service guard %d did not answer a canceled start within %s: %w", g.PID(), answerGrace, service.ErrTimeout), cancelErr)
	}
}

func (g *Guard) goneErr() error {
	return fmt.Errorf("service guard %d exited during the start; the start's outcome is unknown", g.PID())
}

// answers reads the guard's answers to starts until its stdout ends.
func (g *Guard) answers(rr *os.File, br *bufio.Reader) {
	defer rr.Close()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		id, aerr, ok := parseAnswer(strings.TrimSpace(line))
		if !ok {
			continue // not ours to judge; the guard logs to stderr
		}
		g.mu.Lock()
		ch := g.waiting[id]
		g.mu.Unlock()
		if ch != nil {
			select {
			case ch <- aerr:
			default:
			}
		}
	}
}

// parseAnswer parses "started ID", "start-failed ID MSG" or
// "start-timeout ID MSG" (an error wrapping service.ErrTimeout).
func parseAnswer(line string) (id uint64, err error, ok bool) {
	if v, found := strings.CutPrefix(line, "started "); found {
		id, perr := strconv.ParseUint(v, 10, 64)
		return id, nil, perr == nil
	}
	for _, verb := range []string{"start-failed ", "start-timeout "} {
		v, found := strings.CutPrefix(line, verb)
		if !found {
			continue
		}
		n, m, _ := strings.Cut(v, " ")
		id, perr := strconv.ParseUint(n, 10, 64)
		var msg string
		if json.Unmarshal([]byte(m), &msg) != nil {
			msg = m
		}
		err := errors.New(msg)
		if verb == "start-timeout " {
			err = fmt.Errorf("%s: %w", msg, service.ErrTimeout)
		}
		return id, err, perr == nil
	}
	return 0, nil, false
}

// PID is the guard's process id.
func (g *Guard) PID() int { return g.cmd.Process.Pid }

// Done is closed once the guard process exited (after Release, or after it
// stopped the service itself).
func (g *Guard) Done() <-chan struct{} { return g.done }

// Renew tells the guard the lease's new end (CLOCK_MONOTONIC, see Mono);
// it writes only when the deadline moved.
func (g *Guard) Renew(deadline time.Duration) error {
	g.mu.Lock()
	if deadline == g.deadline {
		g.mu.Unlock()
		return nil
	}
	prev := g.deadline
	g.deadline = deadline
	g.mu.Unlock()
	err := g.write(fmt.Sprintf("deadline %d\n", int64(deadline)))
	if errors.Is(err, errReleased) {
		return nil // released meanwhile: nothing to renew
	}
	if err != nil {
		// Not delivered: the next Renew with this deadline must write
		// it again, not take it for sent.
		g.mu.Lock()
		if g.deadline == deadline {
			g.deadline = prev
		}
		g.mu.Unlock()
	}
	return err
}

// errReleased is write's error once the guard was released.
var errReleased = errors.New("service guard: released")

// Release tells the guard to exit without acting (the agent stops the
// service itself, or another guard took over), closes its stdin and waits
// a little for it to exit; a guard that does not is killed. Idempotent.
func (g *Guard) Release() error {
	err := g.write("release\n")
	g.mu.Lock()
	w := g.w
	g.w = nil
	g.mu.Unlock()
	if w == nil {
		<-g.done
		return nil
	}
	w.Close()
	select {
	case <-g.done:
	case <-time.After(exitWait):
		g.kill()
		return errors.Join(err, fmt.Errorf("service guard %d did not exit on release; killed", g.PID()))
	}
	if err != nil && g.exited() {
		return nil // it had exited already: nothing to release
	}
	return err
}

func (g *Guard) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

func (g *Guard) kill() {
	g.mu.Lock()
	if g.w != nil {
		g.w.Close()
		g.w = nil
	}
	g.mu.Unlock()
	_ = g.cmd.Process.Kill()
	<-g.done
}

// write writes one line, bounded by writeTimeout.
func (g *Guard) write(s string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.w == nil {
		return errReleased
	}
	_ = g.w.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := io.WriteString(g.w, s); err != nil {
		return fmt.Errorf("service guard %d: %w", g.PID(), err)
	}
	return nil
}
