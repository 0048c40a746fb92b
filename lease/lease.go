// Package lease implements quorum leases (docs/design-quorum-lease.md): the
// grant table every node keeps of the leases it granted, the holder's side
// that counts a majority of grants, and the majority verdict the leader needs
// before it moves a role. It is pure: every time is passed in, and times
// must carry a monotonic reading (time.Now) so that wall-clock steps do not
// matter.
package lease

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// Bounds of a renewal, checked before it touches a grant table.
const (
	// MaxTTL is the longest lease any table grants, whatever the holder
	// registered: a forged or buggy renewal cannot keep a dead node's
	// roles for longer.
	MaxTTL = 10 * time.Minute
	// MaxGenAhead is how far ahead of the receiver's wall clock a
	// generation may be. Generations start at the holder's wall clock in
	// nanoseconds (Holder.Begin) and grow by one per new generation, so a
	// generation further ahead is a forgery or a clock set wrong by more
	// than this; accepting it would leave the holder unable to go above it.
	MaxGenAhead = time.Hour
)

// Errors of Grants.Renew: the renewal was not considered.
var (
	ErrImplausibleGen = errors.New("generation implausible")
	ErrTTL            = errors.New("lease length out of bounds")
)

// PlausibleGen reports whether gen may be a generation at now: not 0 and
// not more than MaxGenAhead ahead of now's wall clock.
func PlausibleGen(gen uint64, now time.Time) bool {
	wall := now.UnixNano()
	if wall < 0 {
		wall = 0
	}
	return gen != 0 && gen <= uint64(wall)+uint64(MaxGenAhead)
}

// Verdict is a grant table's answer to a renewal.
type Verdict int

// Verdicts.
const (
	// Granted: the lease runs until the receive time plus TTL plus margin.
	Granted Verdict = iota
	// Lapsed: the generation's grant had already ended and a verdict view
	// showed it ended; such a grant is never extended across the gap. The
	// holder must start a new generation.
	Lapsed
	// Stale: a newer generation of this node is known; the holder must
	// start one above it.
	Stale
)

func (v Verdict) String() string {
	switch v {
	case Granted:
		return "granted"
	case Lapsed:
		return "lapsed"
	case Stale:
		return "stale"
	}
	return "unknown"
}

type grant struct {
	gen uint64
	end time.Time
	// reported is set once a verdict view (Verdicts) showed this
	// generation's grant ended: from then on it is never extended again
	// (a coordinator may have counted it towards "ended").
	reported bool
	// supersededEnd is the latest end of any grant of an older generation.
	supersededEnd time.Time
}

// Grants is the table of leases one node granted to the others (and to
// itself). Safe for concurrent use.
type Grants struct {
	mu      sync.Mutex
	margin  float64
	started time.Time
	guard   time.Duration
	nodes   map[string]*grant
}

// NewGrants returns an empty table. margin (e.g. 0.1) stretches every grant
// to cover clock-rate drift between holder and granter. guard is how long
// after started the table answers "not ended" for everything, because a
// restarted node may have granted leases it no longer remembers: the longest
// lease times (1 + margin).
func NewGrants(started time.Time, margin float64, guard time.Duration) *Grants {
	return &Grants{margin: margin, started: started, guard: guard, nodes: map[string]*grant{}}
}

// Renew handles a renewal of node's lease at generation gen with length
// ttl, received at now. It returns the verdict and the generation the table
// holds for the node afterwards, or an error without touching the table
// for an implausible generation (PlausibleGen) or a ttl outside
// (0, MaxTTL]. The caller checks first that node is a member and that ttl
// is not above the lease the node registered.
func (g *Grants) Renew(node string, gen uint64, ttl time.Duration, now time.Time) (Verdict, uint64, error) {
	if !PlausibleGen(gen, now) {
		return 0, 0, fmt.Errorf("renewal of %s: %w: %d is more than %s ahead of this node's clock", node, ErrImplausibleGen, gen, MaxGenAhead)
	}
	if ttl <= 0 || ttl > MaxTTL {
		return 0, 0, fmt.Errorf("renewal of %s: %w: %s not in (0, %s]", node, ErrTTL, ttl, MaxTTL)
	}
	v, held := g.renew(node, gen, ttl, now)
	return v, held, nil
}

// renew is Renew without the bounds.
func (g *Grants) renew(node string, gen uint64, ttl time.Duration, now time.Time) (Verdict, uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	end := now.Add(ttl + time.Duration(float64(ttl)*g.margin))
	cur, ok := g.nodes[node]
	switch {
	case !ok:
		g.nodes[node] = &grant{gen: gen, end: end}
		return Granted, gen
	case gen > cur.gen:
		if cur.end.After(cur.supersededEnd) {
			cur.supersededEnd = cur.end
		}
		cur.gen, cur.end, cur.reported = gen, end, false
		return Granted, gen
	case gen < cur.gen:
		return Stale, cur.gen
	case !now.Before(cur.end) && cur.reported:
		// A verdict may rest on this grant having ended: never extend
		// it across the gap; the holder must start a new generation.
		return Lapsed, cur.gen
	case !now.Before(cur.end):
		// The grant ran out (this node was cut off from the holder) but
		// no verdict saw it ended: extending it cannot contradict any
		// decision, and keeps a healed voter granting the holder's
		// generation instead of leaving it one failure from losing its
		// majority.
		cur.end = end
		return Granted, gen
	default:
		if end.After(cur.end) {
			cur.end = end
		}
		return Granted, gen
	}
}

// Ended reports whether every lease this table granted to node at
// generation gen has ended at now. Ended answers are stable: once true for
// (node, gen) they stay true, because a generation is never renewed across
// a gap and older generations are never granted again.
func (g *Grants) Ended(node string, gen uint64, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.verdicts(now, []Query{{node, gen}}).Ended(node, gen)
}

// Query is a (node, generation) pair a coordinator is about to judge.
type Query struct {
	Node string
	Gen  uint64
}

// Verdicts is Snapshot for decisions: a view handed to a coordinator that
// is about to judge the queried (node, generation) pairs (the Leases RPC,
// the leader's own Majority). For every queried generation the view shows
// ended, the table records that it reported it: a current grant that ran
// out is marked and never extended again, and a generation it holds no
// grant of (a node it never granted, or a generation newer than the one it
// holds) is recorded as over, so a late renewal of it is refused too.
// Pairs not queried are not recorded: a voter that merely has not granted
// a live generation yet keeps granting it. Use Snapshot for display.
func (g *Grants) Verdicts(now time.Time, queries ...Query) View {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.verdicts(now, queries)
}

func (g *Grants) verdicts(now time.Time, queries []Query) View {
	v := g.view(now)
	if v.Guarded {
		return v // answers "not ended" to everything: nothing to record
	}
	for _, q := range queries {
		if !PlausibleGen(q.Gen, now) {
			continue // never recorded: a table holding it would refuse every real generation as stale
		}
		cur, ok := g.nodes[q.Node]
		switch {
		case !ok:
			g.nodes[q.Node] = &grant{gen: q.Gen, reported: true}
		case q.Gen > cur.gen:
			if cur.end.After(cur.supersededEnd) {
				cur.supersededEnd = cur.end
			}
			cur.gen, cur.end, cur.reported = q.Gen, time.Time{}, true
		case q.Gen == cur.gen && !now.Before(cur.end):
			cur.reported = true
		}
	}
	return v
}

// Retain forgets the nodes member reports false for once every grant the
// table made them (current and superseded) has ended at now, so that the
// table holds members only and a node that left cannot grow it. A grant
// still running is kept: a coordinator must not see it ended before it is.
func (g *Grants) Retain(member func(node string) bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, gr := range g.nodes {
		if !member(id) && !now.Before(gr.end) && !now.Before(gr.supersededEnd) {
			delete(g.nodes, id)
		}
	}
}

// Len is the number of nodes in the table.
func (g *Grants) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.nodes)
}

// Guarded reports whether the table is still in its restart guard at now.
func (g *Grants) Guarded(now time.Time) bool {
	return now.Before(g.started.Add(g.guard))
}

// View is a snapshot of a grant table at one instant, as one node reports
// it to the leader.
type View struct {
	// Guarded: the table was restarted less than a lease ago and answers
	// "not ended" for everything.
	Guarded bool
	// SinceGuard is how long ago the guard ended (negative while guarded;
	// 0 from a granter that does not say): any generation the table holds
	// no grant for ended at least that long ago.
	SinceGuard time.Duration
	Nodes      map[string]GrantView
	// Own marks the view a node read from its own table (never sent).
	Own bool
}

// GrantView is one node's current grant.
type GrantView struct {
	Gen uint64
	// Remaining is how long the current generation's grant still runs
	// (<= 0: ended).
	Remaining time.Duration
	// SupersededRemaining is how long the latest grant of an older
	// generation still runs (<= 0: all ended).
	SupersededRemaining time.Duration
}

// Snapshot returns the table's view at now.
func (g *Grants) Snapshot(now time.Time) View {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.view(now)
}

func (g *Grants) view(now time.Time) View {
	v := View{Guarded: now.Before(g.started.Add(g.guard)), SinceGuard: now.Sub(g.started.Add(g.guard)),
		Nodes: make(map[string]GrantView, len(g.nodes))}
	for id, gr := range g.nodes {
		v.Nodes[id] = GrantView{Gen: gr.gen, Remaining: gr.end.Sub(now), SupersededRemaining: gr.supersededEnd.Sub(now)}
	}
	return v
}

// Aged returns the view as it would read d later had the table granted
// nothing meanwhile: every grant has d less to run and the guard ended d
// longer ago. Grants only ever get extended, so an aged view never shows
// one running longer than it does; it may show one ended that a renewal
// since extended. A coordinator may conclude from an aged view that
// nothing needs doing, never that a lease ended (coordinator.RecentLeases).
func (v View) Aged(d time.Duration) View {
	out := View{Guarded: v.Guarded && v.SinceGuard+d < 0, SinceGuard: v.SinceGuard + d, Own: v.Own,
		Nodes: make(map[string]GrantView, len(v.Nodes))}
	for id, g := range v.Nodes {
		out.Nodes[id] = GrantView{Gen: g.Gen, Remaining: g.Remaining - d, SupersededRemaining: g.SupersededRemaining - d}
	}
	return out
}

// EndedFor reports whether, in this view, every grant to node at gen ended
// at least grace ago. Ends are counted at the latest from the end of the
// table's guard (a restarted granter's forgotten grants, and a superseded
// generation it never saw, ended no later than that).
func (v View) EndedFor(node string, gen uint64, grace time.Duration) bool {
	if grace <= 0 {
		return v.Ended(node, gen)
	}
	// A restarted table may have forgotten grants that ended only at its
	// guard's end: whatever it says, nothing ended longer ago than that.
	if v.Guarded || v.SinceGuard < grace {
		return false
	}
	gv, ok := v.Nodes[node]
	switch {
	case ok && gen == gv.Gen:
		return gv.Remaining <= -grace
	case ok && gen < gv.Gen:
		return gv.SupersededRemaining <= -grace
	default:
		return true
	}
}

// Ended reports whether, in this view, every grant to node at gen has ended.
func (v View) Ended(node string, gen uint64) bool {
	if v.Guarded {
		return false
	}
	gv, ok := v.Nodes[node]
	switch {
	case !ok:
		return true // never granted since this table started
	case gen == gv.Gen:
		return gv.Remaining <= 0
	case gen < gv.Gen:
		return gv.SupersededRemaining <= 0
	default:
		return true // a generation this table never granted
	}
}

// Live returns the node's current generation if its grant is running.
func (v View) Live(node string) (uint64, bool) {
	gv, ok := v.Nodes[node]
	if !ok || gv.Remaining <= 0 {
		return 0, false
	}
	return gv.Gen, true
}

// Quorum is the majority size of n voters.
func Quorum(n int) int { return n/2 + 1 }

// Majority combines the views of the voters (one per voter that answered;
// missing voters count against every verdict).
type Majority struct {
	Voters int
	Views  []View
	// Asked, when not nil, is the set of (node, generation) pairs the
	// views were asked to judge (Grants.Verdicts recorded them): Ended
	// answers false for any other pair, since no voter committed to it.
	Asked map[Query]bool
}

// EndedFor reports whether a majority of voters say every grant to node at
// gen ended at least grace ago: a service role's stop timeout runs after
// the holder's lease (View.EndedFor).
func (m Majority) EndedFor(node string, gen uint64, grace time.Duration) bool {
	if m.Asked != nil && !m.Asked[Query{node, gen}] {
		return false
	}
	n := 0
	for _, v := range m.Views {
		if v.EndedFor(node, gen, grace) {
			n++
		}
	}
	return n >= Quorum(m.Voters)
}

// Ended reports whether a majority of voters say every grant to node at gen
// has ended. Any majority intersects the majority that granted the holder's
// last renewal, so this is never true while the holder may still act.
func (m Majority) Ended(node string, gen uint64) bool {
	if m.Asked != nil && !m.Asked[Query{node, gen}] {
		return false
	}
	n := 0
	for _, v := range m.Views {
		if v.Ended(node, gen) {
			n++
		}
	}
	return n >= Quorum(m.Voters)
}

// EndsIn returns how long after the views were read a majority of them
// say every grant to node at gen has ended (Ended) if none is renewed
// meanwhile: the quorum-th earliest end among the views, counting a
// guarded view's end no sooner than its guard's. d <= 0: they say so
// already. ok is false when no majority can say so (fewer views than a
// quorum, or a pair the views were not asked to judge). A coordinator
// wakes then to ask again, rather than at its next tick.
func (m Majority) EndsIn(node string, gen uint64) (d time.Duration, ok bool) {
	if m.Asked != nil && !m.Asked[Query{node, gen}] {
		return 0, false
	}
	q := Quorum(m.Voters)
	if len(m.Views) < q {
		return 0, false
	}
	ends := make([]time.Duration, 0, len(m.Views))
	for _, v := range m.Views {
		ends = append(ends, v.endsIn(node, gen))
	}
	slices.Sort(ends)
	return ends[q-1], true
}

// endsIn is how long until the view, aged, says node's grants at gen have
// all ended (View.Aged, View.Ended).
func (v View) endsIn(node string, gen uint64) time.Duration {
	var d time.Duration
	if gv, ok := v.Nodes[node]; ok {
		switch {
		case gen == gv.Gen:
			d = gv.Remaining
		case gen < gv.Gen:
			d = gv.SupersededRemaining
		}
	}
	if v.Guarded {
		d = max(d, -v.SinceGuard)
	}
	return d
}

// Live returns, for every node that a majority of voters see with a running
// grant of the same generation, that generation.
func (m Majority) Live() map[string]uint64 {
	count := map[string]map[uint64]int{}
	for _, v := range m.Views {
		for id := range v.Nodes {
			if gen, ok := v.Live(id); ok {
				if count[id] == nil {
					count[id] = map[uint64]int{}
				}
				count[id][gen]++
			}
		}
	}
	out := map[string]uint64{}
	q := Quorum(m.Voters)
	for id, gens := range count {
		best, bestN := uint64(0), 0
		for gen, n := range gens {
			if n > bestN || (n == bestN && gen > best) {
				best, bestN = gen, n
			}
		}
		if bestN >= q {
			out[id] = best
		}
	}
	return out
}

// Holder is a node's own side of its lease: its generation and how long it
// may act, by its own clock. Safe for concurrent use.
type Holder struct {
	mu      sync.Mutex
	ttl     time.Duration
	gen     uint64
	until   time.Time
	newGen  bool   // a refusal or a lapse asks for a new generation
	minNext uint64 // the next generation must be at least this
}

// NewHolder returns a holder of leases of length ttl.
func NewHolder(ttl time.Duration) *Holder { return &Holder{ttl: ttl, newGen: true} }

// Begin returns the generation to renew at now. A lapse (the lease was held
// and ran out) or a refusal starts a new generation, strictly above every
// earlier one and at least wallNanos, so a restarted node does not reuse a
// generation it had before. Generations never wrap: they stop at the
// largest uint64 (which no table grants, PlausibleGen).
func (h *Holder) Begin(now time.Time, wallNanos uint64) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.until.IsZero() && !now.Before(h.until) {
		h.newGen = true
	}
	if h.newGen {
		h.gen = max(satInc(h.gen), wallNanos, h.minNext)
		h.until = time.Time{}
		h.newGen = false
	}
	return h.gen
}

// Result records the answers to a renewal of gen sent at sentAt: granted
// is how many voters granted it, quorum the majority size, and refusals the
// other verdicts with the generation each voter holds. A renewal granted by
// a majority extends the lease to sentAt + TTL; one refused without a
// majority of grants ends the generation.
func (h *Holder) Result(gen uint64, sentAt time.Time, granted, quorum int, refusals []Refusal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gen != h.gen {
		return // a renewal of a generation already abandoned
	}
	for _, r := range refusals {
		// A stale refusal names the newer generation the voter holds;
		// one no table would grant (PlausibleGen) is not a floor to climb
		// to: it could only lock this node out.
		if r.Verdict == Stale && PlausibleGen(r.Gen, sentAt) && satInc(r.Gen) > h.minNext {
			h.minNext = satInc(r.Gen)
		}
	}
	if granted >= quorum {
		// A minority that refused (one that was cut off and saw a gap)
		// does not matter: any majority deciding the lease ended
		// intersects the majority that just granted it.
		if end := sentAt.Add(h.ttl); end.After(h.until) {
			h.until = end
		}
		return
	}
	if len(refusals) > 0 {
		// This generation cannot reach a majority any more: start anew.
		h.newGen = true
		h.until = time.Time{}
	}
}

// satInc is n+1, stopping at the largest uint64.
func satInc(n uint64) uint64 {
	if n == math.MaxUint64 {
		return n
	}
	return n + 1
}

// Refusal is one voter's non-grant.
type Refusal struct {
	Verdict Verdict
	Gen     uint64
}

// Current returns the generation and the end of the lease by the holder's
// clock; until is zero when no lease is held.
func (h *Holder) Current() (gen uint64, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gen, h.until
}

// Valid reports whether the holder may act at now, and at which generation.
func (h *Holder) Valid(now time.Time) (uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gen, !h.until.IsZero() && now.Before(h.until)
}

// SortedIDs returns the keys of a view, sorted (for stable output).
func SortedIDs(v View) []string {
	ids := make([]string, 0, len(v.Nodes))
	for id := range v.Nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
