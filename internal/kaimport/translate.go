package kaimport

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Ports of the generated addresses, as in the examples (testdata/harbor).
const (
	raftPort    = 7101
	apiPort     = 7201
	metricsPort = 7301
)

// Options are the inputs a keepalived.conf does not hold.
type Options struct {
	// NodeIDs name the nodes, one per file in order; empty: each file's
	// router_id (global_defs), else its base name without extension.
	NodeIDs []string
	// Addrs are nodes' cluster addresses by node id; default the
	// unicast_src_ip of the node's instances.
	Addrs map[string]netip.Addr
	// IfaceCIDRs are the interfaces' subnets by interface name (eth0 =
	// 10.0.10.0/24), for the VIP subnet lint and prefix-less VIPs.
	IfaceCIDRs map[string]netip.Prefix
	// WitnessID and WitnessAddr add a witness node (votes, holds no role):
	// the third voter of a keepalived pair.
	WitnessID   string
	WitnessAddr netip.Addr
	// ScriptsRoot, when set, is where the scripts the configs name are
	// read for the lint (ROOT/usr/local/bin/check.sh); unset, they are not
	// read.
	ScriptsRoot string
}

// OutFile is one generated file: a node config (ID.yaml) or spec.yaml.
type OutFile struct {
	Name    string
	Content string
}

// Result is what Import produces: the files and the lint findings, in input
// order.
type Result struct {
	Files    []OutFile
	Findings []Finding
}

// Warnings counts the findings of severity Warning.
func (r *Result) Warnings() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == Warning {
			n++
		}
	}
	return n
}

// InputError is input that cannot be translated: the message names what is
// missing and the flag or edit that gives it.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func inputErr(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// dnsLabel makes a keepalived name (VI_1, check_harbor) a DNS label
// (vi-1, check-harbor); "" when nothing is left.
func dnsLabel(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 63 {
		out = strings.Trim(out[:63], "-")
	}
	return out
}

// kaNode is one input file as a node of the new cluster.
type kaNode struct {
	ID       string
	IDFrom   string
	File     *keepalivedFile
	Addr     netip.Addr
	AddrFrom string
	Iface    string
	IfFrom   string
	Checks   []check
	checkOf  map[string]string // vrrp_script name -> check name
}

// Import reads one keepalived.conf per node and translates them into node
// configs and a spec. A file that cannot be parsed, or a value the
// translation needs and cannot find, is an error (*ParseError,
// *InputError); everything else is translated, with findings for what
// keepalived did not do as written and what has no equivalent.
func Import(paths []string, opt Options) (*Result, error) {
	if len(paths) == 0 {
		return nil, inputErr("no keepalived.conf given; give one file per node")
	}
	if len(opt.NodeIDs) > 0 && len(opt.NodeIDs) != len(paths) {
		return nil, inputErr("--node-ids names %d nodes for %d files; give one id per file, in order", len(opt.NodeIDs), len(paths))
	}
	lint := &linter{}
	var nodes []*kaNode
	for i, p := range paths {
		tree, err := parseFile(p)
		if err != nil {
			return nil, err
		}
		kf, err := readModel(p, tree, lint)
		if err != nil {
			return nil, err
		}
		n := &kaNode{File: kf, checkOf: map[string]string{}}
		switch {
		case len(opt.NodeIDs) > 0:
			n.ID, n.IDFrom = opt.NodeIDs[i], "--node-ids"
		case kf.RouterID != "":
			n.ID, n.IDFrom = dnsLabel(kf.RouterID), "router_id "+kf.RouterID
		default:
			base := filepath.Base(p)
			n.ID, n.IDFrom = dnsLabel(strings.TrimSuffix(base, filepath.Ext(base))), "file name"
		}
		if !labelRE.MatchString(n.ID) {
			return nil, inputErr("%s: node id %q (from %s) is not a DNS label (n1, lb-1); give --node-ids", p, n.ID, n.IDFrom)
		}
		for _, o := range nodes {
			if o.ID == n.ID {
				return nil, inputErr("%s and %s both give node id %s (from %s); give --node-ids with one id per file", o.File.Path, p, n.ID, n.IDFrom)
			}
		}
		if len(kf.Instances) == 0 {
			return nil, inputErr("%s has no vrrp_instance; nothing to translate", p)
		}
		nodes = append(nodes, n)
	}
	if opt.WitnessID != "" {
		if !labelRE.MatchString(opt.WitnessID) {
			return nil, inputErr("--witness: %q is not a DNS label node id; give --witness ID=IP", opt.WitnessID)
		}
		for _, n := range nodes {
			if n.ID == opt.WitnessID {
				return nil, inputErr("--witness %s is also the node of %s; give the witness another id", opt.WitnessID, n.File.Path)
			}
		}
	}
	voters := len(nodes)
	if opt.WitnessID != "" {
		voters++
	}
	if voters%2 == 0 {
		hint := "give a witness (a third voter that holds no role) with --witness ID=IP"
		if opt.WitnessID != "" {
			hint = "drop --witness or add a node's file"
		}
		return nil, inputErr("%d voters: Raft needs an odd number (3 survives the loss of one); %s", voters, hint)
	}
	for _, n := range nodes {
		if err := nodeAddress(n, opt, lint); err != nil {
			return nil, err
		}
		nodeInterface(n, lint)
	}
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			if a.Addr == b.Addr {
				return nil, inputErr("%s and %s both have address %s; give each node its own with --addr ID=IP", a.ID, b.ID, a.Addr)
			}
		}
	}
	for _, n := range nodes {
		translateScripts(n, opt.ScriptsRoot, lint)
	}
	lintPeers(nodes, opt, lint)
	roles, profile, err := translateRoles(nodes, opt, lint)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	for _, n := range nodes {
		res.Files = append(res.Files, OutFile{Name: n.ID + ".yaml", Content: emitNode(n, nodes, opt, profile)})
	}
	if opt.WitnessID != "" {
		res.Files = append(res.Files, OutFile{Name: opt.WitnessID + ".yaml", Content: emitWitness(nodes, opt, profile)})
	}
	res.Files = append(res.Files, OutFile{Name: "spec.yaml", Content: emitSpec(paths, roles)})
	res.Findings = lint.sorted()
	return res, nil
}

// nodeAddress sets the node's cluster address: --addr, else the
// unicast_src_ip its instances share.
func nodeAddress(n *kaNode, opt Options, lint *linter) error {
	if a, ok := opt.Addrs[n.ID]; ok {
		n.Addr, n.AddrFrom = a, "--addr"
		return nil
	}
	for _, in := range n.File.Instances {
		if !in.UnicastSrc.IsValid() {
			continue
		}
		if !n.Addr.IsValid() {
			n.Addr, n.AddrFrom = in.UnicastSrc, fmt.Sprintf("unicast_src_ip, %s:%d", n.File.Path, in.line["unicast_src_ip"])
		} else if in.UnicastSrc != n.Addr {
			lint.add(Note, n.File.Path, in.line["unicast_src_ip"], "vrrp_instance %s: unicast_src_ip %s differs from %s used for the node's address; give --addr %s=IP to choose", in.Name, in.UnicastSrc, n.Addr, n.ID)
		}
	}
	if !n.Addr.IsValid() {
		return inputErr("%s (node %s): no address for Raft and the API: the file has no unicast_src_ip; give --addr %s=IP (the node's address on the cluster LAN)", n.File.Path, n.ID, n.ID)
	}
	return nil
}

// nodeInterface sets vip_interface: the first VIP's dev, else its
// instance's interface. A node puts every VIP on one interface.
func nodeInterface(n *kaNode, lint *linter) {
	for _, in := range n.File.Instances {
		for _, v := range in.VIPs {
			ifc, from := in.Interface, fmt.Sprintf("interface, %s:%d", n.File.Path, in.line["interface"])
			if v.Dev != "" {
				ifc, from = v.Dev, fmt.Sprintf("dev, %s:%d", v.File, v.Line)
			}
			if ifc == "" {
				continue
			}
			if n.Iface == "" {
				n.Iface, n.IfFrom = ifc, from
			} else if ifc != n.Iface {
				lint.add(Warning, v.File, v.Line, "VIP %s is on %s but this node's VIPs go on one interface, %s (%s); the import puts every VIP on %s: move the VIP's instance to its own node or use one interface", v.Written, ifc, n.Iface, n.IfFrom, n.Iface)
			}
		}
	}
}

// translateScripts turns the tracked vrrp_scripts into checks and lints
// every script.
func translateScripts(n *kaNode, root string, lint *linter) {
	trackedBy := map[string]bool{}
	for _, in := range n.File.Instances {
		for _, t := range in.Tracks {
			trackedBy[t.Name] = true
			if !slices.ContainsFunc(n.File.Scripts, func(s *script) bool { return s.Name == t.Name }) {
				lint.add(Warning, n.File.Path, t.Line, "vrrp_instance %s tracks %s, which no vrrp_script in this file defines; keepalived ignores the line; define it or remove the line", in.Name, t.Name)
			}
			if t.Weight != nil {
				lint.add(Note, n.File.Path, t.Line, "track_script %s weight %d has no equivalent: a failing required check makes the node ineligible for the role (as keepalived's weight 0), it does not lower its priority", t.Name, *t.Weight)
			}
		}
	}
	used := map[string]bool{}
	for _, s := range n.File.Scripts {
		lintCommand(s, root, lint)
		if !trackedBy[s.Name] {
			lint.warn(s.At, "vrrp_script %s is tracked by no vrrp_instance, so keepalived never runs it and it moves nothing; not imported: add it to the instance's track_script and import again, or remove it", s.Name)
			continue
		}
		if s.Weight != nil {
			lint.note(s.At, "vrrp_script %s: weight %d has no equivalent: a failing required check makes the node ineligible for the role (as keepalived's weight 0), it does not lower its priority", s.Name, *s.Weight)
		}
		name := dnsLabel(s.Name)
		if name == "" {
			name = "check"
		}
		for base, i := name, 2; used[name]; i++ {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		used[name] = true
		n.checkOf[s.Name] = name
		n.Checks = append(n.Checks, translateCheck(s, name, lint))
	}
}

// lintPeers reports unicast peers that are no other node's address: a
// node's file is missing, or the peer list is stale.
func lintPeers(nodes []*kaNode, opt Options, lint *linter) {
	addrs := map[netip.Addr]bool{}
	for _, n := range nodes {
		addrs[n.Addr] = true
	}
	for _, n := range nodes {
		for _, in := range n.File.Instances {
			for _, p := range in.UnicastPeers {
				if !addrs[p] {
					lint.add(Warning, n.File.Path, in.line["unicast_peer"], "vrrp_instance %s: unicast_peer %s is no given node's address; give that node's keepalived.conf too (one file per node), or remove the stale peer", in.Name, p)
				}
			}
		}
	}
}

// role is one translated vip role.
type role struct {
	Name         string
	Comments     []string
	Address      string
	AddrFrom     string
	Follow       string
	Requires     []string
	Preempt      bool
	PreemptDelay time.Duration
	Candidates   []candidate
}

type candidate struct {
	Node     string
	Priority int
	From     string
}

// member is one node's copy of an instance.
type member struct {
	n  *kaNode
	in *instance
}

// translateRoles makes one vip role per address of each vrrp_instance
// (instances are matched across files by name), and picks the timing
// profile from the shortest advert_int.
func translateRoles(nodes []*kaNode, opt Options, lint *linter) ([]role, string, error) {
	var order []string
	groups := map[string][]member{}
	vrids := map[int]member{}
	shortest := time.Duration(0)
	for _, n := range nodes {
		for _, in := range n.File.Instances {
			if _, ok := groups[in.Name]; !ok {
				order = append(order, in.Name)
			}
			groups[in.Name] = append(groups[in.Name], member{n, in})
			if o, ok := vrids[in.VRID]; ok && o.in.Name != in.Name {
				lint.add(Warning, n.File.Path, in.line["virtual_router_id"], "vrrp_instance %s: virtual_router_id %d is also vrrp_instance %s's (%s:%d); on one network two instances with one id fight over one virtual MAC; give each instance its own id (harbormaster needs none)", in.Name, in.VRID, o.in.Name, o.n.File.Path, o.in.line["virtual_router_id"])
			} else if !ok {
				vrids[in.VRID] = member{n, in}
			}
			if shortest == 0 || in.AdvertInt < shortest {
				shortest = in.AdvertInt
			}
			lintInstanceNotes(n, in, lint)
		}
	}
	profile := "lan"
	if shortest < time.Second {
		profile = "fast"
	}
	var roles []role
	names := map[string]bool{}
	for _, name := range order {
		ms := groups[name]
		rs, err := instanceRoles(name, ms, opt, lint, names)
		if err != nil {
			return nil, "", err
		}
		roles = append(roles, rs...)
	}
	if len(roles) == 0 {
		return nil, "", errors.New("no vrrp_instance has a virtual_ipaddress; nothing to translate")
	}
	return roles, profile, nil
}

func lintInstanceNotes(n *kaNode, in *instance, lint *linter) {
	if in.Auth != nil {
		lint.note(in.Auth, "vrrp_instance %s: authentication has no equivalent: every harbormaster channel uses mutual TLS (docs/security.md); tls: in the node config names the files", in.Name)
	}
	if in.TrackIf != nil {
		lint.note(in.TrackIf, "vrrp_instance %s: track_interface has no equivalent: add a check that tests the link (exec: [/usr/bin/test, -e, /sys/class/net/IF/carrier] fails on a missing interface) and require it", in.Name)
	}
	for _, nt := range in.Notify {
		lint.note(nt, "vrrp_instance %s: %s is not imported: harbormaster runs no script when a VIP moves; if it starts or stops a service, make that a service role with start and stop hooks (docs/configuration.md, Services); to watch changes, use harbormaster events --follow", in.Name, nt.Key)
	}
}

// instanceRoles translates one vrrp_instance (its copies on every node).
func instanceRoles(name string, ms []member, opt Options, lint *linter, names map[string]bool) ([]role, error) {
	first := ms[0]
	base := dnsLabel(name)
	if base == "" {
		base = "vip"
	}
	// Copies of one instance must agree on the router id; each node's
	// priority becomes its candidate priority.
	var cands []candidate
	preempt := true
	var delay time.Duration
	var states []string
	for _, m := range ms {
		if m.in.VRID != first.in.VRID {
			lint.add(Warning, m.n.File.Path, m.in.line["virtual_router_id"], "vrrp_instance %s has virtual_router_id %d here and %d in %s: keepalived makes them two routers that never see each other, both masters; use one id", name, m.in.VRID, first.in.VRID, first.n.File.Path)
		}
		from := fmt.Sprintf("priority, %s:%d", m.n.File.Path, m.in.line["priority"])
		if m.in.line["priority"] == 0 {
			from = "keepalived's default priority 100"
		}
		for _, c := range cands {
			if c.Priority == m.in.Priority {
				lint.add(Warning, m.n.File.Path, lineOr(m.in, "priority"), "vrrp_instance %s: priority %d equals node %s's: keepalived breaks the tie by the highest address, harbormaster by the lowest node id (%s); give distinct priorities to say which node you prefer", name, m.in.Priority, c.Node, min(c.Node, m.n.ID))
			}
		}
		cands = append(cands, candidate{Node: m.n.ID, Priority: m.in.Priority, From: from})
		if m.in.NoPreempt {
			preempt = false
		}
		delay = max(delay, m.in.PreemptDelay)
		if m.in.State != "" {
			states = append(states, fmt.Sprintf("%s on %s", m.in.State, m.n.ID))
		}
		if m.in.NoPreempt != first.in.NoPreempt {
			lint.add(Warning, m.n.File.Path, lineOr(m.in, "nopreempt"), "vrrp_instance %s: nopreempt is set on some nodes only; the role gets no preempt (one policy per role)", name)
		}
	}
	slices.SortStableFunc(cands, func(a, b candidate) int { return b.Priority - a.Priority })
	if delay > time.Hour {
		lint.add(Warning, first.n.File.Path, lineOr(first.in, "preempt_delay"), "vrrp_instance %s: preempt_delay %s is over 1h; written as 1h", name, delay)
		delay = time.Hour
	}
	// Required checks: what every copy tracks; a check tracked by some
	// copies only is required all the same (the others never qualify).
	var requires []string
	for _, m := range ms {
		for _, t := range m.in.Tracks {
			c, ok := m.n.checkOf[t.Name]
			if !ok || slices.Contains(requires, c) {
				continue
			}
			requires = append(requires, c)
			for _, o := range ms {
				if _, has := o.n.checkOf[t.Name]; !has {
					lint.add(Warning, o.n.File.Path, o.in.At.Line, "vrrp_instance %s does not track %s here but does on %s; the role requires the check, so node %s never holds it until its config has check %s", name, t.Name, m.n.ID, o.n.ID, c)
				}
			}
		}
	}
	// The addresses: every copy's, in order of first appearance.
	type addr struct {
		v    vip
		m    member
		seen int
	}
	var addrs []*addr
	for _, m := range ms {
		for _, v := range m.in.VIPs {
			i := slices.IndexFunc(addrs, func(a *addr) bool { return a.v.Addr == v.Addr })
			if i < 0 {
				addrs = append(addrs, &addr{v: v, m: m})
				i = len(addrs) - 1
			}
			addrs[i].seen++
		}
	}
	for _, a := range addrs {
		if a.seen != len(ms) {
			lint.add(Warning, a.v.File, a.v.Line, "vrrp_instance %s: VIP %s is not in every node's copy of the instance; the role's address is cluster-wide: every candidate may hold it", name, a.v.Addr)
		}
	}
	var roles []role
	for i, a := range addrs {
		r := role{Preempt: preempt, PreemptDelay: delay, Candidates: cands}
		r.Name = base
		if i > 0 {
			r.Name = fmt.Sprintf("%s-%d", base, i+1)
		}
		for k := 2; names[r.Name]; k++ {
			r.Name = fmt.Sprintf("%s-%d", base, k)
		}
		names[r.Name] = true
		prefix, err := vipPrefix(a.v, a.m, opt, lint)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if m.n != a.m.n {
				lintSubnet(a.v, prefix, m, opt, lint)
			}
		}
		r.Address, r.AddrFrom = prefix.String(), fmt.Sprintf("%s:%d", a.v.File, a.v.Line)
		if i == 0 {
			r.Comments = append(r.Comments, fmt.Sprintf("vrrp_instance %s (%s), virtual_router_id %d (harbormaster needs none).", name, memberLines(ms), first.in.VRID))
			if len(states) > 0 {
				r.Comments = append(r.Comments, fmt.Sprintf("state %s: no equivalent, the leader places the role by the policy below.", strings.Join(states, ", ")))
			}
			if preempt {
				r.Comments = append(r.Comments, "No nopreempt: keepalived preempts by default, so preempt is on.")
			} else {
				r.Comments = append(r.Comments, "nopreempt: once moved, the role stays where it is.")
			}
			r.Requires = requires
		} else {
			r.Comments = append(r.Comments, fmt.Sprintf("vrrp_instance %s's address %d: it follows %s, as the instance moved its addresses together.", name, i+1, roles[0].Name))
			r.Follow = roles[0].Name
			r.Candidates = nil
			r.Preempt, r.PreemptDelay = false, 0
		}
		roles = append(roles, r)
	}
	return roles, nil
}

func lineOr(in *instance, key string) int {
	if l := in.line[key]; l != 0 {
		return l
	}
	return in.At.Line
}

func memberLines(ms []member) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%s:%d", m.n.File.Path, m.in.At.Line))
	}
	return strings.Join(parts, ", ")
}

// vipPrefix is the role's address: the VIP with its prefix length, or, when
// keepalived's entry has none (keepalived adds it as /32), the interface's
// subnet prefix from --iface-cidr, else /32.
func vipPrefix(v vip, m member, opt Options, lint *linter) (netip.Prefix, error) {
	ifc := m.n.Iface
	sub, haveSub := opt.IfaceCIDRs[ifc]
	bits := v.Bits
	if v.NoPrefix {
		if haveSub && sub.Contains(v.Addr) {
			bits = sub.Bits()
			lint.add(Note, v.File, v.Line, "VIP %s has no prefix length (keepalived adds it as /%d); written with %s's /%d from --iface-cidr", v.Written, v.Addr.BitLen(), ifc, bits)
		} else {
			lint.add(Warning, v.File, v.Line, "VIP %s has no prefix length: keepalived adds it as /%d, with no subnet route; clients on the LAN still reach it through ARP, but give the subnet's prefix (%s/24) or --iface-cidr %s=CIDR; written as /%d", v.Written, v.Addr.BitLen(), v.Addr, ifcOr(ifc), v.Addr.BitLen())
		}
	}
	if _, err := v.Addr.Prefix(bits); err != nil {
		return netip.Prefix{}, &ParseError{File: v.File, Line: v.Line, Msg: fmt.Sprintf("VIP %s: %v", v.Written, err)}
	}
	lintSubnet(v, netip.PrefixFrom(v.Addr, bits), m, opt, lint)
	return netip.PrefixFrom(v.Addr, bits), nil
}

func ifcOr(s string) string {
	if s == "" {
		return "IF"
	}
	return s
}

// lintSubnet reports a VIP outside the subnet of the interface it goes on:
// the subnet from --iface-cidr when given, else the VIP's own prefix must
// hold the node's address (unless it is a /32 host route).
func lintSubnet(v vip, p netip.Prefix, m member, opt Options, lint *linter) {
	ifc := m.n.Iface
	if !lint.once(fmt.Sprintf("subnet %s:%d", v.File, v.Line)) {
		return
	}
	if sub, ok := opt.IfaceCIDRs[ifc]; ok {
		switch {
		case !sub.Contains(v.Addr):
			lint.add(Warning, v.File, v.Line, "VIP %s is outside %s's subnet %s (--iface-cidr) on node %s: keepalived adds it, but no client on that LAN reaches it without a route; use an address of %s", v.Addr, ifc, sub, m.n.ID, sub)
		case !v.NoPrefix && p.Bits() != sub.Bits() && p.Bits() != v.Addr.BitLen():
			lint.add(Warning, v.File, v.Line, "VIP %s has prefix /%d but %s's subnet is %s on node %s: the kernel adds a wrong subnet route; use /%d", v.Written, p.Bits(), ifc, sub, m.n.ID, sub.Bits())
		}
		return
	}
	if p.Bits() < v.Addr.BitLen() && !p.Masked().Contains(m.n.Addr) {
		lint.add(Warning, v.File, v.Line, "VIP %s is outside the subnet of node %s's address %s (%s): keepalived adds it, but clients on the node's LAN do not reach it; use an address of the node's subnet, or give --iface-cidr %s=CIDR if %s is on another interface", v.Written, m.n.ID, m.n.Addr, m.n.AddrFrom, ifcOr(ifc), m.n.Addr)
	}
}
