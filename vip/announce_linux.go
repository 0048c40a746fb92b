package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// Wire is the production Announcer: raw ARP sockets (mdlayher/arp) and
// ICMPv6 sockets (mdlayher/ndp), opened per interface in the caller's
// network namespace and cached.
type Wire struct {
	mu  sync.Mutex
	arp map[string]*arp.Client
	ndp map[string]*ndp.Conn
}

// NewWire returns an announcer; sockets are opened on first use.
func NewWire() *Wire {
	return &Wire{arp: map[string]*arp.Client{}, ndp: map[string]*ndp.Conn{}}
}

// Close closes every cached socket.
func (w *Wire) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, c := range w.arp {
		c.Close()
		delete(w.arp, k)
	}
	for k, c := range w.ndp {
		c.Close()
		delete(w.ndp, k)
	}
}

func openARP(iface string) (*arp.Client, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("open ARP socket on %s: %w", iface, err)
	}
	return c, nil
}

func (w *Wire) arpClient(iface string) (*arp.Client, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.arp[iface]; ok {
		return c, nil
	}
	c, err := openARP(iface)
	if err != nil {
		return nil, err
	}
	w.arp[iface] = c
	return c, nil
}

func (w *Wire) dropARP(iface string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.arp[iface]; ok {
		c.Close()
		delete(w.arp, iface)
	}
}

func (w *Wire) ndpConn(iface string) (*ndp.Conn, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.ndp[iface]; ok {
		return c, nil
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("open NDP socket on %s: %w", iface, err)
	}
	w.ndp[iface] = c
	return c, nil
}

// Announce implements Announcer.
func (w *Wire) Announce(a Address) error {
	if a.IP().Is6() {
		return w.announce6(a)
	}
	c, err := w.arpClient(a.Iface)
	if err != nil {
		return err
	}
	ip := a.IP()
	mac := c.HardwareAddr()
	// Request then reply, both broadcast, sender and target the VIP: the
	// forms keepalived and MetalLB send.
	for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		p, err := arp.NewPacket(op, mac, ip, ethernet.Broadcast, ip)
		if err != nil {
			return fmt.Errorf("build gratuitous ARP for %s: %w", a, err)
		}
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			w.dropARP(a.Iface) // the interface may have been recreated
			return fmt.Errorf("send gratuitous ARP for %s: %w", a, err)
		}
	}
	return nil
}

func (w *Wire) announce6(a Address) error {
	c, err := w.ndpConn(a.Iface)
	if err != nil {
		return err
	}
	ifi, err := net.InterfaceByName(a.Iface)
	if err != nil {
		return err
	}
	na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: a.IP(),
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}}}
	if err := c.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("send unsolicited neighbour advertisement for %s: %w", a, err)
	}
	return nil
}

// Probe implements Announcer. It uses its own socket so that it reads every
// answer while the cached ones only write.
func (w *Wire) Probe(ctx context.Context, a Address, exclude net.HardwareAddr, wait time.Duration) (net.HardwareAddr, error) {
	r := w.ProbeAll(ctx, []Address{a}, func(Address) net.HardwareAddr { return exclude }, wait)
	return r[0].Peer, r[0].Err
}

// maxProbes6 bounds the probes in flight at once (an IPv6 one holds a
// socket of its own).
const maxProbes6 = 64

// ProbeAll implements Announcer. IPv4 addresses share one ARP socket per
// interface: every probe is sent on it and every answer read from it. (With
// a socket per address, each socket heard every other probe and answer:
// a node taking 40 addresses on a segment where four nodes did read 40
// times 160 packets, 200 ms of CPU on the failover's critical path.) IPv6
// addresses are probed each on its own socket, all at once.
func (w *Wire) ProbeAll(ctx context.Context, as []Address, exclude func(Address) net.HardwareAddr, wait time.Duration) []ProbeResult {
	out := make([]ProbeResult, len(as))
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// exclude is the caller's: asked here, on the caller's goroutine, never
	// from the probes' (the manager's caches its MACs in a map).
	ex := make([]net.HardwareAddr, len(as))
	for i, a := range as {
		ex[i] = exclude(a)
	}
	// ARP sockets belong to the network namespace of the thread that opens
	// them: they are opened here, on the caller's (tests run a goroutine
	// locked into a lab namespace), and only then read in goroutines. An
	// IPv6 probe opens its own socket: with more than one probe it runs in
	// a goroutine, in the process's namespace.
	var probes []func()
	v4 := map[string][]int{}
	var ifaces []string
	for i, a := range as {
		if a.IP().Is6() {
			probes = append(probes, func() { out[i].Peer, out[i].Err = w.probe6(ctx, a, ex[i], wait) })
			continue
		}
		if _, ok := v4[a.Iface]; !ok {
			ifaces = append(ifaces, a.Iface)
		}
		v4[a.Iface] = append(v4[a.Iface], i)
	}
	for _, iface := range ifaces {
		idx := v4[iface]
		c, err := openARP(iface)
		if err != nil {
			for _, i := range idx {
				out[i].Err = err
			}
			continue
		}
		probes = append(probes, func() {
			defer c.Close()
			probe4(c, iface, as, idx, ex, deadline, out)
		})
	}
	if len(probes) == 1 {
		probes[0]() // on the caller's thread, in its namespace
		return out
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxProbes6)
	for _, p := range probes {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			p()
		}()
	}
	wg.Wait()
	return out
}

// probe4 sends an RFC 5227 probe for each as[i], i in idx (all on iface),
// on the ARP socket c and reads answers until each has one or the deadline.
func probe4(c *arp.Client, iface string, as []Address, idx []int, exclude []net.HardwareAddr, deadline time.Time, out []ProbeResult) {
	fail := func(err error) {
		for _, i := range idx {
			if out[i].Err == nil && out[i].Peer == nil {
				out[i].Err = err
			}
		}
	}
	if err := c.SetReadDeadline(deadline); err != nil {
		fail(fmt.Errorf("set ARP read deadline on %s: %w", iface, err))
		return
	}
	pending := make(map[netip.Addr][]int, len(idx))
	for _, i := range idx {
		a := as[i]
		ip := a.IP()
		if _, sent := pending[ip]; !sent {
			// RFC 5227 probe: sender IP 0.0.0.0, target hardware address zero.
			p, err := arp.NewPacket(arp.OperationRequest, c.HardwareAddr(), netip.IPv4Unspecified(),
				net.HardwareAddr{0, 0, 0, 0, 0, 0}, ip)
			if err == nil {
				err = c.WriteTo(p, ethernet.Broadcast)
			}
			if err != nil {
				out[i].Err = fmt.Errorf("send ARP probe for %s: %w", a, err)
				continue
			}
		}
		pending[ip] = append(pending[ip], i)
	}
	for len(pending) > 0 {
		r, _, err := c.Read()
		if err != nil {
			var ne net.Error
			if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
				return
			}
			err = fmt.Errorf("read ARP answers on %s: %w", iface, err)
			for _, is := range pending {
				for _, i := range is {
					out[i].Err = err
				}
			}
			return
		}
		if r.Operation != arp.OperationReply {
			continue
		}
		is := pending[r.SenderIP]
		left := is[:0]
		for _, i := range is {
			if bytes.Equal(r.SenderHardwareAddr, exclude[i]) {
				left = append(left, i)
			} else {
				out[i].Peer = r.SenderHardwareAddr
			}
		}
		if len(left) == 0 {
			delete(pending, r.SenderIP)
		} else if len(is) > 0 {
			pending[r.SenderIP] = left
		}
	}
}

func (w *Wire) probe6(ctx context.Context, a Address, exclude net.HardwareAddr, wait time.Duration) (net.HardwareAddr, error) {
	ifi, err := net.InterfaceByName(a.Iface)
	if err != nil {
		return nil, err
	}
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("open NDP socket on %s: %w", a.Iface, err)
	}
	defer c.Close()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		return nil, fmt.Errorf("filter NDP socket on %s: %w", a.Iface, err)
	}
	snm, err := ndp.SolicitedNodeMulticast(a.IP())
	if err != nil {
		return nil, err
	}
	ns := &ndp.NeighborSolicitation{TargetAddress: a.IP(),
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// Without the deadline the read below would block for good, inside
	// Manager.Sync with its lock held.
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set NDP read deadline on %s: %w", a.Iface, err)
	}
	if err := c.WriteTo(ns, nil, snm); err != nil {
		return nil, fmt.Errorf("send neighbour solicitation for %s: %w", a, err)
	}
	for {
		m, _, _, err := c.ReadFrom()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, nil
			}
			return nil, fmt.Errorf("read neighbour advertisements for %s: %w", a, err)
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != a.IP() {
			continue
		}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target && !bytes.Equal(lla.Addr, exclude) {
				return lla.Addr, nil
			}
		}
	}
}
