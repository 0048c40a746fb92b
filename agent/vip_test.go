package agent_test

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
	"github.com/harbormaster/harbormaster/vip"
)

const vipSpec = "roles:\n  - {name: registry-vip, type: vip, address: 198.18.0.200/24}\n"

var registryVIP = vip.Address{Prefix: netip.MustParsePrefix("198.18.0.200/24"), Iface: "eth0"}

// s1Sampler polls every node's (fake) kernel and records the longest time
// two or more nodes had the address at once.
type s1Sampler struct {
	c       *cluster
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	dual    time.Duration
	samples int
}

func startS1(c *cluster) *s1Sampler {
	s := &s1Sampler{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		var since time.Time
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			n := 0
			for _, nd := range c.nodes {
				if _, ok := nd.kernel.Expiry(registryVIP); ok {
					n++
				}
			}
			now := time.Now()
			s.mu.Lock()
			s.samples++
			if n >= 2 {
				if since.IsZero() {
					since = now
				}
				s.dual = max(s.dual, now.Sub(since)+time.Nanosecond)
			} else {
				since = time.Time{}
			}
			s.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	return s
}

func (s *s1Sampler) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	<-s.done
	if s.dual > 0 {
		t.Fatalf("S1 violated: two nodes held %s for %s", registryVIP, s.dual)
	}
	if s.samples < 100 {
		t.Fatalf("the S1 sampler took only %d samples", s.samples)
	}
}

func vipHolder(c *cluster) *tnode {
	var h *tnode
	for _, nd := range c.nodes {
		if _, ok := nd.kernel.Expiry(registryVIP); ok {
			if h != nil {
				return nil
			}
			h = nd
		}
	}
	return h
}

// The VIP is on exactly one node; when that node is cut off it removes the
// address before its lease ends, and another node adds it only after: at no
// sample do two kernels hold it.
func TestVIPMovesOnCutOffWithoutDualHolder(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{vip: true, spec: vipSpec})
	var h *tnode
	c.waitFor("the VIP on one node", 10*time.Second, func() bool { h = vipHolder(c); return h != nil })
	s1 := startS1(c)
	cut := time.Now()
	c.isolate(h.id)
	var nh *tnode
	c.waitFor("the VIP on another node", 3*time.Second, func() bool {
		nh = vipHolder(c)
		return nh != nil && nh != h
	})
	moved := time.Since(cut)
	time.Sleep(300 * time.Millisecond)
	s1.finish(t)
	if _, ok := h.kernel.Expiry(registryVIP); ok {
		t.Fatalf("the cut-off node %s still has the VIP", h.id)
	}
	t.Logf("VIP moved from %s to %s %s after the cut", h.id, nh.id, moved)
	// The new holder records where the time went, as one event.
	var phases string
	c.waitFor("the failover event", 3*time.Second, func() bool {
		for _, e := range nh.agent.State().Events {
			if e.Kind == "failover" && e.Role == "registry-vip" && e.Node == nh.id {
				phases = e.Message
				return true
			}
		}
		return false
	})
	for _, want := range []string{"detected +0 ms", "decided +", "seen here +", "address added +", "first announcement +"} {
		if !strings.Contains(phases, want) {
			t.Fatalf("failover event %q lacks %q", phases, want)
		}
	}
	t.Logf("failover phases: %s", phases)
	c.heal()
}

// A graceful stop removes the VIP and releases the role: the next node adds
// it without waiting for a lease to end.
func TestVIPGracefulStopHandsOverAtOnce(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{vip: true, spec: vipSpec})
	var h *tnode
	c.waitFor("the VIP on one node", 10*time.Second, func() bool { h = vipHolder(c); return h != nil })
	s1 := startS1(c)
	stopAt := time.Now()
	go h.cancel()
	var nh *tnode
	c.waitFor("the VIP on another node", 3*time.Second, func() bool {
		nh = vipHolder(c)
		return nh != nil && nh != h
	})
	took := time.Since(stopAt)
	time.Sleep(300 * time.Millisecond)
	s1.finish(t)
	t.Logf("graceful hand-over from %s to %s took %s", h.id, nh.id, took)
	// Well under the 500 ms lease: nobody waited for it to end.
	if took > 300*time.Millisecond {
		t.Fatalf("graceful hand-over took %s, want < 300ms (no lease wait)", took)
	}
}

// A planned move hands the VIP over at once: the holder removes it and
// commits its release, the target adds it without probing; a drain moves
// every role off a node and keeps it role-less until undrained.
func TestVIPMoveAndDrain(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{vip: true, spec: vipSpec})
	var h *tnode
	c.waitFor("the VIP on one node", 10*time.Second, func() bool { h = vipHolder(c); return h != nil })
	target := c.node(c.others(h.id)[0])
	before := c.leader().agent.State().Assignment("registry-vip")
	s1 := startS1(c)
	start := time.Now()
	if _, err := c.admin(c.nodes[0]).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "registry-vip", Node: target.id}); err != nil {
		t.Fatalf("move: %v", err)
	}
	c.waitFor("the VIP on the target", 3*time.Second, func() bool { return vipHolder(c) == target })
	t.Logf("move %s -> %s: VIP on the target %s after the request", h.id, target.id, time.Since(start))
	time.Sleep(200 * time.Millisecond)
	after := c.leader().agent.State().Assignment("registry-vip")
	if after.Holder != target.id || after.Epoch <= before.Epoch || !after.AfterRelease {
		t.Fatalf("after the move: %+v (before %+v), want the target at a greater epoch, after a release", after, before)
	}

	// Moving to a node that cannot hold it is refused with the reason.
	_, err := c.admin(c.nodes[0]).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "registry-vip", Node: "n9"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("move to a stranger: %v, want FailedPrecondition", err)
	}

	// Drain the holder: the VIP leaves it and does not come back.
	if _, err := c.admin(c.nodes[0]).Drain(ctxT(t, 5*time.Second), &hmv1.DrainRequest{Node: target.id, Drained: true}); err != nil {
		t.Fatalf("drain: %v", err)
	}
	c.waitFor("the VIP off the drained node", 3*time.Second, func() bool {
		nh := vipHolder(c)
		return nh != nil && nh != target
	})
	_, err = c.admin(c.nodes[0]).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "registry-vip", Node: target.id})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "drained") {
		t.Fatalf("move to a drained node: %v, want FailedPrecondition naming the drain", err)
	}
	if _, err := c.admin(c.nodes[0]).Drain(ctxT(t, 5*time.Second), &hmv1.DrainRequest{Node: target.id, Drained: false}); err != nil {
		t.Fatalf("undrain: %v", err)
	}
	if _, err := c.admin(c.nodes[0]).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "registry-vip", Node: target.id}); err != nil {
		t.Fatalf("move after undrain: %v", err)
	}
	c.waitFor("the VIP back on the undrained node", 3*time.Second, func() bool { return vipHolder(c) == target })
	time.Sleep(200 * time.Millisecond)
	s1.finish(t)
}

// A non-holder that hears a MAC other than the holder's answer for the VIP
// records a vip-conflict event naming both.
func TestVIPConflictSeenByNonHolder(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{vip: true, spec: vipSpec})
	var h *tnode
	c.waitFor("the VIP on one node", 10*time.Second, func() bool { h = vipHolder(c); return h != nil })
	other := c.node(c.others(h.id)[0])
	rogue := net.HardwareAddr{0x02, 0xee, 0, 0, 0, 0x99}
	other.ann.SetAnswer(rogue)
	c.waitFor("a vip-conflict event", 15*time.Second, func() bool {
		for _, e := range c.leader().agent.State().Events {
			if e.Kind == "vip-conflict" && e.Node == other.id && e.New == rogue.String() && strings.HasPrefix(e.Old, h.id+" ") {
				return true
			}
		}
		return false
	})
	if vipHolder(c) != h {
		t.Fatalf("the VIP moved because of a foreign answer seen by a non-holder")
	}
}
