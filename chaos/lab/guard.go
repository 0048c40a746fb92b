package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
)

// labRange is the only range lab traffic may use (RFC 2544 benchmarking).
var labRange = netip.MustParsePrefix("198.18.0.0/15")

// ErrNotInLab is wrapped by every refusal of GuardHere.
var ErrNotInLab = errors.New("not inside the lab")

// InLabRange reports whether a is inside 198.18.0.0/15 (IPv4-mapped IPv6
// addresses are unmapped first). The zero Addr is not.
func InLabRange(a netip.Addr) bool {
	return a.IsValid() && labRange.Contains(a.Unmap())
}

// GuardHere is the safety check every lab program that sends traffic calls
// first (DESIGN.md §7). It returns nil only if every address on every
// interface of the calling thread's network namespace is a loopback address
// or inside 198.18.0.0/15, and every target is inside 198.18.0.0/15;
// otherwise an error wrapping ErrNotInLab that names the offending address.
// In the root namespace of a real machine it refuses. A process started with
// `ip netns exec` has all its threads in one namespace; an in-process caller
// should run it on a thread locked into the namespace it is about to use
// (see Lab.InNamespace).
func GuardHere(targets ...netip.Addr) error {
	for _, t := range targets {
		if !InLabRange(t) {
			return fmt.Errorf("guard: %w: target %v is outside %v", ErrNotInLab, t, labRange)
		}
	}
	// One netlink request, on this thread, so one namespace is read.
	var (
		addrs []netlink.Addr
		err   error
	)
	runtime.LockOSThread()
	for try := 0; try < 5; try++ {
		addrs, err = netlink.AddrList(nil, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	runtime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("guard: list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return fmt.Errorf("guard: %w: unparsable address %v on link %d", ErrNotInLab, a.IP, a.LinkIndex)
		}
		if ip = ip.Unmap(); ip.IsLoopback() || InLabRange(ip) {
			continue
		}
		return fmt.Errorf("guard: %w: address %v on link %d (%s) is neither loopback nor in %v",
			ErrNotInLab, ip, a.LinkIndex, a.Label, labRange)
	}
	return nil
}
