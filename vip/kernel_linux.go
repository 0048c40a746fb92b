package vip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the production Kernel: address changes through rtnetlink in
// the caller's network namespace.
type Netlink struct {
	h *netlink.Handle
}

// NewNetlink opens a netlink handle in the current network namespace. The
// handle stays bound to that namespace.
func NewNetlink() (*Netlink, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &Netlink{h: h}, nil
}

// Close releases the handle.
func (n *Netlink) Close() { n.h.Close() }

func (n *Netlink) nlAddr(a Address, lifetime time.Duration) (netlink.Link, *netlink.Addr, error) {
	l, err := n.h.LinkByName(a.Iface)
	if err != nil {
		return nil, nil, fmt.Errorf("interface %s: %w", a.Iface, err)
	}
	ipn := &net.IPNet{IP: a.Prefix.Addr().AsSlice(), Mask: net.CIDRMask(a.Prefix.Bits(), a.Prefix.Addr().BitLen())}
	addr := &netlink.Addr{IPNet: ipn, Label: ""}
	if lifetime > 0 {
		s := lifetimeSeconds(lifetime)
		addr.ValidLft, addr.PreferedLft = s, s
	}
	if a.Prefix.Addr().Is6() {
		// Skip duplicate address detection: the probe already ran, and DAD
		// would keep the address tentative (unusable) for a second.
		addr.Flags = unix.IFA_F_NODAD
	}
	return l, addr, nil
}

// Ensure implements Kernel: an exclusive add, and a replace (the renewal
// of the lifetime) when the address is there already; no address dump.
func (n *Netlink) Ensure(a Address, lifetime time.Duration) (bool, error) {
	l, addr, err := n.nlAddr(a, lifetime)
	if err != nil {
		return false, err
	}
	err = n.h.AddrAdd(l, addr)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return false, fmt.Errorf("add %s: %w", a, err)
	}
	if err := n.h.AddrReplace(l, addr); err != nil {
		return false, fmt.Errorf("renew %s: %w", a, err)
	}
	return false, nil
}

// List implements Kernel.
func (n *Netlink) List(ifaces []string) (map[Address]bool, error) {
	out := map[Address]bool{}
	for _, iface := range ifaces {
		l, err := n.h.LinkByName(iface)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", iface, err)
		}
		addrs, err := n.h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", iface, err)
		}
		for _, x := range addrs {
			ip, ok := netip.AddrFromSlice(x.IP)
			if !ok {
				continue
			}
			ones, _ := x.Mask.Size()
			out[Address{Prefix: netip.PrefixFrom(ip.Unmap(), ones), Iface: iface}] = true
		}
	}
	return out, nil
}

// Remove implements Kernel.
func (n *Netlink) Remove(a Address) (bool, error) {
	l, addr, err := n.nlAddr(a, 0)
	if err != nil {
		return false, err
	}
	if err := n.h.AddrDel(l, addr); err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("remove %s: %w", a, err)
	}
	return true, nil
}

// Present implements Kernel.
func (n *Netlink) Present(a Address) (bool, error) {
	l, err := n.h.LinkByName(a.Iface)
	if err != nil {
		return false, fmt.Errorf("interface %s: %w", a.Iface, err)
	}
	fam := netlink.FAMILY_V4
	if a.Prefix.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := n.h.AddrList(l, fam)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", a.Iface, err)
	}
	want := a.Prefix.Addr().AsSlice()
	for _, x := range addrs {
		ones, _ := x.Mask.Size()
		if x.IP.Equal(want) && ones == a.Prefix.Bits() {
			return true, nil
		}
	}
	return false, nil
}

// Lifetime returns the valid lifetime the kernel reports for a, in seconds
// (for tests and diagnostics); ok is false if a is not present.
func (n *Netlink) Lifetime(a Address) (valid int, ok bool, err error) {
	l, err := n.h.LinkByName(a.Iface)
	if err != nil {
		return 0, false, err
	}
	addrs, err := n.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return 0, false, err
	}
	for _, x := range addrs {
		ones, _ := x.Mask.Size()
		if x.IP.Equal(a.Prefix.Addr().AsSlice()) && ones == a.Prefix.Bits() {
			return x.ValidLft, true, nil
		}
	}
	return 0, false, nil
}

// HardwareAddr implements Kernel.
func (n *Netlink) HardwareAddr(iface string) (net.HardwareAddr, error) {
	l, err := n.h.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	return l.Attrs().HardwareAddr, nil
}

// Watch implements Kernel with address and link subscriptions in the
// current namespace.
func (n *Netlink) Watch(ctx context.Context) (<-chan struct{}, error) {
	out := make(chan struct{}, 1)
	addrs := make(chan netlink.AddrUpdate, 64)
	links := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	failed := make(chan struct{}, 1)
	onErr := func(error) {
		select {
		case failed <- struct{}{}:
		default:
		}
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		close(done)
		return nil, fmt.Errorf("subscribe to address changes: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		close(done)
		return nil, fmt.Errorf("subscribe to link changes: %w", err)
	}
	poke := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-addrs:
				if !ok {
					return
				}
				poke()
			case _, ok := <-links:
				if !ok {
					return
				}
				poke()
			case <-failed:
				// The subscription broke; the manager's ticker still repairs
				// drift, only later.
				poke()
				return
			}
		}
	}()
	return out, nil
}
