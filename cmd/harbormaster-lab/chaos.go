package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/report"
	"github.com/harbormaster/harbormaster/chaos/scenario"
	"github.com/harbormaster/harbormaster/chaos/schedule"
)

func chaosCmd() *cobra.Command {
	var (
		cf       clusterFlags
		nodes    []int
		runs     int
		seed     int64
		duration time.Duration
		kinds    string
		asJSON   bool
		dir      string
		png      bool
		from     string
		redis    bool
	)
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Randomized runs of overlapping faults, checked by observers that do not trust the agents",
		Long: `Each run builds a fresh lab and cluster (the registry VIP and two stand-in
services, notary and clair), draws a schedule of overlapping faults from its
seed (crash, kill -9 and SIGSTOP of agents, graceful and rolling restarts,
data-dir loss, leader crash during a move, partitions of every shape,
one-way cuts, loss, busy cores), applies it, and checks what the kernels,
the services' own log and a client saw: S1 (never two holders), S2 (epochs
grow), liveness (every role held again within the settle time after its
faults end), one move per fault at most (flaps), and no move without a
fault. With --redis every node also runs a redis-server and the spec a
redis-master role and its VIP: kill -9 and SIGSTOP of redis-server join
the faults, and the checks add one writable Redis at a time (S1) and a
read-back of every acknowledged write from the final master (S7).
docs/chaos.md describes the faults and the checks.

Run i uses seed --seed + i; "--seed S --runs 1" replays the run of seed S.
With --nodes 3,5,7 every node count gets --runs runs. --json prints one
object (runs, ok, violations, flaps, seeds, per_run); --report DIR writes
an HTML page per run and a summary page there (docs/chaos.md, "The report").

Exit codes: 0 every run ok; 1 a violation or a flap (or a failure); 2 bad
usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from != "" {
				return rereport(cmd, from, dir, png)
			}
			if err := needRoot(); err != nil {
				return err
			}
			ks, err := chaosKinds(kinds, redis)
			if err != nil {
				return exitError{2, err}
			}
			if runs < 1 {
				return exitError{2, fmt.Errorf("--runs %d: at least 1", runs)}
			}
			if duration < 5*time.Second {
				return exitError{2, fmt.Errorf("--duration %s: at least 5s", duration)}
			}
			if !cmd.Flags().Changed("seed") {
				seed = time.Now().UnixNano() % 1_000_000
			}
			if _, err := lab.Sweep(); err != nil {
				fmt.Fprintln(os.Stderr, "harbormaster-lab: sweeping stale labs:", err)
			}
			all := report.Summary{Profile: cf.profile, Violations: []report.Violation{}, Seeds: []int64{}, PerRun: []report.Run{}}
			for _, n := range nodes {
				cf.nodes = n
				co, err := cf.options("chaos")
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "harbormaster-lab chaos: %d run(s) on %d nodes, profile %s%s, seeds %d..%d, %s each\n", runs, n, cf.profile, timingNote(cf.timing), seed, seed+int64(runs)-1, duration)
				sum, err := scenario.Chaos(cmd.Context(), scenario.ChaosOptions{ClusterOptions: co, Runs: runs, Seed: seed, Duration: duration, Kinds: ks, Redis: redis,
					Each: func(r report.Run) { fmt.Fprintln(os.Stderr, runLine(r)) }})
				merge(&all, sum)
				if err != nil {
					return err
				}
			}
			if dir != "" {
				if err := writeChaosReport(cmd, dir, all, png); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "harbormaster-lab chaos: report in %s\n", filepath.Join(dir, report.IndexFile))
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(w, all); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(w, "runs %d, ok %d, violations %d, flaps %d\n", all.Runs, all.OK, len(all.Violations), all.Flaps)
				for _, v := range all.Violations {
					fmt.Fprintf(w, "  run %d seed %d at %.0f ms: %s: %s\n", v.Run, v.Seed, v.AtMS, v.Invariant, v.Detail)
				}
			}
			if all.OK != all.Runs {
				return exitError{1, nil}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cf.bin, "bin", defaultBin(), "harbormaster binary")
	cmd.Flags().StringVar(&cf.profile, "profile", "lan", "agents' timing profile: lan or fast")
	cmd.Flags().StringVar(&cf.timing, "timing", "", timingUsage)
	cmd.Flags().StringVar(&cf.dir, "dir", "", "work dir (a subdir per run: configs, data dirs, agent logs), kept afterwards (default: temporary, removed)")
	cmd.Flags().StringVar(&cf.logLevel, "log-level", "info", "agents' log level")
	cmd.Flags().BoolVarP(&cf.verbose, "verbose", "v", false, "print progress (every fault) to stderr")
	cmd.Flags().BoolVar(&cf.insecure, "insecure", false, "run the agents with insecure: true (default: mutual TLS with a lab CA)")
	cmd.Flags().IntSliceVar(&nodes, "nodes", []int{3}, "number of agent nodes, all voters: 3, 5 or 7; a list (3,5,7) runs --runs runs for each")
	cmd.Flags().IntVar(&runs, "runs", 1, "runs per node count, each a fresh cluster and a schedule of its own")
	cmd.Flags().Int64Var(&seed, "seed", 0, "seed of the first run (default: drawn from the clock and printed)")
	cmd.Flags().DurationVar(&duration, "duration", 30*time.Second, "span of each run's schedule (a quiet tail follows)")
	cmd.Flags().StringVar(&kinds, "kinds", "", "comma-separated fault kinds to draw from (default every kind: "+strings.Join(kindNames(), ", ")+"; the last two need --redis)")
	cmd.Flags().BoolVar(&redis, "redis", false, "add a redis-server per node, the redis-master role, the Redis faults (kill-redis, pause-redis) and the Redis checks")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().StringVar(&dir, "report", "", "write the HTML report (a page per run, index.html, summary.json) into this directory")
	cmd.Flags().StringVar(&from, "from", "", "run nothing: write --report from a summary saved before (--json output or a report's summary.json)")
	cmd.Flags().BoolVar(&png, "png", false, "with --report: also PNGs of the summary, the first run and every run that is not OK (headless Chromium)")
	return cmd
}

func kindNames() []string {
	var out []string
	for _, k := range schedule.AllKinds() {
		out = append(out, string(k))
	}
	return out
}

// runLine is a run's progress line.
func runLine(r report.Run) string {
	s := fmt.Sprintf("run %d seed %d nodes %d %s: ", r.Run, r.Seed, r.Nodes, r.Profile)
	if r.OK {
		s += "ok"
	} else {
		s += fmt.Sprintf("%d violation(s)", len(r.Violations))
	}
	s += fmt.Sprintf(", %d faults, %d moves, %d flaps, outage max %.0f ms", len(r.Faults), len(r.Moves), r.Flaps, r.Figures["outage_max_ms"])
	for _, v := range r.Violations {
		s += fmt.Sprintf("\n  at %.0f ms: %s: %s", v.AtMS, v.Invariant, v.Detail)
	}
	return s
}

// merge adds one node count's summary to all, renumbering its runs.
func merge(all *report.Summary, s report.Summary) {
	base := all.Runs
	for _, r := range s.PerRun {
		r.Run += base
		for i := range r.Violations {
			r.Violations[i].Run = r.Run
		}
		all.PerRun = append(all.PerRun, r)
		all.Violations = append(all.Violations, r.Violations...)
	}
	all.Runs += s.Runs
	all.OK += s.OK
	all.Flaps += s.Flaps
	all.Seeds = append(all.Seeds, s.Seeds...)
	for _, n := range s.Nodes {
		all.Nodes = append(all.Nodes, n)
	}
}

// rereport writes a report from a saved summary.
func rereport(cmd *cobra.Command, from, dir string, png bool) error {
	if dir == "" {
		return exitError{2, fmt.Errorf("--from needs --report DIR")}
	}
	b, err := os.ReadFile(from)
	if err != nil {
		return exitError{2, fmt.Errorf("--from: %w", err)}
	}
	var s report.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return exitError{2, fmt.Errorf("--from %s: not a chaos summary: %w", from, err)}
	}
	return writeChaosReport(cmd, dir, s, png)
}

// writeChaosReport writes the report into dir: the pages (report.Write),
// summary.json (what --json prints) and, with png, a PNG of the summary
// and of every run page that is not OK (and of the first run, so a clean
// matrix has a picture too), taken in one headless Chromium.
func writeChaosReport(cmd *cobra.Command, dir string, s report.Summary, png bool) error {
	if err := report.Write(dir, s); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o644); err != nil {
		return err
	}
	if !png {
		return nil
	}
	bctx, cancel, err := report.NewBrowser(cmd.Context())
	if err != nil {
		return err
	}
	defer cancel()
	pages := []string{report.IndexFile}
	for i, r := range s.PerRun {
		if !r.OK || i == 0 {
			pages = append(pages, report.RunFile(r.Run))
		}
	}
	for _, p := range pages {
		img, err := report.CapturePage(bctx, filepath.Join(dir, p))
		if err != nil {
			return fmt.Errorf("png of %s: %w", p, err)
		}
		if err := os.WriteFile(filepath.Join(dir, strings.TrimSuffix(p, ".html")+".png"), img, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// chaosKinds parses --kinds; a Redis kind needs --redis.
func chaosKinds(kinds string, redis bool) ([]schedule.Kind, error) {
	ks, err := schedule.ParseKinds(kinds)
	if err != nil {
		return nil, fmt.Errorf("--kinds: %w", err)
	}
	for _, k := range ks {
		if !redis && (k == schedule.KillRedis || k == schedule.PauseRedis) {
			return nil, fmt.Errorf("--kinds %s: a Redis fault needs --redis", k)
		}
	}
	return ks, nil
}
