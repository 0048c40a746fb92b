package agent_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
	"github.com/harbormaster/harbormaster/vip"
)

const vipSpec = "roles:\n  - {name: registry-vip, type: vip, address: 198.18.0.200/24}\n"

var registryVIP = vip.Address{Prefix: netip.MustParsePrefix("198.18.0.200/24"), Iface: "eth0"}

// span is a time a node's (fake) kernel held the VIP; to is zero while it
// still does.
type span struct {
	node     string
	from, to time.Time
}

// vipSpans returns the times nd's kernel held the VIP, from its change
// history.
func vipSpans(nd *tnode) []span {
	var out []span
	for _, ch := range nd.kernel.Changes(registryVIP) {
		switch {
		case ch.Present:
			out = append(out, span{node: nd.id, from: ch.At})
		case len(out) > 0 && out[len(out)-1].to.IsZero():
			out[len(out)-1].to = ch.At
		}
	}
	return out
}

// assertS1 fails the test if two nodes' kernels ever held the VIP at once,
// by their change histories (every change, not samples).
func assertS1(t *testing.T, c *cluster) {
	t.Helper()
	var all []span
	for _, nd := range c.nodes {
		all = append(all, vipSpans(nd)...)
	}
	ends := func(s span, t time.Time) bool { return !s.to.IsZero() && !s.to.After(t) }
	for i, a := range all {
		for _, b := range all[i+1:] {
			if a.node != b.node && !ends(a, b.from) && !ends(b, a.from) {
				t.Fatalf("S1 violated: %s held %s from %s to %s and %s from %s to %s", a.node, registryVIP,
					a.from.Format("15:04:05.000"), a.to.Format("15:04:05.000"), b.node, b.from.Format("15:04:05.000"), b.to.Format("15:04:05.000"))
			}
		}
	}
}

// lastSpan returns nd's last span of holding the VIP, or fails the test.
func lastSpan(t *testing.T, nd *tnode) span {
	t.Helper()
	sp := vipSpans(nd)
	if len(sp) == 0 {
		t.Fatalf("%s never held %s", nd.id, registryVIP)
	}
	return sp[len(sp)-1]
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
// address before its lease ends, and another node adds it only after: no two
// kernels ever hold it at once.
func TestVIPMovesOnCutOffWithoutDualHolder(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{vip: true, spec: vipSpec})
	var h *tnode
	c.waitFor("the VIP on one node", 10*time.Second, func() bool { h = vipHolder(c); return h != nil })
	cut := time.Now()
	c.isolate(h.id)
	until := leaseEnd(c, h)
	var nh *tnode
	c.waitFor("the VIP on another node", 3*time.Second, func() bool {
		nh = vipHolder(c)
		return nh != nil && nh != h
	})
	dropped, added := lastSpan(t, h), lastSpan(t, nh)
	if dropped.to.IsZero() {
		t.Fatalf("the cut-off node %s still has the VIP", h.id)
	}
	if !dropped.to.Before(until) {
		t.Fatalf("the cut-off node %s removed the VIP at %s, not before its lease ended at %s", h.id,
			dropped.to.Format("15:04:05.000"), until.Format("15:04:05.000"))
	}
	if added.from.Before(until) {
		t.Fatalf("%s added the VIP at %s, before the cut-off holder's lease ended at %s", nh.id,
			added.from.Format("15:04:05.000"), until.Format("15:04:05.000"))
	}
	assertS1(t, c)
	t.Logf("VIP moved from %s to %s: removed %s after the cut, %s before the lease ended; added %s after it",
		h.id, nh.id, dropped.to.Sub(cut), until.Sub(dropped.to), added.from.Sub(until))
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
// it without waiting for a lease to end, while the old holder's lease still
// runs. (How long the hand-over takes is measured by the benchmarks: make
// bench.)
func TestVIPGracefulStopHandsOverAtOnce(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{vip: true, spec: vipSpec})
	var h *tnode
	c.waitFor("the VIP on one node", 10*time.Second, func() bool { h = vipHolder(c); return h != nil })
	stopAt := time.Now()
	go h.cancel()
	var nh *tnode
	var until time.Time // the stopping holder's lease, as long as it is valid
	c.waitFor("the VIP on another node", 3*time.Second, func() bool {
		if _, valid, u := h.agent.Lease(); valid {
			until = u
		}
		nh = vipHolder(c)
		return nh != nil && nh != h
	})
	added := lastSpan(t, nh)
	if as := nh.agent.State().Assignment("registry-vip"); as.Holder != nh.id || !as.AfterRelease {
		t.Fatalf("%s holds the VIP on %+v, want an assignment after the stopping holder's release", nh.id, as)
	}
	if !added.from.Before(until) {
		t.Fatalf("%s added the VIP at %s, when the stopping holder's lease had ended (%s): it waited for the lease",
			nh.id, added.from.Format("15:04:05.000"), until.Format("15:04:05.000"))
	}
	assertS1(t, c)
	t.Logf("graceful hand-over from %s to %s: added %s after the stop, %s before the old lease ended",
		h.id, nh.id, added.from.Sub(stopAt), until.Sub(added.from))
}

// A planned move hands the VIP over at once: the holder removes it and
// commits its release, the target adds it without probing; a drain moves
// every role off a node and keeps it role-less until undrained.
func TestVIPMoveAndDrain(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{vip: true, spec: vipSpec})
	var h *tnode
	c.waitFor("the VIP on one node", 10*time.Second, func() bool { h = vipHolder(c); return h != nil })
	waitAllAlive(c) // a target whose lease is not live yet is passed over for placement
	target := c.node(c.others(h.id)[0])
	before := c.leader().agent.State().Assignment("registry-vip")
	start := time.Now()
	if _, err := c.admin(c.nodes[0]).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "registry-vip", Node: target.id}); err != nil {
		t.Fatalf("move: %v", err)
	}
	c.waitFor("the VIP on the target", 3*time.Second, func() bool { return vipHolder(c) == target })
	t.Logf("move %s -> %s: VIP on the target %s after the request", h.id, target.id, time.Since(start))
	after := target.agent.State().Assignment("registry-vip") // what the target acted on
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
	assertS1(t, c)
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
	// The two non-holders take turns probing it, a tick (5 s) each: the
	// one that hears the rogue gets its turn within two ticks.
	c.waitFor("a vip-conflict event", 25*time.Second, func() bool {
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

// A graceful stop releases each role as soon as its own actuator has let
// go: the VIP of a node whose service stop takes long (here it hangs until
// its 3s stop_timeout) moves at once, not after the service.
func TestGracefulStopReleasesTheVIPWithoutWaitingForAService(t *testing.T) {
	f := newFakeServices()
	spec := "roles:\n  - {name: registry-vip, type: vip, address: 198.18.0.200/24, preempt: true, candidates: [{node: n1, priority: 10}, {node: n2}, {node: n3}]}\n" +
		"  - {name: notary, type: service, stop_timeout: 3s, preempt: true, candidates: [{node: n1, priority: 10}, {node: n2}, {node: n3}]}\n"
	c := newCluster(t, 3, clusterOpts{vip: true, spec: spec, services: []string{"notary"}, fake: f})
	h := c.node("n1")
	c.waitFor("the VIP and notary on n1", 10*time.Second, func() bool {
		return vipHolder(c) == h && len(f.runners("notary")) == 1 && h.agent.State().Assignment("notary").Holder == "n1"
	})
	waitAllAlive(c)
	f.mu.Lock()
	f.hangStop["n1"] = true
	f.mu.Unlock()
	stopAt := time.Now()
	go h.cancel()
	var nh *tnode
	c.waitFor("the VIP on another node", 3*time.Second, func() bool {
		nh = vipHolder(c)
		return nh != nil && nh != h
	})
	moved := time.Since(stopAt)
	if as := nh.agent.State().Assignment("registry-vip"); !as.AfterRelease {
		t.Fatalf("%s holds the VIP on %+v, want an assignment after n1's release", nh.id, as)
	}
	if moved > time.Second {
		t.Fatalf("the VIP moved %s after the stop began; it waited for the service's stop (3s stop_timeout)", moved)
	}
	assertS1(t, c)
	t.Logf("VIP on %s %s after the stop began, while notary's stop hung", nh.id, moved.Round(time.Millisecond))
}
