package vipact

import (
	"context"
	"io"
	"log/slog"
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
