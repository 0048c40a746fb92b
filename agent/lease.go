package agent

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/agent/leasing"
	"github.com/harbormaster/harbormaster/lease"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// raftMembers returns the Raft configuration with the registered API
// addresses.
func (a *Agent) raftMembers() ([]leasing.Member, error) {
	f := a.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	st := a.State()
	var out []leasing.Member
	for _, s := range f.Configuration().Servers {
		m := leasing.Member{ID: string(s.ID), Voter: s.Suffrage == raft.Voter}
		if n, ok := st.Nodes[m.ID]; ok {
			m.APIAddr = n.APIAddr
		}
		out = append(out, m)
	}
	return out, nil
}

// Majority implements coordinator.Leases (leasing.Node.Majority).
func (a *Agent) Majority(ctx context.Context) (lease.Majority, error) { return a.leases.Majority(ctx) }

// Leases implements the Cluster service.
// Verdicts are recorded (a grant seen ended is never extended again), so
// only the leader's member certificate may ask.
func (s *server) Leases(ctx context.Context, req *hmv1.LeasesRequest) (*hmv1.LeasesResponse, error) {
	if c, ok := callerOf(ctx); ok {
		if _, leader := s.a.raft.LeaderWithID(); c.peer.Name != string(leader) || c.effective != c.peer {
			return nil, status.Errorf(codes.PermissionDenied, "leases: only the leader asks; %s is not the leader here (%q)", c.peer, leader)
		}
	}
	qs, err := leaseQueries(req)
	if err != nil {
		return nil, err
	}
	v := s.a.leases.Grants().Verdicts(time.Now(), qs...)
	resp := &hmv1.LeasesResponse{Granter: s.a.cfg.NodeID, Guarded: v.Guarded, SinceGuardUs: v.SinceGuard.Microseconds()}
	for _, id := range lease.SortedIDs(v) {
		g := v.Nodes[id]
		resp.Grants = append(resp.Grants, &hmv1.LeaseGrant{Node: id, Gen: g.Gen, RemainingUs: g.Remaining.Microseconds(),
			SupersededRemainingUs: g.SupersededRemaining.Microseconds()})
	}
	return resp, nil
}
