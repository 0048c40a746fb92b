package agent_test

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/agent"
	"github.com/harbormaster/harbormaster/fsm"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

const specV2 = "roles:\n  - {name: notary, type: service, marker: true}\n  - {name: clair, type: service, marker: true}\n  - {name: trivy, type: service, marker: true}\n"

// The lan profile: a follower notices a dead leader within 2 heartbeat
// timeouts (500 ms) and an election takes 1-2 election timeouts; 3 s leaves
// room for -race on two cores without hiding a stuck election.
const electionBound = 3 * time.Second

// catchUpBound: hashicorp/raft backs off exponentially (10 ms doubling,
// capped at 10 ms x 2^10) while a follower is unreachable, so after a heal
// the leader may wait up to about 10 s before its next attempt.
const catchUpBound = 25 * time.Second

// roleBound: lease (1 s) plus the 10% drift margin, counted from the new
// leader taking office, plus an election and scheduling slack.
const roleBound = 1100*time.Millisecond + electionBound

func testLeaderCrash(t *testing.T, n int) {
	c := newCluster(t, n, clusterOpts{})
	c.waitFor("a leader and every role held", 10*time.Second, func() bool {
		l := c.leader()
		return l != nil && allHeld(l.agent.State())
	})
	old := c.leader()
	before := old.agent.State()

	// A write through a follower is forwarded to the leader.
	follower := c.node(c.others(old.id)[0])
	resp, err := c.admin(follower).ApplySpec(ctxT(t, 5*time.Second), &hmv1.ApplySpecRequest{Document: specV2, Actor: "test"})
	if err != nil {
		t.Fatalf("apply spec through follower %s: %v", follower.id, err)
	}
	if resp.Version != before.SpecVersion+1 {
		t.Fatalf("spec version after apply = %d, want %d", resp.Version, before.SpecVersion+1)
	}
	if got := follower.agent.State().SpecVersion; got != resp.Version {
		t.Fatalf("follower reads spec version %d right after its write, want %d", got, resp.Version)
	}
	c.waitFor("trivy held", 5*time.Second, func() bool { return allHeld(old.agent.State()) })
	held := old.agent.State().HeldBy(old.id)

	// Crash the leader: cut it off entirely.
	crashed := time.Now()
	c.isolate(old.id)
	var nl *tnode
	c.waitFor("a new leader among the survivors", electionBound, func() bool {
		nl = c.leader(c.others(old.id)...)
		return nl != nil
	})
	t.Logf("new leader %s after %s", nl.id, time.Since(crashed))

	// Roles the crashed leader held move, each at a greater epoch.
	c.waitFor("the crashed leader's roles to move", roleBound, func() bool {
		st := nl.agent.State()
		for _, a := range held {
			if cur := st.Assignment(a.Role); cur.Holder == "" || cur.Holder == old.id {
				return false
			}
		}
		return true
	})
	st := nl.agent.State()
	for _, a := range held {
		if cur := st.Assignment(a.Role); cur.Epoch <= a.Epoch {
			t.Errorf("role %s moved at epoch %d, not above %d", a.Role, cur.Epoch, a.Epoch)
		}
	}

	// The cut-off node cannot commit.
	if _, err := old.agent.Propose(ctxT(t, 2*time.Second), &fsm.RecordEvent{Event: fsm.Event{Kind: "test"}}); err == nil {
		t.Fatalf("isolated old leader committed a command")
	}

	// Committed writes survive and the old leader catches up after healing.
	if _, err := nl.agent.Propose(ctxT(t, 5*time.Second), &fsm.RecordEvent{Event: fsm.Event{Kind: "after-crash"}}); err != nil {
		t.Fatalf("write on the new leader: %v", err)
	}
	want := nl.agent.State()
	c.heal()
	c.waitFor("the old leader to catch up", catchUpBound, func() bool {
		return old.agent.State().Index >= want.Index
	})
	got := old.agent.State()
	if got.SpecVersion != want.SpecVersion || got.EventSeq < want.EventSeq {
		t.Fatalf("old leader after heal: spec %d events %d; want spec %d events >= %d",
			got.SpecVersion, got.EventSeq, want.SpecVersion, want.EventSeq)
	}
}

func TestInmemLeaderCrash3(t *testing.T) { testLeaderCrash(t, 3) }
func TestInmemLeaderCrash5(t *testing.T) { testLeaderCrash(t, 5) }

// Five voters survive two failures; the minority commits nothing.
func TestInmemFiveNodesTwoFailures(t *testing.T) {
	c := newCluster(t, 5, clusterOpts{})
	c.waitFor("a leader", 10*time.Second, func() bool { return c.leader() != nil })
	l := c.leader()
	minority := []string{l.id, c.others(l.id)[0]}
	c.isolate(minority...)
	var majority []string
	for _, n := range c.nodes {
		if n.id != minority[0] && n.id != minority[1] {
			majority = append(majority, n.id)
		}
	}
	var nl *tnode
	c.waitFor("a leader in the majority", electionBound, func() bool { nl = c.leader(majority...); return nl != nil })
	for i := 0; i < 20; i++ {
		if _, err := nl.agent.Propose(ctxT(t, 5*time.Second), &fsm.RecordEvent{Event: fsm.Event{Kind: "majority", Message: strconv.Itoa(i)}}); err != nil {
			t.Fatalf("majority write %d: %v", i, err)
		}
	}
	for _, id := range minority {
		_, err := c.node(id).agent.Propose(ctxT(t, time.Second), &fsm.RecordEvent{Event: fsm.Event{Kind: "minority"}})
		if err == nil {
			t.Fatalf("minority node %s committed a write", id)
		}
	}
	c.heal()
	want := nl.agent.State()
	for _, n := range c.nodes {
		c.waitFor(n.id+" to converge", catchUpBound, func() bool { return n.agent.State().Index >= want.Index })
		for _, e := range n.agent.State().Events {
			if e.Kind == "minority" {
				t.Fatalf("%s kept a minority write: %+v", n.id, e)
			}
		}
	}
}

// A follower that fell behind the leader's compacted log catches up by
// installing a snapshot, and ends with the same state.
func TestInmemFollowerCatchesUpFromSnapshot(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{snapshotThreshold: 32, trailingLogs: 8})
	c.waitFor("a leader and every role held", 10*time.Second, func() bool {
		l := c.leader()
		return l != nil && allHeld(l.agent.State())
	})
	l := c.leader()
	lag := c.node(c.others(l.id)[0])
	c.isolate(lag.id)
	lagLast, _ := strconv.ParseUint(lag.agent.Raft().Stats()["last_log_index"], 10, 64)
	for i := 0; i < 200; i++ {
		if _, err := l.agent.Propose(ctxT(t, 5*time.Second), &fsm.RecordEvent{Event: fsm.Event{Kind: "bulk", Message: strconv.Itoa(i)}}); err != nil {
			var nle *agent.NotLeaderError
			if errors.As(err, &nle) {
				t.Fatalf("leader %s lost leadership while writing: %v", l.id, err)
			}
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// A snapshot the follower cannot do without: the leader compacts its
	// log up to the snapshot, less trailingLogs (8) behind its last entry,
	// so one taken at the start of the burst could leave the follower's
	// next entry in the log, and it would catch up without the snapshot.
	c.waitFor("a leader snapshot past the follower's log", 10*time.Second, func() bool {
		idx, _ := strconv.ParseUint(l.agent.Raft().Stats()["last_snapshot_index"], 10, 64)
		return idx > lagLast+8
	})
	c.heal()
	c.waitFor("the lagging follower to catch up", catchUpBound, func() bool {
		return lag.agent.State().Index >= l.agent.State().Index
	})
	// It must have installed the leader's snapshot: its own snapshots can
	// only cover what it had before it was cut off. Raft records the
	// install a moment after the FSM restored it (which is what the
	// catch-up above saw): its log line says so, and only an install
	// writes it.
	c.waitFor("the lagging follower's install of the leader's snapshot", 2*time.Second, func() bool {
		return len(c.lw.lines("Installed remote snapshot", "node="+lag.id+" ")) > 0
	})
	snapIdx, _ := strconv.ParseUint(lag.agent.Raft().Stats()["last_snapshot_index"], 10, 64)
	if snapIdx <= lagLast {
		t.Fatalf("lagging follower's last snapshot is at %d, not beyond its last entry before the cut (%d)", snapIdx, lagLast)
	}
	// Nothing renews through the log, so the state settles: it must then be
	// the same on both nodes.
	c.waitFor("identical states", 10*time.Second, func() bool {
		want, got := l.agent.State(), lag.agent.State()
		return got.Index == want.Index && reflect.DeepEqual(got, want)
	})
	found := 0
	for _, e := range lag.agent.State().Events {
		if e.Kind == "bulk" {
			found++
		}
	}
	if found != 200 {
		t.Fatalf("follower has %d of the 200 bulk events", found)
	}
}

// Writes to a follower without a reachable leader fail with Unavailable
// naming the cause, not a hang.
func TestInmemNoQuorumWriteIsUnavailable(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.waitFor("a leader", 10*time.Second, func() bool { return c.leader() != nil })
	for _, n := range c.nodes {
		c.isolate(n.id)
	}
	n := c.nodes[0]
	c.waitFor(n.id+" to lose its leader", electionBound, func() bool {
		_, id := n.agent.Raft().LeaderWithID()
		return id == ""
	})
	_, err := c.admin(n).ApplySpec(ctxT(t, 3*time.Second), &hmv1.ApplySpecRequest{Document: specV2})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("apply spec without quorum: %v (code %s), want Unavailable", err, status.Code(err))
	}
	_, err = c.admin(n).ApplySpec(ctxT(t, 3*time.Second), &hmv1.ApplySpecRequest{Document: "roles: [{name: Bad, type: service}]"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("apply invalid spec: %v, want InvalidArgument", err)
	}
}

// Stopping every node and starting them again on their data dirs (bolt log
// and stable store, file snapshots) keeps every committed change, and the
// static bootstrap is not applied a second time.
func TestInmemRestartAllKeepsState(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{disk: true, snapshotThreshold: 16, trailingLogs: 4})
	c.waitFor("a leader and every role held", 10*time.Second, func() bool {
		l := c.leader()
		return l != nil && allHeld(l.agent.State())
	})
	l := c.leader()
	if _, err := c.admin(l).ApplySpec(ctxT(t, 5*time.Second), &hmv1.ApplySpecRequest{Document: specV2, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ { // enough to take snapshots and compact the log
		if _, err := l.agent.Propose(ctxT(t, 5*time.Second), &fsm.RecordEvent{Event: fsm.Event{Kind: "before-restart", Message: strconv.Itoa(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitFor("every node to apply the writes", 10*time.Second, func() bool {
		for _, n := range c.nodes {
			if n.agent.State().Index < l.agent.State().Index {
				return false
			}
		}
		return true
	})
	before := l.agent.State()
	for _, n := range c.nodes {
		c.stop(n)
	}
	for _, n := range c.nodes {
		c.restart(n)
	}
	for _, n := range c.nodes {
		select {
		case <-n.agent.Ready():
		case <-time.After(15 * time.Second):
			t.Fatalf("%s not ready after the restart", n.id)
		}
	}
	for _, n := range c.nodes {
		st := n.agent.State()
		if st.SpecVersion != before.SpecVersion || st.Index < before.Index {
			t.Fatalf("%s after restart: spec %d index %d; before: spec %d index %d", n.id, st.SpecVersion, st.Index,
				before.SpecVersion, before.Index)
		}
		kept := 0
		for _, e := range st.Events {
			if e.Kind == "before-restart" {
				kept++
			}
		}
		if kept != 40 {
			t.Fatalf("%s kept %d of 40 events across the restart", n.id, kept)
		}
		for role, a := range before.Assignments {
			if got := st.Assignment(role); got.Epoch < a.Epoch {
				t.Fatalf("%s: role %s epoch went back from %d to %d", n.id, role, a.Epoch, got.Epoch)
			}
		}
		f := n.agent.Raft().GetConfiguration()
		if err := f.Error(); err != nil || len(f.Configuration().Servers) != 3 {
			t.Fatalf("%s configuration after restart: %v %v", n.id, f.Configuration().Servers, err)
		}
	}
	// The roles come back after the old lease generations end.
	c.waitFor("every role held again", 10*time.Second, func() bool {
		l := c.leader()
		return l != nil && allHeld(l.agent.State())
	})
}
