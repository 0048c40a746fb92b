// Command bench-tls measures what mutual TLS costs harbormaster, side by
// side with insecure: true in the same run (`make bench`):
//
//	go run ./chaos/cmd/bench-tls --bin bin/harbormaster --trials 20 [--json]
//
// Failover: the lab scenario crash-holder (chaos/scenario, a fresh
// network-namespace lab per block) with the agents in mutual TLS and with
// insecure: true, --trials crashes per mode and profile, in blocks of
// --block trials, the modes alternating block by block in ABBA order (tls,
// insecure, insecure, tls, ...) so that a drift of the shared machine
// weighs on both alike. Per mode: the client-visible outage (Trial.OutageMS)
// and the kernel failover (figure failover_ms), p50/p99/max, and the ratios
// TLS/insecure.
//
// Idle: the three loopback agents of testdata/loopback as processes
// (internal/proccluster), with their TLS configs and with insecure copies
// of them, --rounds pairs of rounds in the same ABBA order. Each round
// starts the cluster, waits for a stable leader with every role held, leaves
// it idle (no API calls) for --idle, reads each agent's VmRSS and its CPU
// time (utime+stime) over --window.
//
// The target (issue: TLS hardening) is that crash-holder failover p99 and
// idle CPU are no more than 10% worse with TLS; the report marks it per
// row. It needs root for the lab (--parts idle alone does not), sends lab
// traffic only inside the lab's namespaces and the idle cluster's only on
// loopback, and tears everything down on exit, SIGINT and SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/scenario"
)

const maxTrials = 200

type options struct {
	bin      string
	trials   int
	block    int
	profiles []string
	parts    []string
	rounds   int
	idle     time.Duration
	window   time.Duration
	timeout  time.Duration
	portWait time.Duration
	json     bool
	verbose  bool
}

// report is everything the bench prints.
type report struct {
	Command   string        `json:"command"`
	Date      time.Time     `json:"date"`
	CPUs      int           `json:"cpus"`
	Kernel    string        `json:"kernel"`
	Go        string        `json:"go"`
	LoadStart string        `json:"loadavg_start"`
	LoadEnd   string        `json:"loadavg_end"`
	Took      time.Duration `json:"took_ns"`
	Trials    int           `json:"trials_requested"`
	Block     int           `json:"block"`
	Profiles  []string      `json:"profiles"`
	Target    float64       `json:"target_ratio"`

	Blocks   []block        `json:"blocks,omitempty"`
	Sides    []failoverSide `json:"failover,omitempty"`
	Failover []comparison   `json:"failover_comparison,omitempty"`

	Rounds     []round       `json:"idle_rounds,omitempty"`
	IdleWait   time.Duration `json:"idle_ns,omitempty"`
	IdleWindow time.Duration `json:"window_ns,omitempty"`
	Idle       []idleRow     `json:"idle_comparison,omitempty"`

	Cut string `json:"cut,omitempty"`
}

func main() {
	var o options
	var profiles, parts string
	flag.StringVar(&o.bin, "bin", "bin/harbormaster", "harbormaster binary")
	flag.IntVar(&o.trials, "trials", 20, fmt.Sprintf("crash-holder trials per mode and profile, 1..%d", maxTrials))
	flag.IntVar(&o.block, "block", 5, "trials per lab: the modes alternate every block")
	flag.StringVar(&profiles, "profiles", "lan", "timing profiles of the failover part (lan, fast), comma-separated")
	flag.StringVar(&parts, "parts", "failover,idle", "parts to run (failover, idle), comma-separated")
	flag.IntVar(&o.rounds, "rounds", 3, "idle: pairs of rounds (one per mode each)")
	flag.DurationVar(&o.idle, "idle", 5*time.Second, "idle: time left idle before the measurement")
	flag.DurationVar(&o.window, "window", 30*time.Second, "idle: CPU measurement window")
	flag.DurationVar(&o.timeout, "timeout", time.Hour, "bound on the whole run")
	flag.DurationVar(&o.portWait, "port-wait", 60*time.Second, "idle: how long to wait for the loopback ports to be free")
	flag.BoolVar(&o.json, "json", false, "print one JSON object instead of the Markdown report")
	flag.BoolVar(&o.verbose, "v", false, "progress per trial on stderr")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "bench-tls: unexpected arguments:", strings.Join(flag.Args(), " "))
		os.Exit(2)
	}
	o.profiles = strings.Split(profiles, ",")
	o.parts = strings.Split(parts, ",")
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-tls:", err)
		os.Exit(1)
	}
}

// check validates the options; every error names the flag.
func (o *options) check() error {
	if o.trials < 1 || o.trials > maxTrials {
		return fmt.Errorf("--trials %d out of range 1..%d", o.trials, maxTrials)
	}
	if o.block < 1 {
		return fmt.Errorf("--block %d: give at least 1", o.block)
	}
	for _, p := range o.profiles {
		if p != "lan" && p != "fast" {
			return fmt.Errorf("--profiles: unknown %q; give lan, fast or both", p)
		}
	}
	for _, p := range o.parts {
		if p != "failover" && p != "idle" {
			return fmt.Errorf("--parts: unknown %q; give failover, idle or both", p)
		}
	}
	if o.rounds < 1 {
		return fmt.Errorf("--rounds %d: give at least 1", o.rounds)
	}
	if o.idle < 0 || o.window <= 0 {
		return fmt.Errorf("--idle %s, --window %s: give --idle >= 0 and --window > 0", o.idle, o.window)
	}
	if o.timeout <= 0 || o.timeout > 6*time.Hour {
		return fmt.Errorf("--timeout %s out of range (0, 6h]", o.timeout)
	}
	return nil
}

func run(o options) error {
	if err := o.check(); err != nil {
		return err
	}
	doFailover, doIdle := slices.Contains(o.parts, "failover"), slices.Contains(o.parts, "idle")
	if doFailover && os.Geteuid() != 0 {
		return errors.New("the failover part needs root (network namespaces, nftables); run as root or give --parts idle")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("--bin: %w (make build)", err)
	}
	o.bin = bin
	if doFailover {
		if removed, err := lab.Sweep(); err != nil {
			fmt.Fprintln(os.Stderr, "bench-tls: sweep:", err)
		} else if len(removed) > 0 {
			fmt.Fprintln(os.Stderr, "bench-tls: swept stale lab namespaces:", strings.Join(removed, " "))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	t0 := time.Now()
	rep := report{
		Command:   "go run ./chaos/cmd/bench-tls " + strings.Join(os.Args[1:], " "),
		Date:      t0.UTC(),
		CPUs:      runtime.NumCPU(),
		Kernel:    kernel(),
		Go:        runtime.Version(),
		LoadStart: loadAvg(),
		Trials:    o.trials,
		Block:     o.block,
		Target:    targetRatio,
	}
	if doFailover {
		rep.Profiles = o.profiles
		for _, p := range o.profiles {
			blocks := runFailover(ctx, o.bin, p, o.trials, o.block, log)
			rep.Blocks = append(rep.Blocks, blocks...)
			tls, ins := mergeBlocks(blocks, p, modeTLS), mergeBlocks(blocks, p, modeInsecure)
			rep.Sides = append(rep.Sides, tls, ins)
			rep.Failover = append(rep.Failover, compareFailover(tls.Result, ins.Result, p)...)
		}
	}
	if doIdle && ctx.Err() == nil {
		rep.IdleWait, rep.IdleWindow = o.idle, o.window
		rep.Rounds, err = runIdle(ctx, idleOptions{
			bin: o.bin, rounds: o.rounds, idle: o.idle, window: o.window,
			settle: time.Second, stable: 60 * time.Second, portWait: o.portWait,
		})
		if err != nil {
			return err
		}
		rep.Idle = summarizeIdle(rep.Rounds)
	}
	rep.Took = time.Since(t0)
	rep.LoadEnd = loadAvg()
	if err := ctx.Err(); err != nil {
		rep.Cut = fmt.Sprintf("the run was cut short (%v); the counts below are those completed", err)
	}
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	writeMarkdown(os.Stdout, rep)
	return nil
}

// side returns the merged result of one (profile, mode).
func (r *report) side(profile string, m mode) scenario.Result {
	for _, s := range r.Sides {
		if s.Profile == profile && s.Mode == m {
			return s.Result
		}
	}
	return scenario.Result{}
}
