package vip

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Config tunes a Manager. Zero values take the defaults noted.
type Config struct {
	// GARPRepeat is how many announcements an acquisition sends
	// (keepalived's garp_master_repeat; default 3).
	GARPRepeat int
	// GARPInterval separates the announcements of a burst (default 100ms).
	GARPInterval time.Duration
	// GARPRefresh re-announces every held address at this period
	// (keepalived's garp_master_refresh; default 0, off).
	GARPRefresh time.Duration
	// ProbeWait is how long an acquisition waits for anyone else to answer
	// for the address before configuring it (default 30ms; negative turns
	// probing off).
	ProbeWait time.Duration
	// FenceGuard removes an address this long before its lease ends, to
	// cover the time the removal itself takes (default 20ms).
	FenceGuard time.Duration
	// Tick is the polling backstop for drift repair when netlink events
	// are lost (default 1s).
	Tick time.Duration
	// RenewAhead is how long before the kernel would remove an address by
	// its lifetime the lifetime is written again (default 300ms). A
	// renewal that finds the kernel's lifetime still covering the lease
	// plus RenewAhead writes nothing: lifetimes are whole seconds, so a
	// 500 ms lease renewed every 100 ms needs one write in 2-3 renewals,
	// not one per renewal. The kernel still removes the address at most a
	// second (the rounding) after the lease end last written.
	RenewAhead time.Duration
	// Fence, when set, is the kernel-side dead-man of the held addresses
	// (nftables in production): each pass that moves a lease end writes it,
	// a removal darkens the address first, and Run closes it on return.
	Fence Fence
	Log   *slog.Logger
	// Now is the clock; it must carry a monotonic reading (time.Now).
	Now func() time.Time
	// OnEvent, when set, receives every change the manager makes or sees.
	OnEvent func(Event)
}

func (c *Config) defaults() {
	if c.GARPRepeat == 0 {
		c.GARPRepeat = 3
	}
	if c.GARPInterval == 0 {
		c.GARPInterval = 100 * time.Millisecond
	}
	if c.ProbeWait == 0 {
		c.ProbeWait = 30 * time.Millisecond
	}
	if c.FenceGuard == 0 {
		c.FenceGuard = 20 * time.Millisecond
	}
	if c.Tick == 0 {
		c.Tick = time.Second
	}
	if c.RenewAhead == 0 {
		c.RenewAhead = 300 * time.Millisecond
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Desired says the node may hold Address until Until (by its own
// monotonic clock: the end of its lease), at Epoch.
type Desired struct {
	Address Address
	Until   time.Time
	Epoch   uint64
	// NoProbe skips the probe before adding: the previous holder committed
	// its release after removing the address (a planned move).
	NoProbe bool
}

// EventKind names what happened to an address.
type EventKind string

// Event kinds.
const (
	EventAdded     EventKind = "added"     // configured for a new epoch
	EventRepaired  EventKind = "repaired"  // re-added after it vanished (drift)
	EventAnnounced EventKind = "announced" // first announcement after an add
	EventRemoved   EventKind = "removed"   // removed on release
	EventFenced    EventKind = "fenced"    // removed because the lease ran out
	EventConflict  EventKind = "conflict"  // someone else answers; not added
	EventError     EventKind = "error"     // a kernel or socket operation failed
)

// Event reports one change.
type Event struct {
	Kind    EventKind
	Address Address
	Epoch   uint64
	At      time.Time
	Peer    net.HardwareAddr // for conflicts
	Err     error
}

type held struct {
	epoch uint64
	until time.Time
	// kernelUntil is when the kernel removes the address by the lifetime
	// last written.
	kernelUntil time.Time
}

type garp struct {
	left int
	next time.Time
	// first is true until the first announcement of a burst is sent.
	first bool
}

// Manager drives the node's interfaces towards the desired addresses: it
// adds them (after a probe) with lifetimes that end with the lease, renews
// the lifetimes, re-adds an address removed behind its back, removes the
// addresses it no longer may hold (also when the lease runs out, before the
// kernel would), and announces every acquisition.
//
// Construct with NewManager; Run owns the loop. Update, Reannounce and Held
// are safe for concurrent use.
type Manager struct {
	cfg    Config
	kernel Kernel
	ann    Announcer

	mu      sync.Mutex
	managed map[Address]bool
	desired map[Address]Desired
	trigger chan struct{}

	passMu sync.Mutex // one pass at a time; guards the fields below
	held   map[Address]held
	garps  map[Address]*garp
	macs   map[string]net.HardwareAddr
	// armed is, per address, the lease end the fence was last given;
	// gated the managed addresses it was last given.
	armed map[netip.Addr]time.Time
	gated map[netip.Addr]bool
}

// NewManager returns a manager. It starts nothing.
func NewManager(cfg Config, k Kernel, a Announcer) *Manager {
	cfg.defaults()
	cfg.Log = cfg.Log.With("component", "vip")
	return &Manager{cfg: cfg, kernel: k, ann: a,
		managed: map[Address]bool{}, desired: map[Address]Desired{}, trigger: make(chan struct{}, 1),
		held: map[Address]held{}, garps: map[Address]*garp{}, macs: map[string]net.HardwareAddr{},
		armed: map[netip.Addr]time.Time{}, gated: map[netip.Addr]bool{}}
}

// Update replaces the set of addresses the manager looks after (it removes
// any of them it finds configured without a desire) and the set it should
// hold. It returns at once; the loop applies it.
func (m *Manager) Update(managed []Address, want []Desired) {
	m.mu.Lock()
	m.managed = map[Address]bool{}
	for _, a := range managed {
		m.managed[a] = true
	}
	m.desired = map[Address]Desired{}
	for _, d := range want {
		m.managed[d.Address] = true
		m.desired[d.Address] = d
	}
	m.mu.Unlock()
	m.poke()
}

// Reannounce starts a new announcement burst for every held address (after
// a change of Raft term or a healed partition).
func (m *Manager) Reannounce() {
	m.passMu.Lock()
	now := m.cfg.Now()
	for a := range m.held {
		m.garps[a] = &garp{left: m.cfg.GARPRepeat, next: now}
	}
	m.passMu.Unlock()
	m.poke()
}

// Held returns the addresses this manager has configured, sorted.
func (m *Manager) Held() []Address {
	m.passMu.Lock()
	defer m.passMu.Unlock()
	out := make([]Address, 0, len(m.held))
	for a := range m.held {
		out = append(out, a)
	}
	slices.SortFunc(out, Address.Compare)
	return out
}

func (m *Manager) poke() {
	select {
	case m.trigger <- struct{}{}:
	default:
	}
}

// Run applies updates, follows kernel changes and lease ends until ctx
// ends. It removes every address it holds before returning.
func (m *Manager) Run(ctx context.Context) error {
	events, err := m.kernel.Watch(ctx)
	if err != nil {
		m.cfg.Log.Warn("no netlink events; drift is repaired by polling only", "err", err)
		events = nil
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := m.Sync(ctx)
		wait := next.Sub(m.cfg.Now())
		if wait < 0 {
			wait = 0
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			m.dropAll()
			m.closeFence()
			return nil
		case <-m.trigger:
		case <-events:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// dropAll removes every held address (graceful stop).
func (m *Manager) dropAll() {
	m.mu.Lock()
	m.desired = map[Address]Desired{}
	m.mu.Unlock()
	m.Sync(context.Background())
}

func (m *Manager) emit(e Event) {
	if e.At.IsZero() {
		e.At = m.cfg.Now()
	}
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(e)
	}
}

func (m *Manager) mac(iface string) net.HardwareAddr {
	if hw, ok := m.macs[iface]; ok {
		return hw
	}
	hw, err := m.kernel.HardwareAddr(iface)
	if err != nil {
		return nil
	}
	m.macs[iface] = hw
	return hw
}

// Sync runs one pass: remove what may not be held, add or renew what may,
// send due announcements. It returns when the next pass is due at the
// latest. Callers that must know an address is gone (a release) call it
// directly after Update.
func (m *Manager) Sync(ctx context.Context) time.Time {
	m.passMu.Lock()
	defer m.passMu.Unlock()
	m.mu.Lock()
	managed := make([]Address, 0, len(m.managed))
	for a := range m.managed {
		managed = append(managed, a)
	}
	desired := make(map[Address]Desired, len(m.desired))
	for a, d := range m.desired {
		desired[a] = d
	}
	m.mu.Unlock()
	slices.SortFunc(managed, Address.Compare)
	// Addresses held but no longer managed are removed too.
	for a := range m.held {
		if _, ok := desired[a]; !ok && !containsAddr(managed, a) {
			managed = append(managed, a)
		}
	}

	now := m.cfg.Now()
	next := now.Add(m.cfg.Tick)
	present, err := m.kernel.List(ifacesOf(managed))
	if err != nil {
		m.cfg.Log.Error("list addresses failed", "err", err)
		m.emit(Event{Kind: EventError, Err: err})
		present = nil // hold and remove find out address by address
	}
	probed := m.probeNew(ctx, managed, desired, now, present)
	for _, a := range managed {
		d, want := desired[a]
		if !want || !now.Add(m.cfg.FenceGuard).Before(d.Until) {
			if _, had := m.held[a]; !had && present != nil && !present[a] {
				// Neither held nor in the kernel: nothing to remove. (A
				// node manages every VIP of the spec and holds a few: a
				// removal of each of the others on every renewal was 1,500
				// netlink requests a second with 200 roles.)
				continue
			}
			m.remove(a, want, d)
			continue
		}
		next = minTime(next, d.Until.Add(-m.cfg.FenceGuard))
		m.hold(a, d, now, probed, present)
	}
	m.syncFence(managed, present)
	// Announcements.
	for a, g := range m.garps {
		if _, ok := m.held[a]; !ok {
			delete(m.garps, a)
			continue
		}
		if now.Before(g.next) {
			next = minTime(next, g.next)
			continue
		}
		if err := m.ann.Announce(a); err != nil {
			m.cfg.Log.Warn("announce failed", "vip", a.String(), "err", err)
			m.emit(Event{Kind: EventError, Address: a, Err: err})
		} else if g.first {
			g.first = false
			m.emit(Event{Kind: EventAnnounced, Address: a, Epoch: m.held[a].epoch})
		}
		g.left--
		switch {
		case g.left > 0:
			g.next = now.Add(m.cfg.GARPInterval)
		case m.cfg.GARPRefresh > 0:
			g.left, g.next = 1, now.Add(m.cfg.GARPRefresh)
		default:
			delete(m.garps, a)
			continue
		}
		next = minTime(next, g.next)
	}
	return next
}

func (m *Manager) remove(a Address, leaseEnded bool, d Desired) {
	h, had := m.held[a]
	if m.cfg.Fence != nil && had {
		// Dark first: the address carries nothing from here on, even if
		// the removal below fails.
		if err := m.cfg.Fence.Dark(a.IP()); err != nil {
			m.cfg.Log.Error("fence: darken failed", "vip", a.String(), "err", err)
			m.emit(Event{Kind: EventError, Address: a, Err: err})
		}
		delete(m.armed, a.IP())
	}
	removed, err := m.kernel.Remove(a)
	if err != nil {
		m.cfg.Log.Error("remove failed", "vip", a.String(), "err", err)
		m.emit(Event{Kind: EventError, Address: a, Err: err})
		return
	}
	delete(m.held, a)
	delete(m.garps, a)
	if !removed {
		return
	}
	kind := EventRemoved
	if leaseEnded {
		kind = EventFenced
	}
	epoch := h.epoch
	if !had {
		epoch = d.Epoch
	}
	m.cfg.Log.Info("vip removed", "vip", a.String(), "epoch", epoch, "reason", string(kind))
	m.emit(Event{Kind: kind, Address: a, Epoch: epoch})
}

// probeResult is the answer to one acquisition's probe.
type probeResult struct {
	peer net.HardwareAddr
	err  error
}

// needsProbe reports whether holding a as d starts with a probe: a new
// epoch of an address the kernel does not have, probing on, not a
// planned move.
func (m *Manager) needsProbe(a Address, d Desired, present bool) bool {
	h, had := m.held[a]
	newEpoch := !had || h.epoch != d.Epoch
	return !present && newEpoch && m.cfg.ProbeWait > 0 && !d.NoProbe
}

// probeNew probes, all at once, every address of the pass that hold will
// add for a new epoch, and returns the answers: one ProbeWait per pass
// however many addresses arrive together (one after the other, a node
// taking 80 roles spent 80 waits, 2.4 s, before the last was added, and
// its first addresses' one-second kernel lifetimes ran out meanwhile).
func (m *Manager) probeNew(ctx context.Context, managed []Address, desired map[Address]Desired, now time.Time, listed map[Address]bool) map[Address]probeResult {
	var as []Address
	for _, a := range managed {
		d, want := desired[a]
		if !want || !now.Add(m.cfg.FenceGuard).Before(d.Until) {
			continue
		}
		present, err := m.present(a, listed)
		if err == nil && m.needsProbe(a, d, present) {
			as = append(as, a)
		}
	}
	if len(as) == 0 {
		return nil
	}
	answers := m.ann.ProbeAll(ctx, as, func(a Address) net.HardwareAddr { return m.mac(a.Iface) }, m.cfg.ProbeWait)
	res := make(map[Address]probeResult, len(as))
	for i, a := range as {
		res[a] = probeResult{peer: answers[i].Peer, err: answers[i].Err}
	}
	return res
}

// ifacesOf returns the interfaces of the addresses, each once.
func ifacesOf(as []Address) []string {
	var out []string
	for _, a := range as {
		if !slices.Contains(out, a.Iface) {
			out = append(out, a.Iface)
		}
	}
	return out
}

// present answers from the pass's listing, or asks the kernel when the
// listing failed.
func (m *Manager) present(a Address, listed map[Address]bool) (bool, error) {
	if listed != nil {
		return listed[a], nil
	}
	return m.kernel.Present(a)
}

// hold adds or renews a, using the pass's listing and probe answers
// (probeNew).
func (m *Manager) hold(a Address, d Desired, now time.Time, probed map[Address]probeResult, listed map[Address]bool) {
	h, had := m.held[a]
	present, err := m.present(a, listed)
	if err != nil {
		m.emit(Event{Kind: EventError, Address: a, Err: err})
		return
	}
	newEpoch := !had || h.epoch != d.Epoch
	if present && !newEpoch && !h.kernelUntil.Before(d.Until.Add(m.cfg.RenewAhead)) {
		// The kernel's lifetime still covers the lease: nothing to write.
		h.until = d.Until
		m.held[a] = h
		return
	}
	if m.needsProbe(a, d, present) {
		pr, ok := probed[a]
		if !ok { // not probed: it went from the kernel during the probes; next pass
			return
		}
		peer, err := pr.peer, pr.err
		if err != nil {
			m.cfg.Log.Warn("probe failed; not adding", "vip", a.String(), "err", err)
			m.emit(Event{Kind: EventError, Address: a, Epoch: d.Epoch, Err: err})
			return
		}
		if peer != nil {
			m.cfg.Log.Warn("another host answers for the address; not adding", "vip", a.String(), "peer", peer.String())
			m.emit(Event{Kind: EventConflict, Address: a, Epoch: d.Epoch, Peer: peer})
			return
		}
		// The probe took time: the lease may have run out meanwhile.
		now = m.cfg.Now()
		if !now.Add(m.cfg.FenceGuard).Before(d.Until) {
			return
		}
	}
	added, err := m.kernel.Ensure(a, d.Until.Sub(now))
	if err != nil {
		m.cfg.Log.Error("add failed", "vip", a.String(), "err", err)
		m.emit(Event{Kind: EventError, Address: a, Epoch: d.Epoch, Err: err})
		return
	}
	m.held[a] = held{epoch: d.Epoch, until: d.Until, kernelUntil: now.Add(time.Duration(lifetimeSeconds(d.Until.Sub(now))) * time.Second)}
	if !added {
		return
	}
	kind := EventAdded
	if !newEpoch {
		kind = EventRepaired
	}
	m.cfg.Log.Info("vip "+string(kind), "vip", a.String(), "epoch", d.Epoch, "lifetime_s", lifetimeSeconds(d.Until.Sub(now)))
	m.emit(Event{Kind: kind, Address: a, Epoch: d.Epoch})
	m.garps[a] = &garp{left: m.cfg.GARPRepeat, next: now, first: true}
}

// syncFence gives the fence the pass's managed addresses and the lease end
// of every held one, when either changed since it was last written (a
// renewal moves the lease end: one write per renewal, whatever the number
// of addresses).
func (m *Manager) syncFence(managed []Address, listed map[Address]bool) {
	if m.cfg.Fence == nil {
		return
	}
	now := m.cfg.Now()
	gated := make(map[netip.Addr]bool, len(managed))
	for _, a := range managed {
		gated[a.IP()] = true
	}
	live := make(map[netip.Addr]time.Duration, len(m.held))
	changed := !maps.Equal(gated, m.gated) || len(m.armed) != len(m.held)
	for a, h := range m.held {
		if !h.until.After(now) {
			continue // the kernel timer ran out with the lease; the next pass removes it
		}
		live[a.IP()] = h.until.Sub(now)
		changed = changed || !m.armed[a.IP()].Equal(h.until)
	}
	if !changed {
		return
	}
	present := make(map[netip.Addr]bool, len(listed))
	for a, ok := range listed {
		if ok {
			present[a.IP()] = true
		}
	}
	if err := m.cfg.Fence.Sync(slices.Collect(maps.Keys(gated)), present, live); err != nil {
		m.cfg.Log.Error("fence: write failed", "err", err)
		m.emit(Event{Kind: EventError, Err: err})
		return
	}
	m.gated = gated
	clear(m.armed)
	for a, h := range m.held {
		if _, ok := live[a.IP()]; ok {
			m.armed[a.IP()] = h.until
		}
	}
}

// closeFence closes the fence once every address is removed: its rules go
// with it unless an address it gates is still configured.
func (m *Manager) closeFence() {
	if m.cfg.Fence == nil {
		return
	}
	m.passMu.Lock()
	defer m.passMu.Unlock()
	var ifaces []string
	m.mu.Lock()
	for a := range m.managed {
		if !slices.Contains(ifaces, a.Iface) {
			ifaces = append(ifaces, a.Iface)
		}
	}
	m.mu.Unlock()
	present := map[netip.Addr]bool{}
	listed, err := m.kernel.List(ifaces)
	if err != nil {
		// Unknown: keep the rules (they gate, they do not serve).
		for a := range m.gated {
			present[a] = true
		}
	}
	for a, ok := range listed {
		if ok {
			present[a.IP()] = true
		}
	}
	if err := m.cfg.Fence.Close(present); err != nil {
		m.cfg.Log.Warn("fence: close", "err", err)
	}
}

func containsAddr(s []Address, a Address) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
