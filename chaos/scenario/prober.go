package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
)

// Attempt is one TCP connect of the client prober through the VIP.
type Attempt struct {
	// Start is when the connect began (with a monotonic reading when the
	// attempt was made in this process).
	Start time.Time `json:"start"`
	// Took is how long the attempt lasted (connect plus reading the
	// answer), or until it gave up.
	Took time.Duration `json:"took_ns"`
	// OK is true when the connection was accepted and the server's
	// answer (its node id) was read within the timeout.
	OK bool `json:"ok"`
	// Node is the node id the server answered with ("" on failure).
	Node string `json:"node,omitempty"`
	// Err says why the attempt failed.
	Err string `json:"err,omitempty"`
}

// ProbeConfig configures a Prober.
type ProbeConfig struct {
	// Target is the VIP and port to connect to; it must be in the lab
	// range (GuardHere refuses otherwise).
	Target netip.AddrPort
	// Every is the period between attempts (default 10ms).
	Every time.Duration
	// Timeout bounds one attempt, connect and answer (default 50ms).
	Timeout time.Duration
	// Spawn runs fn on a thread whose network namespace is the one the
	// probes are sent from, and returns fn's error; it blocks until fn
	// returns. In-process callers pass a wrapper of lab.Lab.InNamespace;
	// a process started inside the namespace (`harbormaster-lab probe`)
	// leaves it nil, which runs fn directly.
	Spawn func(fn func() error) error
	// OnAttempt, when set, is called with every finished attempt (from the
	// prober's goroutines; it must not block).
	OnAttempt func(Attempt)
}

// Prober connects to the target every Every, from a pool of workers each
// of which has run lab.GuardHere in the namespace it sends from, and
// records every attempt. Start it with StartProber; Stop it once.
type Prober struct {
	cfg  ProbeConfig
	jobs chan time.Time
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	attempts []Attempt
}

// StartProber starts the workers, waits until each has passed
// lab.GuardHere in its namespace (it returns the guard's error otherwise,
// having started nothing that sends), then starts probing.
func StartProber(cfg ProbeConfig) (*Prober, error) {
	if cfg.Every <= 0 {
		cfg.Every = 10 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 50 * time.Millisecond
	}
	if cfg.Spawn == nil {
		cfg.Spawn = func(fn func() error) error { return fn() }
	}
	if !lab.InLabRange(cfg.Target.Addr()) {
		return nil, fmt.Errorf("prober: %w: target %v is outside the lab range", lab.ErrNotInLab, cfg.Target)
	}
	// Enough workers that attempts never wait for a free one: at most
	// Timeout/Every attempts are in flight.
	workers := int(cfg.Timeout/cfg.Every) + 3
	p := &Prober{cfg: cfg, jobs: make(chan time.Time), stop: make(chan struct{})}
	ready := make(chan error, workers)
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_ = cfg.Spawn(func() error {
				// The guard runs on the very thread that sends.
				if err := lab.GuardHere(cfg.Target.Addr()); err != nil {
					ready <- err
					return err
				}
				ready <- nil
				p.work()
				return nil
			})
		}()
	}
	var guardErr error
	for range workers {
		if err := <-ready; err != nil && guardErr == nil {
			guardErr = err // the workers share one namespace: one error says it
		}
	}
	if err := guardErr; err != nil {
		close(p.stop)
		close(p.jobs)
		p.wg.Wait()
		return nil, fmt.Errorf("prober: %w", err)
	}
	p.wg.Add(1)
	go p.dispatch()
	return p, nil
}

// dispatch hands one attempt to a free worker every period; when every
// worker is busy the attempt is recorded as failed.
func (p *Prober) dispatch() {
	defer p.wg.Done()
	defer close(p.jobs)
	t := time.NewTicker(p.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			select {
			case p.jobs <- now:
			default:
				p.record(Attempt{Start: time.Now(), Err: "no free worker"})
			}
		}
	}
}

func (p *Prober) work() {
	for range p.jobs {
		p.record(p.attempt())
	}
}

// attempt connects once and reads the server's node id.
func (p *Prober) attempt() Attempt {
	start := time.Now()
	deadline := start.Add(p.cfg.Timeout)
	a := Attempt{Start: start}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.Dial("tcp4", p.cfg.Target.String())
	if err != nil {
		a.Took, a.Err = time.Since(start), shortErr(err)
		return a
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	line, err := bufio.NewReader(conn).ReadString('\n')
	a.Took = time.Since(start)
	if err != nil {
		a.Err = "read: " + shortErr(err)
		return a
	}
	a.OK, a.Node = true, strings.TrimSpace(line)
	return a
}

func shortErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

func (p *Prober) record(a Attempt) {
	p.mu.Lock()
	p.attempts = append(p.attempts, a)
	p.mu.Unlock()
	if p.cfg.OnAttempt != nil {
		p.cfg.OnAttempt(a)
	}
}

// Attempts returns a copy of the attempts finished so far, ordered by
// Start.
func (p *Prober) Attempts() []Attempt {
	p.mu.Lock()
	out := slices.Clone(p.attempts)
	p.mu.Unlock()
	sortAttempts(out)
	return out
}

// Since returns a copy of the finished attempts started at or after t,
// ordered by Start. Attempts are recorded as they finish, at most Timeout
// after they started, so the scan stops that far before t.
func (p *Prober) Since(t time.Time) []Attempt {
	p.mu.Lock()
	i := len(p.attempts)
	stop := t.Add(-p.cfg.Timeout - time.Second)
	for i > 0 && !p.attempts[i-1].Start.Before(stop) {
		i--
	}
	var out []Attempt
	for _, a := range p.attempts[i:] {
		if !a.Start.Before(t) {
			out = append(out, a)
		}
	}
	p.mu.Unlock()
	sortAttempts(out)
	return out
}

// LastSuccess returns the successful attempt that started last.
func (p *Prober) LastSuccess() (Attempt, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best Attempt
	found := false
	for i := len(p.attempts) - 1; i >= 0 && i >= len(p.attempts)-64; i-- {
		a := p.attempts[i]
		if a.OK && (!found || a.Start.After(best.Start)) {
			best, found = a, true
		}
	}
	return best, found
}

// Stop stops probing, waits for the workers and returns every attempt,
// ordered by Start. Call it once.
func (p *Prober) Stop() []Attempt {
	close(p.stop)
	p.wg.Wait()
	return p.Attempts()
}

func sortAttempts(as []Attempt) {
	slices.SortStableFunc(as, func(a, b Attempt) int { return a.Start.Compare(b.Start) })
}

// RunProbe runs a prober in the calling process until ctx ends, handing
// every finished attempt to report (`harbormaster-lab probe`). The process
// must run inside the lab namespace it sends from: GuardHere refuses to
// start otherwise, and RunProbe returns its error.
func RunProbe(ctx context.Context, cfg ProbeConfig, report func(Attempt)) error {
	cfg.OnAttempt = report
	p, err := StartProber(cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	p.Stop()
	return nil
}

// Serve accepts connections on ln until it is closed and answers each with
// node followed by a newline, then closes it: the stand-in for the
// registry front end behind the VIP, so the client can tell which node
// answered.
func Serve(ln net.Listener, node string) error {
	msg := []byte(node + "\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go func() {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write(msg)
			_ = c.Close()
		}()
	}
}
