// Package lab builds the network-namespace test lab the chaos tests and the
// benchmarks run in (DESIGN.md §7).
//
// A Lab is one switch namespace holding a bridge plus one namespace per node
// and per client, each joined to the bridge by a veth pair. Every address is
// in 198.18.0.0/15; nothing is ever added to the root namespace. Every
// namespace name starts with the lab's prefix "hmlab-<pid>-<hex>", so Sweep
// can remove the labs of dead processes and nothing else.
//
// Teardown: tests call Close in t.Cleanup; programs call Close on the way out
// and on SIGINT/SIGTERM, for instance
//
//	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
//	defer stop()
//	l, err := lab.New(ctx, lab.Options{})
//	...
//	defer l.Close()
//
// and may call Sweep first to remove labs left behind by a SIGKILL.
//
// Faults (Crash, Partition, OneWay, Loss) are nftables rules inside the host
// namespaces, keyed on the hosts' MAC addresses, so they also cut ARP and
// traffic to and from VIPs. See faults.go.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// namePrefix starts the name of every namespace a Lab creates.
	namePrefix = "hmlab-"
	// Iface is the name of the lab interface inside every host namespace.
	Iface = "eth0"
	// Bridge is the name of the bridge inside the switch namespace.
	Bridge = "br0"
	// netlinkTimeout bounds every netlink request of the lab.
	netlinkTimeout = 5 * time.Second
	// maxNodes and maxClients keep node addresses below .100 and client
	// addresses below .200 (VIPs use .200 and up).
	maxNodes   = 89
	maxClients = 99
)

var (
	// labNameRE matches the names of lab namespaces: prefix, owner pid,
	// random hex, optional label, host suffix.
	labNameRE = regexp.MustCompile(`^hmlab-([0-9]+)-[0-9a-f]{4}-`)
	// optNameRE restricts Options.Name.
	optNameRE = regexp.MustCompile(`^[a-z0-9]{1,16}$`)
)

// Options configures New. The zero value is a lab of 3 nodes and 1 client.
type Options struct {
	// Nodes is the number of node hosts, n1..nN with addresses
	// 198.18.0.11 and up; 0 means 3, at most 89.
	Nodes int
	// Clients is the number of client hosts, c1..cN with addresses
	// 198.18.0.101 and up; 0 means 1, at most 99.
	Clients int
	// Name is an optional label ([a-z0-9]{1,16}) appended to the prefix,
	// to tell labs apart in `ip netns list`.
	Name string
}

// Node describes one host of the lab (a node or a client). It is a value:
// the Lab never changes it after New.
type Node struct {
	// Name is the host's short name: "n1".. for nodes, "c1".. for clients.
	Name string
	// NS is the name of the host's network namespace (under /run/netns).
	NS string
	// IP is the host's fixed address on Iface, inside 198.18.0.0/24.
	IP netip.Addr
	// Prefix is IP with its prefix length (/24).
	Prefix netip.Prefix
	// MAC is Iface's hardware address, 02:48:4d:00:00:<last octet of IP>.
	MAC net.HardwareAddr
	// Iface is the lab interface inside NS, always "eth0".
	Iface string
	// Port is the name of the switch-side end of the veth, attached to
	// the bridge in the switch namespace; it equals Name.
	Port string
}

// host is a Node plus the lab's netlink handle bound to its namespace.
type host struct {
	Node
	h *netlink.Handle
}

// Lab is a running lab. Its methods are safe for concurrent use; after Close
// they fail (Command's Start fails too, since the namespaces are gone).
type Lab struct {
	prefix  string
	swNS    string
	nodes   []Node
	clients []Node
	hosts   map[string]*host

	mu     sync.RWMutex // guards closed and the lifetime of the handles
	closed bool
	sw     *netlink.Handle
	br     netlink.Link

	fmu    sync.Mutex // serialises fault changes; taken before mu
	faults faultState
	events []Fault
}

// New creates a lab: the switch namespace "<prefix>-sw" with bridge br0, and
// a namespace per node and per client with its veth, address, static
// neighbour entries for every other host, and loopback, all up. On error it
// removes whatever it created. ctx bounds the construction only.
func New(ctx context.Context, opts Options) (*Lab, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Clients == 0 {
		opts.Clients = 1
	}
	if opts.Nodes < 0 || opts.Nodes > maxNodes {
		return nil, fmt.Errorf("lab: nodes %d out of range 1..%d", opts.Nodes, maxNodes)
	}
	if opts.Clients < 0 || opts.Clients > maxClients {
		return nil, fmt.Errorf("lab: clients %d out of range 1..%d", opts.Clients, maxClients)
	}
	if opts.Name != "" && !optNameRE.MatchString(opts.Name) {
		return nil, fmt.Errorf("lab: name %q does not match %s", opts.Name, optNameRE)
	}
	l := &Lab{hosts: map[string]*host{}}
	if err := l.createSwitch(opts.Name); err != nil {
		return nil, err
	}
	for i := 1; i <= opts.Nodes; i++ {
		l.nodes = append(l.nodes, l.describe(fmt.Sprintf("n%d", i), byte(10+i)))
	}
	for i := 1; i <= opts.Clients; i++ {
		l.clients = append(l.clients, l.describe(fmt.Sprintf("c%d", i), byte(100+i)))
	}
	for _, n := range append(append([]Node{}, l.nodes...), l.clients...) {
		if err := ctx.Err(); err != nil {
			l.Close()
			return nil, fmt.Errorf("lab: %w", err)
		}
		if err := l.addHost(n); err != nil {
			l.Close()
			return nil, fmt.Errorf("lab %s: %w", l.prefix, err)
		}
	}
	if err := l.addNeighbours(); err != nil {
		l.Close()
		return nil, fmt.Errorf("lab %s: %w", l.prefix, err)
	}
	return l, nil
}

// createSwitch picks a free prefix and creates the switch namespace with its
// bridge.
func (l *Lab) createSwitch(label string) error {
	var err error
	for try := 0; try < 8; try++ {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("lab: random prefix: %w", err)
		}
		l.prefix = fmt.Sprintf("%s%d-%04x", namePrefix, os.Getpid(), binary.BigEndian.Uint16(b[:]))
		if label != "" {
			l.prefix += "-" + label
		}
		l.swNS = l.prefix + "-sw"
		if l.sw, err = createNS(l.swNS); err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if err != nil {
		return fmt.Errorf("lab: no free prefix: %w", err)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: Bridge, HardwareAddr: mac(0xff, 0)}}
	if err := l.sw.LinkAdd(br); err != nil {
		l.Close()
		return fmt.Errorf("lab %s: add bridge: %w", l.prefix, err)
	}
	link, err := l.sw.LinkByName(Bridge)
	if err == nil {
		err = l.sw.LinkSetUp(link)
	}
	if err != nil {
		l.Close()
		return fmt.Errorf("lab %s: set bridge up: %w", l.prefix, err)
	}
	l.br = link
	return nil
}

// mac returns the lab's deterministic MAC 02:48:4d:<side>:00:<last>, where
// side is 0 for host ends and 0xff for switch ends ("HM" in the middle).
func mac(side, last byte) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x48, 0x4d, side, 0x00, last}
}

// describe builds the Node for a host name and last address octet.
func (l *Lab) describe(name string, last byte) Node {
	ip := netip.AddrFrom4([4]byte{198, 18, 0, last})
	return Node{
		Name:   name,
		NS:     l.prefix + "-" + name,
		IP:     ip,
		Prefix: netip.PrefixFrom(ip, 24),
		MAC:    mac(0, last),
		Iface:  Iface,
		Port:   name,
	}
}

// addHost creates the host's namespace and veth pair and brings both ends up.
func (l *Lab) addHost(n Node) error {
	h, err := createNS(n.NS)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.hosts[n.Name] = &host{Node: n, h: h}
	l.mu.Unlock()
	fd, err := unix.Open(nsPath(n.NS), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", n.NS, err)
	}
	defer unix.Close(fd)
	last := n.IP.As4()[3]
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: n.Port, HardwareAddr: mac(0xff, last)},
		PeerName:         n.Iface,
		PeerHardwareAddr: n.MAC,
		PeerNamespace:    netlink.NsFd(fd),
	}
	if err := l.sw.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", n.Port, n.Iface, err)
	}
	port, err := l.sw.LinkByName(n.Port)
	if err != nil {
		return fmt.Errorf("find port %s: %w", n.Port, err)
	}
	if err := l.sw.LinkSetMaster(port, l.br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", n.Port, Bridge, err)
	}
	if err := l.sw.LinkSetUp(port); err != nil {
		return fmt.Errorf("set %s up: %w", n.Port, err)
	}
	eth, err := h.LinkByName(n.Iface)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", n.Iface, n.NS, err)
	}
	addr := &netlink.Addr{IPNet: prefixToIPNet(n.Prefix)}
	if err := h.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("add %s to %s: %w", n.Prefix, n.Name, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set %s up in %s: %w", n.Iface, n.NS, err)
	}
	return nil
}

// addNeighbours installs a permanent neighbour entry for every other host's
// fixed address in every host. Host-to-host traffic then needs no ARP, so a
// OneWay fault (which drops every frame, ARP replies included, in one
// direction) does not also cut the other direction. Addresses that move
// (VIPs) are resolved by ARP as usual.
func (l *Lab) addNeighbours() error {
	all := l.Hosts()
	for _, a := range all {
		h := l.hosts[a.Name]
		eth, err := h.h.LinkByName(a.Iface)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", a.Iface, a.NS, err)
		}
		for _, b := range all {
			if b.Name == a.Name {
				continue
			}
			n := &netlink.Neigh{
				LinkIndex:    eth.Attrs().Index,
				Family:       netlink.FAMILY_V4,
				State:        netlink.NUD_PERMANENT,
				IP:           net.IP(b.IP.AsSlice()),
				HardwareAddr: b.MAC,
			}
			if err := h.h.NeighSet(n); err != nil {
				return fmt.Errorf("neighbour %s on %s: %w", b.Name, a.Name, err)
			}
		}
	}
	return nil
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Prefix returns the lab's namespace name prefix "hmlab-<pid>-<hex>[-name]".
func (l *Lab) Prefix() string { return l.prefix }

// SwitchNS returns the name of the switch namespace holding the bridge.
func (l *Lab) SwitchNS() string { return l.swNS }

// Nodes returns the node hosts n1..nN, in order. The slice is a copy.
func (l *Lab) Nodes() []Node { return append([]Node(nil), l.nodes...) }

// Clients returns the client hosts c1..cN, in order. The slice is a copy.
func (l *Lab) Clients() []Node { return append([]Node(nil), l.clients...) }

// Hosts returns the nodes followed by the clients.
func (l *Lab) Hosts() []Node { return append(l.Nodes(), l.clients...) }

// Host returns the host with the given short name ("n1", "c1").
func (l *Lab) Host(name string) (Node, bool) {
	for _, n := range l.Hosts() {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// ErrClosed is returned by methods of a Lab after Close.
var ErrClosed = errors.New("lab closed")

// use runs fn while the lab's netlink handles are guaranteed open; it fails
// with ErrClosed after Close. fn may call lookup but not host or use.
func (l *Lab) use(fn func() error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	return fn()
}

// lookup returns the named host; the hosts map is immutable after New.
func (l *Lab) lookup(name string) (*host, error) {
	h, ok := l.hosts[name]
	if !ok {
		return nil, fmt.Errorf("lab: unknown host %q", name)
	}
	return h, nil
}

// host returns the named host; it fails after Close.
func (l *Lab) host(name string) (*host, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	h, ok := l.hosts[name]
	if !ok {
		return nil, fmt.Errorf("lab: unknown host %q", name)
	}
	return h, nil
}

// Close kills every process left in the lab's host namespaces, closes the
// lab's netlink handles and deletes every namespace the lab created. It is
// idempotent and safe to call concurrently with other methods, which fail
// with ErrClosed afterwards.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	hosts := make([]*host, 0, len(l.hosts))
	for _, h := range l.hosts {
		hosts = append(hosts, h)
	}
	sw := l.sw
	l.mu.Unlock()

	var errs []error
	for _, h := range hosts {
		if _, err := killAllIn(h.NS); err != nil {
			errs = append(errs, err)
		}
		h.h.Close()
		if err := deleteNS(h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if sw != nil {
		sw.Close()
		if err := deleteNS(l.swNS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close lab %s: %w", l.prefix, err)
	}
	return nil
}

// Sweep deletes the namespaces of stale labs: those named "hmlab-<pid>-..."
// whose pid is not a live process, after SIGKILLing whatever still runs in
// them. It never touches other namespaces, nor labs of live processes (this
// one included). It returns the names it deleted. Pids are those of the
// caller's pid namespace.
func Sweep() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		m := labNameRE.FindStringSubmatch(name)
		if m == nil || !strings.HasPrefix(name, namePrefix) {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid <= 0 || isAlive(pid) {
			continue
		}
		if _, err := killAllIn(name); err != nil {
			errs = append(errs, err)
		}
		if err := deleteNS(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("sweep: %w", err)
	}
	return removed, nil
}
