// Package keepalived runs the keepalived baseline of DESIGN.md §5 in the
// same network-namespace lab as the harbormaster scenarios (DESIGN.md §7):
// one keepalived (Debian package) per node namespace holding the registry
// VIP 198.18.0.200/24 with VRRP on eth0, the same stand-in service on port
// 80 in every node namespace, the same kernel sampler (10 ms) and the same
// client prober (TCP connect to VIP:80 every 10 ms, 50 ms timeout, from c1,
// guarded by lab.GuardHere). Run injects the same faults as the
// harbormaster scenarios and measures them with the scenario package's
// analysis (scenario.MeasureOutage, scenario.DualHolders,
// scenario.Aggregate), so both sides of the benchmark are measured alike.
//
// VRRP setup, the usual Harbor one: every node "state BACKUP", "nopreempt",
// equal priority 100 (ties go to the higher primary address),
// virtual_router_id 51, no vrrp_script, adverts sent by unicast to the other
// two nodes' lab addresses (unicast_peer), so that no VRRP frame leaves
// 198.18.0.0/15. advert_int is Options.Advert; below 1 s it needs VRRPv3
// (vrrp_version 3), which this package then sets.
package keepalived

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/scenario"
)

const (
	// RouterID is the VRRP virtual_router_id of the lab's instance.
	RouterID = 51
	// Priority is every node's VRRP priority (equal, with nopreempt).
	Priority = 100
)

// Options configures Start.
type Options struct {
	// Bin is the keepalived binary (default "keepalived" from PATH).
	Bin string
	// Advert is advert_int (default 1s); below 1s VRRPv3 is used.
	Advert time.Duration
	// Dir holds configs, pid files and logs (default: a temporary
	// directory Close removes).
	Dir string
	// LabName labels the lab's namespaces.
	LabName string
	// Log receives progress messages (default: discarded).
	Log *slog.Logger
}

// Cluster is keepalived on the 3 nodes of a fresh lab, with the stand-in
// service, the sampler and the prober of the scenario package.
type Cluster struct {
	Lab     *lab.Lab
	Sampler *lab.Sampler
	Prober  *scenario.Prober

	opts    Options
	dir     string
	tmpDir  bool
	log     *slog.Logger
	nodes   []lab.Node
	servers []net.Listener

	mu    sync.Mutex
	procs map[string]*proc
	off   []scenario.OffWindow
	exits []string
}

type proc struct {
	cmd      *exec.Cmd
	done     chan struct{}
	err      error
	stopping bool
}

// Version returns the first line of `keepalived --version`.
func Version(bin string) (string, error) {
	if bin == "" {
		bin = "keepalived"
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil {
		return line, fmt.Errorf("%s --version: %w", bin, err)
	}
	return strings.TrimSpace(line), nil
}

// Config renders node's keepalived.conf. peers are the other nodes.
func Config(node lab.Node, peers []lab.Node, vip netip.Prefix, advert time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by chaos/keepalived\nglobal_defs {\n  router_id %s\n", node.Name)
	if advert < time.Second {
		b.WriteString("  vrrp_version 3\n")
	}
	b.WriteString("}\n\n")
	fmt.Fprintf(&b, "vrrp_instance VI_REGISTRY {\n  state BACKUP\n  nopreempt\n  interface %s\n", node.Iface)
	fmt.Fprintf(&b, "  virtual_router_id %d\n  priority %d\n  advert_int %s\n", RouterID, Priority, advertString(advert))
	fmt.Fprintf(&b, "  unicast_src_ip %s\n  unicast_peer {\n", node.IP)
	for _, p := range peers {
		fmt.Fprintf(&b, "    %s\n", p.IP)
	}
	fmt.Fprintf(&b, "  }\n  virtual_ipaddress {\n    %s dev %s\n  }\n}\n", vip, node.Iface)
	return b.String()
}

// advertString formats advert_int in seconds ("1", "0.1").
func advertString(d time.Duration) string {
	s := fmt.Sprintf("%.2f", d.Seconds())
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

// Start builds the lab, writes the configs, starts the services, the
// sampler, keepalived on every node and the prober. It does not wait for a
// master (see WaitStable). On error it tears down what it built.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Bin == "" {
		opts.Bin = "keepalived"
	}
	if p, err := exec.LookPath(opts.Bin); err != nil {
		return nil, fmt.Errorf("keepalived: %w (apt-get install -y keepalived)", err)
	} else {
		opts.Bin = p
	}
	if opts.Advert <= 0 {
		opts.Advert = time.Second
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{opts: opts, log: log, procs: map[string]*proc{}}
	c.dir = opts.Dir
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "harbormaster-keepalived-"); err != nil {
			return nil, fmt.Errorf("keepalived: %w", err)
		}
		c.tmpDir = true
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.Lab, err = lab.New(ctx, lab.Options{Nodes: 3, Clients: 1, Name: opts.LabName}); err != nil {
		return nil, fmt.Errorf("keepalived: %w", err)
	}
	c.nodes = c.Lab.Nodes()
	for _, n := range c.nodes {
		var peers []lab.Node
		for _, p := range c.nodes {
			if p.Name != n.Name {
				peers = append(peers, p)
			}
		}
		if err := os.WriteFile(c.confPath(n.Name), []byte(Config(n, peers, scenario.VIP, opts.Advert)), 0o644); err != nil {
			return nil, fmt.Errorf("keepalived: %w", err)
		}
	}
	for _, n := range c.nodes {
		var ln net.Listener
		err := c.Lab.InNamespace(n.Name, func() (err error) {
			ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", scenario.VIPPort))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("keepalived: service on %s: %w", n.Name, err)
		}
		c.servers = append(c.servers, ln)
		go func() { _ = scenario.Serve(ln, n.Name) }()
	}
	if c.Sampler, err = c.Lab.StartSampler(scenario.VIP, scenario.SamplePeriod); err != nil {
		return nil, fmt.Errorf("keepalived: %w", err)
	}
	for _, n := range c.nodes {
		if err := c.StartDaemon(n.Name); err != nil {
			return nil, err
		}
	}
	c.Prober, err = scenario.StartProber(scenario.ProbeConfig{
		Target: netip.AddrPortFrom(scenario.VIP.Addr(), scenario.VIPPort),
		Spawn:  func(fn func() error) error { return c.Lab.InNamespace(scenario.ClientHost, fn) },
	})
	if err != nil {
		return nil, fmt.Errorf("keepalived: %w", err)
	}
	return c, nil
}

func (c *Cluster) confPath(node string) string { return filepath.Join(c.dir, node+".conf") }

// LogPath is the node's keepalived log (every start appends).
func (c *Cluster) LogPath(node string) string { return filepath.Join(c.dir, node+".log") }

// Dir returns the work directory.
func (c *Cluster) Dir() string { return c.dir }

// Nodes returns the lab's nodes.
func (c *Cluster) Nodes() []lab.Node { return slices.Clone(c.nodes) }

// StartDaemon starts keepalived (VRRP subsystem only, in the foreground,
// logging to its console) in the node's namespace.
func (c *Cluster) StartDaemon(node string) error {
	f, err := os.OpenFile(c.LogPath(node), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("keepalived: log: %w", err)
	}
	defer f.Close()
	fmt.Fprintf(f, "=== chaos/keepalived: start %s\n", time.Now().Format(time.RFC3339Nano))
	// A killed keepalived leaves its pid files; a booting machine has a
	// fresh /run. Remove them so that a stale pid is never taken for a
	// running instance.
	for _, suffix := range []string{".pid", ".vrrp.pid"} {
		_ = os.Remove(filepath.Join(c.dir, node+suffix))
	}
	cmd := c.Lab.Command(context.Background(), node, c.opts.Bin, "--dont-fork", "--log-console", "--log-detail",
		"--vrrp", "-f", c.confPath(node),
		"--pid", filepath.Join(c.dir, node+".pid"), "--vrrp_pid", filepath.Join(c.dir, node+".vrrp.pid"))
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("keepalived: start on %s: %w", node, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		c.mu.Lock()
		if !p.stopping {
			c.exits = append(c.exits, fmt.Sprintf("%s: keepalived on %s exited unexpectedly (%v); log tail: %s",
				scenario.Stamp(time.Now()), node, p.err, tail(c.LogPath(node), 4)))
		}
		c.mu.Unlock()
	}()
	c.mu.Lock()
	c.procs[node] = p
	c.mu.Unlock()
	return nil
}

// UnexpectedExits returns, and forgets, the exits the bench did not cause.
func (c *Cluster) UnexpectedExits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.exits
	c.exits = nil
	return out
}

func (c *Cluster) proc(node string, stopping bool) (*proc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.procs[node]
	if !ok {
		return nil, fmt.Errorf("no keepalived on %s", node)
	}
	if stopping {
		p.stopping = true
	}
	return p, nil
}

// Terminate sends SIGTERM to the node's keepalived (graceful stop: the
// master sends priority 0 and removes the VIP) and waits up to 10 s.
func (c *Cluster) Terminate(ctx context.Context, node string) error {
	p, err := c.proc(node, true)
	if err != nil {
		return err
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	return c.wait(ctx, node, p, 10*time.Second)
}

// Kill9 SIGKILLs every keepalived process of the node (the parent and its
// VRRP child, as `pkill -9 keepalived` on the machine would) and reaps the
// parent.
func (c *Cluster) Kill9(ctx context.Context, node string) error {
	p, err := c.proc(node, true)
	if err != nil {
		return err
	}
	if _, err := c.Lab.KillAll(node); err != nil {
		return err
	}
	return c.wait(ctx, node, p, 5*time.Second)
}

func (c *Cluster) wait(ctx context.Context, node string, p *proc, d time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		_, _ = c.Lab.KillAll(node)
		<-p.done
		return fmt.Errorf("keepalived on %s did not exit within %s", node, d)
	}
}

// Crash powers the node off (lab.Crash) and opens its off window.
func (c *Cluster) Crash(node string) (time.Time, error) {
	c.mu.Lock()
	t := time.Now()
	c.off = append(c.off, scenario.OffWindow{Node: node, Start: t})
	if p, ok := c.procs[node]; ok {
		p.stopping = true
	}
	c.mu.Unlock()
	if err := c.Lab.Crash(node); err != nil {
		return t, err
	}
	if p, err := c.proc(node, true); err == nil {
		<-p.done
	}
	return t, nil
}

// Reboot models the crashed node booting again: its kernel comes up
// without the VIP (deleted while its port is still down), the port comes
// up (closing the off window) and keepalived starts.
func (c *Cluster) Reboot(node string) error {
	if err := c.DeleteVIP(node); err != nil {
		return err
	}
	if err := c.Lab.Restore(node); err != nil {
		return err
	}
	c.mu.Lock()
	now := time.Now()
	for i := range c.off {
		if c.off[i].Node == node && c.off[i].End.IsZero() {
			c.off[i].End = now
		}
	}
	c.mu.Unlock()
	return c.StartDaemon(node)
}

// DeleteVIP removes the VIP from the node's eth0 if it is there.
func (c *Cluster) DeleteVIP(node string) error {
	if !c.Has(node) {
		return nil
	}
	out, err := c.Lab.Command(context.Background(), node, "ip", "addr", "del", scenario.VIP.String(), "dev", lab.Iface).CombinedOutput()
	if err != nil && c.Has(node) {
		return fmt.Errorf("delete VIP on %s: %w: %s", node, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Has reports whether the last raw sample (nothing masked) shows the VIP on
// node. It takes a fresh sample's worth of time into account by reading the
// sampler's latest pass.
func (c *Cluster) Has(node string) bool {
	s, ok := c.Sampler.Last()
	return ok && slices.Contains(s.Holders, node)
}

// SamplesSince returns the sampler's samples since t, powered-off nodes
// masked.
func (c *Cluster) SamplesSince(t time.Time) []lab.Sample {
	c.mu.Lock()
	off := slices.Clone(c.off)
	c.mu.Unlock()
	return scenario.ExcludeOff(c.Sampler.SamplesSince(t), off)
}

// Holders returns the holders of the last sample, powered-off nodes masked.
func (c *Cluster) Holders() []string {
	s, ok := c.Sampler.Last()
	if !ok {
		return nil
	}
	c.mu.Lock()
	off := slices.Clone(c.off)
	c.mu.Unlock()
	return scenario.ExcludeOff([]lab.Sample{s}, off)[0].Holders
}

// Running reports whether the node's keepalived runs.
func (c *Cluster) Running(node string) bool {
	p, err := c.proc(node, false)
	if err != nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// look returns the sole holder when the cluster is ready: every keepalived
// running, one node holds the VIP, the client reached it within the last
// 100 ms, and its ARP entry for the VIP is that node's MAC.
func (c *Cluster) look() (string, string) {
	for _, n := range c.nodes {
		if !c.Running(n.Name) {
			return "", "keepalived on " + n.Name + " is not running"
		}
	}
	hs := c.Holders()
	if len(hs) != 1 {
		return "", fmt.Sprintf("kernel holders %v", hs)
	}
	h := hs[0]
	a, ok := c.Prober.LastSuccess()
	if !ok || time.Since(a.Start) > 100*time.Millisecond || a.Node != h {
		return "", fmt.Sprintf("client does not reach %s through the VIP (last success %v from %q)", h, ok, a.Node)
	}
	n, _ := c.Lab.Host(h)
	if mac, ok := c.Lab.ARPCache(scenario.ClientHost, scenario.VIP.Addr()); !ok || mac.String() != n.MAC.String() {
		return "", fmt.Sprintf("client's ARP entry for the VIP is %v, not %s's", mac, h)
	}
	return h, ""
}

// WaitStable waits until look reports the same holder for settle; it
// returns the holder.
func (c *Cluster) WaitStable(ctx context.Context, settle, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var since time.Time
	var holder, why string
	for {
		h, w := c.look()
		why = w
		switch {
		case h == "":
			since = time.Time{}
		case since.IsZero() || h != holder:
			since, holder = time.Now(), h
		case time.Since(since) >= settle:
			return h, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("keepalived cluster not stable after %s: %s", timeout, why)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// FlushClientARP deletes the client's neighbour entry for the VIP (used to
// end a post-heal blackhole without waiting for the kernel to expire it).
func (c *Cluster) FlushClientARP() error {
	out, err := c.Lab.Command(context.Background(), scenario.ClientHost, "ip", "neigh", "flush", "to",
		scenario.VIP.Addr().String(), "dev", lab.Iface).CombinedOutput()
	if err != nil {
		return fmt.Errorf("flush client ARP: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close stops the prober, keepalived (SIGTERM, then SIGKILL after 3 s), the
// services and the sampler, tears the lab down and removes a temporary
// work dir. Idempotent.
func (c *Cluster) Close() error {
	var errs []error
	if c.Prober != nil {
		c.Prober.Stop()
		c.Prober = nil
	}
	c.mu.Lock()
	procs := c.procs
	c.procs = map[string]*proc{}
	for _, p := range procs {
		p.stopping = true
	}
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(3 * time.Second)
	for node, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			c.log.Warn("keepalived did not stop on SIGTERM; killing it", "node", node)
			if c.Lab != nil {
				_, _ = c.Lab.KillAll(node)
			}
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	for _, ln := range c.servers {
		_ = ln.Close()
	}
	c.servers = nil
	if c.Sampler != nil {
		c.Sampler.Stop()
		c.Sampler = nil
	}
	if c.Lab != nil {
		if err := c.Lab.Close(); err != nil {
			errs = append(errs, err)
		}
		c.Lab = nil
	}
	if c.tmpDir {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, err)
		}
		c.tmpDir = false
	}
	return errors.Join(errs...)
}

// tail returns the last n lines of a file, joined with " | ".
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
