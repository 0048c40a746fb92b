package agent_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/harbormaster/harbormaster/fsm"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// TestStoreFaultFencesTheNode: a node whose Raft store writes fail (a full
// disk) stops holding roles (they move within the lease), reports the fault
// and refuses operator writes; when writes succeed again it recovers.
func TestStoreFaultFencesTheNode(t *testing.T) {
	var mu sync.Mutex
	failing := ""
	full := errors.New("no space left on device")
	c := newCluster(t, 3, clusterOpts{storeErr: func(node string) error {
		mu.Lock()
		defer mu.Unlock()
		if node == failing {
			return full
		}
		return nil
	}})
	c.waitFor("roles held", 10*time.Second, func() bool { l := c.leader(); return l != nil && allHeld(l.agent.State()) })
	l := c.leader()
	var victim string
	for _, as := range l.agent.State().Assignments {
		if as.Holder != "" && as.Holder != l.id {
			victim = as.Holder
		}
	}
	if victim == "" {
		// Every role landed on the leader (the followers' leases came a
		// moment later): give one to a follower.
		victim = c.others(l.id)[0]
		var role string
		for name := range l.agent.State().Assignments {
			role = name
			break
		}
		if _, err := c.admin(l).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: role, Node: victim, Actor: "test"}); err != nil {
			t.Fatalf("move %s to %s: %v", role, victim, err)
		}
		c.waitFor(role+" on "+victim, 10*time.Second, func() bool { return c.leader().agent.State().Assignment(role).Holder == victim })
	}
	v := c.node(victim)
	mu.Lock()
	failing = victim
	mu.Unlock()
	// A follower's store is written by appends from the leader: write
	// something (a quiet cluster appends nothing).
	c.waitFor("the fault seen", 10*time.Second, func() bool {
		_, _ = c.leader().agent.Propose(ctxT(t, 2*time.Second), &fsm.RecordEvent{Event: fsm.Event{Kind: "test", Message: "a write"}})
		return v.agent.StoreFault() != nil
	})
	if n := scrape(t, v).Value("harbormaster_store_errors_total", nil); n < 1 {
		t.Errorf("store_errors_total on %s after a failed write: %v, want at least 1", victim, n)
	}
	c.waitFor("the victim's roles moved", 10*time.Second, func() bool {
		st := c.leader().agent.State()
		return allHeld(st) && len(st.HeldBy(victim)) == 0
	})
	_, err := c.admin(v).Drain(ctxT(t, 5*time.Second), &hmv1.DrainRequest{Node: victim, Drained: true})
	wantCode(t, "drain on the faulty node", err, codes.Unavailable)

	mu.Lock()
	failing = ""
	mu.Unlock()
	c.waitFor("the fault cleared", 15*time.Second, func() bool { return v.agent.StoreFault() == nil })
}
