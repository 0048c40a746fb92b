// Package viptest has fakes of vip.Kernel and vip.Announcer for tests of
// code that holds addresses, without root or a network namespace.
package viptest

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/vip"
)

// Kernel is an in-memory vip.Kernel. Addresses expire like the real
// kernel's when their lifetime (whole seconds) runs out by Now.
type Kernel struct {
	mu      sync.Mutex
	Now     func() time.Time
	addrs   map[vip.Address]time.Time // expiry
	watch   chan struct{}
	MAC     net.HardwareAddr
	Adds    int
	Removes int
	// Writes counts Ensure calls (adds and lifetime renewals); Presents
	// and Lists the reads; RemoveCalls every Remove, of a present address
	// or not.
	Writes, Presents, Lists, RemoveCalls int
	changes                              []Change
	// Fail, when set, is returned by every operation.
	Fail error
}

// Change is an address appearing on or leaving a Kernel.
type Change struct {
	Address vip.Address
	Present bool      // added (true) or removed, expired or deleted (false)
	At      time.Time // by the kernel's clock; an expiry at its lifetime's end
}

// NewKernel returns an empty fake kernel on clock now.
func NewKernel(now func() time.Time) *Kernel {
	return &Kernel{Now: now, addrs: map[vip.Address]time.Time{}, watch: make(chan struct{}, 1),
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
}

func (k *Kernel) expire() {
	now := k.Now()
	for a, exp := range k.addrs {
		if !now.Before(exp) {
			delete(k.addrs, a)
			k.changes = append(k.changes, Change{a, false, exp})
		}
	}
}

// Ensure implements vip.Kernel.
func (k *Kernel) Ensure(a vip.Address, lifetime time.Duration) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Fail != nil {
		return false, k.Fail
	}
	k.expire()
	k.Writes++
	_, present := k.addrs[a]
	secs := (lifetime + time.Second - 1) / time.Second
	if secs < 1 {
		secs = 1
	}
	k.addrs[a] = k.Now().Add(secs * time.Second)
	if !present {
		k.Adds++
		k.changes = append(k.changes, Change{a, true, k.Now()})
	}
	return !present, nil
}

// List implements vip.Kernel.
func (k *Kernel) List(ifaces []string) (map[vip.Address]bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Fail != nil {
		return nil, k.Fail
	}
	k.expire()
	k.Lists++
	out := map[vip.Address]bool{}
	for a := range k.addrs {
		if slices.Contains(ifaces, a.Iface) {
			out[a] = true
		}
	}
	return out, nil
}

// Remove implements vip.Kernel.
func (k *Kernel) Remove(a vip.Address) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.RemoveCalls++
	if k.Fail != nil {
		return false, k.Fail
	}
	k.expire()
	_, present := k.addrs[a]
	delete(k.addrs, a)
	if present {
		k.Removes++
		k.changes = append(k.changes, Change{a, false, k.Now()})
	}
	return present, nil
}

// Present implements vip.Kernel.
func (k *Kernel) Present(a vip.Address) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Fail != nil {
		return false, k.Fail
	}
	k.Presents++
	k.expire()
	_, ok := k.addrs[a]
	return ok, nil
}

// Expiry returns when the kernel would drop a, and whether it is present.
func (k *Kernel) Expiry(a vip.Address) (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expire()
	t, ok := k.addrs[a]
	return t, ok
}

// Changes returns every change of a so far, in the order the kernel saw
// them (expiries are seen late, when an operation or Expiry looks).
func (k *Kernel) Changes(a vip.Address) []Change {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expire()
	var out []Change
	for _, c := range k.changes {
		if c.Address == a {
			out = append(out, c)
		}
	}
	return out
}

// HardwareAddr implements vip.Kernel.
func (k *Kernel) HardwareAddr(string) (net.HardwareAddr, error) { return k.MAC, nil }

// Watch implements vip.Kernel.
func (k *Kernel) Watch(context.Context) (<-chan struct{}, error) { return k.watch, nil }

// DeleteBehindBack removes a as an operator or networkd would, and sends
// the change notification.
func (k *Kernel) DeleteBehindBack(a vip.Address) {
	k.mu.Lock()
	if _, ok := k.addrs[a]; ok {
		k.changes = append(k.changes, Change{a, false, k.Now()})
	}
	delete(k.addrs, a)
	k.mu.Unlock()
	select {
	case k.watch <- struct{}{}:
	default:
	}
}

// AddBehindBack configures a without a lease, as a stale or manual address.
func (k *Kernel) AddBehindBack(a vip.Address) {
	k.mu.Lock()
	if _, ok := k.addrs[a]; !ok {
		k.changes = append(k.changes, Change{a, true, k.Now()})
	}
	k.addrs[a] = k.Now().Add(time.Hour)
	k.mu.Unlock()
	select {
	case k.watch <- struct{}{}:
	default:
	}
}

// Announcer is a recording vip.Announcer.
type Announcer struct {
	mu        sync.Mutex
	Now       func() time.Time
	Announced []Announcement
	// Answer, when set, is returned by Probe as the MAC of another host.
	Answer net.HardwareAddr
	// Probes counts the addresses probed; Batches records how many each
	// ProbeAll call carried (a Probe is a batch of one).
	Probes  int
	Batches []int
}

// Announcement is one recorded Announce call.
type Announcement struct {
	Address vip.Address
	At      time.Time
}

// SetAnswer makes Probe report mac as another host answering (nil: none).
func (a *Announcer) SetAnswer(mac net.HardwareAddr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Answer = mac
}

// Announce implements vip.Announcer.
func (a *Announcer) Announce(addr vip.Address) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Announced = append(a.Announced, Announcement{addr, a.Now()})
	return nil
}

// Probe implements vip.Announcer.
func (a *Announcer) Probe(_ context.Context, addr vip.Address, _ net.HardwareAddr, _ time.Duration) (net.HardwareAddr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Probes++
	a.Batches = append(a.Batches, 1)
	return a.Answer, nil
}

// ProbeAll implements vip.Announcer.
func (a *Announcer) ProbeAll(_ context.Context, as []vip.Address, _ func(vip.Address) net.HardwareAddr, _ time.Duration) []vip.ProbeResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Probes += len(as)
	a.Batches = append(a.Batches, len(as))
	out := make([]vip.ProbeResult, len(as))
	for i := range out {
		out[i].Peer = a.Answer
	}
	return out
}

// Count returns how many announcements were sent for addr.
func (a *Announcer) Count(addr vip.Address) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, x := range a.Announced {
		if x.Address == addr {
			n++
		}
	}
	return n
}

// Fence is an in-memory vip.Fence on a clock: an address is live while its
// element's deadline is after Now, like the kernel's timer.
type Fence struct {
	mu      sync.Mutex
	Now     func() time.Time
	gated   map[netip.Addr]bool
	live    map[netip.Addr]time.Time
	Writes  int
	Darks   []netip.Addr
	Closed  bool
	Removed bool // Close removed the rules
	// OnDark, when set, is called by Dark (tests check it comes before the
	// kernel's removal).
	OnDark func(netip.Addr)
}

// NewFence returns an empty fake fence on clock now.
func NewFence(now func() time.Time) *Fence {
	return &Fence{Now: now, gated: map[netip.Addr]bool{}, live: map[netip.Addr]time.Time{}}
}

// Sync implements vip.Fence.
func (f *Fence) Sync(managed []netip.Addr, present map[netip.Addr]bool, live map[netip.Addr]time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Writes++
	want := map[netip.Addr]bool{}
	for _, a := range managed {
		want[a] = true
	}
	now := f.Now()
	for a, d := range live {
		want[a] = true
		f.live[a] = now.Add(d)
	}
	for a := range f.gated {
		if !want[a] && !present[a] {
			delete(f.gated, a)
		}
	}
	for a := range want {
		f.gated[a] = true
	}
	return nil
}

// Dark implements vip.Fence.
func (f *Fence) Dark(a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.live, a)
	f.Darks = append(f.Darks, a)
	if f.OnDark != nil {
		f.OnDark(a)
	}
	return nil
}

// Close implements vip.Fence.
func (f *Fence) Close(present map[netip.Addr]bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Closed = true
	f.Removed = true
	for a := range f.gated {
		if present[a] {
			f.Removed = false
		}
	}
	return nil
}

// Live reports whether a passes traffic now: not gated, or gated with a
// deadline after Now.
func (f *Fence) Live(a netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.gated[a] {
		return true
	}
	return f.Now().Before(f.live[a])
}

// Gated reports whether the fence gates a.
func (f *Fence) Gated(a netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gated[a]
}

var _ vip.Fence = (*Fence)(nil)
