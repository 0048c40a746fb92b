// Package coordinator decides, on the Raft leader only, which node holds each
// role. It reads the replicated state and proposes commands; it never touches
// the node. The policy is the pure function Plan; this file is the leadership
// monitor and the reconcile loop around it (Consul's and Nomad's
// establish/revoke leadership shape).
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/clock"
	"github.com/harbormaster/harbormaster/lease"
	"github.com/harbormaster/harbormaster/spec"
)

// Raft is what the coordinator needs of the local Raft node.
type Raft interface {
	// Barrier returns once every entry committed before the call is applied
	// to the local state, or ctx ends.
	Barrier(ctx context.Context) error
	// Propose applies a command through the log on this (leader) node and
	// returns its index, or the fsm's rejection.
	Propose(ctx context.Context, cmd fsm.Command) (uint64, error)
	// Term is the current Raft term.
	Term() uint64
	// Members returns the ids in the Raft configuration.
	Members() ([]string, error)
}

// BatchRaft is a Raft that can append a plan's commands without waiting
// for each to commit before the next (the agent's). errs[i] is cmds[i]'s
// error, as Propose would return it.
type BatchRaft interface {
	ProposeAll(ctx context.Context, cmds []fsm.Command) (errs []error)
}

// Leases gives the coordinator the voters' verdicts on node leases.
type Leases interface {
	// Majority asks every voter for its grant table (this node's own
	// included) and returns the answers that came back in time.
	Majority(ctx context.Context) (lease.Majority, error)
}

// RecentLeases is Leases that can also answer from its last round, aged
// (leasing.Node.Recent): m holds every voter's view with the round's age
// less to run (this node's own read now), own is this node's own view, age
// the round's age; ok is false with no round to answer from or when the
// voters changed since. The coordinator only ever concludes from it that
// nothing needs doing, and asks the voters again for anything else.
type RecentLeases interface {
	Recent(now time.Time) (m lease.Majority, own lease.View, age time.Duration, ok bool)
}

// Config configures a Coordinator.
type Config struct {
	// NodeID is this node's id, the actor of the coordinator's commands.
	NodeID string
	// Interval is the reconcile tick; the end of a lease is noticed within it.
	Interval time.Duration
	// Quiet, when positive and the Leases are RecentLeases, lets a tick
	// skip asking the voters while nothing can need doing: the state is
	// the one the last pass planned on and that pass proposed nothing, the
	// last round is younger than Quiet, every role's holder was live in
	// it, no lease in it has run out once
	// aged, this node grants no lease the round did not show live, and
	// the plan on the aged round is empty. An idle leader then asks the
	// voters about twice a lease instead of every tick (docs/architecture.md).
	Quiet time.Duration
	// Settle bounds how long a new leader waits for unregistered members
	// before placing unassigned roles (one lease is the natural value).
	Settle time.Duration
	// Seed is the spec applied when the cluster has none (may be nil).
	Seed *spec.Spec
	Log  *slog.Logger
	// Clock is the clock (clock.System() when nil); tests inject their
	// own. Its wall clock dates the commands, its monotonic clock measures
	// the settle time, preempt_delay and hold_down (timers).
	Clock clock.Clock
	// NewLeaseKey, when set, makes the secret of a new cluster lease key
	// (random bytes): a leader that finds the state without a lease key
	// installs one as soon as it takes office (and retries on every
	// reconcile until one is committed). No node renews a lease, so none
	// acts for a role, before then.
	NewLeaseKey func() (fsm.Secret, error)
	// NewClusterID, when set, makes the cluster id the leader proposes
	// when the state has none (fsm.SetClusterID).
	NewClusterID func() (string, error)
	// OnReconcile, when set, is called after every reconcile pass that
	// asked the voters (not after a quiet tick, see Quiet) with how long
	// it took by the monotonic clock (the voters' lease answers, the
	// plan and the proposals until committed) and how many commands it
	// proposed; the agent turns it into metrics. It runs on the term's
	// goroutine and must return quickly.
	OnReconcile func(took time.Duration, proposed int)
}

// Coordinator runs the leader-only reconcile loop. Construct it with New and
// start it with Run; it starts nothing before.
type Coordinator struct {
	cfg    Config
	raft   Raft
	states func() (*fsm.State, <-chan struct{})
	leases Leases
	log    *slog.Logger
	clock  clock.Clock
}

// New returns a coordinator; states returns the current state and a channel
// closed at its next change (fsm.FSM.State).
func New(cfg Config, r Raft, states func() (*fsm.State, <-chan struct{}), leases Leases) *Coordinator {
	clk := cfg.Clock
	if clk == nil {
		clk = clock.System()
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Coordinator{cfg: cfg, raft: r, states: states, leases: leases, log: log.With("component", "coordinator"), clock: clk}
}

// Run follows leadership changes from notify (raft.Config.NotifyCh, which is
// buffered and never lossy for the last value) until ctx ends. Each term of
// leadership runs in its own goroutine, cancelled and awaited when the
// leadership is lost; Run returns after the last term has stopped.
func (c *Coordinator) Run(ctx context.Context, notify <-chan bool) error {
	type termRun struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var cur *termRun
	stop := func() {
		if cur != nil {
			cur.cancel()
			<-cur.done
			cur = nil
		}
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case leader := <-notify:
			if !leader {
				if cur != nil {
					c.log.Info("leadership lost")
				}
				stop()
				continue
			}
			if cur != nil {
				continue
			}
			tctx, cancel := context.WithCancel(ctx)
			cur = &termRun{cancel: cancel, done: make(chan struct{})}
			go func(d chan struct{}) {
				defer close(d)
				c.lead(tctx)
			}(cur.done)
		}
	}
}

// lead runs one term: barrier, establish, then reconcile on every state
// change and every tick until ctx ends.
func (c *Coordinator) lead(ctx context.Context) {
	term := c.raft.Term()
	log := c.log.With("term", term)
	for {
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.raft.Barrier(bctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("barrier failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.Interval):
		}
	}
	// Leases are granted by the voters, not the leader: a new leader has no
	// timers to restart, it asks the voters.
	established := c.clock.Mono()
	log.Info("leadership established")
	c.establish(ctx, term)

	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	detected := map[string]time.Time{}
	tm := newTimers()
	var last lastPass
	for {
		_, changed := c.states()
		began := c.clock.Mono()
		proposed, asked, err := c.reconcile(ctx, established, detected, tm, &last)
		if err != nil && ctx.Err() == nil {
			log.Warn("reconcile failed", "err", err)
		}
		if c.cfg.OnReconcile != nil && asked {
			c.cfg.OnReconcile(c.clock.Mono()-began, proposed)
		}
		var wake <-chan time.Time
		var wakeT *time.Timer
		if d, ok := c.nextEnd(); ok && d < c.cfg.Interval {
			wakeT = time.NewTimer(d)
			wake = wakeT.C
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		case <-changed:
		case <-wake:
		}
		if wakeT != nil {
			wakeT.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// endSlack is added to a lease end seen in the last round before the
// coordinator wakes for it: the round's age counts from when it began, and
// a voter's answer was read up to the round's duration later, so its grant
// ends that much later than the aged view shows.
const endSlack = time.Millisecond

// nextEnd returns how long until a role holder's lease runs out in the
// last round's answers, aged, if not renewed (lease.Majority.EndsIn): the
// leader wakes then to ask the voters, instead of at the next tick up to
// an interval later. A renewed lease moves the end on; the wake then finds
// it live and the next one is a lease later. ok is false when no holder's
// lease can end in the answers, or the Leases keep no round.
func (c *Coordinator) nextEnd() (time.Duration, bool) {
	rl, ok := c.leases.(RecentLeases)
	if !ok {
		return 0, false
	}
	m, _, _, ok := rl.Recent(c.clock.Now())
	if !ok {
		return 0, false
	}
	st, _ := c.states()
	var best time.Duration
	found := false
	seen := map[string]uint64{}
	for _, a := range st.Assignments {
		if a.Holder == "" || a.HolderGen == 0 || seen[a.Holder] == a.HolderGen {
			continue
		}
		seen[a.Holder] = a.HolderGen
		// Ended already (d <= 0): a later pass acts, or waits on a timer of
		// its own (a service's stop timeout); the tick covers it.
		if d, ok := m.EndsIn(a.Holder, a.HolderGen); ok && d > 0 && (!found || d < best) {
			best, found = d, true
		}
	}
	return best + endSlack, found
}

func (c *Coordinator) establish(ctx context.Context, term uint64) {
	c.ensureClusterID(ctx)
	c.ensureLeaseKey(ctx)
	now := c.clock.Now()
	ev := &fsm.RecordEvent{Event: fsm.Event{Time: now.UnixMilli(), Kind: fsm.EventLeadership, Node: c.cfg.NodeID,
		Actor: c.cfg.NodeID, New: c.cfg.NodeID, Message: fmt.Sprintf("became leader in term %d", term)}}
	if _, err := c.raft.Propose(ctx, ev); err != nil {
		c.log.Warn("record leadership event", "err", err)
	}
	st, _ := c.states()
	if c.cfg.Seed != nil && st.SpecVersion == 0 {
		_, err := c.raft.Propose(ctx, &fsm.ApplySpec{Spec: c.cfg.Seed, Seed: true, Actor: "seed:" + c.cfg.NodeID, Time: now.UnixMilli()})
		var rej *fsm.RejectedError
		switch {
		case err == nil:
			c.log.Info("seeded the cluster spec", "spec", c.cfg.Seed.String())
		case errors.As(err, &rej):
		default:
			c.log.Warn("seed spec", "err", err)
		}
	}
}

// ensureClusterID proposes the cluster id when the state has none (a new
// cluster, or one from before ids). A rejection means another leader's id
// got there first.
func (c *Coordinator) ensureClusterID(ctx context.Context) {
	if st, _ := c.states(); st.ClusterID != "" || c.cfg.NewClusterID == nil {
		return
	}
	id, err := c.cfg.NewClusterID()
	if err != nil {
		c.log.Error("make a cluster id", "err", err)
		return
	}
	_, err = c.raft.Propose(ctx, &fsm.SetClusterID{ID: id, Actor: c.cfg.NodeID, Time: c.clock.Now().UnixMilli()})
	var rej *fsm.RejectedError
	switch {
	case err == nil:
		c.log.Info("set the cluster id", "cluster_id", id)
	case errors.As(err, &rej):
	default:
		c.log.Warn("set the cluster id; retrying", "err", err)
	}
}

// ensureLeaseKey proposes the first cluster lease key when the state has
// none. A rejection means another leader's key got there first.
func (c *Coordinator) ensureLeaseKey(ctx context.Context) {
	if st, _ := c.states(); st.LeaseKey != nil || c.cfg.NewLeaseKey == nil {
		return
	}
	secret, err := c.cfg.NewLeaseKey()
	if err != nil {
		c.log.Error("make a lease key", "err", err)
		return
	}
	_, err = c.raft.Propose(ctx, &fsm.SetLeaseKey{ID: 1, Secret: secret, Actor: c.cfg.NodeID, Time: c.clock.Now().UnixMilli()})
	var rej *fsm.RejectedError
	switch {
	case err == nil:
		c.log.Info("installed the cluster lease key", "key_id", 1)
	case errors.As(err, &rej):
	default:
		c.log.Warn("install the cluster lease key; retrying", "err", err)
	}
}

// reconcile runs Plan on the current state and proposes its commands in
// order; it returns how many it proposed (rejected ones included). A
// rejected command is logged and skipped: the next pass plans again from
// the state that rejected it.
//
// detected remembers, for the term, when each holder's lease generation was
// first seen ended; it dates the start of a failover (fsm.Assign.Detected).
// tm measures the term's policy timers; established is the Mono reading
// when the term began.
func (c *Coordinator) reconcile(ctx context.Context, established time.Duration, detected map[string]time.Time, tm *timers, last *lastPass) (proposed int, asked bool, err error) {
	c.ensureClusterID(ctx)
	c.ensureLeaseKey(ctx)
	st, changed := c.states()
	now, mono := c.clock.Now(), c.clock.Mono()
	elapsed := tm.observe(st, now, mono)
	settling := false
	if mono-established < c.cfg.Settle {
		ids, err := c.raft.Members()
		if err != nil {
			return 0, false, fmt.Errorf("read members: %w", err)
		}
		for _, id := range ids {
			if _, ok := st.Nodes[id]; !ok {
				settling = true
			}
		}
	}
	in := Input{State: st, Now: now.UnixMilli(), Elapsed: elapsed, Actor: c.cfg.NodeID, Settling: settling}
	if c.quiet(in, last, now) {
		return 0, false, nil
	}
	*last = lastPass{}
	maj, err := c.leases.Majority(ctx)
	if err != nil {
		return 0, true, fmt.Errorf("ask the voters for leases: %w", err)
	}
	in.Live, in.Ended = maj.Live(), maj.EndedFor
	cmds := Plan(in)
	for _, a := range st.Assignments {
		key := fmt.Sprintf("%s/%d", a.Holder, a.HolderGen)
		if _, seen := detected[key]; a.Holder != "" && !seen && maj.Ended(a.Holder, a.HolderGen) {
			detected[key] = now
		}
	}
	for _, cmd := range cmds {
		if as, ok := cmd.(*fsm.Assign); ok {
			cur := st.Assignment(as.Role)
			switch t, seen := detected[fmt.Sprintf("%s/%d", cur.Holder, cur.HolderGen)]; {
			case cur.Holder != "" && seen:
				as.Detected = t.UnixMilli()
			case cur.Holder == "" && cur.Since > 0:
				as.Detected = min(cur.Since, now.UnixMilli()) // the release
			default:
				as.Detected = now.UnixMilli()
			}
		}
	}
	var errs []error
	if len(cmds) == 0 {
		*last = lastPass{changed: changed, live: in.Live}
		return 0, true, nil
	}
	if b, ok := c.raft.(BatchRaft); ok && len(cmds) > 1 {
		errs = b.ProposeAll(ctx, cmds)
	} else {
		for _, cmd := range cmds {
			_, err := c.raft.Propose(ctx, cmd)
			errs = append(errs, err)
			if err != nil && !errors.As(err, new(*fsm.RejectedError)) {
				break // not proposed: the rest neither
			}
		}
	}
	var failed error
	for i, err := range errs {
		cmd := cmds[i]
		var rej *fsm.RejectedError
		switch {
		case err == nil:
			c.logCommand(cmd)
		case errors.As(err, &rej):
			c.log.Debug("plan command rejected", "cmd", cmd.Type().String(), "err", err)
		case failed == nil:
			failed = fmt.Errorf("propose %s: %w", cmd.Type(), err)
		}
	}
	return len(errs), true, failed
}

// lastPass is what a quiet tick compares with: the last pass that asked
// the voters and proposed nothing (changed nil: none, or it proposed).
type lastPass struct {
	changed <-chan struct{} // the state's change channel when it began
	live    map[string]uint64
}

// quiet reports whether this tick may skip asking the voters (Config.Quiet):
// in is the pass's input without leases. Every way a lease can end or
// begin shows here: a lease that may have ended has run out in the aged
// round (which never shows one longer to run than it has), and a node
// that starts or resumes renewing renews with this voter too. Only a
// no-op is concluded; any plan the aged round would make is made again
// on fresh answers.
func (c *Coordinator) quiet(in Input, last *lastPass, now time.Time) bool {
	rl, ok := c.leases.(RecentLeases)
	if c.cfg.Quiet <= 0 || !ok || last.changed == nil {
		return false
	}
	select {
	case <-last.changed:
		return false // the state changed since
	default:
	}
	m, own, age, ok := rl.Recent(now)
	if !ok || age >= c.cfg.Quiet {
		return false
	}
	live := m.Live()
	if !maps.Equal(live, last.live) {
		return false // a lease ran out in the aged round
	}
	for id := range own.Nodes {
		if gen, ok := own.Live(id); ok && last.live[id] != gen {
			return false // a lease this voter grants that was not live
		}
	}
	for _, a := range in.State.Assignments {
		if a.Holder == "" || a.HolderGen == 0 {
			continue
		}
		if last.live[a.Holder] != a.HolderGen {
			// Neither shown live nor surely ended at the last poll (the
			// wait before a move, S4): only voters that answered then
			// are aged here, and one that answers again may end it.
			return false
		}
		if m.Ended(a.Holder, a.HolderGen) {
			return false
		}
	}
	in.Live, in.Ended = live, m.EndedFor
	return len(Plan(in)) == 0
}

func (c *Coordinator) logCommand(cmd fsm.Command) {
	switch x := cmd.(type) {
	case *fsm.Assign:
		c.log.Info("role assigned", "role", x.Role, "holder", x.Node, "gen", x.HolderGen, "epoch", x.Epoch, "prev", x.PrevHolder, "cause", x.Cause, "reason", x.Reason)
	case *fsm.RequestRelease:
		c.log.Info("release requested", "role", x.Role, "epoch", x.Epoch, "cause", x.Cause, "reason", x.Reason)
	case *fsm.Release:
		c.log.Info("role released for an expired holder", "role", x.Role, "holder", x.Node, "epoch", x.Epoch)
	}
}
