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
	"strconv"
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
	clients := flag.Bool("clients", false, "instead of the writer table: Harbor's clients (redis-clients) against harbormaster and Sentinel (down-after 1000), per client, fault and voter count")
	voterList := flag.String("voters", "3,5", "--clients: voter counts (nodes) to run")
	listenerVIPs := flag.Bool("listener-vips", false, "--clients: give every node's listener an address that survives the node (a vip role per node) and have the clients use those (docs/redis.md)")
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
	if *clients {
		var voters []int
		for _, v := range strings.Split(*voterList, ",") {
			n, err := strconv.Atoi(v)
			if err != nil || (n != 3 && n != 5 && n != 7) {
				fmt.Fprintf(os.Stderr, "bench-redis: --voters %q: use 3, 5 or 7\n", v)
				os.Exit(2)
			}
			voters = append(voters, n)
		}
		fl := scenario.RedisClientFaults
		if isSet("faults") {
			fl = strings.Split(*faultList, ",")
		}
		benchClients(ctx, abs, log, voters, fl, *trials, time.Now().Add(*timeout),
			strings.Contains(*systems, "harbormaster"), strings.Contains(*systems, "sentinel"), *listenerVIPs)
		return
	}
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

// isSet reports whether the flag was given on the command line.
func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// clientCell is one client's trials in one (system, voters, fault).
type clientCell struct {
	first         []float64
	lost, stalled int
}

func (c *clientCell) add(t scenario.ClientTrial) {
	c.first = append(c.first, t.FirstAckMS)
	c.lost = max(c.lost, t.Lost)
	if t.Stalled {
		c.stalled++
	}
}

// sentinelDownAfter is the Sentinel setting Harbor's clients are compared
// with.
const sentinelDownAfter = time.Second

// benchClients runs redis-clients (harbormaster, profile lan) and the same
// clients against Sentinel (down-after 1000; no planned move) for every
// voter count and fault, and prints one table per client and fault.
func benchClients(ctx context.Context, bin string, log *slog.Logger, voters []int, faults []string, trials int, deadline time.Time, runHM, runSE, listenerVIPs bool) {
	key := func(sys string, n int, f, c string) string { return fmt.Sprintf("%s/%d/%s/%s", sys, n, f, c) }
	cells := map[string]*clientCell{}
	cell := func(k string) *clientCell {
		if cells[k] == nil {
			cells[k] = &clientCell{}
		}
		return cells[k]
	}
	for _, n := range voters {
		for _, f := range faults {
			if !runHM || time.Now().After(deadline) {
				break
			}
			res, err := scenario.Run(ctx, "redis-clients", scenario.Options{ClusterOptions: scenario.ClusterOptions{Bin: bin, Profile: "lan", LabName: "bench", Log: log, Nodes: n},
				Trials: trials, RedisFault: f, ListenerVIPs: listenerVIPs})
			if err != nil {
				fmt.Fprintf(os.Stderr, "harbormaster %d voters %s: %v\n", n, f, err)
				os.Exit(1)
			}
			for _, v := range res.Violations {
				fmt.Fprintf(os.Stderr, "harbormaster %d voters %s: violation: %s\n", n, f, v)
			}
			for _, tr := range res.PerTrial {
				for c, ct := range tr.Clients {
					cell(key("hm", n, f, c)).add(ct)
				}
			}
			fmt.Fprintf(os.Stderr, "harbormaster %d voters %s: %d trials %+v\n", n, f, res.Trials, res.Clients)
		}
	}
	// Sentinel: one fresh lab per trial, round-robin over the cells.
	for i := 0; runSE && i < trials && time.Now().Before(deadline); i++ {
		for _, n := range voters {
			for _, f := range faults {
				if f == scenario.FaultMove || time.Now().After(deadline) {
					continue
				}
				tr, err := redissentinel.RunTrialWith(ctx, f, sentinelDownAfter, redissentinel.Options{Nodes: n, Clients: true})
				if err != nil {
					if ctx.Err() != nil {
						os.Exit(1)
					}
					fmt.Fprintf(os.Stderr, "sentinel %d nodes %s trial %d: %v\n", n, f, i+1, err)
					continue
				}
				for c, ct := range tr.Clients {
					cell(key("se", n, f, c)).add(ct)
				}
				fmt.Fprintf(os.Stderr, "sentinel %d nodes %s trial %d: %+v %s\n", n, f, i+1, tr.Clients, tr.Note)
			}
		}
	}
	fmt.Printf("| voters | fault | client | harbormaster first ack p50 / p99 / max (ms) (trials) | Sentinel down-after %d: p50 / p99 / max (ms) (trials) | ratio p99 | lost acked writes max | stalled trials (> 5 s) |\n", sentinelDownAfter.Milliseconds())
	fmt.Printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, n := range voters {
		for _, f := range faults {
			for _, c := range scenario.ClientNames {
				h, s := cell(key("hm", n, f, c)), cell(key("se", n, f, c))
				se, ratio, lost, stalled := "-", "-", fmt.Sprintf("%d", h.lost), fmt.Sprintf("%d", h.stalled)
				if len(s.first) > 0 {
					se = fmt.Sprintf("%.0f / %.0f / %.0f (%d)", pct(s.first, .5), pct(s.first, .99), pct(s.first, 1), len(s.first))
					if p := pct(s.first, .99); p > 0 {
						ratio = fmt.Sprintf("%.2f", pct(h.first, .99)/p)
					}
					lost += fmt.Sprintf(" vs %d", s.lost)
					stalled += fmt.Sprintf(" vs %d", s.stalled)
				}
				fmt.Printf("| %d | %s | %s | %.0f / %.0f / %.0f (%d) | %s | %s | %s | %s |\n", n, f, c,
					pct(h.first, .5), pct(h.first, .99), pct(h.first, 1), len(h.first), se, ratio, lost, stalled)
			}
		}
	}
}
