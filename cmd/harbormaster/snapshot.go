package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/raft"
	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/agent"
	"github.com/harbormaster/harbormaster/fsm"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
	"github.com/harbormaster/harbormaster/spec"
)

// snapshotCmd saves and inspects backups of the cluster's state
// (docs/operations.md, Disaster recovery).
func snapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Save and inspect backups of the cluster's committed state"}
	var force bool
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Save the leader's committed state to FILE (mode 0600: it holds the cluster lease key); admin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				resp, err := c.SaveSnapshot(ctx, &hmv1.SaveSnapshotRequest{})
				if err != nil {
					return err
				}
				flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
				if force {
					flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
				}
				f, err := os.OpenFile(args[0], flags, 0o600)
				if err != nil {
					return usageError{fmt.Errorf("%s: %w (--force overwrites)", args[0], err)}
				}
				if _, err := f.Write(resp.Snapshot); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "saved the state of cluster %s at index %d, term %d (leader %s) to %s\n",
					resp.ClusterId, resp.Index, resp.Term, resp.Node, args[0])
				return nil
			})
		},
	}
	save.Flags().BoolVar(&force, "force", false, "overwrite FILE")
	inspect := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print what a snapshot file holds (offline)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readBackupFile(args[0])
			if err != nil {
				return err
			}
			return printBackup(cmd.OutOrStdout(), b, g.json)
		},
	}
	cmd.AddCommand(save, inspect)
	return cmd
}

func readBackupFile(path string) (fsm.Backup, error) {
	f, err := os.Open(path)
	if err != nil {
		return fsm.Backup{}, usageError{err}
	}
	defer f.Close()
	b, err := fsm.ReadBackup(f)
	if err != nil {
		return fsm.Backup{}, usageError{fmt.Errorf("%s: %w", path, err)}
	}
	return b, nil
}

type backupSummary struct {
	ClusterID   string        `json:"cluster_id"`
	Index       uint64        `json:"index"`
	Term        uint64        `json:"term"`
	Taken       string        `json:"taken"`
	Node        string        `json:"node"`
	SpecVersion uint64        `json:"spec_version"`
	Nodes       []string      `json:"nodes"`
	MaxEpoch    uint64        `json:"max_epoch"`
	Roles       []roleSummary `json:"roles"`
}

type roleSummary struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	Epoch  uint64 `json:"epoch"`
}

func printBackup(w io.Writer, b fsm.Backup, asJSON bool) error {
	s := backupSummary{ClusterID: b.ClusterID, Index: b.Index, Term: b.Term, Node: b.Node, SpecVersion: b.State.SpecVersion,
		Nodes: []string{}, Roles: []roleSummary{}}
	if b.TakenMs > 0 {
		s.Taken = time.UnixMilli(b.TakenMs).UTC().Format(time.RFC3339)
	}
	for id := range b.State.Nodes {
		s.Nodes = append(s.Nodes, id)
	}
	sort.Strings(s.Nodes)
	for _, r := range b.State.Spec.Roles {
		a := b.State.Assignment(r.Name)
		s.Roles = append(s.Roles, roleSummary{Name: r.Name, Holder: a.Holder, Epoch: a.Epoch})
	}
	for _, a := range b.State.Assignments {
		s.MaxEpoch = max(s.MaxEpoch, a.Epoch)
	}
	if asJSON {
		return printJSON(w, s)
	}
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(t, "Cluster\t%s\nIndex\t%d (term %d)\nTaken\t%s by %s\nSpec version\t%d\nNodes\t%s\nHighest epoch\t%d\n",
		s.ClusterID, s.Index, s.Term, s.Taken, s.Node, s.SpecVersion, strings.Join(s.Nodes, ", "), s.MaxEpoch)
	t.Flush()
	t = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "ROLE\tHOLDER\tEPOCH")
	for _, r := range s.Roles {
		h := r.Holder
		if h == "" {
			h = "-"
		}
		fmt.Fprintf(t, "%s\t%s\t%d\n", r.Name, h, r.Epoch)
	}
	return t.Flush()
}

// recoverCmd rewrites a stopped node's data dir into a new cluster of the
// given voters (agent.Recover).
func recoverCmd(g *globals) *cobra.Command {
	var dataDir, from, voters string
	cmd := &cobra.Command{
		Use:   "recover --data-dir DIR --voters ID=RAFT_ADDR[,...] [--from-snapshot FILE]",
		Short: "Offline: make a stopped node's data dir a new cluster of --voters, from a snapshot file or its own state (after losing the majority for good)",
		Long: `Offline recovery for a cluster that lost its majority for good (docs/operations.md,
Disaster recovery). With the agent stopped on this node, it rewrites the data dir
into a cluster whose only voters are --voters, from --from-snapshot FILE (harbormaster
snapshot save) or, without it, from the data dir's own state (every entry in its log
counts as committed). Every role loses its holder and keeps its epoch, so the recovered
cluster hands them out again above every epoch before; the history gets a new cluster
id, so the lost nodes' old data dirs are refused: empty them before they rejoin.
Then start the agent here, and add the other nodes with empty data dirs
(harbormaster join).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return usageError{errors.New("--data-dir is required: the stopped node's data dir")}
			}
			var servers []raft.Server
			for _, v := range strings.Split(voters, ",") {
				id, addr, ok := strings.Cut(strings.TrimSpace(v), "=")
				if !ok || !spec.ValidName(id) || addr == "" {
					return usageError{fmt.Errorf("--voters %q: give ID=RAFT_ADDR pairs, comma-separated, e.g. n1=10.0.10.11:7101", v)}
				}
				servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(addr), Suffrage: raft.Voter})
			}
			var b *fsm.Backup
			if from != "" {
				bk, err := readBackupFile(from)
				if err != nil {
					return err
				}
				b = &bk
			}
			res, err := agent.Recover(dataDir, b, servers, io.Discard)
			if err != nil {
				return err
			}
			var ids []string
			for _, s := range res.Voters {
				ids = append(ids, string(s.ID)+"="+string(s.Address))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "recovered %s: index %d, term %d, voters %s; every role will be placed again above epoch %d; new cluster id %s (was %s)\n",
				dataDir, res.Index, res.Term, strings.Join(ids, ","), res.MaxEpoch, res.ClusterID, orDash(res.OldClusterID))
			if res.Moved != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "the previous snapshots are in %s\n", res.Moved)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "start the agent on this node, then add the others with empty data dirs (harbormaster join); never start a lost node on its old data dir")
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the stopped node's data dir")
	cmd.Flags().StringVar(&from, "from-snapshot", "", "a snapshot file (harbormaster snapshot save); default: the data dir's own state")
	cmd.Flags().StringVar(&voters, "voters", "", "the new cluster's voters, ID=RAFT_ADDR, comma-separated (this node at least)")
	_ = g
	return cmd
}
