package vipact

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/act/acttest"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
	"github.com/harbormaster/harbormaster/vip"
	"github.com/harbormaster/harbormaster/vip/viptest"
)

const prefix = "198.18.0.200/24"

func heldState(as fsm.Assignment) *fsm.State {
	st := fsm.NewState()
	st.Spec = &spec.Spec{Roles: []spec.Role{{Name: "registry-vip", Type: spec.TypeVIP, Address: spec.MustParsePrefix(prefix)}}}
	st.Assignments = map[string]*fsm.Assignment{"registry-vip": &as}
	return st
}

func newActuator(t *testing.T) (*Actuator, *acttest.Node, *viptest.Kernel) {
	t.Helper()
	node := acttest.New("n1")
	k := viptest.NewKernel(time.Now)
	ann := &viptest.Announcer{Now: time.Now}
	x := New(node, Config{Iface: "eth0", Kernel: k, Announcer: ann, Tick: time.Second,
		Term: func() uint64 { return 1 }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return x, node, k
}

// TestAddressOnlyWhileMayAct drives the actuator through every input of
// act.MayAct: the address is configured exactly while the rule allows it,
// and removed as soon as it does not (Releasable syncs the manager at once).
func TestAddressOnlyWhileMayAct(t *testing.T) {
	x, node, k := newActuator(t)
	addr, err := vip.ParseAddress(prefix, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	valid := act.Authority{LeaseGen: 4, LeaseValid: true, LeaseUntil: time.Now().Add(time.Hour)}
	held := fsm.Assignment{Role: "registry-vip", Holder: "n1", HolderGen: 4, Epoch: 2}
	cases := []struct {
		name string
		auth act.Authority
		as   fsm.Assignment
		want bool
	}{
		{"holder with a valid lease", valid, held, true},
		{"assigned under another generation", valid, fsm.Assignment{Role: "registry-vip", Holder: "n1", HolderGen: 3, Epoch: 2}, false},
		{"holder again", valid, held, true},
		{"lease not valid", act.Authority{LeaseGen: 4, LeaseUntil: time.Now().Add(time.Hour)}, held, false},
		{"holder again", valid, held, true},
		{"holder again", valid, held, true},
		{"being released", valid, fsm.Assignment{Role: "registry-vip", Holder: "n1", HolderGen: 4, Epoch: 2, Releasing: true}, false},
		{"holder again", valid, held, true},
		{"another node holds it", valid, fsm.Assignment{Role: "registry-vip", Holder: "n2", HolderGen: 4, Epoch: 3}, false},
		{"holder again", valid, fsm.Assignment{Role: "registry-vip", Holder: "n1", HolderGen: 4, Epoch: 4}, true},
		{"stopping", act.Authority{LeaseGen: 4, LeaseValid: true, LeaseUntil: time.Now().Add(time.Hour), Stopping: true}, held, false},
	}
	for _, tc := range cases {
		node.SetAuthority(tc.auth)
		st := heldState(tc.as)
		node.SetState(st)
		if !x.Releasable(context.Background(), st, "registry-vip") {
			t.Fatalf("%s: Releasable = false; the VIP actuator lets go synchronously", tc.name)
		}
		present, err := k.Present(addr)
		if err != nil {
			t.Fatal(err)
		}
		if present != tc.want {
			t.Fatalf("%s: address configured = %v, want %v", tc.name, present, tc.want)
		}
	}
}

// TestRunRemovesTheAddressWhenItEnds: a Run that ends (the agent exits)
// leaves no address behind.
func TestRunRemovesTheAddressWhenItEnds(t *testing.T) {
	x, node, k := newActuator(t)
	addr, _ := vip.ParseAddress(prefix, "eth0")
	node.SetAuthority(act.Authority{LeaseGen: 1, LeaseValid: true, LeaseUntil: time.Now().Add(time.Hour)})
	node.SetState(heldState(fsm.Assignment{Role: "registry-vip", Holder: "n1", HolderGen: 1, Epoch: 1}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for present, _ := k.Present(addr); !present; present, _ = k.Present(addr) {
		if time.Now().After(deadline) {
			t.Fatal("the holder's address was never configured")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if present, _ := k.Present(addr); present {
		t.Fatal("the address is still configured after Run returned")
	}
}

// A non-holder probes the VIPs another node holds, whose turn it has, in
// one ProbeAll per tick (one at a time, 160 VIPs took 16 s of waits), and
// records a conflict for an answer from a MAC other than the holder's.
// Each tick, the non-holders between them probe each VIP once; over as many
// ticks as there are non-holders, each probes every VIP once.
func TestConflictProbesTakeTurnsInOneBatch(t *testing.T) {
	st := fsm.NewState()
	st.Spec = &spec.Spec{}
	st.Assignments = map[string]*fsm.Assignment{}
	st.Nodes = map[string]*fsm.Node{
		"n1": {ID: "n1", VIP: true, MAC: "02:00:00:00:00:01"}, "n2": {ID: "n2", VIP: true, MAC: "02:00:00:00:00:02"},
		"n3": {ID: "n3", VIP: true, MAC: "02:00:00:00:00:03"}, "w": {ID: "w", Witness: true}}
	var n2held []string
	for i := range 12 {
		name := fmt.Sprintf("vip-%02d", i)
		holder := "n2"
		switch i {
		case 10:
			holder = "n1"
		case 11:
			holder = ""
		default:
			n2held = append(n2held, name)
		}
		st.Spec.Roles = append(st.Spec.Roles, spec.Role{Name: name, Type: spec.TypeVIP, Address: spec.MustParsePrefix(fmt.Sprintf("198.18.0.%d/24", 200+i))})
		st.Assignments[name] = &fsm.Assignment{Role: name, Holder: holder, Epoch: 1}
	}
	rogue := net.HardwareAddr{0x02, 0xee, 0, 0, 0, 0x99}
	newProber := func(id string) (*Actuator, *acttest.Node, *viptest.Announcer) {
		node := acttest.New(id)
		node.SetState(st)
		ann := &viptest.Announcer{Now: time.Now}
		ann.SetAnswer(rogue)
		return New(node, Config{Iface: "eth0", Kernel: viptest.NewKernel(time.Now), Announcer: ann, Tick: time.Second,
			Term: func() uint64 { return 1 }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}), node, ann
	}
	x1, node1, ann1 := newProber("n1")
	x3, node3, ann3 := newProber("n3")
	conflicts := func(node *acttest.Node, from int) []string {
		var got []string
		for _, e := range node.Events()[from:] {
			if e.Kind == fsm.EventVIPConflict && e.New == rogue.String() && e.Old == "n2 02:00:00:00:00:02" {
				got = append(got, e.Role)
			}
		}
		return got
	}
	seen1, seen3 := map[string]int{}, map[string]int{}
	for tick := int64(1000); tick < 1002; tick++ {
		b1, b3 := len(ann1.Batches), len(ann3.Batches)
		e1, e3 := len(node1.Events()), len(node3.Events())
		r1, r3 := map[string]time.Time{}, map[string]time.Time{} // report every tick
		x1.probeConflicts(context.Background(), r1, tick)
		x3.probeConflicts(context.Background(), r3, tick)
		if len(ann1.Batches) > b1+1 || len(ann3.Batches) > b3+1 {
			t.Fatalf("tick %d: batches %v and %v, want at most one each", tick, ann1.Batches, ann3.Batches)
		}
		// This tick: n2's ten VIPs, each by exactly one of n1 and n3 (not
		// n1's own, not the free one; n2 is the holder, w a witness).
		got := append(conflicts(node1, e1), conflicts(node3, e3)...)
		slices.Sort(got)
		if !slices.Equal(got, n2held) {
			t.Fatalf("tick %d: conflicts for %v, want each of %v once", tick, got, n2held)
		}
		for _, r := range conflicts(node1, e1) {
			seen1[r]++
		}
		for _, r := range conflicts(node3, e3) {
			seen3[r]++
		}
	}
	for _, r := range n2held {
		if seen1[r] != 1 || seen3[r] != 1 {
			t.Errorf("%s: probed by n1 %d and n3 %d times over two ticks, want once each", r, seen1[r], seen3[r])
		}
	}
	// And n1's VIP: n2 and n3 take turns, so n3 probed it on one tick.
	if x1.Conflicts() != 10 || x3.Conflicts() != 11 {
		t.Errorf("conflicts counted by n1 %d and n3 %d, want 10 and 11 (n2's ten each, and n1's VIP once)", x1.Conflicts(), x3.Conflicts())
	}
}
