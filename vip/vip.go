// Package vip holds virtual IP addresses on Linux interfaces: it adds an
// address with kernel lifetimes tied to the holder's lease (so the kernel
// removes it by itself if the agent dies), renews and removes it, announces
// it with gratuitous ARP or unsolicited neighbour advertisements, and probes
// for anyone else answering for it. It knows nothing of Raft: a Manager
// drives the node towards the set of addresses it is told to hold.
package vip

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Address is one virtual IP (with its prefix length) on one interface.
type Address struct {
	Prefix netip.Prefix
	Iface  string
}

func (a Address) String() string { return a.Prefix.String() + "@" + a.Iface }

// Compare orders addresses by IP, prefix length, then interface, without
// formatting them (a pass sorts every managed address).
func (a Address) Compare(b Address) int {
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()); c != 0 {
		return c
	}
	return strings.Compare(a.Iface, b.Iface)
}

// IP returns the address without its prefix length.
func (a Address) IP() netip.Addr { return a.Prefix.Addr() }

// Kernel changes and reads the interface addresses of this node (netlink in
// production, a fake in tests). Implementations are safe for concurrent use.
type Kernel interface {
	// Ensure adds the address, or replaces it to renew its lifetime: the
	// kernel removes it by itself after lifetime (whole seconds, rounded
	// up). added is true if the address was not present before.
	Ensure(a Address, lifetime time.Duration) (added bool, err error)
	// Remove deletes the address; removed is false if it was not present.
	Remove(a Address) (removed bool, err error)
	// Present reports whether the address is configured on its interface.
	Present(a Address) (bool, error)
	// List returns the addresses configured on the interfaces (one read
	// per interface: a pass over many addresses reads the kernel once).
	List(ifaces []string) (map[Address]bool, error)
	// HardwareAddr returns the interface's MAC address.
	HardwareAddr(iface string) (net.HardwareAddr, error)
	// Watch returns a channel that receives a value (coalesced) whenever
	// an address or link changes, until ctx ends.
	Watch(ctx context.Context) (<-chan struct{}, error)
}

// Announcer speaks ARP (IPv4) and NDP (IPv6) for an address.
type Announcer interface {
	// Announce tells the segment that this node now answers for a: a
	// gratuitous ARP sent as both request and reply (some switches learn
	// only from one), or an unsolicited neighbour advertisement.
	Announce(a Address) error
	// Probe asks who answers for a (an RFC 5227 ARP probe, or a neighbour
	// solicitation) and waits up to wait for answers other than from
	// exclude. It returns the hardware address of the first other answer,
	// or nil if nobody else answered.
	Probe(ctx context.Context, a Address, exclude net.HardwareAddr, wait time.Duration) (net.HardwareAddr, error)
	// ProbeAll is Probe for many addresses at once, with one wait for
	// all: the answer for each address in the order of as, answers from
	// exclude(address) not counting (asked on the caller's goroutine). It
	// returns when every address has an answer or the wait is over.
	ProbeAll(ctx context.Context, as []Address, exclude func(Address) net.HardwareAddr, wait time.Duration) []ProbeResult
}

// ProbeResult is ProbeAll's answer for one address: the hardware address
// of the first other host that answered (nil: none), or the error that
// kept it from being probed.
type ProbeResult struct {
	Peer net.HardwareAddr
	Err  error
}

// lifetimeSeconds rounds a lease remainder up to the kernel's whole seconds
// (at least 1).
func lifetimeSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// ParseAddress parses "198.18.0.100/24" or "fd00::100/64" on an interface.
func ParseAddress(prefix, iface string) (Address, error) {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return Address{}, fmt.Errorf("address %q: %w", prefix, err)
	}
	if iface == "" {
		return Address{}, fmt.Errorf("address %s: no interface", prefix)
	}
	return Address{Prefix: p, Iface: iface}, nil
}

// Fence is the kernel-side dead-man of the held addresses (S5 in
// milliseconds): traffic to and from a managed address passes only while
// the kernel's timer for it, set to the lease's end at each renewal, has not
// run out. If the agent dies or freezes, the address goes dark at the lease
// end by the kernel's clock, where the address lifetime (whole seconds)
// would leave it answering for up to a second more. The lifetime stays as
// the second backstop.
type Fence interface {
	// Sync gates every managed address and makes each of live usable for
	// its duration from now; a managed address not in live is dark. An
	// address no longer managed is ungated once present no longer has it.
	Sync(managed []netip.Addr, present map[netip.Addr]bool, live map[netip.Addr]time.Duration) error
	// Dark makes a dark now (before its removal).
	Dark(a netip.Addr) error
	// Close releases the fence's handle. With none of its addresses in
	// present (a graceful stop removed them), it also removes its rules.
	Close(present map[netip.Addr]bool) error
}
