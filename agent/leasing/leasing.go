// Package leasing is a node's side of the quorum leases
// (docs/design-quorum-lease.md; the pure rules are in package lease): it
// renews this node's lease with every member over UDP, answers the others'
// renewals from its grant table, and asks the voters for their verdicts
// when the coordinator needs a majority's view.
package leasing

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/clock"
	"github.com/harbormaster/harbormaster/lease"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// Margin stretches every grant for clock-rate drift between nodes.
const Margin = 0.1

// Member is one member of the Raft configuration.
type Member struct {
	ID      string
	Voter   bool
	APIAddr string // empty when the member has not registered yet
}

// Config is what a Node needs.
type Config struct {
	// Self is this node's id.
	Self string
	// Lease and Renew are the lease length and the renew interval.
	Lease, Renew time.Duration
	// Members returns the Raft configuration with the registered API
	// addresses.
	Members func() ([]Member, error)
	// State returns the replicated state (the assignments the coordinator
	// asks about).
	State func() *fsm.State
	// Conn returns a client connection to a member's API (the Leases RPC).
	Conn func(addr string) (*grpc.ClientConn, error)
	// Redial, when set, drops the client connection c to addr, so that
	// the next Conn dials a new one. It is called when a voter's Leases
	// answers have failed for a lease: a TCP connection whose peer went
	// away without a reset (a crash, a cut link) stays open to gRPC while
	// the kernel retransmits into it with a doubling timeout, and a voter
	// back up was not asked again on a working connection for seconds.
	Redial func(addr string, c *grpc.ClientConn)
	// Fenced reports whether the node has fenced itself: it then lets its
	// lease lapse (no renewals).
	Fenced func() bool
	// Clock times the renew loop's sign of life (SinceRenew) on its
	// monotonic clock (clock.System() when nil).
	Clock clock.Clock
	// OnRenew is called after every renewal round, and every round skipped
	// while fenced (the lease may have changed).
	OnRenew func()
	// OnRTT, when set, is called after a renewal round a majority of
	// voters granted, with the round trip from sending the renewal to the
	// grant that made the majority.
	OnRTT func(time.Duration)
	// OnAge, when set, is called after a renewal round a majority of
	// voters granted, with the renewal's age: from the send of the
	// previous round a majority granted to the grant that made this
	// round's majority (the lease lapses when it passes the lease; see
	// SlowWatch). Not after a round in which no other member answered
	// (this node was cut off): the next age would measure the outage.
	OnAge func(time.Duration)
	// OnLapse, when set, is called when this node's lease, valid after an
	// earlier round, is found ended after a round (not renewed in time);
	// not while fenced (the node lets it lapse on purpose).
	OnLapse func()
	// OnPeerBack is called when a member that did not answer the previous
	// round answers again (a partition healed).
	OnPeerBack func()
	// Filter, when set, drops lease datagrams from one node to another when
	// it returns true (tests use it to cut links).
	Filter func(from, to string) bool
	// Boot is this node's boot counter, persisted across restarts and
	// increased at each (at most MaxBoot): the high bits of its lease
	// sequence numbers, so that they keep increasing across restarts and
	// the other nodes' replay windows accept them.
	Boot uint64
	// NextBoot, when set, persists and returns the next boot counter; it
	// is called when a boot's sequence numbers run out.
	NextBoot func() (uint64, error)
	Log      *slog.Logger
}

// Node is this node's quorum lease and its grant table. Build it with New;
// run Serve and RenewLoop.
type Node struct {
	cfg       Config
	grants    *lease.Grants
	holder    *lease.Holder
	net       *leaseNet
	peers     peerWatch
	views     viewErrors
	clock     clock.Clock
	lastRenew atomic.Int64 // clock.Mono (ns) of the renew loop's last pass
	lastOK    time.Time    // send time of the last round a majority granted (renew loop only)

	recentMu sync.Mutex
	recent   *recentRound // Majority's last first round (Recent)
}

// recentRound is the other voters' views from Majority's last first round
// (no queries), the voters it asked, and when it began.
type recentRound struct {
	sent   time.Time
	voters []string // sorted
	views  []lease.View
}

// New returns a node answering renewals on conn from now on. A restarted
// node may have granted leases it no longer remembers: its table says "not
// ended" to everything for one stretched lease.
func New(cfg Config, conn net.PacketConn) *Node {
	grants := lease.NewGrants(time.Now(), Margin, cfg.Lease+time.Duration(float64(cfg.Lease)*Margin))
	clk := cfg.Clock
	if clk == nil {
		clk = clock.System()
	}
	return &Node{cfg: cfg, grants: grants, clock: clk, holder: lease.NewHolder(cfg.Lease), net: newLeaseNet(conn, cfg, grants),
		views: viewErrors{log: cfg.Log, count: map[string]uint64{}, failing: map[string]bool{}, since: map[string]time.Time{},
			redialed: map[string]time.Time{}}}
}

// Drops returns how many lease datagrams this node dropped, by reason
// (Drop*): forged, replayed, from non-members, out of bounds.
func (n *Node) Drops() map[string]uint64 { return n.net.dropCounts() }

// Datagrams returns how many lease datagrams this node sent and received
// (requests and replies, including the ones it then dropped), since it
// started: the cost of the lease protocol on the wire.
func (n *Node) Datagrams() (sent, received uint64) { return n.net.sent.Load(), n.net.received.Load() }

// ViewErrors returns, per voter, how many of its Leases answers failed
// (the voter then counts against every verdict of that round).
func (n *Node) ViewErrors() map[string]uint64 { return n.views.counts() }

// Grants is the table of the leases this node granted.
func (n *Node) Grants() *lease.Grants { return n.grants }

// Lease returns this node's quorum lease: its generation, whether it is
// valid at now, and its end by this node's clock.
func (n *Node) Lease(now time.Time) (gen uint64, valid bool, until time.Time) {
	gen, until = n.holder.Current()
	_, valid = n.holder.Valid(now)
	return gen, valid, until
}

// SinceRenew is how long ago, on the monotonic clock, the renew loop last
// made a pass (the watchdog's sign of life; since New before the first).
func (n *Node) SinceRenew() time.Duration {
	return n.clock.Mono() - time.Duration(n.lastRenew.Load())
}

// markRenew records a pass of the renew loop.
func (n *Node) markRenew() { n.lastRenew.Store(int64(n.clock.Mono())) }

// Serve answers renewals until Close.
func (n *Node) Serve() error { return n.net.serve() }

// Close closes the lease socket; Serve returns.
func (n *Node) Close() { n.net.close() }

// renewLoop renews this node's quorum lease with every member each Renew
// interval (docs/design-quorum-lease.md). A majority of voters granting a
// renewal sent at t makes the lease valid until t + lease by this node's
// clock. Renewals go to every member, voters or not, so that every node can
// tell who is alive; only voters' grants count towards the majority.
//
// Until the leader has committed the cluster lease key, the node neither
// renews nor grants (datagrams are authenticated with the key): it holds
// no lease, so it acts for no role.
func (n *Node) RenewLoop(ctx context.Context) {
	tick := time.NewTicker(n.cfg.Renew)
	defer tick.Stop()
	failing, keyless, held := false, false, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n.markRenew()
		if n.cfg.Fenced() {
			held = false
			n.cfg.OnRenew() // fenced: let the lease lapse
			continue
		}
		ms, err := n.cfg.Members()
		if err != nil || len(ms) == 0 {
			continue
		}
		now := time.Now()
		n.grants.Retain(func(id string) bool { return isMember(ms, id) }, now)
		n.net.retain(ms)
		if n.cfg.State().LeaseKey == nil {
			if !keyless {
				n.cfg.Log.Info("no lease key committed yet; not renewing or granting leases until the leader installs one")
				keyless = true
			}
			n.cfg.OnRenew()
			continue
		}
		if keyless {
			n.cfg.Log.Info("lease key committed; renewing")
			keyless = false
		}
		gen, granted, voters := n.round(ctx, ms, now)
		_, ok := n.holder.Valid(time.Now())
		if !ok && held && ctx.Err() == nil && n.cfg.OnLapse != nil {
			n.cfg.OnLapse()
		}
		held = ok
		switch {
		case !ok && !failing && ctx.Err() == nil:
			n.cfg.Log.Warn("no quorum lease", "granted", granted, "voters", voters, "gen", gen)
			failing = true
		case ok && failing:
			n.cfg.Log.Info("quorum lease held", "gen", gen)
			failing = false
		}
		n.cfg.OnRenew()
	}
}

// round renews this node's lease with the members ms once, at the
// generation Holder.Begin gives for now, and records the result. A
// majority's grants extend the lease as soon as they have arrived, before
// the members that do not answer have timed out: a member cut off (the
// partition this lease exists for) would otherwise hold every round for
// the whole renew interval, a quarter of the fast profile's lease, and a
// holder delayed by busy cores for that much less would lapse.
func (n *Node) round(ctx context.Context, ms []Member, now time.Time) (gen uint64, granted, voters int) {
	gen = n.holder.Begin(now, uint64(now.UnixNano()))
	q := lease.Quorum(countVoters(ms))
	early := func(granted int) {
		n.holder.Result(gen, now, granted, q, nil)
		n.cfg.OnRenew()
	}
	granted, voters, refusals, grantTimes, others := n.renewOnce(ctx, ms, gen, now, early)
	n.holder.Result(gen, now, granted, q, refusals)
	switch {
	case granted >= q && q > 0:
		slices.SortFunc(grantTimes, time.Time.Compare)
		if n.cfg.OnRTT != nil {
			n.cfg.OnRTT(grantTimes[q-1].Sub(now))
		}
		if !n.lastOK.IsZero() && n.cfg.OnAge != nil {
			n.cfg.OnAge(grantTimes[q-1].Sub(n.lastOK))
		}
		n.lastOK = now
	case others == 0:
		n.lastOK = time.Time{}
	}
	return gen, granted, voters
}

// countVoters is how many of ms are voters.
func countVoters(ms []Member) int {
	v := 0
	for _, m := range ms {
		if m.Voter {
			v++
		}
	}
	return v
}

// renewOnce sends the renewal of gen to every member and collects the
// answers until all have come or the round's time (one renew interval) is
// up. grantTimes are when each voter's grant arrived (the node's own:
// sent); others is how many other members answered. onMajority is called once, from this goroutine, with the grants
// so far when they first reach a majority of the voters.
func (n *Node) renewOnce(ctx context.Context, ms []Member, gen uint64, sent time.Time, onMajority func(granted int)) (granted, voters int, refusals []lease.Refusal, grantTimes []time.Time, others int) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Renew)
	defer cancel()
	answered := map[string]bool{n.cfg.Self: true}
	var answeredMu sync.Mutex
	type answer struct {
		voter bool
		v     lease.Verdict
		gen   uint64
		err   error
		at    time.Time
		self  bool
	}
	answers := make(chan answer, len(ms))
	defer func() { n.notePeers(ms, answered) }()
	var wg sync.WaitGroup
	defer wg.Wait()
	ttl := n.cfg.Lease
	asked := 0
	for _, m := range ms {
		if m.Voter {
			voters++
		}
		if m.ID == n.cfg.Self {
			v, g, err := n.grants.Renew(n.cfg.Self, gen, ttl, sent)
			answers <- answer{voter: m.Voter, v: v, gen: g, err: err, at: sent, self: true}
			asked++
			continue
		}
		if m.APIAddr == "" {
			continue
		}
		asked++
		wg.Add(1)
		go func(m Member) {
			defer wg.Done()
			r, err := n.net.renew(ctx, m, gen, ttl, n.cfg.Renew/8)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			answeredMu.Lock()
			answered[m.ID] = true
			answeredMu.Unlock()
			answers <- answer{voter: m.Voter, v: r.Verdict, gen: r.Gen, at: time.Now()}
		}(m)
	}
	q, reported := lease.Quorum(voters), false
	for range asked {
		ans := <-answers // every asked member answers once, by ctx's end at the latest
		if ans.err == nil && !ans.self {
			others++
		}
		if ans.err != nil || !ans.voter {
			continue
		}
		if ans.v == lease.Granted {
			granted++
			grantTimes = append(grantTimes, ans.at)
		} else {
			refusals = append(refusals, lease.Refusal{Verdict: ans.v, Gen: ans.gen})
		}
		if !reported && q > 0 && granted >= q && onMajority != nil {
			reported = true
			onMajority(granted)
		}
	}
	return granted, voters, refusals, grantTimes, others
}

// notePeers tells OnPeerBack when a member that did not answer the previous
// renewal answers again: a partition healed, and hosts
// on the other side may still have the old holder's MAC for the address
// (the announcements made during the partition did not reach them).
func (n *Node) notePeers(ms []Member, answered map[string]bool) {
	if n.peers.note(ms, answered) && n.cfg.OnPeerBack != nil {
		n.cfg.OnPeerBack()
	}
}

// Majority implements coordinator.Leases: it asks every voter for its grant table and returns the verdicts
// for the coordinator, in up to two rounds: the first, recording nothing,
// tells which assignments' holders are live on their generation; only if
// some are not, a second round asks the voters to judge exactly those
// (holder, generation) pairs, which they record (lease.Grants.Verdicts).
// The result's Ended answers only for the pairs judged, so no decision
// rests on an answer a voter did not commit to, and a voter that merely
// has not granted a live generation yet is not made to refuse it.
func (n *Node) Majority(ctx context.Context) (lease.Majority, error) {
	sent := time.Now()
	m, answered, err := n.majorityRound(ctx, nil, nil)
	if err != nil {
		return m, err
	}
	n.keepRecent(sent, m)
	live := m.Live()
	asked := map[lease.Query]bool{}
	var queries []lease.Query
	ms, err := n.cfg.Members()
	if err != nil {
		return m, err
	}
	for _, as := range n.cfg.State().Assignments {
		if as.Holder == "" || as.HolderGen == 0 {
			continue
		}
		if !isMember(ms, as.Holder) {
			// A holder that left the configuration: the voters hold no
			// grant of it once its last one ended (lease.Grants.Retain)
			// and record nothing for it; its pair is judged unasked.
			asked[lease.Query{Node: as.Holder, Gen: as.HolderGen}] = true
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
	m, _, err = n.majorityRound(ctx, queries, answered)
	m.Asked = asked
	return m, err
}

// keepRecent remembers the other voters' views of a first round that began
// at sent (Recent).
func (n *Node) keepRecent(sent time.Time, m lease.Majority) {
	ms, err := n.cfg.Members()
	if err != nil {
		return
	}
	r := &recentRound{sent: sent, voters: voterIDs(ms)}
	for _, v := range m.Views {
		if !v.Own {
			r.views = append(r.views, v)
		}
	}
	n.recentMu.Lock()
	n.recent = r
	n.recentMu.Unlock()
}

// Recent returns what the voters answered Majority's last round, aged to
// now as if none had granted anything since (lease.View.Aged, by the time
// since the round began, so no grant shows longer to run than it has),
// with this node's own view read now, and the round's age. ok is false
// before any round and when the voters changed since. The coordinator uses
// it to find that nothing needs doing without asking the voters again; it
// never judges a lease ended from it (coordinator.RecentLeases).
func (n *Node) Recent(now time.Time) (m lease.Majority, own lease.View, age time.Duration, ok bool) {
	n.recentMu.Lock()
	r := n.recent
	n.recentMu.Unlock()
	if r == nil {
		return m, own, 0, false
	}
	ms, err := n.cfg.Members()
	if err != nil || !slices.Equal(voterIDs(ms), r.voters) {
		return m, own, 0, false
	}
	age = now.Sub(r.sent)
	if age < 0 {
		return m, own, 0, false
	}
	m.Voters = len(r.voters)
	for _, v := range r.views {
		m.Views = append(m.Views, v.Aged(age))
	}
	if slices.Contains(r.voters, n.cfg.Self) {
		own = n.grants.Snapshot(now)
		own.Own = true
		m.Views = append(m.Views, own)
	}
	return m, own, age, true
}

// transportFailure reports whether a call failed for want of an answer
// (no connection, or none within its time), not because the voter refused.
func transportFailure(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// voterIDs returns the ids of the voters among ms, sorted.
func voterIDs(ms []Member) []string {
	var ids []string
	for _, m := range ms {
		if m.Voter {
			ids = append(ids, m.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// majorityRound asks the voters (all, or only those in only when it is not
// nil) for their grant tables, judging queries, and returns the views that
// came back and who answered. It waits up to one renew interval for every
// voter whose last answer did not fail and that answered this node's last
// renewal, and not for the others: a dead voter's timeout set the pace of
// every round (each took the whole renew interval, so a holder's lease end
// was judged on answers up to an interval old and noticed up to two
// intervals late). A voter not waited for is still asked, until the
// interval's end, in the background; an answer that comes back after the
// round returned only marks it answering again, so the next round waits
// for it. A missing view counts against every verdict (lease.Majority), so
// returning without it decides nothing it would not.
func (n *Node) majorityRound(ctx context.Context, queries []lease.Query, only map[string]bool) (lease.Majority, map[string]bool, error) {
	ms, err := n.cfg.Members()
	if err != nil {
		return lease.Majority{}, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Renew)
	var pb []*hmv1.LeaseQuery
	for _, q := range queries {
		pb = append(pb, &hmv1.LeaseQuery{Node: q.Node, Gen: q.Gen})
	}
	var (
		mu       sync.Mutex
		all      sync.WaitGroup // every call
		waited   sync.WaitGroup // the calls the round waits for
		out      lease.Majority
		answered = map[string]bool{}
		returned bool // the round returned: later answers are not added
	)
	for _, m := range ms {
		if !m.Voter {
			continue
		}
		out.Voters++
		if m.ID == n.cfg.Self {
			v := n.grants.Verdicts(time.Now(), queries...)
			v.Own = true
			mu.Lock()
			out.Views = append(out.Views, v)
			answered[m.ID] = true
			mu.Unlock()
			continue
		}
		if only != nil && !only[m.ID] {
			continue // a voter that did not answer the first round is not waited for again
		}
		if m.APIAddr == "" {
			n.views.failed(m.ID, errors.New("the voter has not registered its API address"))
			continue
		}
		// Not waited for: a voter whose last answer here failed, or that did
		// not answer this node's last renewal (a leader elected after its
		// predecessor crashed has asked that node nothing yet).
		waitFor := !n.views.isFailing(m.ID) && !n.peers.isDown(m.ID)
		if waitFor {
			waited.Add(1)
		}
		all.Add(1)
		go func(m Member) {
			defer all.Done()
			if waitFor {
				defer waited.Done()
			}
			c, err := n.cfg.Conn(m.APIAddr)
			if err != nil {
				n.views.failed(m.ID, err)
				return
			}
			r, err := hmv1.NewClusterClient(c).Leases(ctx, &hmv1.LeasesRequest{Queries: pb})
			if err != nil {
				n.views.failed(m.ID, err)
				if !transportFailure(err) {
					return // an answer (a refusal): a new connection would get the same
				}
				if due, first := n.views.redialDue(m.ID, time.Now(), n.cfg.Lease); due && n.cfg.Redial != nil {
					if first {
						n.cfg.Log.Info("a voter's lease view has failed for a lease; dialing it again (every lease until it answers)",
							"voter", m.ID, "err", err)
					}
					n.cfg.Redial(m.APIAddr, c)
				}
				return
			}
			n.views.ok(m.ID)
			v := lease.View{Guarded: r.Guarded, SinceGuard: time.Duration(r.SinceGuardUs) * time.Microsecond,
				Nodes: make(map[string]lease.GrantView, len(r.Grants))}
			for _, g := range r.Grants {
				v.Nodes[g.Node] = lease.GrantView{Gen: g.Gen, Remaining: time.Duration(g.RemainingUs) * time.Microsecond,
					SupersededRemaining: time.Duration(g.SupersededRemainingUs) * time.Microsecond}
			}
			mu.Lock()
			if !returned {
				out.Views = append(out.Views, v)
				answered[m.ID] = true
			}
			mu.Unlock()
		}(m)
	}
	go func() { all.Wait(); cancel() }() // the calls not waited for keep their interval
	waited.Wait()                        // each ends by the interval's end, its failure recorded
	mu.Lock()
	defer mu.Unlock()
	returned = true
	out.Views = slices.Clone(out.Views)
	return out, maps.Clone(answered), nil
}

// viewErrors counts the voters' failed Leases answers and logs when a
// voter starts and stops failing (not every failure: a voter down fails
// every round).
type viewErrors struct {
	log      *slog.Logger
	mu       sync.Mutex
	count    map[string]uint64
	failing  map[string]bool
	since    map[string]time.Time // first failure of the current run of failures
	redialed map[string]time.Time // last Redial
}

func (v *viewErrors) failed(voter string, err error) {
	v.mu.Lock()
	v.count[voter]++
	first := !v.failing[voter]
	v.failing[voter] = true
	if first {
		v.since[voter] = time.Now()
	}
	v.mu.Unlock()
	if first {
		v.log.Warn("a voter's lease view failed; it counts against every verdict until it answers",
			"voter", voter, "err", err)
	}
}

// redialDue reports whether a voter's answers have failed for at least
// every (one lease) and it was not redialed within every; if so it
// records a redial at now. first: the first redial of this run of
// failures.
func (v *viewErrors) redialDue(voter string, now time.Time, every time.Duration) (due, first bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	since, last := v.since[voter], v.redialed[voter]
	if !v.failing[voter] || now.Sub(since) < every || now.Sub(last) < every {
		return false, false
	}
	v.redialed[voter] = now
	return true, last.Before(since)
}

// isFailing reports whether the voter's last answer failed.
func (v *viewErrors) isFailing(voter string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.failing[voter]
}

func (v *viewErrors) ok(voter string) {
	v.mu.Lock()
	back := v.failing[voter]
	delete(v.failing, voter)
	delete(v.since, voter)
	v.mu.Unlock()
	if back {
		v.log.Info("a voter's lease view answers again", "voter", voter)
	}
}

func (v *viewErrors) counts() map[string]uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return maps.Clone(v.count)
}

// peerWatch remembers which members did not answer the last renewal.
type peerWatch struct {
	mu   sync.Mutex
	down map[string]bool
}

// note records who answered this renewal round and reports whether a member
// that did not answer the previous one answers again.
func (p *peerWatch) note(ms []Member, answered map[string]bool) (back bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range ms {
		if answered[m.ID] && p.down[m.ID] {
			back = true
		}
	}
	p.down = map[string]bool{}
	for _, m := range ms {
		if !answered[m.ID] && m.APIAddr != "" {
			p.down[m.ID] = true
		}
	}
	return back
}

// isDown reports whether the member did not answer the last renewal.
func (p *peerWatch) isDown(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down[id]
}
