package vip_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/vip"
	"github.com/harbormaster/harbormaster/vip/viptest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type rig struct {
	clk    *clock
	kernel *viptest.Kernel
	ann    *viptest.Announcer
	m      *vip.Manager
	mu     sync.Mutex
	events []vip.Event
}

var addr = vip.Address{Prefix: netip.MustParsePrefix("198.18.0.100/24"), Iface: "eth0"}

func newRig(t *testing.T, cfg vip.Config) *rig {
	r := &rig{clk: &clock{t: time.Unix(1_000_000, 0)}}
	r.kernel = viptest.NewKernel(r.clk.Now)
	r.ann = &viptest.Announcer{Now: r.clk.Now}
	cfg.Now = r.clk.Now
	cfg.OnEvent = func(e vip.Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }
	r.m = vip.NewManager(cfg, r.kernel, r.ann)
	return r
}

func (r *rig) kinds() []vip.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var k []vip.EventKind
	for _, e := range r.events {
		k = append(k, e.Kind)
	}
	return k
}

func (r *rig) want(until time.Duration, epoch uint64) {
	r.m.Update([]vip.Address{addr}, []vip.Desired{{Address: addr, Until: r.clk.Now().Add(until), Epoch: epoch}})
}

func equalKinds(a, b []vip.EventKind) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAcquireProbesAddsWithLeaseLifetimeAndAnnounces(t *testing.T) {
	r := newRig(t, vip.Config{GARPRepeat: 3, GARPInterval: 100 * time.Millisecond})
	r.want(1500*time.Millisecond, 1)
	next := r.m.Sync(context.Background())
	exp, ok := r.kernel.Expiry(addr)
	if !ok {
		t.Fatal("address not added")
	}
	// 1.5 s of lease is rounded up to the kernel's whole seconds.
	if got := exp.Sub(r.clk.Now()); got != 2*time.Second {
		t.Errorf("kernel lifetime = %s, want 2s", got)
	}
	if r.ann.Probes != 1 {
		t.Errorf("probes = %d, want 1", r.ann.Probes)
	}
	if n := r.ann.Count(addr); n != 1 {
		t.Errorf("announcements right after the add = %d, want 1", n)
	}
	if got, want := r.kinds(), []vip.EventKind{vip.EventAdded, vip.EventAnnounced}; !equalKinds(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if d := next.Sub(r.clk.Now()); d != 100*time.Millisecond {
		t.Errorf("next pass in %s, want 100ms (the next announcement)", d)
	}
	for i := 0; i < 5; i++ {
		r.clk.Add(100 * time.Millisecond)
		r.m.Sync(context.Background())
	}
	if n := r.ann.Count(addr); n != 3 {
		t.Errorf("announcements of the burst = %d, want 3", n)
	}
	if r.kernel.Adds != 1 {
		t.Errorf("kernel adds = %d, want 1", r.kernel.Adds)
	}
}

// Addresses acquired in one pass are probed in one ProbeAll, so a node
// taking many roles waits one ProbeWait, not one per address, and the wire
// reads every answer on one socket.
func TestAcquisitionsProbeTogether(t *testing.T) {
	r := newRig(t, vip.Config{})
	const n = 8
	var addrs []vip.Address
	var want []vip.Desired
	for i := range n {
		a := vip.Address{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(120 + i)}), 24), Iface: "eth0"}
		addrs = append(addrs, a)
		want = append(want, vip.Desired{Address: a, Until: r.clk.Now().Add(time.Second), Epoch: 1})
	}
	r.m.Update(addrs, want)
	r.m.Sync(context.Background())
	for _, a := range addrs {
		if _, ok := r.kernel.Expiry(a); !ok {
			t.Fatalf("%s not added after one pass (probes %d): %v", a, r.ann.Probes, r.kinds())
		}
	}
	if r.ann.Probes != n || !slices.Equal(r.ann.Batches, []int{n}) {
		t.Fatalf("probes = %d in batches %v, want %d in one", r.ann.Probes, r.ann.Batches, n)
	}
}

func TestRenewalExtendsLifetimeAndLeaseEndFences(t *testing.T) {
	r := newRig(t, vip.Config{FenceGuard: 20 * time.Millisecond})
	r.want(time.Second, 1)
	r.m.Sync(context.Background())
	r.clk.Add(400 * time.Millisecond)
	r.want(time.Second, 1) // a renewal
	r.m.Sync(context.Background())
	exp, _ := r.kernel.Expiry(addr)
	if got := exp.Sub(r.clk.Now()); got != time.Second {
		t.Fatalf("lifetime after renewal = %s, want 1s", got)
	}
	// No renewal: the manager removes the address before its lease ends.
	next := r.m.Sync(context.Background())
	if d := next.Sub(r.clk.Now()); d > 980*time.Millisecond {
		t.Fatalf("next pass in %s, want by the lease end minus the guard (980ms)", d)
	}
	r.clk.Add(980 * time.Millisecond)
	r.m.Sync(context.Background())
	if _, ok := r.kernel.Expiry(addr); ok {
		t.Fatal("address still configured at the lease end minus the guard")
	}
	k := r.kinds()
	if k[len(k)-1] != vip.EventFenced {
		t.Fatalf("last event %v, want fenced", k[len(k)-1])
	}
}

// TestRenewalsWriteOnlyWhenTheKernelNeedsIt: a 500 ms lease renewed every
// 100 ms keeps the address present throughout, with a lifetime write only
// when the kernel's (whole-second) lifetime would no longer cover the lease
// plus RenewAhead, and one kernel listing per pass instead of a read per
// address: 200 held addresses cost 200 reads a pass before.
// A node manages every VIP of the spec and holds few: a pass removes only
// what it held or what the kernel has, not every address it does not hold.
func TestPassesLeaveAddressesHeldElsewhereAlone(t *testing.T) {
	r := newRig(t, vip.Config{ProbeWait: -1})
	var addrs []vip.Address
	for i := range 20 {
		addrs = append(addrs, vip.Address{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}), 24), Iface: "eth0"})
	}
	for range 50 {
		r.m.Update(addrs, nil) // managed here, held by other nodes
		r.m.Sync(context.Background())
		r.clk.Add(100 * time.Millisecond)
	}
	if r.kernel.RemoveCalls != 0 {
		t.Fatalf("%d removals over 50 passes of 20 addresses held elsewhere, none in the kernel: want none", r.kernel.RemoveCalls)
	}
	// One the kernel has (a stale or manual address) is removed.
	r.kernel.AddBehindBack(addrs[3])
	r.m.Sync(context.Background())
	if ok, _ := r.kernel.Present(addrs[3]); ok || r.kernel.Removes != 1 {
		t.Fatalf("an address in the kernel that this node may not hold: present %t, %d removed; want it removed", ok, r.kernel.Removes)
	}
	// Without a listing (it failed), every one is removed, as before.
	r.kernel.Fail = errors.New("netlink down")
	r.m.Sync(context.Background())
	if r.kernel.RemoveCalls < len(addrs) {
		t.Fatalf("with the listing failing: %d removals, want one per address (%d)", r.kernel.RemoveCalls, len(addrs))
	}
}

func TestRenewalsWriteOnlyWhenTheKernelNeedsIt(t *testing.T) {
	r := newRig(t, vip.Config{ProbeWait: -1})
	var addrs []vip.Address
	for i := range 20 {
		addrs = append(addrs, vip.Address{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}), 24), Iface: "eth0"})
	}
	want := func() {
		var ds []vip.Desired
		for _, a := range addrs {
			ds = append(ds, vip.Desired{Address: a, Until: r.clk.Now().Add(500 * time.Millisecond), Epoch: 1})
		}
		r.m.Update(addrs, ds)
	}
	const passes = 50 // 5 s of renewals
	for range passes {
		want()
		r.m.Sync(context.Background())
		for _, a := range addrs {
			exp, ok := r.kernel.Expiry(a)
			if !ok {
				t.Fatalf("%s gone from the kernel while its lease is renewed", a)
			}
			if until := r.clk.Now().Add(500 * time.Millisecond); exp.Before(until) {
				t.Fatalf("%s: kernel removes it at %s, before the lease end %s", a, exp, until)
			}
		}
		r.clk.Add(100 * time.Millisecond)
	}
	// A 1 s lifetime written when it covers less than 500 ms + 300 ms:
	// every 3rd renewal (0.2 s after a write the next pass finds 0.8 s
	// left). Each pass reads the kernel once.
	if w := r.kernel.Writes; w > len(addrs)*passes/3+len(addrs) {
		t.Fatalf("%d lifetime writes for %d addresses over %d renewals: want at most one in three renewals", w, len(addrs), passes)
	}
	if r.kernel.Lists != passes || r.kernel.Presents != 0 {
		t.Fatalf("%d listings and %d single reads over %d passes, want one listing a pass", r.kernel.Lists, r.kernel.Presents, passes)
	}
	// The backstop: no renewal, the kernel drops the addresses by itself
	// within a second of the last lease end.
	r.clk.Add(1500 * time.Millisecond)
	for _, a := range addrs {
		if _, ok := r.kernel.Expiry(a); ok {
			t.Fatalf("%s still in the kernel 1.5 s after its last renewal", a)
		}
	}
}

func TestReleaseRemoves(t *testing.T) {
	r := newRig(t, vip.Config{})
	r.want(time.Second, 1)
	r.m.Sync(context.Background())
	r.m.Update([]vip.Address{addr}, nil)
	r.m.Sync(context.Background())
	if _, ok := r.kernel.Expiry(addr); ok {
		t.Fatal("address still configured after release")
	}
	if len(r.m.Held()) != 0 {
		t.Fatalf("held = %v after release", r.m.Held())
	}
	k := r.kinds()
	if k[len(k)-1] != vip.EventRemoved {
		t.Fatalf("last event %v, want removed", k[len(k)-1])
	}
}

func TestConflictRefusesToAdd(t *testing.T) {
	r := newRig(t, vip.Config{})
	r.ann.Answer = net.HardwareAddr{2, 0, 0, 0, 0, 9}
	r.want(time.Second, 1)
	r.m.Sync(context.Background())
	if _, ok := r.kernel.Expiry(addr); ok {
		t.Fatal("address added while another host answers for it")
	}
	if got := r.kinds(); len(got) != 1 || got[0] != vip.EventConflict {
		t.Fatalf("events %v, want [conflict]", got)
	}
	// Once nobody answers, the next pass takes it.
	r.ann.Answer = nil
	r.m.Sync(context.Background())
	if _, ok := r.kernel.Expiry(addr); !ok {
		t.Fatal("address not added after the conflict cleared")
	}
}

func TestDriftRepairAndStaleRemoval(t *testing.T) {
	r := newRig(t, vip.Config{})
	r.want(time.Second, 1)
	r.m.Sync(context.Background())
	r.kernel.DeleteBehindBack(addr)
	r.m.Sync(context.Background())
	if _, ok := r.kernel.Expiry(addr); !ok {
		t.Fatal("address removed behind the manager's back was not re-added")
	}
	k := r.kinds()
	if k[len(k)-1] != vip.EventAnnounced || k[len(k)-2] != vip.EventRepaired {
		t.Fatalf("events %v, want ... repaired, announced", k)
	}
	if r.ann.Probes != 1 {
		t.Fatalf("probes = %d: a repair of our own address must not probe again", r.ann.Probes)
	}

	// An address configured without a lease (a leftover) is removed.
	other := vip.Address{Prefix: netip.MustParsePrefix("198.18.0.101/24"), Iface: "eth0"}
	r.kernel.AddBehindBack(other)
	r.m.Update([]vip.Address{addr, other}, []vip.Desired{{Address: addr, Until: r.clk.Now().Add(time.Second), Epoch: 1}})
	r.m.Sync(context.Background())
	if _, ok := r.kernel.Expiry(other); ok {
		t.Fatal("managed address without a lease was left configured")
	}
}

func TestRunDropsEverythingOnStop(t *testing.T) {
	kernel := viptest.NewKernel(time.Now)
	ann := &viptest.Announcer{Now: time.Now}
	m := vip.NewManager(vip.Config{}, kernel, ann)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	m.Update(nil, []vip.Desired{{Address: addr, Until: time.Now().Add(10 * time.Second), Epoch: 1}})
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := kernel.Expiry(addr); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not add the address")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := kernel.Expiry(addr); ok {
		t.Fatal("address left configured after Run returned")
	}
}

// The fence follows the lease: armed to the lease's end when the address
// goes in, dark at that end by its own clock though no pass ran and the
// kernel still has the address (its lifetime is whole seconds), rewritten
// only when a renewal moves the end, darkened before a release removes the
// address, and its rules removed when the manager stops with nothing held.
func TestFenceFollowsTheLease(t *testing.T) {
	fence := viptest.NewFence(nil)
	r := newRig(t, vip.Config{Fence: fence})
	fence.Now = r.clk.Now
	ip := addr.IP()

	r.want(500*time.Millisecond, 1)
	r.m.Sync(context.Background())
	if present, _ := r.kernel.Present(addr); !present || !fence.Live(ip) || !fence.Gated(ip) {
		t.Fatalf("after acquisition: present %v, live %v, gated %v; want all true", present, fence.Live(ip), fence.Gated(ip))
	}
	writes := fence.Writes
	r.clk.Add(300 * time.Millisecond)
	r.m.Sync(context.Background())
	if fence.Writes != writes {
		t.Fatalf("a pass without a renewal wrote the fence (%d writes, want %d)", fence.Writes, writes)
	}
	// The agent froze: no pass runs past the lease's end.
	r.clk.Add(250 * time.Millisecond)
	if fence.Live(ip) {
		t.Fatal("the address is live past its lease end")
	}
	if present, _ := r.kernel.Present(addr); !present {
		t.Fatal("the fake kernel dropped the address before its 1 s lifetime: the test no longer shows the gap the fence closes")
	}

	// A renewal at a new epoch's lease brings it back, with one write.
	r.want(500*time.Millisecond, 1)
	r.m.Sync(context.Background())
	if !fence.Live(ip) || fence.Writes != writes+1 {
		t.Fatalf("after a renewal: live %v, writes %d (want true, %d)", fence.Live(ip), fence.Writes, writes+1)
	}

	// A release darkens before it removes.
	fence.OnDark = func(netip.Addr) {
		if present, _ := r.kernel.Present(addr); !present {
			t.Error("the address was removed before the fence darkened it")
		}
	}
	r.m.Update([]vip.Address{addr}, nil)
	r.m.Sync(context.Background())
	if present, _ := r.kernel.Present(addr); present || fence.Live(ip) || len(fence.Darks) != 1 {
		t.Fatalf("after release: present %v, live %v, darks %v", present, fence.Live(ip), fence.Darks)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.m.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !fence.Closed || !fence.Removed {
		t.Fatalf("after Run: closed %v, rules removed %v; want both", fence.Closed, fence.Removed)
	}
}
