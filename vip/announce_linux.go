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
	if a.IP().Is6() {
		return w.probe6(ctx, a, exclude, wait)
	}
	c, err := openARP(a.Iface)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ip := a.IP()
	// RFC 5227 probe: sender IP 0.0.0.0, target hardware address zero.
	p, err := arp.NewPacket(arp.OperationRequest, c.HardwareAddr(), netip.IPv4Unspecified(),
		net.HardwareAddr{0, 0, 0, 0, 0, 0}, ip)
	if err != nil {
		return nil, fmt.Errorf("build ARP probe for %s: %w", a, err)
	}
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
		return nil, fmt.Errorf("send ARP probe for %s: %w", a, err)
	}
	for {
		r, _, err := c.Read()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, nil
			}
			return nil, fmt.Errorf("read ARP answers for %s: %w", a, err)
		}
		if r.Operation == arp.OperationReply && r.SenderIP == ip && !bytes.Equal(r.SenderHardwareAddr, exclude) {
			return r.SenderHardwareAddr, nil
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
