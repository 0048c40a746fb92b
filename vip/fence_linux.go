package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
)

// FenceTable is the name of the nftables tables of the fence, one per
// family (ip, ip6, arp). Each holds two sets: "managed", the addresses the
// agent looks after, and "live", those it may serve now, each element with
// a timeout that ends with the lease.
const FenceTable = "harbormaster_vip"

// Names of the fence's sets.
const (
	FenceManagedSet = "managed"
	FenceLiveSet    = "live"
)

// ARP hook numbers (NF_ARP_IN, NF_ARP_OUT): the arp family numbers its
// hooks apart from the inet ones nftables names.
const (
	nfARPIn  = 0
	nfARPOut = 1
)

// fenceOpTimeout bounds one netlink exchange of the fence.
const fenceOpTimeout = 2 * time.Second

// NFTFence is the Fence of production: nftables rules that drop traffic to
// and from a managed address unless it is in the live set, whose elements
// the kernel expires by its own clock (jiffies: 4 ms at HZ=250). The rules:
//
//	table ip harbormaster_vip:
//	  prerouting (raw): ip daddr @managed ip daddr != @live drop
//	  output (raw):     ip saddr @managed ip saddr != @live drop
//	table arp harbormaster_vip (IPv4 over Ethernet):
//	  input:  arp daddr ip @managed arp daddr ip != @live drop  (no reply to a request for it)
//	  output: arp saddr ip @managed arp saddr ip != @live drop  (no reply or request from it)
//	table ip6 harbormaster_vip: as ip (a neighbour advertisement for the
//	  address leaves with it as its source, so output covers NDP)
//
// Packet sockets (the probe, the gratuitous ARP) see frames before these
// hooks and are not filtered: a dark node still hears a probe's answer.
type NFTFence struct {
	mu   sync.Mutex
	c    *nftables.Conn  // lasting; nil after a failed operation dropped it
	nc   *netlink.Conn   // c's socket, for the deadlines
	ns   *os.File        // the network namespace the fence lives in
	fams [3]*fenceFamily // ip, arp, ip6
}

// One lasting netlink socket, given a deadline before each operation, and
// closed after any operation that failed (then reopened by the next): an
// acknowledgement a failed exchange lost cannot answer a later write, and no
// write can hang the VIP manager, which holds its pass lock meanwhile. A
// socket per write would do the same, but opening one in a namespace costs
// a thread switch and two setns calls, every renewal: on busy cores that
// made the writes come late and the fence dark under a valid lease (chaos
// fast batch, stop 25: the VIP holder under CPU load went dark in 12 of 18
// runs, against 3 of 100 with a lasting socket).

// begin readies the socket for one operation (under f.mu): reopened when a
// failed operation dropped it, and given the operation's deadline.
func (f *NFTFence) begin() error {
	if f.c == nil {
		var nc *netlink.Conn
		c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(f.ns.Fd())),
			nftables.WithSockOptions(func(x *netlink.Conn) error { nc = x; return nil }))
		if err != nil {
			return fmt.Errorf("vip fence: nftables: %w", err)
		}
		f.c, f.nc = c, nc
	}
	if err := f.nc.SetDeadline(time.Now().Add(fenceOpTimeout)); err != nil {
		f.drop()
		return fmt.Errorf("vip fence: socket deadline: %w", err)
	}
	return nil
}

// drop closes the socket after a failed operation, and with it whatever
// the operation had queued (under f.mu).
func (f *NFTFence) drop() {
	if f.c != nil {
		_ = f.c.CloseLasting()
		f.c, f.nc = nil, nil
	}
}

type fenceFamily struct {
	table         *nftables.Table
	managed, live *nftables.Set
	v6            bool
	// gated is what the kernel's managed set holds, as last written.
	gated map[netip.Addr]bool
}

var _ Fence = (*NFTFence)(nil)

// NewNFTFence installs the fence's tables in the current network namespace
// (or brings them to this version's rules, atomically, keeping the sets'
// elements: an address a previous run left behind stays gated and dark
// once its live element runs out) and returns a handle.
func NewNFTFence() (*NFTFence, error) {
	// The socket opens in the network namespace NewNFTFence was called in,
	// whichever thread a later reopen runs on.
	ns, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("vip fence: this thread's network namespace: %w", err)
	}
	f := &NFTFence{ns: ns}
	if err := f.begin(); err != nil {
		ns.Close()
		return nil, err
	}
	c := f.c
	for i, spec := range []struct {
		fam nftables.TableFamily
		v6  bool
	}{{nftables.TableFamilyIPv4, false}, {nftables.TableFamilyARP, false}, {nftables.TableFamilyIPv6, true}} {
		ff := &fenceFamily{v6: spec.v6, gated: map[netip.Addr]bool{}}
		ff.table = c.AddTable(&nftables.Table{Name: FenceTable, Family: spec.fam})
		key := nftables.TypeIPAddr
		if spec.v6 {
			key = nftables.TypeIP6Addr
		}
		ff.managed = &nftables.Set{Table: ff.table, Name: FenceManagedSet, KeyType: key}
		ff.live = &nftables.Set{Table: ff.table, Name: FenceLiveSet, KeyType: key, HasTimeout: true}
		for _, s := range []*nftables.Set{ff.managed, ff.live} {
			if err := c.AddSet(s, nil); err != nil {
				f.drop()
				ns.Close()
				return nil, fmt.Errorf("vip fence: set %s: %w", s.Name, err)
			}
		}
		ff.chains(c)
		f.fams[i] = ff
	}
	if err := c.Flush(); err != nil {
		f.drop()
		ns.Close()
		return nil, fmt.Errorf("vip fence: install the nftables tables %q (needs CAP_NET_ADMIN and nf_tables with the arp family): %w", FenceTable, err)
	}
	for _, ff := range f.fams {
		els, err := c.GetSetElements(ff.managed)
		if err != nil {
			f.drop()
			ns.Close()
			return nil, fmt.Errorf("vip fence: read %s: %w", ff.managed.Name, err)
		}
		for _, e := range els {
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				ff.gated[a] = true
			}
		}
	}
	return f, nil
}

// chains adds (or empties) the family's two base chains and adds their
// rule, in the connection's pending batch.
func (ff *fenceFamily) chains(c *nftables.Conn) {
	type hook struct {
		name string
		num  *nftables.ChainHook
		prio *nftables.ChainPriority
		off  uint32 // offset of the address in the network header
	}
	var hooks []hook
	switch {
	case ff.table.Family == nftables.TableFamilyARP:
		// Ethernet/IPv4 ARP: sender protocol address at 14, target at 24.
		hooks = []hook{{"in", nftables.ChainHookRef(nfARPIn), nftables.ChainPriorityFilter, 24},
			{"out", nftables.ChainHookRef(nfARPOut), nftables.ChainPriorityFilter, 14}}
	case ff.v6:
		hooks = []hook{{"in", nftables.ChainHookPrerouting, nftables.ChainPriorityRaw, 24},
			{"out", nftables.ChainHookOutput, nftables.ChainPriorityRaw, 8}}
	default:
		hooks = []hook{{"in", nftables.ChainHookPrerouting, nftables.ChainPriorityRaw, 16},
			{"out", nftables.ChainHookOutput, nftables.ChainPriorityRaw, 12}}
	}
	alen := uint32(4)
	if ff.v6 {
		alen = 16
	}
	accept := nftables.ChainPolicyAccept
	for _, h := range hooks {
		ch := c.AddChain(&nftables.Chain{Name: h.name, Table: ff.table, Type: nftables.ChainTypeFilter,
			Hooknum: h.num, Priority: h.prio, Policy: &accept})
		c.FlushChain(ch)
		var exprs []expr.Any
		if ff.table.Family == nftables.TableFamilyARP {
			// ptype IPv4, hlen 6, plen 4: the offsets above hold only then.
			exprs = append(exprs,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 2, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x08, 0x00, 6, 4}})
		}
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: h.off, Len: alen},
			&expr.Lookup{SourceRegister: 1, SetName: ff.managed.Name, SetID: ff.managed.ID},
			&expr.Lookup{SourceRegister: 1, SetName: ff.live.Name, SetID: ff.live.ID, Invert: true},
			&expr.Verdict{Kind: expr.VerdictDrop})
		c.AddRule(&nftables.Rule{Table: ff.table, Chain: ch, Exprs: exprs})
	}
}

// families returns the fence families an address is gated in.
func (f *NFTFence) families(a netip.Addr) []*fenceFamily {
	if a.Is4() {
		return f.fams[:2]
	}
	return f.fams[2:]
}

// Sync implements Fence.
func (f *NFTFence) Sync(managed []netip.Addr, present map[netip.Addr]bool, live map[netip.Addr]time.Duration) (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.drop()
		}
	}()
	want := map[netip.Addr]bool{}
	for _, a := range managed {
		want[a.Unmap()] = true
	}
	for a := range live {
		want[a.Unmap()] = true
	}
	for _, ff := range f.fams {
		var add, del, arm []nftables.SetElement
		for a := range want {
			if a.Is6() == ff.v6 && !ff.gated[a] {
				add = append(add, nftables.SetElement{Key: a.AsSlice()})
			}
		}
		for a := range ff.gated {
			// Ungated only once the kernel no longer has it: an address
			// left configured must not come back to life ungated.
			if !want[a] && !present[a] {
				del = append(del, nftables.SetElement{Key: a.AsSlice()})
			}
		}
		for a, d := range live {
			a = a.Unmap()
			if a.Is6() == ff.v6 {
				arm = append(arm, nftables.SetElement{Key: a.AsSlice(), Timeout: max(d, time.Millisecond)})
			}
		}
		if len(add) > 0 {
			if err := f.c.SetAddElements(ff.managed, add); err != nil {
				return err
			}
		}
		if len(del) > 0 {
			if err := f.c.SetDeleteElements(ff.managed, del); err != nil {
				return err
			}
		}
		if err := f.rearm(ff, arm); err != nil {
			return err
		}
	}
	if err := f.c.Flush(); err != nil {
		return fmt.Errorf("vip fence: %w", err)
	}
	for _, ff := range f.fams {
		for a := range want {
			if a.Is6() == ff.v6 {
				ff.gated[a] = true
			}
		}
		for a := range ff.gated {
			if !want[a] && !present[a] {
				delete(ff.gated, a)
			}
		}
	}
	return nil
}

// rearm queues, for the elements given, an add, a delete and an add
// again: the first add makes the delete safe (a delete of a missing element
// fails the whole batch), and the second sets the new timeout (kernels
// before 6.10 keep an existing element's timeout on a plain add). One
// transaction: the element never goes missing in between.
func (f *NFTFence) rearm(ff *fenceFamily, els []nftables.SetElement) error {
	if len(els) == 0 {
		return nil
	}
	for _, op := range []func(*nftables.Set, []nftables.SetElement) error{f.c.SetAddElements, f.c.SetDeleteElements, f.c.SetAddElements} {
		if err := op(ff.live, els); err != nil {
			return err
		}
	}
	return nil
}

// Dark implements Fence: a's live element goes now.
func (f *NFTFence) Dark(a netip.Addr) (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.drop()
		}
	}()
	a = a.Unmap()
	for _, ff := range f.families(a) {
		el := []nftables.SetElement{{Key: a.AsSlice(), Timeout: time.Millisecond}}
		if err := f.c.SetAddElements(ff.live, el); err != nil {
			return err
		}
		if err := f.c.SetDeleteElements(ff.live, el); err != nil {
			return err
		}
	}
	if err := f.c.Flush(); err != nil {
		return fmt.Errorf("vip fence: dark %s: %w", a, err)
	}
	return nil
}

// Close removes the fence's tables when none of the addresses it gates is
// still configured (graceful stop: the manager removed them), so that
// nothing of the agent stays in the ruleset; it keeps them otherwise.
func (f *NFTFence) Close(present map[netip.Addr]bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs error
	keep := false
	for _, ff := range f.fams {
		for a := range ff.gated {
			keep = keep || present[a]
		}
	}
	if !keep {
		if errs = f.begin(); errs == nil {
			for _, ff := range f.fams {
				f.c.DelTable(ff.table)
			}
			errs = f.c.Flush()
		}
	}
	f.drop()
	return errors.Join(errs, f.ns.Close())
}
