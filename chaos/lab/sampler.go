package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	vipfence "github.com/harbormaster/harbormaster/vip"
)

// DefaultSampleEvery is the Sampler's period when none is given: the S1
// invariant is checked at 10 ms or finer (DESIGN.md §4).
const DefaultSampleEvery = 10 * time.Millisecond

// Sample is one pass of a Sampler over every node.
type Sample struct {
	// At is when the pass started; it carries a monotonic reading, so
	// differences between samples are immune to wall-clock steps.
	At time.Time
	// Holders are the names of the nodes on which the address was
	// configured during the pass, sorted (for a sampler of several
	// addresses: the first one's).
	Holders []string
	// Each holds, for a sampler of several addresses (StartSamplerSet),
	// the holders of each address in the order given, sorted; nil for a
	// sampler of one address. See Of.
	Each [][]string
	// Took is how long the pass took: a node read late in it may show an
	// address that came after At, so an interval of samples can start up
	// to Took early (on the safe side for S1: an overlap reads longer).
	Took time.Duration
}

// Of returns the samples of the i-th address of a sampler of several
// addresses as samples of that address alone (Holders set, Each nil), for
// DualHolder and Holders.
func Of(samples []Sample, i int) []Sample {
	out := make([]Sample, len(samples))
	for k, s := range samples {
		out[k] = Sample{At: s.At}
		if i < len(s.Each) {
			out[k].Holders = s.Each[i]
		}
	}
	return out
}

// Sampler reads, periodically and straight from each node's kernel, which
// nodes have an address configured and usable: an address the agent's
// fence (vip.NFTFence) gates counts only while its live element has not
// run out, since the kernel drops its traffic and ARP otherwise. Create it with StartSampler; Stop it
// exactly once.
type Sampler struct {
	addrs   map[netip.Addr]int // watched address -> its index in Sample.Each
	multi   bool               // started by StartSamplerSet: fill Each
	names   []string
	handles []*netlink.Handle
	fences  []*nftables.Conn // one per node, in its namespace
	stop    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	samples []Sample
	err     error
}

// StartSampler starts sampling, every `every` (DefaultSampleEvery if <= 0),
// which nodes (not clients) have prefix.Addr() configured on any interface;
// the prefix length is ignored, so a VIP added as /24 or /32 counts alike.
// It opens one netlink handle per node namespace, once, and runs one
// goroutine until Stop. The first pass happens before StartSampler returns.
func (l *Lab) StartSampler(prefix netip.Prefix, every time.Duration) (*Sampler, error) {
	if !prefix.IsValid() {
		return nil, fmt.Errorf("lab sampler: invalid prefix %v", prefix)
	}
	return l.startSampler([]netip.Addr{prefix.Addr()}, false, every)
}

// StartSamplerSet is StartSampler for several addresses at once: each pass
// is still one address dump per node, matched against the whole set, and
// fills Sample.Each (Holders is the first address's). Addresses must be
// valid and distinct.
func (l *Lab) StartSamplerSet(addrs []netip.Addr, every time.Duration) (*Sampler, error) {
	if len(addrs) == 0 {
		return nil, errors.New("lab sampler: no addresses")
	}
	return l.startSampler(addrs, true, every)
}

func (l *Lab) startSampler(addrs []netip.Addr, multi bool, every time.Duration) (*Sampler, error) {
	if every <= 0 {
		every = DefaultSampleEvery
	}
	s := &Sampler{addrs: map[netip.Addr]int{}, multi: multi, stop: make(chan struct{}), done: make(chan struct{})}
	for i, a := range addrs {
		if !a.IsValid() {
			return nil, fmt.Errorf("lab sampler: invalid address %v (#%d)", a, i)
		}
		if _, dup := s.addrs[a.Unmap()]; dup {
			return nil, fmt.Errorf("lab sampler: address %v given twice", a)
		}
		s.addrs[a.Unmap()] = i
	}
	for _, n := range l.nodes {
		var (
			h *netlink.Handle
			f *nftables.Conn
		)
		err := l.use(func() error {
			return inNS(n.NS, func() (err error) {
				if h, err = newRouteHandle(); err != nil {
					return err
				}
				if f, err = nftables.New(nftables.AsLasting()); err != nil {
					h.Close()
				}
				return err
			})
		})
		if err != nil {
			s.closeHandles()
			return nil, fmt.Errorf("lab sampler on %s: %w", n.Name, err)
		}
		s.names = append(s.names, n.Name)
		s.handles = append(s.handles, h)
		s.fences = append(s.fences, f)
	}
	s.pass()
	go s.run(every)
	return s, nil
}

func (s *Sampler) closeHandles() {
	for _, h := range s.handles {
		h.Close()
	}
	for _, f := range s.fences {
		f.CloseLasting()
	}
}

func (s *Sampler) run(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.pass()
		}
	}
}

// pass reads every node once and appends a sample; a pass in which a node
// could not be read is dropped and its error kept for Err.
func (s *Sampler) pass() {
	smp := Sample{At: time.Now()}
	if s.multi {
		smp.Each = make([][]string, len(s.addrs))
	}
	for i, h := range s.handles {
		held, err := holds(h, s.addrs)
		if err == nil && len(held) > 0 {
			held, err = unfenced(s.fences[i], held, s.addrs)
		}
		if err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = fmt.Errorf("lab sampler: read %s: %w", s.names[i], err)
			}
			s.mu.Unlock()
			return
		}
		for _, k := range held {
			if k == 0 {
				smp.Holders = append(smp.Holders, s.names[i])
			}
			if s.multi {
				smp.Each[k] = append(smp.Each[k], s.names[i])
			}
		}
	}
	// Nodes are read in a fixed order, but Sample promises sorted lists.
	slices.Sort(smp.Holders)
	for _, e := range smp.Each {
		slices.Sort(e)
	}
	smp.Took = time.Since(smp.At)
	s.mu.Lock()
	s.samples = append(s.samples, smp)
	s.mu.Unlock()
}

// holds returns the indexes (values of addrs) of the watched addresses
// configured in the handle's namespace, each once, from one address dump,
// retrying a dump the kernel interrupted because addresses changed under it.
func holds(h *netlink.Handle, addrs map[netip.Addr]int) ([]int, error) {
	var (
		list []netlink.Addr
		err  error
	)
	for try := 0; try < 5; try++ {
		list, err = h.AddrList(nil, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var held []int
	for _, a := range list {
		if a.IPNet == nil {
			continue
		}
		got, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		if k, watched := addrs[got.Unmap()]; watched && !slices.Contains(held, k) {
			held = append(held, k)
		}
	}
	return held, nil
}

// unfenced keeps, of the held addresses (indexes into addrs), those the
// node's fence lets through: not in its managed set, or in its live set with
// time left. A node without the fence's tables (keepalived, or before the
// agent's first start) keeps them all.
func unfenced(c *nftables.Conn, held []int, addrs map[netip.Addr]int) ([]int, error) {
	table := &nftables.Table{Name: vipfence.FenceTable, Family: nftables.TableFamilyIPv4}
	read := func(name string) (map[netip.Addr]bool, error) {
		set := &nftables.Set{Table: table, Name: name}
		els, err := c.GetSetElements(set)
		if err != nil {
			return nil, err
		}
		out := map[netip.Addr]bool{}
		for _, e := range els {
			if e.Timeout > 0 && e.Expires <= 0 {
				continue // ran out; not yet collected
			}
			if a, ok := netip.AddrFromSlice(e.Key); ok {
				out[a] = true
			}
		}
		return out, nil
	}
	managed, err := read(vipfence.FenceManagedSet)
	if err != nil {
		// nftables reports a missing table as text only: look for it.
		tables, lerr := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		if lerr != nil {
			return nil, fmt.Errorf("fence sets: %w (listing tables: %v)", err, lerr)
		}
		if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == vipfence.FenceTable }) {
			return held, nil
		}
		return nil, fmt.Errorf("fence sets: %w", err)
	}
	live, err := read(vipfence.FenceLiveSet)
	if err != nil {
		return nil, fmt.Errorf("fence sets: %w", err)
	}
	var out []int
	for a, k := range addrs {
		if !slices.Contains(held, k) || (a.Is4() && managed[a] && !live[a]) {
			continue
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

// Stop stops sampling, closes the sampler's handles and returns every
// sample taken, oldest first. Call it once.
func (s *Sampler) Stop() []Sample {
	close(s.stop)
	<-s.done
	s.closeHandles()
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

// SamplesSince returns the samples taken at or after t (all of them for
// the zero time), oldest first, without stopping the sampler: a copy, safe
// to call at any time (e.g. to check one trial of a longer run).
func (s *Sampler) SamplesSince(t time.Time) []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.samples, t, func(x Sample, t time.Time) int { return x.At.Compare(t) })
	return slices.Clone(s.samples[i:])
}

// Last returns the most recent sample, and false before the first one. Safe
// to call at any time, e.g. to wait until the sampler sees a change.
func (s *Sampler) Last() (Sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return Sample{}, false
	}
	return s.samples[len(s.samples)-1], true
}

// Err returns the first read error, if any. Passes that failed are missing
// from the samples, so a caller asserting S1 should treat an error as a
// failed run. Safe to call at any time.
func (s *Sampler) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Interval is a run of consecutive samples in which two or more nodes held
// the address.
type Interval struct {
	// Start and End are the times of the first and last sample of the
	// run; End-Start is a lower bound of the overlap (the true overlap may
	// extend up to one period on either side).
	Start, End time.Time
	// Samples is the number of samples in the run.
	Samples int
	// Holders is the union of the holders seen during the run, sorted.
	Holders []string
}

// Duration returns End - Start (monotonic).
func (iv Interval) Duration() time.Duration { return iv.End.Sub(iv.Start) }

// DualHolder finds every run of consecutive samples showing two or more
// holders and returns the longest run's duration with all the runs, in
// order. An empty result means S1 held at every sample. A run of a single
// sample has duration 0 but is still returned, so check len(intervals) to
// detect any violation. samples must be in time order, as Stop returns them.
func DualHolder(samples []Sample) (longest time.Duration, intervals []Interval) {
	var cur *Interval
	for _, s := range samples {
		if len(s.Holders) < 2 {
			cur = nil
			continue
		}
		if cur == nil {
			intervals = append(intervals, Interval{Start: s.At})
			cur = &intervals[len(intervals)-1]
		}
		cur.End = s.At
		cur.Samples++
		for _, h := range s.Holders {
			if !slices.Contains(cur.Holders, h) {
				cur.Holders = append(cur.Holders, h)
			}
		}
		slices.Sort(cur.Holders)
	}
	for _, iv := range intervals {
		longest = max(longest, iv.Duration())
	}
	return longest, intervals
}

// HolderChange is one step of the holder timeline: from At on, Holders held
// the address (nil: nobody).
type HolderChange struct {
	At      time.Time
	Holders []string
}

// Holders compresses samples into the holder timeline: the first sample and
// then every sample whose holder set differs from the previous one.
func Holders(samples []Sample) []HolderChange {
	var out []HolderChange
	for i, s := range samples {
		if i > 0 && slices.Equal(s.Holders, samples[i-1].Holders) {
			continue
		}
		out = append(out, HolderChange{At: s.At, Holders: slices.Clone(s.Holders)})
	}
	return out
}

// ARPCache returns the MAC address the host's neighbour table holds for ip
// on its lab interface, and false when there is no usable entry (none,
// incomplete or failed) or the table could not be read. Entries for the
// fixed addresses of other hosts are permanent (see New); VIP entries are
// learnt from ARP.
func (l *Lab) ARPCache(name string, ip netip.Addr) (net.HardwareAddr, bool) {
	var mac net.HardwareAddr
	err := l.use(func() error {
		h, err := l.lookup(name)
		if err != nil {
			return err
		}
		link, err := h.h.LinkByName(h.Iface)
		if err != nil {
			return err
		}
		neighs, err := h.h.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		const unusable = netlink.NUD_INCOMPLETE | netlink.NUD_FAILED
		for _, n := range neighs {
			got, ok := netip.AddrFromSlice(n.IP)
			if !ok || got.Unmap() != ip.Unmap() || n.State == netlink.NUD_NONE || n.State&unusable != 0 || len(n.HardwareAddr) == 0 {
				continue
			}
			mac = slices.Clone(n.HardwareAddr)
		}
		return nil
	})
	return mac, err == nil && mac != nil
}
