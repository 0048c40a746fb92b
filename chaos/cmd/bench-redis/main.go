// Command bench-redis runs the Redis benchmark (`make bench`):
// harbormaster's redis-master role (profiles lan and fast) and Redis
// Sentinel (Debian's redis-sentinel, 3 sentinels, quorum 2, down-after 5000
// and 1000 ms) through the same faults in the same network-namespace lab
// (DESIGN.md §7), measured by the same observers (chaos/scenario: a writer
// in the client namespace that RPUSHes a counter once per ms and records
// every acknowledged write; a sampler asking every node's Redis every
// 10 ms whether it takes a write), and prints one Markdown table.
//
//	go run ./chaos/cmd/bench-redis --bin bin/harbormaster --trials 10
//
// The harbormaster writer writes through the Redis VIP; the Sentinel
// writer discovers the master through the sentinels (chaos/redissentinel).
// Faults: crash-master (lab.Crash of the master's node), partition-master
// (the master's node cut from its peers, the writer still reaching it),
// kill-agent (SIGKILL of the master's agent; for Sentinel, of the sentinel
// on the master's node). Rows pair harbormaster lan with Sentinel
// down-after 5000 and fast with down-after 1000. failover is the time from
// the fault to the first acknowledged write after the longest gap between
// writes the final master kept (for a killed sentinel, after which nothing
// fails over, the longest gap between writes). Sentinels run as
// `redis-server --sentinel` (Debian's redis-sentinel is that binary).
// Results and notes: docs/bench-redis.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/redissentinel"
	"github.com/harbormaster/harbormaster/chaos/scenario"
)

type cell struct{ failover, lost, dual []float64 }

func (c *cell) add(f, l, d float64) {
	c.failover, c.lost, c.dual = append(c.failover, f), append(c.lost, l), append(c.dual, d)
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[max(i, 0)]
}

func main() {
	bin := flag.String("bin", "bin/harbormaster", "harbormaster binary")
	trials := flag.Int("trials", 10, "trials per (system, fault)")
	faultList := flag.String("faults", "crash-master,partition-master,kill-agent", "faults to run (comma-separated)")
	pairList := flag.String("pairs", "lan,fast", "harbormaster profiles to run, each with its Sentinel down-after (lan: 5000, fast: 1000)")
	timeout := flag.Duration("timeout", 2*time.Hour, "start no trial after this long (cells then have fewer trials; the table says how many)")
	systems := flag.String("systems", "harbormaster,sentinel", "systems to run (comma-separated)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench-redis: needs root (network namespaces)")
		os.Exit(2)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		fmt.Fprintln(os.Stderr, "bench-redis: redis-server missing: apt-get install redis-server (Sentinel runs as redis-server --sentinel)")
		os.Exit(2)
	}
	abs, _ := filepath.Abs(*bin)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := lab.Sweep(); err != nil {
		fmt.Fprintln(os.Stderr, "sweep:", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	faults := strings.Split(*faultList, ",")
	type pair struct {
		prof string
		da   time.Duration
	}
	var pairs []pair
	for _, p := range strings.Split(*pairList, ",") {
		switch p {
		case "lan":
			pairs = append(pairs, pair{"lan", 5 * time.Second})
		case "fast":
			pairs = append(pairs, pair{"fast", time.Second})
		default:
			fmt.Fprintf(os.Stderr, "bench-redis: unknown pair %q (lan, fast)\n", p)
			os.Exit(2)
		}
	}
	runHM, runSE := strings.Contains(*systems, "harbormaster"), strings.Contains(*systems, "sentinel")
	hm := map[string]*cell{}
	se := map[string]*cell{}
	for _, f := range faults {
		for _, p := range pairs {
			hm[f+"/"+p.prof], se[f+"/"+p.da.String()] = &cell{}, &cell{}
		}
	}
	deadline := time.Now().Add(*timeout)
	// harbormaster first: one cluster per cell runs all its trials.
	for _, f := range faults {
		for _, p := range pairs {
			k := f + "/" + p.prof
			if !runHM {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "harbormaster %s: skipped (--timeout)\n", k)
				continue
			}
			res, err := scenario.Run(ctx, "redis-"+f, scenario.Options{ClusterOptions: scenario.ClusterOptions{Bin: abs, Profile: p.prof, LabName: "bench", Log: log}, Trials: *trials})
			if err != nil {
				fmt.Fprintf(os.Stderr, "harbormaster %s: %v\n", k, err)
				os.Exit(1)
			}
			for _, v := range res.Violations {
				fmt.Fprintf(os.Stderr, "harbormaster %s: violation: %s\n", k, v)
			}
			for _, tr := range res.PerTrial {
				if tr.LostAckedWrites == nil || tr.DualMasterMS == nil {
					continue
				}
				hm[k].add(tr.Figures["failover_ms"], float64(*tr.LostAckedWrites), *tr.DualMasterMS)
			}
			fmt.Fprintf(os.Stderr, "harbormaster %s: %d trials\n", k, len(hm[k].failover))
		}
	}
	// Sentinel: one fresh lab per trial, round-robin over the cells so
	// that a --timeout leaves them with about as many trials each.
	for i := 0; runSE && i < *trials && time.Now().Before(deadline); i++ {
		for _, f := range faults {
			for _, p := range pairs {
				ks := f + "/" + p.da.String()
				if time.Now().After(deadline) {
					break
				}
				tr, err := redissentinel.RunTrial(ctx, f, p.da)
				if err != nil {
					if ctx.Err() != nil {
						os.Exit(1)
					}
					fmt.Fprintf(os.Stderr, "sentinel %s trial %d: %v\n", ks, i+1, err)
					continue
				}
				se[ks].add(tr.FailoverMS, float64(tr.Lost), tr.DualMasterMS)
				fmt.Fprintf(os.Stderr, "sentinel %s trial %d: %+v\n", ks, i+1, tr)
			}
		}
	}
	fmt.Printf("| fault | harbormaster / Sentinel | failover p50 / p99 / max (ms) | ratio p99 | lost acked writes p50 / max | dual writable masters max (ms) |\n")
	fmt.Printf("| --- | --- | --- | --- | --- | --- |\n")
	ratio := func(a, b float64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, f := range faults {
		for _, p := range pairs {
			h, s := hm[f+"/"+p.prof], se[f+"/"+p.da.String()]
			fmt.Printf("| %s | %s (%d) / down-after %d (%d) | %.0f / %.0f / %.0f vs %.0f / %.0f / %.0f | %s | %.0f / %.0f vs %.0f / %.0f | %.0f vs %.0f |\n",
				f, p.prof, len(h.failover), p.da.Milliseconds(), len(s.failover),
				pct(h.failover, .5), pct(h.failover, .99), pct(h.failover, 1), pct(s.failover, .5), pct(s.failover, .99), pct(s.failover, 1),
				ratio(pct(h.failover, .99), pct(s.failover, .99)),
				pct(h.lost, .5), pct(h.lost, 1), pct(s.lost, .5), pct(s.lost, 1),
				pct(h.dual, 1), pct(s.dual, 1))
		}
	}
}
