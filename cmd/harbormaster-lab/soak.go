package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/scenario"
)

func soakCmd() *cobra.Command {
	var (
		cf     clusterFlags
		so     scenario.SoakOptions
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Run a cluster under a steady load of ordinary events and tell whether the agents' resources stay flat",
		Long: `Build a fresh lab with a cluster, and for --duration run an event every --every: a planned
move of the VIP, a crash and restore of its holder, a move, an agent restart
(SIGTERM and start), and with --redis a move of the Redis master, in turn.
The last node is never crashed or restarted, so one agent process lives the
whole run. Every --sample, every agent is sampled: RSS, goroutines, open
files, CPU, the size of its raft.db.

At the end it prints the samples over time and a verdict per series and
node: the least-squares slope over the second half of the (longest-lived)
process's samples, extrapolated to 24 h, is "flat" at or under the series'
bound, "growing" over it and more than 3 standard errors above 0,
"inconclusive" otherwise (docs/chaos.md, "Soak").

The Raft log (raft.db) grows until hashicorp/raft's first snapshot (8192
entries); before it, and while the log is shorter than a snapshot keeps, its
growth is "pre-snapshot", not "growing".

Exit codes: 0 no series growing and every event succeeded; 1 an event
failed or the run failed; 2 bad usage; 3 a series growing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case so.Every < time.Second:
				return exitError{2, fmt.Errorf("--every %s: use 1s or more", so.Every)}
			case so.Sample < time.Second:
				return exitError{2, fmt.Errorf("--sample %s: use 1s or more", so.Sample)}
			case so.Duration < 2*so.Sample:
				return exitError{2, fmt.Errorf("--duration %s: use at least two --sample periods (%s); a verdict needs %d samples after the warm-up (the first half)",
					so.Duration, 2*so.Sample, scenario.MinJudgePoints)}
			}
			if err := needRoot(); err != nil {
				return err
			}
			co, err := cf.options("soak")
			if err != nil {
				return err
			}
			if _, err := lab.Sweep(); err != nil {
				fmt.Fprintln(os.Stderr, "harbormaster-lab: sweeping stale labs:", err)
			}
			so.ClusterOptions = co
			res, err := scenario.Soak(cmd.Context(), so)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(w, res); err != nil {
					return err
				}
			} else {
				printSoak(w, &res)
			}
			switch {
			case !res.OK:
				return exitError{1, nil}
			case res.Growing():
				return exitError{3, nil}
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().DurationVar(&so.Duration, "duration", time.Hour, "how long the load runs, once the cluster is stable")
	cmd.Flags().DurationVar(&so.Every, "every", 20*time.Second, "period of the load's events")
	cmd.Flags().DurationVar(&so.Sample, "sample", 30*time.Second, "period of the samples of every agent")
	cmd.Flags().BoolVar(&so.Redis, "redis", true, "add a redis-master role with a redis-server per node, and moves of it to the load (needs redis-server)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: the samples, the events and the verdicts")
	return cmd
}

// printSoak prints the samples over time (one row per node and sample) and
// the verdicts.
func printSoak(w io.Writer, r *scenario.SoakResult) {
	fmt.Fprintf(w, "soak: %d nodes (keeper %s), profile %s, redis %s, %s, an event every %s, a sample every %s\n",
		r.Nodes, r.Keeper, r.Profile, yesno(r.Redis), r.Duration, r.Every, r.Sample)
	kinds := map[string]int{}
	for _, e := range r.Events {
		kinds[e.Kind]++
	}
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(ks)
	fmt.Fprintf(w, "events: %d (%v); agent processes per node: %v\n", len(r.Events), ks, r.Generation)
	if r.Dir != "" {
		fmt.Fprintf(w, "logs: %s\n", r.Dir)
	}
	fmt.Fprintln(w)
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(t, "T S\tNODE\tPID\tRSS MIB\tGOROUTINES\tFDS\tCPU %\tRAFT.DB KIB\tAPPLIED\tSNAPSHOT\t")
	for _, s := range r.Samples {
		if s.Err != "" {
			fmt.Fprintf(t, "%.0f\t%s\t%d\t%s\t\n", s.T, s.Node, s.PID, s.Err)
			continue
		}
		fmt.Fprintf(t, "%.0f\t%s\t%d\t%.1f\t%.0f\t%d\t%.2f\t%d\t%.0f\t%d\t\n", s.T, s.Node, s.PID, float64(s.RSSKiB)/1024,
			s.Goroutines, s.FDs, s.CPUPct, s.RaftDBKiB, s.AppliedIndex, s.SnapshotIndex)
	}
	t.Flush()
	fmt.Fprintln(w)
	printSoakVerdicts(w, r.Verdicts)
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "problems: none")
	} else {
		fmt.Fprintf(w, "problems (%d):\n", len(r.Problems))
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  "+p)
		}
	}
}

// printSoakVerdicts prints one row per series and node.
func printSoakVerdicts(w io.Writer, vs []scenario.SoakVerdict) {
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "SERIES\tNODE\tPID\tSTART\tEND\tJUDGED\tSLOPE/DAY\t±SE\tBOUND/DAY\tVERDICT")
	for _, v := range vs {
		pid := "all"
		if v.PID != 0 {
			pid = fmt.Sprint(v.PID)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%.1f\t%.1f\t%.0f-%.0fs (%d)\t%.1f\t%.1f\t%.0f\t%s\n", v.Series, v.Node, pid, v.Start, v.End,
			v.From, v.To, v.Points, v.SlopePerDay, v.SEPerDay, v.Bound, v.Verdict)
	}
	t.Flush()
	for _, v := range vs {
		if v.Note != "" {
			fmt.Fprintf(w, "%s %s: %s\n", v.Series, v.Node, v.Note)
		}
	}
	for _, sv := range scenario.SummarizeSoak(vs) {
		fmt.Fprintf(w, "verdict %s: %s", sv.Series, sv.Verdict)
		if len(sv.TooShort) > 0 && sv.Verdict != scenario.VerdictTooShort {
			fmt.Fprintf(w, " (too short to judge on %v: their agents restarted too often)", sv.TooShort)
		}
		fmt.Fprintln(w)
	}
}
