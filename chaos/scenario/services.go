package scenario

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/fsm"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// The service scenarios: two active/standby services, notary
// and clair (which avoids notary's node), run by the lab's stand-in (see
// RunStandIn) on whichever node holds their role, next to the registry VIP.
// Every instance logs when it starts, beats every 20 ms and logs when it
// stops; Run checks after every trial that no two instances of one role
// were ever active at once and that epochs only grow. The scenarios fault
// notary's active node and time the start of the next instance.

const (
	svcNotary = "notary"
	svcClair  = "clair"
	// svcStopTimeout is both roles' stop_timeout: the stop hook's
	// timeout, and the grace the next holder waits after the old holder's
	// lease surely ended when it was lost without a release.
	svcStopTimeout = 2 * time.Second
	// svcMargin covers what follows the grace: the coordinator's next
	// pass, the assignment's commit, the new holder's start hook and the
	// stand-in's first line.
	svcMargin = time.Second
)

// serviceCluster is the spec of the service scenarios: the VIP, notary,
// and clair avoiding notary's node; both run stand-ins.
func serviceCluster(co *ClusterOptions, _ Options) error {
	if co.LabBin == "" {
		return errNoLabBin
	}
	co.Spec = fmt.Sprintf(`roles:
  - {name: %s, type: vip, address: %s}
  - {name: %s, type: service, stop_timeout: %s}
  - {name: %s, type: service, stop_timeout: %s, avoid: [%s]}
`, VIPRole, VIP, svcNotary, svcStopTimeout, svcClair, svcStopTimeout, svcNotary)
	co.StandIns = []string{svcClair, svcNotary}
	return nil
}

// role returns a role as node via's state has it.
func (c *Cluster) role(ctx context.Context, via, name string) (*hmv1.Role, error) {
	rs, err := c.Roles(ctx, via)
	// A node whose agent just restarted can reset the first call on the
	// client's connection (Unavailable): ask again, for up to 2 s.
	for deadline := time.Now().Add(2 * time.Second); status.Code(err) == codes.Unavailable && time.Now().Before(deadline); {
		if Sleep(ctx, 100*time.Millisecond) != nil {
			break
		}
		rs, err = c.Roles(ctx, via)
	}
	if err != nil {
		return nil, err
	}
	for _, r := range rs.Roles {
		if r.Name == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("no role %s on %s", name, via)
}

// waitNewInstance waits until an instance of role starts at or after t on
// another node than old.
func waitNewInstance(ctx context.Context, c *Cluster, role, old string, t time.Time, timeout time.Duration) (Instance, bool) {
	var found Instance
	ok := poll(ctx, timeout, func() bool {
		insts, _ := c.svcLog.Instances()
		for _, in := range insts {
			if in.Role == role && in.Node != old && !in.Start.Before(t) {
				found = in
				return true
			}
		}
		return false
	})
	return found, ok
}

// waitStopped waits until the instance of role on node at epoch logged its
// stop line.
func waitStopped(ctx context.Context, c *Cluster, role, node string, epoch uint64, timeout time.Duration) (Instance, bool) {
	var found Instance
	ok := poll(ctx, timeout, func() bool {
		insts, _ := c.svcLog.Instances()
		for _, in := range insts {
			if in.Role == role && in.Node == node && in.Epoch == epoch && in.Stopped {
				found = in
				return true
			}
		}
		return false
	})
	return found, ok
}

// svcPrologue finds notary's active node and instance, and notes the
// placement.
func svcPrologue(ctx context.Context, c *Cluster, v View, tr *Trial) (*hmv1.Role, Instance, error) {
	r, err := c.role(ctx, v.Leader, svcNotary)
	if err != nil {
		return nil, Instance{}, err
	}
	in, ok := c.svcLog.Active(svcNotary, r.Holder, r.Epoch, standInFresh)
	if !ok {
		return nil, Instance{}, fmt.Errorf("no running stand-in of %s on its holder %s", svcNotary, r.Holder)
	}
	tr.note("before the fault: %s active on %s (epoch %d, pid %d), services %v, VIP on %s",
		svcNotary, r.Holder, r.Epoch, in.PID, v.Services, v.Holder)
	return r, in, nil
}

// failoverWindow is when the next instance of a service lost without a
// release may start, counted from the fault: not before min (what the old
// holder's lease and the stop timeout allow; minWhy says how min is made
// up), not after bound.
type failoverWindow struct {
	min, bound time.Duration
	minWhy     string
}

// lostWindow is the window after a fault that stops the holder's renewals
// at once (crash, partition): the old lease ends at t0 + lease at the
// latest, at t0 + lease - renew at the earliest (a renewal earlier when
// one was late: 2 renewals of slack), then the stop timeout's grace.
func lostWindow(c *Cluster) failoverWindow {
	lease, renew := c.Timing.Lease, c.Timing.Renew
	return failoverWindow{min: svcStopTimeout + lease - 2*renew, bound: svcStopTimeout + lease + svcMargin,
		minWhy: fmt.Sprintf("stop_timeout %s + lease %s - 2 renewals of %s", svcStopTimeout, lease, renew)}
}

// checkFailover records the start of the next instance of notary after a
// fault at t0 that lost its holder without a release: figure <prefix>_ms,
// which must lie within the window. Faster than its min means the next
// holder did not wait for the old holder's lease to end plus the stop
// timeout (S4 and the stop grace).
func checkFailover(ctx context.Context, c *Cluster, tr *Trial, old *hmv1.Role, t0 time.Time, w failoverWindow, prefix string) (Instance, bool) {
	minD, bound := w.min, w.bound
	tr.figure(prefix+"_min_ms", msf(minD))
	tr.figure(prefix+"_bound_ms", msf(bound))
	in, ok := waitNewInstance(ctx, c, svcNotary, old.Holder, t0, bound+5*time.Second)
	if !ok {
		tr.violate("no instance of %s started on another node than %s within %s of the fault at %s",
			svcNotary, old.Holder, bound+5*time.Second, stamp(t0))
		return in, false
	}
	d := in.Start.Sub(t0)
	tr.figure(prefix+"_ms", msf(d))
	tr.note("%s started on %s at epoch %d, %s after the fault", svcNotary, in.Node, in.Epoch, ms(d))
	switch {
	case d < minD:
		tr.violate("%s started on %s %s after the fault at %s, before %s's lease could end plus the stop timeout (%s = %s): the grace is not enforced",
			svcNotary, in.Node, ms(d), stamp(t0), old.Holder, ms(minD), w.minWhy)
	case d > bound:
		tr.violate("%s started on %s %s after the fault at %s, later than %s", svcNotary, in.Node, ms(d), stamp(t0), ms(bound))
	}
	if in.Epoch <= old.Epoch {
		tr.violate("S2: %s started on %s with epoch %d, not above the lost holder's %d", svcNotary, in.Node, in.Epoch, old.Epoch)
	}
	// The new holder applied its assignment before it ran the start hook.
	if r, err := c.role(ctx, in.Node, svcNotary); err == nil && (r.Holder != in.Node || r.Epoch != in.Epoch) {
		tr.violate("%s runs on %s at epoch %d, the state says %s at %d", svcNotary, in.Node, in.Epoch, r.Holder, r.Epoch)
	}
	return in, true
}

// vipAfter follows the VIP when the faulted node held it too.
func vipAfter(ctx context.Context, c *Cluster, tr *Trial, v View, node string, t0 time.Time) error {
	if v.Holder != node {
		return nil
	}
	if f, ok := recordFailover(ctx, c, tr, t0); ok {
		if err := Sleep(ctx, after); err != nil {
			return err
		}
		checkARP(c, tr, f.node)
	}
	return nil
}

// vipStayed records, when the faulted node did not hold the VIP, how many
// samples since t0 did not show the VIP on its holder alone
// (vip_samples_off_holder): a fault elsewhere should leave it alone.
func vipStayed(c *Cluster, tr *Trial, v View, node string, t0 time.Time) {
	if v.Holder == node {
		return
	}
	off := 0
	for _, s := range c.SamplesSince(t0) {
		if len(s.Holders) != 1 || s.Holders[0] != v.Holder {
			if off == 0 {
				tr.note("the VIP left its holder %s at %s (holders %v) although the fault was on %s", v.Holder, stamp(s.At), s.Holders, node)
			}
			off++
		}
	}
	tr.figure("vip_samples_off_holder", float64(off))
}

// serviceCrashActive powers notary's active node off (lab.Crash: the
// stand-in dies with it, without a stop line) and restores it afterwards.
func serviceCrashActive(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	old, _, err := svcPrologue(ctx, c, v, tr)
	if err != nil {
		return err
	}
	x := old.Holder
	t0, err := c.Crash(x)
	tr.Fault = t0
	if err != nil {
		return err
	}
	if err := vipAfter(ctx, c, tr, v, x, t0); err != nil {
		return err
	}
	checkFailover(ctx, c, tr, old, t0, lostWindow(c), "service_failover")
	if err := Sleep(ctx, after); err != nil {
		return err
	}
	vipStayed(c, tr, v, x, t0)
	measure(c, tr, t0)
	return c.Restore(x)
}

// servicePartitionActive cuts notary's active node from the other nodes
// (the client still reaches everyone): it must stop its instance once its
// lease is invalid, and the majority must start the next one only after
// that lease surely ended plus the stop timeout. Healed afterwards.
func servicePartitionActive(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	old, _, err := svcPrologue(ctx, c, v, tr)
	if err != nil {
		return err
	}
	x := old.Holder
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Lab.Partition([]string{x}, c.others(x)); err != nil {
		return err
	}
	tc := time.Now()
	tr.figure("cut_install_ms", msf(tc.Sub(t0)))
	lease := c.Timing.Lease
	// S3: the cut-off holder stops the service as soon as its lease is
	// invalid; it must have stopped by the time another node may start it.
	stopBound := lease + svcStopTimeout
	tr.figure("old_stop_bound_ms", msf(stopBound))
	if in, ok := waitStopped(ctx, c, svcNotary, x, old.Epoch, stopBound+time.Second); ok {
		d := in.End.Sub(tc)
		tr.figure("old_stopped_ms", msf(d))
		if d > stopBound {
			tr.violate("S3: the cut-off %s stopped %s %s after the cut at %s, later than its lease plus the stop timeout (%s)",
				x, svcNotary, ms(d), stamp(tc), ms(stopBound))
		}
	} else {
		tr.violate("S3: the cut-off %s did not stop %s (epoch %d) within %s of the cut at %s",
			x, svcNotary, old.Epoch, stopBound+time.Second, stamp(tc))
	}
	if err := vipAfter(ctx, c, tr, v, x, t0); err != nil {
		return err
	}
	checkFailover(ctx, c, tr, old, tc, lostWindow(c), "service_failover")
	vipStayed(c, tr, v, x, t0)
	measure(c, tr, t0)
	th := time.Now()
	if err := c.Lab.Heal(); err != nil {
		return err
	}
	// After the heal the old holder rejoins as a standby: Run's check of
	// the stand-ins' log covers a restart of its own.
	tr.note("healed at %s", stamp(th))
	return nil
}

// stopHookHangs makes notary's stop hook on its active node stop the
// stand-in and then hang, and moves notary away (`harbormaster move`): the
// agent must kill the hook at stop_timeout, commit no release, fence
// itself (let its lease lapse), and the role must start on the target
// only once that lease surely ended plus the stop timeout.
func stopHookHangs(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	old, _, err := svcPrologue(ctx, c, v, tr)
	if err != nil {
		return err
	}
	x := old.Holder
	target := c.others(x)[0]
	if err := c.SetStopHang(x, svcNotary, true); err != nil {
		return err
	}
	hanging := true
	defer func() {
		if hanging {
			_ = c.SetStopHang(x, svcNotary, false)
		}
	}()
	seq, err := lastEventSeq(ctx, c, v.Leader)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	tr.note("stop hook of %s on %s set to hang; move %s to %s", svcNotary, x, svcNotary, target)
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Move(ctx, v.Leader, svcNotary, target); err != nil {
		tr.violate("%s: move %s to %s: %v", stamp(t0), svcNotary, target, err)
		return nil
	}
	if in, ok := waitStopped(ctx, c, svcNotary, x, old.Epoch, 2*time.Second); ok {
		tr.figure("old_stopped_ms", msf(in.End.Sub(t0)))
	} else {
		tr.violate("the stop hook on %s did not stop the stand-in of %s (epoch %d) within 2 s of the move at %s",
			x, svcNotary, old.Epoch, stamp(t0))
	}
	// The hook is killed at stop_timeout, the node fences itself: from
	// there on it is the window of a lost holder.
	w := lostWindow(c)
	w.min, w.bound = svcStopTimeout+w.min, svcStopTimeout+w.bound
	w.minWhy = "the stop hook's timeout " + svcStopTimeout.String() + " + " + w.minWhy
	in, ok := checkFailover(ctx, c, tr, old, t0, w, "move")
	if ok && in.Node != target {
		tr.violate("%s started on %s, not on the move's target %s", svcNotary, in.Node, target)
	}
	if err := vipAfter(ctx, c, tr, v, x, t0); err != nil {
		return err
	}
	checkStopTimeoutEvents(ctx, c, tr, old, target, seq, t0)
	if err := c.SetStopHang(x, svcNotary, false); err != nil {
		return err
	}
	hanging = false
	vipStayed(c, tr, v, x, t0)
	measure(c, tr, t0)
	return nil
}

// checkStopTimeoutEvents checks the event log of stopHookHangs: the stop
// timed out about stop_timeout after the move (hook_killed_ms), the node
// fenced itself, no release of the old epoch was committed, and the role
// was assigned at a greater epoch. via is the node asked.
func checkStopTimeoutEvents(ctx context.Context, c *Cluster, tr *Trial, old *hmv1.Role, via string, seq uint64, t0 time.Time) {
	x := old.Holder
	var evs []*hmv1.Event
	var timedOut, fenced, released, assigned *hmv1.Event
	pollEvery(ctx, 50*time.Millisecond, 3*time.Second, func() bool {
		var err error
		if evs, err = c.Events(ctx, via, seq); err != nil {
			return false
		}
		timedOut, fenced, released, assigned = nil, nil, nil, nil
		for _, e := range evs {
			switch {
			case timedOut == nil && fsm.EventKind(e.Kind) == fsm.EventService && e.Node == x && e.Role == svcNotary && strings.Contains(e.Message, "stop timed out"):
				timedOut = e
			case fenced == nil && fsm.EventKind(e.Kind) == fsm.EventService && e.Node == x && strings.Contains(e.Message, "fences itself"):
				fenced = e
			case released == nil && fsm.EventKind(e.Kind) == fsm.EventRoleReleased && e.Role == svcNotary && e.Epoch == old.Epoch:
				released = e
			case assigned == nil && fsm.EventKind(e.Kind) == fsm.EventRoleAssigned && e.Role == svcNotary && e.Epoch > old.Epoch:
				assigned = e
			}
		}
		return timedOut != nil && fenced != nil && assigned != nil
	})
	t0ms := t0.Truncate(time.Millisecond)
	if timedOut == nil {
		tr.violate("no event of %s's stop hook timing out on %s", svcNotary, x)
	} else {
		d := eventTime(timedOut).Sub(t0ms)
		tr.figure("hook_killed_ms", float64(d.Milliseconds()))
		if d < svcStopTimeout || d > svcStopTimeout+time.Second {
			tr.violate("the stop hook on %s was killed %s after the move at %s, not at its stop_timeout %s (event #%d: %s)",
				x, ms(d), stamp(t0), svcStopTimeout, timedOut.Seq, timedOut.Message)
		}
	}
	if fenced == nil {
		tr.violate("no event of %s fencing itself after its stop hook timed out", x)
	} else {
		tr.figure("fenced_ms", float64(eventTime(fenced).Sub(t0ms).Milliseconds()))
	}
	if released != nil {
		tr.violate("%s committed a release of %s at epoch %d (event #%d) although its stop hook timed out", x, svcNotary, old.Epoch, released.Seq)
	}
	if assigned == nil {
		tr.violate("no assignment of %s above epoch %d in the event log", svcNotary, old.Epoch)
	} else {
		tr.note("event #%d: %s assigned to %s at epoch %d (%s)", assigned.Seq, svcNotary, assigned.Node, assigned.Epoch, assigned.Message)
	}
}
