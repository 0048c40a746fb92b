package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/scenario"
)

// scaleRun is what `harbormaster-lab scale --json` prints and `--from`
// reads back: every (nodes, roles) point of one run.
type scaleRun struct {
	Profile string                 `json:"profile"`
	Trials  int                    `json:"trials"`
	Points  []scenario.ScaleResult `json:"points"`
}

func scaleCmd() *cobra.Command {
	var (
		cf      clusterFlags
		nodes   []int
		roles   []int
		trials  int
		idle    time.Duration
		asJSON  bool
		table   bool
		svg     string
		doc     string
		from    string
		outJSON string
	)
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Crash the node holding most of N vip roles and measure what the failover and the idle cluster cost",
		Long: `For every --nodes count and --roles count, --trials times on a fresh cluster: place
the roles (VIPs in the lab's /24, four in five preferring the last node), move
the Raft leadership off that node, measure the idle cluster, crash the node and
measure until every one of its roles has a new holder in a kernel: that time,
the Raft entries it took, the leader's reconcile passes, Raft writes and lease
datagrams per second, CPU per agent and on the leader, RSS, and S1 on every
address. Prints a markdown table (default, or --table) or one JSON object
(--json); --svg writes the plot, --doc replaces the table and the figures
between the scale markers of a markdown file; --from renders a saved --json
instead of running.

Exit codes: 0 every role moved and S1 held (and always after --from); 1 a
violation, a point that could not be measured, or a failed run; 2 bad usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var run scaleRun
			if from != "" {
				b, err := os.ReadFile(from)
				if err != nil {
					return exitError{2, fmt.Errorf("--from: %w", err)}
				}
				if err := json.Unmarshal(b, &run); err != nil || len(run.Points) == 0 {
					return exitError{2, fmt.Errorf("--from %s: not the output of scale --json (%v)", from, err)}
				}
			} else {
				var err error
				if run, err = runScale(cmd, &cf, nodes, roles, trials, idle); err != nil {
					return err
				}
			}
			if outJSON != "" {
				b, err := json.MarshalIndent(run, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(outJSON, append(b, '\n'), 0o644); err != nil {
					return err
				}
			}
			if svg != "" {
				if err := os.WriteFile(svg, []byte(scaleSVG(run)), 0o644); err != nil {
					return err
				}
			}
			if doc != "" {
				if err := replaceScaleTable(doc, scaleTable(run)); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			switch {
			case asJSON:
				if err := writeJSON(w, run); err != nil {
					return err
				}
			case table || (svg == "" && doc == "" && outJSON == ""):
				io.WriteString(w, scaleTable(run))
			}
			if from != "" {
				return nil // a rendering: the run's verdict was its own exit code
			}
			for _, p := range run.Points {
				if len(p.Violations) > 0 || p.Error != "" {
					for _, v := range p.Violations {
						fmt.Fprintf(os.Stderr, "harbormaster-lab: %d nodes, %d roles: %s\n", p.Nodes, p.Roles, v)
					}
					return exitError{1, nil}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cf.bin, "bin", defaultBin(), "harbormaster binary")
	cmd.Flags().StringVar(&cf.profile, "profile", "lan", "agents' timing profile: lan or fast")
	cmd.Flags().StringVar(&cf.timing, "timing", "", timingUsage)
	cmd.Flags().StringVar(&cf.dir, "dir", "", "work dir for configs, data dirs and agent logs, kept afterwards, one sub-dir per trial (default: temporary, removed)")
	cmd.Flags().StringVar(&cf.logLevel, "log-level", "info", "agents' log level")
	cmd.Flags().BoolVarP(&cf.verbose, "verbose", "v", false, "print progress to stderr")
	cmd.Flags().BoolVar(&cf.insecure, "insecure", false, "run the agents with insecure: true (default: mutual TLS with a lab CA)")
	cmd.Flags().IntSliceVar(&nodes, "nodes", []int{3, 5}, "node counts, each 3, 5 or 7")
	cmd.Flags().IntSliceVar(&roles, "roles", []int{1, 20, 200}, fmt.Sprintf("role counts, each 1 to %d", scenario.MaxScaleRoles))
	cmd.Flags().IntVar(&trials, "trials", 3, "crashes per point, each on a fresh cluster")
	cmd.Flags().DurationVar(&idle, "idle", 3*time.Second, "window of the idle measurements")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().BoolVar(&table, "table", false, "print the markdown table (the default unless --svg, --doc or --out-json is given)")
	cmd.Flags().StringVar(&svg, "svg", "", "write the plot (SVG) to this file")
	cmd.Flags().StringVar(&doc, "doc", "", "replace the lines between <!-- scale:begin --> and <!-- scale:end --> in this markdown file with the table")
	cmd.Flags().StringVar(&from, "from", "", "render a saved `scale --json` output instead of running")
	cmd.Flags().StringVar(&outJSON, "out-json", "", "also write the JSON object to this file")
	return cmd
}

// runScale measures every point of the grid.
func runScale(cmd *cobra.Command, cf *clusterFlags, nodes, roles []int, trials int, idle time.Duration) (scaleRun, error) {
	run := scaleRun{Profile: cf.profile, Trials: trials}
	if trials < 1 {
		return run, exitError{2, fmt.Errorf("--trials %d: use 1 or more", trials)}
	}
	for _, r := range roles {
		if r < 1 || r > scenario.MaxScaleRoles {
			return run, exitError{2, fmt.Errorf("--roles %d: use 1 to %d (the free addresses of the lab's /24)", r, scenario.MaxScaleRoles)}
		}
	}
	if len(nodes) == 0 || len(roles) == 0 {
		return run, exitError{2, fmt.Errorf("--nodes and --roles need at least one count each")}
	}
	if err := needRoot(); err != nil {
		return run, err
	}
	if _, err := lab.Sweep(); err != nil {
		fmt.Fprintln(os.Stderr, "harbormaster-lab: sweeping stale labs:", err)
	}
	for _, n := range nodes {
		cf.nodes = n
		co, err := cf.options("scale")
		if err != nil {
			return run, err
		}
		for _, r := range roles {
			o := scenario.ScaleOptions{Cluster: co, Roles: r, Trials: trials, Idle: idle}
			if cf.dir != "" {
				o.Cluster.Dir = fmt.Sprintf("%s/n%d-r%d", cf.dir, n, r)
				if err := os.MkdirAll(o.Cluster.Dir, 0o755); err != nil {
					return run, err
				}
			}
			co.Log.Info("scale point", "nodes", n, "roles", r, "trials", trials)
			res, err := scenario.RunScale(cmd.Context(), o)
			if err != nil {
				if cmd.Context().Err() != nil {
					return run, err
				}
				// Kept, and the grid goes on: a point that cannot be
				// measured is a finding.
				res.Error = err.Error()
				fmt.Fprintln(os.Stderr, "harbormaster-lab:", err)
			}
			run.Points = append(run.Points, res)
		}
	}
	return run, nil
}

// scaleTable renders the run as a markdown table, one row per point,
// p50/p99 over the trials.
func scaleTable(run scaleRun) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Profile `%s`, %d trial(s) per row; p50 / p99 over the trials (nearest rank: with 3 trials p99 is the worst).\n\n", run.Profile, run.Trials)
	b.WriteString("| nodes | roles | moved | all moved ms | Raft entries | commands | reconcile ms idle / failover | Raft writes/s idle / failover | lease datagrams/s idle / failover | CPU % idle, mean agent | leader CPU % idle / failover | RSS MiB | S1 |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	pp := func(s scenario.Stats, f string) string {
		return fmt.Sprintf(f+" / "+f, s.P50, s.P99)
	}
	for _, p := range run.Points {
		if len(p.Trials) == 0 {
			fmt.Fprintf(&b, "| %d | %d | not measured: %s |||||||||||\n", p.Nodes, p.Roles, p.Error)
			continue
		}
		moved, held, cmds := 0, 0, 0.0
		for _, t := range p.Trials {
			moved += t.Moved
			held += t.Held
			cmds = max(cmds, t.Commands)
		}
		s1 := "held"
		if len(p.Violations) > 0 {
			s1 = fmt.Sprintf("%d violation(s)", len(p.Violations))
		}
		if p.Error != "" {
			s1 += fmt.Sprintf("; %d of %d trials measured: %s", len(p.Trials), run.Trials, p.Error)
		}
		fmt.Fprintf(&b, "| %d | %d | %d/%d | %s | %s | %.0f | %.1f / %.1f | %.1f / %.1f | %.0f / %.0f | %.1f | %.1f / %.1f | %.0f | %s |\n",
			p.Nodes, p.Roles, moved, held, pp(p.AllMovedMs, "%.0f"), pp(p.RaftEntries, "%.0f"), cmds,
			p.ReconcileIdleMs.P50, p.ReconcileMs.P50, p.RaftPerSecIdle.P50, p.RaftPerSecFail.P50,
			p.LeasePerSecIdle.P50, p.LeasePerSecFail.P50, p.CPUIdlePct.P50, p.LeaderCPUIdlePct.P50, p.LeaderCPUFailPct.P50,
			p.RSSKiB.Max/1024, s1)
	}
	return b.String()
}

const (
	scaleBegin = "<!-- scale:begin -->"
	scaleEnd   = "<!-- scale:end -->"
)

// replaceScaleTable puts table between the scale markers of the markdown
// file, keeping everything else.
func replaceScaleTable(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--doc: %w", err)
	}
	i, j := bytes.Index(b, []byte(scaleBegin)), bytes.Index(b, []byte(scaleEnd))
	if i < 0 || j < i {
		return exitError{2, fmt.Errorf("--doc %s: no %s ... %s markers; add them where the table goes", path, scaleBegin, scaleEnd)}
	}
	out := slices.Concat(b[:i+len(scaleBegin)], []byte("\n"), []byte(table), b[j:])
	return os.WriteFile(path, out, 0o644)
}
