package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/harbormaster/harbormaster/chaos/scenario"
)

// mode is one side of the comparison.
type mode string

const (
	modeTLS      mode = "tls"
	modeInsecure mode = "insecure"
)

var modes = []mode{modeTLS, modeInsecure}

// pairOrder returns the order of the two modes in pair i (a pair of
// failover blocks, or an idle round): TLS first in even pairs, insecure
// first in odd ones (ABBA), so that a drift of the shared machine over the
// run, and whatever the previous lab or cluster left behind, weigh on both
// modes alike.
func pairOrder(i int) [2]mode {
	if i%2 == 0 {
		return [2]mode{modeTLS, modeInsecure}
	}
	return [2]mode{modeInsecure, modeTLS}
}

// blockSizes splits trials into blocks of at most size trials.
func blockSizes(trials, size int) []int {
	var out []int
	for trials > 0 {
		n := min(trials, size)
		out = append(out, n)
		trials -= n
	}
	return out
}

// block is one scenario.Run: a fresh lab, n crash-holder trials in one
// mode, the lab torn down.
type block struct {
	Profile string          `json:"profile"`
	Mode    mode            `json:"mode"`
	Pair    int             `json:"pair"`
	Trials  int             `json:"trials_requested"`
	Took    time.Duration   `json:"took_ns"`
	Error   string          `json:"error,omitempty"`
	Result  scenario.Result `json:"result"`
}

// failoverSide is every block of one (profile, mode) merged.
type failoverSide struct {
	Profile string          `json:"profile"`
	Mode    mode            `json:"mode"`
	Blocks  int             `json:"blocks"`
	Result  scenario.Result `json:"result"`
}

// runFailover runs the crash-holder blocks of one profile, alternating the
// modes pair by pair. It stops early when ctx ends; a block that fails
// keeps the trials it completed and the next block runs.
func runFailover(ctx context.Context, bin, profile string, trials, size int, log *slog.Logger) []block {
	var out []block
	for i, n := range blockSizes(trials, size) {
		for _, m := range pairOrder(i) {
			if ctx.Err() != nil {
				return out
			}
			fmt.Fprintf(os.Stderr, "bench-tls: crash-holder %s %s, block %d: %d trials ...\n", profile, m, i+1, n)
			b := block{Profile: profile, Mode: m, Pair: i + 1, Trials: n}
			t0 := time.Now()
			res, err := scenario.Run(ctx, "crash-holder", scenario.Options{
				ClusterOptions: scenario.ClusterOptions{Bin: bin, Profile: profile, Insecure: m == modeInsecure, LabName: "benchtls", Log: log},
				Trials:         n,
			})
			b.Took = time.Since(t0)
			if err != nil {
				b.Error = err.Error()
				res = scenario.Aggregate(res)
			}
			b.Result = res
			fmt.Fprintf(os.Stderr, "bench-tls: crash-holder %s %s, block %d: %d trials in %s, outage p50 %.0f max %.0f ms, violations %d%s\n",
				profile, m, i+1, res.Trials, b.Took.Round(time.Second), res.OutageMS.P50, res.OutageMS.Max, len(res.Violations), errSuffix(b.Error))
			out = append(out, b)
		}
	}
	return out
}

// mergeBlocks merges the blocks of one (profile, mode) into one result:
// the trials renumbered in run order, their outages and figures
// summarised, and the blocks' violations (those of the trials and those of
// a cluster that never became stable) kept with the block's number.
func mergeBlocks(blocks []block, profile string, m mode) failoverSide {
	side := failoverSide{Profile: profile, Mode: m}
	r := scenario.Result{Scenario: "crash-holder", Profile: profile, TLS: m == modeTLS, PerTrial: []scenario.Trial{}}
	var violations []string
	for _, b := range blocks {
		if b.Profile != profile || b.Mode != m {
			continue
		}
		side.Blocks++
		for _, t := range b.Result.PerTrial {
			t.N = len(r.PerTrial) + 1
			r.PerTrial = append(r.PerTrial, t)
		}
		for _, v := range b.Result.Violations {
			violations = append(violations, fmt.Sprintf("block %d: %s", b.Pair, v))
		}
		if b.Error != "" {
			violations = append(violations, fmt.Sprintf("block %d: error: %s", b.Pair, b.Error))
		}
	}
	r.Trials = len(r.PerTrial)
	r = scenario.Aggregate(r)
	r.Violations = violations
	if r.Violations == nil {
		r.Violations = []string{}
	}
	r.OK = len(violations) == 0
	side.Result = r
	return side
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (error: " + e + ")"
}
