package scenario

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/report"
	"github.com/harbormaster/harbormaster/chaos/schedule"
)

// Redis in the chaos matrix (ChaosOptions.Redis). The run's cluster is the
// services' cluster plus what the Redis scenarios run (redisCluster: a
// stock redis-server per node with exactly what docs/redis.md tells users
// to set, the redis-master role and its VIP). Two observers, never the
// agents, watch it: the MasterSampler (which Redis servers take a write,
// every samplePeriod, from inside each node's namespace) gives the role's
// lane, and a RedisWriter in the client namespace RPUSHes a counter
// through the Redis VIP throughout the run; at the end every acknowledged
// write is read back from the final master.

// chaosRedisEvery is the writer's period: every 2 ms, half the Redis
// scenarios' rate, the chaos runs sharing the machine's 2 cores.
const chaosRedisEvery = 2 * time.Millisecond

// chaosRedisCluster is serviceCluster plus the Redis scenarios' daemons,
// node config and roles.
func chaosRedisCluster(co *ClusterOptions) error {
	if err := redisCluster(co, Options{}); err != nil {
		return err
	}
	if err := serviceCluster(co, Options{}); err != nil {
		return err
	}
	co.Spec += redisRoleLines("")
	return nil
}

// chaosRedis is one chaos run's Redis observers.
type chaosRedis struct {
	c   *Cluster
	s   *MasterSampler
	w   *RedisWriter
	key string
}

// startChaosRedis starts the sampler and the writer and waits until one
// Redis alone takes writes and the writer is acknowledged.
func startChaosRedis(ctx context.Context, c *Cluster, seed int64) (*chaosRedis, error) {
	r := &chaosRedis{c: c, key: fmt.Sprintf("harbormaster:chaos:writes:%d", seed)}
	r.s, r.w = c.startRedisObservers(r.key, chaosRedisEvery)
	if _, ok := r.waitMaster(ctx, time.Now(), redisWait); !ok {
		last, _ := r.s.Last()
		n, kinds := r.w.Errors()
		r.stop()
		return nil, fmt.Errorf("redis: no single master taking the writer's writes within %s (last sample: %v take writes; writer errors %d %v)",
			redisWait, last.Holders, n, kinds)
	}
	return r, nil
}

// stop stops the observers (idempotent).
func (r *chaosRedis) stop() {
	if r.w != nil {
		r.w.Stop()
		r.w = nil
	}
	if r.s != nil {
		r.s.Stop()
		r.s = nil
	}
}

// holder is who takes writes in the latest sample ("a+b" for two, "" for
// none): the Redis role's holder for the faults that pick it.
func (r *chaosRedis) holder() string {
	s, _ := r.s.Last()
	return strings.Join(s.Holders, "+")
}

// waitMaster waits until one node alone took writes in every sample of
// the last redisSettle (the first at or after since) and the writer was
// acknowledged after the first of them.
func (r *chaosRedis) waitMaster(ctx context.Context, since time.Time, timeout time.Duration) (string, bool) {
	rig := redisRig{s: r.s, w: r.w}
	return rig.waitMaster(ctx, "", since, timeout)
}

// lane is the redis-master lane of [start, end] (redisLane).
func (r *chaosRedis) lane(start, end time.Time) report.Lane {
	ss, un := r.s.SamplesUnansweredSince(start)
	return redisLane(ss, un, start, end)
}

// redisLane turns master samples into the redis-master lane: the spans of
// the nodes that took writes, except that a sample in which no node took
// one keeps the sole master of the sample before when that master's
// answer timed out. A timeout says nothing: a frozen Redis times out, and
// so does every node when the observers' own process stalls on a loaded
// machine (seen: 88 ms without any answer, no agent or Redis logging
// anything, at a load of 14 on 2 cores); a drop is a refusal (NOREPLICAS,
// READONLY) or a refused connection. S1 is checked on the raw samples.
func redisLane(samples []lab.Sample, unanswered [][]string, start, end time.Time) report.Lane {
	eff := make([]lab.Sample, len(samples))
	prev := ""
	for i, s := range samples {
		eff[i] = s
		if len(s.Holders) == 0 && prev != "" && i < len(unanswered) && slices.Contains(unanswered[i], prev) {
			eff[i].Holders = []string{prev}
		}
		prev = soleHolder(eff[i])
	}
	return report.Lane{Role: RedisRole, Kind: "redis-master", Spans: sampleSpans(eff, start, end, samplePeriod)}
}

// applyRedis applies a kill-redis or pause-redis fault to node's
// redis-server and returns what undoes it: a restart of the daemon (empty
// and fenced, as after a crash) or SIGCONT.
func (x *chaosExec) applyRedis(f schedule.Fault, node string) (func() error, string, error) {
	c := x.c
	p := c.Daemon(node, "redis")
	if p == nil || p.Exited() {
		return nil, "", fmt.Errorf("no running redis-server on %s", node)
	}
	if f.Kind == schedule.PauseRedis {
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			return nil, "", err
		}
		return func() error { return p.Signal(syscall.SIGCONT) }, fmt.Sprintf("redis-server (pid %d) stopped", p.Pid()), nil
	}
	p.stopping.Store(true)
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return nil, "", err
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		return nil, "", fmt.Errorf("redis-server on %s did not exit within 5 s of SIGKILL", node)
	}
	return func() error { return c.startNamedDaemon(node, "redis") }, fmt.Sprintf("redis-server (pid %d) killed", p.Pid()), nil
}

// check stops the observers, reads the final master's list and checks
// the run's Redis side into run: S1 (two Redis servers took writes in one
// sample), S7 (an acknowledged write missing, beyond the windows
// lostRedisWrites allows), and its figures. lease is the agents' lease.
func (r *chaosRedis) check(ctx context.Context, run *report.Run, start, end time.Time, faults []appliedFault, lease time.Duration) {
	violate := func(at time.Time, inv, format string, args ...any) {
		run.Violations = append(run.Violations, report.Violation{AtMS: relMS(start, at), Time: at, Invariant: inv, Detail: fmt.Sprintf(format, args...)})
	}
	final, ok := r.waitMaster(ctx, time.Now().Add(-redisSettle), redisWait)
	samples := r.s.SamplesSince(start)
	r.w.Stop()
	acks := r.w.Acks()
	nerr, kinds := r.w.Errors()
	r.w = nil
	r.s.Stop()
	r.s = nil
	_, ivs := lab.DualHolder(samples)
	for _, iv := range ivs {
		violate(iv.Start, "S1", "two Redis servers took writes: %s until %s (%d samples)", strings.Join(iv.Holders, "+"), stamp(iv.End), iv.Samples)
	}
	for _, v := range unfencedMasters(samples, faults, lease+samplePeriod) {
		violate(v.Time, "S3", "%s", v.Detail)
	}
	fig := run.Figures
	fig["redis_acked"], fig["redis_errors"] = float64(len(acks)), float64(nerr)
	if !ok {
		last := ""
		if n := len(samples); n > 0 {
			last = strings.Join(samples[n-1].Holders, "+")
		}
		violate(time.Now(), "liveness", "no single Redis master took the writer's writes within %s of the run's end (last sample: %q); the %d acknowledged writes were not read back (writer errors %d %v)",
			redisWait, last, len(acks), nerr, kinds)
		return
	}
	cli := r.c.nodeRedis(final)
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := Strings(cli.Do(rctx, "LRANGE", r.key, "0", "-1"))
	if err != nil {
		violate(time.Now(), "S7", "cannot read the writes back from the final Redis master %s: %v", final, err)
		return
	}
	rep := AnalyzeWrites(acks, list, start, end)
	fence := lease + samplePeriod
	lost := lostRedisWrites(rep.Lost, samples, faults, fence)
	fig["redis_lost"], fig["redis_lost_in_flight"], fig["redis_lost_partition"] = float64(len(rep.Lost)), float64(len(lost.InFlight)), float64(len(lost.Partition))
	// The writer's longest time without an acknowledgement: the Redis
	// outage as a client saw it (the lane keeps a master whose answers
	// time out, a frozen one for instance).
	fig["redis_outage_max_ms"] = math.Round(msf(rep.Outage))
	if n := len(lost.Other); n > 0 {
		a, b := lost.Other[0], lost.Other[n-1]
		violate(a.End, "S7", "%d acknowledged writes are not on the final Redis master %s: values %d..%d, acknowledged from %s to %s, outside a crash's %s in-flight window and a cut-off master's %s before its fence (%d such lost writes counted apart)",
			n, final, a.Val, b.Val, stamp(a.End), stamp(b.End), inFlightWindow, fence, len(lost.InFlight)+len(lost.Partition))
	}
}

// lostWrites are the lost acknowledged writes of a run, classified.
type lostWrites struct {
	// InFlight were sent within inFlightWindow of a crash (or SIGKILL) of
	// the Redis master's node (of its redis-server): replication is
	// asynchronous, and a master may acknowledge a write in the instant
	// it dies, before the write's replication stream leaves the node
	// (docs/redis.md, Limits; the rule and window of redis-clients'
	// lost_in_flight).
	InFlight []Ack
	// Partition were acknowledged by a master cut off from the other
	// nodes (a partition or one-way fault that took its node) from the
	// cut to the fence bound after it (the lease plus a sample, the bound
	// of redis-partition-master): the documented asynchronous window
	// before its agent fences it (docs/redis.md).
	Partition []Ack
	// Other are the rest: each one is an S7 violation.
	Other []Ack
}

// lostRedisWrites classifies lost acknowledged writes against the faults
// and the master samples (the master at a fault's start is the node that
// alone took writes in the last sample before it).
func lostRedisWrites(lost []Ack, samples []lab.Sample, faults []appliedFault, fence time.Duration) lostWrites {
	// replSlack: a write acknowledged up to this long before a cut may
	// still be in the master's replication stream (redis-partition-master).
	const replSlack = 5 * time.Millisecond
	var out lostWrites
	for _, a := range lost {
		class := &out.Other
		for _, f := range faults {
			if f.Skipped != "" || len(f.Targets) == 0 || !slices.Contains(f.Targets, masterAt(samples, f.From)) {
				continue
			}
			switch f.Kind {
			case schedule.Crash, schedule.KillRedis, schedule.LeaderCrashMove:
				at := f.From
				if f.Kind == schedule.LeaderCrashMove {
					// Its crash comes 20 ms after the move's request.
					at = at.Add(20 * time.Millisecond)
				}
				// The crash took effect between the fault's start and
				// InEffect (after its 20 ms wait, for a leader crash).
				end := at
				if f.InEffect.After(end) {
					end = f.InEffect
				}
				if !a.Start.Before(at.Add(-inFlightWindow)) && !a.Start.After(end.Add(inFlightWindow)) {
					class = &out.InFlight
				}
			case schedule.Partition, schedule.OneWay:
				if !a.End.Before(f.From.Add(-replSlack)) && !a.End.After(cutAt(f).Add(fence)) {
					class = &out.Partition
				}
			}
			if class != &out.Other {
				break
			}
		}
		*class = append(*class, a)
	}
	return out
}

// cutAt is when a network fault had surely taken effect: when installing
// its rules returned (InEffect), or its start for a record without it.
func cutAt(f appliedFault) time.Time {
	if f.InEffect.IsZero() {
		return f.From
	}
	return f.InEffect
}

// masterAt is the node that alone took writes in the last sample at or
// before t ("" if none did).
func masterAt(samples []lab.Sample, t time.Time) string {
	i, _ := slices.BinarySearchFunc(samples, t, func(s lab.Sample, t time.Time) int {
		if s.At.After(t) {
			return 1
		}
		return -1
	})
	if i == 0 {
		return ""
	}
	return soleHolder(samples[i-1])
}

// startNamedDaemon starts the daemon of the options called name on node.
func (c *Cluster) startNamedDaemon(node, name string) error {
	for _, d := range c.opts.Daemons {
		if d.Name == name {
			argv, err := d.Argv(c, c.Node(node))
			if err != nil {
				return err
			}
			return c.startDaemon(node, name, argv)
		}
	}
	return errors.New("no daemon " + name + " in the options")
}

// unfencedMasters returns, for each partition (but a bridge: through the
// bridge the cut side may keep a majority) or one-way fault that cut the
// node of the Redis master (the master at its start) from the others, the
// first sample in which that node's Redis still took a write later than
// fence after the cut while the fault lasted: its agent must fence it
// before its lease ends (docs/redis.md, Fences; the bound of
// redis-partition-master). Only a write taken counts: a timeout (a frozen
// Redis) is not one.
func unfencedMasters(samples []lab.Sample, faults []appliedFault, fence time.Duration) []report.Violation {
	var out []report.Violation
	for _, f := range faults {
		if f.Skipped != "" || !(f.Kind == schedule.OneWay || f.Kind == schedule.Partition && f.Shape != schedule.ShapeBridge) {
			continue
		}
		m := masterAt(samples, f.From)
		if m == "" || !slices.Contains(f.Targets, m) {
			continue
		}
		cut := cutAt(f)
		for _, s := range between(samples, cut.Add(fence), f.To) {
			if holds(s, m) {
				out = append(out, report.Violation{Time: s.At, Invariant: "S3",
					Detail: fmt.Sprintf("the Redis master %s, cut off by fault #%d (%s) by %s, still took a write %s after the cut, beyond its lease (%s with a sample)",
						m, f.ID, f.Kind, stamp(cut), ms(s.At.Sub(cut)), fence)})
				break
			}
		}
	}
	return out
}
