package agent_test

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/agent/config"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

func suffrage(t *testing.T, r *raft.Raft, id string) (raft.ServerSuffrage, bool) {
	t.Helper()
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s.Suffrage, true
		}
	}
	return 0, false
}

// A node with no bootstrap list joins through a follower's API as a
// non-voter, catches up, registers, is never given a role it is not a
// candidate for... and is removed again through the API.
func TestInmemJoinNonVoterAndRemove(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.waitFor("a leader and every role held", 10*time.Second, func() bool {
		l := c.leader()
		return l != nil && allHeld(l.agent.State())
	})
	l := c.leader()
	via := c.node(c.others(l.id)[0])
	no := false
	cfg := &config.Config{NodeID: "n4", RaftAddr: "127.0.0.1:9104", APIAddr: "127.0.0.1:1", DataDir: t.TempDir(),
		Profile: "lan", LogLevel: "info", Voter: &no, Join: []string{via.agent.APIAddr()}, TLS: c.tlsFor("n4")}
	n4 := c.build(cfg, clusterOpts{})
	c.nodes = append(c.nodes, n4)
	c.heal()
	c.start(n4) // stopped by the cluster's cleanup

	c.waitFor("n4 in the configuration as a non-voter", 10*time.Second, func() bool {
		s, ok := suffrage(t, l.agent.Raft(), "n4")
		return ok && s == raft.Nonvoter
	})
	select {
	case <-n4.agent.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("n4 not ready after joining")
	}
	if got, want := n4.agent.State().SpecVersion, l.agent.State().SpecVersion; got != want {
		t.Fatalf("n4 spec version %d, want %d", got, want)
	}
	ms, err := c.admin(n4).Members(ctxT(t, 5*time.Second), &hmv1.MembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, m := range ms.Members {
		if m.Id == "n4" {
			seen = true
			if m.Voter || !m.InRaft || m.ApiAddress != n4.agent.APIAddr() {
				t.Fatalf("n4 as a member: %+v", m)
			}
		}
	}
	if !seen {
		t.Fatalf("n4 missing from members: %v", ms.Members)
	}

	// Joining again is idempotent.
	resp, err := c.admin(via).Join(ctxT(t, 5*time.Second), &hmv1.JoinRequest{Id: "n4", RaftAddress: "127.0.0.1:9104"})
	if err != nil || !resp.Already {
		t.Fatalf("second join: %v %+v, want already", err, resp)
	}
	// A different node may not take n4's Raft address.
	_, err = c.admin(via).Join(ctxT(t, 5*time.Second), &hmv1.JoinRequest{Id: "n5", RaftAddress: "127.0.0.1:9104", Voter: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("join with a used address: %v, want FailedPrecondition", err)
	}
	_, err = c.admin(via).Join(ctxT(t, 5*time.Second), &hmv1.JoinRequest{Id: "N 5", RaftAddress: "127.0.0.1:9105"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("join with a bad id: %v, want InvalidArgument", err)
	}

	// Remove through a follower: forwarded to the leader.
	if _, err := c.admin(via).Remove(ctxT(t, 10*time.Second), &hmv1.RemoveRequest{Id: "n4"}); err != nil {
		t.Fatalf("remove n4: %v", err)
	}
	c.waitFor("n4 out of the configuration and the state", 5*time.Second, func() bool {
		_, in := suffrage(t, l.agent.Raft(), "n4")
		_, reg := l.agent.State().Nodes["n4"]
		return !in && !reg
	})
	_, err = c.admin(via).Remove(ctxT(t, 5*time.Second), &hmv1.RemoveRequest{Id: "n4"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("second remove: %v, want NotFound", err)
	}
}

// Leadership moves on request, and the old leader records the operator event.
func TestInmemTransferLeadership(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.waitFor("a leader", 10*time.Second, func() bool { return c.leader() != nil })
	l := c.leader()
	target := c.others(l.id)[1]
	via := c.node(c.others(l.id)[0])
	resp, err := c.admin(via).TransferLeadership(ctxT(t, 10*time.Second), &hmv1.TransferLeadershipRequest{Target: target})
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if resp.OldLeader != l.id || resp.NewLeader != target {
		t.Fatalf("transfer: %+v, want %s -> %s", resp, l.id, target)
	}
	c.waitFor("the transfer event", 5*time.Second, func() bool {
		for _, e := range c.node(target).agent.State().Events {
			if e.Kind == "operator" && e.Old == l.id && e.New == target {
				return true
			}
		}
		return false
	})
	_, err = c.admin(via).TransferLeadership(ctxT(t, 5*time.Second), &hmv1.TransferLeadershipRequest{Target: "n9"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("transfer to a stranger: %v, want InvalidArgument", err)
	}
}
