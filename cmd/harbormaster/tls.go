package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/internal/tlsid"
)

// tlsCmd writes the cluster's CA and the node and operator certificates
// (docs/security.md), as consul tls ca create / cert create do.
func tlsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "Create the cluster CA and node and operator certificates"}
	ca := &cobra.Command{Use: "ca", Short: "The cluster's certificate authority"}
	cert := &cobra.Command{Use: "cert", Short: "Node and operator certificates"}
	ca.AddCommand(caCreateCmd())
	cert.AddCommand(certCreateCmd(g))
	cmd.AddCommand(ca, cert)
	return cmd
}

func caCreateCmd() *cobra.Command {
	var (
		cluster, dir string
		days         int
		force        bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a CA for a cluster: DIR/ca.pem and DIR/ca-key.pem (keep the key offline)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !tlsid.ValidName(cluster) {
				return usageError{fmt.Errorf("--cluster %q: name the cluster with a DNS label (1-63 lower-case letters, digits, inner hyphens), e.g. --cluster prod", cluster)}
			}
			if days <= 0 {
				return usageError{errors.New("--days must be positive")}
			}
			c, keyPEM, err := tlsid.NewCA(cluster, time.Duration(days)*24*time.Hour)
			if err != nil {
				return err
			}
			certFile, keyFile, err := tlsid.WritePair(dir, "ca", c.CertPEM, keyPEM, force)
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s (cluster %s, expires %s)\n", certFile, keyFile, cluster,
				c.Cert.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster name, written into every certificate (required)")
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write into")
	cmd.Flags().IntVar(&days, "days", 3650, "validity in days")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

func certCreateCmd(g *globals) *cobra.Command {
	var (
		node, operator, role, dir, caKey string
		ips, dns                         []string
		days                             int
		force                            bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a node (--node ID) or operator (--operator NAME --role ROLE) certificate signed by the CA",
		Long: `Create a certificate signed by the cluster CA (--ca-file, default ./ca.pem, and
--ca-key-file, default ./ca-key.pem), written as DIR/NAME.pem and DIR/NAME-key.pem.

A node certificate (--node n1) identifies agent n1: its Raft, API and lease
traffic. Add the addresses clients verify it by with --ip and --dns (the
Sentinel listener's clients, for example). An operator certificate
(--operator alice --role read|operate|admin) is for the CLI:
  read     status, members, roles, events, explain, spec show
  operate  read + move, drain, undrain, transfer-leader, spec apply
  admin    operate + join, remove, tls rotate-lease-key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var id tlsid.Identity
			switch {
			case node != "" && operator != "":
				return usageError{errors.New("give --node or --operator, not both")}
			case node != "":
				if role != "" {
					return usageError{errors.New("--role is for operator certificates; a node certificate has none")}
				}
				id = tlsid.Identity{Kind: tlsid.Node, Name: node}
			case operator != "":
				if !tlsid.Role(role).Valid() {
					return usageError{fmt.Errorf("--role %q: want read, operate or admin", role)}
				}
				if len(ips)+len(dns) > 0 {
					return usageError{errors.New("--ip and --dns are for node certificates")}
				}
				id = tlsid.Identity{Kind: tlsid.Operator, Name: operator, Role: tlsid.Role(role)}
			default:
				return usageError{errors.New("give --node ID or --operator NAME --role read|operate|admin")}
			}
			if !tlsid.ValidName(id.Name) {
				return usageError{fmt.Errorf("%q: use a DNS label (1-63 lower-case letters, digits, inner hyphens)", id.Name)}
			}
			var ipList []net.IP
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return usageError{fmt.Errorf("--ip %q is not an IP address", s)}
				}
				ipList = append(ipList, ip)
			}
			caFile := g.tls.CA
			if caFile == "" {
				caFile = "ca.pem"
			}
			if caKey == "" {
				caKey = filepath.Join(filepath.Dir(caFile), "ca-key.pem")
			}
			ca, err := tlsid.LoadCA(caFile, caKey)
			if err != nil {
				return usageError{fmt.Errorf("the CA (--ca-file %s, --ca-key-file %s): %w", caFile, caKey, err)}
			}
			certPEM, keyPEM, err := ca.Issue(id, dns, ipList, time.Duration(days)*24*time.Hour)
			if err != nil {
				return usageError{err}
			}
			certFile, keyFile, err := tlsid.WritePair(dir, id.Name, certPEM, keyPEM, force)
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s (%s)\n", certFile, keyFile, id.URI())
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "node id the certificate identifies")
	cmd.Flags().StringVar(&operator, "operator", "", "operator name the certificate identifies")
	cmd.Flags().StringVar(&role, "role", "", "operator role: read, operate or admin")
	cmd.Flags().StringSliceVar(&ips, "ip", nil, "IP address to add to a node certificate (repeatable)")
	cmd.Flags().StringSliceVar(&dns, "dns", nil, "DNS name to add to a node certificate (repeatable)")
	cmd.Flags().StringVar(&caKey, "ca-key-file", "", "CA key (default ca-key.pem beside --ca-file)")
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write into")
	cmd.Flags().IntVar(&days, "days", 825, "validity in days (capped by the CA's)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}
