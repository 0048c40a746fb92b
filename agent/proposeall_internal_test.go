package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/fsm"
)

// ProposeAll appends a plan's commands without waiting for each: every
// command is applied in order, each gets its own verdict (a rejection in
// the middle does not stop the ones after it), as proposing them one by one
// would.
func TestProposeAllAppliesInOrderWithEachVerdict(t *testing.T) {
	f := fsm.New()
	_, trans := raft.NewInmemTransport("n1")
	rc := raft.DefaultConfig()
	rc.LocalID = "n1"
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	rc.Logger = hclog.NewNullLogger()
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(rc, f, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: trans.LocalAddr()}}}).Error(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a := &Agent{cfg: &config.Config{NodeID: "n1"}, raft: r, fsm: f, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ev := func(msg string) fsm.Command {
		return &fsm.RecordEvent{Event: fsm.Event{Time: 1, Kind: fsm.EventService, Node: "n1", Actor: "n1", Message: msg}}
	}
	cmds := []fsm.Command{ev("first"), &fsm.Release{Role: "nothing", Node: "n1", Epoch: 1, Reason: "test", Time: 1}, ev("second")}
	errs := raftNode{a}.ProposeAll(context.Background(), cmds)
	var rej *fsm.RejectedError
	if len(errs) != 3 || errs[0] != nil || !errors.As(errs[1], &rej) || errs[2] != nil {
		t.Fatalf("ProposeAll: %v; want nil, a rejection, nil", errs)
	}
	st, _ := f.State()
	var got []string
	for _, e := range st.EventsSince(0) {
		got = append(got, e.Message)
	}
	if len(got) < 2 || got[len(got)-2] != "first" || got[len(got)-1] != "second" {
		t.Fatalf("events after ProposeAll: %q; want first, then second", got)
	}
	// On a node that is not the leader: every command says so, nothing is
	// appended.
	r.Shutdown().Error()
	errs = raftNode{a}.ProposeAll(context.Background(), []fsm.Command{ev("third")})
	var nl *NotLeaderError
	if !errors.As(errs[0], &nl) {
		t.Fatalf("ProposeAll on a shut down node: %v, want a NotLeaderError", errs[0])
	}
}
