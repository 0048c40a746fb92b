package serviceguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
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
	cmd  *exec.Cmd
	done chan struct{}

	mu       sync.Mutex
	w        *os.File // the write end of the guard's stdin; nil once released
	deadline time.Duration
}

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
	defer rr.Close()
	cmd := exec.Command(exe, Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Dir = r, rw, stderr, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	r.Close()
	rw.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("service guard: start %s: %w", exe, err)
	}
	g := &Guard{cmd: cmd, done: make(chan struct{}), w: w}
	go func() { _ = cmd.Wait(); close(g.done) }()
	if err := g.write(string(line) + "\n"); err != nil {
		g.kill()
		return nil, err
	}
	// Ready: the guard read the spec and ignores the signals, so a
	// signal meant for the agent no longer reaches it unprepared.
	_ = rr.SetReadDeadline(time.Now().Add(readyTimeout))
	buf := make([]byte, len("ready\n"))
	if _, err := io.ReadFull(rr, buf); err != nil || string(buf) != "ready\n" {
		g.kill()
		return nil, fmt.Errorf("service guard %s %v did not answer ready within %s (%v); its stderr is in the agent's log", exe, Args, readyTimeout, err)
	}
	if err := g.Renew(deadline()); err != nil {
		g.kill()
		return nil, err
	}
	return g, nil
}

// readyTimeout bounds the guard's start (exec, Go's start-up, the spec).
const readyTimeout = 5 * time.Second

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
	g.deadline = deadline
	g.mu.Unlock()
	err := g.write(fmt.Sprintf("deadline %d\n", int64(deadline)))
	if errors.Is(err, errReleased) {
		return nil // released meanwhile: nothing to renew
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
