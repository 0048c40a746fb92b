package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/scenario"
)

// defaultBin is the harbormaster binary next to this executable.
func defaultBin() string {
	self, err := os.Executable()
	if err != nil {
		return "bin/harbormaster"
	}
	return filepath.Join(filepath.Dir(self), "harbormaster")
}

// clusterFlags are the flags of the commands that start a cluster.
type clusterFlags struct {
	bin      string
	profile  string
	dir      string
	logLevel string
	verbose  bool
	insecure bool
	nodes    int
	timing   string
}

// timingUsage is the help of --timing.
const timingUsage = `override single values of the profile, e.g. "lease=150ms,renew=40ms" (heartbeat, election, leader_lease, lease, renew: the config's timing section)`

func (f *clusterFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.bin, "bin", defaultBin(), "harbormaster binary")
	cmd.Flags().StringVar(&f.profile, "profile", "lan", "agents' timing profile: lan or fast")
	cmd.Flags().StringVar(&f.dir, "dir", "", "work dir for configs, data dirs and agent logs, kept afterwards (default: a temporary dir, removed)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "agents' log level")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "print progress to stderr")
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, "run the agents with insecure: true (default: mutual TLS with a lab CA)")
	cmd.Flags().IntVar(&f.nodes, "nodes", 3, "number of agent nodes, all voters: 3, 5 or 7")
	cmd.Flags().StringVar(&f.timing, "timing", "", timingUsage)
}

func (f *clusterFlags) options(name string) (scenario.ClusterOptions, error) {
	if f.profile != "lan" && f.profile != "fast" {
		return scenario.ClusterOptions{}, exitError{2, fmt.Errorf("--profile %q: use lan or fast", f.profile)}
	}
	timing, err := scenario.ParseTiming(f.profile, f.timing)
	if err != nil {
		return scenario.ClusterOptions{}, exitError{2, fmt.Errorf("--timing: %w", err)}
	}
	if f.nodes != 3 && f.nodes != 5 && f.nodes != 7 {
		return scenario.ClusterOptions{}, exitError{2, fmt.Errorf("--nodes %d: use 3, 5 or 7", f.nodes)}
	}
	if f.dir != "" {
		if err := os.MkdirAll(f.dir, 0o755); err != nil {
			return scenario.ClusterOptions{}, err
		}
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	bin, err := filepath.Abs(f.bin)
	if err != nil {
		return scenario.ClusterOptions{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return scenario.ClusterOptions{}, err
	}
	return scenario.ClusterOptions{Bin: bin, LabBin: self, Profile: f.profile, Timing: timing, Dir: f.dir, LogLevel: f.logLevel, LabName: name,
		Insecure: f.insecure, Nodes: f.nodes, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}, nil
}

func runCmd() *cobra.Command {
	var (
		cf     clusterFlags
		trials int
		asJSON bool
		loss   time.Duration
		lossPc int
		flap   time.Duration
		fault  string
		role   string
		lvips  bool
		oldBin string
		busy   int
	)
	cmd := &cobra.Command{
		Use:   "run SCENARIO",
		Short: "Build a fresh lab, run a scenario's trials, tear the lab down and print the figures",
		Long: `Build a fresh lab with a 3-node cluster, run the scenario's trials in it, tear the lab down
and print its figures: a table, or one JSON object with --json.

Exit codes: 0 every invariant held and every target was met; 1 a violation
(or the run failed); 2 bad usage; 3 invariants held but a target of
DESIGN.md §5 was missed. "harbormaster-lab list" names the scenarios.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needRoot(); err != nil {
				return err
			}
			co, err := cf.options("run")
			if err != nil {
				return err
			}
			if busy < 0 {
				return exitError{2, fmt.Errorf("--busy %d: want 0 (none) or more workers per node", busy)}
			}
			if _, err := lab.Sweep(); err != nil {
				fmt.Fprintln(os.Stderr, "harbormaster-lab: sweeping stale labs:", err)
			}
			if args[0] == "rolling-upgrade" && oldBin == "" {
				if oldBin, err = buildOld(cmd); err != nil {
					return err
				}
				defer os.RemoveAll(filepath.Dir(oldBin))
			}
			if oldBin != "" {
				if oldBin, err = filepath.Abs(oldBin); err != nil {
					return err
				}
			}
			res, err := scenario.Run(cmd.Context(), args[0], scenario.Options{ClusterOptions: co, Trials: trials, LossDuration: loss, LossPercent: lossPc, FlapDuration: flap,
				RedisFault: fault, RedisRole: role, ListenerVIPs: lvips, OldBin: oldBin, Busy: busy})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(w, res); err != nil {
					return err
				}
			} else {
				printResult(w, &res)
			}
			switch {
			case !res.OK:
				return exitError{1, nil}
			case !res.TargetsMet():
				return exitError{3, nil}
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().IntVar(&trials, "trials", 1, "number of trials (faults), run one after the other in the same cluster")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().IntVar(&busy, "busy", 0, "keep N CPU-burning workers in every node's namespace during the run (CPU contention)")
	cmd.Flags().DurationVar(&loss, "loss-duration", 20*time.Second, "how long loss-30 keeps the loss on")
	cmd.Flags().DurationVar(&flap, "flap-duration", 60*time.Second, "how long flap toggles the holder's check (every 3 s)")
	cmd.Flags().BoolVar(&lvips, "listener-vips", false, "the Redis scenarios: a vip role per node for its Sentinel-compatible listener (preferring the node, moving while it is down), and redis-clients' clients use those addresses")
	cmd.Flags().StringVar(&role, "redis-role", "", `the Redis scenarios: YAML fields added to the redis-master role, e.g. "min_synced_replicas: 1"`)
	cmd.Flags().StringVar(&fault, "fault", "", "redis-clients' fault: "+strings.Join(scenario.RedisClientFaults, ", ")+" (default crash-master)")
	cmd.Flags().StringVar(&oldBin, "old-bin", "", "rolling-upgrade: the previous build the agents start on (default: built from git at chaos/scenario.UpgradeFrom, from the checkout in the current directory)")
	cmd.Flags().IntVar(&lossPc, "loss-percent", 30, "loss-30's lab.Loss on every node, in and out (30 per node is 51% per node-to-node direction)")
	return cmd
}

// buildOld builds rolling-upgrade's previous build from the git checkout
// of the current directory into a temporary directory (the caller removes
// it) and says how long it took.
func buildOld(cmd *cobra.Command) (string, error) {
	dir, err := os.MkdirTemp("", "hm-lab-old-")
	if err != nil {
		return "", err
	}
	start := time.Now()
	bin, err := scenario.BuildUpgradeFrom(cmd.Context(), ".", dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	fmt.Fprintf(os.Stderr, "harbormaster-lab: built the previous version %s (%s) in %s\n", scenario.UpgradeFromVersion, scenario.UpgradeFrom[:12], time.Since(start).Round(100*time.Millisecond))
	return bin, nil
}

func listCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the scenarios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, n := range scenario.Names() {
				fmt.Fprintf(t, "%s\t%s\n", n, scenario.About(n))
			}
			return t.Flush()
		},
	}
}

func needRoot() error {
	if os.Geteuid() != 0 {
		return exitError{1, fmt.Errorf("the lab needs root (network namespaces, nftables)")}
	}
	return nil
}

func yesno(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func stats(s scenario.Stats) string {
	return fmt.Sprintf("p50 %.0f  p99 %.0f  max %.0f", s.P50, s.P99, s.Max)
}

// printResult prints the short table.
func printResult(w io.Writer, r *scenario.Result) {
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(t, "scenario\t%s (profile %s, %d trial(s))\n", r.Scenario, r.Profile, r.Trials)
	if r.Skipped != "" {
		fmt.Fprintf(t, "skipped\t%s\n", r.Skipped)
		t.Flush()
		return
	}
	fmt.Fprintf(t, "ok\t%s\n", yesno(r.OK))
	fmt.Fprintf(t, "outage ms\t%s\n", stats(r.OutageMS))
	fmt.Fprintf(t, "dual holder ms\t%.0f\n", r.DualHolderMS)
	for _, k := range r.FigureNames() {
		fmt.Fprintf(t, "%s\t%s\n", k, stats(r.Figures[k]))
	}
	for _, n := range scenario.ClientNames {
		if c, ok := r.Clients[n]; ok {
			fmt.Fprintf(t, "client %s (%s)\tfirst ack ms %s; lost max %d; stalled %d of %d\n", n, r.Fault, stats(c.FirstAckMS), c.LostAckedWrites, c.StalledTrials, c.Trials)
		}
	}
	var kinds []string
	for k := range r.Attacks {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(t, "attack %s	%d attempts, %d accepted\n", k, r.Attacks[k], r.Accepted[k])
	}
	for _, tg := range r.Targets {
		fmt.Fprintf(t, "target %s\tmeasured %.0f: %s\n", tg.What, tg.Measured, map[bool]string{true: "met", false: "MISSED"}[tg.Met])
	}
	if r.Dir != "" {
		fmt.Fprintf(t, "logs\t%s\n", r.Dir)
	}
	t.Flush()
	if len(r.Violations) == 0 {
		fmt.Fprintln(w, "violations: none")
	} else {
		fmt.Fprintf(w, "violations (%d):\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintln(w, "  "+v)
		}
	}
	fmt.Fprintln(w)
	t = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "TRIAL\tHOLDER\tLEADER\tNEW HOLDER\tOUTAGE MS\tDUAL MS\tFIGURES")
	for _, tr := range r.PerTrial {
		var figs []string
		for k, v := range tr.Figures {
			figs = append(figs, fmt.Sprintf("%s=%.0f", k, v))
		}
		sort.Strings(figs)
		nh := tr.NewHolder
		if nh == "" {
			nh = "-"
		}
		fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%.0f\t%.0f\t%s\n", tr.N, tr.Holder, tr.Leader, nh, tr.OutageMS, tr.DualHolderMS, strings.Join(figs, " "))
	}
	t.Flush()
	for _, tr := range r.PerTrial {
		for _, n := range tr.Notes {
			fmt.Fprintf(w, "trial %d: %s\n", tr.N, n)
		}
	}
}

// timingNote is " (timing ...)" for a --timing, "" without one.
func timingNote(t string) string {
	if t == "" {
		return ""
	}
	return " (timing " + t + ")"
}
