package scenario

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/fsm"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// The scenarios where the VIP follows health checks:
// registry-down (a registry-pull check fails on the holder, the VIP is
// handed over) and flap (a check that flaps on the preferred node, damped
// by hold_down).

// Registry check of registry-down. Harbor's production setting is
// keepalived's: `docker pull` every 10 s, fall 2, rise 1, so a dead
// registry is noticed within 20-30 s. The lab divides the interval by 10
// (1 s; the timeout 500 ms, half of it) and keeps fall and rise: the
// detection bound fall x interval + timeout is 2.5 s here, 25 s in
// production with a 5 s timeout.
const (
	registryCheck    = "registry"
	registryPort     = 5000
	registryRepo     = "library/hello-world"
	registryInterval = time.Second
	registryTimeout  = 500 * time.Millisecond
	registryFall     = 2
	registryRise     = 1
	// registryMargin covers what follows the check's verdict in a planned
	// hand-over: the transition's commit, the coordinator's release
	// request, the holder removing the VIP and committing its release, the
	// new holder adding it, and the 10 ms sampler.
	registryMargin = 500 * time.Millisecond
	// noMoveBack is how long after the registry thaws the VIP must stay
	// where it went (preempt is off).
	noMoveBack = 5 * time.Second
)

func registryURL(n lab.Node) string { return fmt.Sprintf("http://%s:%d", n.IP, registryPort) }

// registryCluster gives every node a docker-registry on its own address,
// filled with the tiny hello-world index from inside the node's namespace,
// and a registry-pull check of it that the VIP requires.
func registryCluster(co *ClusterOptions, _ Options) error {
	if co.LabBin == "" {
		return errNoLabBin
	}
	if _, err := exec.LookPath("docker-registry"); err != nil {
		return fmt.Errorf("registry-down needs docker-registry (Debian package docker-registry; scripts/deps.sh): %w", err)
	}
	co.Spec = fmt.Sprintf("roles:\n  - {name: %s, type: vip, address: %s, requires: [%s]}\n", VIPRole, VIP, registryCheck)
	co.Daemons = append(co.Daemons, Daemon{Name: "registry", Argv: func(c *Cluster, n lab.Node) ([]string, error) {
		dir := filepath.Join(c.Dir(), "registry", n.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s:%d
  secret: harbormaster-lab
`, filepath.Join(dir, "storage"), n.IP, registryPort)
		path := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		return []string{"docker-registry", "serve", path}, nil
	}})
	co.Prepare = func(ctx context.Context, c *Cluster) error {
		for _, n := range c.Nodes() {
			if _, err := c.RunInLab(ctx, n.Name, "internal", "push", "--registry", registryURL(n),
				"--repo", registryRepo, "--tag", "latest", "--wait", "15s"); err != nil {
				return err
			}
		}
		return nil
	}
	co.NodeExtra = func(_ *Cluster, n lab.Node) string {
		return fmt.Sprintf(`checks:
  - name: %s
    type: registry-pull
    registry: %s
    image: %s:latest
    platform: linux/amd64
    interval: %s
    timeout: %s
    fall: %d
    rise: %d
`, registryCheck, registryURL(n), registryRepo, registryInterval, registryTimeout, registryFall, registryRise)
	}
	return nil
}

// waitChecksPassing waits until every node's check of that name is
// passing in the state (as node via sees it).
func waitChecksPassing(ctx context.Context, c *Cluster, via, check string, timeout time.Duration) error {
	var why string
	ok := pollEvery(ctx, 50*time.Millisecond, timeout, func() bool {
		m, err := c.Members(ctx, via)
		if err != nil {
			why = err.Error()
			return false
		}
		for _, mem := range m.Members {
			state := "not run"
			for _, ch := range mem.Checks {
				if ch.Name == check {
					state = ch.State
				}
			}
			if state != "passing" {
				why = fmt.Sprintf("check %s on %s is %s", check, mem.Id, state)
				return false
			}
		}
		return true
	})
	if !ok {
		return fmt.Errorf("after %s: %s", timeout, why)
	}
	return nil
}

// lastEventSeq returns the sequence number of the newest event node has.
func lastEventSeq(ctx context.Context, c *Cluster, node string) (uint64, error) {
	evs, err := c.Events(ctx, node, 0)
	if err != nil {
		return 0, err
	}
	var seq uint64
	for _, e := range evs {
		seq = max(seq, e.Seq)
	}
	return seq, nil
}

// checkEvent reports whether e is a transition of check on node to state
// ("passing" or "failing"). The first verdict (from unknown) counts only
// with firstToo.
func checkEvent(e *hmv1.Event, node, check, state string, firstToo bool) bool {
	return fsm.EventKind(e.Kind) == fsm.EventCheck && e.Node == node && e.New == state && strings.HasPrefix(e.Message, check+" ") &&
		(firstToo || e.Old != "unknown")
}

// waitEvent polls node's events after since until one satisfies pred.
func waitEvent(ctx context.Context, c *Cluster, node string, since uint64, timeout time.Duration, pred func(*hmv1.Event) bool) (*hmv1.Event, bool) {
	var found *hmv1.Event
	pollEvery(ctx, 50*time.Millisecond, timeout, func() bool {
		evs, err := c.Events(ctx, node, since)
		if err != nil {
			return false
		}
		for _, e := range evs {
			if pred(e) {
				found = e
				return true
			}
		}
		return false
	})
	return found, found != nil
}

func eventTime(e *hmv1.Event) time.Time { return time.UnixMilli(e.TimeUnixMs) }

// registryDown freezes the holder's registry (SIGSTOP: it accepts
// connections and answers nothing), expects its registry-pull check to
// fail after fall probes and the VIP to be handed over (planned: the
// holder releases), then thaws it: the check passes again and the VIP
// stays where it went.
func registryDown(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	if err := waitChecksPassing(ctx, c, v.Leader, registryCheck, 15*time.Second); err != nil {
		tr.violate("%s: before the fault: %v", stamp(time.Now()), err)
		return nil
	}
	h := v.Holder
	reg := c.Daemon(h, "registry")
	if reg == nil || reg.Exited() {
		return fmt.Errorf("no running registry on %s", h)
	}
	seq, err := lastEventSeq(ctx, c, v.Leader)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	detectBound := time.Duration(registryFall)*registryInterval + registryTimeout
	// A probe that started a few ms before the fault is cut by it too, so
	// the earliest legitimate verdict is a little before (fall-1) x
	// interval + timeout.
	detectMin := time.Duration(registryFall-1)*registryInterval + registryTimeout - 100*time.Millisecond
	moveBound := detectBound + registryMargin
	tr.figure("detect_bound_ms", msf(detectBound))
	tr.figure("move_bound_ms", msf(moveBound))

	t0 := time.Now()
	tr.Fault = t0
	if err := reg.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	thawed := false
	defer func() {
		if !thawed {
			_ = reg.Signal(syscall.SIGCONT)
		}
	}()
	tr.note("SIGSTOP of docker-registry (pid %d) on the holder %s", reg.Pid(), h)
	f, moved := recordFailover(ctx, c, tr, t0)
	if moved {
		if !f.kernel.IsZero() {
			d := f.kernel.Sub(t0)
			tr.figure("move_ms", msf(d))
			if d > moveBound {
				tr.violate("the VIP reached %s %s after the registry froze at %s, later than fall x interval + timeout + margin = %s",
					f.node, ms(d), stamp(t0), ms(moveBound))
			}
		}
		tr.figure("client_move_ms", msf(f.client.Sub(t0)))
		if err := Sleep(ctx, after); err != nil {
			return err
		}
		checkARP(c, tr, f.node)
	}
	checkHandOverEvents(ctx, c, tr, v, seq, t0, detectMin, detectBound)

	tc := time.Now()
	if err := reg.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	thawed = true
	if e, ok := waitEvent(ctx, c, v.Leader, seq, registryInterval+registryTimeout+2*time.Second, func(e *hmv1.Event) bool {
		return checkEvent(e, h, registryCheck, "passing", false) && !eventTime(e).Before(tc.Truncate(time.Millisecond))
	}); ok {
		tr.figure("recover_ms", float64(eventTime(e).Sub(tc.Truncate(time.Millisecond)).Milliseconds()))
	} else {
		tr.violate("the %s check on %s did not pass again within %s of SIGCONT at %s (rise %d)",
			registryCheck, h, registryInterval+registryTimeout+2*time.Second, stamp(tc), registryRise)
	}
	if err := Sleep(ctx, time.Until(tc.Add(noMoveBack))); err != nil {
		return err
	}
	if moved {
		back := 0
		for _, s := range between(c.SamplesSince(tc), tc, tc.Add(noMoveBack)) {
			if holds(s, h) {
				if back == 0 {
					tr.violate("the VIP went back to %s at %s after its registry thawed at %s (preempt is off)", h, stamp(s.At), stamp(tc))
				}
				back++
			}
		}
		tr.figure("samples_back_on_old_holder", float64(back))
	}
	measure(c, tr, t0)
	return nil
}

// checkHandOverEvents checks the event log of a check-driven hand-over of
// the VIP away from v.Holder: the check's failing transition (detect_ms,
// within [detectMin, detectBound] of t0), then the release request, the
// holder's release and the assignment to the new holder at the next
// epoch, in that order (a planned hand-over, not a lease expiry).
func checkHandOverEvents(ctx context.Context, c *Cluster, tr *Trial, v View, seq uint64, t0 time.Time, detectMin, detectBound time.Duration) {
	h := v.Holder
	var evs []*hmv1.Event
	// The sampler may see the new holder before the assignment's event is
	// on the node asked: wait for it.
	pollEvery(ctx, 50*time.Millisecond, 3*time.Second, func() bool {
		var err error
		evs, err = c.Events(ctx, v.Leader, seq)
		if err != nil {
			return false
		}
		for _, e := range evs {
			if fsm.EventKind(e.Kind) == fsm.EventRoleAssigned && e.Role == VIPRole && e.Epoch > v.Epoch {
				return true
			}
		}
		return false
	})
	var check, request, release, assign *hmv1.Event
	for _, e := range evs {
		switch {
		case check == nil && checkEvent(e, h, registryCheck, "failing", false):
			check = e
		case request == nil && fsm.EventKind(e.Kind) == fsm.EventReleaseRequested && e.Role == VIPRole && e.Epoch == v.Epoch:
			request = e
		case release == nil && fsm.EventKind(e.Kind) == fsm.EventRoleReleased && e.Role == VIPRole && e.Epoch == v.Epoch:
			release = e
		case assign == nil && fsm.EventKind(e.Kind) == fsm.EventRoleAssigned && e.Role == VIPRole && e.Epoch > v.Epoch:
			assign = e
		}
	}
	if check == nil {
		tr.violate("no event of the %s check failing on %s after the fault at %s", registryCheck, h, stamp(t0))
		return
	}
	d := eventTime(check).Sub(t0.Truncate(time.Millisecond))
	tr.figure("detect_ms", float64(d.Milliseconds()))
	switch {
	case d > detectBound+50*time.Millisecond:
		tr.violate("the %s check on %s turned failing %s after the fault, later than fall x interval + timeout = %s",
			registryCheck, h, ms(d), ms(detectBound))
	case d < detectMin:
		tr.violate("the %s check on %s turned failing %s after the fault, sooner than %d failed probes allow (%s): fall is not honoured",
			registryCheck, h, ms(d), registryFall, ms(detectMin))
	}
	switch {
	case request == nil:
		tr.violate("no release request of %s (epoch %d) after the check failed: not a planned hand-over", VIPRole, v.Epoch)
	case release == nil:
		tr.violate("%s released no %s (epoch %d): the VIP moved by lease expiry, not by a planned hand-over", h, VIPRole, v.Epoch)
	case assign == nil:
		tr.violate("no assignment of %s after epoch %d", VIPRole, v.Epoch)
	case !(check.Seq < request.Seq && request.Seq < release.Seq && release.Seq < assign.Seq):
		tr.violate("events out of order: check #%d, release request #%d, release #%d, assignment #%d",
			check.Seq, request.Seq, release.Seq, assign.Seq)
	default:
		tr.note("events: #%d %s; #%d release requested (%s); #%d released by %s; #%d assigned to %s at epoch %d",
			check.Seq, check.Message, request.Seq, request.Message, release.Seq, release.Node, assign.Seq, assign.Node, assign.Epoch)
	}
}

// Flap: the preferred node's check flaps. The VIP's candidates put the
// initial holder first; preempt brings the VIP back to it 2 s after it
// qualifies again, and hold_down keeps a node that lost the VIP from
// getting it back for 15 s (unless no other node qualifies). Without
// hold_down a check flapping every 3 s moves the VIP twice every 6 s.
const (
	flapCheck        = "up"
	flapEvery        = 3 * time.Second
	flapCheckEvery   = 500 * time.Millisecond
	flapPreemptDelay = 2 * time.Second
	flapHoldDown     = 15 * time.Second
	// flapTop is the candidate of the highest priority.
	flapTop = "n1"
)

var flapPriority = map[string]int{"n1": 100, "n2": 50, "n3": 10}

func (c *Cluster) flapFile(node string) string { return filepath.Join(c.Dir(), "flap", node+"-ok") }

// flapCluster gives every node an exec check of its health file and the
// VIP the damped preemption of the scenario.
func flapCluster(co *ClusterOptions, _ Options) error {
	test, err := exec.LookPath("test")
	if err != nil {
		return fmt.Errorf("flap needs test(1) on PATH: %w", err)
	}
	co.Spec = fmt.Sprintf(`roles:
  - name: %s
    type: vip
    address: %s
    candidates: [{node: n1, priority: %d}, {node: n2, priority: %d}, {node: n3, priority: %d}]
    preempt: true
    preempt_delay: %s
    hold_down: %s
    requires: [%s]
`, VIPRole, VIP, flapPriority["n1"], flapPriority["n2"], flapPriority["n3"], flapPreemptDelay, flapHoldDown, flapCheck)
	co.NodeExtra = func(c *Cluster, n lab.Node) string {
		return fmt.Sprintf(`checks:
  - name: %s
    type: exec
    argv: [%q, -e, %q]
    interval: %s
    timeout: %s
    fall: 1
    rise: 1
`, flapCheck, test, c.flapFile(n.Name), flapCheckEvery, flapCheckEvery)
	}
	co.Prepare = func(_ context.Context, c *Cluster) error {
		if err := os.MkdirAll(filepath.Join(c.Dir(), "flap"), 0o755); err != nil {
			return err
		}
		for _, n := range c.Nodes() {
			if err := os.WriteFile(c.flapFile(n.Name), nil, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	return nil
}

// flapMovesBound is the most VIP moves hold_down allows in d: the node
// that lost the VIP gets it back at most once per hold_down, which costs
// two moves (back to it, and away again when its check fails), plus 2
// for the first move away and the last return.
func flapMovesBound(d time.Duration) int {
	return 2*int(math.Ceil(float64(d)/float64(flapHoldDown))) + 2
}

// flap toggles the top candidate's health file every 3 s for
// o.FlapDuration while it is the preferred holder, and counts the VIP's
// moves (kernel sampler) against the hold-down bound.
func flap(ctx context.Context, c *Cluster, v View, tr *Trial, o Options) error {
	if v.Holder != flapTop {
		// A previous trial left the VIP elsewhere: preempt brings it back
		// once the hold-down has passed.
		wait := flapHoldDown + flapPreemptDelay + 10*time.Second
		var err error
		if !poll(ctx, wait, func() bool { hs := c.Holders(); return len(hs) == 1 && hs[0] == flapTop }) {
			tr.violate("%s: the VIP did not come back to %s (priority %d, preempt) within %s", stamp(time.Now()), flapTop, flapPriority[flapTop], wait)
			return ctx.Err()
		}
		if v, err = c.WaitStable(ctx, o.Settle, o.StableTimeout); err != nil {
			tr.violate("%s: %v", stamp(time.Now()), err)
			return ctx.Err()
		}
		tr.Holder, tr.Leader = v.Holder, v.Leader
	}
	seq, err := lastEventSeq(ctx, c, v.Leader)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	file := c.flapFile(flapTop)
	t0 := time.Now()
	tr.Fault = t0
	flips := 0
	ok := true
	for i := 0; time.Duration(i)*flapEvery < o.FlapDuration; i++ {
		if err := Sleep(ctx, time.Until(t0.Add(time.Duration(i)*flapEvery))); err != nil {
			return err
		}
		if ok {
			err = os.Remove(file)
		} else {
			err = os.WriteFile(file, nil, 0o644)
		}
		if err != nil {
			return err
		}
		ok = !ok
		flips++
	}
	if err := Sleep(ctx, time.Until(t0.Add(o.FlapDuration))); err != nil {
		return err
	}
	if !ok {
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			return err
		}
		flips++
	}
	// Let the last transition reach the state.
	if err := Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	end := time.Now()
	n, drops, holderless, timeline := moves(between(c.SamplesSince(t0), t0, end))
	bound := flapMovesBound(o.FlapDuration)
	tr.figure("flips", float64(flips))
	tr.figure("moves", float64(n))
	tr.figure("moves_bound", float64(bound))
	tr.figure("vip_drops", float64(drops))
	tr.figure("holderless_ms", msf(holderless))
	for _, m := range timeline {
		tr.note("VIP change: %s", m)
	}
	if n > bound {
		tr.violate("the VIP moved %d times in %s of a check flapping every %s on %s (and %s after), more than hold_down %s allows (%d)",
			n, o.FlapDuration, flapEvery, flapTop, ms(end.Sub(t0.Add(o.FlapDuration))), flapHoldDown, bound)
	}
	evs, err := c.Events(ctx, v.Leader, seq)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	checks, assigns := 0, 0
	for _, e := range evs {
		switch {
		case fsm.EventKind(e.Kind) == fsm.EventCheck && e.Node == flapTop && strings.HasPrefix(e.Message, flapCheck+" ") && e.Old != "unknown":
			checks++
		case fsm.EventKind(e.Kind) == fsm.EventRoleAssigned && e.Role == VIPRole:
			assigns++
		}
	}
	tr.figure("check_events", float64(checks))
	tr.figure("vip_assignments", float64(assigns))
	if checks < flips {
		tr.violate("%d transitions of the %s check on %s in the event log for %d flips of its file (every %s, probed every %s): the state missed some",
			checks, flapCheck, flapTop, flips, flapEvery, flapCheckEvery)
	}
	if hs := c.Holders(); len(hs) == 1 && hs[0] != v.Holder {
		tr.NewHolder = hs[0]
	}
	measure(c, tr, t0)
	return nil
}
