package keepalived

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/chaos/scenario"
)

// Scenarios are the faults Run knows, named as the harbormaster scenarios
// they mirror.
var Scenarios = []string{"crash-holder", "kill-agent", "partition-holder", "stop-agent"}

// RunOptions configures Run.
type RunOptions struct {
	Options
	// Trials is the number of faults, one after the other in one lab
	// (default 1).
	Trials int
	// Settle is how long the cluster must be stable before a fault
	// (default 1s, as the scenarios).
	Settle time.Duration
	// StableTimeout bounds every wait for a stable cluster (default 60s).
	StableTimeout time.Duration
	// KillWindow is how long after a kill -9 the bench watches whether the
	// VIP is still on the killed node before it restarts keepalived there
	// (default 5s).
	KillWindow time.Duration
}

func (o *RunOptions) defaults() {
	if o.Trials <= 0 {
		o.Trials = 1
	}
	if o.Settle <= 0 {
		o.Settle = time.Second
	}
	if o.StableTimeout <= 0 {
		o.StableTimeout = 60 * time.Second
	}
	if o.KillWindow <= 0 {
		o.KillWindow = 5 * time.Second
	}
	if o.Advert <= 0 {
		o.Advert = time.Second
	}
}

// Profile names a keepalived variant in results: "keepalived advert 1s".
func Profile(advert time.Duration) string {
	return "keepalived advert_int " + advertString(advert)
}

const takeoverTimeout = 15 * time.Second

// Run builds a fresh lab with keepalived on 3 nodes, runs the trials of one
// fault and tears everything down (also when ctx ends). Its Result has the
// harbormaster scenarios' shape and analysis: OutageMS over the trials,
// DualHolderMS the longest time two reachable nodes had the address, and
// the figures failover_ms, addr_gone_ms (kill-agent: how long the VIP
// stayed on the killed node, capped at KillWindow), addr_left_at_end
// (kill-agent: 1 when it was still there at the restart), partition_ms,
// blackhole_after_heal.
func Run(ctx context.Context, name string, o RunOptions) (scenario.Result, error) {
	o.defaults()
	res := scenario.Result{Scenario: name, Profile: Profile(o.Advert), Violations: []string{}, PerTrial: []scenario.Trial{}}
	if !slices.Contains(Scenarios, name) {
		return res, fmt.Errorf("keepalived: unknown scenario %q; known: %s", name, strings.Join(Scenarios, ", "))
	}
	c, err := Start(ctx, o.Options)
	if err != nil {
		return res, err
	}
	defer func() {
		if err := c.Close(); err != nil && o.Log != nil {
			o.Log.Warn("teardown", "err", err)
		}
	}()
	log := c.log
	h, err := c.WaitStable(ctx, o.Settle, o.StableTimeout)
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Violations = append(res.Violations, fmt.Sprintf("%s: never stable: %v", scenario.Stamp(time.Now()), err))
		return scenario.Aggregate(res), nil
	}
	for i := 1; i <= o.Trials; i++ {
		start := time.Now()
		tr := scenario.Trial{N: i, Holder: h}
		log.Info("trial", "scenario", name, "profile", res.Profile, "n", i, "holder", h)
		var terr error
		switch name {
		case "crash-holder":
			terr = crashHolder(ctx, c, &tr)
		case "kill-agent":
			terr = killAgent(ctx, c, &tr, o.KillWindow)
		case "partition-holder":
			terr = partitionHolder(ctx, c, &tr)
		case "stop-agent":
			terr = stopAgent(ctx, c, &tr)
		}
		if terr != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("keepalived %s trial %d: %w", name, i, terr)
		}
		var rerr error
		h, rerr = c.WaitStable(ctx, o.Settle, o.StableTimeout)
		if rerr != nil && ctx.Err() != nil {
			return res, ctx.Err()
		}
		if rerr != nil {
			tr.Violate("%s: did not recover after the fault: %v", scenario.Stamp(time.Now()), rerr)
		}
		for _, e := range c.UnexpectedExits() {
			tr.Violate("%s", e)
		}
		longest, vs := scenario.DualHolders(c.SamplesSince(start), scenario.SamplePeriod)
		tr.DualHolderMS = scenario.Ms(longest)
		tr.Violations = append(vs, tr.Violations...)
		if err := c.Sampler.Err(); err != nil {
			tr.Violate("sampler: %v", err)
		}
		log.Info("trial done", "scenario", name, "profile", res.Profile, "n", i, "outage_ms", tr.OutageMS,
			"dual_holder_ms", tr.DualHolderMS, "figures", tr.Figures)
		res.PerTrial = append(res.PerTrial, tr)
		res.Trials = i
		if rerr != nil {
			break
		}
	}
	return scenario.Aggregate(res), nil
}

// takeover waits until a node other than old holds the VIP in its kernel
// (old may still hold it too: keepalived does not fence) and the client got
// an answer from it since t0. It records failover_ms (first sample showing
// the new node) and NewHolder.
func takeover(ctx context.Context, c *Cluster, tr *scenario.Trial, t0 time.Time) (string, bool) {
	deadline := time.Now().Add(takeoverTimeout)
	for {
		for _, n := range c.Holders() {
			if n == tr.Holder {
				continue
			}
			for _, a := range c.Prober.Since(t0) {
				if a.OK && a.Node == n {
					tr.NewHolder = n
					for _, s := range c.SamplesSince(t0) {
						if slices.Contains(s.Holders, n) {
							tr.Figure("failover_ms", scenario.Ms(s.At.Sub(t0)))
							break
						}
					}
					return n, true
				}
			}
		}
		if time.Now().After(deadline) {
			tr.Violate("no failover: %s after the fault at %s no other node holds the VIP and answers the client (holders %v)",
				takeoverTimeout, scenario.Stamp(t0), c.Holders())
			return "", false
		}
		if scenario.Sleep(ctx, 5*time.Millisecond) != nil {
			return "", false
		}
	}
}

// measure records the client outage from t0 to now, as the scenarios do.
func measure(c *Cluster, tr *scenario.Trial, t0 time.Time) {
	o := scenario.MeasureOutage(c.Prober.Since(t0.Add(-5*time.Second)), t0, time.Now())
	tr.OutageMS = scenario.Ms(o.Longest)
	tr.Figure("client_failures", float64(o.Failures))
}

func crashHolder(ctx context.Context, c *Cluster, tr *scenario.Trial) error {
	h := tr.Holder
	t0, err := c.Crash(h)
	tr.Fault = t0
	if err != nil {
		return err
	}
	if _, ok := takeover(ctx, c, tr, t0); ok {
		if err := scenario.Sleep(ctx, scenario.After); err != nil {
			return err
		}
	}
	measure(c, tr, t0)
	// The powered-off node keeps the address in its kernel (no lifetime);
	// a real machine reboots without it, so Reboot deletes it first.
	tr.Figure("crashed_kept_vip", b2f(c.Has(h)))
	return c.Reboot(h)
}

func killAgent(ctx context.Context, c *Cluster, tr *scenario.Trial, window time.Duration) error {
	h := tr.Holder
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Kill9(ctx, h); err != nil {
		return err
	}
	if _, ok := takeover(ctx, c, tr, t0); ok {
		if err := scenario.Sleep(ctx, scenario.After); err != nil {
			return err
		}
	}
	measure(c, tr, t0)
	if err := scenario.Sleep(ctx, time.Until(t0.Add(window))); err != nil {
		return err
	}
	gone := -1.0
	for _, s := range c.Sampler.SamplesSince(t0) {
		if !slices.Contains(s.Holders, h) {
			gone = scenario.Ms(s.At.Sub(t0))
			break
		}
	}
	if gone < 0 {
		tr.Figure("addr_gone_ms", scenario.Ms(time.Since(t0)))
		tr.Figure("addr_left_at_end", 1)
		tr.Note("the VIP was still on %s %s after kill -9 of keepalived", h, time.Since(t0).Round(time.Millisecond))
	} else {
		tr.Figure("addr_gone_ms", gone)
		tr.Figure("addr_left_at_end", 0)
	}
	// Restart keepalived there, as an operator would; see whether the
	// restart removes the stale address, else remove it by hand.
	if err := c.StartDaemon(h); err != nil {
		return err
	}
	removed := false
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if !c.Has(h) || slices.Equal(c.Holders(), []string{h}) {
			removed = true
			break
		}
		if err := scenario.Sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	tr.Figure("removed_by_hand", b2f(!removed))
	if !removed {
		tr.Note("the restarted keepalived on %s left the stale VIP; removed by hand", h)
		return c.DeleteVIP(h)
	}
	return nil
}

func partitionHolder(ctx context.Context, c *Cluster, tr *scenario.Trial) error {
	h := tr.Holder
	var others []string
	for _, n := range c.nodes {
		if n.Name != h {
			others = append(others, n.Name)
		}
	}
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Lab.Partition([]string{h}, others); err != nil {
		return err
	}
	if _, ok := takeover(ctx, c, tr, t0); ok {
		if err := scenario.Sleep(ctx, scenario.After); err != nil {
			return err
		}
	}
	measure(c, tr, t0)
	tr.Figure("old_holder_kept_vip", b2f(c.Has(h)))
	th := time.Now()
	tr.Figure("partition_ms", scenario.Ms(th.Sub(t0)))
	if err := c.Lab.Heal(); err != nil {
		return err
	}
	// After the heal: does the client reach the remaining holder within
	// 5 s (keepalived sometimes leaves it blackholed until its ARP entry
	// expires, §5)? If not, flush its entry so the run goes on.
	deadline := th.Add(5 * time.Second)
	for {
		if hh, _ := c.look(); hh != "" {
			tr.Figure("blackhole_after_heal", 0)
			return nil
		}
		if time.Now().After(deadline) {
			tr.Figure("blackhole_after_heal", 1)
			tr.Note("the client did not reach the holder within 5 s of the heal at %s; its ARP entry was flushed", scenario.Stamp(th))
			return c.FlushClientARP()
		}
		if err := scenario.Sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func stopAgent(ctx context.Context, c *Cluster, tr *scenario.Trial) error {
	h := tr.Holder
	t0 := time.Now()
	tr.Fault = t0
	errc := make(chan error, 1)
	go func() { errc <- c.Terminate(ctx, h) }()
	if _, ok := takeover(ctx, c, tr, t0); ok {
		if err := scenario.Sleep(ctx, scenario.After); err != nil {
			return err
		}
	}
	measure(c, tr, t0)
	if err := <-errc; err != nil {
		tr.Violate("%s: %v", scenario.Stamp(time.Now()), err)
	}
	if c.Has(h) {
		tr.Violate("%s: the VIP is still on %s after keepalived stopped", scenario.Stamp(time.Now()), h)
		if err := c.DeleteVIP(h); err != nil {
			return err
		}
	}
	return c.StartDaemon(h)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
