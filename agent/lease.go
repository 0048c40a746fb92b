package agent

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/agent/leasing"
	"github.com/harbormaster/harbormaster/fsm"
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

// Recent implements coordinator.RecentLeases (leasing.Node.Recent). It
// reads the lease tables' clock, time.Now, as Majority does, whatever
// clock the coordinator was given.
func (a *Agent) Recent(time.Time) (lease.Majority, lease.View, time.Duration, bool) {
	return a.leases.Recent(time.Now())
}

// newLeaseSecret returns the secret of a new cluster lease key.
func newLeaseSecret() (fsm.Secret, error) {
	b := make([]byte, fsm.LeaseKeySize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("read random bytes for a lease key: %w", err)
	}
	return fsm.Secret(b), nil
}

// Leases implements the Cluster service.
// Verdicts are recorded (a grant seen ended is never extended again), so
// only the leader's member certificate may ask.
func (s *server) Leases(ctx context.Context, req *hmv1.LeasesRequest) (*hmv1.LeasesResponse, error) {
	if c, ok := callerOf(ctx); ok {
		if _, leader := s.a.raft.LeaderWithID(); c.peer.Name != string(leader) || c.effective != c.peer {
			return nil, status.Errorf(codes.PermissionDenied, "leases: only the leader asks; %s is not the leader here (%q)", c.peer, leader)
		}
	}
	ms, err := s.a.raftMembers()
	if err != nil {
		return nil, grpcErr(err)
	}
	return leasesReply(s.a.cfg.NodeID, s.a.leases.Grants(), ms, req, time.Now())
}

// leasesReply answers a Leases request from grants. Only queries about
// current members are recorded (lease.Grants.Verdicts; it also skips
// implausible generations): a caller cannot plant verdicts about made-up
// nodes, and the table, members only, keeps the reply small.
func leasesReply(self string, grants *lease.Grants, ms []leasing.Member, req *hmv1.LeasesRequest, now time.Time) (*hmv1.LeasesResponse, error) {
	all, err := leaseQueries(req)
	if err != nil {
		return nil, err
	}
	member := map[string]bool{}
	for _, m := range ms {
		member[m.ID] = true
	}
	var qs []lease.Query
	for _, q := range all {
		if member[q.Node] {
			qs = append(qs, q)
		}
	}
	v := grants.Verdicts(now, qs...)
	resp := &hmv1.LeasesResponse{Granter: self, Guarded: v.Guarded, SinceGuardUs: v.SinceGuard.Microseconds()}
	for _, id := range lease.SortedIDs(v) {
		g := v.Nodes[id]
		resp.Grants = append(resp.Grants, &hmv1.LeaseGrant{Node: id, Gen: g.Gen, RemainingUs: g.Remaining.Microseconds(),
			SupersededRemainingUs: g.SupersededRemaining.Microseconds()})
	}
	return resp, nil
}

// RotateLeaseKey implements the admin service: the leader installs the
// successor of the current lease key. The reply names key ids only.
func (s *server) RotateLeaseKey(ctx context.Context, req *hmv1.RotateLeaseKeyRequest) (*hmv1.RotateLeaseKeyResponse, error) {
	var resp *hmv1.RotateLeaseKeyResponse
	if done, err := s.onLeader(ctx, func(ctx context.Context, c hmv1.AdminClient) (err error) {
		resp, err = c.RotateLeaseKey(ctx, req)
		return err
	}); done {
		return resp, err
	}
	cur := s.a.State().LeaseKey
	if cur == nil {
		return nil, status.Error(codes.FailedPrecondition, "the cluster has no lease key yet; the leader installs the first one when it takes office, retry in a moment")
	}
	secret, err := newLeaseSecret()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	cmd := &fsm.SetLeaseKey{ID: cur.ID + 1, Secret: secret, Actor: actor(ctx, req.Actor), Time: time.Now().UnixMilli()}
	idx, err := s.a.Propose(ctx, cmd)
	if err != nil {
		return nil, grpcErr(err)
	}
	s.a.log.Info("lease key rotated", "key_id", cmd.ID, "actor", cmd.Actor)
	return &hmv1.RotateLeaseKeyResponse{KeyId: cmd.ID, PreviousKeyId: cur.ID, Index: idx}, nil
}
