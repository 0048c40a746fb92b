package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/harbormaster/harbormaster/chaos/labtest"
)

// requireLab skips the test unless it can build a lab (root, ip and nft
// present); with HM_REQUIRE_LAB=1 it fails instead of skipping, so CI cannot
// pass by silently skipping the lab.
func requireLab(t *testing.T) { t.Helper(); labtest.Require(t) }

// newLab builds a lab closed by t.Cleanup, which also checks that none of
// its namespaces is left.
func newLab(t *testing.T, opts Options) *Lab {
	t.Helper()
	requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if left := labNamespaces(t, l.Prefix()); len(left) > 0 {
			t.Errorf("namespaces left after Close: %v", left)
		}
	})
	return l
}

// labNamespaces returns the names `ip netns list` shows with the prefix.
func labNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			names = append(names, f[0])
		}
	}
	return names
}

// reaches reports whether a probe from -> to gets through within d.
func reaches(l *Lab, from, to string, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return l.Probe(ctx, from, to) == nil
}

// Durations for reachability: a working path answers within milliseconds;
// a cut one is declared cut after cutWait without an answer.
const (
	okWait  = 2 * time.Second
	cutWait = 300 * time.Millisecond
)

func requireFlow(t *testing.T, l *Lab, from, to string, want bool) {
	t.Helper()
	wait := okWait
	if !want {
		wait = cutWait
	}
	if got := reaches(l, from, to, wait); got != want {
		t.Fatalf("traffic %s->%s flows=%t, want %t (faults %v)", from, to, got, want, l.Faults())
	}
}

// eventually polls cond every 5 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func addAddr(t *testing.T, l *Lab, host string, p netip.Prefix) {
	t.Helper()
	h := l.hosts[host]
	link, err := h.h.LinkByName(h.Iface)
	if err == nil {
		err = h.h.AddrAdd(link, &netlink.Addr{IPNet: prefixToIPNet(p)})
	}
	if err != nil {
		t.Fatalf("add %v on %s: %v", p, host, err)
	}
}

func delAddr(t *testing.T, l *Lab, host string, p netip.Prefix) {
	t.Helper()
	h := l.hosts[host]
	link, err := h.h.LinkByName(h.Iface)
	if err == nil {
		err = h.h.AddrDel(link, &netlink.Addr{IPNet: prefixToIPNet(p)})
	}
	if err != nil {
		t.Fatalf("delete %v on %s: %v", p, host, err)
	}
}

// sendToVIP sends one UDP datagram from host to the VIP (port 9, discard),
// which makes the host resolve the VIP by ARP.
func sendToVIP(t *testing.T, l *Lab, host string) {
	t.Helper()
	err := l.InNamespace(host, func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(vip.Addr(), 9).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	})
	if err != nil {
		t.Fatalf("send to VIP from %s: %v", host, err)
	}
}

// running reports whether pid is a live, non-zombie process.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// rootLinks lists the links of the namespace of the test's own thread.
func rootLinks(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("list root links: %v", err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

func TestTopology(t *testing.T) {
	requireLab(t)
	before := rootLinks(t)
	l := newLab(t, Options{Nodes: 3, Clients: 2, Name: "topo"})

	// The caller's thread is still in the root namespace, which gained
	// nothing.
	runtime.LockOSThread()
	self, err1 := statNS("/proc/thread-self/ns/net")
	main, err2 := statNS("/proc/self/ns/net") // the main thread's
	runtime.UnlockOSThread()
	if err1 != nil || err2 != nil || self != main {
		t.Fatalf("test thread left the root namespace: %v %v %v %v", self, main, err1, err2)
	}
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Fatalf("root links changed: %v -> %v", before, after)
	}

	if !strings.HasPrefix(l.Prefix(), fmt.Sprintf("hmlab-%d-", os.Getpid())) || !strings.HasSuffix(l.Prefix(), "-topo") {
		t.Fatalf("prefix %q", l.Prefix())
	}
	want := []string{l.SwitchNS()}
	for i, n := range l.Nodes() {
		wantIP := netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)})
		if n.Name != fmt.Sprintf("n%d", i+1) || n.IP != wantIP || n.Iface != "eth0" ||
			n.MAC.String() != fmt.Sprintf("02:48:4d:00:00:%02x", 11+i) {
			t.Fatalf("node %d: %+v", i, n)
		}
		want = append(want, n.NS)
	}
	for i, c := range l.Clients() {
		if c.Name != fmt.Sprintf("c%d", i+1) || c.IP != netip.AddrFrom4([4]byte{198, 18, 0, byte(101 + i)}) {
			t.Fatalf("client %d: %+v", i, c)
		}
		want = append(want, c.NS)
	}
	got := labNamespaces(t, l.Prefix())
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("namespaces %v, want %v", got, want)
	}

	// Every port is attached to br0 and up in the switch namespace.
	err := l.use(func() error {
		for _, n := range l.Hosts() {
			port, err := l.sw.LinkByName(n.Port)
			if err != nil {
				return err
			}
			if port.Attrs().MasterIndex != l.br.Attrs().Index || port.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Errorf("port %s: master %d up %v", n.Port, port.Attrs().MasterIndex, port.Attrs().Flags)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// eth0 in n1 carries the address and MAC; the static neighbour of n2
	// is in c1's table.
	err = l.InNamespace("n1", func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if link.Attrs().HardwareAddr.String() != "02:48:4d:00:00:0b" {
			return fmt.Errorf("n1 eth0 MAC %v", link.Attrs().HardwareAddr)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != "198.18.0.11/24" {
			return fmt.Errorf("n1 eth0 addresses %v", addrs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := l.Host("n2")
	if mac, ok := l.ARPCache("c1", n2.IP); !ok || mac.String() != n2.MAC.String() {
		t.Fatalf("c1 neighbour for n2: %v %v", mac, ok)
	}

	requireFlow(t, l, "n1", "n2", true)
	requireFlow(t, l, "n3", "n1", true)
	requireFlow(t, l, "c2", "n3", true)

	// Threads that entered lab namespaces are destroyed: soon every
	// thread of this process is back to the root namespace only.
	eventually(t, 2*time.Second, "every thread in the root namespace", func() bool {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			id, err := statNS("/proc/self/task/" + task.Name() + "/ns/net")
			if err == nil && id != self {
				return false
			}
		}
		return true
	})
}

func TestPartitionAndHeal(t *testing.T) {
	l := newLab(t, Options{})
	requireFlow(t, l, "n1", "n2", true)

	if err := l.Partition([]string{"n1"}, []string{"n2", "n3"}); err != nil {
		t.Fatal(err)
	}
	requireFlow(t, l, "n1", "n2", false)
	requireFlow(t, l, "n3", "n1", false)
	requireFlow(t, l, "n2", "n3", true)
	requireFlow(t, l, "c1", "n1", true) // unlisted hosts talk to everyone
	requireFlow(t, l, "n2", "c1", true)

	// The cut is at layer 2: a client on the other side cannot even
	// resolve a VIP held by n1, so it can neither reach it nor learn of it.
	addAddr(t, l, "n1", vip)
	sendToVIP(t, l, "n2")
	time.Sleep(cutWait) // give a leaking ARP reply time to arrive
	if mac, ok := l.ARPCache("n2", vip.Addr()); ok {
		t.Fatalf("n2 resolved the VIP across the partition: %v", mac)
	}

	if err := l.Partition([]string{"n1", "x9"}); err == nil {
		t.Fatal("partition with an unknown host succeeded")
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	requireFlow(t, l, "n1", "n2", true)
	requireFlow(t, l, "n3", "n1", true)
	n1, _ := l.Host("n1")
	eventually(t, 5*time.Second, "n2 resolves the VIP after Heal", func() bool {
		sendToVIP(t, l, "n2")
		mac, ok := l.ARPCache("n2", vip.Addr())
		return ok && mac.String() == n1.MAC.String()
	})

	var kinds []FaultKind
	for _, f := range l.Faults() {
		if f.At.IsZero() {
			t.Fatalf("fault without time: %+v", f)
		}
		kinds = append(kinds, f.Kind)
	}
	if !slices.Equal(kinds, []FaultKind{FaultPartition, FaultHeal}) {
		t.Fatalf("faults %v", kinds)
	}
}

func TestOneWayAndLoss(t *testing.T) {
	l := newLab(t, Options{})
	if err := l.OneWay("n1", "n2"); err != nil {
		t.Fatal(err)
	}
	requireFlow(t, l, "n1", "n2", false)
	requireFlow(t, l, "n2", "n1", true)
	requireFlow(t, l, "n1", "n3", true)

	if err := l.Loss("n3", 100); err != nil {
		t.Fatal(err)
	}
	requireFlow(t, l, "n3", "c1", false)
	requireFlow(t, l, "c1", "n3", false)
	if err := l.Loss("n3", 0); err != nil {
		t.Fatal(err)
	}
	requireFlow(t, l, "c1", "n3", true)
	requireFlow(t, l, "n1", "n2", false) // one-way still there

	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	requireFlow(t, l, "n1", "n2", true)
}

// TestSetLinksReplacesTheLinkFaults: SetLinks installs exactly the cuts and
// loss it is given, replacing a partition and earlier one-way cuts, and
// keeps a crashed port down.
func TestSetLinksReplacesTheLinkFaults(t *testing.T) {
	l := newLab(t, Options{})
	if err := l.Partition([]string{"n1"}, []string{"n2", "n3"}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetLinks([]Cut{{From: "n2", To: "n3"}}, map[string]int{"c1": 100}); err != nil {
		t.Fatal(err)
	}
	requireFlow(t, l, "n1", "n2", true) // the partition is gone
	requireFlow(t, l, "n2", "n3", false)
	requireFlow(t, l, "n3", "n2", true)
	requireFlow(t, l, "c1", "n1", false)
	if err := l.Crash("n1"); err != nil {
		t.Fatal(err)
	}
	if err := l.SetLinks(nil, nil); err != nil {
		t.Fatal(err)
	}
	requireFlow(t, l, "n2", "n3", true)
	requireFlow(t, l, "c1", "n2", true)
	requireFlow(t, l, "n2", "n1", false) // still crashed
	for _, bad := range [][]Cut{{{From: "n1", To: "x9"}}, {{From: "n2", To: "n2"}}} {
		if err := l.SetLinks(bad, nil); err == nil {
			t.Fatalf("SetLinks(%v) succeeded", bad)
		}
	}
	if err := l.SetLinks(nil, map[string]int{"n1": 101}); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("SetLinks with 101%% loss: %v", err)
	}
}

func TestCrashKillAllRestore(t *testing.T) {
	l := newLab(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	inN1 := l.Command(ctx, "n1", "sleep", "100")
	inN2 := l.Command(ctx, "n2", "sleep", "100")
	inRoot := exec.CommandContext(ctx, "sleep", "100")
	for _, c := range []*exec.Cmd{inN1, inN2, inRoot} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	defer func() { _ = inRoot.Process.Kill(); _ = inRoot.Wait() }()
	eventually(t, 2*time.Second, "sleeps inside n1 and n2", func() bool {
		return l.Contains("n1", inN1.Process.Pid) && l.Contains("n2", inN2.Process.Pid)
	})
	if l.Contains("n2", inRoot.Process.Pid) || l.Contains("n1", inN2.Process.Pid) {
		t.Fatal("Contains: process reported in the wrong namespace")
	}

	n, err := l.KillAll("n2")
	if err != nil || n != 1 {
		t.Fatalf("KillAll(n2) = %d, %v; want 1 process", n, err)
	}
	if err := inN2.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("sleep in n2: %v, want killed", err)
	}

	requireFlow(t, l, "n2", "n1", true)
	if err := l.Crash("n1"); err != nil {
		t.Fatal(err)
	}
	if err := inN1.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("sleep in n1 after Crash: %v, want killed", err)
	}
	requireFlow(t, l, "n2", "n1", false)
	requireFlow(t, l, "n1", "n3", false)

	if !running(inRoot.Process.Pid) {
		t.Fatal("process in the root namespace was killed")
	}

	if err := l.Restore("n1"); err != nil {
		t.Fatal(err)
	}
	requireFlow(t, l, "n2", "n1", true)

	if cmd := l.Command(ctx, "nope", "true"); cmd.Run() == nil {
		t.Fatal("command on an unknown host ran")
	}
}

var vip = netip.MustParsePrefix("198.18.0.200/24")

func TestSamplerAndARP(t *testing.T) {
	l := newLab(t, Options{})
	s, err := l.StartSampler(vip, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	seen := func(want ...string) func() bool {
		return func() bool { last, ok := s.Last(); return ok && slices.Equal(last.Holders, want) }
	}
	eventually(t, time.Second, "no holder", seen())
	addAddr(t, l, "n2", vip)
	eventually(t, time.Second, "n2 holds", seen("n2"))

	// A client resolves the VIP to n2's MAC by ARP.
	sendToVIP(t, l, "c1")
	n2, _ := l.Host("n2")
	eventually(t, 2*time.Second, "c1 learns the VIP", func() bool {
		mac, ok := l.ARPCache("c1", vip.Addr())
		return ok && mac.String() == n2.MAC.String()
	})

	delAddr(t, l, "n2", vip)
	eventually(t, time.Second, "nobody holds", seen())
	samples := s.Stop()
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	var steps [][]string
	for _, c := range Holders(samples) {
		steps = append(steps, c.Holders)
	}
	if len(steps) != 3 || steps[0] != nil || !slices.Equal(steps[1], []string{"n2"}) || steps[2] != nil {
		t.Fatalf("holder timeline %v", steps)
	}
	if longest, ivs := DualHolder(samples); longest != 0 || len(ivs) != 0 {
		t.Fatalf("dual holder with one holder: %v %v", longest, ivs)
	}
}

// TestSamplerSet: one sampler watches several addresses, each pass one
// dump per node, and tells their holders apart; Of turns one address's
// column into samples DualHolder reads.
func TestSamplerSet(t *testing.T) {
	l := newLab(t, Options{})
	a := netip.MustParsePrefix("198.18.0.201/24")
	b := netip.MustParsePrefix("198.18.0.202/24")
	if _, err := l.StartSamplerSet([]netip.Addr{a.Addr(), a.Addr()}, 0); err == nil {
		t.Fatal("a set with a duplicate address accepted")
	}
	s, err := l.StartSamplerSet([]netip.Addr{vip.Addr(), a.Addr(), b.Addr()}, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, l, "n1", vip)
	addAddr(t, l, "n2", a)
	addAddr(t, l, "n3", a)
	addAddr(t, l, "n3", b)
	want := [][]string{{"n1"}, {"n2", "n3"}, {"n3"}}
	eventually(t, time.Second, "every address seen", func() bool {
		last, ok := s.Last()
		return ok && slices.EqualFunc(last.Each, want, slices.Equal)
	})
	samples := s.Stop()
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	last := samples[len(samples)-1]
	if !slices.Equal(last.Holders, []string{"n1"}) {
		t.Fatalf("Holders %v, want the first address's [n1]", last.Holders)
	}
	for i, dual := range []bool{false, true, false} {
		if _, ivs := DualHolder(Of(samples, i)); (len(ivs) > 0) != dual {
			t.Errorf("address #%d: dual-holder intervals %+v, want dual %t", i, ivs, dual)
		}
	}
}

func TestDualHolderSynthetic(t *testing.T) {
	t0 := time.Now()
	at := func(ms int, h ...string) Sample {
		return Sample{At: t0.Add(time.Duration(ms) * time.Millisecond), Holders: h}
	}
	samples := []Sample{
		at(0), at(10, "n1"), at(20, "n1", "n2"), at(30, "n1", "n2"), at(40, "n2"),
		at(50, "n2", "n3"), at(60, "n2"),
		at(70, "n1", "n2"), at(80, "n1", "n2", "n3"), at(90, "n2", "n3"), at(100, "n1", "n2"), at(110),
	}
	longest, ivs := DualHolder(samples)
	if longest != 30*time.Millisecond || len(ivs) != 3 {
		t.Fatalf("longest %v intervals %+v", longest, ivs)
	}
	if ivs[0].Duration() != 10*time.Millisecond || ivs[0].Samples != 2 || !slices.Equal(ivs[0].Holders, []string{"n1", "n2"}) {
		t.Fatalf("interval 0: %+v", ivs[0])
	}
	if ivs[1].Duration() != 0 || ivs[1].Samples != 1 {
		t.Fatalf("interval 1: %+v", ivs[1])
	}
	if ivs[2].Samples != 4 || !slices.Equal(ivs[2].Holders, []string{"n1", "n2", "n3"}) {
		t.Fatalf("interval 2: %+v", ivs[2])
	}
	if l, ivs := DualHolder(nil); l != 0 || ivs != nil {
		t.Fatal("empty samples")
	}
	if got := len(Holders(samples)); got != 11 {
		t.Fatalf("timeline has %d changes, want 11", got)
	}
}

func TestDualHolderReal(t *testing.T) {
	l := newLab(t, Options{})
	s, err := l.StartSampler(vip, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, l, "n1", vip)
	addBegin := time.Now()
	addAddr(t, l, "n2", vip)
	start := time.Now()
	time.Sleep(200 * time.Millisecond) // the overlap being measured
	delAddr(t, l, "n1", vip)
	overlap := time.Since(start)
	// The address came at some instant of the add's call: the overlap is
	// at most overlap plus that call.
	most := overlap + start.Sub(addBegin)
	eventually(t, time.Second, "n2 alone", func() bool {
		last, ok := s.Last()
		return ok && slices.Equal(last.Holders, []string{"n2"})
	})
	samples := s.Stop()
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	longest, ivs := DualHolder(samples)
	if len(ivs) != 1 || !slices.Equal(ivs[0].Holders, []string{"n1", "n2"}) {
		t.Fatalf("intervals %+v", ivs)
	}
	// A pass reads the nodes one after the other and is stamped when it
	// starts: the first dual sample can be stamped up to one pass before
	// the second address came (Sample.Took). On 2 busy cores under -race a
	// pass took over 30 ms, and a bound of overlap + 10 ms failed (DualHolder
	// 234 ms for an overlap of 200.7 ms, one CI run in four).
	var took time.Duration
	for _, smp := range samples {
		took = max(took, smp.Took)
	}
	if longest < overlap-30*time.Millisecond || longest > most+took+time.Millisecond {
		t.Fatalf("DualHolder %v, actual overlap %v (at most %v, passes up to %v)", longest, overlap, most, took)
	}
}

func TestGuard(t *testing.T) {
	for _, c := range []struct {
		a    string
		want bool
	}{
		{"198.18.0.1", true}, {"198.19.255.255", true}, {"198.17.255.255", false},
		{"198.20.0.0", false}, {"127.0.0.1", false}, {"::ffff:198.18.0.5", true}, {"192.0.2.1", false},
	} {
		if got := InLabRange(netip.MustParseAddr(c.a)); got != c.want {
			t.Errorf("InLabRange(%s) = %t", c.a, got)
		}
	}
	if InLabRange(netip.Addr{}) {
		t.Error("zero Addr in lab range")
	}

	requireLab(t)
	// The root namespace of this machine has a real address.
	if err := GuardHere(); !errors.Is(err, ErrNotInLab) {
		t.Fatalf("GuardHere in the root namespace: %v, want refusal", err)
	}
	l := newLab(t, Options{Nodes: 2})
	n2, _ := l.Host("n2")
	if err := l.InNamespace("n1", func() error { return GuardHere(n2.IP, vip.Addr()) }); err != nil {
		t.Fatalf("GuardHere in n1: %v", err)
	}
	err := l.InNamespace("n1", func() error { return GuardHere(netip.MustParseAddr("192.0.2.1")) })
	if !errors.Is(err, ErrNotInLab) {
		t.Fatalf("GuardHere with an outside target: %v", err)
	}
	addAddr(t, l, "n1", netip.MustParsePrefix("192.0.2.77/32")) // never routed: no traffic is sent
	err = l.InNamespace("n1", func() error { return GuardHere(n2.IP) })
	if !errors.Is(err, ErrNotInLab) {
		t.Fatalf("GuardHere with a foreign address in the namespace: %v", err)
	}
}

func TestCloseAndSweep(t *testing.T) {
	requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := New(ctx, Options{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(labNamespaces(t, l.Prefix())) != 4 {
		t.Fatalf("namespaces %v", labNamespaces(t, l.Prefix()))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if left := labNamespaces(t, l.Prefix()); len(left) != 0 {
		t.Fatalf("left after Close: %v", left)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.KillAll("n1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("KillAll after Close: %v", err)
	}

	// A stale lab: named after a pid that has exited, with a process
	// still inside.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("hmlab-%d-beef", dead.Process.Pid)
	for _, sfx := range []string{"-sw", "-n1"} {
		if out, err := exec.Command("ip", "netns", "add", stale+sfx).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
	}
	t.Cleanup(func() {
		for _, sfx := range []string{"-sw", "-n1"} {
			_ = deleteNS(stale + sfx)
		}
	})
	orphan := exec.Command("ip", "netns", "exec", stale+"-n1", "sleep", "100")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	staleID, err := statNS(nsPath(stale + "-n1"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "orphan inside the stale lab", func() bool {
		id, err := statNS(fmt.Sprintf("/proc/%d/ns/net", orphan.Process.Pid))
		return err == nil && id == staleID
	})
	live := newLab(t, Options{Nodes: 1})

	removed, err := Sweep()
	if err != nil {
		t.Fatal(err)
	}
	// Another test process may sweep our stale lab first (and we its), so
	// check what is left rather than who removed it.
	for _, name := range removed {
		if strings.HasPrefix(name, live.Prefix()) || strings.HasPrefix(name, fmt.Sprintf("hmlab-%d-", os.Getpid())) {
			t.Fatalf("Sweep removed %s of a live lab", name)
		}
	}
	if left := labNamespaces(t, stale); len(left) != 0 {
		t.Fatalf("stale namespaces left: %v", left)
	}
	if err := orphan.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("process in the stale lab: %v, want killed", err)
	}
	if got := labNamespaces(t, live.Prefix()); len(got) != 3 {
		t.Fatalf("Sweep touched a live lab: %v", got)
	}
}

func TestRenderRules(t *testing.T) {
	l := &Lab{prefix: "hmlab-1-abcd", hosts: map[string]*host{}}
	for i, name := range []string{"n1", "n2", "n3"} {
		n := l.describe(name, byte(11+i))
		l.nodes = append(l.nodes, n)
		l.hosts[name] = &host{Node: n}
	}
	l.faults.groups = [][]string{{"n1"}, {"n2"}}
	l.faults.oneway = map[[2]string]bool{{"n3", "n1"}: true}
	l.faults.loss = map[string]int{"n1": 30, "n2": 100}
	l.faults.tcp = map[tcpBlock]bool{{to: "n1", from: "n3", port: 6379}: true, {to: "n1", from: "n2", port: 6379}: true,
		{to: "n1", from: "n2", port: 80}: true}

	n1 := l.renderRules(l.hosts["n1"])
	for _, want := range []string{
		`hook ingress device "eth0"`, "ether saddr { 02:48:4d:00:00:0c, 02:48:4d:00:00:0d } drop",
		"numgen random mod 100 < 30 drop", `hook egress device "eth0"`,
		"ether saddr { 02:48:4d:00:00:0c } tcp dport 80 drop\n    ether saddr { 02:48:4d:00:00:0c, 02:48:4d:00:00:0d } tcp dport 6379 drop",
	} {
		if !strings.Contains(n1, want) {
			t.Errorf("n1 rules lack %q:\n%s", want, n1)
		}
	}
	if n2 := l.renderRules(l.hosts["n2"]); !strings.Contains(n2, "ether saddr { 02:48:4d:00:00:0b } drop") ||
		strings.Contains(n2, "numgen") || strings.Count(n2, "    drop\n") != 2 {
		t.Errorf("n2 rules:\n%s", n2)
	}
	if n3 := l.renderRules(l.hosts["n3"]); n3 != "" {
		t.Errorf("n3 needs no rules, got:\n%s", n3)
	}
}

// dialsTCP reports whether a TCP connection from host from to to's address
// and port opens within d.
func dialsTCP(t *testing.T, l *Lab, from, to string, port uint16, d time.Duration) bool {
	t.Helper()
	src, dst := l.hosts[from], l.hosts[to]
	var conn net.Conn
	err := inNS(src.NS, func() (err error) {
		dl := net.Dialer{Timeout: d}
		conn, err = dl.Dial("tcp4", netip.AddrPortFrom(dst.IP, port).String())
		return err
	})
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func TestBlockTCP(t *testing.T) {
	l := newLab(t, Options{})
	for _, port := range []uint16{6379, 7000} {
		var ln net.Listener
		err := inNS(l.hosts["n1"].NS, func() (err error) {
			ln, err = net.Listen("tcp4", netip.AddrPortFrom(l.hosts["n1"].IP, port).String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	if err := l.BlockTCP("n1", 6379, "n2", "n3"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from string
		port uint16
		want bool
	}{{"n2", 6379, false}, {"n3", 6379, false}, {"c1", 6379, true}, {"n2", 7000, true}} {
		wait := okWait
		if !c.want {
			wait = cutWait
		}
		if got := dialsTCP(t, l, c.from, "n1", c.port, wait); got != c.want {
			t.Errorf("TCP %s -> n1:%d opens=%t, want %t (faults %v)", c.from, c.port, got, c.want, l.Faults())
		}
	}
	requireFlow(t, l, "n2", "n1", true) // other traffic still flows
	for _, bad := range [][]string{{"x9", "n2"}, {"n1", "n1"}, {"n1"}} {
		if err := l.BlockTCP(bad[0], 6379, bad[1:]...); err == nil {
			t.Errorf("BlockTCP(%v) succeeded", bad)
		}
	}
	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	if !dialsTCP(t, l, "n2", "n1", 6379, okWait) {
		t.Error("TCP n2 -> n1:6379 still blocked after Heal")
	}
}

// mountsAt counts the mounts at path in this mount namespace.
func mountsAt(t *testing.T, path string) int {
	t.Helper()
	points, err := mountPoints()
	if err != nil {
		t.Fatal(err)
	}
	return points[path]
}

// unmountAtEnd peels every mount off path when the test ends.
func unmountAtEnd(t *testing.T, path string) {
	t.Cleanup(func() {
		for i := 0; i < 8 && unix.Unmount(path, unix.MNT_DETACH) == nil; i++ {
		}
	})
}

// TestDeleteNSUnderACoveringMount rebuilds, in a directory of its own, how
// names under /run/netns became unremovable: a namespace bound onto the plain
// directory, then the directory bound recursively onto itself (what `ip netns
// add` does when it is not a mount point yet), which copies the namespace's
// mount on top and hides the original. deleteNS must still remove the name
// and leave no mount behind.
func TestDeleteNSUnderACoveringMount(t *testing.T) {
	requireLab(t)
	dir := filepath.Join(t.TempDir(), "netns")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	unmountAtEnd(t, dir)
	path := filepath.Join(dir, "x")
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("/proc/self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	unmountAtEnd(t, path)
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	if n := mountsAt(t, path); n != 2 {
		t.Fatalf("mounts at %s: %d, want the original and its copy", path, n)
	}
	if err := deleteNSIn(dir, "x"); err != nil {
		t.Fatalf("deleteNS under a covering mount: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after deleteNS: %v, want gone", path, err)
	}
	if n := mountsAt(t, path); n != 0 {
		t.Fatalf("mounts left at %s: %d", path, n)
	}
}

// TestEnsureMountDir: the directory becomes one shared mount point, however
// often it is called, so a later `ip netns add` has nothing to bind over.
func TestEnsureMountDir(t *testing.T) {
	requireLab(t)
	dir := filepath.Join(t.TempDir(), "netns")
	unmountAtEnd(t, dir)
	for i := 0; i < 2; i++ {
		if err := ensureMountDir(dir); err != nil {
			t.Fatal(err)
		}
	}
	if n := mountsAt(t, dir); n != 1 {
		t.Fatalf("mounts at %s: %d, want 1", dir, n)
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 6 && f[4] == dir && !strings.Contains(line, " shared:") {
			t.Fatalf("%s is not shared: %s", dir, line)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/run/netns`:     "/run/netns",
		`/a\040b`:        "/a b",
		`/tab\011x\134y`: "/tab\tx\\y",
		`/short\04`:      `/short\04`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
