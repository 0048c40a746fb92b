package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// ErrUnreachable is wrapped by Probe when no datagram got through in time.
var ErrUnreachable = errors.New("unreachable")

// probeEvery is how often Probe resends its datagram.
const probeEvery = 10 * time.Millisecond

// Probe checks that traffic flows from host `from` to host `to` over the
// bridge: it binds a UDP socket to to's address inside to's namespace and
// sends datagrams from from's address inside from's namespace, every 10 ms,
// until one carrying its random token arrives. It returns nil on the first
// arrival, or an error wrapping ErrUnreachable when ctx ends first (give ctx
// a deadline). Only the from -> to direction is tested. Both addresses are
// lab addresses in lab namespaces, so nothing leaves the lab.
func (l *Lab) Probe(ctx context.Context, from, to string) error {
	src, err := l.host(from)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	dst, err := l.host(to)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	var rx, tx *net.UDPConn
	err = inNS(dst.NS, func() (err error) {
		rx, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst.IP, 0)))
		return err
	})
	if err != nil {
		return fmt.Errorf("probe %s->%s: listen: %w", from, to, err)
	}
	defer rx.Close()
	err = inNS(src.NS, func() (err error) {
		tx, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src.IP, 0)), rx.LocalAddr().(*net.UDPAddr))
		return err
	})
	if err != nil {
		return fmt.Errorf("probe %s->%s: dial: %w", from, to, err)
	}
	defer tx.Close()

	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return fmt.Errorf("probe: token: %w", err)
	}
	got := make(chan struct{})
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := rx.Read(buf)
			if err != nil {
				return // closed
			}
			if bytes.Equal(buf[:n], token) {
				close(got)
				return
			}
		}
	}()
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		// Send errors (e.g. no carrier after Crash) just mean "not yet".
		_, _ = tx.Write(token)
		select {
		case <-got:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("probe %s->%s: %w: %w", from, to, ErrUnreachable, ctx.Err())
		case <-t.C:
		}
	}
}
