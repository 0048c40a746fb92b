package main

import (
	"slices"

	"github.com/harbormaster/harbormaster/chaos/scenario"
)

// targetRatio is the target: TLS at most 10% worse than insecure.
const targetRatio = 1.10

// comparison is one figure of both modes side by side.
type comparison struct {
	Profile  string         `json:"profile,omitempty"`
	Figure   string         `json:"figure"`
	TLS      scenario.Stats `json:"tls"`
	Insecure scenario.Stats `json:"insecure"`
	// RatioP50 and RatioP99 are TLS / insecure (0: no insecure figure).
	RatioP50 float64 `json:"ratio_p50"`
	RatioP99 float64 `json:"ratio_p99"`
	// Met says whether RatioP99 is at most targetRatio (nil: no target for
	// this figure, or nothing to compare).
	Met *bool `json:"target_met,omitempty"`
}

// ratio is a/b, 0 when b is not positive.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// met judges a TLS/insecure ratio against the target; nil when there is
// no ratio.
func met(r float64) *bool {
	if r <= 0 {
		return nil
	}
	ok := r <= targetRatio
	return &ok
}

// compareFailover returns the outage_ms and failover_ms rows of one
// profile; both carry the target.
func compareFailover(tls, ins scenario.Result, profile string) []comparison {
	figure := func(r scenario.Result, name string) scenario.Stats {
		if name == "outage_ms" {
			return r.OutageMS
		}
		return r.Figures[name]
	}
	var out []comparison
	for _, name := range []string{"outage_ms", "failover_ms"} {
		c := comparison{Profile: profile, Figure: name, TLS: figure(tls, name), Insecure: figure(ins, name)}
		if c.TLS.N > 0 && c.Insecure.N > 0 {
			c.RatioP50 = ratio(c.TLS.P50, c.Insecure.P50)
			c.RatioP99 = ratio(c.TLS.P99, c.Insecure.P99)
			c.Met = met(c.RatioP99)
		}
		out = append(out, c)
	}
	return out
}

// idleRow is the idle footprint of one agent (or of every agent, Node
// "all") in both modes over the successful rounds.
type idleRow struct {
	Node         string  `json:"node"`
	TLSRounds    int     `json:"tls_rounds"`
	InsRounds    int     `json:"insecure_rounds"`
	TLSCPUMean   float64 `json:"tls_cpu_pct_mean"`
	TLSCPUMax    float64 `json:"tls_cpu_pct_max"`
	InsCPUMean   float64 `json:"insecure_cpu_pct_mean"`
	InsCPUMax    float64 `json:"insecure_cpu_pct_max"`
	CPURatio     float64 `json:"cpu_ratio"`
	TLSRSSMiB    float64 `json:"tls_rss_mib_mean"`
	InsRSSMiB    float64 `json:"insecure_rss_mib_mean"`
	RSSRatio     float64 `json:"rss_ratio"`
	CPUTargetMet *bool   `json:"cpu_target_met,omitempty"`
}

// summarizeIdle returns one row per node, in the order first seen, and a
// last row "all" over every agent (the mean CPU of an agent; its ratio is
// the one judged against the target). Failed rounds are left out.
func summarizeIdle(rounds []round) []idleRow {
	type acc struct {
		cpu []float64
		rss []float64
	}
	var nodes []string
	by := map[mode]map[string]*acc{modeTLS: {}, modeInsecure: {}}
	for _, r := range rounds {
		if r.Error != "" {
			continue
		}
		for _, s := range r.Samples {
			if !slices.Contains(nodes, s.Node) {
				nodes = append(nodes, s.Node)
			}
			for _, key := range []string{s.Node, "all"} {
				a := by[r.Mode][key]
				if a == nil {
					a = &acc{}
					by[r.Mode][key] = a
				}
				a.cpu = append(a.cpu, s.CPUPct)
				a.rss = append(a.rss, float64(s.RSSKiB)/1024)
			}
		}
	}
	rounds2 := map[mode]int{}
	for _, r := range rounds {
		if r.Error == "" {
			rounds2[r.Mode]++
		}
	}
	var out []idleRow
	for _, n := range append(nodes, "all") {
		t, i := by[modeTLS][n], by[modeInsecure][n]
		row := idleRow{Node: n, TLSRounds: rounds2[modeTLS], InsRounds: rounds2[modeInsecure]}
		if t != nil {
			row.TLSCPUMean, row.TLSCPUMax, row.TLSRSSMiB = mean(t.cpu), slices.Max(t.cpu), mean(t.rss)
		}
		if i != nil {
			row.InsCPUMean, row.InsCPUMax, row.InsRSSMiB = mean(i.cpu), slices.Max(i.cpu), mean(i.rss)
		}
		if t != nil && i != nil {
			row.CPURatio = ratio(row.TLSCPUMean, row.InsCPUMean)
			row.RSSRatio = ratio(row.TLSRSSMiB, row.InsRSSMiB)
			if n == "all" {
				row.CPUTargetMet = met(row.CPURatio)
			}
		}
		out = append(out, row)
	}
	return out
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
