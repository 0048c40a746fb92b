package kaimport

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// plainYAML is a string YAML reads back as the same string without quotes.
var plainYAML = regexp.MustCompile(`^[A-Za-z0-9_./][A-Za-z0-9_./:@+-]*$`)

// yamlString quotes s when YAML would read it otherwise (a JSON string is a
// valid YAML double-quoted scalar).
func yamlString(s string) string {
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n":
		b, _ := json.Marshal(s)
		return string(b)
	}
	if plainYAML.MatchString(s) && !strings.HasSuffix(s, ":") && !strings.Contains(s, ": ") {
		return s
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func yamlList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = yamlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func hostPort(a netip.Addr, port int) string {
	return netip.AddrPortFrom(a, uint16(port)).String()
}

func header(b *strings.Builder, lines ...string) {
	for _, l := range lines {
		fmt.Fprintf(b, "# %s\n", l)
	}
}

func commonNode(b *strings.Builder, id string, addr netip.Addr, addrFrom string, nodes []*kaNode, opt Options, profile string) {
	fmt.Fprintf(b, "node_id: %s\n", id)
	fmt.Fprintf(b, "raft_addr: %s   # %s\n", hostPort(addr, raftPort), addrFrom)
	fmt.Fprintf(b, "api_addr: %s\n", hostPort(addr, apiPort))
	fmt.Fprintf(b, "metrics_addr: %s\n", hostPort(addr, metricsPort))
	b.WriteString("data_dir: /var/lib/harbormaster\n")
	if profile == "fast" {
		b.WriteString("profile: fast   # an advert_int under 1s: the fast timing profile (docs/configuration.md)\n")
	} else {
		b.WriteString("profile: lan    # advert_int of 1s or more: the lan timing profile (docs/configuration.md)\n")
	}
	b.WriteString("bootstrap:\n")
	for _, n := range nodes {
		fmt.Fprintf(b, "  - {id: %s, raft_addr: %s}\n", n.ID, hostPort(n.Addr, raftPort))
	}
	if opt.WitnessID != "" {
		fmt.Fprintf(b, "  - {id: %s, raft_addr: %s}\n", opt.WitnessID, hostPort(opt.WitnessAddr, raftPort))
	}
	b.WriteString("spec_file: spec.yaml\n")
	b.WriteString("# Mutual TLS replaces VRRP authentication (docs/security.md): make the files with\n")
	fmt.Fprintf(b, "# harbormaster tls ca create and harbormaster tls cert create --node %s.\n", id)
	b.WriteString("tls:\n")
	b.WriteString("  ca_file: /etc/harbormaster/tls/ca.pem\n")
	fmt.Fprintf(b, "  cert_file: /etc/harbormaster/tls/%s.pem\n", id)
	fmt.Fprintf(b, "  key_file: /etc/harbormaster/tls/%s-key.pem\n", id)
}

// emitNode writes one node's config.
func emitNode(n *kaNode, nodes []*kaNode, opt Options, profile string) string {
	var b strings.Builder
	header(&b, fmt.Sprintf("Node %s, imported from %s by harbormaster import keepalived.", n.ID, n.File.Path),
		fmt.Sprintf("node_id from %s. Review the TLS files, data_dir and the checks before use.", n.IDFrom))
	commonNode(&b, n.ID, n.Addr, n.AddrFrom, nodes, opt, profile)
	if n.Iface != "" {
		fmt.Fprintf(&b, "vip_interface: %s   # %s\n", n.Iface, n.IfFrom)
	}
	if len(n.Checks) > 0 {
		b.WriteString("checks:\n")
		for _, c := range n.Checks {
			for _, l := range c.Comments {
				fmt.Fprintf(&b, "  # %s\n", l)
			}
			fmt.Fprintf(&b, "  - name: %s\n", c.Name)
			for _, f := range c.Fields {
				fmt.Fprintf(&b, "    %s: %s\n", f[0], f[1])
			}
		}
	}
	return b.String()
}

// emitWitness writes the witness's config: it votes and holds no role.
func emitWitness(nodes []*kaNode, opt Options, profile string) string {
	var b strings.Builder
	header(&b, fmt.Sprintf("Node %s, the witness given with --witness: the third voter of the pair; it holds no role.", opt.WitnessID),
		"Review the TLS files and data_dir before use.")
	commonNode(&b, opt.WitnessID, opt.WitnessAddr, "--witness", nodes, opt, profile)
	b.WriteString("witness: true\n")
	return b.String()
}

// emitSpec writes the cluster spec.
func emitSpec(paths []string, roles []role) string {
	var b strings.Builder
	header(&b, fmt.Sprintf("The cluster spec, imported from %s by harbormaster import keepalived.", strings.Join(paths, ", ")),
		"Seeded at bootstrap from the nodes' spec_file; change it with harbormaster spec apply FILE.")
	b.WriteString("roles:\n")
	for _, r := range roles {
		for _, l := range r.Comments {
			fmt.Fprintf(&b, "  # %s\n", l)
		}
		fmt.Fprintf(&b, "  - name: %s\n", r.Name)
		b.WriteString("    type: vip\n")
		fmt.Fprintf(&b, "    address: %s   # %s\n", r.Address, r.AddrFrom)
		if r.Follow != "" {
			fmt.Fprintf(&b, "    follow: %s\n", r.Follow)
		}
		if len(r.Requires) > 0 {
			fmt.Fprintf(&b, "    requires: %s   # track_script\n", yamlList(r.Requires))
		}
		if r.Preempt {
			b.WriteString("    preempt: true\n")
			if r.PreemptDelay > 0 {
				fmt.Fprintf(&b, "    preempt_delay: %s   # preempt_delay\n", r.PreemptDelay)
			}
		}
		if len(r.Candidates) > 0 {
			b.WriteString("    candidates:\n")
			for _, c := range r.Candidates {
				fmt.Fprintf(&b, "      - {node: %s, priority: %d}   # %s\n", c.Node, c.Priority, c.From)
			}
		}
	}
	return b.String()
}

// Render prints the result as the command does without --out: the
// findings, then each file after a "# ==> NAME <==" line.
func (r *Result) Render() string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString(f.String() + "\n")
	}
	for _, f := range r.Files {
		fmt.Fprintf(&b, "\n# ==> %s <==\n%s", f.Name, f.Content)
	}
	return b.String()
}
