package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/fsm"
)

// quorumAfter is how long a node may lack quorum before it is called lost:
// longer than a leader failover takes on the majority side (up to twice
// the heartbeat timeout to notice, twice the election timeout to elect, a
// lease to renew), 1.5 s with the lan profile. Twice that at start.
func quorumAfter(t config.Timing) time.Duration { return 2*(t.Heartbeat+t.Election) + t.Lease }

// quorumTracker follows whether this node has quorum: a known leader and a
// valid quorum lease of its own. Only a lack that lasts is a loss: longer
// than quorumAfter, or, before the node had quorum once in this run,
// longer than its start grace (an election on a restarted cluster and the
// first lease take longer). It is a pure state machine (no clock, no
// Raft): quorumLoop feeds it observations. Safe for concurrent use.
type quorumTracker struct {
	after      time.Duration // a lack longer than this is a loss
	startGrace time.Duration // the same, until quorum was held once

	mu        sync.Mutex
	held      bool      // quorum was held at some point in this run
	downSince time.Time // start of the current lack; zero while quorate
	lost      bool      // the current lack was declared a loss
}

// quorumChange is what one observation changed.
type quorumChange int

const (
	quorumSame     quorumChange = iota
	quorumLost                  // the lack has lasted: declared lost
	quorumRegained              // a declared loss ended
)

func newQuorumTracker(start time.Time, after, startGrace time.Duration) *quorumTracker {
	return &quorumTracker{after: after, startGrace: startGrace, downSince: start}
}

// observe records whether the node had quorum at now. For quorumRegained it
// also returns when the loss began and whether it began at the agent's
// start (the node never had quorum before it).
func (q *quorumTracker) observe(now time.Time, ok bool) (change quorumChange, since time.Time, atStart bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ok {
		since, atStart = q.downSince, !q.held
		if q.lost {
			change = quorumRegained
		}
		q.held, q.lost, q.downSince = true, false, time.Time{}
		return change, since, atStart
	}
	if q.downSince.IsZero() {
		q.downSince = now
	}
	limit := q.after
	if !q.held {
		limit = q.startGrace
	}
	if !q.lost && now.Sub(q.downSince) > limit {
		q.lost = true
		return quorumLost, q.downSince, !q.held
	}
	return quorumSame, q.downSince, !q.held
}

// Lost reports whether the node has been without quorum long enough to
// call it lost, and since when.
func (q *quorumTracker) Lost() (since time.Time, lost bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.lost {
		return time.Time{}, false
	}
	return q.downSince, true
}

// QuorumLost reports whether this node has been without a known leader or
// without its own quorum lease for longer than a leader failover takes
// (quorumAfter; twice that at start), and since when. While it is lost the node holds
// no role (docs/operations.md, "No quorum").
func (a *Agent) QuorumLost() (since time.Time, lost bool) { return a.quorum.Lost() }

// hasQuorum is the observation quorumLoop feeds the tracker, with the
// reason when it is false.
func (a *Agent) hasQuorum(now time.Time) (bool, string) {
	if _, id := a.raft.LeaderWithID(); id == "" {
		return false, "no leader known"
	}
	if _, valid, _ := a.leases.Lease(now); !valid {
		return false, "own quorum lease not held"
	}
	return true, ""
}

// quorumLoop observes this node's quorum every renew interval. It logs a
// loss once when it is declared, and on regaining quorum logs it and
// commits a quorum event ("no quorum from T1 to T2"): the event cannot be
// committed while the node is cut off, so it is written afterwards, by the
// node that lived through it, and retried until the log takes it.
func (a *Agent) quorumLoop(ctx context.Context) {
	tick := time.NewTicker(a.timing.Renew)
	defer tick.Stop()
	var pending *fsm.Event
	for {
		select {
		case <-ctx.Done():
			if pending != nil {
				a.log.Warn("quorum event not recorded before stopping", "message", pending.Message)
			}
			return
		case <-tick.C:
		}
		if a.raft.State() == raft.Shutdown {
			continue
		}
		now := time.Now()
		ok, why := a.hasQuorum(now)
		switch change, since, atStart := a.quorum.observe(now, ok); change {
		case quorumLost:
			a.log.Warn("no quorum: this node holds no role (no VIP, Redis fenced, services stopped) until a majority of voters is reachable; see docs/operations.md, No quorum",
				"reason", why, "since", since.UTC().Format(time.RFC3339Nano))
		case quorumRegained:
			e := quorumEvent(a.cfg.NodeID, since, now, atStart)
			a.log.Info("quorum regained", "lost_at", since.UTC().Format(time.RFC3339Nano), "for", now.Sub(since).Round(time.Millisecond).String())
			pending = &e
		}
		if pending != nil && ok {
			pctx, cancel := context.WithTimeout(ctx, eventTimeout)
			_, err := a.Propose(pctx, &fsm.RecordEvent{Event: *pending})
			cancel()
			if err == nil {
				pending = nil
			} else if ctx.Err() == nil {
				a.log.Debug("record quorum event; retrying", "err", err)
			}
		}
	}
}

// quorumEvent is the event recording a loss of quorum that has ended.
func quorumEvent(node string, since, until time.Time, atStart bool) fsm.Event {
	from := "lost at " + since.UTC().Format(time.RFC3339Nano)
	if atStart {
		from = "none from the agent's start at " + since.UTC().Format(time.RFC3339Nano)
	}
	return fsm.Event{Time: until.UnixMilli(), Kind: fsm.EventQuorum, Node: node, Actor: node, Old: "no-quorum", New: "quorum",
		Message: fmt.Sprintf("quorum %s, regained at %s (%s without; it held no role once its lease lapsed)",
			from, until.UTC().Format(time.RFC3339Nano), until.Sub(since).Round(time.Millisecond))}
}
