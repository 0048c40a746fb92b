package checks

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// fakeClock replaces the runner's tickers and timers: timers fire at once
// (after recording their duration), and every ticker is the test's ticks
// channel, of capacity 1 like a time.Ticker's.
type fakeClock struct {
	ticks chan time.Time

	mu        sync.Mutex
	timers    []time.Duration
	intervals []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{ticks: make(chan time.Time, 1)} }

func (fc *fakeClock) install(r *Runner) {
	r.randN = func(int64) int64 { return 0 }
	r.newTimer = func(d time.Duration) (<-chan time.Time, func()) {
		fc.mu.Lock()
		fc.timers = append(fc.timers, d)
		fc.mu.Unlock()
		c := make(chan time.Time, 1)
		c <- time.Now()
		return c, func() {}
	}
	r.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
		fc.mu.Lock()
		fc.intervals = append(fc.intervals, d)
		fc.mu.Unlock()
		return fc.ticks, func() {}
	}
}

// tickLater sends a tick stamped in the future: it is due whenever the
// runner receives it.
func (fc *fakeClock) tickLater() { fc.ticks <- time.Now().Add(time.Hour) }

// testCheck is an exec check (never run: tests replace its prober).
func testCheck(name string, fall, rise int) Config {
	return Config{Name: name, Type: TypeExec, Argv: []string{"true"}, Fall: fall, Rise: rise, Interval: conf.Duration(time.Hour), Timeout: conf.Duration(time.Hour)}
}

// newTestRunner builds a runner of cfgs whose probers are replaced by
// probers[name].
func newTestRunner(t *testing.T, cfgs []Config, probers map[string]Prober, onChange func(State)) *Runner {
	t.Helper()
	r, err := NewRunner(cfgs, onChange)
	if err != nil {
		t.Fatalf("NewRunner: %v", err)
	}
	for _, c := range r.checks {
		if p, ok := probers[c.cfg.Name]; ok {
			c.prober = p
		}
	}
	return r
}

// startRunner runs r until the test ends; the returned stop cancels Run and
// waits for it to return (at most 5s).
func startRunner(t *testing.T, r *Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.Run(ctx)
		close(done)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Run did not return within 5s of the cancellation")
		}
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return stop
}

// scriptProber answers its calls with results in order, recording the
// runner's state at each call (so call k sees the first k results). Past
// the script it blocks until its context ends.
type scriptProber struct {
	r       *Runner
	results []error
	called  chan int

	mu   sync.Mutex
	seen []State
}

func (p *scriptProber) Probe(ctx context.Context) (string, error) {
	p.mu.Lock()
	k := len(p.seen)
	p.seen = append(p.seen, p.r.States()[0])
	p.mu.Unlock()
	p.called <- k
	if k >= len(p.results) {
		<-ctx.Done()
		return "", ctx.Err()
	}
	return fmt.Sprintf("probe %d", k), p.results[k]
}

// verdict is the part of a State the fall/rise tests follow.
type verdict struct {
	Known, Passing bool
	OK, Failed     int
}

func verdictOf(s State) verdict { return verdict{s.Known, s.Passing, s.OK, s.Failed} }

// Results of scripted probes.
var (
	pass error // nil
	fail = errors.New("boom")
)

func TestRunnerFallRise(t *testing.T) {
	unknown := func(okN, failed int) verdict { return verdict{false, false, okN, failed} }
	passing := func(okN, failed int) verdict { return verdict{true, true, okN, failed} }
	failing := func(okN, failed int) verdict { return verdict{true, false, okN, failed} }
	tests := []struct {
		name       string
		fall, rise int
		results    []error
		after      []verdict // the state after each result
		changes    []verdict // OnChange calls, exactly
	}{
		{
			"defaults: one result decides", 1, 1,
			[]error{pass, fail, fail, pass},
			[]verdict{passing(1, 0), failing(0, 1), failing(0, 2), passing(1, 0)},
			[]verdict{passing(1, 0), failing(0, 1), passing(1, 0)},
		},
		{
			"fall 2 needs two consecutive failures; a success resets the count", 2, 1,
			[]error{pass, fail, pass, fail, fail, fail},
			[]verdict{passing(1, 0), passing(0, 1), passing(1, 0), passing(0, 1), failing(0, 2), failing(0, 3)},
			[]verdict{passing(1, 0), failing(0, 2)},
		},
		{
			"rise 3 needs three successes; a failure first decides failing", 1, 3,
			[]error{pass, pass, fail, pass, pass, pass, pass},
			[]verdict{unknown(1, 0), unknown(2, 0), failing(0, 1), failing(1, 0), failing(2, 0), passing(3, 0), passing(4, 0)},
			[]verdict{failing(0, 1), passing(3, 0)},
		},
		{
			"fall 2 rise 2 from failures", 2, 2,
			[]error{fail, pass, fail, fail, pass, fail, pass, pass},
			[]verdict{unknown(0, 1), unknown(1, 0), unknown(0, 1), failing(0, 2), failing(1, 0), failing(0, 1), failing(1, 0), passing(2, 0)},
			[]verdict{failing(0, 2), passing(2, 0)},
		},
		{
			"no verdict until rise or fall is reached", 3, 3,
			[]error{pass, pass, fail, fail, pass},
			[]verdict{unknown(1, 0), unknown(2, 0), unknown(0, 1), unknown(0, 2), unknown(1, 0)},
			nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var changes []State
			onChange := func(s State) {
				mu.Lock()
				changes = append(changes, s)
				mu.Unlock()
			}
			p := &scriptProber{results: tc.results, called: make(chan int, len(tc.results)+1)}
			r := newTestRunner(t, []Config{testCheck("c", tc.fall, tc.rise)}, map[string]Prober{"c": p}, onChange)
			p.r = r
			fc := newFakeClock()
			fc.install(r)
			if s := r.States()[0]; s.Known || s.Passing || !s.Since.IsZero() || s.Name != "c" || s.Type != TypeExec {
				t.Errorf("before Run: got %+v, want unknown, named c, of type exec, Since zero", s)
			}
			begin := time.Now()
			stop := startRunner(t, r)
			for k := 0; k <= len(tc.results); k++ {
				select {
				case got := <-p.called:
					if got != k {
						t.Fatalf("got call %d, want %d", got, k)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("no probe %d within 5s", k)
				}
				if k < len(tc.results) {
					fc.tickLater()
				}
			}
			stop()

			p.mu.Lock()
			seen := p.seen
			p.mu.Unlock()
			if first := seen[0]; first.Known || first.Passing || first.Since.Before(begin) || !first.LastRun.IsZero() {
				t.Errorf("at the first probe: got %+v, want unknown since Run started, never run", first)
			}
			for k, want := range tc.after {
				s := seen[k+1]
				if got := verdictOf(s); got != want {
					t.Errorf("after result %d (%v): got %+v, want %+v", k, tc.results[k], got, want)
				}
				wantErr, wantOut := "", fmt.Sprintf("probe %d", k)
				if tc.results[k] != nil {
					wantErr = "boom"
				}
				if s.LastErr != wantErr || s.Output != wantOut || s.LastRun.IsZero() {
					t.Errorf("after result %d: got LastErr %q Output %q LastRun %v, want %q %q and a LastRun", k, s.LastErr, s.Output, s.LastRun, wantErr, wantOut)
				}
				prev := seen[k]
				transition := s.Known != prev.Known || s.Passing != prev.Passing
				if transition != s.Since.After(prev.Since) || (!transition && !s.Since.Equal(prev.Since)) {
					t.Errorf("after result %d: Since %v -> %v, want it to move exactly on transitions (transition: %t)", k, prev.Since, s.Since, transition)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			var got []verdict
			for _, s := range changes {
				got = append(got, verdictOf(s))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.changes) {
				t.Errorf("OnChange calls: got %+v, want %+v", got, tc.changes)
			}
			if final := verdictOf(r.States()[0]); final != tc.after[len(tc.after)-1] {
				t.Errorf("after Run: got %+v, want %+v (the probe cut short by the stop is not counted)", final, tc.after[len(tc.after)-1])
			}
		})
	}
}

// blockingProber blocks each call until released (or its context ends),
// tracking how many calls run at once.
type blockingProber struct {
	started chan time.Time
	release chan error
	active  atomic.Int32
	maxSeen atomic.Int32
	calls   atomic.Int32
}

func newBlockingProber() *blockingProber {
	return &blockingProber{started: make(chan time.Time, 16), release: make(chan error)}
}

func (p *blockingProber) Probe(ctx context.Context) (string, error) {
	n := p.active.Add(1)
	defer p.active.Add(-1)
	for {
		m := p.maxSeen.Load()
		if n <= m || p.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	p.calls.Add(1)
	p.started <- time.Now()
	select {
	case err := <-p.release:
		return "", err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func waitStarted(t *testing.T, p *blockingProber, what string) {
	t.Helper()
	select {
	case <-p.started:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no probe started within 5s", what)
	}
}

// TestRunnerSkipsTickDuringProbe sends a tick while a probe runs: it is
// skipped, and the next probe waits for the next tick.
func TestRunnerSkipsTickDuringProbe(t *testing.T) {
	p := newBlockingProber()
	r := newTestRunner(t, []Config{testCheck("c", 1, 1)}, map[string]Prober{"c": p}, nil)
	fc := newFakeClock()
	fc.install(r)
	stop := startRunner(t, r)

	waitStarted(t, p, "first probe")
	fc.ticks <- time.Now() // due while the probe runs
	p.release <- nil
	// This send returns once the runner took the stale tick off the
	// channel. A runner that skipped it takes this tick too before its
	// second probe; one that probed on the stale tick leaves this one
	// queued while that probe runs.
	fc.tickLater()
	waitStarted(t, p, "probe after the next tick")
	if n := len(fc.ticks); n != 0 {
		t.Fatalf("the second probe started with %d tick still queued: it ran on the tick that came due during the first, want that tick skipped", n)
	}
	p.release <- nil
	stop()
	if n := p.calls.Load(); n != 2 {
		t.Errorf("got %d probes, want 2", n)
	}
	if m := p.maxSeen.Load(); m != 1 {
		t.Errorf("got %d probes at once, want 1", m)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.intervals) != 1 || fc.intervals[0] != time.Hour {
		t.Errorf("tickers: got %v, want one of the 1h interval", fc.intervals)
	}
}

// TestRunnerRealTicker runs a check whose probes take longer than its
// interval on the real clock: probes never overlap. That the ticks during a
// probe are skipped is asserted on the fake clock by
// TestRunnerSkipsTickDuringProbe; how many probes fit in a span of real
// time is not asserted (it depends on the machine's load).
func TestRunnerRealTicker(t *testing.T) {
	var active, maxActive, calls atomic.Int32
	probe := proberFunc(func(ctx context.Context) (string, error) {
		n := active.Add(1)
		defer active.Add(-1)
		for m := maxActive.Load(); n > m && !maxActive.CompareAndSwap(m, n); m = maxActive.Load() {
		}
		calls.Add(1)
		time.Sleep(15 * time.Millisecond) // ignores ctx: a misbehaving prober
		return "", nil
	})
	c := testCheck("c", 1, 1)
	c.Interval, c.Timeout = conf.Duration(10*time.Millisecond), conf.Duration(10*time.Millisecond)
	r := newTestRunner(t, []Config{c}, map[string]Prober{"c": probe}, nil)
	r.randN = func(int64) int64 { return 0 }
	stop := startRunner(t, r)
	waitFor(t, 10*time.Second, "10 probes", func() bool { return calls.Load() >= 10 })
	stop()
	if m := maxActive.Load(); m != 1 {
		t.Errorf("got %d probes at once, want 1", m)
	}
}

type proberFunc func(context.Context) (string, error)

func (f proberFunc) Probe(ctx context.Context) (string, error) { return f(ctx) }

func TestRunnerProbeTimeout(t *testing.T) {
	tests := []struct {
		name    string
		result  func(ctx context.Context) error // after the context ended
		wantErr string
	}{
		{"context error", func(ctx context.Context) error { return ctx.Err() }, "timed out after 30ms"},
		{"other error", func(context.Context) error { return errors.New("read: i/o timeout") }, "timed out after 30ms: read: i/o timeout"},
		{"prober's own timeout error", func(context.Context) error { return &timeoutError{stage: "PING", after: 30 * time.Millisecond} }, "PING: timed out after 30ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			type call struct {
				entered, deadline time.Time
				hasDeadline       bool
				err               error // the context's, once done
			}
			calls := make(chan call, 1)
			probe := proberFunc(func(ctx context.Context) (string, error) {
				entered := time.Now()
				deadline, has := ctx.Deadline()
				<-ctx.Done()
				calls <- call{entered, deadline, has, ctx.Err()}
				return "", tc.result(ctx)
			})
			c := testCheck("c", 1, 1)
			c.Timeout = conf.Duration(30 * time.Millisecond)
			changed := make(chan State, 1)
			r := newTestRunner(t, []Config{c}, map[string]Prober{"c": probe}, func(s State) { changed <- s })
			newFakeClock().install(r)
			stop := startRunner(t, r)
			var got call
			select {
			case got = <-calls:
			case <-time.After(5 * time.Second):
				t.Fatal("the probe was not ended within 5s")
			}
			if !got.hasDeadline || !errors.Is(got.err, context.DeadlineExceeded) {
				t.Errorf("probe context: deadline %t, ended by %v; want it ended by its deadline", got.hasDeadline, got.err)
			}
			select {
			case s := <-changed:
				if !s.Known || s.Passing || s.Failed != 1 || s.LastErr != tc.wantErr {
					t.Errorf("OnChange: got %+v, want failing with Failed 1 and LastErr %q", s, tc.wantErr)
				}
				// The runner stamps LastRun, then sets the deadline, then
				// calls the prober: the deadline is the timeout after a
				// moment in between.
				if lo, hi := s.LastRun.Add(30*time.Millisecond), got.entered.Add(30*time.Millisecond); got.deadline.Before(lo) || got.deadline.After(hi) {
					t.Errorf("probe deadline: %s after LastRun, %s after the prober was called; want the 30ms timeout, set in between",
						got.deadline.Sub(s.LastRun), got.deadline.Sub(got.entered))
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no OnChange within 5s")
			}
			stop()
		})
	}
}

func TestRunnerBoundsTexts(t *testing.T) {
	probe := proberFunc(func(context.Context) (string, error) {
		return strings.Repeat("o", 5000), errors.New(strings.Repeat("e", 2000))
	})
	changed := make(chan State, 1)
	r := newTestRunner(t, []Config{testCheck("c", 1, 1)}, map[string]Prober{"c": probe}, func(s State) { changed <- s })
	newFakeClock().install(r)
	stop := startRunner(t, r)
	select {
	case s := <-changed:
		if len(s.Output) > 1024 || len(s.LastErr) > 512 || !strings.HasPrefix(s.LastErr, "eee") || !strings.HasPrefix(s.Output, "ooo") {
			t.Errorf("got Output of %d bytes and LastErr of %d, want at most 1024 and 512, clipped at the end", len(s.Output), len(s.LastErr))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no OnChange within 5s")
	}
	stop()
}

// TestRunnerJitter runs two checks with an injected random source and
// timers: the bound is min(interval, 2s), the first probe waits for a timer
// of the jitter drawn, and Run returns while a check still waits for its.
func TestRunnerJitter(t *testing.T) {
	fast := testCheck("fast", 1, 1)
	fast.Interval, fast.Timeout = conf.Duration(40*time.Millisecond), conf.Duration(40*time.Millisecond)
	slow := testCheck("slow", 1, 1) // 1h interval: its jitter is bounded by 2s
	var fastFired atomic.Bool
	probed := make(chan struct{}, 1)
	r := newTestRunner(t, []Config{fast, slow}, map[string]Prober{
		"fast": proberFunc(func(context.Context) (string, error) {
			if !fastFired.Load() {
				t.Errorf("the fast check probed before its jitter timer fired")
			}
			select {
			case probed <- struct{}{}:
			default:
			}
			return "", nil
		}),
		"slow": proberFunc(func(context.Context) (string, error) {
			t.Errorf("the slow check probed, but its jitter timer never fired")
			return "", nil
		}),
	}, nil)
	var mu sync.Mutex
	bounds := map[time.Duration]bool{}
	timers := map[time.Duration]chan time.Time{} // by duration: the test fires them
	r.randN = func(n int64) int64 {
		mu.Lock()
		bounds[time.Duration(n)] = true
		mu.Unlock()
		return n * 3 / 4 // 30ms for fast, 1.5s for slow
	}
	r.newTimer = func(d time.Duration) (<-chan time.Time, func()) {
		c := make(chan time.Time, 1)
		mu.Lock()
		timers[d] = c
		mu.Unlock()
		return c, func() {}
	}
	r.newTicker = func(time.Duration) (<-chan time.Time, func()) { return nil, func() {} } // never ticks
	stop := startRunner(t, r)
	waitFor(t, 5*time.Second, "both jitter timers", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(timers) == 2
	})
	mu.Lock()
	fastTimer, slowTimer := timers[30*time.Millisecond], timers[1500*time.Millisecond]
	if fastTimer == nil || slowTimer == nil {
		t.Errorf("jitter timers: got %v, want 30ms and 1.5s (the jitter drawn)", slices.Sorted(maps.Keys(timers)))
	}
	if !bounds[40*time.Millisecond] || !bounds[2*time.Second] {
		t.Errorf("jitter bounds drawn: got %v, want 40ms (the interval) and 2s (the cap)", bounds)
	}
	mu.Unlock()
	if fastTimer == nil {
		t.FailNow()
	}
	fastFired.Store(true)
	fastTimer <- time.Now()
	select {
	case <-probed:
	case <-time.After(5 * time.Second):
		t.Fatal("no probe within 5s of the fast check's jitter timer")
	}
	stop() // returns although slow still waits for its timer
}

// TestJitterRange draws the default random jitter many times.
func TestJitterRange(t *testing.T) {
	r := &Runner{randN: rand.Int64N}
	for _, tc := range []struct{ interval, bound time.Duration }{
		{10 * time.Millisecond, 10 * time.Millisecond},
		{time.Second, time.Second},
		{10 * time.Second, 2 * time.Second},
	} {
		var maxSeen time.Duration
		for range 2000 {
			j := r.jitter(tc.interval)
			if j < 0 || j >= tc.bound {
				t.Fatalf("jitter(%s) = %s, want in [0, %s)", tc.interval, j, tc.bound)
			}
			maxSeen = max(maxSeen, j)
		}
		if maxSeen < tc.bound/2 {
			t.Errorf("jitter(%s): largest of 2000 draws %s, want them spread over [0, %s)", tc.interval, maxSeen, tc.bound)
		}
	}
}

// TestRunnerStop cancels Run during a probe: Run returns, the probe is not
// counted and nothing is reported.
func TestRunnerStop(t *testing.T) {
	p := newBlockingProber()
	var changes atomic.Int32
	r := newTestRunner(t, []Config{testCheck("c", 1, 1)}, map[string]Prober{"c": p}, func(State) { changes.Add(1) })
	newFakeClock().install(r)
	stop := startRunner(t, r)
	waitStarted(t, p, "first probe")
	stop()
	if n := p.active.Load(); n != 0 {
		t.Errorf("Run returned with %d probes running, want 0", n)
	}
	s := r.States()[0]
	if s.Known || s.OK != 0 || s.Failed != 0 || !s.LastRun.IsZero() || s.LastErr != "" {
		t.Errorf("after a stop during the first probe: got %+v, want it unknown and uncounted", s)
	}
	if n := changes.Load(); n != 0 {
		t.Errorf("got %d OnChange calls, want 0", n)
	}
}

// doneSpy is a context that reports the first call of its Done method.
type doneSpy struct {
	context.Context
	once   sync.Once
	called chan struct{}
}

func (c *doneSpy) Done() <-chan struct{} {
	c.once.Do(func() { close(c.called) })
	return c.Context.Done()
}

// TestRunnerNoChecks runs a runner without checks: Run waits on its context
// and returns only once the context ended.
func TestRunnerNoChecks(t *testing.T) {
	r, err := NewRunner(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spy := &doneSpy{Context: ctx, called: make(chan struct{})}
	returned := make(chan error, 1) // ctx.Err() when Run returned
	go func() {
		r.Run(spy)
		returned <- ctx.Err()
	}()
	select {
	case <-spy.called:
	case <-returned:
		t.Fatal("Run without checks returned before its context ended")
	case <-time.After(5 * time.Second):
		t.Fatal("Run without checks did not wait on its context within 5s")
	}
	cancel()
	select {
	case err := <-returned:
		if err == nil {
			t.Fatal("Run without checks returned before its context ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of the cancellation")
	}
	if s := r.States(); len(s) != 0 {
		t.Errorf("States: got %+v, want none", s)
	}
}

func TestRunnerRunTwicePanics(t *testing.T) {
	r, err := NewRunner(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Run(ctx)
	defer func() {
		if recover() == nil {
			t.Errorf("a second Run did not panic")
		}
	}()
	r.Run(ctx)
}

func TestRunnerStatesSorted(t *testing.T) {
	cfgs := []Config{testCheck("redis", 1, 1), testCheck("core", 1, 1), {Name: "alpha", Type: TypeTCP, Address: "127.0.0.1:1"}}
	r, err := NewRunner(cfgs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range r.States() {
		got = append(got, s.Name+"/"+s.Type)
	}
	if want := "alpha/tcp core/exec redis/exec"; strings.Join(got, " ") != want {
		t.Errorf("States: got %v, want %s", got, want)
	}
	if cfgs[2].Interval != 0 {
		t.Errorf("NewRunner changed the caller's config: interval %s", cfgs[2].Interval)
	}
}

// TestRunnerRealProbes runs real exec probes on the real clock, one
// passing and one failing with fall 2, and waits for their verdicts.
func TestRunnerRealProbes(t *testing.T) {
	good := Config{Name: "good", Type: TypeExec, Argv: []string{"true"}, Interval: conf.Duration(20 * time.Millisecond)}
	bad := Config{Name: "bad", Type: TypeExec, Argv: []string{"sh", "-c", "echo nope; exit 3"}, Interval: conf.Duration(20 * time.Millisecond), Fall: 2}
	var mu sync.Mutex
	got := map[string]State{}
	r, err := NewRunner([]Config{good, bad}, func(s State) {
		mu.Lock()
		got[s.Name] = s
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := startRunner(t, r)
	waitFor(t, 5*time.Second, "verdicts of both checks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	stop()
	mu.Lock()
	defer mu.Unlock()
	if s := got["good"]; !s.Known || !s.Passing || s.OK != 1 {
		t.Errorf("good: got %+v, want passing after one success", s)
	}
	if s := got["bad"]; !s.Known || s.Passing || s.Failed != 2 || s.LastErr != "exit status 3: nope" || s.Output != "nope\n" {
		t.Errorf("bad: got %+v, want failing after 2 failures with LastErr %q", s, "exit status 3: nope")
	}
}

func TestSummary(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct{ in, want string }{
		{"", ""},
		{"PONG\n", "PONG"},
		{"\n  \r\n\tfirst: ok  \nsecond\n", "first: ok"},
		{"crlf\r\nnext", "crlf"},
		{"tab\there", "tab here"},
		{"\x1b[31mred\x1b[0m", "?[31mred?[0m"},
		{"caf\u00e9 \u2026 \xff", "caf? ? ?"},
		{"nul\x00byte\x7f", "nul?byte?"},
		{long, long[:197] + "..."},
		{strings.Repeat("ab ", 100), strings.TrimRight(strings.Repeat("ab ", 100)[:197], " ") + "..."},
	}
	for _, tc := range tests {
		got := Summary(tc.in)
		if got != tc.want {
			t.Errorf("Summary(%q): got %q, want %q", tc.in, got, tc.want)
		}
		if len(got) > maxSummary {
			t.Errorf("Summary(%q): %d bytes, want at most %d", tc.in, len(got), maxSummary)
		}
		for _, r := range got {
			if r < 0x20 || r > 0x7e {
				t.Errorf("Summary(%q): %q holds %q, not printable ASCII", tc.in, got, r)
			}
		}
	}
}

func TestStateReport(t *testing.T) {
	s := State{LastErr: "HTTP 500, want 200-399: \x1b]0;pwned\x07body\nline two", Output: "HTTP 500 in 3ms\nmore"}
	errText, out := s.Report()
	if errText != "HTTP 500, want 200-399: ?]0;pwned?body line two" {
		t.Errorf("Report error: got %q", errText)
	}
	if out != "HTTP 500 in 3ms" {
		t.Errorf("Report output: got %q, want the first line", out)
	}
	s.LastErr = strings.Repeat("é", 400) // 800 bytes
	if errText, _ := s.Report(); len(errText) > maxErr || !utf8.ValidString(errText) {
		t.Errorf("Report error: %d bytes (valid UTF-8: %v), want at most %d", len(errText), utf8.ValidString(errText), maxErr)
	}
}
