package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// Fault rules live in one nftables table per host namespace, "netdev
// hmfault", bound to the host's eth0:
//
//   - an ingress chain drops every frame whose source MAC is that of a host
//     this one must not hear (partitions, one-way cuts), then drops a random
//     share of what is left (loss);
//   - an egress chain drops a random share of what the host sends (loss);
//   - the ingress chain also drops TCP segments to a port from chosen hosts
//     (BlockTCP: a connection to one service cut while every other path
//     stays up).
//
// Matching on source MACs at layer 2 cuts IP, ARP requests and replies,
// gratuitous ARP and traffic to or from VIPs alike: a partitioned node can
// neither see a VIP's announcements nor answer a probe for it. Every change
// rewrites the table atomically (one `nft -f` transaction per host).

const (
	nftTable   = "hmfault"
	nftTimeout = 10 * time.Second
)

// FaultKind names a kind of fault change recorded by the Lab.
type FaultKind string

// Kinds of fault changes, as recorded in Fault.Kind.
const (
	FaultCrash     FaultKind = "crash"
	FaultRestore   FaultKind = "restore"
	FaultPartition FaultKind = "partition"
	FaultOneWay    FaultKind = "one-way"
	FaultLoss      FaultKind = "loss"
	FaultHeal      FaultKind = "heal"
	FaultBlockTCP  FaultKind = "block-tcp"
	FaultLinks     FaultKind = "links"
)

// Fault records one fault change: its kind, what it was applied to, and the
// time at which it was in effect (taken, with its monotonic reading, right
// after the rules or link states were installed).
type Fault struct {
	At     time.Time
	Kind   FaultKind
	Detail string
}

// faultState is the desired set of rules; guarded by Lab.fmu.
type faultState struct {
	groups  [][]string         // current symmetric partition
	oneway  map[[2]string]bool // {from, to}: frames from -> to are dropped
	loss    map[string]int     // host -> percent
	tcp     map[tcpBlock]bool  // TCP segments dropped on their way in
	applied map[string]string  // host -> script last installed ("" = none)
}

// tcpBlock drops TCP segments from host from to port on host to.
type tcpBlock struct {
	to, from string
	port     uint16
}

// blockedTCP returns, per port, the hosts whose TCP segments to that port
// host must drop, ports in increasing order.
func (f *faultState) blockedTCP(host string) (ports []uint16, from map[uint16][]string) {
	from = map[uint16][]string{}
	for b := range f.tcp {
		if b.to != host {
			continue
		}
		if _, ok := from[b.port]; !ok {
			ports = append(ports, b.port)
		}
		from[b.port] = append(from[b.port], b.from)
	}
	slices.Sort(ports)
	for _, p := range ports {
		slices.Sort(from[p])
	}
	return ports, from
}

// dropsFrom returns the hosts whose frames host must drop.
func (f *faultState) dropsFrom(host string) []string {
	var out []string
	mine := -1
	for i, g := range f.groups {
		if slices.Contains(g, host) {
			mine = i
		}
	}
	if mine >= 0 {
		for i, g := range f.groups {
			if i != mine {
				out = append(out, g...)
			}
		}
	}
	for k := range f.oneway {
		if k[1] == host {
			out = append(out, k[0])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// renderRules returns the nft script that makes host's table match the
// state, or "" when the host needs no rules.
func (l *Lab) renderRules(h *host) string {
	f := &l.faults
	var macs []string
	for _, name := range f.dropsFrom(h.Name) {
		macs = append(macs, l.hosts[name].MAC.String())
	}
	loss := f.loss[h.Name]
	ports, tcpFrom := f.blockedTCP(h.Name)
	if len(macs) == 0 && loss == 0 && len(ports) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table netdev %s {\n", nftTable)
	fmt.Fprintf(&b, "  chain ingress {\n    type filter hook ingress device %q priority -500; policy accept;\n", h.Iface)
	if len(macs) > 0 {
		fmt.Fprintf(&b, "    ether saddr { %s } drop\n", strings.Join(macs, ", "))
	}
	for _, p := range ports {
		var from []string
		for _, name := range tcpFrom[p] {
			from = append(from, l.hosts[name].MAC.String())
		}
		fmt.Fprintf(&b, "    ether saddr { %s } tcp dport %d drop\n", strings.Join(from, ", "), p)
	}
	if loss > 0 {
		fmt.Fprintf(&b, "    %s\n", lossRule(loss))
	}
	b.WriteString("  }\n")
	if loss > 0 {
		fmt.Fprintf(&b, "  chain egress {\n    type filter hook egress device %q priority -500; policy accept;\n", h.Iface)
		fmt.Fprintf(&b, "    %s\n  }\n", lossRule(loss))
	}
	b.WriteString("}\n")
	return b.String()
}

// lossRule drops percent % of packets (1..100); numgen cannot compare with
// 100, so total loss is a plain drop.
func lossRule(percent int) string {
	if percent >= 100 {
		return "drop"
	}
	return fmt.Sprintf("numgen random mod 100 < %d drop", percent)
}

// runNft runs an nft script inside the namespace.
func runNft(ns, script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), nftTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft in %s: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// syncRules installs the rules of every host whose script changed (of all
// hosts when force is set), in parallel. Call with fmu held.
func (l *Lab) syncRules(force bool) error {
	if l.faults.applied == nil { // fresh lab: no host has a table
		l.faults.applied = map[string]string{}
		for _, n := range l.Hosts() {
			l.faults.applied[n.Name] = ""
		}
	}
	type job struct {
		h    *host
		want string
		err  error
	}
	var jobs []*job
	for _, n := range l.Hosts() {
		h := l.hosts[n.Name]
		want := l.renderRules(h)
		if got, ok := l.faults.applied[n.Name]; force || !ok || got != want {
			jobs = append(jobs, &job{h: h, want: want})
		}
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		// Create-then-delete makes the delete safe when the table is
		// absent; the whole script is one transaction.
		script := fmt.Sprintf("table netdev %[1]s\ndelete table netdev %[1]s\n%s", nftTable, j.want)
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.err = runNft(j.h.NS, script)
		}()
	}
	wg.Wait()
	var errs []error
	for _, j := range jobs {
		if j.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", j.h.Name, j.err))
			delete(l.faults.applied, j.h.Name) // unknown: redo next time
			continue
		}
		l.faults.applied[j.h.Name] = j.want
	}
	return errors.Join(errs...)
}

// record appends a fault event. Call with fmu held.
func (l *Lab) record(kind FaultKind, format string, args ...any) {
	l.events = append(l.events, Fault{At: time.Now(), Kind: kind, Detail: fmt.Sprintf(format, args...)})
}

// change runs fn with the fault state locked, then installs the rules and
// records the event on success.
func (l *Lab) change(kind FaultKind, detail string, fn func(*faultState) error) error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	err := l.use(func() error {
		if err := fn(&l.faults); err != nil {
			return err
		}
		return l.syncRules(false)
	})
	if err != nil {
		return fmt.Errorf("lab %s: %s %s: %w", l.prefix, kind, detail, err)
	}
	l.record(kind, "%s", detail)
	return nil
}

// setPort sets the switch-side veth of the host up or down. Call inside use.
func (l *Lab) setPort(h *host, up bool) error {
	port, err := l.sw.LinkByName(h.Port)
	if err != nil {
		return fmt.Errorf("find port %s: %w", h.Port, err)
	}
	if up {
		err = l.sw.LinkSetUp(port)
	} else {
		err = l.sw.LinkSetDown(port)
	}
	if err != nil {
		return fmt.Errorf("set port %s up=%t: %w", h.Port, up, err)
	}
	return nil
}

// Crash takes the host off the network (its switch port goes down, so its
// eth0 loses carrier) and then SIGKILLs every process in its namespace. The
// namespace, its addresses and its nft rules stay. Undo with Restore or Heal.
func (l *Lab) Crash(name string) error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	err := l.use(func() error {
		h, err := l.lookup(name)
		if err != nil {
			return err
		}
		if err := l.setPort(h, false); err != nil {
			return err
		}
		_, err = killAllIn(h.NS)
		return err
	})
	if err != nil {
		return fmt.Errorf("lab crash %s: %w", name, err)
	}
	l.record(FaultCrash, "%s", name)
	return nil
}

// Restore brings the host's switch port back up after Crash. It starts no
// process: restarting the node's programs is the caller's job. Idempotent.
func (l *Lab) Restore(name string) error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	err := l.use(func() error {
		h, err := l.lookup(name)
		if err != nil {
			return err
		}
		return l.setPort(h, true)
	})
	if err != nil {
		return fmt.Errorf("lab restore %s: %w", name, err)
	}
	l.record(FaultRestore, "%s", name)
	return nil
}

// Partition replaces the current symmetric partition: hosts in different
// groups can no longer exchange any frame (IP or ARP, fixed addresses or
// VIPs); hosts within a group, and hosts in no group, keep talking to
// everyone. A host may appear in one group only. Partition() with fewer than
// two non-empty groups removes the partition. OneWay and Loss faults stay.
func (l *Lab) Partition(groups ...[]string) error {
	var clean [][]string
	seen := map[string]bool{}
	var parts []string
	for _, g := range groups {
		if len(g) == 0 {
			continue
		}
		for _, n := range g {
			if _, ok := l.Host(n); !ok {
				return fmt.Errorf("lab partition: unknown host %q", n)
			}
			if seen[n] {
				return fmt.Errorf("lab partition: host %q in two groups", n)
			}
			seen[n] = true
		}
		clean = append(clean, slices.Clone(g))
		parts = append(parts, "["+strings.Join(g, " ")+"]")
	}
	if len(clean) < 2 {
		clean = nil
	}
	return l.change(FaultPartition, strings.Join(parts, " "), func(f *faultState) error {
		f.groups = clean
		return nil
	})
}

// OneWay drops every frame from host `from` to host `to`, ARP included,
// while `to` can still reach `from` (host addresses need no ARP in the lab;
// see New). It adds to the existing faults; Heal removes it.
func (l *Lab) OneWay(from, to string) error {
	for _, n := range []string{from, to} {
		if _, ok := l.Host(n); !ok {
			return fmt.Errorf("lab one-way: unknown host %q", n)
		}
	}
	if from == to {
		return fmt.Errorf("lab one-way: from and to are both %q", from)
	}
	return l.change(FaultOneWay, from+"->"+to, func(f *faultState) error {
		if f.oneway == nil {
			f.oneway = map[[2]string]bool{}
		}
		f.oneway[[2]string{from, to}] = true
		return nil
	})
}

// Loss makes the host drop percent % of the frames it receives and,
// independently, of the frames it sends (so a round trip through it loses
// more). percent is 0..100; 0 removes the host's loss. Other faults stay.
func (l *Lab) Loss(name string, percent int) error {
	if _, ok := l.Host(name); !ok {
		return fmt.Errorf("lab loss: unknown host %q", name)
	}
	if percent < 0 || percent > 100 {
		return fmt.Errorf("lab loss: percent %d out of range 0..100", percent)
	}
	return l.change(FaultLoss, fmt.Sprintf("%s %d%%", name, percent), func(f *faultState) error {
		if f.loss == nil {
			f.loss = map[string]int{}
		}
		if percent == 0 {
			delete(f.loss, name)
		} else {
			f.loss[name] = percent
		}
		return nil
	})
}

// Cut is a directed cut: every frame from From to To is dropped.
type Cut struct{ From, To string }

// SetLinks replaces the lab's link faults (the partition, the one-way cuts
// and the loss) with exactly these directed cuts and these loss percents
// per host, in one transaction per host. Crashed ports and BlockTCP stay.
// The chaos runner uses it to install the union of overlapping network
// faults; SetLinks(nil, nil) removes them all.
func (l *Lab) SetLinks(cuts []Cut, loss map[string]int) error {
	oneway := map[[2]string]bool{}
	var parts []string
	for _, c := range cuts {
		for _, n := range []string{c.From, c.To} {
			if _, ok := l.Host(n); !ok {
				return fmt.Errorf("lab links: unknown host %q", n)
			}
		}
		if c.From == c.To {
			return fmt.Errorf("lab links: a cut from %q to itself", c.From)
		}
		if !oneway[[2]string{c.From, c.To}] {
			parts = append(parts, c.From+"->"+c.To)
		}
		oneway[[2]string{c.From, c.To}] = true
	}
	lossCopy := map[string]int{}
	for n, p := range loss {
		if _, ok := l.Host(n); !ok {
			return fmt.Errorf("lab links: unknown host %q", n)
		}
		if p < 0 || p > 100 {
			return fmt.Errorf("lab links: loss %d%% on %s out of range 0..100", p, n)
		}
		if p > 0 {
			lossCopy[n] = p
			parts = append(parts, fmt.Sprintf("%s %d%%", n, p))
		}
	}
	slices.Sort(parts)
	detail := strings.Join(parts, " ")
	if detail == "" {
		detail = "none"
	}
	return l.change(FaultLinks, detail, func(f *faultState) error {
		f.groups, f.oneway, f.loss = nil, oneway, lossCopy
		return nil
	})
}

// BlockTCP drops, on host to's way in, every TCP segment to port from the
// hosts from: their connections to that port on to (on any of to's
// addresses, VIPs included) hang, while every other path, to's own
// connections out and other hosts' connections to the port keep working.
// It adds to the existing faults; Heal removes it.
func (l *Lab) BlockTCP(to string, port uint16, from ...string) error {
	if _, ok := l.Host(to); !ok {
		return fmt.Errorf("lab block-tcp: unknown host %q", to)
	}
	if port == 0 || len(from) == 0 {
		return fmt.Errorf("lab block-tcp: need a port (got %d) and at least one host to block (got %d)", port, len(from))
	}
	for _, n := range from {
		if _, ok := l.Host(n); !ok {
			return fmt.Errorf("lab block-tcp: unknown host %q", n)
		}
		if n == to {
			return fmt.Errorf("lab block-tcp: %q cannot be blocked from itself (its own traffic does not cross the switch)", n)
		}
	}
	detail := fmt.Sprintf("%s:%d from %s", to, port, strings.Join(from, " "))
	return l.change(FaultBlockTCP, detail, func(f *faultState) error {
		if f.tcp == nil {
			f.tcp = map[tcpBlock]bool{}
		}
		for _, n := range from {
			f.tcp[tcpBlock{to: to, from: n, port: port}] = true
		}
		return nil
	})
}

// Heal removes every fault: it deletes the fault table of every host
// (whatever the lab believes is installed) and brings every switch port up.
// It does not restart processes that Crash killed.
func (l *Lab) Heal() error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	err := l.use(func() error {
		l.faults = faultState{applied: l.faults.applied}
		errs := []error{l.syncRules(true)}
		for _, n := range l.Hosts() {
			errs = append(errs, l.setPort(l.hosts[n.Name], true))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("lab heal %s: %w", l.prefix, err)
	}
	l.record(FaultHeal, "all")
	return nil
}

// Faults returns the fault changes applied so far, oldest first. The slice
// is a copy.
func (l *Lab) Faults() []Fault {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	return slices.Clone(l.events)
}
