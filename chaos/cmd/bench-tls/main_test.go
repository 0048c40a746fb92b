package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/chaos/procstat"
	"github.com/harbormaster/harbormaster/chaos/scenario"
	"github.com/harbormaster/harbormaster/internal/proccluster"
)

func TestPairOrderIsABBA(t *testing.T) {
	var got []mode
	for i := range 4 {
		p := pairOrder(i)
		got = append(got, p[0], p[1])
	}
	want := []mode{modeTLS, modeInsecure, modeInsecure, modeTLS, modeTLS, modeInsecure, modeInsecure, modeTLS}
	if !slices.Equal(got, want) {
		t.Errorf("pair order %v, want %v", got, want)
	}
}

func TestBlockSizes(t *testing.T) {
	for _, c := range []struct {
		trials, size int
		want         []int
	}{
		{20, 5, []int{5, 5, 5, 5}},
		{7, 5, []int{5, 2}},
		{2, 5, []int{2}},
		{3, 1, []int{1, 1, 1}},
	} {
		if got := blockSizes(c.trials, c.size); !slices.Equal(got, c.want) {
			t.Errorf("blockSizes(%d, %d) = %v, want %v", c.trials, c.size, got, c.want)
		}
	}
}

// The insecure copies of the loopback configs load as the agent loads them:
// insecure, no TLS, the same node, and the same spec file as the originals,
// which themselves use TLS.
func TestLoopbackConfigsInsecureCopies(t *testing.T) {
	dir := t.TempDir()
	tlsCfgs, insCfgs, err := loopbackConfigs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(tlsCfgs) != 3 || len(insCfgs) != 3 {
		t.Fatalf("configs %v and %v, want 3 each", tlsCfgs, insCfgs)
	}
	for i := range tlsCfgs {
		orig, err := config.Load(tlsCfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		cp, err := config.Load(insCfgs[i])
		if err != nil {
			t.Fatalf("insecure copy %s does not load: %v", insCfgs[i], err)
		}
		if orig.TLS == nil || orig.Insecure {
			t.Errorf("%s: tls %v insecure %t, want the TLS config", tlsCfgs[i], orig.TLS, orig.Insecure)
		}
		if cp.TLS != nil || !cp.Insecure {
			t.Errorf("%s: tls %v insecure %t, want insecure: true only", insCfgs[i], cp.TLS, cp.Insecure)
		}
		if filepath.Dir(insCfgs[i]) != dir {
			t.Errorf("copy %s not in %s", insCfgs[i], dir)
		}
		if cp.NodeID != orig.NodeID || cp.RaftAddr != orig.RaftAddr || cp.APIAddr != orig.APIAddr || cp.Profile != orig.Profile {
			t.Errorf("copy %s: node %s %s %s %s, want %s %s %s %s", insCfgs[i], cp.NodeID, cp.RaftAddr, cp.APIAddr, cp.Profile,
				orig.NodeID, orig.RaftAddr, orig.APIAddr, orig.Profile)
		}
		if cp.SpecFile != orig.SpecFile || cp.Spec == nil {
			t.Errorf("copy %s: spec file %q, want %q", insCfgs[i], cp.SpecFile, orig.SpecFile)
		}
	}
	// The TLS side is what proccluster runs by default.
	def, err := proccluster.DefaultConfigs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(def, tlsCfgs) {
		t.Errorf("TLS configs %v, want the defaults %v", tlsCfgs, def)
	}
}

func TestInsecureConfigRefuses(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"node_id: n1\nspec_file: spec.yaml\n", "tls: is missing"},
		{"node_id: n1\ninsecure: true\ntls: {ca_file: a}\n", "insecure: is already set"},
		{"- a\n- b\n", "not a YAML mapping"},
	} {
		_, err := insecureConfig([]byte(c.doc), "/x")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.doc, err, c.want)
		}
	}
}

func TestInsecureConfigKeepsAbsoluteSpec(t *testing.T) {
	out, err := insecureConfig([]byte("node_id: n1\nspec_file: /etc/hm/spec.yaml\ntls:\n  ca_file: ca.pem\n"), "/x")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if !strings.Contains(s, "spec_file: /etc/hm/spec.yaml") || strings.Contains(s, "tls") || !strings.Contains(s, "insecure: true") {
		t.Errorf("got\n%s", s)
	}
}

func TestParseStatTicks(t *testing.T) {
	// A command name with a space and a parenthesis; utime 120, stime 34.
	line := "4242 (harbor (x) master) S 1 4242 4242 0 -1 4194560 1000 0 0 0 120 34 0 0 20 0 12 0 100 0 0\n"
	got, err := procstat.ParseStatTicks(line)
	if err != nil || got != 154 {
		t.Errorf("parseStatTicks = %d, %v; want 154", got, err)
	}
	if _, err := procstat.ParseStatTicks("4242 (x) S 1 2"); err == nil {
		t.Error("short line: no error")
	}
}

func TestCPUPct(t *testing.T) {
	// 150 ticks at 100 Hz over 30 s: 1.5 s of CPU, 5% of a core.
	if got := procstat.CPUPct(150, 100, 30*time.Second); got != 5 {
		t.Errorf("cpuPct = %v, want 5", got)
	}
	if got := procstat.CPUPct(150, 100, 0); got != 0 {
		t.Errorf("cpuPct over no time = %v, want 0", got)
	}
}

func trials(outages ...float64) []scenario.Trial {
	var out []scenario.Trial
	for i, o := range outages {
		out = append(out, scenario.Trial{N: i + 1, OutageMS: o, Figures: map[string]float64{"failover_ms": o - 10}})
	}
	return out
}

func TestMergeBlocks(t *testing.T) {
	blocks := []block{
		{Profile: "lan", Mode: modeTLS, Pair: 1, Result: scenario.Result{PerTrial: trials(700, 720), Violations: []string{"trial 2: late"}}},
		{Profile: "lan", Mode: modeInsecure, Pair: 1, Result: scenario.Result{PerTrial: trials(600)}},
		{Profile: "lan", Mode: modeInsecure, Pair: 2, Result: scenario.Result{PerTrial: trials(650)}},
		{Profile: "lan", Mode: modeTLS, Pair: 2, Result: scenario.Result{PerTrial: trials(800)}, Error: "lab broke"},
		{Profile: "fast", Mode: modeTLS, Pair: 1, Result: scenario.Result{PerTrial: trials(300)}},
	}
	s := mergeBlocks(blocks, "lan", modeTLS)
	r := s.Result
	if s.Blocks != 2 || r.Trials != 3 || !r.TLS {
		t.Fatalf("blocks %d trials %d tls %t, want 2, 3, true", s.Blocks, r.Trials, r.TLS)
	}
	for i, tr := range r.PerTrial {
		if tr.N != i+1 {
			t.Errorf("trial %d numbered %d", i+1, tr.N)
		}
	}
	if r.OutageMS.P50 != 720 || r.OutageMS.Max != 800 || r.Figures["failover_ms"].Max != 790 {
		t.Errorf("outage %+v failover %+v", r.OutageMS, r.Figures["failover_ms"])
	}
	want := []string{"block 1: trial 2: late", "block 2: error: lab broke"}
	if !slices.Equal(r.Violations, want) || r.OK {
		t.Errorf("violations %q ok %t, want %q, false", r.Violations, r.OK, want)
	}
	ins := mergeBlocks(blocks, "lan", modeInsecure).Result
	if ins.Trials != 2 || ins.TLS || !ins.OK || len(ins.Violations) != 0 {
		t.Errorf("insecure: trials %d tls %t ok %t violations %q", ins.Trials, ins.TLS, ins.OK, ins.Violations)
	}
}

func TestCompareFailoverTarget(t *testing.T) {
	res := func(outages ...float64) scenario.Result {
		return scenario.Aggregate(scenario.Result{PerTrial: trials(outages...)})
	}
	ins := res(500, 1000)
	for _, c := range []struct {
		tls  float64
		want bool
	}{{1100, true}, {1101, false}, {900, true}} {
		rows := compareFailover(res(500, c.tls), ins, "lan")
		if len(rows) != 2 || rows[0].Figure != "outage_ms" || rows[1].Figure != "failover_ms" {
			t.Fatalf("rows %+v", rows)
		}
		o := rows[0]
		if o.Met == nil || *o.Met != c.want {
			t.Errorf("tls p99 %v vs 1000: met %v, want %t (ratio %.4f)", c.tls, o.Met, c.want, o.RatioP99)
		}
		if o.RatioP50 != 1 {
			t.Errorf("ratio p50 %v, want 1", o.RatioP50)
		}
	}
	// Nothing to compare: no target verdict.
	rows := compareFailover(res(500), scenario.Result{}, "lan")
	if rows[0].Met != nil || rows[0].RatioP99 != 0 {
		t.Errorf("no insecure trials: %+v", rows[0])
	}
}

func TestSummarizeIdle(t *testing.T) {
	smp := func(node string, cpu float64, rssMiB int64) sample {
		return sample{Node: node, CPUPct: cpu, RSSKiB: rssMiB * 1024}
	}
	rounds := []round{
		{Round: 1, Mode: modeTLS, Samples: []sample{smp("n1", 4, 30), smp("n2", 2, 20)}},
		{Round: 1, Mode: modeInsecure, Samples: []sample{smp("n1", 3, 20), smp("n2", 2, 20)}},
		{Round: 2, Mode: modeInsecure, Samples: []sample{smp("n1", 5, 20), smp("n2", 2, 20)}},
		{Round: 2, Mode: modeTLS, Samples: []sample{smp("n1", 99, 99)}, Error: "died"},
	}
	rows := summarizeIdle(rounds)
	if len(rows) != 3 || rows[0].Node != "n1" || rows[1].Node != "n2" || rows[2].Node != "all" {
		t.Fatalf("rows %+v", rows)
	}
	n1 := rows[0]
	if n1.TLSRounds != 1 || n1.InsRounds != 2 || n1.TLSCPUMean != 4 || n1.TLSCPUMax != 4 || n1.InsCPUMean != 4 || n1.InsCPUMax != 5 ||
		n1.CPURatio != 1 || n1.TLSRSSMiB != 30 || n1.RSSRatio != 1.5 || n1.CPUTargetMet != nil {
		t.Errorf("n1 %+v", n1)
	}
	all := rows[2]
	// TLS: (4+2)/2 = 3; insecure: (3+2+5+2)/4 = 3.
	if all.TLSCPUMean != 3 || all.InsCPUMean != 3 || all.CPUTargetMet == nil || !*all.CPUTargetMet {
		t.Errorf("all %+v", all)
	}
	rounds[0].Samples[0].CPUPct = 5 // TLS (5+2)/2 = 3.5 vs 3: ratio 1.17
	all = summarizeIdle(rounds)[2]
	if all.CPUTargetMet == nil || *all.CPUTargetMet {
		t.Errorf("ratio %.2f: target met %v, want false", all.CPURatio, all.CPUTargetMet)
	}
}

func TestOptionsCheckNamesTheFlag(t *testing.T) {
	ok := options{trials: 20, block: 5, profiles: []string{"lan"}, parts: []string{"failover", "idle"}, rounds: 3,
		idle: 5 * time.Second, window: 30 * time.Second, timeout: time.Hour}
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mut  func(o *options)
		want string
	}{
		{func(o *options) { o.trials = 0 }, "--trials"},
		{func(o *options) { o.block = 0 }, "--block"},
		{func(o *options) { o.profiles = []string{"wan"} }, "--profiles"},
		{func(o *options) { o.parts = []string{"cpu"} }, "--parts"},
		{func(o *options) { o.rounds = 0 }, "--rounds"},
		{func(o *options) { o.window = 0 }, "--window"},
		{func(o *options) { o.timeout = 0 }, "--timeout"},
	} {
		o := ok
		c.mut(&o)
		if err := o.check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one naming %s", err, c.want)
		}
	}
}
