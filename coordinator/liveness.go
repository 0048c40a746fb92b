package coordinator

import (
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
)

// Liveness times node leases by the local monotonic clock. A node's lease is
// counted from the moment this process first saw its latest renewal applied
// (never from a time written in the log), so the observer's view of a lease
// always ends after the node's own view, which starts when it sent the
// renewal.
//
// Liveness is safe for concurrent use.
type Liveness struct {
	mu     sync.Mutex
	seen   map[string]seen
	resetT time.Time
	// margin is added to every TTL to cover clock-rate drift between nodes.
	marginFrac float64
}

type seen struct {
	seq uint64
	at  time.Time
	ttl time.Duration // the node's lease TTL when last observed
}

// NewLiveness returns a tracker that adds marginFrac of each TTL (e.g. 0.1)
// as a margin for clock-rate drift.
func NewLiveness(marginFrac float64) *Liveness {
	return &Liveness{seen: map[string]seen{}, marginFrac: marginFrac}
}

// Observe records renewals visible in st. It is idempotent and may be called
// with the same state many times.
func (l *Liveness) Observe(st *fsm.State, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, n := range st.Nodes {
		s, ok := l.seen[id]
		if !ok || s.seq != n.LeaseSeq {
			s = seen{seq: n.LeaseSeq, at: now}
		}
		s.ttl = time.Duration(n.LeaseTTLMillis) * time.Millisecond
		l.seen[id] = s
	}
}

// Reset treats every lease as renewed at now. A new leader calls it when it
// takes office: it knows nothing of the old leader's timers, so it gives
// every node a full lease from now (DESIGN.md §4).
func (l *Liveness) Reset(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.resetT = now
	for id, s := range l.seen {
		s.at = now
		l.seen[id] = s
	}
}

// Age returns how long ago node's lease was last seen renewed, and false if
// the node was never seen.
func (l *Liveness) Age(node string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.seen[node]
	if !ok {
		return 0, false
	}
	return now.Sub(s.at), true
}

// Live returns the nodes of st whose lease (TTL plus drift margin) has not
// run out at now, as seen from here. A node never seen is live until a full
// lease after the last Reset (or not live if there was none). A holder that
// is missing from the node table (removed, but maybe still running) is still
// given its lease: the one last seen here, or else a full lease after the
// last Reset, as long as the longest of the registered nodes' leases.
func (l *Liveness) Live(st *fsm.State, now time.Time) map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	var longest time.Duration
	for id, n := range st.Nodes {
		ttl := time.Duration(n.LeaseTTLMillis) * time.Millisecond
		longest = max(longest, ttl)
		at := l.resetT
		if s, ok := l.seen[id]; ok {
			at = s.at
		}
		out[id] = l.alive(at, ttl, now)
	}
	for _, a := range st.Assignments {
		if _, done := out[a.Holder]; a.Holder == "" || done {
			continue
		}
		s, ok := l.seen[a.Holder]
		if !ok {
			s = seen{at: l.resetT, ttl: longest}
		}
		out[a.Holder] = l.alive(s.at, s.ttl, now)
	}
	return out
}

// alive reports whether a lease of ttl (plus the margin) renewed at at is
// still running at now. The zero time was never renewed.
func (l *Liveness) alive(at time.Time, ttl time.Duration, now time.Time) bool {
	ttl += time.Duration(float64(ttl) * l.marginFrac)
	return !at.IsZero() && now.Sub(at) < ttl
}
