package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
)

// holderNotLeader returns a node holding a role that is not the leader.
func holderNotLeader(c *cluster) (*tnode, fsm.Assignment) {
	l := c.leader()
	for _, a := range l.agent.State().Assignments {
		if a.Holder != "" && a.Holder != l.id {
			return c.node(a.Holder), *a
		}
	}
	return nil, fsm.Assignment{}
}

// A leader crash must not drop or move the roles of healthy holders: their
// quorum leases are renewed with the voters, not through the leader.
func TestQuorumLeaseSurvivesLeaderCrash(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n" +
		"  - {name: a, type: service, marker: true}\n  - {name: b, type: service, marker: true}\n  - {name: c, type: service, marker: true}\n"})
	c.waitFor("every role held, one per node", 10*time.Second, func() bool {
		l := c.leader()
		if l == nil || !allHeld(l.agent.State()) {
			return false
		}
		h, _ := holderNotLeader(c)
		return h != nil
	})
	holder, as := holderNotLeader(c)
	old := c.leader()
	stop := make(chan struct{})
	lapses := make(chan string, 1)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, valid, _ := holder.agent.Lease(); !valid {
				select {
				case lapses <- fmt.Sprintf("at %s", time.Now().Format("15:04:05.000")):
				default:
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	c.isolate(old.id)
	var nl *tnode
	c.waitFor("a new leader", electionBound, func() bool { nl = c.leader(c.others(old.id)...); return nl != nil })
	time.Sleep(time.Second) // let leases and the new leader's reconcile run
	close(stop)
	select {
	case at := <-lapses:
		t.Fatalf("holder %s lost its lease %s during the leader crash", holder.id, at)
	default:
	}
	if cur := nl.agent.State().Assignment(as.Role); cur.Holder != holder.id || cur.Epoch != as.Epoch {
		t.Fatalf("role %s moved during a leader crash: %+v, was %+v", as.Role, cur, as)
	}
}

// A holder cut off from everyone stops acting (its own lease view lapses)
// before the majority reassigns its role, and the role moves within about
// one stretched lease.
func TestQuorumLeaseCutOffHolderLapsesBeforeReassign(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.waitFor("every role held by a non-leader", 10*time.Second, func() bool {
		l := c.leader()
		if l == nil || !allHeld(l.agent.State()) {
			return false
		}
		h, _ := holderNotLeader(c)
		return h != nil
	})
	holder, as := holderNotLeader(c)
	l := c.leader()
	cutAt := time.Now()
	c.isolate(holder.id)
	var lapse time.Time
	c.waitFor("the holder's own lease to lapse", 2*time.Second, func() bool {
		if _, valid, _ := holder.agent.Lease(); !valid {
			lapse = time.Now()
			return true
		}
		return false
	})
	var moved fsm.Assignment
	c.waitFor("the role to move", 3*time.Second, func() bool {
		moved = l.agent.State().Assignment(as.Role)
		return moved.Holder != holder.id
	})
	var assignedAt int64
	for _, e := range l.agent.State().Events {
		if e.Kind == fsm.EventRoleAssigned && e.Role == as.Role && e.Epoch == moved.Epoch {
			assignedAt = e.Time
		}
	}
	if assignedAt == 0 {
		t.Fatalf("no role-assigned event for %s at epoch %d", as.Role, moved.Epoch)
	}
	if lapse.UnixMilli() > assignedAt {
		t.Fatalf("S4: role %s reassigned at %d ms, before its cut-off holder's lease lapsed at %d ms",
			as.Role, assignedAt, lapse.UnixMilli())
	}
	if moved.Epoch <= as.Epoch {
		t.Fatalf("role moved at epoch %d, not above %d", moved.Epoch, as.Epoch)
	}
	t.Logf("cut at 0; holder lapsed at +%s; role reassigned at +%s", lapse.Sub(cutAt),
		time.UnixMilli(assignedAt).Sub(cutAt))
	// lan: lease 500 ms, stretched by 10% at the voters, noticed within a
	// 100 ms reconcile tick; 1.5 s leaves room for -race on two cores.
	if d := time.UnixMilli(assignedAt).Sub(cutAt); d > 1500*time.Millisecond {
		t.Fatalf("role moved %s after the cut, want within 1.5 s", d)
	}

	// After the heal the old holder has a new generation and does not get
	// the role back (no preemption).
	c.heal()
	c.waitFor("the old holder's lease again, on a new generation", 5*time.Second, func() bool {
		gen, valid, _ := holder.agent.Lease()
		return valid && gen != as.HolderGen
	})
	if cur := l.agent.State().Assignment(as.Role); cur.Holder != moved.Holder {
		t.Fatalf("role went back after the heal: %+v", cur)
	}
}
