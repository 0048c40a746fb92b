package agent

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/agent/sentinel"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// Redis timing.
const (
	// redisPoll is how often the agent reads its Redis's replication state.
	redisPoll = 200 * time.Millisecond
	// redisOffsetEvery bounds offset-only reports (the role, master, link
	// and run id are reported at once).
	redisOffsetEvery = time.Second
	// redisFenceAhead is how long before its lease ends the master's agent
	// stops its Redis taking writes: ahead of the lease's end by this
	// node's clock, which is itself ahead of the others' verdicts.
	redisFenceAhead = 50 * time.Millisecond
	// redisPause is passed to PauseWrites; redisctl's fence
	// (min-replicas-to-write unreachable) lasts until Promote or Unpause.
	redisPause = time.Hour
	// redisCatchUp bounds a planned switchover's wait for the target.
	redisCatchUp = 5 * time.Second
	// redisDownPolls is how many consecutive refused connections make the
	// Redis "down".
	redisDownPolls = 3
)

// redisNode is this node's side of the redis-master role (docs/redis.md):
// it reports its Redis's replication state to the cluster and makes it
// master, replica or fenced according to the replicated state and its
// own lease.
type redisNode struct {
	a   *Agent
	cli *redisctl.Client

	mu       sync.Mutex
	lastSent time.Time
	// fenced mirrors the last observed write fence of this node's Redis
	// (Replication.Paused) or one this agent just applied.
	fenced bool
	// refused counts consecutive polls whose connection was refused (no
	// process listens); down is set after redisDownPolls of them: a Redis
	// that is gone takes no writes, so its role may be released. A slow
	// Redis (timeouts) is not down.
	refused int
	down    bool
	// errs counts consecutive failed polls; an error is reported (which
	// disqualifies the node) only after redisDownPolls of them, so that a
	// slow INFO (a fork, a big DEL) does not move the master.
	errs int
	// promotedRunID is the run id of the Redis this agent promoted at
	// runIDEpoch: a different one under that epoch means it restarted
	// (maybe empty). A fence does not clear it.
	promotedRunID string
	runIDEpoch    uint64
	// reporting is set while a report or a release of this agent's is in
	// flight (one at a time): the loop never waits for Raft (a cut-off
	// master must fence on time).
	reporting bool
	// promotedEpoch is the epoch this node last promoted its Redis at.
	promotedEpoch uint64
	// handedOver names the switchover (handOverKey) whose hand-over is
	// done: the fenced master's final offset reached the target, or every
	// online replica when there is none. Only then may the release go.
	handedOver string
}

// handOverKey names a switchover of the role: its epoch and move target.
func handOverKey(as fsm.Assignment) string { return fmt.Sprintf("%d/%s", as.Epoch, as.MoveTo) }

func newRedisNode(a *Agent) (*redisNode, error) {
	if a.cfg.Redis == nil {
		return nil, nil
	}
	cli, err := redisctl.New(*a.cfg.Redis)
	if err != nil {
		return nil, err
	}
	return &redisNode{a: a, cli: cli}, nil
}

// redisRole returns the spec's redis-master role, if any.
func redisRole(st *fsm.State) (spec.Role, bool) {
	for _, r := range st.Spec.Roles {
		if r.Type == spec.TypeRedisMaster {
			return r, true
		}
	}
	return spec.Role{}, false
}

// redisLoop reads the Redis every redisPoll, reports what changed, and
// acts on the state: on every state change, lease change, tick, and just
// before this node's lease ends.
func (a *Agent) redisLoop(ctx context.Context) {
	rn := a.redis
	if rn == nil {
		return
	}
	defer rn.cli.Close()
	go rn.fencer(ctx)
	for {
		st, changed := a.fsm.State()
		rn.pass(ctx, st)
		wait := redisPoll
		if _, valid, until := a.Lease(); valid {
			wait = min(wait, max(time.Until(until)-redisFenceAhead, time.Millisecond))
		}
		select {
		case <-ctx.Done():
			rn.fenceOnExit()
			return
		case <-changed:
		case <-a.redisWake:
		case <-time.After(wait):
		}
	}
}

// mayMaster reports whether this node may act as the redis master now: it
// holds the role at its current lease generation, the lease has more than
// redisFenceAhead left, it is not releasing and the agent is not stopping.
func (rn *redisNode) mayMaster(st *fsm.State, r spec.Role) (fsm.Assignment, bool) {
	a := rn.a
	as := st.Assignment(r.Name)
	gen, valid, until := a.Lease()
	ok := as.Holder == a.cfg.NodeID && as.HolderGen == gen && valid && time.Until(until) > redisFenceAhead &&
		!as.Releasing && !a.stopping.Load()
	return as, ok
}

// pass is one round: observe, report, act.
func (rn *redisNode) pass(ctx context.Context, st *fsm.State) {
	a := rn.a
	octx, cancel := context.WithTimeout(ctx, redisPoll)
	repl, err := rn.cli.Replication(octx)
	cancel()
	rn.mu.Lock()
	if err != nil {
		rn.errs++
	} else {
		rn.errs = 0
	}
	quiet := err != nil && rn.errs < redisDownPolls
	switch {
	case err == nil:
		rn.fenced, rn.refused, rn.down = repl.Paused, 0, false
	case errors.Is(err, syscall.ECONNREFUSED):
		rn.refused++
		rn.down = rn.refused >= redisDownPolls
	default:
		rn.refused = 0 // slow or unreachable, not gone: it may still take writes
	}
	rn.mu.Unlock()
	if !quiet {
		rn.report(ctx, repl, err)
	}
	r, ok := redisRole(st)
	if !ok || err != nil {
		return
	}
	as, master := rn.mayMaster(st, r)
	holder := st.Nodes[as.Holder]
	switch {
	case master:
		if rn.restartedUnder(as.Epoch, repl) {
			// The Redis restarted under the role (empty, or behind its
			// replicas): never promote it again; give the role back so
			// that the most caught-up replica is elected.
			rn.fence(ctx, "Redis restarted under the master role")
			rn.releaseRestarted(ctx, r.Name, as.Epoch)
			return
		}
		if repl.Role != fsm.RedisMaster || repl.Paused || rn.promoted() != as.Epoch {
			if as.LostBy != "" && as.LostBy != a.cfg.NodeID {
				rn.demoteRemote(ctx, st.Nodes[as.LostBy], a.cfg.Redis.AnnounceAddr())
			}
			// Check the lease again just before lifting the fence, and do
			// not let the promotion outlive it.
			_, valid, until := a.Lease()
			if _, still := rn.mayMaster(a.State(), r); !still || !valid {
				return
			}
			pctx, cancel := context.WithDeadline(ctx, until.Add(-redisFenceAhead))
			err := rn.cli.Promote(pctx, r.Name, as.Epoch)
			cancel()
			if err != nil {
				a.log.Warn("promote Redis", "epoch", as.Epoch, "err", err)
				return
			}
			rn.setPromoted(as.Epoch, repl.RunID)
			a.log.Info("Redis promoted to master", "epoch", as.Epoch)
			go a.redisEvent(r.Name, as.Epoch, "promoted to master (REPLICAOF NO ONE)")
		}
	case repl.Role == fsm.RedisMaster && holder != nil && as.Holder != a.cfg.NodeID && holder.Redis != "" && !as.Releasing:
		// Another node is the master: become its replica (writes stay
		// paused until the demotion is done).
		rn.fence(ctx, "another node is the master")
		rn.follow(ctx, holder.Redis, r.Name, as.Epoch)
	case repl.Role == fsm.RedisMaster:
		// This node may not act as master (lease ending, releasing,
		// stopping, or no holder): stop taking writes.
		rn.fence(ctx, "not the master's lease holder")
		if as.Releasing && as.Holder == a.cfg.NodeID {
			rn.prepareRelease(ctx, st, as)
		}
	case holder != nil && as.Holder != a.cfg.NodeID && holder.Redis != "" && !as.Releasing:
		if masterOf(repl) != holder.Redis {
			rn.follow(ctx, holder.Redis, r.Name, as.Epoch)
		}
	}
}

// masterOf is the host:port a replica follows.
func masterOf(r redisctl.Replication) string {
	if r.MasterHost == "" {
		return ""
	}
	return net.JoinHostPort(r.MasterHost, strconv.Itoa(r.MasterPort))
}

// report commits the Redis's state when its role, master, link or run id
// changed, and its offset at most every redisOffsetEvery.
func (rn *redisNode) report(ctx context.Context, repl redisctl.Replication, rerr error) {
	a := rn.a
	st := a.State()
	n, registered := st.Nodes[a.cfg.NodeID]
	if !registered || n.Redis == "" {
		return
	}
	next := fsm.RedisReport{Node: a.cfg.NodeID, Role: repl.Role, Offset: repl.Offset, LinkUp: repl.LinkUp,
		ReplID: repl.ReplID, RunID: repl.RunID, Time: time.Now().UnixMilli()}
	if next.Role == fsm.RedisReplica {
		next.Master = masterOf(repl)
	}
	if rerr != nil {
		next = fsm.RedisReport{Node: a.cfg.NodeID, Offset: -1, Error: truncate(rerr.Error(), fsm.MaxCheckError), Time: next.Time}
	}
	cur, known := st.Redis[a.cfg.NodeID]
	structural := !known || cur.Role != next.Role || cur.Master != next.Master || cur.LinkUp != next.LinkUp ||
		cur.RunID != next.RunID || (cur.Error == "") != (next.Error == "")
	rn.mu.Lock()
	due := time.Since(rn.lastSent) >= redisOffsetEvery
	busy := rn.reporting
	if busy || (!structural && (cur.Offset == next.Offset || !due)) {
		rn.mu.Unlock()
		return
	}
	rn.reporting, rn.lastSent = true, time.Now() // offsets again in a second, even if this fails
	rn.mu.Unlock()
	go func() {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := a.Propose(pctx, &next)
		cancel()
		if err != nil {
			a.log.Debug("report Redis state", "err", err)
		}
		rn.mu.Lock()
		rn.reporting = false
		rn.mu.Unlock()
	}()
}

func (rn *redisNode) fencedNow() bool { rn.mu.Lock(); defer rn.mu.Unlock(); return rn.fenced }

func (rn *redisNode) promoted() uint64 { rn.mu.Lock(); defer rn.mu.Unlock(); return rn.promotedEpoch }
func (rn *redisNode) setPromoted(epoch uint64, runID string) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.promotedEpoch, rn.fenced = epoch, false
	if rn.runIDEpoch != epoch {
		rn.promotedRunID, rn.runIDEpoch = runID, epoch
	}
}

// restartedUnder reports whether the Redis this agent promoted at epoch
// has restarted since (another run id).
func (rn *redisNode) restartedUnder(epoch uint64, repl redisctl.Replication) bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.runIDEpoch == epoch && rn.promotedRunID != "" && repl.RunID != "" && repl.RunID != rn.promotedRunID
}

// releaseRestarted commits a release of the role whose Redis restarted
// under it (once; the loop retries if it fails).
func (rn *redisNode) releaseRestarted(ctx context.Context, role string, epoch uint64) {
	a := rn.a
	rn.mu.Lock()
	if rn.reporting {
		rn.mu.Unlock()
		return
	}
	rn.reporting = true
	rn.mu.Unlock()
	go func() {
		defer func() { rn.mu.Lock(); rn.reporting = false; rn.mu.Unlock() }()
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := a.Propose(pctx, &fsm.Release{Role: role, Node: a.cfg.NodeID, Epoch: epoch,
			Reason: "its Redis restarted under the master role", Time: time.Now().UnixMilli()}); err != nil {
			a.log.Warn("release the redis-master role after a Redis restart", "err", err)
			return
		}
		a.log.Warn("Redis restarted under the master role; released it", "epoch", epoch)
	}()
}

// fencer is the master's deadline: it fences the Redis redisFenceAhead
// before the lease ends by this node's clock unless a renewal extended it.
// It runs apart from the loop, which may wait on Redis or the network.
func (rn *redisNode) fencer(ctx context.Context) {
	a := rn.a
	for {
		wait := 20 * time.Millisecond
		if rn.promoted() != 0 {
			_, valid, until := a.Lease()
			left := time.Until(until) - redisFenceAhead
			if !valid || left <= 0 {
				fctx, cancel := context.WithTimeout(ctx, time.Second)
				rn.fence(fctx, "lease about to end")
				cancel()
			} else {
				wait = min(left, 100*time.Millisecond)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// fence stops this node's Redis taking writes (once per episode).
func (rn *redisNode) fence(ctx context.Context, why string) {
	if rn.fencedNow() {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err := rn.cli.PauseWrites(pctx, redisPause)
	cancel()
	if err != nil {
		rn.a.log.Warn("fence Redis (pause writes)", "why", why, "err", err)
		return
	}
	rn.mu.Lock()
	rn.fenced, rn.promotedEpoch = true, 0
	rn.mu.Unlock()
	rn.a.log.Info("Redis writes paused", "why", why)
}

// fenceOnExit pauses the writes of a master whose agent stops: whoever
// takes over next finds it paused.
func (rn *redisNode) fenceOnExit() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if repl, err := rn.cli.Replication(ctx); err == nil && repl.Role == fsm.RedisMaster {
		rn.fence(ctx, "agent stopping")
	}
}

func (rn *redisNode) follow(ctx context.Context, master, role string, epoch uint64) {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err := rn.cli.Follow(pctx, master)
	cancel()
	if err != nil {
		rn.a.log.Warn("make Redis a replica", "master", master, "err", err)
		return
	}
	rn.a.log.Info("Redis follows the master", "master", master, "epoch", epoch)
}

// demoteRemote makes a lost master (its lease ended without a release: its
// agent may be dead while its Redis runs) a replica of this node before
// this node promotes its own, so that clients still connected to it cannot
// write to a second master. Best effort and bounded: a crashed node does
// not answer, and a cut-off one fenced itself within its lease.
func (rn *redisNode) demoteRemote(ctx context.Context, old *fsm.Node, self string) {
	if old == nil || old.Redis == "" {
		return
	}
	cli, err := redisctl.Remote(*rn.a.cfg.Redis, old.Redis)
	if err != nil {
		return
	}
	defer cli.Close()
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := cli.PauseWrites(dctx, redisPause); err != nil {
		rn.a.log.Info("lost master's Redis not reachable (crashed or cut off: it fenced itself)", "redis", old.Redis, "err", err)
		return
	}
	if err := cli.Follow(dctx, self); err != nil {
		rn.a.log.Warn("demote the lost master's Redis", "redis", old.Redis, "err", err)
		return
	}
	rn.a.log.Info("demoted the lost master's Redis before promoting", "redis", old.Redis)
}

// prepareRelease readies a planned switchover: writes are paused (fence),
// and when the move has a target, the target's Redis must have processed
// everything this master acknowledged (bounded wait) before the release
// is committed by the release loop.
func (rn *redisNode) prepareRelease(ctx context.Context, st *fsm.State, as fsm.Assignment) {
	key := handOverKey(as)
	rn.mu.Lock()
	done, fenced := rn.handedOver == key, rn.fenced
	rn.mu.Unlock()
	if done || !fenced {
		return // not fenced yet: the offset is not final; the loop retries
	}
	if as.MoveTo == "" {
		// Drain, preempt: no target; let every replica take the writes
		// this master acknowledged before the coordinator picks one.
		wctx, cancel := context.WithTimeout(ctx, redisCatchUp)
		rn.waitReplicas(wctx)
		cancel()
		rn.mu.Lock()
		rn.handedOver = key
		rn.mu.Unlock()
		rn.a.roleTrigger()
		return
	}
	target := st.Nodes[as.MoveTo]
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	repl, err := rn.cli.Replication(rctx)
	cancel()
	if err != nil || target == nil || target.Redis == "" {
		return
	}
	cli, err := redisctl.Remote(*rn.a.cfg.Redis, target.Redis)
	if err != nil {
		return
	}
	defer cli.Close()
	wctx, cancel := context.WithTimeout(ctx, redisCatchUp)
	err = cli.WaitCaughtUp(wctx, repl.Offset)
	cancel()
	if err != nil {
		rn.a.log.Warn("switchover target not caught up; releasing anyway after the bound", "target", as.MoveTo,
			"offset", repl.Offset, "err", err)
	}
	rn.mu.Lock()
	rn.handedOver = key
	rn.mu.Unlock()
	rn.a.roleTrigger()
}

// waitReplicas waits (until ctx ends) until every online replica of this
// fenced master acknowledged its final offset, so that whichever replica
// is promoted next has every write this master acknowledged.
func (rn *redisNode) waitReplicas(ctx context.Context) {
	for {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		repl, err := rn.cli.Replication(rctx)
		cancel()
		if err == nil && repl.Role == fsm.RedisMaster {
			behind := 0
			for _, r := range repl.Replicas {
				if r.State == "online" && r.Offset < repl.Offset {
					behind++
				}
			}
			if behind == 0 {
				return
			}
		} else if err == nil {
			return // not a master: nothing to hand over
		}
		select {
		case <-ctx.Done():
			rn.a.log.Warn("Redis replicas not caught up with the fenced master; releasing after the bound", "err", ctx.Err())
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// releasable reports whether the release loop may commit the release of
// role: for the redis-master role, once this node's Redis no longer takes
// writes and a planned switchover's target caught up.
func (rn *redisNode) releasable(st *fsm.State, role string) bool {
	if rn == nil {
		return true
	}
	r, ok := redisRole(st)
	if !ok || r.Name != role {
		return true
	}
	as := st.Assignment(role)
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.down {
		return true // a Redis that cannot be reached takes no writes
	}
	// Without a target too: the release waits for the replicas (drain).
	return rn.fenced && rn.handedOver == handOverKey(as)
}

// redisSource answers the Sentinel-compatible listener from the state.
type redisSource struct{ a *Agent }

func hostPort(s string) sentinel.Addr {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return sentinel.Addr{}
	}
	port, _ := strconv.Atoi(p)
	return sentinel.Addr{Host: h, Port: port}
}

// Masters implements sentinel.Source: the redis-master role's holder is
// the master while its lease generation is live by this node's grants.
func (s redisSource) Masters() []sentinel.Master {
	st := s.a.State()
	r, ok := redisRole(st)
	if !ok {
		return nil
	}
	as := st.Assignment(r.Name)
	m := sentinel.Master{Name: r.SentinelName(), Epoch: as.Epoch, Down: true}
	if n, ok := st.Nodes[as.Holder]; ok && n.Redis != "" && !as.Releasing {
		m.Addr = hostPort(n.Redis)
		gen, live := s.a.grants.Snapshot(time.Now()).Live(as.Holder)
		m.Down = !live || gen != as.HolderGen
	}
	for _, id := range st.NodeIDs() {
		if n := st.Nodes[id]; id != as.Holder && n.Redis != "" {
			m.Replicas = append(m.Replicas, hostPort(n.Redis))
		}
	}
	return []sentinel.Master{m}
}

// Sentinels implements sentinel.Source.
func (s redisSource) Sentinels(string) []sentinel.Addr {
	st := s.a.State()
	var out []sentinel.Addr
	for _, id := range st.NodeIDs() {
		if n := st.Nodes[id]; id != s.a.cfg.NodeID && n.Sentinel != "" {
			out = append(out, hostPort(n.Sentinel))
		}
	}
	return out
}

// startSentinel serves the Sentinel-compatible listener when configured;
// it tells the server of every state change (for +switch-master).
func (a *Agent) startSentinel(ctx context.Context) (func(), error) {
	sc := a.cfg.Sentinel
	if sc == nil {
		return func() {}, nil
	}
	sum := sha1.Sum([]byte("harbormaster sentinel " + a.cfg.NodeID))
	srv, err := sentinel.New(sentinel.Config{Addr: sc.Addr, PasswordFile: sc.PasswordFile, RunID: hex.EncodeToString(sum[:]),
		Announce: hostPort(sc.AnnounceAddr())}, redisSource{a}, a.log.With("component", "sentinel"))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", sc.Addr)
	if err != nil {
		return nil, fmt.Errorf("sentinel: listen on %s: %w", sc.Addr, err)
	}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		for {
			_, changed := a.fsm.State()
			srv.Changed()
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-time.After(a.timing.Renew): // liveness changes without a state change
			}
		}
	}()
	return func() { _ = srv.Close() }, nil
}

// redisEvent records an event (call it in a goroutine: it waits for Raft).
func (a *Agent) redisEvent(role string, epoch uint64, msg string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := a.Propose(ctx, &fsm.RecordEvent{Event: fsm.Event{Time: time.Now().UnixMilli(), Kind: fsm.EventRedis,
		Node: a.cfg.NodeID, Actor: a.cfg.NodeID, Role: role, Epoch: epoch, Message: msg}}); err != nil {
		a.log.Debug("record redis event", "err", errors.Unwrap(err))
	}
}

// waitFenced waits (bounded) until this node's Redis is fenced or a
// replica, for a graceful stop's release.
func (rn *redisNode) waitFenced(limit time.Duration) {
	if rn == nil {
		return
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		repl, err := rn.cli.Replication(ctx)
		cancel()
		if err == nil && (repl.Role != fsm.RedisMaster || repl.Paused) {
			rn.mu.Lock()
			rn.fenced = true
			rn.mu.Unlock()
			if repl.Role == fsm.RedisMaster {
				wctx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Second))
				rn.waitReplicas(wctx) // a graceful stop hands over every acknowledged write
				cancel()
			}
			if r, ok := redisRole(rn.a.State()); ok {
				rn.mu.Lock()
				rn.handedOver = handOverKey(rn.a.State().Assignment(r.Name))
				rn.mu.Unlock()
			}
			return
		}
		rn.a.roleTrigger()
		time.Sleep(20 * time.Millisecond)
	}
}
