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
	w, done := watchOut(t, spec, back, io.Discard)
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

// slowStart is a backend whose Start blocks until its context ends (a start
// hook still launching when the agent died) or release is closed, and
// which records the order of events.
type slowStart struct {
	mu      sync.Mutex
	events  []string
	release chan struct{}
	began   chan struct{}
	fail    error
}

func (b *slowStart) note(e string) { b.mu.Lock(); b.events = append(b.events, e); b.mu.Unlock() }
func (b *slowStart) Start(ctx context.Context, env service.Env) error {
	b.note(fmt.Sprintf("start %d began", env.Epoch))
	if b.began != nil {
		close(b.began)
	}
	select {
	case <-ctx.Done():
		b.note("start ended: " + ctx.Err().Error())
		return fmt.Errorf("start hook killed: %w", service.ErrTimeout)
	case <-b.release:
		b.note("start ended")
		return b.fail
	}
}
func (b *slowStart) Stop(_ context.Context, env service.Env) error {
	b.note(fmt.Sprintf("stop %d", env.Epoch))
	return nil
}
func (b *slowStart) Status(context.Context, service.Env) (bool, error) { return false, nil }
func (b *slowStart) log() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.events...)
}

// lines collects what the guard answers.
type lines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lines) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *lines) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func watchOut(t *testing.T, spec Spec, back service.Actuator, out io.Writer) (*io.PipeWriter, <-chan watched) {
	t.Helper()
	r, w := io.Pipe()
	t.Cleanup(func() { w.Close() })
	done := make(chan watched, 1)
	go func() {
		o, err := Watch(bufio.NewReader(r), out, spec, back, Mono, quiet)
		done <- watched{o, err}
	}()
	return w, done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	hang := time.Now().Add(20 * time.Second) // a hang guard, not a timing assertion
	for !cond() {
		if time.Now().After(hang) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStopWaitsForTheRunningStart is chaos seed 147025: the agent died
// while the start was still launching the service. The guard must end the
// start (its hook's process group) and only then stop, or the start would
// launch an instance after the stop found nothing, and nobody would stop it.
func TestStopWaitsForTheRunningStart(t *testing.T) {
	for _, agentDies := range []bool{true, false} {
		t.Run(fmt.Sprintf("agent dies %v", agentDies), func(t *testing.T) {
			b := &slowStart{release: make(chan struct{}), began: make(chan struct{})}
			spec := testSpec()
			out := &lines{}
			w, done := watchOut(t, spec, b, out)
			deadline := Mono() + 300*time.Millisecond
			if _, err := fmt.Fprintf(w, "deadline %d\nstart 1 %d\n", int64(deadline), int64(time.Minute)); err != nil {
				t.Fatal(err)
			}
			<-b.began
			if agentDies {
				w.Close()
			}
			got := wait(t, done)
			want := NoRenewal
			if agentDies {
				want = AgentGone
			}
			if got.out != want || got.err != nil {
				t.Fatalf("Watch = %v, %v; want %v, nil", got.out, got.err, want)
			}
			ev := b.log()
			if len(ev) != 3 || ev[0] != "start 7 began" || !strings.HasPrefix(ev[1], "start ended: context canceled") || ev[2] != "stop 7" {
				t.Fatalf("events %q; want the start, its end by cancellation, then the stop", ev)
			}
			if a := out.String(); !strings.HasPrefix(a, "start-timeout 1 ") || !strings.Contains(a, "start hook killed") {
				t.Fatalf("answer %q, want start-timeout 1 with the start's error", a)
			}
		})
	}
}

// TestStartAnswers: starts run in order and each gets its answer; cancel
// ends a running one; release ends the guard without a stop.
func TestStartAnswers(t *testing.T) {
	b := &slowStart{release: make(chan struct{})}
	spec := testSpec()
	out := &lines{}
	w, done := watchOut(t, spec, b, out)
	if _, err := fmt.Fprintf(w, "deadline %d\nstart 1 %d\n", int64(Mono()+time.Minute), int64(time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "start 1 to run", func() bool { return len(b.log()) == 1 })
	if _, err := io.WriteString(w, "cancel 1\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the answer to start 1", func() bool { return strings.Contains(out.String(), "\n") })
	if a := out.String(); !strings.HasPrefix(a, "start-timeout 1 \"start hook killed") {
		t.Fatalf("answer %q, want start 1 timed out", a)
	}
	if _, err, _ := parseAnswer(strings.TrimSpace(out.String())); !errors.Is(err, service.ErrTimeout) {
		t.Fatalf("the answer's error %v does not wrap service.ErrTimeout", err)
	}
	if _, err := io.WriteString(w, "cancel 1\n"); err != nil { // late: its answer crossed it
		t.Fatal(err)
	}
	b.fail = errors.New("exit status 3\nwith a second line")
	if _, err := fmt.Fprintf(w, "start 2 %d\nstart 3 %d\n", int64(time.Minute), int64(time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "start 2 to run", func() bool { return len(b.log()) == 3 })
	b.release <- struct{}{} // start 2 fails
	waitFor(t, "start 3 to run", func() bool { return len(b.log()) == 5 })
	b.fail = nil
	b.release <- struct{}{} // start 3 succeeds
	waitFor(t, "three answers", func() bool { return strings.Count(out.String(), "\n") == 3 })
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if got[1] != `start-failed 2 "exit status 3\nwith a second line"` || got[2] != "started 3" {
		t.Fatalf("answers %q", got)
	}
	for i, a := range got {
		id, err, ok := parseAnswer(a)
		if !ok || id != uint64(i+1) || (err == nil) != (i == 2) {
			t.Errorf("parseAnswer(%q) = %d, %v, %v", a, id, err, ok)
		}
	}
	if _, err := io.WriteString(w, "release\n"); err != nil {
		t.Fatal(err)
	}
	if got := wait(t, done); got.out != Released || got.err != nil {
		t.Fatalf("Watch = %v, %v; want released", got.out, got.err)
	}
	for _, e := range b.log() {
		if strings.HasPrefix(e, "stop") {
			t.Fatalf("a stop after release: %q", b.log())
		}
	}
}

func TestParseLines(t *testing.T) {
	for line, ok := range map[string]bool{
		"start 1 5000": true, "cancel 9": true, "start 0 5": false, "start 1": false,
		"start 1 -5": false, "cancel 0": false, "cancel x": false, "started 1": false,
	} {
		if m := parse(line); (m.err == nil) != ok {
			t.Errorf("parse(%q) error %v, want ok %v", line, m.err, ok)
		}
	}
}

// TestLateCancelIsForgotten: a cancel that crosses its start's answer
// leaves nothing behind; one for a start not read yet still cancels it.
func TestLateCancelIsForgotten(t *testing.T) {
	b := &slowStart{release: make(chan struct{})}
	out := &lines{}
	st := newStarter(b, service.Env{Role: "notary", Epoch: 7}, out, quiet)
	defer st.closeAndWait(context.Background())
	st.submit(startReq{id: 1, timeout: time.Minute})
	waitFor(t, "start 1 to run", func() bool { return len(b.log()) == 1 })
	b.release <- struct{}{}
	waitFor(t, "the answer to start 1", func() bool { return out.String() == "started 1\n" })
	st.cancel(1)
	st.cancel(2) // before start 2 arrives
	st.mu.Lock()
	kept := len(st.canceled)
	st.mu.Unlock()
	if kept != 1 {
		t.Fatalf("%d canceled ids kept, want only the one not run yet", kept)
	}
	st.submit(startReq{id: 2, timeout: time.Minute})
	waitFor(t, "the answer to start 2", func() bool { return strings.Count(out.String(), "\n") == 2 })
	if a := out.String(); !strings.HasPrefix(a[len("started 1\n"):], "start-timeout 2 ") {
		t.Fatalf("answers %q, want start 2 canceled before it ran", a)
	}
	if len(b.log()) != 2 {
		t.Fatalf("events %q: start 2 ran though canceled", b.log())
	}
}

// deafStart is a backend whose Start ignores its context (a hook stuck in
// uninterruptible sleep) until release is closed.
type deafStart struct{ slowStart }

func (b *deafStart) Start(_ context.Context, env service.Env) error {
	b.note(fmt.Sprintf("start %d began", env.Epoch))
	<-b.release
	b.note("start ended")
	return nil
}

// TestStopIsNotHeldByAStartThatWillNotDie: the guard waits for a canceled
// start for half the stop timeout at most, then stops all the same.
func TestStopIsNotHeldByAStartThatWillNotDie(t *testing.T) {
	b := &deafStart{slowStart{release: make(chan struct{})}}
	defer close(b.release) // the stuck start ends with the test
	spec := testSpec()
	spec.StopTimeout = 400 * time.Millisecond
	w, done := watchOut(t, spec, b, io.Discard)
	deadline := Mono() + 100*time.Millisecond
	if _, err := fmt.Fprintf(w, "deadline %d\nstart 1 %d\n", int64(deadline), int64(time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the start to run", func() bool { return len(b.log()) == 1 })
	w.Close()
	watchDone := make(chan watched, 1)
	go func() { watchDone <- <-done }()
	waitFor(t, "the stop despite the start", func() bool { ev := b.log(); return len(ev) == 2 && ev[1] == "stop 7" })
	// Nor does it keep the guard from exiting.
	if got := wait(t, watchDone); got.out != AgentGone || got.err != nil {
		t.Fatalf("Watch = %v, %v; want agent gone, nil", got.out, got.err)
	}
}
