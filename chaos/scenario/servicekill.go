package scenario

import (
	"context"
	"fmt"
	"syscall"
	"time"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// The agent-fault service scenarios: notary's active node keeps running
// but its agent is killed (SIGKILL) or frozen (SIGSTOP). The agent cannot
// stop the service then; the service's guard (agent/serviceguard) must,
// at the end of the agent's lease, before the next holder may start it.

// guardMargin is what the stop bound allows after the lease's end: the
// guard's wake-up, the stop hook (SIGTERM the stand-in, wait for it) and
// the stand-in's stop line.
const guardMargin = 500 * time.Millisecond

// checkGuardStop checks that the lost holder's instance of notary logged
// its stop line by the end of the holder's lease plus guardMargin after
// the fault at t0 (figure old_stopped_ms), and returns it.
func checkGuardStop(ctx context.Context, c *Cluster, tr *Trial, old *hmv1.Role, t0 time.Time, what string) (Instance, bool) {
	x := old.Holder
	bound := c.Timing.Lease + guardMargin
	tr.figure("old_stop_bound_ms", msf(bound))
	in, ok := waitStopped(ctx, c, svcNotary, x, old.Epoch, bound+2*time.Second)
	if !ok {
		tr.violate("S3: the stand-in of %s (epoch %d) on %s did not stop within %s of the %s at %s: nothing stopped the service of the dead agent",
			svcNotary, old.Epoch, x, bound+2*time.Second, what, stamp(t0))
		return in, false
	}
	d := in.End.Sub(t0)
	tr.figure("old_stopped_ms", msf(d))
	tr.note("the stand-in of %s on %s stopped %s after the %s", svcNotary, x, ms(d), what)
	if d > bound {
		tr.violate("S3: the stand-in of %s on %s stopped %s after the %s at %s, later than the lease %s + %s",
			svcNotary, x, ms(d), what, stamp(t0), c.Timing.Lease, guardMargin)
	}
	return in, true
}

// checkStopBeforeNext records the gap between the old instance's stop and
// the next instance's start (figure stop_to_next_ms), which must not be
// negative: two active instances.
func checkStopBeforeNext(tr *Trial, stopped, next Instance) {
	gap := next.Start.Sub(stopped.End)
	tr.figure("stop_to_next_ms", msf(gap))
	if gap < 0 {
		tr.violate("S1: %s started on %s at %s while %s still ran (its stop at %s)",
			svcNotary, next.Node, stamp(next.Start), stopped, stamp(stopped.End))
	}
}

// serviceKillAgent SIGKILLs the agent of notary's active node only (the
// node and its stand-in keep running): the guard stops the stand-in at
// the lease's end, and the next instance starts on another node after it.
// The agent is restarted afterwards.
func serviceKillAgent(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	old, _, err := svcPrologue(ctx, c, v, tr)
	if err != nil {
		return err
	}
	x := old.Holder
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Signal(x, syscall.SIGKILL); err != nil {
		return err
	}
	stopped, stopOK := checkGuardStop(ctx, c, tr, old, t0, "kill -9 of its agent")
	if err := vipAfter(ctx, c, tr, v, x, t0); err != nil {
		return err
	}
	next, ok := checkFailover(ctx, c, tr, old, t0, lostWindow(c), "service_failover")
	if ok && stopOK {
		checkStopBeforeNext(tr, stopped, next)
	}
	vipStayed(c, tr, v, x, t0)
	measure(c, tr, t0)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.WaitAgentExit(wctx, x); err != nil {
		return fmt.Errorf("agent on %s did not exit after SIGKILL: %w", x, err)
	}
	return c.StartAgent(x)
}

// servicePauseAgent freezes the agent of notary's active node (SIGSTOP)
// for 3 s, longer than the lease plus the stop timeout: the guard stops
// the stand-in at the lease's end while the agent is frozen, the next
// instance starts on another node after it, and the agent, resumed
// (SIGCONT), does not start notary again.
func servicePauseAgent(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	const pause = 3 * time.Second
	old, _, err := svcPrologue(ctx, c, v, tr)
	if err != nil {
		return err
	}
	x := old.Holder
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Signal(x, syscall.SIGSTOP); err != nil {
		return err
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = c.Signal(x, syscall.SIGCONT)
		}
	}()
	stopped, stopOK := checkGuardStop(ctx, c, tr, old, t0, "SIGSTOP of its agent")
	if err := vipAfter(ctx, c, tr, v, x, t0); err != nil {
		return err
	}
	next, ok := checkFailover(ctx, c, tr, old, t0, lostWindow(c), "service_failover")
	if ok && stopOK {
		checkStopBeforeNext(tr, stopped, next)
	}
	if err := Sleep(ctx, time.Until(t0.Add(pause))); err != nil {
		return err
	}
	tc := time.Now()
	if err := c.Signal(x, syscall.SIGCONT); err != nil {
		return err
	}
	resumed = true
	if err := Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	// The resumed agent's lease lapsed: it must not start notary again
	// while another node runs it (Run's check of the stand-ins' log
	// catches an overlap; this names it).
	if insts, err := c.svcLog.Instances(); err == nil {
		for _, in := range insts {
			if in.Role == svcNotary && in.Node == x && in.Start.After(tc) {
				tr.violate("%s started %s again at %s after SIGCONT at %s", x, svcNotary, stamp(in.Start), stamp(tc))
			}
		}
	}
	vipStayed(c, tr, v, x, t0)
	measure(c, tr, t0)
	return nil
}
