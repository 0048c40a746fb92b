package kaimport

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Keywords keepalived 2.x accepts, from its parser (vrrp_parser.c), for the
// blocks the importer reads. Anything else in a vrrp_script or vrrp_instance
// block is reported: keepalived logs it and goes on without it, so a typo
// (fail for fall) silently changes what the config does.
var (
	scriptKeywords   = []string{"script", "interval", "timeout", "weight", "rise", "fall", "user", "init_fail"}
	instanceKeywords = []string{
		"use_vmac", "use_vmac_addr", "vmac_xmit_base", "use_ipvlan", "unicast_peer", "unicast_fault_no_peer",
		"check_unicast_src", "old_unicast_checksum", "native_ipv6", "state", "interface", "vrf", "dont_track_primary",
		"track_interface", "track_script", "track_file", "track_process", "track_bfd", "mcast_src_ip", "unicast_src_ip",
		"mcast_dst_ip", "track_src_ip", "virtual_router_id", "unicast_ttl", "version", "priority", "advert_int",
		"virtual_ipaddress", "virtual_ipaddress_excluded", "no_virtual_ipaddress", "promote_secondaries",
		"linkbeat_use_polling", "v3_checksum_as_v2", "virtual_routes", "virtual_rules", "accept", "no_accept",
		"skip_check_adv_addr", "strict_mode", "preempt", "nopreempt", "preempt_delay", "debug", "notify_backup",
		"notify_master", "notify_fault", "notify_stop", "notify_deleted", "notify", "notify_master_rx_lower_pri",
		"smtp_alert", "notify_priority_changes", "lvs_sync_daemon_interface", "garp_master_delay",
		"garp_master_refresh", "garp_master_repeat", "garp_master_refresh_repeat", "garp_lower_prio_delay",
		"garp_lower_prio_repeat", "down_timer_adverts", "timer_expired_backup", "garp_extra_if", "vmac_garp_intvl",
		"lower_prio_no_advert", "higher_prio_send_advert", "kernel_rx_buf_size", "authentication",
	}
	topKeywords = []string{
		"global_defs", "vrrp_script", "vrrp_instance", "vrrp_sync_group", "track_group", "static_ipaddress",
		"static_routes", "static_rules", "garp_group", "linkbeat_interfaces", "vrrp_track_process",
		"vrrp_track_file", "track_file", "track_process", "interface_up_down_delays", "virtual_server",
		"virtual_server_group", "bfd_instance", "net_namespace", "net_namespace_ipvs", "namespace_with_ipsets",
		"instance", "use_pid_dir", "linkbeat_use_polling", "$", "@",
	}
)

// script is a vrrp_script block.
type script struct {
	Name     string
	Command  string // the script keyword's value, as keepalived reads it
	CmdLine  int
	Interval time.Duration // 0: not set (keepalived's default is 1s)
	Timeout  time.Duration
	Fall     int
	Rise     int
	Weight   *int
	User     string
	At       *node
}

// vip is one virtual_ipaddress entry.
type vip struct {
	Addr     netip.Addr
	Bits     int  // the prefix length
	NoPrefix bool // written without /N: keepalived adds it as /32 (/128)
	Dev      string
	Line     int
	File     string
	Written  string
}

// tracked is one track_script entry.
type tracked struct {
	Name   string
	Weight *int
	Line   int
}

// instance is a vrrp_instance block.
type instance struct {
	Name         string
	State        string
	Interface    string
	VRID         int
	Priority     int // keepalived's default is 100
	AdvertInt    time.Duration
	NoPreempt    bool
	PreemptDelay time.Duration
	UnicastSrc   netip.Addr
	UnicastPeers []netip.Addr
	VIPs         []vip
	Tracks       []tracked
	Notify       []*node // notify, notify_master, ...
	Auth         *node
	TrackIf      *node
	At           *node
	line         map[string]int // keyword -> line, for the ones set
}

// keepalivedFile is what the importer reads from one node's keepalived.conf.
type keepalivedFile struct {
	Path      string
	RouterID  string
	Scripts   []*script
	Instances []*instance
	Others    []*node // top-level blocks not translated (virtual_server, vrrp_sync_group, ...)
}

// readModel extracts the vrrp_script and vrrp_instance blocks of one parsed
// file, reporting unknown keywords and values keepalived would reject. A
// value the translation needs that cannot be read is an error.
func readModel(path string, nodes []*node, lint *linter) (*keepalivedFile, error) {
	kf := &keepalivedFile{Path: path}
	for _, n := range nodes {
		switch n.Key {
		case "global_defs":
			for _, g := range n.Block {
				if g.Key == "router_id" && len(g.Args) > 0 {
					kf.RouterID = g.Args[0]
				}
			}
		case "vrrp_script":
			s, err := readScript(n, lint)
			if err != nil {
				return nil, err
			}
			kf.Scripts = append(kf.Scripts, s)
		case "vrrp_instance":
			in, err := readInstance(n, lint)
			if err != nil {
				return nil, err
			}
			kf.Instances = append(kf.Instances, in)
		default:
			if !slices.Contains(topKeywords, n.Key) {
				lint.warn(n, "unknown keyword %q%s: keepalived ignores it and all of its block%s", n.Key, didYouMean(n.Key, topKeywords), blockHint(n))
				continue
			}
			kf.Others = append(kf.Others, n)
			switch n.Key {
			case "vrrp_sync_group":
				lint.note(n, "vrrp_sync_group is not imported: to move roles together, give the others follow: with the first role's name in spec.yaml")
			case "virtual_server", "virtual_server_group":
				lint.note(n, "%s (IPVS load balancing) is not imported: harbormaster places addresses, it does not balance; keep IPVS, or put a load balancer behind the VIP", n.Key)
			}
		}
	}
	return kf, nil
}

func blockHint(n *node) string {
	if n.hasBlock() {
		return "; fix the keyword"
	}
	return "; fix or remove it"
}

func arg(n *node, lint *linter) (string, bool) {
	if len(n.Args) == 0 {
		lint.warn(n, "%s has no value; keepalived ignores it; give one or remove the line", n.Key)
		return "", false
	}
	return n.Args[0], true
}

func intArg(n *node, lo, hi int) (int, error) {
	if len(n.Args) == 0 {
		return 0, &ParseError{File: n.File, Line: n.Line, Msg: fmt.Sprintf("%s needs a number (%d to %d)", n.Key, lo, hi)}
	}
	v, err := strconv.Atoi(n.Args[0])
	if err != nil || v < lo || v > hi {
		return 0, &ParseError{File: n.File, Line: n.Line, Msg: fmt.Sprintf("%s %q is not a whole number from %d to %d", n.Key, n.Args[0], lo, hi)}
	}
	return v, nil
}

// secondsArg reads keepalived's TIMER: seconds, fractions allowed.
func secondsArg(n *node) (time.Duration, error) {
	if len(n.Args) == 0 {
		return 0, &ParseError{File: n.File, Line: n.Line, Msg: n.Key + " needs a time in seconds (2, 0.5)"}
	}
	f, err := strconv.ParseFloat(n.Args[0], 64)
	if err != nil || f < 0 || f > 86400 {
		return 0, &ParseError{File: n.File, Line: n.Line, Msg: fmt.Sprintf("%s %q is not a time in seconds (2, 0.5)", n.Key, n.Args[0])}
	}
	return time.Duration(f * float64(time.Second)).Round(time.Millisecond), nil
}

func readScript(n *node, lint *linter) (*script, error) {
	s := &script{At: n}
	if len(n.Args) == 0 {
		return nil, &ParseError{File: n.File, Line: n.Line, Msg: "vrrp_script needs a name (vrrp_script chk_registry {)"}
	}
	s.Name = n.Args[0]
	var err error
	for _, k := range n.Block {
		switch k.Key {
		case "script":
			// keepalived joins the words of an unquoted script value.
			s.Command = strings.Join(k.Args, " ")
			s.CmdLine = k.Line
		case "interval":
			s.Interval, err = secondsArg(k)
		case "timeout":
			s.Timeout, err = secondsArg(k)
		case "fall":
			s.Fall, err = intArg(k, 1, 1<<30)
		case "rise":
			s.Rise, err = intArg(k, 1, 1<<30)
		case "weight":
			var w int
			w, err = intArg(k, -253, 253)
			s.Weight = &w
		case "user":
			s.User, _ = arg(k, lint)
		case "init_fail":
		default:
			lint.warn(k, "unknown keyword %q in vrrp_script %s%s: keepalived ignores it, so its default applies%s", k.Key, s.Name, didYouMean(k.Key, scriptKeywords), scriptDefault(k.Key))
		}
		if err != nil {
			return nil, err
		}
	}
	if s.Command == "" {
		return nil, &ParseError{File: n.File, Line: n.Line, Msg: fmt.Sprintf("vrrp_script %s has no script line; add script \"COMMAND\" or remove the block", s.Name)}
	}
	return s, nil
}

// scriptDefault says which default a misspelt keyword leaves in force.
func scriptDefault(key string) string {
	switch closest(key, scriptKeywords) {
	case "fall", "rise":
		return " (1: one failure, or success, switches)"
	case "interval":
		return " (1 second)"
	}
	return ""
}

func readInstance(n *node, lint *linter) (*instance, error) {
	if len(n.Args) == 0 {
		return nil, &ParseError{File: n.File, Line: n.Line, Msg: "vrrp_instance needs a name (vrrp_instance VI_1 {)"}
	}
	in := &instance{Name: n.Args[0], Priority: 100, AdvertInt: time.Second, At: n, line: map[string]int{}}
	var err error
	for _, k := range n.Block {
		in.line[k.Key] = k.Line
		switch k.Key {
		case "state":
			in.State, _ = arg(k, lint)
		case "interface":
			in.Interface, _ = arg(k, lint)
		case "virtual_router_id":
			in.VRID, err = intArg(k, 1, 255)
		case "priority":
			in.Priority, err = intArg(k, 1, 255)
		case "advert_int":
			in.AdvertInt, err = secondsArg(k)
		case "nopreempt":
			in.NoPreempt = true
		case "preempt":
			in.NoPreempt = false
		case "preempt_delay":
			in.PreemptDelay, err = secondsArg(k)
		case "unicast_src_ip":
			if a, ok := arg(k, lint); ok {
				in.UnicastSrc, err = parseAddr(k, a)
			}
		case "unicast_peer":
			for _, p := range k.Block {
				a, perr := parseAddr(p, p.Key)
				if perr != nil {
					return nil, perr
				}
				in.UnicastPeers = append(in.UnicastPeers, a)
			}
		case "virtual_ipaddress":
			for _, v := range k.Block {
				x, verr := parseVIP(v)
				if verr != nil {
					return nil, verr
				}
				in.VIPs = append(in.VIPs, x)
			}
		case "track_script":
			for _, t := range k.Block {
				tr := tracked{Name: t.Key, Line: t.Line}
				if len(t.Args) >= 2 && t.Args[0] == "weight" {
					w, werr := strconv.Atoi(t.Args[1])
					if werr == nil {
						tr.Weight = &w
					}
				}
				in.Tracks = append(in.Tracks, tr)
			}
		case "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify_deleted", "notify_master_rx_lower_pri":
			in.Notify = append(in.Notify, k)
		case "authentication":
			in.Auth = k
		case "track_interface":
			in.TrackIf = k
		default:
			if !slices.Contains(instanceKeywords, k.Key) {
				lint.warn(k, "unknown keyword %q in vrrp_instance %s%s: keepalived ignores it", k.Key, in.Name, didYouMean(k.Key, instanceKeywords))
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if in.VRID == 0 {
		return nil, &ParseError{File: n.File, Line: n.Line, Msg: fmt.Sprintf("vrrp_instance %s has no virtual_router_id; keepalived refuses it too; add virtual_router_id N", in.Name)}
	}
	return in, nil
}

func parseAddr(n *node, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, &ParseError{File: n.File, Line: n.Line, Msg: fmt.Sprintf("%q is not an IP address", s)}
	}
	return a.Unmap(), nil
}

// parseVIP reads "10.0.0.10/24 dev eth0 label eth0:1" (other options are
// kept out: brd, scope, ...).
func parseVIP(n *node) (vip, error) {
	v := vip{Line: n.Line, File: n.File, Written: n.Key}
	addr := n.Key
	if p, err := netip.ParsePrefix(addr); err == nil {
		v.Addr, v.Bits = p.Addr().Unmap(), p.Bits()
	} else if a, err := netip.ParseAddr(addr); err == nil {
		v.Addr, v.NoPrefix = a.Unmap(), true
		v.Bits = v.Addr.BitLen()
	} else {
		return v, &ParseError{File: n.File, Line: n.Line, Msg: fmt.Sprintf("virtual_ipaddress entry %q is not an address (10.0.0.10/24)", addr)}
	}
	for i := 0; i+1 < len(n.Args); i++ {
		if n.Args[i] == "dev" {
			v.Dev = n.Args[i+1]
		}
	}
	return v, nil
}

// didYouMean suggests the closest known keyword within two edits.
func didYouMean(k string, known []string) string {
	if c := closest(k, known); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

func closest(k string, known []string) string {
	best, bestD := "", 3
	for _, w := range known {
		if d := editDistance(k, w); d < bestD {
			best, bestD = w, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
