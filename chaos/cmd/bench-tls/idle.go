package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/harbormaster/harbormaster/chaos/procstat"
	"github.com/harbormaster/harbormaster/chaos/scenario"
	"github.com/harbormaster/harbormaster/internal/proccluster"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// idleOptions configure the idle-footprint part.
type idleOptions struct {
	bin      string
	rounds   int
	idle     time.Duration
	window   time.Duration
	settle   time.Duration
	stable   time.Duration
	portWait time.Duration
}

// sample is one agent's footprint in one round.
type sample struct {
	Round  int     `json:"round"`
	Mode   mode    `json:"mode"`
	Node   string  `json:"node"`
	PID    int     `json:"pid"`
	RSSKiB int64   `json:"rss_kib"`
	CPUPct float64 `json:"cpu_pct"`
}

// round is one cluster start, idle and measurement in one mode.
type round struct {
	Round   int           `json:"round"`
	Mode    mode          `json:"mode"`
	Window  time.Duration `json:"window_ns"`
	Samples []sample      `json:"samples"`
	Error   string        `json:"error,omitempty"`
}

// hasTLS reports whether a node config has a tls: block and whether it
// sets insecure: true.
func hasTLS(src []byte) (tls, insecure bool, err error) {
	m, err := configMapping(src)
	if err != nil {
		return false, false, err
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		switch m.Content[i].Value {
		case "tls":
			tls = true
		case "insecure":
			insecure = m.Content[i+1].Value == "true"
		}
	}
	return tls, insecure, nil
}

func configMapping(src []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a YAML mapping")
	}
	return doc.Content[0], nil
}

// insecureConfig returns the node config src (read from directory dir)
// with its tls: block replaced by insecure: true and a relative spec_file
// made absolute, so that the copy can live in another directory. It
// refuses a config without a tls: block: its insecure copy would compare
// nothing.
func insecureConfig(src []byte, dir string) ([]byte, error) {
	m, err := configMapping(src)
	if err != nil {
		return nil, err
	}
	var out []*yaml.Node
	sawTLS := false
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		switch k.Value {
		case "tls":
			sawTLS = true
			continue
		case "insecure":
			return nil, errors.New("insecure: is already set; the loopback configs must use tls: for the comparison")
		case "spec_file":
			if v.Value != "" && !filepath.IsAbs(v.Value) {
				v.Value = filepath.Join(dir, v.Value)
			}
		}
		out = append(out, k, v)
	}
	if !sawTLS {
		return nil, errors.New("tls: is missing; the loopback configs must use tls: for the comparison (make loopback-certs)")
	}
	out = append(out,
		&yaml.Node{Kind: yaml.ScalarNode, Value: "insecure"},
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	m.Content = out
	return yaml.Marshal(m)
}

// loopbackConfigs returns the default loopback configs (checked to use
// TLS) and insecure copies of them written to dir.
func loopbackConfigs(dir string) (tlsConfigs, insecureConfigs []string, err error) {
	tlsConfigs, err = proccluster.DefaultConfigs()
	if err != nil {
		return nil, nil, err
	}
	for _, p := range tlsConfigs {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		if tls, insecure, err := hasTLS(b); err != nil || !tls || insecure {
			return nil, nil, fmt.Errorf("%s: want a tls: block and no insecure: true (tls %t, insecure %t, err %v)", p, tls, insecure, err)
		}
		out, err := insecureConfig(b, filepath.Dir(p))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
		dst := filepath.Join(dir, filepath.Base(p))
		if err := os.WriteFile(dst, out, 0o644); err != nil {
			return nil, nil, err
		}
		insecureConfigs = append(insecureConfigs, dst)
	}
	return tlsConfigs, insecureConfigs, nil
}

// runIdle runs o.rounds pairs of idle measurements, alternating the modes
// (pairOrder). A round that fails is recorded with its error and the next
// one runs; it stops when ctx ends.
func runIdle(ctx context.Context, o idleOptions) ([]round, error) {
	cfgDir, err := os.MkdirTemp("", "bench-tls-configs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cfgDir)
	tlsCfgs, insCfgs, err := loopbackConfigs(cfgDir)
	if err != nil {
		return nil, err
	}
	if _, err := proccluster.LoopbackCerts(); err != nil {
		return nil, err
	}
	var out []round
	for i := range o.rounds {
		for _, m := range pairOrder(i) {
			if ctx.Err() != nil {
				return out, nil
			}
			cfgs := tlsCfgs
			if m == modeInsecure {
				cfgs = insCfgs
			}
			fmt.Fprintf(os.Stderr, "bench-tls: idle round %d, %s: start, idle %s, CPU over %s ...\n", i+1, m, o.idle, o.window)
			r := round{Round: i + 1, Mode: m, Window: o.window}
			r.Samples, err = idleRound(ctx, o, cfgs, m == modeTLS)
			for j := range r.Samples {
				r.Samples[j].Round, r.Samples[j].Mode = i+1, m
			}
			if err != nil {
				r.Error = err.Error()
				fmt.Fprintf(os.Stderr, "bench-tls: idle round %d, %s: %v\n", i+1, m, err)
			} else {
				var cpu []string
				for _, s := range r.Samples {
					cpu = append(cpu, fmt.Sprintf("%s %.2f%% %.1f MiB", s.Node, s.CPUPct, float64(s.RSSKiB)/1024))
				}
				fmt.Fprintf(os.Stderr, "bench-tls: idle round %d, %s: %s\n", i+1, m, strings.Join(cpu, ", "))
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// idleRound starts the loopback cluster from cfgs in a fresh directory,
// waits for a stable leader with every role held, leaves it idle and
// measures it; it kills the agents and removes the directory on return.
func idleRound(ctx context.Context, o idleOptions, cfgs []string, tls bool) ([]sample, error) {
	dir, err := os.MkdirTemp("", "bench-tls-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	opts := proccluster.Options{Binary: o.bin, Dir: dir, Configs: cfgs}
	if tls {
		f, err := proccluster.LoopbackCerts()
		if err != nil {
			return nil, err
		}
		opts.ClientTLS = &f
	}
	c, err := proccluster.New(opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench-tls: close:", err)
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, o.portWait)
	err = c.WaitPortsFree(pctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("the loopback ports stayed busy for %s: %w", o.portWait, err)
	}
	if err := c.StartAll(); err != nil {
		return nil, err
	}
	if err := waitStable(ctx, c, o.settle, o.stable); err != nil {
		c.PrintLogTails(os.Stderr, 20)
		return nil, err
	}
	return measure(ctx, c, o.idle, o.window)
}

// measure waits idle without touching the agents, reads their RSS, then
// their CPU time over window.
func measure(ctx context.Context, c *proccluster.Cluster, idle, window time.Duration) ([]sample, error) {
	us, err := procstat.Measure(ctx, c.IDs(), c.PID, idle, window)
	if err != nil {
		return nil, err
	}
	out := make([]sample, 0, len(us))
	for _, u := range us {
		out = append(out, sample{Node: u.Name, PID: u.PID, RSSKiB: u.RSSKiB, CPUPct: u.CPUPct})
	}
	return out, nil
}

// waitStable waits until every node agrees on a leader that sees every
// member alive and every role of the spec has a running holder, unchanged
// for settle; it gives up after timeout.
func waitStable(ctx context.Context, c *proccluster.Cluster, settle, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var cur string
	var since time.Time
	var lastErr error
	for {
		k, err := look(ctx, c)
		switch {
		case err != nil:
			cur, lastErr = "", err
		case k != cur:
			cur, since = k, time.Now()
		case time.Since(since) >= settle:
			return nil
		}
		if err := scenario.Sleep(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("no stable leader with every role held within %s (last: %v)", timeout, lastErr)
		}
	}
}

// look returns a key of the cluster's view (leader and role holders) if
// every node agrees on it and it is complete.
func look(ctx context.Context, c *proccluster.Cluster) (string, error) {
	leader := ""
	var leaderStatus *hmv1.StatusResponse
	for _, id := range c.IDs() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := c.Status(cctx, id)
		cancel()
		if err != nil {
			return "", fmt.Errorf("%s: %w", id, err)
		}
		if st.Leader == "" || (leader != "" && st.Leader != leader) {
			return "", fmt.Errorf("%s reports leader %q, others %q", id, st.Leader, leader)
		}
		leader = st.Leader
		if id == leader {
			leaderStatus = st
		}
	}
	if leaderStatus == nil || !leaderStatus.IsLeader {
		return "", fmt.Errorf("leader %s does not say it leads", leader)
	}
	for _, m := range leaderStatus.Members {
		if !m.Alive {
			return "", fmt.Errorf("leader %s does not see %s alive", leader, m.Id)
		}
	}
	key := ""
	for _, id := range c.IDs() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := c.Roles(cctx, id)
		cancel()
		if err != nil {
			return "", fmt.Errorf("%s: %w", id, err)
		}
		var parts []string
		for _, x := range r.Roles {
			if x.InSpec && (x.Holder == "" || x.Releasing || !c.Running(x.Holder)) {
				return "", fmt.Errorf("role %s: holder %q releasing=%t", x.Name, x.Holder, x.Releasing)
			}
			parts = append(parts, fmt.Sprintf("%s=%s@%d", x.Name, x.Holder, x.Epoch))
		}
		sort.Strings(parts)
		k := leader + " " + strings.Join(parts, ",")
		if key != "" && k != key {
			return "", fmt.Errorf("%s reports %s, others %s", id, k, key)
		}
		key = k
	}
	return key, nil
}
