package scenario

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// The crash scenarios of a master whose replicas have not synced yet.
// Both start each trial with a fresh promotion, as when a cluster forms:
// every node's redis-server is killed and started again with the RDB file
// of its last full sync removed, so every Redis is empty (no persistence)
// with a new replication history, the master's
// Redis restarted under the role is released, a new master is promoted and
// every other Redis must make a first full sync with it. With Redis's
// stock repl-diskless-sync-delay (5 s) that sync has not even begun
// seconds after the promotion unless the agent changes the delay on the
// master it promotes.
//
//   - redis-crash-early crashes the master's node 1-3 s (drawn per trial)
//     after the promotion: no acknowledged write may be lost, and a new
//     master must be elected.
//   - redis-crash-unsynced keeps every replica from syncing (nftables: TCP
//     to every node's Redis port from the other nodes dropped, installed
//     before the restart), lets the master acknowledge writes, then
//     crashes its node. Odd trials run with the spec's unsynced_promotion
//     `never` (no replica may be promoted; an event redis-unsynced says
//     why; then the crashed node is restored, its Redis empty, and what
//     follows is reported), even ones with `after 3s` (a promotion no
//     earlier than 3 s after the crash, with an event redis-data-loss).

const (
	// Event kinds the agent records about a master lost before its
	// replicas synced.
	eventRedisUnsynced = "redis-unsynced"
	eventRedisDataLoss = "redis-data-loss"
	// unsyncedWatch is how long redis-crash-unsynced watches for a
	// promotion under `never`.
	unsyncedWatch = 10 * time.Second
	// unsyncedDelay is the delay of the `after` policy of
	// redis-crash-unsynced.
	unsyncedDelay = 3 * time.Second
	// unsyncedWrites is how long the unsynced master takes writes before
	// its node crashes.
	unsyncedWrites = time.Second
	// promotionSettle is how long a fresh promotion must stay unchanged.
	promotionSettle = 500 * time.Millisecond
)

// Outcomes of a redis-crash-unsynced trial (Trial.Outcome).
const (
	outcomeVacant        = "vacant"
	outcomePromotedDelay = "promoted-after-delay"
	outcomePromotedEarly = "promoted-early"
)

// unsyncedPolicy is the unsynced_promotion policy of a
// redis-crash-unsynced trial: `never` in odd trials, `after 3s` in even
// ones.
func unsyncedPolicy(trial int) string {
	if trial%2 == 1 {
		return "never"
	}
	return fmt.Sprintf("after %s", unsyncedDelay)
}

// restartAllRedis kills every node's redis-server at once (SIGKILL) and
// starts them all again: empty, fenced, each with a new run id and
// replication history, as when a cluster forms. Without persistence a
// Redis still keeps the RDB file its last full sync as a replica wrote
// into its dir (stock repl-diskless-load disabled) and loads it, with
// that sync's replication id and offset, when it starts: the file is
// removed first, so that no Redis starts with data or a history.
func (c *Cluster) restartAllRedis(ctx context.Context) error {
	var ps []*Proc
	for _, n := range c.nodes {
		p := c.Daemon(n.Name, "redis")
		if p == nil {
			return fmt.Errorf("no redis on %s", n.Name)
		}
		p.stopping.Store(true)
		if err := p.Signal(syscall.SIGKILL); err != nil {
			return err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, d := range c.opts.Daemons {
		if d.Name != "redis" {
			continue
		}
		for _, n := range c.nodes {
			argv, err := d.Argv(c, n)
			if err != nil {
				return err
			}
			i := slices.Index(argv, "--dir")
			if i < 0 || i+1 >= len(argv) {
				return fmt.Errorf("redis on %s: no --dir in %q", n.Name, argv)
			}
			if err := os.Remove(filepath.Join(argv[i+1], "dump.rdb")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if err := c.startDaemon(n.Name, d.Name, argv); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("no daemon redis in the options")
}

// freshPromotion restarts every Redis empty (restartAllRedis) and waits
// until the state gives the redis role to a holder at a greater epoch than
// before, unchanged for promotionSettle (so that a holder that gives the
// role back at once, its Redis restarted under it, is not taken). It
// returns the holder and when the scenario first saw it at that epoch
// (the state is polled every 20 ms through node via).
func freshPromotion(ctx context.Context, c *Cluster, via string, tr *Trial) (string, time.Time, error) {
	before, err := c.role(ctx, via, RedisRole)
	if err != nil {
		return "", time.Time{}, err
	}
	t := time.Now()
	if err := c.restartAllRedis(ctx); err != nil {
		return "", time.Time{}, err
	}
	var holder string
	var epoch uint64
	var at time.Time
	ok := pollEvery(ctx, 20*time.Millisecond, 3*redisWait, func() bool {
		r, err := c.role(ctx, via, RedisRole)
		if err != nil || r.Holder == "" || r.Releasing || r.Epoch <= before.Epoch {
			holder = ""
			return false
		}
		if r.Holder != holder || r.Epoch != epoch {
			holder, epoch, at = r.Holder, r.Epoch, time.Now()
		}
		return time.Since(at) >= promotionSettle
	})
	if !ok {
		return "", time.Time{}, fmt.Errorf("redis: no new master within %s of restarting every Redis at %s (the role was %s at epoch %d)",
			3*redisWait, stamp(t), before.Holder, before.Epoch)
	}
	tr.note("every Redis restarted empty at %s; %s promoted (seen in the state %s later)", stamp(t), holder, ms(at.Sub(t)))
	tr.figure("promotion_after_restart_ms", msf(at.Sub(t)))
	return holder, at, nil
}

// syncedReplicas counts the replicas the master's Redis reports online
// (first full sync done) in INFO replication; -1 if it cannot be read.
func (c *Cluster) syncedReplicas(ctx context.Context, master string) int {
	cli := c.nodeRedis(master)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	v, err := cli.Do(ctx, "INFO", "replication")
	info, _ := v.(string)
	if err != nil || info == "" {
		return -1
	}
	n := 0
	for _, line := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(line, "slave") && strings.Contains(line, "state=online") {
			n++
		}
	}
	return n
}

// firstWrites returns the first sample at or after t in which node took
// writes.
func (r *redisRig) firstWrites(node string, t time.Time) (time.Time, bool) {
	s, ok := firstSample(r.s.SamplesSince(t), t, func(s lab.Sample) bool { return holds(s, node) })
	return s.At, ok
}

// lastEventSeq returns the sequence number of the newest event node's
// state has (0 when none).
func (c *Cluster) lastEventSeq(ctx context.Context, node string) (uint64, error) {
	es, err := c.Events(ctx, node, 0)
	if err != nil {
		return 0, err
	}
	var seq uint64
	for _, e := range es {
		seq = max(seq, e.Seq)
	}
	return seq, nil
}

// redisEvent returns the first event of kind for the redis role after
// seq, as node's state has it.
func (c *Cluster) redisEvent(ctx context.Context, node string, seq uint64, kind string) (*hmv1.Event, bool) {
	// The event commits with the assignment, but node may apply it a
	// moment after a client saw the new master, and a call may fail on a
	// busy machine: look again for up to redisEventWait.
	var found *hmv1.Event
	pollEvery(ctx, 100*time.Millisecond, redisEventWait, func() bool {
		es, _ := c.Events(ctx, node, seq)
		for _, e := range es {
			if e.Kind == kind && e.Role == RedisRole {
				found = e
				return true
			}
		}
		return false
	})
	return found, found != nil
}

// redisEventWait bounds redisEvent's look for an event already committed.
const redisEventWait = 2 * time.Second

// applyUnsyncedPolicy applies the cluster's spec with the redis role's
// unsynced_promotion set to policy, through node via.
func (c *Cluster) applyUnsyncedPolicy(ctx context.Context, via, policy string) error {
	plain := "master_name: " + redisMasterName + "}"
	doc := strings.Replace(c.opts.Spec, plain, fmt.Sprintf("master_name: %s, unsynced_promotion: %s}", redisMasterName, policy), 1)
	if doc == c.opts.Spec {
		return fmt.Errorf("the spec has no redis role %q to set unsynced_promotion on", plain)
	}
	if err := c.ApplySpec(ctx, via, doc); err != nil {
		return fmt.Errorf("apply the spec with unsynced_promotion: %s: %w", policy, err)
	}
	return nil
}

// redisCrashEarly: see the comment at the top of the file.
func redisCrashEarly(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	seed := rand.Uint64()
	delay := time.Second + time.Duration(rand.New(rand.NewPCG(seed, 0)).Int64N(int64(2*time.Second)))
	tr.note("seed %d: the master's node crashes %s after the promotion", seed, ms(delay))
	tr.figure("crash_after_promotion_ms", msf(delay))
	r, promoted, err := freshRig(ctx, c, v, tr)
	if err != nil {
		return err
	}
	defer r.close()
	m := r.master
	if late := time.Since(promoted) - delay; late > 0 {
		tr.note("the observers were ready %s after the drawn crash time: crashing now", ms(late))
	}
	if err := Sleep(ctx, time.Until(promoted.Add(delay))); err != nil {
		return err
	}
	synced := c.syncedReplicas(ctx, m)
	tr.figure("replicas_synced_at_crash", float64(synced))
	t0, err := c.Crash(m)
	tr.Fault = t0
	if err != nil {
		return err
	}
	tr.note("%s crashed %s after the promotion, %d of %d replicas synced", m, ms(t0.Sub(promoted)), synced, len(c.nodes)-1)
	return r.failoverAndRestore(ctx, c, tr, m, t0)
}

// redisCrashUnsynced: see the comment at the top of the file.
func redisCrashUnsynced(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	policy := unsyncedPolicy(tr.N)
	tr.note("unsynced_promotion: %s", policy)
	if err := c.applyUnsyncedPolicy(ctx, v.Leader, policy); err != nil {
		return err
	}
	healed := false
	heal := func() error {
		if healed {
			return nil
		}
		healed = true
		return c.Lab.Heal()
	}
	defer heal()
	for _, n := range c.nodes {
		if err := c.Lab.BlockTCP(n.Name, redisPort, c.others(n.Name)...); err != nil {
			return err
		}
	}
	r, _, err := freshRig(ctx, c, v, tr)
	if err != nil {
		return err
	}
	defer r.close()
	m := r.master
	if err := Sleep(ctx, unsyncedWrites); err != nil {
		return err
	}
	synced := c.syncedReplicas(ctx, m)
	tr.figure("replicas_synced_at_crash", float64(synced))
	if synced != 0 {
		return fmt.Errorf("redis: %d replicas synced with %s through the block of port %d", synced, m, redisPort)
	}
	via := c.others(m)[0]
	seq, err := c.lastEventSeq(ctx, via)
	if err != nil {
		return fmt.Errorf("events from %s: %w", via, err)
	}
	t0, err := c.Crash(m)
	tr.Fault = t0
	if err != nil {
		return err
	}
	if policy == "never" {
		return r.unsyncedNever(ctx, tr, m, via, seq, t0, heal)
	}
	return r.unsyncedAfter(ctx, tr, m, via, seq, t0, heal)
}

// unsyncedNever checks the `never` policy after the unsynced master m
// crashed at t0: for unsyncedWatch no node takes writes and the state
// gives the role to no other node, and an event redis-unsynced appears;
// then m is restored (its Redis empty) and what follows is recorded.
func (r *redisRig) unsyncedNever(ctx context.Context, tr *Trial, m, via string, seq uint64, t0 time.Time, heal func() error) error {
	c := r.c
	var promoted string
	var at time.Time
	pollEvery(ctx, 50*time.Millisecond, unsyncedWatch, func() bool {
		if last, ok := r.s.Last(); ok {
			for _, h := range last.Holders {
				if h != m {
					promoted, at = h, last.At
					return true
				}
			}
		}
		if role, err := c.role(ctx, via, RedisRole); err == nil && role.Holder != "" && role.Holder != m {
			promoted, at = role.Holder, time.Now()
			return true
		}
		return false
	})
	vacant := time.Since(t0)
	if promoted != "" {
		vacant = at.Sub(t0)
		tr.Outcome = outcomePromotedEarly
		tr.violate("unsynced_promotion never: %s was promoted at %s, %s after the unsynced master %s crashed, before it returned",
			promoted, stamp(at), ms(vacant), m)
	} else {
		tr.Outcome = outcomeVacant
	}
	tr.figure("vacant_ms", msf(vacant))
	e, unsyncedEvent := c.redisEvent(ctx, via, seq, eventRedisUnsynced)
	var lossEvent bool
	if unsyncedEvent {
		tr.note("event #%d %s: %s", e.Seq, e.Kind, e.Message)
		tr.figure("unsynced_event", 1)
	} else {
		tr.figure("unsynced_event", 0)
		tr.violate("unsynced_promotion never: no %s event for %s within %s of the crash of its unsynced master %s",
			eventRedisUnsynced, RedisRole, ms(time.Since(t0)), m)
	}
	tr.figure("outcome_mismatch", boolFigure(promoted != "" || !unsyncedEvent))
	if err := heal(); err != nil {
		return err
	}
	tr.note("outcome %s; restoring %s (its Redis returns empty)", tr.Outcome, m)
	tRestore := time.Now()
	if err := c.Restore(m); err != nil {
		return err
	}
	final, ok := r.waitMaster(ctx, "", tRestore, redisWait)
	if !ok {
		tr.violate("no Redis master within %s of restoring the lost master %s at %s", redisWait, m, stamp(tRestore))
		r.close()
		return nil
	}
	tr.NewHolder = final
	if at, ok := r.firstWrites(final, tRestore); ok {
		tr.figure("restore_promotion_ms", msf(at.Sub(tRestore)))
	}
	tr.note("after the restore %s took writes", final)
	// Asked of via, whose agent ran throughout: the restored node's
	// agent has just started and may not have caught up yet.
	e, lossEvent = c.redisEvent(ctx, via, seq, eventRedisDataLoss)
	if lossEvent {
		tr.note("event #%d %s: %s", e.Seq, e.Kind, e.Message)
	}
	tr.figure("restore_data_loss_event", boolFigure(lossEvent))
	rep := r.finish(ctx, tr, t0, final)
	if len(rep.Lost) > 0 && !lossEvent {
		tr.violate("%d acknowledged writes lost after the restore of the empty master %s and no %s event says so",
			len(rep.Lost), m, eventRedisDataLoss)
	}
	return nil
}

// unsyncedAfter checks the `after` policy after the unsynced master m
// crashed at t0: a new master no earlier than unsyncedDelay after the
// crash, an event redis-data-loss, and the count of acknowledged writes
// lost (all of them: nothing had replicated).
func (r *redisRig) unsyncedAfter(ctx context.Context, tr *Trial, m, via string, seq uint64, t0 time.Time, heal func() error) error {
	c := r.c
	nm, ok := r.waitMaster(ctx, m, t0, unsyncedDelay+redisWait)
	if !ok {
		tr.Outcome = outcomeVacant
		tr.violate("unsynced_promotion after %s: no new master within %s of the crash of %s at %s",
			unsyncedDelay, unsyncedDelay+redisWait, m, stamp(t0))
		tr.figure("outcome_mismatch", 1)
		if err := heal(); err != nil {
			return err
		}
		return c.Restore(m)
	}
	tr.NewHolder = nm
	at, _ := r.firstWrites(nm, t0)
	d := at.Sub(t0)
	tr.figure("promotion_ms", msf(d))
	tr.Outcome = outcomePromotedDelay
	if d < unsyncedDelay {
		tr.Outcome = outcomePromotedEarly
		tr.violate("unsynced_promotion after %s: %s took writes %s after the crash of the unsynced master %s",
			unsyncedDelay, nm, ms(d), m)
	}
	e, lossEvent := c.redisEvent(ctx, via, seq, eventRedisDataLoss)
	if lossEvent {
		tr.note("event #%d %s: %s", e.Seq, e.Kind, e.Message)
		tr.figure("data_loss_event", 1)
	} else {
		tr.figure("data_loss_event", 0)
		tr.violate("unsynced_promotion after %s: %s promoted with no %s event", unsyncedDelay, nm, eventRedisDataLoss)
	}
	tr.figure("outcome_mismatch", boolFigure(tr.Outcome != outcomePromotedDelay || !lossEvent))
	if err := heal(); err != nil {
		return err
	}
	if err := r.restoreRejoin(ctx, c, tr, m, nm); err != nil {
		return err
	}
	r.finish(ctx, tr, t0, nm)
	return nil
}

func boolFigure(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unsyncedTargets: every trial's outcome matches its policy, events
// included (outcome_mismatch is 1 in a trial where it does not; a trial
// without the figure ended before its outcome was known).
func unsyncedTargets(r *Result) []Target {
	f := r.Figures["outcome_mismatch"]
	m := f.Max
	if f.N < r.Trials {
		m = 1
	}
	return []Target{{What: "outcome matches unsynced_promotion in every trial (outcome_mismatch max == 0)", Limit: 0, Measured: m, Met: m == 0}}
}

// freshRig makes a fresh promotion (freshPromotion) and starts the
// observers on it; the writer's master must be the promoted holder. It
// returns when the promotion happened.
func freshRig(ctx context.Context, c *Cluster, v View, tr *Trial) (*redisRig, time.Time, error) {
	holder, promoted, err := freshPromotion(ctx, c, v.Leader, tr)
	if err != nil {
		return nil, time.Time{}, err
	}
	r, err := startRedisRig(ctx, c, v, tr)
	if err != nil {
		return nil, time.Time{}, err
	}
	if r.master != holder {
		r.close()
		return nil, time.Time{}, fmt.Errorf("redis: %s was promoted, the writer's master is %s", holder, r.master)
	}
	return r, promoted, nil
}
