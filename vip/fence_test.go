package vip_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/harbormaster/harbormaster/vip"
)

// The fence against the real kernel: a held address answers ARP and TCP
// while its live element lasts and goes dark when it runs out, by the
// kernel's clock, though the address stays configured (its lifetime is
// 10 s); a renewal brings it back, Dark cuts it at once, and Close keeps the
// rules while the address is configured and removes them after.
func TestNFTFenceDarkensAtLeaseEnd(t *testing.T) {
	l := newLab(t)
	n1 := l.Nodes()[0]
	var (
		nl    *vip.Netlink
		fence *vip.NFTFence
		ln    net.Listener
	)
	in(t, l, "n1", func() (err error) {
		if nl, err = vip.NewNetlink(); err != nil {
			return err
		}
		if fence, err = vip.NewNFTFence(); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", net.JoinHostPort(labVIP.IP().String(), "7000"))
		if err != nil {
			// The address is not there yet: listen on any.
			ln, err = net.Listen("tcp", ":7000")
		}
		return err
	})
	defer nl.Close()
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := nl.Ensure(labVIP, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ip := labVIP.IP()
	present := map[netip.Addr]bool{ip: true}
	// The lab's S1 sampler counts an address only while the fence lets it
	// through.
	smp, err := l.StartSampler(labVIP.Prefix, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer smp.Stop()
	holders := func() []string {
		time.Sleep(15 * time.Millisecond)
		s, _ := smp.Last()
		if err := smp.Err(); err != nil {
			t.Fatalf("sampler: %v", err)
		}
		return s.Holders
	}
	if h := holders(); len(h) != 1 {
		t.Fatalf("sampler holders before the fence: %v, want n1 (no fence tables yet: configured is held)", h)
	}

	// Gated and not live: dark although configured.
	if err := fence.Sync([]netip.Addr{ip}, present, nil); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if answers(t, l, n1.MAC) {
		t.Fatal("a gated address without a live element answered ARP")
	}
	if h := holders(); len(h) != 0 {
		t.Fatalf("sampler holders of a dark address: %v, want none", h)
	}

	// Live for 400 ms: it answers ARP and TCP, then goes dark near 400 ms.
	const lease = 400 * time.Millisecond
	armed := time.Now()
	if err := fence.Sync([]netip.Addr{ip}, present, map[netip.Addr]time.Duration{ip: lease}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if !answers(t, l, n1.MAC) {
		t.Fatal("a live address did not answer ARP")
	}
	if err := dial(l); err != nil {
		t.Fatalf("TCP to a live address: %v", err)
	}
	if h := holders(); len(h) != 1 {
		t.Fatalf("sampler holders of a live address: %v, want n1", h)
	}
	var dark time.Duration
	for {
		if !answers(t, l, n1.MAC) {
			dark = time.Since(armed)
			break
		}
		if time.Since(armed) > 5*time.Second {
			t.Fatal("the address still answered 5 s after its 400 ms live element")
		}
	}
	// The probe that found it dark was sent up to one probe wait (20 ms)
	// before it returned: dark by lease + 50 ms is the target.
	if dark > lease+50*time.Millisecond {
		t.Fatalf("dark %v after arming for %v, want within %v", dark, lease, lease+50*time.Millisecond)
	}
	t.Logf("dark %v after arming for %v", dark, lease)
	if err := dial(l); err == nil {
		t.Fatal("TCP to a dark address (the client knows its MAC) connected")
	}
	if h := holders(); len(h) != 0 {
		t.Fatalf("sampler holders after the live element ran out: %v, want none", h)
	}

	// A renewal brings it back; Dark cuts it at once.
	if err := fence.Sync([]netip.Addr{ip}, present, map[netip.Addr]time.Duration{ip: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if !answers(t, l, n1.MAC) {
		t.Fatal("a renewed address did not answer")
	}
	// After a failed operation the socket is closed; the next one opens
	// a new one, in the fence's namespace though this thread is not in it.
	vip.DropFenceSocket(fence)
	if err := fence.Sync([]netip.Addr{ip}, present, map[netip.Addr]time.Duration{ip: 20 * time.Second}); err != nil {
		t.Fatalf("re-arming an armed element on a reopened socket: %v", err)
	}
	if !answers(t, l, n1.MAC) {
		t.Fatal("a re-armed address did not answer after the socket was reopened")
	}
	if err := fence.Dark(ip); err != nil {
		t.Fatal(err)
	}
	if answers(t, l, n1.MAC) {
		t.Fatal("an address answered after Dark")
	}
	if err := fence.Dark(ip); err != nil {
		t.Fatalf("Dark of a dark address: %v", err)
	}

	// A second handle (an agent restarted) keeps what the first gated.
	var again *vip.NFTFence
	in(t, l, "n1", func() (err error) { again, err = vip.NewNFTFence(); return err })
	if answers(t, l, n1.MAC) {
		t.Fatal("reinstalling the fence ungated a configured address")
	}
	if err := again.Close(present); err != nil {
		t.Fatal(err)
	}
	if !tableExists(t, l) {
		t.Fatal("Close removed the rules while a gated address was still configured")
	}
	if _, err := nl.Remove(labVIP); err != nil {
		t.Fatal(err)
	}
	if err := fence.Close(nil); err != nil {
		t.Fatal(err)
	}
	if tableExists(t, l) {
		t.Fatal("Close left the rules behind after the addresses were removed")
	}
}

// answers reports whether anyone with mac answers an ARP probe for the lab
// VIP sent from the client.
func answers(t *testing.T, l interface {
	InNamespace(string, func() error) error
}, mac net.HardwareAddr) bool {
	t.Helper()
	w := vip.NewWire()
	defer w.Close()
	var peer net.HardwareAddr
	err := l.InNamespace("c1", func() (err error) {
		peer, err = w.Probe(context.Background(), labVIP, nil, 20*time.Millisecond)
		return err
	})
	if err != nil {
		t.Fatalf("probe from c1: %v", err)
	}
	return peer != nil && peer.String() == mac.String()
}

func dial(l interface {
	InNamespace(string, func() error) error
}) error {
	return l.InNamespace("c1", func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(labVIP.IP().String(), "7000"), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func tableExists(t *testing.T, l interface {
	InNamespace(string, func() error) error
}) bool {
	t.Helper()
	var found bool
	err := l.InNamespace("n1", func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTables()
		if err != nil {
			return err
		}
		for _, tb := range tables {
			found = found || tb.Name == vip.FenceTable
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
