package kaimport

import (
	"net/netip"
	"strings"
)

// Flags are the import command's flags as written; Options reads them.
type Flags struct {
	NodeIDs     string   // --node-ids n1,n2,n3
	Addrs       []string // --addr ID=IP, repeated
	IfaceCIDRs  []string // --iface-cidr IF=CIDR, repeated
	Witness     string   // --witness ID=IP
	ScriptsRoot string   // --scripts-root DIR
}

// Options checks the flags and returns them as Options; a bad value is an
// *InputError naming the flag and the form it takes.
func (f Flags) Options() (Options, error) {
	o := Options{Addrs: map[string]netip.Addr{}, IfaceCIDRs: map[string]netip.Prefix{}, ScriptsRoot: f.ScriptsRoot}
	if f.NodeIDs != "" {
		o.NodeIDs = strings.Split(f.NodeIDs, ",")
	}
	for _, a := range f.Addrs {
		id, ip, ok := strings.Cut(a, "=")
		addr, err := netip.ParseAddr(ip)
		if !ok || id == "" || err != nil {
			return Options{}, inputErr("--addr %q: give ID=IP, the node id and its address on the cluster LAN (n1=10.0.10.11)", a)
		}
		o.Addrs[id] = addr.Unmap()
	}
	for _, c := range f.IfaceCIDRs {
		ifc, cidr, ok := strings.Cut(c, "=")
		p, err := netip.ParsePrefix(cidr)
		if !ok || ifc == "" || err != nil {
			return Options{}, inputErr("--iface-cidr %q: give IF=CIDR, the interface and its subnet (eth0=10.0.10.0/24)", c)
		}
		o.IfaceCIDRs[ifc] = p.Masked()
	}
	if f.Witness != "" {
		id, ip, ok := strings.Cut(f.Witness, "=")
		addr, err := netip.ParseAddr(ip)
		if !ok || id == "" || err != nil {
			return Options{}, inputErr("--witness %q: give ID=IP, the witness's node id and address (w3=10.0.10.13)", f.Witness)
		}
		o.WitnessID, o.WitnessAddr = id, addr.Unmap()
	}
	return o, nil
}
