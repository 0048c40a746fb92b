// Package serviceguard is the dead-man of a running service: a process,
// started by the agent next to each service instance it runs, that stops
// the service at the end of the agent's lease when the agent did not (it
// was killed with SIGKILL, or frozen by SIGSTOP). Without it a dead agent
// stops nothing, and the next holder, which starts the service once the
// old lease surely ended plus the role's stop_timeout, would run a second
// active instance (DESIGN.md S1, S3).
//
// # Protocol
//
// The agent runs its own binary as `harbormaster internal service-guard`
// in a session of its own (a SIGKILL of the agent's process group does not
// reach it), with the agent's stderr and environment, and writes to its
// stdin, one line each (the guard answers "ready" on its stdout once it
// read the spec and ignores the signals below):
//   - first, the Spec as JSON: the service's config entry, its Env and the
//     stop timeout;
//   - once the guard answered "ready", "deadline N": the lease's end, N
//     nanoseconds of CLOCK_MONOTONIC (the same clock in every process of the
//     machine), and again whenever the lease was renewed. The first deadline
//     is sent after the guard started (which may take a while on a busy
//     machine), never in the spec: a deadline that passed while the guard
//     started would make it stop a service the agent holds;
//   - "release" when the agent stops the service itself (or hands the
//     instance to a new guard): the guard exits without acting.
//
// When the deadline passes with no newer one (the agent is frozen, or its
// lease lapsed), or stdin ends without "release" (the agent died) and then
// the deadline passes, the guard builds the service's backend as the agent
// does (agent/service.New), runs its Stop bounded by the stop timeout (a
// hook still running then is killed with its process group), logs one line
// saying what it did and why, and exits. It ignores SIGTERM, SIGINT and
// SIGHUP: only the protocol ends it (and SIGKILL, such as systemd's final
// one).
package serviceguard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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
}

// validate checks what the guard cannot do without.
func (s Spec) validate() error {
	if s.Role == "" {
		return errors.New("spec: role is empty")
	}
	if s.StopTimeout <= 0 {
		return fmt.Errorf("spec: stop_timeout_ns %d is not positive", s.StopTimeout)
	}
	return s.Service.Validate("service")
}

// Mono is CLOCK_MONOTONIC now, the clock of deadlines.
func Mono() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err)) // cannot fail on Linux
	}
	return time.Duration(ts.Nano())
}

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

// msg is one line read after the spec.
type msg struct {
	deadline time.Duration // > 0: a renewal
	release  bool
	eof      bool
	err      error
}

// Watch runs the guard's loop on in (after the spec line): it waits for
// the first deadline, follows the renewals until release (then returns
// Released and calls nothing), or until the deadline passes; then it calls
// back.Stop bounded by spec.StopTimeout and returns why, with Stop's
// error. now is the deadlines' clock (Mono). A malformed line counts as
// the end of stdin: the guard acts at the last deadline it had, at once
// when it had none. The goroutine reading in ends when in does.
func Watch(in *bufio.Reader, spec Spec, back service.Actuator, now func() time.Duration, log *slog.Logger) (Outcome, error) {
	msgs := make(chan msg, 1)
	go read(in, msgs)
	var deadline time.Duration // 0 until the first deadline line
	gone := false
	why := "no renewal before the lease's end (the agent is frozen or lost its lease)"
	// take applies one line; it reports a release.
	take := func(m msg) bool {
		switch {
		case m.release:
			return true
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
		ctx, cancel := context.WithTimeout(context.Background(), spec.StopTimeout)
		begin := time.Now()
		err := back.Stop(ctx, spec.Env)
		cancel()
		took := time.Since(begin).Round(time.Millisecond)
		l := log.With("role", spec.Role, "epoch", spec.Env.Epoch, "reason", why, "late", late.Round(time.Millisecond), "took", took)
		if err != nil {
			l.Error("service guard: the lease ended and the agent did not stop the service; the guard's stop failed", "err", err)
		} else {
			l.Warn("service guard: the lease ended and the agent did not stop the service; the guard stopped it")
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
	return msg{err: fmt.Errorf("unknown line %q (want \"deadline N\" or \"release\")", line)}
}

// Main is the guard process's main: it ignores SIGTERM, SIGINT and SIGHUP
// (only the protocol ends a guard: a signal meant for the agent, such as a
// Ctrl-C in its terminal, must not take the dead-man with it) and SIGPIPE
// (a closed stderr turns log writes into errors), reads the spec from in,
// builds the service's backend (agent/service.New), says "ready" on ready
// (Start waits for it), and runs Watch with the machine's monotonic clock,
// logging to stderr.
func Main(in io.Reader, ready, stderr io.Writer) error {
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "service-guard", "pid", unix.Getpid())
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
	back, err := service.New(spec.Role, spec.Service)
	if err != nil {
		return fmt.Errorf("service guard: %w", err)
	}
	if c, ok := back.(io.Closer); ok {
		defer c.Close()
	}
	if _, err := io.WriteString(ready, "ready\n"); err != nil {
		return fmt.Errorf("service guard: %w", err)
	}
	_, err = Watch(r, spec, back, Mono, log)
	return err
}
