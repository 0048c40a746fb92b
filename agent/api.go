package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/coordinator"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/conf"
	"github.com/harbormaster/harbormaster/internal/tlsid"
	"github.com/harbormaster/harbormaster/internal/version"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
	"github.com/harbormaster/harbormaster/spec"
)

// forwardedKey marks a request already forwarded once, so two nodes that
// disagree about the leader never bounce a request between them.
const forwardedKey = "x-harbormaster-forwarded"

// server implements the admin and cluster services. It is the only place
// where proto types meet domain types.
type server struct {
	hmv1.UnimplementedAdminServer
	hmv1.UnimplementedClusterServer
	a *Agent
}

func (a *Agent) registerServices(s *grpc.Server) {
	srv := &server{a: a}
	hmv1.RegisterAdminServer(s, srv)
	hmv1.RegisterClusterServer(s, srv)
	a.health = health.NewServer()
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s, a.health)
	reflection.Register(s)
}

// grpcErr maps domain errors to gRPC status codes (STYLE.md, admin handler).
func grpcErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var (
		fe  *conf.FieldError
		rej *fsm.RejectedError
		nl  *NotLeaderError
		unk *fsm.UnknownCommandError
	)
	switch {
	case errors.As(err, &fe), errors.As(err, &unk):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.As(err, &rej):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.As(err, &nl):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, raft.ErrEnqueueTimeout):
		return status.Error(codes.Unavailable, "timed out waiting for the cluster: "+err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, raft.ErrRaftShutdown):
		return status.Error(codes.Unavailable, "the agent is shutting down")
	}
	return status.Error(codes.Internal, err.Error())
}

func forwarded(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(forwardedKey)) > 0
}

// onLeader runs fn against the leader's admin API when this node is not the
// leader, and reports whether it did. A request forwarded once is not
// forwarded again.
func (s *server) onLeader(ctx context.Context, fn func(ctx context.Context, c hmv1.AdminClient) error) (bool, error) {
	if s.a.raft.State() == raft.Leader {
		return false, nil
	}
	if forwarded(ctx) {
		return true, grpcErr(s.a.notLeader())
	}
	addr, err := s.a.leaderAPI()
	if err != nil {
		return true, grpcErr(err)
	}
	c, err := s.a.conns.get(addr)
	if err != nil {
		return true, status.Error(codes.Unavailable, err.Error())
	}
	out := metadata.AppendToOutgoingContext(forwardFor(ctx), forwardedKey, s.a.cfg.NodeID)
	return true, fn(out, hmv1.NewAdminClient(c))
}

// forwardPropose sends an encoded command to the leader's Cluster service.
func (a *Agent) forwardPropose(ctx context.Context, b []byte) (uint64, error) {
	addr, err := a.leaderAPI()
	if err != nil {
		return 0, err
	}
	c, err := a.conns.get(addr)
	if err != nil {
		return 0, err
	}
	ctx = metadata.AppendToOutgoingContext(forwardFor(ctx), forwardedKey, a.cfg.NodeID)
	resp, err := hmv1.NewClusterClient(c).Propose(ctx, &hmv1.ProposeRequest{Command: b})
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
			return 0, &fsm.RejectedError{Command: "forwarded", Reason: st.Message()}
		}
		return 0, err
	}
	return resp.Index, nil
}

// Propose implements the Cluster service: the leader validates a forwarded
// command by decoding it (unknown versions and fields are refused here, at
// the edge, never in the log) and proposes it.
//
// Only the commands that agents forward are accepted: a node's own
// registration, leave and releases, events, and spec changes from a
// follower's admin API. Placement (assign, request-release) is the leader's
// own and never arrives from outside. With TLS, only members call it, a
// node proposes only for itself, and operator commands forwarded by a
// member carry that operator as their actor (checkProposer).
func (s *server) Propose(ctx context.Context, req *hmv1.ProposeRequest) (*hmv1.ProposeResponse, error) {
	cmd, err := checkProposal(req.Command)
	if err != nil {
		return nil, err
	}
	if err := checkProposer(ctx, cmd); err != nil {
		return nil, err
	}
	if c, ok := cmd.(*fsm.RegisterNode); ok && !s.a.isMember(c.Node) {
		return nil, status.Errorf(codes.FailedPrecondition, "node: %s is not a member of the Raft configuration; join it first", c.Node)
	}
	if s.a.raft.State() != raft.Leader {
		if forwarded(ctx) {
			return nil, grpcErr(s.a.notLeader())
		}
	}
	idx, err := s.a.proposeBytes(ctx, req.Command)
	if err != nil {
		return nil, grpcErr(err)
	}
	return &hmv1.ProposeResponse{Index: idx}, nil
}

func (s *server) Status(ctx context.Context, _ *hmv1.StatusRequest) (*hmv1.StatusResponse, error) {
	a := s.a
	leaderAddr, leaderID := a.raft.LeaderWithID()
	st := a.State()
	lc := int64(-1)
	if a.raft.State() == raft.Leader {
		lc = 0
	} else if t := a.raft.LastContact(); !t.IsZero() {
		lc = time.Since(t).Milliseconds()
	}
	members, err := s.members(st)
	if err != nil {
		return nil, grpcErr(err)
	}
	gen, valid, until := a.Lease()
	var left int64
	if valid {
		left = time.Until(until).Milliseconds()
	}
	var lostSince int64
	since, lost := a.QuorumLost()
	if lost {
		lostSince = since.UnixMilli()
	}
	var redisNode *hmv1.RedisNode
	if _, ok := st.Redis[a.cfg.NodeID]; ok {
		var h *fsm.RedisHistory
		for _, r := range st.Spec.Roles {
			if r.Type == spec.TypeRedisMaster {
				h = st.RedisHistoryOf(st.Assignment(r.Name))
			}
		}
		redisNode = redisNodeToProto(st, h, a.cfg.NodeID)
	}
	return &hmv1.StatusResponse{LeaseGen: gen, LeaseRemainingMs: left, Redis: redisNode,
		Node: a.cfg.NodeID, Leader: string(leaderID), LeaderAddress: string(leaderAddr),
		IsLeader: a.raft.State() == raft.Leader, Term: a.raft.CurrentTerm(), RaftState: a.raft.State().String(),
		CommitIndex: a.raft.CommitIndex(), AppliedIndex: a.raft.AppliedIndex(), LastContactMs: lc,
		SpecVersion: st.SpecVersion, Members: members, RaftAddress: a.raftAddr, ApiAddress: a.apiAddr,
		Voter: a.cfg.IsVoter(), Profile: a.cfg.Profile, Version: version.Get().Version, Ready: a.isReady(),
		NoQuorum: lost, NoQuorumSinceMs: lostSince, TimingWarning: a.timingWarn.current(),
	}, nil
}

// members merges the Raft configuration (the truth about membership) with
// registrations and this node's view of the leases.
func (s *server) members(st *fsm.State) ([]*hmv1.Member, error) {
	a := s.a
	f := a.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	_, leaderID := a.raft.LeaderWithID()
	view := a.leases.Grants().Snapshot(time.Now())
	held := map[string][]string{}
	for _, as := range st.Assignments {
		if as.Holder != "" {
			held[as.Holder] = append(held[as.Holder], as.Role)
		}
	}
	byID := map[string]*hmv1.Member{}
	for _, srv := range f.Configuration().Servers {
		byID[string(srv.ID)] = &hmv1.Member{Id: string(srv.ID), Address: string(srv.Address),
			Voter: srv.Suffrage == raft.Voter, InRaft: true, Leader: srv.ID == leaderID}
	}
	for id, n := range st.Nodes {
		m, ok := byID[id]
		if !ok {
			m = &hmv1.Member{Id: id, Address: n.RaftAddr}
			byID[id] = m
		}
		m.ApiAddress = n.APIAddr
		m.Witness = n.Witness
		m.Drained = n.Drained
		m.Services = n.Services
		m.Checks = checksToProto(st.Checks[id])
	}
	out := make([]*hmv1.Member, 0, len(byID))
	for id, m := range byID {
		_, m.Alive = view.Live(id)
		m.LeaseRemainingMs = -1
		if g, ok := view.Nodes[id]; ok {
			m.LeaseRemainingMs = max(g.Remaining.Milliseconds(), 0)
			m.LeaseGen = g.Gen
		}
		m.Roles = held[id]
		sort.Strings(m.Roles)
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

func (s *server) Members(ctx context.Context, _ *hmv1.MembersRequest) (*hmv1.MembersResponse, error) {
	ms, err := s.members(s.a.State())
	if err != nil {
		return nil, grpcErr(err)
	}
	return &hmv1.MembersResponse{Node: s.a.cfg.NodeID, IsLeader: s.a.raft.State() == raft.Leader, Members: ms}, nil
}

// actor is who an API request is recorded as: the verified identity it
// acts as ("operator:alice", "node:n2"), never what the request says. An
// insecure agent has no identities and records what the client gives.
func actor(ctx context.Context, given string) string {
	if c, ok := callerOf(ctx); ok {
		return c.effective.String()
	}
	if given != "" {
		return given
	}
	if p, ok := peer.FromContext(ctx); ok {
		return "api@" + p.Addr.String()
	}
	return "api"
}

func (s *server) record(ctx context.Context, e fsm.Event) {
	e.Time = time.Now().UnixMilli()
	if _, err := s.a.Propose(ctx, &fsm.RecordEvent{Event: e.Bounded()}); err != nil {
		s.a.log.Warn("record event", "kind", e.Kind, "err", err)
	}
}

func (s *server) Join(ctx context.Context, req *hmv1.JoinRequest) (*hmv1.JoinResponse, error) {
	if err := validateJoin(req); err != nil {
		return nil, err
	}
	// A node joins only itself; adding another needs an admin.
	if c, ok := callerOf(ctx); ok && c.effective.Kind == tlsid.Node && c.effective.Name != req.Id {
		return nil, status.Errorf(codes.PermissionDenied, "id: node %s may join only itself, not %s; an admin adds other nodes", c.effective.Name, req.Id)
	}
	var resp *hmv1.JoinResponse
	if done, err := s.onLeader(ctx, func(ctx context.Context, c hmv1.AdminClient) (err error) {
		resp, err = c.Join(ctx, req)
		return err
	}); done {
		return resp, err
	}
	r := s.a.raft
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, grpcErr(err)
	}
	for _, srv := range f.Configuration().Servers {
		sameID := srv.ID == raft.ServerID(req.Id)
		sameAddr := srv.Address == raft.ServerAddress(req.RaftAddress)
		if sameID && sameAddr && (srv.Suffrage == raft.Voter) == req.Voter {
			return &hmv1.JoinResponse{Already: true}, nil
		}
		if sameAddr && !sameID {
			return nil, status.Errorf(codes.FailedPrecondition, "raft_address: %s is already used by member %s; remove it first", req.RaftAddress, srv.ID)
		}
	}
	if err := s.a.probeMember(ctx, req.Id, req.RaftAddress); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "raft_address: %v; a node is added only once it answers there as itself (start its agent first)", err)
	}
	var fut raft.IndexFuture
	if req.Voter {
		fut = r.AddVoter(raft.ServerID(req.Id), raft.ServerAddress(req.RaftAddress), 0, 10*time.Second)
	} else {
		fut = r.AddNonvoter(raft.ServerID(req.Id), raft.ServerAddress(req.RaftAddress), 0, 10*time.Second)
	}
	if err := fut.Error(); err != nil {
		return nil, grpcErr(err)
	}
	kind := "voter"
	if !req.Voter {
		kind = "non-voter"
	}
	s.record(ctx, fsm.Event{Kind: fsm.EventMember, Node: req.Id, Actor: actor(ctx, ""), New: kind + " " + req.RaftAddress, Message: "joined"})
	s.a.log.Info("member added", "member", req.Id, "raft", req.RaftAddress, "voter", req.Voter)
	return &hmv1.JoinResponse{Index: fut.Index()}, nil
}

func (s *server) Remove(ctx context.Context, req *hmv1.RemoveRequest) (*hmv1.RemoveResponse, error) {
	if err := validateRemove(req); err != nil {
		return nil, err
	}
	var resp *hmv1.RemoveResponse
	if done, err := s.onLeader(ctx, func(ctx context.Context, c hmv1.AdminClient) (err error) {
		resp, err = c.Remove(ctx, req)
		return err
	}); done {
		return resp, err
	}
	r := s.a.raft
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, grpcErr(err)
	}
	inRaft := false
	for _, srv := range f.Configuration().Servers {
		if srv.ID == raft.ServerID(req.Id) {
			inRaft = true
		}
	}
	_, registered := s.a.State().Nodes[req.Id]
	if !inRaft && !registered {
		return nil, status.Errorf(codes.NotFound, "id: %s is not a member; `harbormaster members` lists them", req.Id)
	}
	// Take the node out of the Raft configuration first, so it cannot
	// register again in between; but a leader removing itself forgets the
	// registration first, because it can commit nothing once removed.
	act := actor(ctx, "")
	var idx uint64
	forget := func() error {
		if !registered {
			return nil
		}
		i, err := s.a.Propose(ctx, &fsm.RemoveNode{Node: req.Id, Actor: act, Time: time.Now().UnixMilli()})
		if err == nil {
			idx = max(idx, i)
		}
		return err
	}
	self := req.Id == s.a.cfg.NodeID
	if self {
		if err := forget(); err != nil {
			return nil, grpcErr(err)
		}
	}
	if inRaft {
		fut := r.RemoveServer(raft.ServerID(req.Id), 0, 10*time.Second)
		if err := fut.Error(); err != nil {
			return nil, grpcErr(err)
		}
		idx = max(idx, fut.Index())
	}
	if !self {
		if err := forget(); err != nil {
			return nil, grpcErr(err)
		}
	}
	s.a.log.Info("member removed", "member", req.Id, "actor", act)
	return &hmv1.RemoveResponse{Index: idx}, nil
}

func (s *server) TransferLeadership(ctx context.Context, req *hmv1.TransferLeadershipRequest) (*hmv1.TransferLeadershipResponse, error) {
	if err := validateTransferLeadership(req); err != nil {
		return nil, err
	}
	var resp *hmv1.TransferLeadershipResponse
	if done, err := s.onLeader(ctx, func(ctx context.Context, c hmv1.AdminClient) (err error) {
		resp, err = c.TransferLeadership(ctx, req)
		return err
	}); done {
		return resp, err
	}
	r := s.a.raft
	old := s.a.cfg.NodeID
	var addr raft.ServerAddress
	if req.Target != "" {
		if req.Target == old {
			return &hmv1.TransferLeadershipResponse{OldLeader: old, NewLeader: old}, nil
		}
		f := r.GetConfiguration()
		if err := f.Error(); err != nil {
			return nil, grpcErr(err)
		}
		for _, srv := range f.Configuration().Servers {
			if srv.ID == raft.ServerID(req.Target) {
				if srv.Suffrage != raft.Voter {
					return nil, status.Errorf(codes.FailedPrecondition, "target: %s is a non-voter and cannot lead", req.Target)
				}
				addr = srv.Address
			}
		}
		if addr == "" {
			return nil, status.Errorf(codes.InvalidArgument, "target: %s is not a member; `harbormaster members` lists them", req.Target)
		}
	}
	// Record the intent first: once the transfer starts, this node accepts
	// no more commands.
	s.record(ctx, fsm.Event{Kind: fsm.EventOperator, Node: old, Actor: actor(ctx, ""), Old: old, New: req.Target,
		Message: "leadership transfer requested"})
	var fut raft.Future
	if req.Target == "" {
		fut = r.LeadershipTransfer()
	} else {
		fut = r.LeadershipTransferToServer(raft.ServerID(req.Target), addr)
	}
	if err := fut.Error(); err != nil {
		return nil, status.Errorf(codes.Aborted, "leadership transfer: %v", err)
	}
	// Wait briefly for the new leader to be known.
	deadline := time.Now().Add(timeoutOf(ctx, 3*time.Second))
	var newID raft.ServerID
	for time.Now().Before(deadline) {
		if _, newID = r.LeaderWithID(); newID != "" && string(newID) != old {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &hmv1.TransferLeadershipResponse{OldLeader: old, NewLeader: string(newID)}, nil
}

func (s *server) GetSpec(ctx context.Context, _ *hmv1.GetSpecRequest) (*hmv1.GetSpecResponse, error) {
	st := s.a.State()
	return &hmv1.GetSpecResponse{Version: st.SpecVersion, Document: string(st.Spec.YAML()), Node: s.a.cfg.NodeID}, nil
}

// ApplySpec implements the admin service; a follower forwards it to the
// leader. The new spec is checked against the leader's state first
// (coordinator.CheckSpec): a role that
// requires a check no registered node defines, or a role held now that no
// node would qualify for, is refused with FailedPrecondition unless force
// is set. dry_run answers what would change, from the leader's state and
// lease view, and commits nothing.
func (s *server) ApplySpec(ctx context.Context, req *hmv1.ApplySpecRequest) (*hmv1.ApplySpecResponse, error) {
	sp, err := parseSpecRequest(req)
	if err != nil {
		return nil, err
	}
	// The checks and a dry run use the leader's state and its lease view
	// (only the leader may ask the voters for leases).
	var resp *hmv1.ApplySpecResponse
	if done, err := s.onLeader(ctx, func(ctx context.Context, c hmv1.AdminClient) (err error) {
		resp, err = c.ApplySpec(ctx, req)
		return err
	}); done {
		if err == nil && !req.DryRun {
			// Wait until this node has it too, so that a read right after
			// the write sees it.
			s.a.waitApplied(ctx, resp.Index)
		}
		return resp, err
	}
	st := s.a.State()
	var problems []string
	for _, p := range coordinator.CheckSpec(st, sp) {
		problems = append(problems, p.String())
	}
	if req.DryRun {
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		maj, err := s.a.Majority(mctx)
		cancel()
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "ask the voters for leases: %v", err)
		}
		resp := specPreview(coordinator.PreviewSpec(coordinator.Input{State: st, Live: maj.Live(),
			Now: time.Now().UnixMilli(), Actor: s.a.cfg.NodeID}, sp))
		resp.Version, resp.Node, resp.DryRun, resp.Problems = st.SpecVersion, s.a.cfg.NodeID, true, problems
		return resp, nil
	}
	if len(problems) > 0 && !req.Force {
		return nil, status.Errorf(codes.FailedPrecondition, "spec refused: %s; fix the spec, or --force (force: true) to apply anyway; --dry-run shows what would stop",
			strings.Join(problems, "; "))
	}
	// What stops, liveness aside (as CheckSpec): said in the reply.
	all := map[string]uint64{}
	for id := range st.Nodes {
		all[id] = 0
	}
	preview := specPreview(coordinator.PreviewSpec(coordinator.Input{State: st, Live: all}, sp))
	idx, err := s.a.Propose(ctx, &fsm.ApplySpec{Spec: sp, ExpectedVersion: req.ExpectedVersion,
		Actor: actor(ctx, req.Actor), Time: time.Now().UnixMilli()})
	if err != nil {
		return nil, grpcErr(err)
	}
	// The command is applied on the leader; wait until this node has it too
	// so that a read right after the write sees it.
	s.a.waitApplied(ctx, idx)
	return &hmv1.ApplySpecResponse{Version: specVersionAt(s.a.State(), idx, req.ExpectedVersion), Index: idx, Node: s.a.cfg.NodeID,
		Problems: problems, Stopping: preview.Stopping}, nil
}

// specVersionAt is the spec version the ApplySpec committed at index idx
// made, not the state's version now: a later apply by another writer may
// already be in the state (found by the chaos matrix's compare-and-set
// clients: a writer told the version of the next write). A compare-and-set
// made expected+1; otherwise the spec-applied event at idx says, and if
// that event was trimmed from the state, the state's version is the best
// left.
func specVersionAt(st *fsm.State, idx, expected uint64) uint64 {
	if expected != 0 {
		return expected + 1
	}
	for i := len(st.Events) - 1; i >= 0; i-- {
		e := st.Events[i]
		if e.Index == idx && e.Kind == fsm.EventSpecApplied {
			if v, err := strconv.ParseUint(e.New, 10, 64); err == nil {
				return v
			}
		}
		if e.Index < idx {
			break
		}
	}
	return st.SpecVersion
}

// specPreview renders a spec preview: its roles and those that stop.
func specPreview(cs []coordinator.RoleChange) *hmv1.ApplySpecResponse {
	resp := &hmv1.ApplySpecResponse{}
	for _, c := range cs {
		resp.Roles = append(resp.Roles, &hmv1.SpecRoleChange{Role: c.Role, Change: c.Change, Fields: c.Fields,
			HolderNow: c.HolderNow, HolderAfter: c.HolderAfter, Stops: c.Stops, Why: c.Why})
		if c.Stops {
			resp.Stopping = append(resp.Stopping, c.Role)
		}
	}
	return resp
}

// waitApplied waits until the local state has applied index (bounded by ctx).
func (a *Agent) waitApplied(ctx context.Context, index uint64) {
	for {
		st, changed := a.fsm.State()
		if st.Index >= index {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func (s *server) ListRoles(ctx context.Context, _ *hmv1.ListRolesRequest) (*hmv1.ListRolesResponse, error) {
	st := s.a.State()
	resp := &hmv1.ListRolesResponse{Node: s.a.cfg.NodeID, IsLeader: s.a.raft.State() == raft.Leader, SpecVersion: st.SpecVersion}
	seen := map[string]bool{}
	for _, r := range st.Spec.Roles {
		a := st.Assignment(r.Name)
		var cands []string
		for _, c := range r.Candidates {
			cands = append(cands, c.Node)
		}
		pr := &hmv1.Role{Name: r.Name, Type: string(r.Type), Holder: a.Holder, Epoch: a.Epoch,
			SinceUnixMs: a.Since, Releasing: a.Releasing, InSpec: true, Candidates: cands,
			Requires: r.Requires, Follow: r.Follow, Avoid: r.Avoid, Address: r.Address.String()}
		if r.Type == spec.TypeRedisMaster {
			redisRoleToProto(st, r, a, pr)
		}
		resp.Roles = append(resp.Roles, pr)
		seen[r.Name] = true
	}
	for name, a := range st.Assignments {
		if !seen[name] && a.Holder != "" {
			resp.Roles = append(resp.Roles, &hmv1.Role{Name: name, Holder: a.Holder, Epoch: a.Epoch,
				SinceUnixMs: a.Since, Releasing: a.Releasing})
		}
	}
	sort.Slice(resp.Roles, func(i, j int) bool { return resp.Roles[i].Name < resp.Roles[j].Name })
	return resp, nil
}

// redisRoleToProto adds a redis-master role's replication state to pr.
func redisRoleToProto(st *fsm.State, r spec.Role, a fsm.Assignment, pr *hmv1.Role) {
	h := st.RedisHistoryOf(a)
	if h != nil {
		pr.RedisHistory = &hmv1.RedisHistory{Node: h.Node, ReplId: h.ReplID, Offset: h.Offset, TimeUnixMs: h.Time}
	}
	pr.Unsynced, pr.UnsyncedSinceUnixMs = a.Unsynced, a.UnsyncedSince
	pr.UnsyncedPromotion, pr.MinSyncedReplicas = r.UnsyncedPromotion, int32(r.MinSyncedReplicas)
	if pr.UnsyncedPromotion == "" {
		pr.UnsyncedPromotion = "never"
	}
	for _, id := range st.NodeIDs() {
		if _, ok := st.Redis[id]; ok {
			pr.Redis = append(pr.Redis, redisNodeToProto(st, h, id))
		}
	}
}

// redisNodeToProto renders node id's last Redis report, and whether it
// holds history h.
func redisNodeToProto(st *fsm.State, h *fsm.RedisHistory, id string) *hmv1.RedisNode {
	rs := st.Redis[id]
	synced, behind := st.RedisSynced(h, id)
	out := &hmv1.RedisNode{Node: id, Role: rs.Role, Master: rs.Master, LinkUp: rs.LinkUp, Offset: rs.Offset, ReplId: rs.ReplID,
		ReplId2: rs.ReplID2, Error: rs.Error, ReportedUnixMs: rs.Time, Synced: synced, BehindBytes: behind, Warnings: rs.Warnings}
	for _, r := range rs.Replicas {
		out.Replicas = append(out.Replicas, &hmv1.RedisReplica{Node: r.Node, Addr: r.Addr, State: r.State, Offset: r.Offset,
			LagBytes: r.LagBytes, LagMs: r.LagMillis, InSync: r.InSync, SinceUnixMs: r.Since})
	}
	if s := rs.Settings; s != nil {
		out.Settings = &hmv1.RedisSettings{DisklessSync: s.DisklessSync, SyncDelayS: s.SyncDelay, BacklogBytes: s.BacklogSize,
			TimeoutS: s.Timeout, MinReplicas: s.MinReplicas, MaxLagS: s.MaxLag, Save: s.Save, Aof: s.AOF, ReplicaReadOnly: s.ReplicaReadOnly}
	}
	return out
}

// checksToProto renders a node's check results, sorted by name.
func checksToProto(m map[string]fsm.CheckResult) []*hmv1.Check {
	var out []*hmv1.Check
	for name, r := range m {
		state := "unknown"
		switch {
		case r.Known && r.Passing:
			state = "passing"
		case r.Known:
			state = "failing"
		}
		out = append(out, &hmv1.Check{Name: name, State: state, SinceUnixMs: r.Since, Error: r.Error, Output: r.Output})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Explain implements the admin service: a dry run of the placement of one
// role on this node's state, with the voters' current lease verdicts.
func (s *server) Explain(ctx context.Context, req *hmv1.ExplainRequest) (*hmv1.ExplainResponse, error) {
	if err := validateExplain(req); err != nil {
		return nil, err
	}
	st := s.a.State()
	if _, ok := st.Spec.Role(req.Role); !ok {
		return nil, status.Errorf(codes.NotFound, "role: %q is not in the spec (roles: %s); see `harbormaster roles`",
			req.Role, strings.Join(st.Spec.RoleNames(), ", "))
	}
	mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	maj, err := s.a.Majority(mctx)
	cancel()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "ask the voters for leases: %v", err)
	}
	ex, err := coordinator.Explain(coordinator.Input{State: st, Live: maj.Live(), Ended: maj.EndedFor,
		Now: time.Now().UnixMilli(), Actor: s.a.cfg.NodeID}, req.Role)
	if err != nil {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	resp := &hmv1.ExplainResponse{Node: s.a.cfg.NodeID, IsLeader: s.a.raft.State() == raft.Leader, Role: ex.Role.Name,
		Type: string(ex.Role.Type), Holder: ex.Assignment.Holder, Epoch: ex.Assignment.Epoch, Decision: ex.Decision, Chosen: ex.Chosen}
	for _, c := range ex.Nodes {
		resp.Nodes = append(resp.Nodes, &hmv1.Candidacy{Node: c.Node, Eligible: c.Eligible, Reasons: c.Reasons,
			Priority: int32(c.Priority), Candidate: c.Candidate, Rank: int32(c.Rank), Holder: c.Holder, HeldDown: c.HeldDown,
			AvoidedRolesHeld: c.AvoidedHeld, RolesHeld: int32(c.RolesHeld)})
	}
	return resp, nil
}

func eventToProto(e fsm.Event) *hmv1.Event {
	return &hmv1.Event{Seq: e.Seq, Index: e.Index, TimeUnixMs: e.Time, Kind: string(e.Kind), Node: e.Node, Actor: e.Actor,
		Role: e.Role, Old: e.Old, New: e.New, Epoch: e.Epoch, Message: e.Message}
}

func (s *server) WatchEvents(req *hmv1.WatchEventsRequest, stream hmv1.Admin_WatchEventsServer) error {
	last := req.Since
	for {
		st, changed := s.a.fsm.State()
		for _, e := range st.EventsSince(last) {
			if err := stream.Send(eventToProto(e)); err != nil {
				return err
			}
			last = e.Seq
		}
		if !req.Follow {
			return nil
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.a.stopped:
			return status.Error(codes.Unavailable, "the agent is shutting down")
		case <-changed:
		}
	}
}

// Move implements the admin service: an operator's planned move.
func (s *server) Move(ctx context.Context, req *hmv1.MoveRequest) (*hmv1.MoveResponse, error) {
	if err := validateMove(req); err != nil {
		return nil, err
	}
	if c, ok := callerOf(ctx); ok && req.AcceptDataLoss && !allowed(c.effective, permAdmin) {
		return nil, status.Errorf(codes.PermissionDenied, "accept_data_loss needs the admin role; %s has %s", c.effective, roleOf(c.effective))
	}
	var resp *hmv1.MoveResponse
	if done, err := s.onLeader(ctx, func(ctx context.Context, c hmv1.AdminClient) (err error) {
		resp, err = c.Move(ctx, req)
		return err
	}); done {
		return resp, err
	}
	st := s.a.State()
	r, ok := st.Spec.Role(req.Role)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "role: %s is not in the spec; `harbormaster roles` lists them", req.Role)
	}
	if why := moveBlocker(st, r, req.Node); why != "" {
		return nil, status.Errorf(codes.FailedPrecondition, "node: %s cannot hold %s: %s", req.Node, req.Role, why)
	}
	as := st.Assignment(req.Role)
	redisRole := r.Type == spec.TypeRedisMaster
	if h := st.RedisHistoryOf(as); redisRole && as.Holder != req.Node && !req.AcceptDataLoss {
		if synced, _ := st.RedisSynced(h, req.Node); !synced {
			return nil, status.Errorf(codes.FailedPrecondition,
				"node: %s's Redis has not synced with %s's (replication id %s): %s would lose what %s acknowledged since; "+
					"wait until it has synced (`harbormaster explain %s`), or add --accept-data-loss", req.Node, h.Node, fsm.ShortReplID(h.ReplID),
				req.Role, h.Node, req.Role)
		}
	}
	if req.AcceptDataLoss && !redisRole {
		return nil, status.Errorf(codes.InvalidArgument, "accept_data_loss: %s is a %s role; only redis-master roles lose data on a move", req.Role, r.Type)
	}
	switch {
	case as.Holder == req.Node:
		return &hmv1.MoveResponse{Already: true}, nil
	case as.Holder == "" && !req.AcceptDataLoss:
		return nil, status.Errorf(codes.FailedPrecondition, "role: %s has no holder to move it from; the coordinator places it", req.Role)
	}
	reason := "moved by an operator to " + req.Node
	if req.AcceptDataLoss {
		reason += ", accepting the loss of data its Redis lacks (--accept-data-loss)"
	}
	idx, err := s.a.Propose(ctx, &fsm.RequestRelease{Role: req.Role, Epoch: as.Epoch, Target: req.Node, AcceptDataLoss: req.AcceptDataLoss,
		Actor: actor(ctx, req.Actor), Time: time.Now().UnixMilli(), Reason: reason, Cause: fsm.CauseOperator})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &hmv1.MoveResponse{Index: idx}, nil
}

// moveBlocker says why node may not hold r, or "".
func moveBlocker(st *fsm.State, r spec.Role, node string) string {
	n, ok := st.Nodes[node]
	switch {
	case !ok:
		return "it is not a registered member"
	case n.Witness:
		return "it is a witness"
	case n.Drained:
		return "it is drained (undrain it first)"
	case n.Leaving:
		return "it is shutting down"
	case r.Type == spec.TypeVIP && !n.VIP:
		return "it has no vip_interface"
	}
	if _, ok := r.Candidate(node); !ok {
		return "it is not among the role's candidates"
	}
	return ""
}

// Drain implements the admin service.
func (s *server) Drain(ctx context.Context, req *hmv1.DrainRequest) (*hmv1.DrainResponse, error) {
	if err := validateDrain(req); err != nil {
		return nil, err
	}
	var resp *hmv1.DrainResponse
	if done, err := s.onLeader(ctx, func(ctx context.Context, c hmv1.AdminClient) (err error) {
		resp, err = c.Drain(ctx, req)
		return err
	}); done {
		return resp, err
	}
	if _, ok := s.a.State().Nodes[req.Node]; !ok {
		return nil, status.Errorf(codes.NotFound, "node: %s is not a registered member; `harbormaster members` lists them", req.Node)
	}
	idx, err := s.a.Propose(ctx, &fsm.SetDrain{Node: req.Node, Drained: req.Drained, Actor: actor(ctx, req.Actor), Time: time.Now().UnixMilli()})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &hmv1.DrainResponse{Index: idx}, nil
}
