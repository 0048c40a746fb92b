package serviceguard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/service"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeBack records the stops and when (on Mono) they were called.
type fakeBack struct {
	mu    sync.Mutex
	stops []time.Duration
	envs  []service.Env
}

func (f *fakeBack) Start(context.Context, service.Env) error { return nil }
func (f *fakeBack) Stop(_ context.Context, env service.Env) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops = append(f.stops, Mono())
	f.envs = append(f.envs, env)
	return nil
}
func (f *fakeBack) Status(context.Context, service.Env) (bool, error) { return false, nil }

func (f *fakeBack) calls() ([]time.Duration, []service.Env) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.stops...), append([]service.Env(nil), f.envs...)
}

func testSpec() Spec {
	return Spec{Role: "notary", Env: service.Env{Role: "notary", Node: "n1", Epoch: 7}, StopTimeout: time.Second,
		Service: service.Config{Start: []string{"/bin/true"}, Stop: []string{"/bin/true"}}}
}

type watched struct {
	out Outcome
	err error
}

// watch runs Watch on a pipe the test writes to, with a first deadline
// (none when 0).
func watch(t *testing.T, spec Spec, back service.Actuator, deadline time.Duration) (*io.PipeWriter, <-chan watched) {
	t.Helper()
	r, w := io.Pipe()
	t.Cleanup(func() { w.Close() })
	done := make(chan watched, 1)
	go func() {
		out, err := Watch(bufio.NewReader(r), spec, back, Mono, quiet)
		done <- watched{out, err}
	}()
	if deadline > 0 {
		if _, err := fmt.Fprintf(w, "deadline %d\n", int64(deadline)); err != nil {
			t.Fatal(err)
		}
	}
	return w, done
}

func wait(t *testing.T, done <-chan watched) watched {
	t.Helper()
	select {
	case w := <-done:
		return w
	case <-time.After(20 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("Watch did not return")
		return watched{}
	}
}

// checkStoppedOnceAfter: exactly one stop, not before deadline, with the
// spec's env.
func checkStoppedOnceAfter(t *testing.T, b *fakeBack, deadline time.Duration, spec Spec) {
	t.Helper()
	stops, envs := b.calls()
	if len(stops) != 1 {
		t.Fatalf("%d stops, want 1", len(stops))
	}
	if stops[0] < deadline {
		t.Errorf("stopped %s before the deadline", deadline-stops[0])
	}
	if envs[0] != spec.Env {
		t.Errorf("stop env %+v, want %+v", envs[0], spec.Env)
	}
}

func TestStopAtDeadlineAfterEOF(t *testing.T) {
	b := &fakeBack{}
	spec, deadline := testSpec(), Mono()+300*time.Millisecond
	w, done := watch(t, spec, b, deadline)
	w.Close() // the agent died
	got := wait(t, done)
	if got.out != AgentGone || got.err != nil {
		t.Fatalf("Watch = %v, %v; want agent gone, nil", got.out, got.err)
	}
	checkStoppedOnceAfter(t, b, deadline, spec)
}

// TestEOFBeforeFirstDeadline: the agent died before it sent a deadline:
// the guard stops the service at once.
func TestEOFBeforeFirstDeadline(t *testing.T) {
	b := &fakeBack{}
	spec := testSpec()
	w, done := watch(t, spec, b, 0)
	w.Close()
	got := wait(t, done)
	if got.out != AgentGone || got.err != nil {
		t.Fatalf("Watch = %v, %v; want agent gone, nil", got.out, got.err)
	}
	checkStoppedOnceAfter(t, b, 0, spec)
}

func TestNoStopAfterRelease(t *testing.T) {
	b := &fakeBack{}
	spec := testSpec()
	w, done := watch(t, spec, b, Mono()+300*time.Millisecond)
	if _, err := io.WriteString(w, "release\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got := wait(t, done)
	if got.out != Released || got.err != nil {
		t.Fatalf("Watch = %v, %v; want released, nil", got.out, got.err)
	}
	if stops, _ := b.calls(); len(stops) != 0 {
		t.Fatalf("%d stops after release, want 0", len(stops))
	}
}

// TestStopAtDeadlineWithoutRenewal: stdin stays open (a frozen agent): the
// stop comes at the deadline all the same.
func TestStopAtDeadlineWithoutRenewal(t *testing.T) {
	b := &fakeBack{}
	spec, deadline := testSpec(), Mono()+300*time.Millisecond
	_, done := watch(t, spec, b, deadline)
	got := wait(t, done)
	if got.out != NoRenewal || got.err != nil {
		t.Fatalf("Watch = %v, %v; want no renewal, nil", got.out, got.err)
	}
	checkStoppedOnceAfter(t, b, deadline, spec)
}

// TestRenewalMovesDeadline: a renewal written before the first deadline
// puts the stop off to the new one (and a bad line then counts as the
// agent's end: the stop still waits for the last deadline).
func TestRenewalMovesDeadline(t *testing.T) {
	for _, end := range []string{"", "garbage\n"} {
		t.Run(fmt.Sprintf("then %q", end), func(t *testing.T) {
			b := &fakeBack{}
			spec := testSpec()
			w, done := watch(t, spec, b, Mono()+time.Second)
			later := Mono() + 1500*time.Millisecond
			if _, err := fmt.Fprintf(w, "deadline %d\n%s", int64(later), end); err != nil {
				t.Fatal(err)
			}
			got := wait(t, done)
			if got.err != nil {
				t.Fatal(got.err)
			}
			checkStoppedOnceAfter(t, b, later, spec)
		})
	}
}

// TestHungStopHookKilledAtTimeout: a real hooks backend whose stop hook
// hangs: the guard kills its process group at the stop timeout and
// reports ErrTimeout.
func TestHungStopHookKilledAtTimeout(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	hook := writeScript(t, dir, "stop", fmt.Sprintf("echo $$ > %s.tmp && mv %s.tmp %s\nexec sleep 60\n", pidFile, pidFile, pidFile))
	spec := testSpec()
	spec.StopTimeout = 300 * time.Millisecond
	spec.Service.Stop = []string{hook}
	back, err := service.New(spec.Role, spec.Service)
	if err != nil {
		t.Fatal(err)
	}
	w, done := watch(t, spec, back, Mono())
	w.Close()
	got := wait(t, done)
	if !errors.Is(got.err, service.ErrTimeout) {
		t.Fatalf("Watch error = %v, want one wrapping service.ErrTimeout", got.err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the stop hook did not run: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the hung stop hook (pid %d) still exists after the timeout: kill 0 = %v", pid, err)
	}
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSpecValidate(t *testing.T) {
	ok := testSpec()
	for _, tc := range []struct {
		name string
		f    func(*Spec)
		want string
	}{
		{"no role", func(s *Spec) { s.Role = "" }, "role"},
		{"no timeout", func(s *Spec) { s.StopTimeout = 0 }, "stop_timeout_ns"},
		{"no stop hook", func(s *Spec) { s.Service.Stop = nil }, "service.stop"},
	} {
		s := ok
		tc.f(&s)
		if err := s.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: validate = %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	if err := ok.validate(); err != nil {
		t.Errorf("valid spec: %v", err)
	}
}
