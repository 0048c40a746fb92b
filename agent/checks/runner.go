package checks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxJitter bounds the random delay before a check's first probe.
const maxJitter = 2 * time.Second

// State is what the runner knows of one check.
type State struct {
	Name, Type string
	// Known is false until the check reached its first verdict (rise
	// successes or fall failures since the runner started).
	Known bool
	// Passing is the verdict; always false while !Known.
	Passing bool
	// Since is the time of the last transition, or of the runner's start
	// while !Known (zero before Run).
	Since time.Time
	// LastRun is when the last counted probe started (zero before one).
	LastRun time.Time
	// LastErr is the last probe's error, "" after a success; at most 512
	// bytes.
	LastErr string
	// Output is the last probe's output; at most 1 KiB. It stays on the
	// node: Report says what of it may be replicated.
	Output string
	// OK and Failed count the current run of consecutive successes and
	// failures; one of them is 0.
	OK, Failed int
}

// Report returns what may leave the node of the check's last probe, for the
// replicated check result: the error on one line, its control characters
// replaced by '?' (at most 512 bytes), and the output's Summary. The full
// output stays in State.Output, on the node.
func (s State) Report() (errText, output string) {
	return oneLinePrintable(s.LastErr, maxErr), Summary(s.Output)
}

// Runner runs a node's checks, each on its interval in its own goroutine,
// and tracks their verdicts with keepalived's fall/rise semantics (see the
// package documentation). The first probe of each check starts after a
// random jitter in [0, min(interval, 2s)); later probes follow every
// interval on a ticker, a tick coming due while the previous probe still
// runs being skipped. A probe is bounded by its check's timeout.
type Runner struct {
	checks   []*check // sorted by name
	onChange func(State)
	// OnProbe, when set (before Run), is called after every counted probe
	// with the check's name, whether it passed and how long it took.
	OnProbe func(name string, passed bool, took time.Duration)

	mu       sync.Mutex // guards checks and the state of every check
	notifyMu sync.Mutex // serializes onChange calls
	started  atomic.Bool

	// runMu serializes Run's start and Update; runCtx is Run's context
	// (nil before Run), wg counts the checks' goroutines.
	runMu  sync.Mutex
	runCtx context.Context
	wg     sync.WaitGroup

	// Clock and randomness, replaced by tests.
	now       func() time.Time
	randN     func(n int64) int64                                     // uniform in [0, n), n > 0
	newTicker func(d time.Duration) (c <-chan time.Time, stop func()) // ticks every d
	newTimer  func(d time.Duration) (c <-chan time.Time, stop func()) // fires once after d
}

// check is one check of a Runner.
type check struct {
	cfg    Config // normalized and validated
	prober Prober
	state  State // guarded by Runner.mu
	// stop ends the check's goroutine and done is closed when it returned
	// (nil before it started).
	stop context.CancelFunc
	done chan struct{}
}

// NewRunner normalizes and validates copies of cfgs (as the list "checks"
// of a node's config, so errors are *conf.FieldError naming checks[i].field) and
// builds their probers. onChange, which may be nil, is called on every
// transition of a check with its new State, from the check's goroutine.
// Calls are serialized (one at a time, across checks); the runner's state
// is not locked during a call, so onChange may call States. It must return
// quickly: that check's probes, and other checks' transitions, wait for it.
// NewRunner starts nothing.
func NewRunner(cfgs []Config, onChange func(State)) (*Runner, error) {
	cs, err := prepare(cfgs)
	if err != nil {
		return nil, err
	}
	r := &Runner{
		onChange:  onChange,
		now:       time.Now,
		randN:     rand.Int64N,
		newTicker: realTicker,
		newTimer:  realTimer,
	}
	for i, c := range cs {
		p, err := NewProber(c)
		if err != nil {
			return nil, fmt.Errorf("checks[%d]: %w", i, err)
		}
		r.checks = append(r.checks, &check{cfg: c, prober: p, state: State{Name: c.Name, Type: c.Type}})
	}
	slices.SortFunc(r.checks, byName)
	return r, nil
}

func byName(a, b *check) int { return strings.Compare(a.cfg.Name, b.cfg.Name) }

// prepare normalizes and validates copies of cfgs.
func prepare(cfgs []Config) ([]Config, error) {
	cs := make([]Config, len(cfgs))
	for i, c := range cfgs {
		c.Argv = append([]string(nil), c.Argv...)
		c.Env = append([]string(nil), c.Env...)
		c.TokenRealms = append([]string(nil), c.TokenRealms...)
		c.Normalize()
		cs[i] = c
	}
	if err := ValidateAll(cs); err != nil {
		return nil, err
	}
	return cs, nil
}

// Update replaces the runner's checks with cfgs (a config reload), before
// or while Run runs. A check whose normalized config is unchanged keeps
// running with its state; a removed one stops (Update waits for its
// goroutine; a probe under way is canceled and not counted); a new or
// changed one starts afresh, unknown, as at Run's start. On an error
// (validation, a prober that cannot be built) nothing changes. It returns
// the names added, removed and changed, sorted. Safe for concurrent use;
// it must not be called from onChange.
func (r *Runner) Update(cfgs []Config) (added, removed, changed []string, err error) {
	cs, err := prepare(cfgs)
	if err != nil {
		return nil, nil, nil, err
	}
	r.runMu.Lock()
	defer r.runMu.Unlock()
	r.mu.Lock()
	old := map[string]*check{}
	for _, c := range r.checks {
		old[c.cfg.Name] = c
	}
	r.mu.Unlock()
	var next, stale []*check
	for i, c := range cs {
		if o, ok := old[c.Name]; ok && reflect.DeepEqual(o.cfg, c) {
			next = append(next, o)
			delete(old, c.Name)
			continue
		}
		p, err := NewProber(c)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("checks[%d]: %w", i, err)
		}
		if o, ok := old[c.Name]; ok {
			changed = append(changed, c.Name)
			stale = append(stale, o)
			delete(old, c.Name)
		} else {
			added = append(added, c.Name)
		}
		next = append(next, &check{cfg: c, prober: p, state: State{Name: c.Name, Type: c.Type}})
	}
	for name, o := range old {
		removed = append(removed, name)
		stale = append(stale, o)
	}
	for _, o := range stale {
		if o.stop != nil {
			o.stop()
			<-o.done
		}
	}
	slices.SortFunc(next, byName)
	start := r.now()
	r.mu.Lock()
	r.checks = next
	var fresh []*check
	for _, c := range next {
		if c.done == nil && r.runCtx != nil {
			c.state.Since = start
			fresh = append(fresh, c)
		}
	}
	r.mu.Unlock()
	for _, c := range fresh {
		r.start(c)
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	return added, removed, changed, nil
}

// start runs c's goroutine under Run's context, unless Run is ending;
// runMu is held.
func (r *Runner) start(c *check) {
	if r.runCtx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(r.runCtx)
	c.stop, c.done = cancel, make(chan struct{})
	r.wg.Go(func() {
		defer close(c.done)
		r.loop(ctx, c)
	})
}

func realTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

func realTimer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// Run runs the checks until ctx is done, then waits for their goroutines
// (an ongoing probe is canceled and not counted) and returns. Run may be
// called once per Runner.
func (r *Runner) Run(ctx context.Context) {
	if !r.started.CompareAndSwap(false, true) {
		panic("checks: Runner.Run called twice")
	}
	r.runMu.Lock()
	r.runCtx = ctx
	start := r.now()
	r.mu.Lock()
	cs := slices.Clone(r.checks)
	for _, c := range cs {
		c.state.Since = start
	}
	r.mu.Unlock()
	for _, c := range cs {
		r.start(c)
	}
	r.runMu.Unlock()
	<-ctx.Done()
	// Update starts no check once ctx is done (their loops return at once),
	// and runMu orders its wg.Go before this Wait.
	r.runMu.Lock()
	r.runMu.Unlock()
	r.wg.Wait()
}

// States returns a snapshot of every check's state, sorted by name. It is
// safe to call at any time, from any goroutine.
func (r *Runner) States() []State {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]State, len(r.checks))
	for i, c := range r.checks {
		out[i] = c.state
	}
	return out
}

// loop runs one check's probes until ctx is done.
func (r *Runner) loop(ctx context.Context, c *check) {
	interval := time.Duration(c.cfg.Interval)
	timer, stopTimer := r.newTimer(r.jitter(interval))
	select {
	case <-ctx.Done():
		stopTimer()
		return
	case <-timer:
	}
	ticks, stopTicker := r.newTicker(interval)
	defer stopTicker()
	for {
		end := r.probe(ctx, c)
		for due := false; !due; {
			select {
			case <-ctx.Done():
				return
			case t := <-ticks:
				// A tick that came due while the probe ran is skipped:
				// probes never overlap, and a late one causes no burst.
				due = !t.Before(end)
			}
		}
	}
}

// jitter returns the delay before the first probe of a check: uniform in
// [0, min(interval, 2s)).
func (r *Runner) jitter(interval time.Duration) time.Duration {
	return time.Duration(r.randN(int64(min(interval, maxJitter))))
}

// probe runs one probe of c, records its result and reports a transition.
// It returns when the probe ended.
func (r *Runner) probe(ctx context.Context, c *check) time.Time {
	timeout := time.Duration(c.cfg.Timeout)
	start := r.now()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	out, err := c.prober.Probe(pctx)
	timedOut := errors.Is(pctx.Err(), context.DeadlineExceeded)
	cancel()
	end := r.now()
	if ctx.Err() != nil {
		return end // stopping: the probe was cut short, it does not count
	}
	if err != nil && timedOut {
		var te *timeoutError
		switch {
		case errors.As(err, &te):
		case errors.Is(err, context.DeadlineExceeded):
			err = &timeoutError{after: timeout}
		default:
			err = fmt.Errorf("timed out after %s: %w", timeout, err)
		}
	}

	if r.OnProbe != nil {
		r.OnProbe(c.cfg.Name, err == nil, end.Sub(start))
	}
	r.mu.Lock()
	s := &c.state
	s.LastRun = start
	s.Output = clipHead(out, maxOutput)
	if err == nil {
		s.LastErr = ""
		s.OK, s.Failed = s.OK+1, 0
	} else {
		s.LastErr = clipHead(err.Error(), maxErr)
		s.OK, s.Failed = 0, s.Failed+1
	}
	changed := false
	switch {
	case (!s.Known || !s.Passing) && s.OK >= c.cfg.Rise:
		s.Known, s.Passing, s.Since, changed = true, true, end, true
	case (!s.Known || s.Passing) && s.Failed >= c.cfg.Fall:
		s.Known, s.Passing, s.Since, changed = true, false, end, true
	}
	snap := *s
	r.mu.Unlock()

	if changed && r.onChange != nil {
		r.notifyMu.Lock()
		r.onChange(snap)
		r.notifyMu.Unlock()
	}
	return end
}
