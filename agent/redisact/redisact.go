// Package redisact is the actuator of the redis-master role
// (docs/redis.md): it reads its node's Redis every poll, reports what
// changed to the cluster, and makes the Redis master, replica or fenced
// according to the replicated state and act.MayAct. The policy is Decide
// (pure, table-tested); this file carries it out.
package redisact

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/agent/serviceguard"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// Timing.
const (
	// poll is how often the actuator reads its Redis's replication state.
	poll = 200 * time.Millisecond
	// offsetEvery bounds offset-only reports (the role, master, link and
	// run id are reported at once).
	offsetEvery = time.Second
	// FenceAhead is the act.MayAct margin of the Redis master: its agent
	// stops it taking writes this long before its lease ends by its own
	// clock, which is itself ahead of the voters' verdicts.
	FenceAhead = 50 * time.Millisecond
	// catchUp bounds a planned switchover's wait for the target.
	catchUp = 5 * time.Second
	// downPolls is how many consecutive refused connections make the Redis
	// "down", and how many consecutive failed polls are reported.
	downPolls = 3
	// quiesceBound bounds a graceful stop's wait for the fence.
	quiesceBound = time.Second
	// catchUpBound bounds a promotion's catch-up with a more advanced
	// replica (the resync from its backlog takes milliseconds).
	catchUpBound = 300 * time.Millisecond
	// noGuardQuiet is how long promotions may wait for a guard before
	// the refusal is logged and recorded.
	noGuardQuiet = time.Second
	// freshRedis is the uptime (s) below which the agent's first read of a
	// Redis sees it as redis.conf started it.
	freshRedis = 30
)

// Config is what the Redis actuator needs besides the node.
type Config struct {
	// Redis is the node's redis section (the address the agent reaches its
	// Redis at, the announced one, AUTH and TLS for every Redis).
	Redis redisctl.Config
	Log   *slog.Logger
	// OnActed, when set, is called after each promotion of this node's
	// Redis for a role at an epoch (the failover's acted and announced
	// phases).
	OnActed func(role string, epoch uint64, acted, announced time.Time)
	// StartGuard, when set, starts the dead-man of this node's Redis
	// (agent/serviceguard with a Redis spec): a process of its own that
	// arms the Redis's write fence at the last deadline it was given when
	// the agent did not (killed, or frozen by SIGSTOP), and at once when
	// the agent dies before giving one. deadline is read once the guard is
	// ready (0: none yet). nil: no guard (tests with in-process agents).
	// With it, a promotion waits for a guard: none, none promoted.
	StartGuard func(deadline func() time.Duration) (Guard, error)
	// Mono is the guard's clock (CLOCK_MONOTONIC); default
	// serviceguard.Mono.
	Mono func() time.Duration
}

// Guard is the handle of the Redis's guard process (*serviceguard.Guard).
type Guard interface {
	// Renew gives the guard its deadline (writes only when it moved).
	Renew(deadline time.Duration) error
	// Release makes the guard exit without acting.
	Release() error
	// Done is closed once the guard process exited.
	Done() <-chan struct{}
}

// GuardAhead is how long before its lease's end by this node's clock the
// guard fences a Redis master whose agent did not: after the agent's own
// fence (FenceAhead), still ahead of the end.
const GuardAhead = FenceAhead / 2

// Actuator is this node's side of the redis-master role. Build it with
// New; Run runs it.
type Actuator struct {
	node act.Node
	cfg  Config
	cli  *redisctl.Client
	self string // the Redis address this node announces
	wake chan struct{}
	// reach is demoteRemote's connect (nil: tcpReach).
	reach func(ctx context.Context, addr string) error
	// renewWake wakes the fencer, which renews the guard's deadline, on
	// every lease renewal (Wake); guardWake wakes the guard keeper.
	renewWake chan struct{}
	guardWake chan struct{}
	// clock converts lease ends to the guard's deadlines.
	clock serviceguard.Clock
	// releases counts the guard releases in flight (Run waits for them).
	releases sync.WaitGroup
	// jobs carries the one report or release in flight to the proposer
	// goroutine: a pass never waits for Raft (a cut-off master must fence
	// on time).
	jobs chan job

	mu       sync.Mutex
	lastSent time.Time
	// fenced mirrors the last observed write fence of this node's Redis
	// (Replication.Paused) or one this actuator just applied.
	fenced bool
	// refused counts consecutive polls whose connection was refused (no
	// process listens); down is set after downPolls of them: a Redis that
	// is gone takes no writes, so its role may be released. A slow Redis
	// (timeouts) is not down.
	refused int
	down    bool
	// errs counts consecutive failed polls; an error is reported (which
	// disqualifies the node) only after downPolls of them, so that a slow
	// INFO (a fork, a big DEL) does not move the master.
	errs int
	// promotedRunID is the run id of the Redis this actuator promoted at
	// runIDEpoch: a different one under that epoch means it restarted
	// (maybe empty). A fence does not clear it.
	promotedRunID string
	runIDEpoch    uint64
	// proposing is set while a job is in flight (one at a time).
	proposing bool
	// promotedEpoch is the epoch this node last promoted its Redis at.
	promotedEpoch uint64
	// unreported is the epoch of a promotion no committed report has
	// followed yet (0: none). The role's replication history starts at
	// the holder's first master report at its assignment
	// (fsm.State.updateHistory); a Redis that was already master when it
	// was promoted (a fresh one, fenced) changes nothing a report watches,
	// and its offset stays 0 while no replica ever connected, so without
	// this no report would come and the history would keep naming the
	// previous Redis: when this node is lost, that one "restarted without
	// its data" and an unsynced replica is promoted at once (S10).
	unreported uint64
	// handedOver names the switchover (handOverKey) whose hand-over is
	// done: the fenced master's final offset reached the target, or every
	// online replica when there is none. Only then may the release go.
	handedOver string
	// offLog samples this node's master offsets (replicas' lag in ms).
	offLog offsetLog
	// settings and warnings were read from the Redis of run id
	// settingsRunID; settingsFresh until a report carried them.
	settings      *fsm.RedisSettings
	warnings      []string
	settingsRunID string
	settingsFresh bool
	// guard is the Redis's guard process (nil: none running or none
	// configured). guardArmed is set from the moment a promotion gave it
	// a deadline until this node's Redis was seen fenced (or down) after
	// that arm; armGen counts the arms, so that the end of an older
	// episode (a fence on the fencer goroutine) cannot disarm a newer
	// promotion's guard. lastDeadline is the last deadline given, for a
	// guard that replaces one that exited while armed.
	guard        Guard
	guardArmed   bool
	armGen       uint64
	lastDeadline time.Duration
	// guardStarted is when the keeper started the current guard (a
	// guard that exits soon after makes it back off); noGuardEpoch is the
	// epoch whose promotion was last reported refused for want of a guard
	// (one event per epoch), noGuardSince when the refusals began (zero:
	// a guard runs).
	guardStarted time.Time
	noGuardEpoch uint64
	noGuardSince time.Time
}

// job is one command for the proposer goroutine and what to log after.
type job struct {
	cmd  fsm.Command
	done func(err error)
}

var _ act.Actuator = (*Actuator)(nil)

// New returns the actuator. It starts nothing and opens no connection.
func New(node act.Node, cfg Config) (*Actuator, error) {
	cli, err := redisctl.New(cfg.Redis)
	if err != nil {
		return nil, err
	}
	return &Actuator{node: node, cfg: cfg, cli: cli, self: cfg.Redis.AnnounceAddr(),
		wake: make(chan struct{}, 1), jobs: make(chan job, 1),
		renewWake: make(chan struct{}, 1), guardWake: make(chan struct{}, 1),
		clock: serviceguard.NewClock(cfg.Mono)}, nil
}

// Type implements act.Actuator.
func (x *Actuator) Type() spec.RoleType { return spec.TypeRedisMaster }

// Wake implements act.Actuator.
func (x *Actuator) Wake() {
	act.Poke(x.wake)
	act.Poke(x.renewWake)
	act.Poke(x.guardWake)
}

// handOverKey names a switchover of the role: its epoch and move target.
func handOverKey(as fsm.Assignment) string { return fmt.Sprintf("%d/%s", as.Epoch, as.MoveTo) }

// Role returns the spec's redis-master role, if any.
func Role(st *fsm.State) (spec.Role, bool) {
	for _, r := range st.Spec.Roles {
		if r.Type == spec.TypeRedisMaster {
			return r, true
		}
	}
	return spec.Role{}, false
}

// Run implements act.Actuator: the poll loop, the fencer and the proposer.
// When ctx ends, a Redis that is still master is fenced: whoever takes over
// next finds it paused.
func (x *Actuator) Run(ctx context.Context) error {
	defer x.cli.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { x.fencer(gctx); return nil })
	g.Go(func() error { x.proposer(gctx); return nil })
	g.Go(func() error { x.guardKeeper(gctx); return nil })
	g.Go(func() error {
		for {
			st, changed := x.node.State()
			x.pass(gctx, st)
			wait := poll
			if auth := x.node.Authority(); auth.LeaseValid {
				wait = min(wait, max(auth.Left(FenceAhead), time.Millisecond))
			}
			select {
			case <-gctx.Done():
				return nil
			case <-changed:
			case <-x.wake:
			case <-time.After(wait):
			}
		}
	})
	err := g.Wait()
	x.fenceOnExit()
	x.dropGuardOnExit()
	return err
}

// proposer commits the jobs the passes hand it, one at a time.
func (x *Actuator) proposer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-x.jobs:
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := x.node.Propose(pctx, j.cmd)
			cancel()
			j.done(err)
			x.mu.Lock()
			x.proposing = false
			x.mu.Unlock()
		}
	}
}

// submit hands a job to the proposer unless one is in flight; it reports
// whether it did. It never blocks.
func (x *Actuator) submit(j job) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.proposing {
		return false
	}
	select {
	case x.jobs <- j:
		x.proposing = true
		return true
	default:
		return false
	}
}

// pass is one round: observe, report, decide, act.
func (x *Actuator) pass(ctx context.Context, st *fsm.State) {
	x.mu.Lock()
	gen := x.armGen
	x.mu.Unlock()
	octx, cancel := context.WithTimeout(ctx, poll)
	repl, err := x.cli.Replication(octx)
	cancel()
	if err == nil {
		x.readSettings(ctx, repl)
		if repl.Role == fsm.RedisMaster {
			x.mu.Lock()
			x.offLog.add(time.Now(), repl.Offset)
			x.mu.Unlock()
		}
	}
	if quiet := x.observe(err, repl); !quiet {
		x.report(st, repl, err)
	}
	x.mu.Lock()
	safe := (err == nil && repl.Paused) || x.down
	x.mu.Unlock()
	if safe {
		// Seen fenced (by this agent, by Follow, or by the guard) or
		// gone after the arm: the promotion's guard has done its part.
		x.disarmGuard(gen)
	}
	r, ok := Role(st)
	if !ok || err != nil {
		return
	}
	in := x.input(st, r, repl)
	for _, a := range Decide(in) {
		if !x.do(ctx, r, in, a) {
			return
		}
	}
}

// input gathers Decide's input from the state, the node's authority and
// what the actuator remembers.
func (x *Actuator) input(st *fsm.State, r spec.Role, repl redisctl.Replication) Input {
	as := st.Assignment(r.Name)
	x.mu.Lock()
	promoted := x.promotedEpoch
	restarted := x.runIDEpoch == as.Epoch && x.promotedRunID != "" && repl.RunID != "" && repl.RunID != x.promotedRunID
	x.mu.Unlock()
	self := x.node.ID()
	reported := st.Redis[self]
	synced, _ := st.RedisSynced(st.RedisHistoryOf(as), self)
	unfit := !as.DataLoss && (!synced || (reported.RunID != "" && repl.RunID != reported.RunID))
	return Input{Self: self, Assignment: as, Holder: st.Nodes[as.Holder], LostBy: st.Nodes[as.LostBy],
		Repl: repl, MayMaster: x.node.Authority().MayAct(as, FenceAhead), PromotedEpoch: promoted, RestartedUnder: restarted,
		Unfit: unfit}
}

// do carries out one action; it reports whether the pass goes on.
func (x *Actuator) do(ctx context.Context, r spec.Role, in Input, a Action) bool {
	as := in.Assignment
	switch a.Kind {
	case Fence:
		x.fence(ctx, a.Why)
	case ReleaseRestarted:
		x.releaseRestarted(r.Name, as.Epoch, a.Why)
	case DemoteRemote:
		x.demoteRemote(ctx, a.Addr)
	case Promote:
		return x.promote(ctx, r, as, in.Repl)
	case Follow:
		x.follow(ctx, a.Addr, as.Epoch)
	case PrepareRelease:
		st, _ := x.node.State()
		x.prepareRelease(ctx, st, as)
	}
	return true
}

// observe folds one poll's outcome into the actuator's memory; it reports
// whether the poll's error is to be kept quiet (fewer than downPolls in a
// row).
func (x *Actuator) observe(err error, repl redisctl.Replication) (quiet bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err != nil {
		x.errs++
	} else {
		x.errs = 0
	}
	switch {
	case err == nil:
		x.fenced, x.refused, x.down = repl.Paused, 0, false
	case errors.Is(err, syscall.ECONNREFUSED):
		x.refused++
		x.down = x.refused >= downPolls
	default:
		x.refused = 0 // slow or unreachable, not gone: it may still take writes
	}
	return err != nil && x.errs < downPolls
}

// report commits the Redis's state when its role, master, link or run id
// changed, and its offset at most every offsetEvery.
func (x *Actuator) report(st *fsm.State, repl redisctl.Replication, rerr error) {
	self := x.node.ID()
	n, registered := st.Nodes[self]
	if !registered || n.Redis == "" {
		return
	}
	now := time.Now()
	next := fsm.RedisReport{Node: self, Role: repl.Role, Offset: repl.Offset, LinkUp: repl.LinkUp,
		ReplID: repl.ReplID, RunID: repl.RunID, ReplID2: repl.ReplID2, Offset2: repl.Offset2, Time: now.UnixMilli(),
		Loading: repl.Loading}
	if repl.Keys >= 0 {
		keys := repl.Keys
		next.Keys = &keys
	}
	if next.Role == fsm.RedisReplica {
		next.Master = masterOf(repl)
	}
	x.mu.Lock()
	due := time.Since(x.lastSent) >= offsetEvery
	fresh := x.settingsFresh && x.settingsRunID == repl.RunID
	unreported := x.unreported
	maxLag := int64(0)
	if x.settings != nil {
		maxLag = x.settings.MaxLag
	}
	next.Replicas = replicaStates(st, repl, maxLag, &x.offLog, now)
	if fresh {
		next.Settings, next.Warnings = x.settings, x.warnings
	}
	x.mu.Unlock()
	if rerr != nil {
		next = fsm.RedisReport{Node: self, Offset: -1, Error: fsm.Truncate(rerr.Error(), fsm.MaxCheckError), Time: next.Time}
		fresh, unreported = false, 0 // the promotion is reported by a report that reads the Redis
	}
	cur, known := st.Redis[self]
	structural := !known || cur.Role != next.Role || cur.Master != next.Master || cur.LinkUp != next.LinkUp ||
		cur.RunID != next.RunID || (cur.Error == "") != (next.Error == "") || cur.ReplID != next.ReplID || cur.Loading != next.Loading ||
		syncSet(cur.Replicas) != syncSet(next.Replicas) || fresh || unreported != 0
	if !structural && (cur.Offset == next.Offset || !due) {
		return
	}
	if x.submit(job{cmd: &next, done: func(err error) {
		if err != nil {
			x.cfg.Log.Debug("report Redis state", "err", err)
			return
		}
		if unreported != 0 {
			x.mu.Lock()
			if x.unreported == unreported {
				x.unreported = 0
			}
			x.mu.Unlock()
		}
		if fresh {
			x.mu.Lock()
			if x.settingsRunID == next.RunID {
				x.settingsFresh = false
			}
			x.mu.Unlock()
		}
	}}) {
		x.mu.Lock()
		x.lastSent = time.Now() // offsets again in a second, even if this fails
		x.mu.Unlock()
	}
}

// readSettings reads the Redis's replication settings once per run id (at
// the agent's start and after every restart of the Redis) and logs the
// redis-config warnings; the next report carries both.
func (x *Actuator) readSettings(ctx context.Context, repl redisctl.Replication) {
	x.mu.Lock()
	done := x.settingsRunID == repl.RunID
	x.mu.Unlock()
	if done || repl.RunID == "" {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, poll)
	set, err := x.cli.Settings(sctx)
	cancel()
	if err != nil {
		x.cfg.Log.Debug("read Redis settings", "err", err)
		return
	}
	// Only a Redis that started moments ago is as redis.conf made it: an
	// older one may have been unfenced by this node's previous agent.
	firstLook := repl.Uptime >= 0 && repl.Uptime < freshRedis
	warnings := set.Warnings(firstLook)
	if len(warnings) > fsm.MaxRedisWarnings {
		warnings = warnings[:fsm.MaxRedisWarnings]
	}
	for _, w := range warnings {
		x.cfg.Log.Warn("redis-config", "warning", w)
	}
	x.mu.Lock()
	x.settings = &fsm.RedisSettings{DisklessSync: set.DisklessSync, SyncDelay: set.SyncDelay, BacklogSize: set.BacklogSize,
		Timeout: set.Timeout, MinReplicas: set.MinReplicas, MaxLag: set.MaxLag, Save: fsm.Truncate(set.Save, 200), AOF: set.AOF,
		ReplicaReadOnly: set.ReplicaReadOnly}
	x.warnings, x.settingsRunID, x.settingsFresh = warnings, repl.RunID, true
	x.mu.Unlock()
}

// promote lifts the fence and makes this node's Redis (run id runID) the
// master, after checking MayAct again just before; the promotion may not
// outlive the lease. It reports whether the pass goes on.
func (x *Actuator) promote(ctx context.Context, r spec.Role, as fsm.Assignment, pre redisctl.Replication) bool {
	runID := pre.RunID
	st, _ := x.node.State()
	auth := x.node.Authority()
	if !auth.MayAct(st.Assignment(r.Name), FenceAhead) {
		return false
	}
	if h := as.History; h != nil && h.Node != x.node.ID() && pre.Role == fsm.RedisReplica {
		x.catchUp(ctx, st, as, auth.LeaseUntil.Add(-FenceAhead))
		if auth = x.node.Authority(); !auth.MayAct(st.Assignment(r.Name), FenceAhead) {
			return false
		}
	}
	if err := x.armGuard(auth); err != nil {
		// The keeper starts guards in 30-80 ms: a promotion that comes
		// while it does (an agent's first seconds) waits quietly.
		x.mu.Lock()
		if x.noGuardSince.IsZero() {
			x.noGuardSince = time.Now()
		}
		first := x.noGuardEpoch != as.Epoch && time.Since(x.noGuardSince) >= noGuardQuiet
		if first {
			x.noGuardEpoch = as.Epoch
		}
		x.mu.Unlock()
		if first {
			x.cfg.Log.Error("Redis not promoted: its guard is not running (it fences the Redis if this agent dies or freezes)", "epoch", as.Epoch, "err", err)
			x.event(r.Name, as.Epoch, fmt.Sprintf("not promoted: the Redis guard is not running: %v", err))
		}
		return false
	}
	x.mu.Lock()
	x.noGuardSince = time.Time{}
	x.mu.Unlock()
	pctx, cancel := context.WithDeadline(ctx, auth.LeaseUntil.Add(-FenceAhead))
	err := x.cli.PromoteWith(pctx, r.Name, as.Epoch, redisctl.PromoteOptions{MinSyncedReplicas: r.MinSyncedReplicas})
	cancel()
	if err != nil {
		x.cfg.Log.Warn("promote Redis", "epoch", as.Epoch, "err", err)
		return false
	}
	x.mu.Lock()
	x.promotedEpoch, x.fenced, x.unreported = as.Epoch, false, as.Epoch
	if x.runIDEpoch != as.Epoch {
		x.promotedRunID, x.runIDEpoch = runID, as.Epoch
	}
	x.mu.Unlock()
	x.Wake() // the report that starts the role's history at this epoch, at once
	msg := "promoted to master (REPLICAOF NO ONE)"
	if h := as.History; h != nil && h.Node != x.node.ID() && pre.ReplID == h.ReplID && pre.Offset < h.Offset {
		// Exact on this side: the offset this Redis had processed when it
		// stopped replicating; h.Offset is a lower bound of the lost
		// master's last.
		msg += fmt.Sprintf("; %d bytes of %s's replication stream (up to its last reported offset %d) are not in this Redis",
			h.Offset-pre.Offset, h.Node, h.Offset)
		x.cfg.Log.Warn("Redis promoted behind the lost master's last reported offset", "lost_master", h.Node,
			"behind_bytes", h.Offset-pre.Offset)
	}
	x.cfg.Log.Info("Redis promoted to master", "epoch", as.Epoch)
	x.event(r.Name, as.Epoch, msg)
	if x.cfg.OnActed != nil {
		now := time.Now()
		x.cfg.OnActed(r.Name, as.Epoch, now, now)
	}
	return true
}

// catchUp brings this node's Redis, about to be promoted after a loss, up
// to the most advanced other replica of the same history (redisctl.CatchUp),
// within catchUpBound and before the lease deadline: the coordinator ranked
// it on offsets reported up to a second ago.
func (x *Actuator) catchUp(ctx context.Context, st *fsm.State, as fsm.Assignment, deadline time.Time) {
	var siblings []string
	for _, id := range st.NodeIDs() {
		n := st.Nodes[id]
		if id == x.node.ID() || id == as.LostBy || (as.History != nil && id == as.History.Node) || n.Redis == "" {
			continue
		}
		siblings = append(siblings, n.Redis)
	}
	if len(siblings) == 0 {
		return
	}
	if bound := time.Now().Add(catchUpBound); bound.Before(deadline) {
		deadline = bound
	}
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	from, off, err := x.cli.CatchUp(cctx, siblings)
	switch {
	case err != nil:
		x.cfg.Log.Warn("catch up with the most advanced replica before promoting", "from", from, "err", err)
	case from != "":
		x.cfg.Log.Info("caught up with a more advanced replica before promoting", "from", from, "offset", off)
	}
}

// releaseRestarted commits a release of the role whose Redis may not be
// promoted (why: it restarted under it, or holds no longer the history);
// once, the next pass retries if it fails.
func (x *Actuator) releaseRestarted(role string, epoch uint64, why string) {
	x.submit(job{cmd: &fsm.Release{Role: role, Node: x.node.ID(), Epoch: epoch, Reason: why, Time: time.Now().UnixMilli()},
		done: func(err error) {
			if err != nil {
				x.cfg.Log.Warn("release the redis-master role", "why", why, "err", err)
				return
			}
			x.cfg.Log.Warn("released the redis-master role", "why", why, "epoch", epoch)
		}})
}

// fencer is the master's deadline: it fences the Redis FenceAhead before
// the lease ends by this node's clock unless a renewal extended it. It runs
// apart from the poll loop, which may wait on Redis or the network.
func (x *Actuator) fencer(ctx context.Context) {
	for {
		wait := 20 * time.Millisecond
		x.mu.Lock()
		promoted := x.promotedEpoch != 0
		x.mu.Unlock()
		if promoted {
			if left := x.node.Authority().Left(FenceAhead); left <= 0 {
				fctx, cancel := context.WithTimeout(ctx, time.Second)
				x.fence(fctx, "lease about to end")
				cancel()
			} else {
				wait = min(left, 100*time.Millisecond)
			}
		}
		x.renewGuard(x.node.Authority())
		select {
		case <-ctx.Done():
			return
		case <-x.renewWake:
		case <-time.After(wait):
		}
	}
}

// fence stops this node's Redis taking writes (once per episode).
func (x *Actuator) fence(ctx context.Context, why string) {
	x.mu.Lock()
	done, gen := x.fenced, x.armGen
	x.mu.Unlock()
	if done {
		x.disarmGuard(gen)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err := x.cli.PauseWrites(pctx)
	cancel()
	if err != nil {
		x.cfg.Log.Warn("fence Redis (pause writes)", "why", why, "err", err)
		return
	}
	x.mu.Lock()
	x.fenced, x.promotedEpoch = true, 0
	x.mu.Unlock()
	x.disarmGuard(gen)
	x.cfg.Log.Info("Redis writes paused", "why", why)
}

// manages reports whether the spec has a redis-master role: without one the
// agent reports on its Redis but never changes it, not even on its way out
// (a Redis still run by Sentinel during a migration, docs/migrate.md).
func (x *Actuator) manages() bool {
	st, _ := x.node.State()
	_, ok := Role(st)
	return ok
}

// fenceOnExit pauses the writes of a master whose agent stops, when the
// spec has a redis-master role.
func (x *Actuator) fenceOnExit() {
	if !x.manages() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if repl, err := x.cli.Replication(ctx); err == nil && repl.Role == fsm.RedisMaster {
		x.fence(ctx, "agent stopping")
	}
}

func (x *Actuator) follow(ctx context.Context, master string, epoch uint64) {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err := x.cli.Follow(pctx, master)
	cancel()
	if err != nil {
		x.cfg.Log.Warn("make Redis a replica", "master", master, "err", err)
		return
	}
	x.cfg.Log.Info("Redis follows the master", "master", master, "epoch", epoch)
}

// demoteRemote makes a lost master's Redis (its lease ended without a
// release: its agent may be dead while its Redis runs) a replica of this
// node before this node promotes its own, so that clients still connected
// to it cannot write to a second master. Best effort and bounded: a crashed
// node does not answer, and a cut-off one fenced itself within its lease.
//
// A TCP connect, bounded by demoteReach, first tells whether anything is
// there at all: a crashed node never answers, and waiting the whole
// demote bound for it held every crash failover back by that much.
func (x *Actuator) demoteRemote(ctx context.Context, addr string) {
	cli, err := redisctl.Remote(x.cfg.Redis, addr)
	if err != nil {
		return
	}
	defer cli.Close()
	reach := x.reach
	if reach == nil {
		reach = tcpReach
	}
	rctx, rcancel := context.WithTimeout(ctx, demoteReach)
	err = reach(rctx, addr)
	rcancel()
	if err != nil {
		x.cfg.Log.Warn("lost master's node does not answer a connect; promoting without demoting its Redis (crashed or cut off, or its agent stopped and the connect lost: docs/redis.md, Limits)", "redis", addr, "err", err)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, demoteBound)
	defer cancel()
	if err := cli.PauseWrites(dctx); err != nil {
		x.cfg.Log.Warn("lost master's Redis did not pause its writes; promoting without demoting it (docs/redis.md, Limits)", "redis", addr, "err", err)
		return
	}
	if err := cli.Follow(dctx, x.self); err != nil {
		x.cfg.Log.Warn("demote the lost master's Redis", "redis", addr, "err", err)
		return
	}
	x.cfg.Log.Info("demoted the lost master's Redis before promoting", "redis", addr)
}

// demoteReach bounds the connect that tells whether a lost master's node
// answers at all (its kernel answers a SYN within a round trip, whatever
// its Redis's load); demoteBound bounds the demotion of one that does.
const (
	demoteReach = 50 * time.Millisecond
	demoteBound = 200 * time.Millisecond
)

// tcpReach connects to addr and closes the connection at once.
func tcpReach(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// prepareRelease readies a planned switchover: writes are paused (fence),
// and when the move has a target, the target's Redis must have processed
// everything this master acknowledged (bounded wait) before the release is
// committed. A Redis that is a replica has nothing to hand over.
func (x *Actuator) prepareRelease(ctx context.Context, st *fsm.State, as fsm.Assignment) {
	key := handOverKey(as)
	x.mu.Lock()
	done, fenced := x.handedOver == key, x.fenced
	x.mu.Unlock()
	if done || !fenced {
		return // not fenced yet: the offset is not final; the next pass retries
	}
	// Read after the fence: a Redis that was a replica when the pass read
	// it may have run a queued promotion since (it was frozen).
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	repl, err := x.cli.Replication(rctx)
	cancel()
	if err != nil {
		return
	}
	if repl.Role != fsm.RedisMaster {
		// A holder whose promotion never took: its Redis acknowledged no
		// write under the role, so there is nothing to hand over, and no
		// target to wait for (its offset is not of the role's history).
		// The release keeps the role's history, which names the last
		// master: the next holder is chosen against it (S10).
		x.handOver(key)
		return
	}
	if as.MoveTo == "" {
		// Drain, preempt: no target; let every replica take the writes
		// this master acknowledged before the coordinator picks one.
		wctx, cancel := context.WithTimeout(ctx, catchUp)
		x.waitReplicas(wctx)
		cancel()
		x.handOver(key)
		return
	}
	target := st.Nodes[as.MoveTo]
	if target == nil || target.Redis == "" {
		return
	}
	cli, err := redisctl.Remote(x.cfg.Redis, target.Redis)
	if err != nil {
		return
	}
	defer cli.Close()
	wctx, cancel := context.WithTimeout(ctx, catchUp)
	err = cli.WaitCaughtUp(wctx, repl.Offset)
	cancel()
	if err != nil {
		x.cfg.Log.Warn("switchover target not caught up; releasing anyway after the bound", "target", as.MoveTo,
			"offset", repl.Offset, "err", err)
	}
	x.handOver(key)
}

// handOver marks the switchover key as handed over and nudges the node.
func (x *Actuator) handOver(key string) {
	x.mu.Lock()
	x.handedOver = key
	x.mu.Unlock()
	x.node.Nudge()
}

// waitReplicas waits (until ctx ends) until every online replica of this
// fenced master has processed its final offset, so that whichever replica
// is promoted next has every write this master acknowledged. It reads the
// replicas' own offsets (redisctl.WaitReplicasCaughtUp): the offsets they
// acknowledge to the master lag by up to a second.
func (x *Actuator) waitReplicas(ctx context.Context) {
	if err := x.cli.WaitReplicasCaughtUp(ctx); err != nil {
		x.cfg.Log.Warn("Redis replicas not caught up with the fenced master; releasing after the bound", "err", err)
	}
}

// Releasable implements act.Actuator: the release of the redis-master role
// may be committed once this node's Redis no longer takes writes and the
// switchover's hand-over is done (a target caught up, or every replica
// without one); a Redis that cannot be reached takes no writes.
func (x *Actuator) Releasable(_ context.Context, st *fsm.State, role string) bool {
	r, ok := Role(st)
	if !ok || r.Name != role {
		return true
	}
	as := st.Assignment(role)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.down {
		return true
	}
	return x.fenced && x.handedOver == handOverKey(as)
}

// Quiesce implements act.Actuator: it waits (at most quiesceBound) until
// this node's Redis is fenced or a replica, and a fenced master's replicas
// have every write it acknowledged, so that the graceful stop's release
// hands everything over. Without a redis-master role in the spec it does
// nothing.
func (x *Actuator) Quiesce(ctx context.Context) {
	if !x.manages() {
		return
	}
	deadline := time.Now().Add(quiesceBound)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		repl, err := x.cli.Replication(rctx)
		cancel()
		if err == nil && (repl.Role != fsm.RedisMaster || repl.Paused) {
			x.mu.Lock()
			x.fenced = true
			x.mu.Unlock()
			if repl.Role == fsm.RedisMaster {
				wctx, cancel := context.WithDeadline(ctx, deadline.Add(time.Second))
				x.waitReplicas(wctx)
				cancel()
			}
			st, _ := x.node.State()
			if r, ok := Role(st); ok {
				x.mu.Lock()
				x.handedOver = handOverKey(st.Assignment(r.Name))
				x.mu.Unlock()
			}
			return
		}
		x.Wake()
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (x *Actuator) event(role string, epoch uint64, msg string) {
	x.node.Record(fsm.Event{Time: time.Now().UnixMilli(), Kind: fsm.EventRedis, Node: x.node.ID(),
		Actor: x.node.ID(), Role: role, Epoch: epoch, Message: msg})
}
