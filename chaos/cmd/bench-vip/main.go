// Command bench-vip runs the VIP benchmark (`make bench`):
// keepalived (Debian package, VRRP) and harbormaster through the same faults
// in the same network-namespace lab (DESIGN.md §7), measured by the same
// observers (kernel sampler every 10 ms; client TCP connects to VIP:80 every
// 10 ms with a 50 ms timeout), and prints one Markdown table with the ratio
// harbormaster/keepalived per row.
//
//	go run ./chaos/cmd/bench-vip --bin bin/harbormaster --trials 20 [--json]
//
// Systems: keepalived advert_int 1 (VRRPv2), keepalived advert_int 0.1
// (VRRPv3), harbormaster profile lan (default) and fast. Rows pair lan with
// advert_int 1 and fast with advert_int 0.1. Faults: crash-holder,
// kill-agent, partition-holder, stop-agent (graceful stop). Every
// (system, fault) cell builds a fresh lab, runs --trials faults and tears
// the lab down. The harbormaster cells are chaos/scenario.Run in-process;
// the keepalived cells are chaos/keepalived.Run, which uses the scenario
// package's prober, sampler and analysis.
//
// It needs root, sends traffic only inside the lab's namespaces
// (198.18.0.0/15, lab.GuardHere in the prober), and tears every lab down on
// exit, SIGINT and SIGTERM. --timeout bounds the whole run; cells cut short
// report the trials they completed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/chaos/keepalived"
	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/scenario"
)

const maxTrials = 200

// system is one column of the benchmark: a keepalived variant or a
// harbormaster profile.
type system struct {
	ID     string        `json:"id"`
	Label  string        `json:"label"`
	Advert time.Duration `json:"advert_ns,omitempty"` // keepalived only
	Prof   string        `json:"profile,omitempty"`   // harbormaster only
	Timing string        `json:"timing,omitempty"`    // harbormaster only: overrides of the profile (--fast-timing)

	over config.TimingOverrides // Timing, parsed
}

var systems = []system{
	{ID: "ka1", Label: "keepalived advert_int 1", Advert: time.Second},
	{ID: "lan", Label: "harbormaster lan", Prof: "lan"},
	{ID: "ka01", Label: "keepalived advert_int 0.1", Advert: 100 * time.Millisecond},
	{ID: "fast", Label: "harbormaster fast", Prof: "fast"},
}

// pairs are the table's rows per fault: harbormaster system, keepalived
// system.
var pairs = [][2]string{{"lan", "ka1"}, {"fast", "ka01"}}

var faults = []struct{ name, label string }{
	{"crash-holder", "holder crash"},
	{"kill-agent", "kill -9 of the agent/keepalived on the holder"},
	{"partition-holder", "holder partitioned from the other nodes"},
	{"stop-agent", "graceful stop (SIGTERM) on the holder"},
}

type cell struct {
	System string          `json:"system"`
	Fault  string          `json:"fault"`
	Result scenario.Result `json:"result"`
	Error  string          `json:"error,omitempty"`
	Took   time.Duration   `json:"took_ns"`
}

type report struct {
	Command    string        `json:"command"`
	Date       time.Time     `json:"date"`
	CPUs       int           `json:"cpus"`
	Kernel     string        `json:"kernel"`
	Keepalived string        `json:"keepalived_version"`
	Trials     int           `json:"trials_requested"`
	Systems    []system      `json:"systems"`
	Cells      []cell        `json:"cells"`
	KillWindow time.Duration `json:"kill_window_ns"`
	Cut        string        `json:"cut,omitempty"`
}

func main() {
	var (
		bin        = flag.String("bin", "bin/harbormaster", "harbormaster binary")
		kaBin      = flag.String("keepalived", "keepalived", "keepalived binary")
		trials     = flag.Int("trials", 20, fmt.Sprintf("trials per (system, fault) cell, 1..%d", maxTrials))
		asJSON     = flag.Bool("json", false, "print one JSON object instead of the Markdown report")
		only       = flag.String("systems", "ka1,lan,ka01,fast", "systems to run (ka1, lan, ka01, fast)")
		onlyFaults = flag.String("faults", "crash-holder,kill-agent,partition-holder,stop-agent", "faults to run")
		timeout    = flag.Duration("timeout", 2*time.Hour, "bound on the whole run")
		killWindow = flag.Duration("kill-window", 5*time.Second, "keepalived kill-agent: how long to watch the killed node's VIP before restarting keepalived")
		verbose    = flag.Bool("v", false, "progress per trial on stderr")
		fastTiming = flag.String("fast-timing", "", `the fast system with single values of its profile overridden, e.g. "lease=150ms,renew=37ms" (harbormaster-lab --timing)`)
	)
	flag.Parse()
	if *fastTiming != "" {
		over, err := scenario.ParseTiming("fast", *fastTiming)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-vip: --fast-timing:", err)
			os.Exit(2)
		}
		for i := range systems {
			if systems[i].ID == "fast" {
				systems[i].Timing, systems[i].over = *fastTiming, over
				systems[i].Label += " (" + *fastTiming + ")"
			}
		}
	}
	if err := run(*bin, *kaBin, *trials, *asJSON, *only, *onlyFaults, *timeout, *killWindow, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "bench-vip:", err)
		os.Exit(1)
	}
}

func run(bin, kaBin string, trials int, asJSON bool, only, onlyFaults string, timeout, killWindow time.Duration, verbose bool) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, nftables); refusing to run")
	}
	if trials < 1 || trials > maxTrials {
		return fmt.Errorf("--trials %d out of range 1..%d", trials, maxTrials)
	}
	if timeout <= 0 || timeout > 6*time.Hour {
		return fmt.Errorf("--timeout %s out of range (0, 6h]", timeout)
	}
	want := strings.Split(only, ",")
	for _, w := range want {
		if !slices.ContainsFunc(systems, func(s system) bool { return s.ID == w }) {
			return fmt.Errorf("--systems: unknown %q", w)
		}
	}
	wantF := strings.Split(onlyFaults, ",")
	for _, w := range wantF {
		if !slices.Contains(keepalived.Scenarios, w) {
			return fmt.Errorf("--faults: unknown %q", w)
		}
	}
	absBin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(absBin); err != nil && slices.ContainsFunc(want, func(w string) bool { return w == "lan" || w == "fast" }) {
		return fmt.Errorf("harbormaster binary: %w (make build)", err)
	}
	ver, err := keepalived.Version(kaBin)
	if err != nil && slices.ContainsFunc(want, func(w string) bool { return strings.HasPrefix(w, "ka") }) {
		return fmt.Errorf("%w (apt-get install -y keepalived)", err)
	}
	if removed, err := lab.Sweep(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-vip: sweep:", err)
	} else if len(removed) > 0 {
		fmt.Fprintln(os.Stderr, "bench-vip: swept stale lab namespaces:", strings.Join(removed, " "))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	rep := report{
		Command:    "go run ./chaos/cmd/bench-vip " + strings.Join(os.Args[1:], " "),
		Date:       time.Now().UTC(),
		CPUs:       runtime.NumCPU(),
		Kernel:     kernel(),
		Keepalived: ver,
		Trials:     trials,
		KillWindow: killWindow,
	}
	for _, s := range systems {
		if slices.Contains(want, s.ID) {
			rep.Systems = append(rep.Systems, s)
		}
	}
	for _, f := range faults {
		if !slices.Contains(wantF, f.name) {
			continue
		}
		for _, s := range rep.Systems {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(os.Stderr, "bench-vip: %s: %s, %d trials ...\n", f.name, s.Label, trials)
			c := cell{System: s.ID, Fault: f.name}
			t0 := time.Now()
			var res scenario.Result
			var err error
			if s.Prof != "" {
				res, err = scenario.Run(ctx, f.name, scenario.Options{
					ClusterOptions: scenario.ClusterOptions{Bin: absBin, Profile: s.Prof, Timing: s.over, LabName: "bench", Log: log},
					Trials:         trials,
				})
			} else {
				res, err = keepalived.Run(ctx, f.name, keepalived.RunOptions{
					Options:    keepalived.Options{Bin: kaBin, Advert: s.Advert, LabName: "bench", Log: log},
					Trials:     trials,
					KillWindow: killWindow,
				})
			}
			c.Took = time.Since(t0)
			if err != nil {
				c.Error = err.Error()
				res = scenario.Aggregate(res)
			}
			c.Result = res
			fmt.Fprintf(os.Stderr, "bench-vip: %s: %s: %d trials in %s, outage p50 %.0f p99 %.0f max %.0f ms, dual %.0f ms%s\n",
				f.name, s.Label, res.Trials, c.Took.Round(time.Second), res.OutageMS.P50, res.OutageMS.P99, res.OutageMS.Max,
				res.DualHolderMS, errSuffix(c.Error))
			rep.Cells = append(rep.Cells, c)
		}
	}
	if err := ctx.Err(); err != nil {
		rep.Cut = fmt.Sprintf("the run was cut short (%v); the trial counts below are those completed", err)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	writeMarkdown(os.Stdout, rep)
	return nil
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (error: " + e + ")"
}

func kernel() string {
	out, err := exec.Command("uname", "-sr").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func (r *report) cell(sys, fault string) (cell, bool) {
	for _, c := range r.Cells {
		if c.System == sys && c.Fault == fault {
			return c, true
		}
	}
	return cell{}, false
}

func label(id string) string {
	for _, s := range systems {
		if s.ID == id {
			return s.Label
		}
	}
	return id
}

func num(v float64) string { return fmt.Sprintf("%.0f", v) }

// dual formats a cell's dual-holder figure: the longest, and in how many
// trials there was one.
func dual(r scenario.Result) string {
	n := 0
	for _, t := range r.PerTrial {
		if t.DualHolderMS > 0 {
			n++
		}
	}
	return fmt.Sprintf("%s (%d/%d)", num(r.DualHolderMS), n, r.Trials)
}

// leftBehind formats the kill-agent figure: how long the VIP stayed on the
// killed node (max over trials).
func leftBehind(r scenario.Result) string {
	st, ok := r.Figures["addr_gone_ms"]
	if !ok {
		return "-"
	}
	left := 0
	for _, t := range r.PerTrial {
		if t.Figures["addr_left_at_end"] == 1 {
			left++
		}
	}
	if left > 0 {
		return fmt.Sprintf(">= %s, until restart (%d/%d)", num(st.Max), left, r.Trials)
	}
	return fmt.Sprintf("%s max, %s p50", num(st.Max), num(st.P50))
}

func ratio(a, b float64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func writeMarkdown(w io.Writer, r report) {
	fmt.Fprintf(w, "# VIP benchmark: harbormaster vs keepalived\n\n")
	fmt.Fprintf(w, "Produced by `make bench`:\n\n    %s\n\n", r.Command)
	fmt.Fprintf(w, "- date: %s\n- machine: %d cores, %s, 3 node namespaces + 1 client namespace on one bridge (DESIGN.md §7)\n",
		r.Date.Format("2006-01-02 15:04 MST"), r.CPUs, r.Kernel)
	fmt.Fprintf(w, "- keepalived: %s (Debian package); VRRP on eth0, VIP %s, virtual_router_id %d, every node `state BACKUP`, `nopreempt`, "+
		"priority %d (equal), adverts by unicast_peer to the other two nodes, no vrrp_script; advert_int 1 (VRRPv2) and advert_int 0.1 (`vrrp_version 3`)\n",
		r.Keepalived, scenario.VIP, keepalived.RouterID, keepalived.Priority)
	fmt.Fprintf(w, "- harbormaster: 3 agents, profiles lan (default) and fast, spec with one vip role (chaos/scenario)\n")
	fmt.Fprintf(w, "- trials requested per cell: %d; completed per cell: see the table (hm/ka)\n", r.Trials)
	if r.Cut != "" {
		fmt.Fprintf(w, "- **%s**\n", r.Cut)
	}
	fmt.Fprintf(w, "\nOutage: longest gap between successful client connects to VIP:80 (every 10 ms, 50 ms timeout) from the fault "+
		"until 0.5 s after the client first reached the new holder. Dual holder: longest run of 10 ms kernel samples showing the "+
		"address on two reachable nodes (a powered-off node is masked), in how many trials. Left behind: how long the address "+
		"stayed in the killed node's kernel after kill -9. Ratio: harbormaster outage p99 / keepalived outage p99. "+
		"Cells: harbormaster / keepalived.\n\n")
	fmt.Fprintf(w, "keepalived does not fence: under a partition the cut-off master keeps the address for as long as the partition "+
		"lasts (the bench heals it 0.5 s after the client reached the new holder, so its dual-holder figure is bounded by that), and "+
		"after kill -9 the address stays until keepalived is restarted (the bench watches for %s after the kill, then restarts it), "+
		"so those figures are lower bounds set by the bench, not by keepalived. A crashed keepalived node is masked while off and "+
		"its address is deleted before it comes back (a reboot loses it).\n\n", r.KillWindow)
	fmt.Fprintln(w, "| fault | harbormaster vs keepalived | trials | outage p50 ms | outage p99 ms | outage max ms | ratio p99 hm/ka | dual-holder max ms (trials) | VIP left behind after kill -9, ms |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, f := range faults {
		for _, p := range pairs {
			hm, okh := r.cell(p[0], f.name)
			ka, okk := r.cell(p[1], f.name)
			if !okh && !okk {
				continue
			}
			h, k := hm.Result, ka.Result
			get := func(ok bool, s string) string {
				if !ok {
					return "n/a"
				}
				return s
			}
			lb := "-"
			if f.name == "kill-agent" {
				lb = get(okh, leftBehind(h)) + " / " + get(okk, leftBehind(k))
			}
			rat := "-"
			if okh && okk && h.Trials > 0 && k.Trials > 0 {
				rat = ratio(h.OutageMS.P99, k.OutageMS.P99)
			}
			fmt.Fprintf(w, "| %s | %s vs %s | %s / %s | %s / %s | %s / %s | %s / %s | %s | %s / %s | %s |\n",
				f.name, label(p[0]), label(p[1]),
				get(okh, fmt.Sprint(h.Trials)), get(okk, fmt.Sprint(k.Trials)),
				get(okh, num(h.OutageMS.P50)), get(okk, num(k.OutageMS.P50)),
				get(okh, num(h.OutageMS.P99)), get(okk, num(k.OutageMS.P99)),
				get(okh, num(h.OutageMS.Max)), get(okk, num(k.OutageMS.Max)),
				rat,
				get(okh, dual(h)), get(okk, dual(k)),
				lb)
		}
	}
	fmt.Fprintf(w, "\nPer cell (violations are the harbormaster invariants of DESIGN.md §4 checked on both systems; failover = first kernel sample with the new holder):\n\n")
	for _, c := range r.Cells {
		res := c.Result
		fmt.Fprintf(w, "- %s, %s: %d trials in %s, invariant violations %d", c.Fault, label(c.System), res.Trials,
			c.Took.Round(time.Second), len(res.Violations))
		for _, name := range []string{"failover_ms", "partition_ms", "old_holder_kept_vip", "blackhole_after_heal", "removed_by_hand", "crashed_kept_vip", "holder_dropped_ms", "crashed_addr_gone_ms"} {
			if st, ok := res.Figures[name]; ok {
				fmt.Fprintf(w, "; %s p50 %s max %s", name, num(st.P50), num(st.Max))
			}
		}
		if c.Error != "" {
			fmt.Fprintf(w, "; **error: %s**", c.Error)
		}
		fmt.Fprintln(w)
	}
}
