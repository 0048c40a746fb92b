package scenario

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
)

const (
	// fenceSlack is how long after its lease ends a dead or frozen agent's
	// address may still carry traffic (S5, DESIGN.md §5: "gone within
	// lease + 50 ms"): the fence's live element (vip.NFTFence) runs out at
	// the lease end by the kernel's clock, in jiffies (4 ms at HZ=250); the
	// sampler sees it within its 10 ms period. The address's own lifetime
	// (whole seconds, up to 1.3 s late here) is only the second backstop.
	fenceSlack = 50*time.Millisecond + lab.DefaultSampleEvery
	// failoverTimeout bounds the wait for a new holder after a fault.
	failoverTimeout = 10 * time.Second
	// after is how long a trial keeps observing once the client reaches the
	// new holder, so that a late second holder or a flap is seen.
	after = 500 * time.Millisecond
	// probeRefusal is the agent's log message when its ARP probe finds
	// someone else answering for the VIP (vip.Manager.hold).
	probeRefusal = "another host answers for the address"
)

// others returns the nodes other than name.
func (c *Cluster) others(name string) []string {
	var out []string
	for _, n := range c.nodes {
		if n.Name != name {
			out = append(out, n.Name)
		}
	}
	return out
}

// failover is when a new holder took over: the first sample at or after
// the fault where another node was the sole holder (kernel), and the first
// successful connect through the VIP answered by that node (client).
type failover struct {
	node           string
	kernel, client time.Time
}

// waitFailover waits until a node other than old is the sole holder in the
// kernels and the client got an answer from it, both after t0.
func waitFailover(ctx context.Context, c *Cluster, old string, t0 time.Time, timeout time.Duration) (failover, bool) {
	var f failover
	ok := poll(ctx, timeout, func() bool {
		hs := c.Holders()
		if len(hs) != 1 || hs[0] == old {
			return false
		}
		a, found := firstSuccess(c.Prober.Since(t0), t0, func(n string) bool { return n == hs[0] })
		if !found {
			return false
		}
		f.node, f.client = hs[0], a.Start
		return true
	})
	if !ok {
		return f, false
	}
	if s, found := firstSample(c.SamplesSince(t0), t0, func(s lab.Sample) bool { return soleHolder(s) == f.node }); found {
		f.kernel = s.At
	}
	return f, true
}

// addressGone waits (up to 3 s) for the raw sampler, powered-off nodes not
// masked, to show node without the address after t0, and returns when it
// first did.
func addressGone(ctx context.Context, c *Cluster, node string, t0 time.Time) (time.Time, bool) {
	find := func() (time.Time, bool) {
		s, ok := firstSample(c.Sampler.SamplesSince(t0), t0, func(s lab.Sample) bool { return !holds(s, node) })
		return s.At, ok
	}
	var at time.Time
	ok := poll(ctx, 3*time.Second, func() bool {
		var found bool
		at, found = find()
		return found
	})
	return at, ok
}

// checkKernelBound records how long the address stayed usable in node's
// kernel after its agent stopped acting at t0 (S5), as figure name (the
// first sample without it), and fails when a sample saw it usable later
// than the lease plus fenceSlack after t0 (the last renewal came before
// t0).
func checkKernelBound(ctx context.Context, c *Cluster, tr *Trial, node string, t0 time.Time, name, what string) {
	gone, ok := addressGone(ctx, c, node, t0)
	if !ok {
		tr.violate("S5: the address was still usable on %s 3 s after %s at %s", node, what, stamp(t0))
		return
	}
	d := gone.Sub(t0)
	tr.figure(name, msf(d))
	// The violation needs a sample that saw the address usable past the
	// bound: a sampler delayed by a busy machine takes its first dark
	// sample late, which proves nothing.
	var last time.Time
	for _, s := range c.Sampler.SamplesSince(t0) {
		if !s.At.Before(gone) {
			break
		}
		if holds(s, node) {
			last = s.At
		}
	}
	if bound := c.Timing.Lease + fenceSlack; !last.IsZero() && last.Sub(t0) > bound {
		tr.violate("S5: the address on %s was still usable %s after %s at %s (at %s; dark at %s), later than the lease plus %s (%s)",
			node, ms(last.Sub(t0)), what, stamp(t0), stamp(last), stamp(gone), ms(fenceSlack), ms(bound))
	}
}

// checkARP asserts that the client's ARP entry for the VIP is node's MAC.
func checkARP(c *Cluster, tr *Trial, node string) {
	want := c.Node(node).MAC
	mac, ok := c.Lab.ARPCache(client, VIP.Addr())
	if !ok || mac.String() != want.String() {
		tr.violate("ARP: at %s the client's entry for %s is %v, not the holder %s's %s", stamp(time.Now()), VIP.Addr(), mac, node, want)
	}
}

// recordFailover waits for the new holder after a fault at t0 and records
// it; false if none came.
func recordFailover(ctx context.Context, c *Cluster, tr *Trial, t0 time.Time) (failover, bool) {
	f, ok := waitFailover(ctx, c, tr.Holder, t0, failoverTimeout)
	if !ok {
		if ctx.Err() == nil {
			tr.violate("no failover: %s after the fault at %s no other node holds the VIP and answers the client (kernel holders %v)",
				failoverTimeout, stamp(t0), c.Holders())
		}
		return f, false
	}
	tr.NewHolder = f.node
	if !f.kernel.IsZero() {
		tr.figure("failover_ms", msf(f.kernel.Sub(t0)))
	}
	return f, true
}

// measure records the client outage from t0 to now.
func measure(c *Cluster, tr *Trial, t0 time.Time) outage {
	o := measureOutage(c.Prober.Since(t0.Add(-5*time.Second)), t0, time.Now())
	tr.OutageMS = msf(o.Longest)
	tr.figure("client_failures", float64(o.Failures))
	return o
}

func crashHolder(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	h := v.Holder
	t0, err := c.Crash(h)
	tr.Fault = t0
	if err != nil {
		return err
	}
	if f, ok := recordFailover(ctx, c, tr, t0); ok {
		if err := Sleep(ctx, after); err != nil {
			return err
		}
		checkARP(c, tr, f.node)
		checkFailoverMetrics(ctx, c, tr, f.node)
	}
	measure(c, tr, t0)
	// The crashed node is off: its kernel must still drop the address
	// within the lifetime, so that it does not come back with it.
	checkKernelBound(ctx, c, tr, h, t0, "crashed_addr_gone_ms", "the crash")
	return c.Restore(h)
}

func killAgent(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	h := v.Holder
	offsets := map[string]int64{}
	for _, n := range c.others(h) {
		_, offsets[n] = c.logCount(n, probeRefusal, 0)
	}
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Signal(h, syscall.SIGKILL); err != nil {
		return err
	}
	checkKernelBound(ctx, c, tr, h, t0, "addr_gone_ms", "kill -9 of its agent")
	if f, ok := recordFailover(ctx, c, tr, t0); ok {
		if err := Sleep(ctx, after); err != nil {
			return err
		}
		checkARP(c, tr, f.node)
	}
	measure(c, tr, t0)
	refusals := 0
	for n, off := range offsets {
		k, _ := c.logCount(n, probeRefusal, off)
		refusals += k
	}
	tr.figure("probe_refusals", float64(refusals))
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.WaitAgentExit(wctx, h); err != nil {
		return fmt.Errorf("agent on %s did not exit after SIGKILL: %w", h, err)
	}
	return c.StartAgent(h)
}

func pauseAgent(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	const pause = 3 * time.Second
	h := v.Holder
	t0 := time.Now()
	tr.Fault = t0
	if err := c.Signal(h, syscall.SIGSTOP); err != nil {
		return err
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = c.Signal(h, syscall.SIGCONT)
		}
	}()
	checkKernelBound(ctx, c, tr, h, t0, "addr_gone_ms", "SIGSTOP of its agent")
	f, ok := recordFailover(ctx, c, tr, t0)
	if ok && f.client.After(t0.Add(pause)) {
		tr.violate("no failover during the %s pause (from %s)", pause, stamp(t0))
	}
	if err := Sleep(ctx, time.Until(t0.Add(pause))); err != nil {
		return err
	}
	tc := time.Now()
	if err := c.Signal(h, syscall.SIGCONT); err != nil {
		return err
	}
	resumed = true
	if err := Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	readded := 0
	for _, s := range c.SamplesSince(tc) {
		if holds(s, h) {
			readded = 1
			if len(s.Holders) > 1 {
				tr.violate("S1/S3: %s re-added the address after SIGCONT at %s while %v held it (sample %s)",
					h, stamp(tc), s.Holders, stamp(s.At))
			}
			break
		}
	}
	tr.figure("readded_after_resume", float64(readded))
	if hs := c.Holders(); len(hs) == 1 {
		checkARP(c, tr, hs[0])
	}
	measure(c, tr, t0)
	return nil
}

// isolate applies a partition fault to the holder and checks the common
// partition properties: the holder drops the VIP within its lease (S3, S6),
// the majority side takes it, the client follows. With clientCut the
// client is on the holder's side: it cannot follow, so only the kernels'
// failover is awaited.
func isolate(ctx context.Context, c *Cluster, tr *Trial, cut func(h string, others []string) error, clientCut bool) (time.Time, error) {
	h := tr.Holder
	t0 := time.Now()
	tr.Fault = t0
	if err := cut(h, c.others(h)); err != nil {
		return t0, err
	}
	// The cut takes a few ms to install (one nft transaction per host,
	// and per call for OneWay); it is complete at tc. The holder's lease
	// started when it sent its last granted renewal, before tc; it must
	// drop the address before tc + lease. The sampler sees the removal up
	// to one period late. holder_dropped_ms counts from tc.
	tc := time.Now()
	tr.figure("cut_install_ms", msf(tc.Sub(t0)))
	bound := c.Timing.Lease + samplePeriod
	if gone, ok := addressGone(ctx, c, h, tc); !ok {
		tr.violate("S3/S6: %s still held the VIP 3 s after it was cut off at %s", h, stamp(tc))
	} else {
		d := gone.Sub(tc)
		tr.figure("holder_dropped_ms", msf(d))
		if d > bound {
			tr.violate("S3/S6: %s dropped the VIP %s after it was cut off at %s (at %s), later than its lease (%s + %s sampling)",
				h, ms(d), stamp(tc), stamp(gone), c.Timing.Lease, samplePeriod)
		}
	}
	if clientCut {
		var f failover
		ok := poll(ctx, failoverTimeout, func() bool {
			s, found := firstSample(c.SamplesSince(t0), t0, func(s lab.Sample) bool {
				h := soleHolder(s)
				return h != "" && h != tr.Holder
			})
			f.node, f.kernel = soleHolder(s), s.At
			return found
		})
		if !ok {
			tr.violate("no failover: %s after the fault at %s no other node holds the VIP (kernel holders %v)",
				failoverTimeout, stamp(t0), c.Holders())
			return t0, ctx.Err()
		}
		tr.NewHolder = f.node
		tr.figure("failover_ms", msf(f.kernel.Sub(t0)))
		return t0, Sleep(ctx, after)
	}
	if f, ok := recordFailover(ctx, c, tr, t0); ok {
		if err := Sleep(ctx, after); err != nil {
			return t0, err
		}
		checkARP(c, tr, f.node)
	}
	measure(c, tr, t0)
	return t0, nil
}

func partitionCut(c *Cluster) func(h string, others []string) error {
	return func(h string, others []string) error { return c.Lab.Partition([]string{h}, others) }
}

func partitionHolder(ctx context.Context, c *Cluster, _ View, tr *Trial, _ Options) error {
	if _, err := isolate(ctx, c, tr, partitionCut(c), false); err != nil {
		return err
	}
	return c.Lab.Heal()
}

func onewayPartition(ctx context.Context, c *Cluster, _ View, tr *Trial, _ Options) error {
	_, err := isolate(ctx, c, tr, func(h string, others []string) error {
		for _, o := range others {
			if err := c.Lab.OneWay(h, o); err != nil {
				return err
			}
		}
		return nil
	}, false)
	if err != nil {
		return err
	}
	return c.Lab.Heal()
}

// heal runs partition-holder, then heals the partition: within 1 s the
// client must reach whoever holds the VIP then (no blackhole).
func heal(ctx context.Context, c *Cluster, v View, tr *Trial, o Options) error {
	return healAfter(ctx, c, tr, partitionCut(c), false)
}

// healClient is heal with the client on the holder's side of the
// partition: while it lasts the client reaches only the old holder, which
// drops the VIP, and keeps its ARP entry pointing at it; on heal the new
// holder must be reached within 1 s (keepalived's blackhole case, §5).
func healClient(ctx context.Context, c *Cluster, v View, tr *Trial, o Options) error {
	return healAfter(ctx, c, tr, func(h string, others []string) error {
		return c.Lab.Partition([]string{h, client}, others)
	}, true)
}

func healAfter(ctx context.Context, c *Cluster, tr *Trial, cut func(h string, others []string) error, clientCut bool) error {
	const (
		reachBound = time.Second
		watch      = 2 * time.Second
	)
	if _, err := isolate(ctx, c, tr, cut, clientCut); err != nil {
		return err
	}
	if !clientCut {
		tr.figure("partition_outage_ms", tr.OutageMS)
	}
	if mac, ok := c.Lab.ARPCache(client, VIP.Addr()); ok {
		tr.note("before the heal the client's ARP entry for the VIP is %s", mac)
	}
	th := time.Now()
	if err := c.Lab.Heal(); err != nil {
		return err
	}
	if err := Sleep(ctx, watch); err != nil {
		return err
	}
	hs := c.Holders()
	if len(hs) != 1 {
		tr.violate("after the heal at %s the VIP is held by %v", stamp(th), hs)
		return nil
	}
	cur := hs[0]
	attempts := c.Prober.Since(th.Add(-5 * time.Second))
	if a, ok := firstSuccess(attempts, th, func(n string) bool { return n == cur }); !ok {
		tr.violate("blackhole: the client did not reach the holder %s within %s of the heal at %s", cur, watch, stamp(th))
		// Measure how long the blackhole lasts (up to a minute).
		var reached Attempt
		if poll(ctx, time.Minute, func() bool {
			var found bool
			reached, found = firstSuccess(c.Prober.Since(th), th, func(n string) bool { return n == cur })
			return found
		}) {
			tr.figure("reach_after_heal_ms", msf(reached.Start.Sub(th)))
			tr.note("the client reached %s %s after the heal", cur, ms(reached.Start.Sub(th)))
		} else {
			tr.note("the client did not reach %s within a minute of the heal", cur)
		}
	} else {
		d := a.Start.Sub(th)
		tr.figure("reach_after_heal_ms", msf(d))
		if d > reachBound {
			tr.violate("blackhole: the client reached the holder %s only %s after the heal at %s", cur, ms(d), stamp(th))
		}
	}
	from := attempts
	if clientCut {
		// The client was cut off with the old holder: it could reach no
		// holder before the heal, and that gap is the partition, not a
		// blackhole. Count from the heal.
		from = c.Prober.Since(th)
	}
	out := measureOutage(from, th, th.Add(watch))
	tr.OutageMS = msf(out.Longest)
	if out.Longest > reachBound {
		tr.violate("blackhole: no successful connect from %s to %s (%s), after the heal at %s",
			stamp(out.Start), stamp(out.End), ms(out.Longest), stamp(th))
	}
	checkARP(c, tr, cur)
	if clientCut {
		// The client cannot have reached anyone but the old holder before
		// the heal; a blackhole shows up after it.
		tr.figure("client_failures", float64(out.Failures))
	}
	return nil
}

// leaderTo moves Raft leadership to target (`harbormaster
// transfer-leader`) and waits for a stable cluster whose VIP holder has not
// changed; false (with a violation recorded) otherwise.
func leaderTo(ctx context.Context, c *Cluster, tr *Trial, v View, target string, o Options) (View, bool) {
	if v.Leader == target {
		return v, true
	}
	h := v.Holder
	if err := c.TransferLeader(ctx, v.Leader, target); err != nil {
		tr.violate("%s: transfer leadership from %s to %s: %v", stamp(time.Now()), v.Leader, target, err)
		return v, false
	}
	nv, err := c.WaitStable(ctx, o.Settle, o.StableTimeout)
	if err != nil {
		tr.violate("%s: the cluster was not stable after a leadership transfer: %v", stamp(time.Now()), err)
		return nv, false
	}
	tr.note("leadership moved from %s to %s first", v.Leader, nv.Leader)
	if nv.Leader != target || nv.Holder != h {
		tr.violate("%s: after the leadership transfer to %s the leader is %s and the holder %s (was %s)",
			stamp(time.Now()), target, nv.Leader, nv.Holder, h)
		return nv, false
	}
	tr.Leader = nv.Leader
	return nv, true
}

func crashLeader(ctx context.Context, c *Cluster, v View, tr *Trial, o Options) error {
	const (
		watch     = 3 * time.Second
		maxOutage = 100 * time.Millisecond
	)
	h := v.Holder
	if v.Leader == h {
		var ok bool
		if v, ok = leaderTo(ctx, c, tr, v, c.others(h)[0], o); !ok {
			return ctx.Err()
		}
	}
	l := v.Leader
	t0, err := c.Crash(l)
	tr.Fault = t0
	if err != nil {
		return err
	}
	// Time until a survivor names another leader.
	var newLeader time.Time
	pollEvery(ctx, 20*time.Millisecond, watch, func() bool {
		for _, n := range c.others(l) {
			if st, err := c.Status(ctx, n); err == nil && st.Leader != "" && st.Leader != l {
				newLeader = time.Now()
				return true
			}
		}
		return false
	})
	if !newLeader.IsZero() {
		tr.figure("leader_failover_ms", msf(newLeader.Sub(t0)))
	} else {
		tr.violate("no new leader within %s of crashing leader %s at %s", watch, l, stamp(t0))
	}
	if err := Sleep(ctx, time.Until(t0.Add(watch))); err != nil {
		return err
	}
	end := time.Now()
	changes := 0
	for _, s := range between(c.SamplesSince(t0), t0, end) {
		if !slices.Equal(s.Holders, []string{h}) {
			changes++
			if changes == 1 {
				tr.violate("VIP moved: at %s the holders were %v, not %s, after the leader %s crashed at %s",
					stamp(s.At), s.Holders, h, l, stamp(t0))
			}
		}
	}
	tr.figure("samples_not_on_holder", float64(changes))
	out := measure(c, tr, t0)
	if out.Longest > maxOutage {
		tr.violate("client outage %s (from %s to %s) after the leader crash at %s, more than %s",
			ms(out.Longest), stamp(out.Start), stamp(out.End), stamp(t0), maxOutage)
	}
	checkARP(c, tr, h)
	return c.Restore(l)
}

func loss30(ctx context.Context, c *Cluster, v View, tr *Trial, o Options) error {
	percent := o.LossPercent
	t0 := time.Now()
	tr.Fault = t0
	for _, n := range c.nodes {
		if err := c.Lab.Loss(n.Name, percent); err != nil {
			return err
		}
	}
	tr.note("%d%% loss on every node for %s", percent, o.LossDuration)
	werr := Sleep(ctx, o.LossDuration)
	for _, n := range c.nodes {
		if err := c.Lab.Loss(n.Name, 0); err != nil {
			return err
		}
	}
	if werr != nil {
		return werr
	}
	if err := Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	samples := c.SamplesSince(t0)
	n, drops, holderless, timeline := moves(samples)
	tr.figure("vip_moves", float64(n))
	tr.figure("vip_drops", float64(drops))
	tr.figure("holderless_ms", msf(holderless))
	for i, m := range timeline {
		if i == 20 {
			tr.note("... %d more VIP changes", len(timeline)-i)
			break
		}
		tr.note("VIP change: %s", m)
	}
	if hs := c.Holders(); len(hs) == 1 {
		tr.NewHolder = hs[0]
		if hs[0] == v.Holder {
			tr.NewHolder = ""
		}
	}
	out := measure(c, tr, t0)
	total := out.Failures + out.Successes
	if total > 0 {
		tr.figure("client_fail_pct", float64(100*out.Failures/total))
	}
	return nil
}

// handOver runs a planned hand-over started by start and checks it: the
// old holder lets go, another node takes the VIP, S1 holds (the Run's
// sampler check), the client follows (ARP).
func handOver(ctx context.Context, c *Cluster, tr *Trial, start func() error) error {
	t0 := time.Now()
	tr.Fault = t0
	if err := start(); err != nil {
		tr.violate("%s: the hand-over request failed: %v", stamp(t0), err)
		return nil
	}
	tr.figure("request_ms", msf(time.Since(t0)))
	if f, ok := recordFailover(ctx, c, tr, t0); ok {
		if err := Sleep(ctx, after); err != nil {
			return err
		}
		checkARP(c, tr, f.node)
		if gone, ok := addressGone(ctx, c, tr.Holder, t0); ok && !f.kernel.IsZero() {
			// Negative would be a dual holder (also caught by the S1 check).
			tr.figure("handover_gap_ms", msf(f.kernel.Sub(gone)))
		}
	}
	measure(c, tr, t0)
	return nil
}

// move hands the VIP to a node that is not the Raft leader: a leader
// learns of the commit at once, a follower only with the leader's next
// replication pass; that is the common (2 of 3 with three nodes when the
// holder leads) and the slower case.
func move(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	var target string
	for _, n := range c.others(v.Holder) {
		if n != v.Leader {
			target = n
			break
		}
	}
	tr.note("move %s from %s to %s", VIPRole, v.Holder, target)
	err := handOver(ctx, c, tr, func() error { return c.Move(ctx, v.Leader, VIPRole, target) })
	if err == nil && tr.NewHolder != "" && tr.NewHolder != target {
		tr.violate("%s: moved to %s, not to %s", stamp(time.Now()), tr.NewHolder, target)
	}
	return err
}

// drain drains the holder. Leadership is moved to the holder first, so
// the new holder is a follower whichever node the coordinator picks (see
// move): the run measures one placement, the slower one, every time.
func drain(ctx context.Context, c *Cluster, v View, tr *Trial, o Options) error {
	h := v.Holder
	var ok bool
	if v, ok = leaderTo(ctx, c, tr, v, h, o); !ok {
		return ctx.Err()
	}
	if err := handOver(ctx, c, tr, func() error { return c.Drain(ctx, v.Leader, h, true) }); err != nil {
		return err
	}
	// While drained, h must not get it back.
	for _, s := range c.SamplesSince(tr.Fault.Add(time.Second)) {
		if holds(s, h) {
			tr.violate("%s: drained node %s holds the VIP again", stamp(s.At), h)
			break
		}
	}
	if err := c.Drain(ctx, v.Leader, h, false); err != nil {
		return fmt.Errorf("undrain %s: %w", h, err)
	}
	return nil
}

// stopAgent stops the holder's agent with SIGTERM: it releases at once
// and the next holder takes over. Leadership is moved to the holder first,
// as in drain, so that the new holder is a follower every time; the
// stopping leader also hands leadership over.
func stopAgent(ctx context.Context, c *Cluster, v View, tr *Trial, o Options) error {
	h := v.Holder
	var ok bool
	if v, ok = leaderTo(ctx, c, tr, v, h, o); !ok {
		return ctx.Err()
	}
	if err := handOver(ctx, c, tr, func() error { return c.Signal(h, syscall.SIGTERM) }); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitAgentExit(wctx, h); err != nil {
		tr.violate("%s: the agent on %s did not exit within 10 s of SIGTERM", stamp(time.Now()), h)
		_ = c.Signal(h, syscall.SIGKILL)
		_ = c.WaitAgentExit(ctx, h)
	}
	return c.StartAgent(h)
}
