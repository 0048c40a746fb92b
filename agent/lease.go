package agent

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/lease"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
	"github.com/harbormaster/harbormaster/spec"
)

// leaseMargin stretches every grant for clock-rate drift between nodes.
const leaseMargin = 0.1

type member struct {
	id      string
	voter   bool
	apiAddr string // empty when the member has not registered yet
}

// members returns the Raft configuration with the registered API addresses.
func (a *Agent) raftMembers() ([]member, error) {
	f := a.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	st := a.State()
	var out []member
	for _, s := range f.Configuration().Servers {
		m := member{id: string(s.ID), voter: s.Suffrage == raft.Voter}
		if n, ok := st.Nodes[m.id]; ok {
			m.apiAddr = n.APIAddr
		}
		out = append(out, m)
	}
	return out, nil
}

// renewLoop renews this node's quorum lease with every member each Renew
// interval (docs/design-quorum-lease.md). A majority of voters granting a
// renewal sent at t makes the lease valid until t + lease by this node's
// clock. Renewals go to every member, voters or not, so that every node can
// tell who is alive; only voters' grants count towards the majority.
func (a *Agent) renewLoop(ctx context.Context) {
	tick := time.NewTicker(a.timing.Renew)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a.lastRenew.Store(time.Now().UnixNano())
		if time.Now().UnixNano() < a.fenceUntil.Load() {
			a.roleTrigger() // fenced: let the lease lapse (services.go)
			continue
		}
		ms, err := a.raftMembers()
		if err != nil || len(ms) == 0 {
			continue
		}
		now := time.Now()
		gen := a.holder.Begin(now, uint64(time.Now().UnixNano()))
		granted, voters, refusals := a.renewOnce(ctx, ms, gen, now)
		q := lease.Quorum(voters)
		a.holder.Result(gen, now, granted, q, refusals)
		_, ok := a.holder.Valid(time.Now())
		switch {
		case !ok && !failing && ctx.Err() == nil:
			a.log.Warn("no quorum lease", "granted", granted, "voters", voters, "gen", gen)
			failing = true
		case ok && failing:
			a.log.Info("quorum lease held", "gen", gen)
			failing = false
		}
		a.roleTrigger()
	}
}

func (a *Agent) renewOnce(ctx context.Context, ms []member, gen uint64, sent time.Time) (granted, voters int, refusals []lease.Refusal) {
	ctx, cancel := context.WithTimeout(ctx, a.timing.Renew)
	defer cancel()
	answered := map[string]bool{a.cfg.NodeID: true}
	var answeredMu sync.Mutex
	type answer struct {
		voter bool
		v     lease.Verdict
		gen   uint64
		err   error
	}
	answers := make(chan answer, len(ms))
	defer func() { a.notePeers(ms, answered) }()
	var wg sync.WaitGroup
	ttl := a.timing.Lease
	for _, m := range ms {
		if m.voter {
			voters++
		}
		if m.id == a.cfg.NodeID {
			v, g := a.grants.Renew(a.cfg.NodeID, gen, ttl, sent)
			answers <- answer{voter: m.voter, v: v, gen: g}
			continue
		}
		if m.apiAddr == "" {
			continue
		}
		wg.Add(1)
		go func(m member) {
			defer wg.Done()
			r, err := a.leaseNet.renew(ctx, m, gen, ttl, a.timing.Renew/8)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			answeredMu.Lock()
			answered[m.id] = true
			answeredMu.Unlock()
			answers <- answer{voter: m.voter, v: r.Verdict, gen: r.Gen}
		}(m)
	}
	wg.Wait()
	close(answers)
	for ans := range answers {
		if ans.err != nil || !ans.voter {
			continue
		}
		if ans.v == lease.Granted {
			granted++
		} else {
			refusals = append(refusals, lease.Refusal{Verdict: ans.v, Gen: ans.gen})
		}
	}
	return granted, voters, refusals
}

// notePeers re-announces the VIPs this node holds when a member that did not
// answer the previous renewal answers again: a partition healed, and hosts
// on the other side may still have the old holder's MAC for the address
// (the announcements made during the partition did not reach them).
func (a *Agent) notePeers(ms []member, answered map[string]bool) {
	a.peersMu.Lock()
	back := false
	for _, m := range ms {
		if answered[m.id] && a.peersDown[m.id] {
			back = true
		}
	}
	a.peersDown = map[string]bool{}
	for _, m := range ms {
		if !answered[m.id] && m.apiAddr != "" {
			a.peersDown[m.id] = true
		}
	}
	a.peersMu.Unlock()
	if back && a.vips != nil {
		a.log.Info("a peer answers again; re-announcing held VIPs")
		a.vips.Reannounce()
	}
}

func verdictOf(s string) lease.Verdict {
	switch s {
	case lease.Granted.String():
		return lease.Granted
	case lease.Stale.String():
		return lease.Stale
	}
	return lease.Lapsed
}

// Majority implements coordinator.Leases: it asks every voter for its grant
// table (this node's own is read locally) and returns the answers that came
// back within one renew interval.
// Majority asks every voter for its grant table and returns the verdicts
// for the coordinator, in up to two rounds: the first, recording nothing,
// tells which assignments' holders are live on their generation; only if
// some are not, a second round asks the voters to judge exactly those
// (holder, generation) pairs, which they record (lease.Grants.Verdicts).
// The result's Ended answers only for the pairs judged, so no decision
// rests on an answer a voter did not commit to, and a voter that merely
// has not granted a live generation yet is not made to refuse it.
func (a *Agent) Majority(ctx context.Context) (lease.Majority, error) {
	m, answered, err := a.majorityRound(ctx, nil, nil)
	if err != nil {
		return m, err
	}
	live := m.Live()
	asked := map[lease.Query]bool{}
	var queries []lease.Query
	for _, as := range a.State().Assignments {
		if as.Holder == "" || as.HolderGen == 0 {
			continue
		}
		if gen, ok := live[as.Holder]; ok && gen == as.HolderGen {
			continue
		}
		q := lease.Query{Node: as.Holder, Gen: as.HolderGen}
		if !asked[q] {
			asked[q] = true
			queries = append(queries, q)
		}
	}
	if len(queries) == 0 {
		m.Asked = asked
		return m, nil
	}
	m, _, err = a.majorityRound(ctx, queries, answered)
	m.Asked = asked
	return m, err
}

// majorityRound asks the voters (all, or only those in only when it is not
// nil) for their grant tables, judging queries, and returns the views that
// came back within one renew interval and who answered.
func (a *Agent) majorityRound(ctx context.Context, queries []lease.Query, only map[string]bool) (lease.Majority, map[string]bool, error) {
	ms, err := a.raftMembers()
	if err != nil {
		return lease.Majority{}, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.timing.Renew)
	defer cancel()
	answered := map[string]bool{}
	var pb []*hmv1.LeaseQuery
	for _, q := range queries {
		pb = append(pb, &hmv1.LeaseQuery{Node: q.Node, Gen: q.Gen})
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out lease.Majority
	)
	for _, m := range ms {
		if !m.voter {
			continue
		}
		out.Voters++
		if m.id == a.cfg.NodeID {
			v := a.grants.Verdicts(time.Now(), queries...)
			mu.Lock()
			out.Views = append(out.Views, v)
			answered[m.id] = true
			mu.Unlock()
			continue
		}
		if m.apiAddr == "" || (only != nil && !only[m.id]) {
			continue // a voter that did not answer the first round is not waited for again
		}
		wg.Add(1)
		go func(m member) {
			defer wg.Done()
			c, err := a.conn(m.apiAddr)
			if err != nil {
				return
			}
			r, err := hmv1.NewClusterClient(c).Leases(ctx, &hmv1.LeasesRequest{Queries: pb})
			if err != nil {
				return
			}
			v := lease.View{Guarded: r.Guarded, SinceGuard: time.Duration(r.SinceGuardUs) * time.Microsecond,
				Nodes: make(map[string]lease.GrantView, len(r.Grants))}
			for _, g := range r.Grants {
				v.Nodes[g.Node] = lease.GrantView{Gen: g.Gen, Remaining: time.Duration(g.RemainingUs) * time.Microsecond,
					SupersededRemaining: time.Duration(g.SupersededRemainingUs) * time.Microsecond}
			}
			mu.Lock()
			out.Views = append(out.Views, v)
			answered[m.id] = true
			mu.Unlock()
		}(m)
	}
	wg.Wait()
	return out, answered, nil
}

// Renew implements the Cluster service: grant (or refuse) a member's lease.
func (s *server) Renew(ctx context.Context, req *hmv1.RenewRequest) (*hmv1.RenewResponse, error) {
	if !spec.ValidName(req.Node) {
		return nil, status.Errorf(codes.InvalidArgument, "node: %q is not a valid node id", req.Node)
	}
	if req.Gen == 0 || req.TtlMs <= 0 || req.TtlMs > 600_000 {
		return nil, status.Error(codes.InvalidArgument, "gen and ttl_ms must be positive (ttl_ms at most 600000)")
	}
	v, gen := s.a.grants.Renew(req.Node, req.Gen, time.Duration(req.TtlMs)*time.Millisecond, time.Now())
	return &hmv1.RenewResponse{Verdict: v.String(), Gen: gen, Granter: s.a.cfg.NodeID}, nil
}

// Leases implements the Cluster service.
func (s *server) Leases(ctx context.Context, req *hmv1.LeasesRequest) (*hmv1.LeasesResponse, error) {
	if len(req.Queries) > 4096 {
		return nil, status.Error(codes.InvalidArgument, "queries: at most 4096")
	}
	var qs []lease.Query
	for _, q := range req.Queries {
		if !spec.ValidName(q.Node) || q.Gen == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "queries: %q/%d is not a node id and a generation", q.Node, q.Gen)
		}
		qs = append(qs, lease.Query{Node: q.Node, Gen: q.Gen})
	}
	v := s.a.grants.Verdicts(time.Now(), qs...)
	resp := &hmv1.LeasesResponse{Granter: s.a.cfg.NodeID, Guarded: v.Guarded, SinceGuardUs: v.SinceGuard.Microseconds()}
	for _, id := range lease.SortedIDs(v) {
		g := v.Nodes[id]
		resp.Grants = append(resp.Grants, &hmv1.LeaseGrant{Node: id, Gen: g.Gen, RemainingUs: g.Remaining.Microseconds(),
			SupersededRemainingUs: g.SupersededRemaining.Microseconds()})
	}
	return resp, nil
}
