package vip_test

// Tests of the production Kernel (netlink) and Announcer (raw ARP sockets)
// against the real kernel, inside the namespace lab (root only).

import (
	"bytes"
	"context"
	"github.com/harbormaster/harbormaster/chaos/labtest"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/mdlayher/arp"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/vip"
)

func requireLab(t *testing.T) { t.Helper(); labtest.Require(t) }

func newLab(t *testing.T) *lab.Lab {
	t.Helper()
	requireLab(t)
	l, err := lab.New(context.Background(), lab.Options{Nodes: 2, Clients: 1, Name: "viptest"})
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return l
}

var labVIP = vip.Address{Prefix: netip.MustParsePrefix("198.18.0.200/24"), Iface: "eth0"}

func in(t *testing.T, l *lab.Lab, host string, fn func() error) {
	t.Helper()
	if err := l.InNamespace(host, fn); err != nil {
		t.Fatalf("in %s: %v", host, err)
	}
}

func TestNetlinkLifetimesAndKernelBackstop(t *testing.T) {
	l := newLab(t)
	var nl *vip.Netlink
	in(t, l, "n1", func() (err error) { nl, err = vip.NewNetlink(); return err })
	defer nl.Close()

	added, err := nl.Ensure(labVIP, 1500*time.Millisecond)
	if err != nil || !added {
		t.Fatalf("Ensure: added=%v err=%v", added, err)
	}
	valid, ok, err := nl.Lifetime(labVIP)
	if err != nil || !ok || valid != 2 {
		t.Fatalf("kernel valid_lft = %d (present %v, err %v), want 2 (1.5 s rounded up)", valid, ok, err)
	}
	if added, err := nl.Ensure(labVIP, 3*time.Second); err != nil || added {
		t.Fatalf("renewing Ensure: added=%v err=%v, want a replace", added, err)
	}
	if valid, _, _ := nl.Lifetime(labVIP); valid != 3 {
		t.Fatalf("valid_lft after renewal = %d, want 3", valid)
	}
	listed, err := nl.List([]string{labVIP.Iface})
	if err != nil || !listed[labVIP] {
		t.Fatalf("List(%s) = %v, %v: want %s in it", labVIP.Iface, listed, err, labVIP)
	}
	if _, err := nl.List([]string{"nope0"}); err == nil {
		t.Fatal("List of a missing interface: no error")
	}
	if removed, err := nl.Remove(labVIP); err != nil || !removed {
		t.Fatalf("Remove: removed=%v err=%v", removed, err)
	}
	if removed, err := nl.Remove(labVIP); err != nil || removed {
		t.Fatalf("second Remove: removed=%v err=%v, want (false, nil)", removed, err)
	}

	// The kernel backstop: an address whose lifetime runs out is removed by
	// the kernel itself (here 1 s, plus the kernel's ~0.1 s lateness). The
	// wait is a liveness deadline: without the lifetime the address would
	// stay for ever; how late the kernel is, is only logged.
	if _, err := nl.Ensure(labVIP, time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		present, err := nl.Present(labVIP)
		if err != nil {
			t.Fatal(err)
		}
		if !present {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the kernel kept the address %s after its 1 s lifetime", time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("kernel removed the address %s after it was added with a 1 s lifetime", time.Since(start))
}

func TestNetlinkWatchSeesRemovalByHand(t *testing.T) {
	l := newLab(t)
	var nl *vip.Netlink
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var events <-chan struct{}
	in(t, l, "n1", func() (err error) {
		if nl, err = vip.NewNetlink(); err != nil {
			return err
		}
		events, err = nl.Watch(ctx)
		return err
	})
	defer nl.Close()
	if _, err := nl.Ensure(labVIP, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	drain(events)
	if err := exec.Command("ip", "netns", "exec", l.Nodes()[0].NS, "ip", "addr", "del", "198.18.0.200/24", "dev", "eth0").Run(); err != nil {
		t.Fatalf("delete by hand: %v", err)
	}
	select {
	case <-events:
	case <-time.After(10 * time.Second):
		t.Fatal("no netlink event within 10 s of a removal by hand")
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}

// Gratuitous ARP goes out as both request and reply from the holder's MAC,
// and a probe finds another host answering for the address.
func TestWireAnnounceAndProbe(t *testing.T) {
	l := newLab(t)
	n1, n2 := l.Nodes()[0], l.Nodes()[1]
	var nl1, nl2 *vip.Netlink
	in(t, l, "n1", func() (err error) { nl1, err = vip.NewNetlink(); return err })
	in(t, l, "n2", func() (err error) { nl2, err = vip.NewNetlink(); return err })
	defer nl1.Close()
	defer nl2.Close()
	w1 := vip.NewWire()
	defer w1.Close()

	// Nobody has the address: the probe hears nothing.
	var peer net.HardwareAddr
	in(t, l, "n1", func() (err error) {
		peer, err = w1.Probe(context.Background(), labVIP, n1.MAC, 100*time.Millisecond)
		return err
	})
	if peer != nil {
		t.Fatalf("probe of a free address answered by %s", peer)
	}
	// n2 has it: the probe from n1 hears n2's MAC. Probe returns at the
	// first answer: its wait is a liveness deadline.
	if _, err := nl2.Ensure(labVIP, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	in(t, l, "n1", func() (err error) {
		peer, err = w1.Probe(context.Background(), labVIP, n1.MAC, 5*time.Second)
		return err
	})
	if !bytes.Equal(peer, n2.MAC) {
		t.Fatalf("probe answered by %v, want n2's %s", peer, n2.MAC)
	}
	// Many addresses in one ProbeAll, on one socket: each gets its own
	// answer; a free one none, after the wait.
	free := vip.Address{Prefix: netip.MustParsePrefix("198.18.0.201/24"), Iface: "eth0"}
	var res []vip.ProbeResult
	start := time.Now()
	in(t, l, "n1", func() error {
		res = w1.ProbeAll(context.Background(), []vip.Address{free, labVIP, labVIP},
			func(vip.Address) net.HardwareAddr { return n1.MAC }, 200*time.Millisecond)
		return nil
	})
	if took := time.Since(start); len(res) != 3 || res[0].Peer != nil || !bytes.Equal(res[1].Peer, n2.MAC) ||
		!bytes.Equal(res[2].Peer, n2.MAC) || took < 200*time.Millisecond {
		t.Fatalf("ProbeAll(free, held by n2, again) = %+v after %v; want nil, n2's %s twice, after the 200 ms wait", res, took, n2.MAC)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("ProbeAll: %v", r.Err)
		}
	}
	// Excluding n2's own MAC, its answer does not count.
	in(t, l, "n1", func() error {
		res = w1.ProbeAll(context.Background(), []vip.Address{labVIP},
			func(vip.Address) net.HardwareAddr { return n2.MAC }, 100*time.Millisecond)
		return nil
	})
	if res[0].Peer != nil || res[0].Err != nil {
		t.Fatalf("ProbeAll excluding n2 = %+v, want no answer", res[0])
	}
	if _, err := nl2.Remove(labVIP); err != nil {
		t.Fatal(err)
	}

	// n1 takes it and announces; the client sees a request and a reply.
	if _, err := nl1.Ensure(labVIP, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var cl *arp.Client
	in(t, l, "c1", func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		cl, err = arp.Dial(ifi)
		return err
	})
	defer cl.Close()
	// The client's packet socket is open (arp.Dial returned): the kernel
	// queues the announcement for it whether or not Read has begun.
	got := map[arp.Operation]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cl.SetReadDeadline(time.Now().Add(2 * time.Second))
		for len(got) < 2 {
			p, _, err := cl.Read()
			if err != nil {
				return
			}
			if p.SenderIP == labVIP.IP() && p.TargetIP == labVIP.IP() && bytes.Equal(p.SenderHardwareAddr, n1.MAC) {
				got[p.Operation] = true
			}
		}
	}()
	in(t, l, "n1", func() error { return w1.Announce(labVIP) })
	<-done
	if !got[arp.OperationRequest] || !got[arp.OperationReply] {
		t.Fatalf("gratuitous ARP seen by the client: %v, want a request and a reply from n1", got)
	}
}
