package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/internal/childenv"
)

const (
	// outputTail is how much of a hook's output (the end) is kept for errors.
	outputTail = 4096
	// outputGrace is how long a call waits, after the hook exited or was
	// killed, for the rest of its output: a daemon it left behind may hold
	// the pipe open for ever.
	outputGrace = 200 * time.Millisecond
	// lsbInactive is the LSB status exit code for "program is not running".
	lsbInactive = 3
)

// Hooks runs the start, stop and status commands of a Config in hooks mode.
// It holds no state: it is safe for concurrent use.
type Hooks struct {
	start, stop, status []string
	env                 []string // the config's env list
}

// NewHooks returns the hooks actuator for c, which should be valid.
func NewHooks(c Config) *Hooks {
	return &Hooks{start: c.Start, stop: c.Stop, status: c.Status, env: c.Env}
}

// Start runs the start hook and returns when it exited. Processes it left
// running (the daemon) are kept, unless ctx ends first: then its whole
// process group is killed and the error wraps ErrTimeout.
func (h *Hooks) Start(ctx context.Context, env Env) error {
	_, err := runHook(ctx, "start", h.start, h.childEnv(env), exitZero)
	return err
}

// Stop runs the stop hook; on timeout its process group is killed and the
// error wraps ErrTimeout. The service itself may then still run.
func (h *Hooks) Stop(ctx context.Context, env Env) error {
	_, err := runHook(ctx, "stop", h.stop, h.childEnv(env), exitZero)
	return err
}

// Status runs the status hook: exit 0 is active, 3 inactive, anything else an
// error. Without a status hook it returns ErrNoStatus.
func (h *Hooks) Status(ctx context.Context, env Env) (bool, error) {
	if len(h.status) == 0 {
		return false, ErrNoStatus
	}
	code, err := runHook(ctx, "status", h.status, h.childEnv(env), exitLSBStatus)
	if err != nil {
		return false, err
	}
	return code == 0, nil
}

// childEnv is a hook's whole environment (internal/childenv): PATH, the
// config's env list with the agent's values of the names passed through,
// then env's HARBORMASTER_* variables.
func (h *Hooks) childEnv(env Env) []string {
	return childenv.Build(h.env, os.LookupEnv, env.vars()...)
}

// exits says which exit codes of a hook are answers rather than failures.
type exits int

const (
	exitZero      exits = iota // start, stop: 0 is success, anything else fails
	exitLSBStatus              // status: 0 (active) or 3 (inactive, as LSB's status)
)

// runHook runs argv in a new process group, with exactly the environment
// env, and waits for it. It returns nil
// when the hook exits 0, or exits 3 under exitLSBStatus (then code is 3).
func runHook(ctx context.Context, name string, argv []string, env []string, accept exits) (code int, err error) {
	if len(argv) == 0 {
		return -1, fmt.Errorf("%s hook: no command configured", name)
	}
	begin := time.Now()
	prog, err := childenv.LookPath(argv[0], env)
	if err != nil {
		return -1, fmt.Errorf("%s hook %q cannot be run: %w", name, argv, err)
	}
	out := &tailBuffer{max: outputTail}
	var killed atomic.Bool
	cmd := exec.CommandContext(ctx, prog, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Cancel runs when ctx ends before the hook exited. It kills the hook's
	// own group only: its pgid is its pid, which the kernel does not reuse
	// while the group has members.
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		if err == nil {
			killed.Store(true)
		}
		return err
	}
	cmd.WaitDelay = outputGrace

	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return -1, fmt.Errorf("%s hook %q not run: %w (%w)", name, argv, ErrTimeout, context.Cause(ctx))
		}
		return -1, fmt.Errorf("%s hook %q cannot be run: %w", name, argv, err)
	}
	err = cmd.Wait()
	if killed.Load() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return -1, fmt.Errorf("%s hook %q timed out after %v; killed its process group: %w (%w)%s", name, argv, waited(ctx, begin), ErrTimeout, context.Cause(ctx), out.suffix())
		}
		return -1, fmt.Errorf("%s hook %q was canceled after %v; killed its process group: %w (%w)%s", name, argv, waited(ctx, begin), ErrTimeout, context.Cause(ctx), out.suffix())
	}
	st := cmd.ProcessState
	switch {
	case st == nil:
		return -1, fmt.Errorf("%s hook %q: %w", name, argv, err)
	case st.Success():
		// err may be exec.ErrWaitDelay (a daemon kept the output pipe) or a
		// context error (ctx ended as the hook exited): the hook succeeded.
		return 0, nil
	case accept == exitLSBStatus && st.ExitCode() == lsbInactive:
		return lsbInactive, nil
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, fmt.Errorf("%s hook %q was killed by signal %v%s", name, argv, ws.Signal(), out.suffix())
	}
	want := ""
	if accept == exitLSBStatus {
		want = " (want 0 for active or 3 for inactive)"
	}
	return st.ExitCode(), fmt.Errorf("%s hook %q exited with status %d%s%s", name, argv, st.ExitCode(), want, out.suffix())
}

// waited is how long a call that began at begin waited for ctx, for
// messages: the budget the deadline gave it, or the time until cancellation.
// It is rounded so that a 5s timeout reads "5s", not "4.9996s".
func waited(ctx context.Context, begin time.Time) time.Duration {
	d := time.Since(begin)
	if dl, ok := ctx.Deadline(); ok && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		d = dl.Sub(begin)
	}
	if d < 100*time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= b.max {
		b.truncated = b.truncated || len(b.buf) > 0 || len(p) > b.max
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return n, nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.truncated = true
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// suffix renders the output for an error message: ": <tail>", or "" when the
// hook printed nothing.
func (b *tailBuffer) suffix() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(strings.ToValidUTF8(string(b.buf), "\uFFFD"))
	if s == "" {
		return ""
	}
	if b.truncated {
		s = "..." + s
	}
	return ": " + s
}
