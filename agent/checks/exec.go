package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/internal/childenv"
)

// outputGrace is how long a probe waits, after the program exited and its
// process group was killed, for the end of its output: a process that left
// the group (setsid) may hold the pipe open for ever.
const outputGrace = 100 * time.Millisecond

// execProber is an exec check: the program runs in its own process group
// with the environment env (internal/childenv: PATH and the check's env
// list, not the agent's environment), in /, stdin from /dev/null, stdout
// and stderr into one pipe. When it ends, or on timeout, the whole group is
// killed, so a check never leaves processes behind.
type execProber struct {
	argv    []string
	env     []string
	timeout time.Duration
}

func (p *execProber) probe(ctx context.Context) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("output pipe: %w", err)
	}
	defer r.Close()
	prog, err := childenv.LookPath(p.argv[0], p.env)
	if err != nil {
		w.Close()
		return "", fmt.Errorf("start: %w", err)
	}
	cmd := exec.CommandContext(ctx, prog, p.argv[1:]...)
	cmd.Args[0] = p.argv[0]
	cmd.Env = p.env
	cmd.Dir = "/"
	// An *os.File is handed to the child as is: Wait returns when the
	// program exits, not when every holder of the pipe closed it.
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Cancel runs when ctx ends before the program exited: the whole group
	// dies, grandchildren included.
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	err = cmd.Start()
	w.Close()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", &timeoutError{after: p.timeout}
		}
		return "", fmt.Errorf("start: %w", err)
	}
	out := &tailBuffer{max: maxOutput}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, r) // ends at EOF, or with an error once r is closed
	}()
	waitErr := cmd.Wait()
	// Processes the program left in its group die with it. Its pgid (its
	// pid) is not reused while the group has members.
	_ = killGroup(cmd.Process.Pid) // os.ErrProcessDone: nothing was left
	select {
	case <-copied:
	case <-time.After(outputGrace):
		r.Close() // unblocks the copy
		<-copied
	}
	output := clipTail(string(out.buf), maxOutput)

	st := cmd.ProcessState
	switch {
	case st != nil && st.Success():
		// waitErr may be a context error when ctx ended as the program
		// exited 0: it passed.
		return output, nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return output, &timeoutError{after: p.timeout}
	case ctx.Err() != nil:
		return output, fmt.Errorf("canceled: %w", ctx.Err())
	case st == nil:
		return output, fmt.Errorf("wait: %w", waitErr)
	}
	// The error leaves the node (State.Report): it carries the summary of
	// the output, not the output.
	msg := st.String() // "exit status 3", "signal: killed"
	if sum := Summary(output); sum != "" {
		msg += ": " + sum
	}
	return output, errors.New(msg)
}

// killGroup sends SIGKILL to the process group pgid. A group already gone
// is reported as os.ErrProcessDone, which exec.Cmd's Cancel expects.
func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// tailBuffer keeps the last max bytes written to it. It is not safe for
// concurrent use.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= b.max {
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return n, nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	b.buf = append(b.buf, p...)
	return n, nil
}
