package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/internal/kaimport"
)

func importCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "import", Short: "Translate another tool's configuration into node configs and a spec"}
	cmd.AddCommand(importKeepalivedCmd())
	return cmd
}

func importKeepalivedCmd() *cobra.Command {
	var (
		f     kaimport.Flags
		out   string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "keepalived FILE... [--out DIR]",
		Short: "Translate keepalived.conf files (one per node) into node configs and a spec, and lint them; offline",
		Long: `Reads one keepalived.conf per node and writes ID.yaml per node and spec.yaml (to --out DIR, else to stdout).
Prints on stderr, as FILE:LINE: warning|note: ..., what keepalived accepts silently (unknown keywords, scripts no
instance tracks, check commands that cannot succeed, VIPs outside the interface's subnet, conflicting router ids,
tied priorities) and what has no equivalent. Exit 0 when the files were translated (warnings allowed), 2 when the
input cannot be translated (the message names the file and line, or the flag to give). docs/configuration.md,
"Importing a keepalived config".`,
		Example: `  harbormaster import keepalived n1/keepalived.conf n2/keepalived.conf n3/keepalived.conf --node-ids n1,n2,n3 --out /tmp/hm
  harbormaster import keepalived lb1.conf lb2.conf --addr lb1=10.0.10.11 --addr lb2=10.0.10.12 --witness w3=10.0.10.13 --iface-cidr eth0=10.0.10.0/24`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt, err := f.Options()
			if err != nil {
				return usageError{err}
			}
			res, err := kaimport.Import(args, opt)
			if err != nil {
				// Every failure here is the input's: a file that cannot be
				// read or parsed, or a value to give.
				return usageError{err}
			}
			for _, fd := range res.Findings {
				fmt.Fprintln(cmd.ErrOrStderr(), fd)
			}
			if out == "" {
				for _, o := range res.Files {
					fmt.Fprintf(cmd.OutOrStdout(), "# ==> %s <==\n%s\n", o.Name, o.Content)
				}
				return nil
			}
			return writeImport(cmd, out, res, force)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&out, "out", "", "directory to write ID.yaml per node and spec.yaml to (created); default: print them")
	fl.BoolVar(&force, "force", false, "overwrite files that exist in --out")
	fl.StringVar(&f.NodeIDs, "node-ids", "", "node ids, one per file in order (default: each file's router_id, else its base name)")
	fl.StringArrayVar(&f.Addrs, "addr", nil, "ID=IP: a node's cluster address (default: its unicast_src_ip); repeat per node")
	fl.StringArrayVar(&f.IfaceCIDRs, "iface-cidr", nil, "IF=CIDR: an interface's subnet (eth0=10.0.10.0/24), for the VIP subnet lint and VIPs without a prefix length")
	fl.StringVar(&f.Witness, "witness", "", "ID=IP: add a witness node (votes, holds no role), the third voter of a keepalived pair")
	fl.StringVar(&f.ScriptsRoot, "scripts-root", "", "read the check scripts the configs name under this directory (/ on the node itself) and lint them")
	return cmd
}

// writeImport writes the generated files into dir, refusing to overwrite
// one that exists unless force.
func writeImport(cmd *cobra.Command, dir string, res *kaimport.Result, force bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if !force {
		for _, o := range res.Files {
			p := filepath.Join(dir, o.Name)
			if _, err := os.Lstat(p); err == nil {
				return usageError{fmt.Errorf("%s exists; remove it, give another --out, or --force to overwrite", p)}
			}
		}
	}
	for _, o := range res.Files {
		p := filepath.Join(dir, o.Name)
		if err := os.WriteFile(p, []byte(o.Content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", p)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%d warning(s); check each node with harbormaster validate --config %s\n", res.Warnings(), filepath.Join(dir, res.Files[0].Name))
	return nil
}
