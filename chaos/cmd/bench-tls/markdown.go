package main

import (
	"fmt"
	"io"
	"time"
)

func num(v float64) string { return fmt.Sprintf("%.0f", v) }

func ratioCell(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

func metCell(m *bool) string {
	switch {
	case m == nil:
		return "n/a"
	case *m:
		return "met"
	default:
		return "**not met**"
	}
}

func writeMarkdown(w io.Writer, r report) {
	fmt.Fprintf(w, "# TLS benchmark: mutual TLS vs insecure: true\n\n")
	fmt.Fprintf(w, "Produced by `make bench`:\n\n    %s\n\n", r.Command)
	fmt.Fprintf(w, "- date: %s, took %s\n- machine: %d cores, %s, %s; load average %s at the start, %s at the end\n",
		r.Date.Format("2006-01-02 15:04 MST"), r.Took.Round(time.Second), r.CPUs, r.Kernel, r.Go, r.LoadStart, r.LoadEnd)
	fmt.Fprintf(w, "- target: with TLS, crash-holder failover p99 and idle CPU at most %.0f%% worse than insecure (ratio TLS/insecure <= %.2f)\n",
		(r.Target-1)*100, r.Target)
	if r.Cut != "" {
		fmt.Fprintf(w, "- **%s**\n", r.Cut)
	}
	if len(r.Failover) > 0 {
		writeFailover(w, r)
	}
	if len(r.Idle) > 0 {
		writeIdle(w, r)
	}
}

func writeFailover(w io.Writer, r report) {
	fmt.Fprintf(w, "\n## Failover: crash-holder\n\n")
	fmt.Fprintf(w, "The chaos/scenario lab (3 node namespaces + 1 client namespace on one bridge, DESIGN.md §7), one vip role. "+
		"Per mode and profile %d trials requested, in blocks of %d trials per fresh lab; the modes alternate block by block "+
		"(tls, insecure, insecure, tls, ...). outage_ms: longest gap between successful client connects to the VIP "+
		"(every 10 ms, 50 ms timeout) after the crash; failover_ms: crash to the first 10 ms kernel sample showing the "+
		"address on the new holder. p99 is nearest-rank: with fewer than 100 trials it is the maximum. Ratio: TLS / insecure.\n\n",
		r.Trials, r.Block)
	fmt.Fprintln(w, "| profile | figure | trials tls / insecure | p50 ms tls / insecure | p99 ms tls / insecure | max ms tls / insecure | ratio p50 | ratio p99 | target p99 |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, c := range r.Failover {
		fmt.Fprintf(w, "| %s | %s | %d / %d | %s / %s | %s / %s | %s / %s | %s | %s | %s |\n",
			c.Profile, c.Figure, c.TLS.N, c.Insecure.N,
			num(c.TLS.P50), num(c.Insecure.P50), num(c.TLS.P99), num(c.Insecure.P99), num(c.TLS.Max), num(c.Insecure.Max),
			ratioCell(c.RatioP50), ratioCell(c.RatioP99), metCell(c.Met))
	}
	fmt.Fprintf(w, "\nPer mode (invariant violations of DESIGN.md §4, any block errors):\n\n")
	for _, p := range r.Profiles {
		for _, m := range modes {
			res := r.side(p, m)
			fmt.Fprintf(w, "- %s, %s: %d trials, invariant violations %d, dual-holder max %s ms", p, m, res.Trials, len(res.Violations), num(res.DualHolderMS))
			if st, ok := res.Figures["crashed_addr_gone_ms"]; ok {
				fmt.Fprintf(w, "; crashed_addr_gone_ms p50 %s max %s", num(st.P50), num(st.Max))
			}
			fmt.Fprintln(w)
			for _, v := range res.Violations {
				fmt.Fprintf(w, "  - %s\n", v)
			}
		}
	}
	fmt.Fprintf(w, "\nBlocks in run order:\n\n")
	for _, b := range r.Blocks {
		fmt.Fprintf(w, "- %s %s block %d: %d/%d trials in %s, outage p50 %s max %s ms%s\n", b.Profile, b.Mode, b.Pair,
			b.Result.Trials, b.Trials, b.Took.Round(time.Second), num(b.Result.OutageMS.P50), num(b.Result.OutageMS.Max), errSuffix(b.Error))
	}
}

func writeIdle(w io.Writer, r report) {
	fmt.Fprintf(w, "\n## Idle footprint: 3 loopback agents\n\n")
	fmt.Fprintf(w, "testdata/loopback n1-n3 (profile lan, two marker roles) as processes on 127.0.0.1, with their tls: "+
		"configs and with copies set to insecure: true. Each round: start, wait for a stable leader with every role "+
		"held, %s idle (no API calls), then VmRSS and CPU (utime+stime) over %s, as %% of one core. Rounds alternate "+
		"tls, insecure, insecure, tls, ...; failed rounds are left out. Ratio: TLS mean / insecure mean; the target is "+
		"judged on the row \"all\" (the mean over every agent and round).\n\n", r.IdleWait, r.IdleWindow)
	fmt.Fprintln(w, "| node | rounds tls / insecure | CPU % mean tls / insecure | CPU % max tls / insecure | ratio CPU | RSS MiB mean tls / insecure | ratio RSS | target CPU |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, x := range r.Idle {
		target := "-"
		if x.Node == "all" {
			target = metCell(x.CPUTargetMet)
		}
		fmt.Fprintf(w, "| %s | %d / %d | %.2f / %.2f | %.2f / %.2f | %s | %.1f / %.1f | %s | %s |\n",
			x.Node, x.TLSRounds, x.InsRounds, x.TLSCPUMean, x.InsCPUMean, x.TLSCPUMax, x.InsCPUMax, ratioCell(x.CPURatio),
			x.TLSRSSMiB, x.InsRSSMiB, ratioCell(x.RSSRatio), target)
	}
	fmt.Fprintf(w, "\nRounds in run order:\n\n")
	for _, rd := range r.Rounds {
		fmt.Fprintf(w, "- round %d %s:", rd.Round, rd.Mode)
		for _, s := range rd.Samples {
			fmt.Fprintf(w, " %s %.2f%% %.1f MiB;", s.Node, s.CPUPct, float64(s.RSSKiB)/1024)
		}
		if rd.Error != "" {
			fmt.Fprintf(w, " **error: %s**", rd.Error)
		}
		fmt.Fprintln(w)
	}
}
