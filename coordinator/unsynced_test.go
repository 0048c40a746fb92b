package coordinator

import (
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// redisNode registers id with a Redis endpoint.
func redisNode(id string) *fsm.RegisterNode {
	r := reg(id)
	r.Redis = id + ":6379"
	return r
}

func redisReport(node, role, replID string, offset int64, runID string) *fsm.RedisReport {
	r := &fsm.RedisReport{Node: node, Role: role, ReplID: replID, Offset: offset, RunID: runID, Time: t0}
	if role == fsm.RedisReplica {
		r.Master = "n1:6379"
	}
	return r
}

// lostMaster is three Redis nodes; n1 was promoted (epoch 1) and reported
// its master history "m1" at offset 5000, then n1 was lost (not live, its
// lease ended). n2 and n3 report what unsynced says: a replica that never
// finished its first sync keeps its own replication id.
func lostMaster(t *testing.T, r spec.Role, n2ReplID, n3ReplID string) *fsm.State {
	t.Helper()
	st := mustApply(t, fsm.NewState(), redisNode("n1"), redisNode("n2"), redisNode("n3"), applySpec(r),
		redisReport("n1", fsm.RedisMaster, "m1", 0, "run1"),
		redisReport("n2", fsm.RedisReplica, "own2", 0, "run2"),
		redisReport("n3", fsm.RedisReplica, "own3", 0, "run3"),
		assign(r.Name, "n1", "", 1),
		redisReport("n1", fsm.RedisMaster, "m1", 5000, "run1"),
		redisReport("n2", fsm.RedisReplica, n2ReplID, 4000, "run2"),
		redisReport("n3", fsm.RedisReplica, n3ReplID, 3000, "run3"))
	h := st.Assignment(r.Name).History
	if h == nil || h.ReplID != "m1" || h.Offset != 5000 || h.Node != "n1" {
		t.Fatalf("history after n1's master reports: %+v, want n1 m1 at 5000", h)
	}
	return st
}

func redisRole(policy string) spec.Role {
	return spec.Role{Name: "redis", Type: spec.TypeRedisMaster, UnsyncedPromotion: policy}
}

func lostInput(st *fsm.State, live ...string) Input {
	return Input{State: st, Live: liveOn(live...), Ended: endedUpTo("n1"), Now: t0 + 1000, Actor: "n2"}
}

func TestUnsyncedReplicaIsNotPromotedUnderNever(t *testing.T) {
	st := lostMaster(t, redisRole(""), "own2", "own3")
	cmds := Plan(lostInput(st, "n2", "n3"))
	if len(cmds) != 1 {
		t.Fatalf("Plan: %v, want one redis-hold", describeAll(cmds))
	}
	hold, ok := cmds[0].(*fsm.RedisHold)
	if !ok || hold.Role != "redis" || !strings.Contains(hold.Reason, "n1") || !strings.Contains(hold.Reason, "--accept-data-loss") {
		t.Fatalf("Plan: %v, want a redis-hold naming n1 and --accept-data-loss", describeAll(cmds))
	}
	st = mustApply(t, st, hold)
	if e := st.Events[len(st.Events)-1]; e.Kind != fsm.EventRedisUnsynced || e.Role != "redis" {
		t.Fatalf("last event %+v, want redis-unsynced", e)
	}
	// Committed once: the next passes propose nothing, however long.
	in := lostInput(st, "n2", "n3")
	in.Now += int64(time.Hour / time.Millisecond)
	if cmds := Plan(in); len(cmds) != 0 {
		t.Fatalf("Plan after the hold: %v, want nothing (never)", describeAll(cmds))
	}
	ex, err := Explain(in, "redis")
	if err != nil || !strings.HasPrefix(ex.Decision, "stays vacant") {
		t.Fatalf("Explain: %q, %v; want stays vacant", ex.Decision, err)
	}
	// The fsm refuses the assignment too (defense in depth).
	if _, err := fsm.Apply(st, st.Index+1, assign("redis", "n2", "n1", 2)); err == nil || !strings.Contains(err.Error(), "has not synced") {
		t.Fatalf("Apply(assign to unsynced n2): %v, want a refusal", err)
	}
}

func TestSyncedReplicaIsPromotedFirst(t *testing.T) {
	// n3 finished its sync (it carries n1's id), n2 did not: n3 wins
	// although n2 reports the higher offset of another history.
	st := lostMaster(t, redisRole(""), "own2", "m1")
	cmds := Plan(lostInput(st, "n2", "n3"))
	if len(cmds) != 1 {
		t.Fatalf("Plan: %v", describeAll(cmds))
	}
	a, ok := cmds[0].(*fsm.Assign)
	if !ok || a.Node != "n3" || a.DataLoss != "" {
		t.Fatalf("Plan: %v, want assign to n3 without data loss", describeAll(cmds))
	}
	st = mustApply(t, st, a)
	// n3 promotes: its new id continues m1 (m1 is its previous id): the
	// history moves to it.
	st = mustApply(t, st, &fsm.RedisReport{Node: "n3", Role: fsm.RedisMaster, ReplID: "m3", ReplID2: "m1", Offset2: 3001,
		Offset: 3100, RunID: "run3", Time: t0 + 5})
	if h := st.Assignment("redis").History; h.Node != "n3" || h.ReplID != "m3" {
		t.Fatalf("history after n3's promotion: %+v, want n3 m3", h)
	}
}

func TestUnsyncedPromotionAfterDelay(t *testing.T) {
	st := lostMaster(t, redisRole("after 30s"), "own2", "own3")
	cmds := Plan(lostInput(st, "n2", "n3"))
	if len(cmds) != 1 || cmds[0].Type() != fsm.TypeRedisHold {
		t.Fatalf("Plan: %v, want a hold first", describeAll(cmds))
	}
	st = mustApply(t, st, cmds[0])
	el := &Elapsed{Held: map[string]time.Duration{}, Lost: map[string]time.Duration{}, Unsynced: map[string]time.Duration{"redis": 29 * time.Second}}
	in := lostInput(st, "n2", "n3")
	in.Elapsed = el
	if cmds := Plan(in); len(cmds) != 0 {
		t.Fatalf("Plan at 29s: %v, want nothing", describeAll(cmds))
	}
	el.Unsynced["redis"] = 30 * time.Second
	cmds = Plan(in)
	if len(cmds) != 1 {
		t.Fatalf("Plan at 30s: %v", describeAll(cmds))
	}
	a, ok := cmds[0].(*fsm.Assign)
	if !ok || a.Node != "n2" || !strings.Contains(a.DataLoss, "unsynced_promotion: after 30s") {
		t.Fatalf("Plan at 30s: %v (%+v), want n2 (highest offset) with the data loss stated", describeAll(cmds), cmds[0])
	}
	st = mustApply(t, st, a)
	e := st.Events[len(st.Events)-1]
	if e.Kind != fsm.EventRedisDataLoss || !strings.Contains(e.Message, "5000") || !strings.Contains(e.Message, "n1") {
		t.Fatalf("last event %+v, want redis-data-loss naming n1 and its offset", e)
	}
	// The new master starts a new history.
	st = mustApply(t, st, redisReport("n2", fsm.RedisMaster, "m2", 4100, "run2"))
	if h := st.Assignment("redis").History; h.Node != "n2" || h.ReplID != "m2" || h.Offset != 4100 {
		t.Fatalf("history after n2's promotion: %+v", h)
	}
}

func TestOperatorAcceptsDataLoss(t *testing.T) {
	st := lostMaster(t, redisRole(""), "own2", "own3")
	st = mustApply(t, st, Plan(lostInput(st, "n2", "n3"))...)
	// A move without the acceptance changes nothing.
	st2 := mustApply(t, st, &fsm.RequestRelease{Role: "redis", Epoch: 1, Target: "n3", Reason: "op", Actor: "op", Time: t0})
	if cmds := Plan(lostInput(st2, "n2", "n3")); len(cmds) != 0 {
		t.Fatalf("Plan after a move without --accept-data-loss: %v, want nothing", describeAll(cmds))
	}
	st = mustApply(t, st, &fsm.RequestRelease{Role: "redis", Epoch: 1, Target: "n3", AcceptDataLoss: true, Reason: "op", Actor: "op", Time: t0})
	cmds := Plan(lostInput(st, "n2", "n3"))
	a, ok := cmds[0].(*fsm.Assign)
	if len(cmds) != 1 || !ok || a.Node != "n3" || !strings.Contains(a.DataLoss, "accept-data-loss") {
		t.Fatalf("Plan after the accepted move: %v, want n3 with the loss stated", describeAll(cmds))
	}
	mustApply(t, st, a)
}

func TestLostMasterBackEmptyIsHandledAsLost(t *testing.T) {
	st := lostMaster(t, redisRole(""), "own2", "own3")
	st = mustApply(t, st, Plan(lostInput(st, "n2", "n3"))...)
	// n1 comes back (new agent registration) with a Redis restarted empty:
	// another run id, another replication id, no previous id.
	st = mustApply(t, st, redisNode("n1"), redisReport("n1", fsm.RedisMaster, "fresh", 0, "run1b"))
	live := liveOn("n1", "n2", "n3")
	live["n1"] = gen2("n1")
	cmds := Plan(Input{State: st, Live: live, Ended: endedUpTo("n1"), Now: t0 + 2000, Actor: "n2"})
	a, ok := cmds[0].(*fsm.Assign)
	if len(cmds) != 1 || !ok || !strings.Contains(a.DataLoss, "restarted without the data") {
		t.Fatalf("Plan: %v, want an assignment stating the data is gone", describeAll(cmds))
	}
}

func TestLostMasterBackWithItsDataIsPromoted(t *testing.T) {
	st := lostMaster(t, redisRole(""), "own2", "own3")
	st = mustApply(t, st, Plan(lostInput(st, "n2", "n3"))...)
	// n1's Redis restarted from its RDB: a new id continuing m1 up to
	// offset 4500 (Redis 7 keeps the old id as replid2).
	st = mustApply(t, st, redisNode("n1"), &fsm.RedisReport{Node: "n1", Role: fsm.RedisMaster, ReplID: "after", ReplID2: "m1",
		Offset2: 4501, Offset: 4500, RunID: "run1b", Time: t0 + 3})
	live := liveOn("n1", "n2", "n3")
	live["n1"] = gen2("n1")
	cmds := Plan(Input{State: st, Live: live, Ended: endedUpTo("n1"), Now: t0 + 2000, Actor: "n2"})
	a, ok := cmds[0].(*fsm.Assign)
	if len(cmds) != 1 || !ok || a.Node != "n1" || a.DataLoss != "" {
		t.Fatalf("Plan: %v, want n1 (its data is the history's) without a loss", describeAll(cmds))
	}
}
