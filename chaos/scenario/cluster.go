package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/internal/conf"
	"github.com/harbormaster/harbormaster/internal/tlsid"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
	"github.com/harbormaster/harbormaster/spec"
)

const (
	// VIPRole is the name of the spec's vip role.
	VIPRole = "registry-vip"
	// vipPort is the port the stand-in service listens on behind the VIP.
	vipPort = 80
	// raftPort and apiPort are the agents' ports on their node address.
	raftPort    = 7101
	apiPort     = 7201
	metricsPort = 7301
	// client is the lab host the prober and the admin calls run from.
	client = "c1"
	// samplePeriod is the kernel sampler's period (DESIGN.md §4: 10 ms or
	// finer).
	samplePeriod = 10 * time.Millisecond
	// rpcTimeout bounds one admin call.
	rpcTimeout = 500 * time.Millisecond
)

// VIP is the registry VIP every scenario cluster holds.
var VIP = netip.MustParsePrefix("198.18.0.200/24")

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Bin is the harbormaster binary (required).
	Bin string
	// StartBin, when set, is the binary every agent starts on instead of
	// Bin (rolling-upgrade's previous build); UseBin switches one node.
	StartBin string
	// Profile is the agents' timing profile: "lan" (default) or "fast".
	Profile string
	// Timing overrides single values of the profile in every agent's
	// config (its timing section), for trying a timing the profiles do
	// not have (harbormaster-lab --timing).
	Timing config.TimingOverrides
	// Dir holds the configs, data dirs and agent logs. Empty: a temporary
	// directory that Close removes.
	Dir string
	// LogLevel is the agents' log_level (default info).
	LogLevel string
	// Insecure runs the agents with insecure: true (no TLS); the default is
	// mutual TLS with a CA and certificates made for the lab in Dir/tls.
	Insecure bool
	// Log receives progress messages (default: discarded).
	Log *slog.Logger
	// LabName labels the lab's namespaces (see lab.Options.Name).
	LabName string
	// Nodes is the number of agent nodes n1..nN, all voters (default 3;
	// 3, 5 or 7).
	Nodes int
	// Clients is the number of client hosts c1..cN (default 1). c1 runs
	// the observers (prober, admin calls); the others are free for a
	// scenario's own use (hostile-lan's attacker is c2).
	Clients int
	// LabBin is the harbormaster-lab binary, for the helpers that run
	// inside the lab (`harbormaster-lab internal push`, the stand-in
	// services' `internal service`). Scenarios that need it fail without.
	LabBin string

	// Spec replaces the default spec (the one vip role VIPRole at VIP). It
	// must keep that role, with that address: every scenario watches it.
	Spec string
	// NodeExtra, when set, returns YAML appended to node n's config: its
	// checks: section, for instance.
	NodeExtra func(c *Cluster, n lab.Node) string
	// StandIns are service roles of the spec whose hooks, on every node,
	// run the lab's stand-in service (see RunStandIn); their instances log
	// to ServiceLogPath. WaitStable then also waits until each is running
	// on its holder. Needs LabBin.
	StandIns []string
	// Daemons run in every node's namespace, started before the agents
	// (see Daemon).
	Daemons []Daemon
	// Prepare, when set, runs once the daemons have started and before
	// the agents start (to fill a node's registry from inside the lab,
	// with RunInLab).
	Prepare func(ctx context.Context, c *Cluster) error
}

// Cluster is a 3-node harbormaster cluster running in a fresh lab: one
// agent process per node namespace, a stand-in service on port 80 in every
// node namespace, the kernel sampler on the VIP and the client prober in
// c1. Its methods are safe for concurrent use unless noted.
type Cluster struct {
	Lab     *lab.Lab
	Sampler *lab.Sampler
	Prober  *Prober
	// Timing is the agents' profile.
	Timing config.Timing

	opts    ClusterOptions
	dir     string
	tmpDir  bool
	log     *slog.Logger
	nodes   []lab.Node
	servers []net.Listener
	conns   map[string]*grpc.ClientConn

	// spec is the parsed spec; svcLog reads the stand-ins' log (nil
	// without stand-ins).
	spec   *spec.Spec
	svcLog *ServiceLog

	mu      sync.Mutex
	bins    map[string]string // by node: the binary its next start runs (UseBin)
	agents  map[string]*agentProc
	daemons map[string]*Proc // by daemonKey
	busy    []*busyGroup
	off     []offWindow
	exits   []string
}

// UnexpectedExits returns, and forgets, the agent exits the scenario did
// not cause.
func (c *Cluster) UnexpectedExits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.exits
	c.exits = nil
	return out
}

// agentProc is one running agent process.
type agentProc struct {
	cmd   *exec.Cmd
	done  chan struct{}
	err   error
	start time.Time
	// stopping is set before the scenario kills or stops the process on
	// purpose; an exit without it is reported as unexpected.
	stopping atomic.Bool
}

// StartCluster builds a lab, writes the node configs and the spec, starts
// the services, the sampler, the agents and the prober. It does not wait
// for the cluster to be ready (see WaitStable). On error it tears down what
// it built. ctx bounds the start only; the agents run until Close.
func StartCluster(ctx context.Context, opts ClusterOptions) (_ *Cluster, err error) {
	if opts.Bin == "" {
		return nil, errors.New("cluster: no harbormaster binary")
	}
	for _, b := range []string{opts.Bin, opts.StartBin} {
		if _, err := os.Stat(b); b != "" && err != nil {
			return nil, fmt.Errorf("cluster: harbormaster binary: %w", err)
		}
	}
	if opts.Profile == "" {
		opts.Profile = "lan"
	}
	if _, ok := config.Profiles[opts.Profile]; !ok {
		return nil, fmt.Errorf("cluster: unknown profile %q", opts.Profile)
	}
	timing, err := (&config.Config{Profile: opts.Profile, Timing: opts.Timing}).TimingProfile()
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Cluster{opts: opts, log: log, Timing: timing, conns: map[string]*grpc.ClientConn{}, agents: map[string]*agentProc{},
		daemons: map[string]*Proc{}, bins: map[string]string{}}
	if c.spec, err = parseSpec(opts.Spec); err != nil {
		return nil, err
	}
	for _, r := range opts.StandIns {
		if sr, ok := c.spec.Role(r); !ok || sr.Type != spec.TypeService {
			return nil, fmt.Errorf("cluster: stand-in %q is not a service role of the spec", r)
		}
	}
	if len(opts.StandIns) > 0 && opts.LabBin == "" {
		return nil, errNoLabBin
	}
	c.dir = opts.Dir
	if c.dir != "" {
		// The configs name their files by path, and an agent resolves a
		// relative one against its config's folder, not the lab's cwd.
		if c.dir, err = filepath.Abs(c.dir); err != nil {
			return nil, fmt.Errorf("cluster: dir: %w", err)
		}
	}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "harbormaster-lab-"); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		c.tmpDir = true
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.Lab, err = lab.New(ctx, lab.Options{Nodes: max(opts.Nodes, 3), Clients: max(opts.Clients, 1), Name: opts.LabName}); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.nodes = c.Lab.Nodes()
	log.Info("lab up", "prefix", c.Lab.Prefix(), "dir", c.dir)
	if err := c.writeConfigs(); err != nil {
		return nil, err
	}
	for _, n := range c.nodes {
		var ln net.Listener
		err := c.Lab.InNamespace(n.Name, func() (err error) {
			ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", vipPort))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("cluster: service on %s: %w", n.Name, err)
		}
		c.servers = append(c.servers, ln)
		go func() { _ = Serve(ln, n.Name) }()
	}
	if c.Sampler, err = c.Lab.StartSampler(VIP, samplePeriod); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	for _, n := range c.nodes {
		if err := c.startDaemons(n.Name); err != nil {
			return nil, err
		}
	}
	if opts.Prepare != nil {
		if err := opts.Prepare(ctx, c); err != nil {
			return nil, fmt.Errorf("cluster: prepare: %w", err)
		}
	}
	if len(opts.StandIns) > 0 {
		c.svcLog = NewServiceLog(c.ServiceLogPath())
	}
	creds := insecure.NewCredentials()
	if !opts.Insecure {
		st, err := tlsid.Load(tlsid.FilesIn(c.TLSDir(), string(tlsid.RoleAdmin)), nil)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		creds = credentials.NewTLS(st.ClientConfig(tlsid.AnyNode))
	}
	for _, n := range c.nodes {
		conn, err := grpc.NewClient(apiAddr(n), grpc.WithTransportCredentials(creds),
			grpc.WithContextDialer(c.dial))
		if err != nil {
			return nil, fmt.Errorf("cluster: admin client for %s: %w", n.Name, err)
		}
		c.conns[n.Name] = conn
	}
	for _, n := range c.nodes {
		if err := c.StartAgent(n.Name); err != nil {
			return nil, err
		}
	}
	c.Prober, err = StartProber(ProbeConfig{
		Target: netip.AddrPortFrom(VIP.Addr(), vipPort),
		Spawn:  func(fn func() error) error { return c.Lab.InNamespace(client, fn) },
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return c, nil
}

func apiAddr(n lab.Node) string     { return netip.AddrPortFrom(n.IP, apiPort).String() }
func metricsAddr(n lab.Node) string { return netip.AddrPortFrom(n.IP, metricsPort).String() }
func raftAddr(n lab.Node) string    { return netip.AddrPortFrom(n.IP, raftPort).String() }

// dial opens admin connections from the client namespace, after the guard
// has checked that namespace and the target.
func (c *Cluster) dial(ctx context.Context, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	var conn net.Conn
	err = c.Lab.InNamespace(client, func() error {
		if err := lab.GuardHere(ap.Addr()); err != nil {
			return err
		}
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp4", addr)
		return err
	})
	return conn, err
}

// defaultSpec is the spec of the VIP scenarios: one vip role.
func defaultSpec() string {
	return fmt.Sprintf("roles:\n  - {name: %s, type: vip, address: %s}\n", VIPRole, VIP)
}

// parseSpec parses doc (the default spec when empty) and checks that it
// has the vip role every scenario watches.
func parseSpec(doc string) (*spec.Spec, error) {
	if doc == "" {
		doc = defaultSpec()
	}
	s, err := spec.Parse([]byte(doc))
	if err != nil {
		return nil, fmt.Errorf("cluster: spec: %w", err)
	}
	r, ok := s.Role(VIPRole)
	if !ok || r.Type != spec.TypeVIP || r.Address.Prefix != VIP {
		return nil, fmt.Errorf("cluster: spec: the scenarios watch the vip role %s at %s; keep it", VIPRole, VIP)
	}
	return s, nil
}

// writeConfigs writes n<i>.yaml and spec.yaml into the work dir.
func (c *Cluster) writeConfigs() error {
	doc := c.opts.Spec
	if doc == "" {
		doc = defaultSpec()
	}
	if err := os.WriteFile(filepath.Join(c.dir, "spec.yaml"), []byte(doc), 0o644); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	var boot strings.Builder
	ips := map[string][]net.IP{}
	for _, n := range c.nodes {
		fmt.Fprintf(&boot, "  - {id: %s, raft_addr: %s}\n", n.Name, raftAddr(n))
		ips[n.Name] = []net.IP{n.IP.AsSlice()}
	}
	if !c.opts.Insecure {
		if err := tlsid.WriteCluster(c.TLSDir(), "lab", ips, tlsid.Roles...); err != nil {
			return fmt.Errorf("cluster: tls: %w", err)
		}
	}
	for _, n := range c.nodes {
		cfg := fmt.Sprintf(`# written by chaos/scenario for lab %s
node_id: %s
raft_addr: %s
api_addr: %s
metrics_addr: %s
data_dir: %s
profile: %s
log_level: %s
vip_interface: %s
bootstrap:
%sspec_file: %s
`, c.Lab.Prefix(), n.Name, raftAddr(n), apiAddr(n), metricsAddr(n), filepath.Join(c.dir, n.Name), c.opts.Profile,
			c.opts.LogLevel, n.Iface, boot.String(), filepath.Join(c.dir, "spec.yaml"))
		if t := TimingYAML(c.opts.Timing); t != "" {
			cfg += "timing: " + t + "\n"
		}
		if c.opts.Insecure {
			cfg += "insecure: true\n"
		} else {
			f := tlsid.FilesIn(c.TLSDir(), n.Name)
			cfg += fmt.Sprintf("tls: {ca_file: %s, cert_file: %s, key_file: %s}\n", f.CA, f.Cert, f.Key)
		}
		services, err := c.writeStandIns(n.Name)
		if err != nil {
			return err
		}
		cfg += services
		if c.opts.NodeExtra != nil {
			cfg += c.opts.NodeExtra(c, n)
		}
		if err := os.WriteFile(c.configPath(n.Name), []byte(cfg), 0o644); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	return nil
}

// TLSDir holds the lab cluster's CA, node and operator certificates
// (tlsid.WriteCluster; operators read, operate and admin).
func (c *Cluster) TLSDir() string { return filepath.Join(c.dir, "tls") }

// Insecure reports whether the agents run without TLS.
func (c *Cluster) Insecure() bool { return c.opts.Insecure }

func (c *Cluster) configPath(node string) string { return filepath.Join(c.dir, node+".yaml") }

// LogPath returns the file the node's agent logs to (every start appends).
func (c *Cluster) LogPath(node string) string { return filepath.Join(c.dir, node+".log") }

// Dir returns the work directory.
func (c *Cluster) Dir() string { return c.dir }

// Nodes returns the lab's nodes.
func (c *Cluster) Nodes() []lab.Node { return slices.Clone(c.nodes) }

// Node returns the named node.
func (c *Cluster) Node(name string) lab.Node {
	n, _ := c.Lab.Host(name)
	return n
}

// UseBin makes the node's later agent starts run bin (an upgrade).
func (c *Cluster) UseBin(node, bin string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bins[node] = bin
}

// BinOf returns the binary the node's next agent start runs: the one
// UseBin set, else StartBin, else Bin.
func (c *Cluster) BinOf(node string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.bins[node] != "":
		return c.bins[node]
	case c.opts.StartBin != "":
		return c.opts.StartBin
	}
	return c.opts.Bin
}

// StartAgent starts the node's agent (it must not be running) in the node's
// namespace on BinOf(node), appending to its log file.
func (c *Cluster) StartAgent(node string) error {
	f, err := os.OpenFile(c.LogPath(node), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: agent log: %w", err)
	}
	defer f.Close()
	bin := c.BinOf(node)
	fmt.Fprintf(f, "=== chaos/scenario: agent start %s (%s)\n", time.Now().Format(time.RFC3339Nano), bin)
	cmd := c.Lab.Command(context.Background(), node, bin, "agent", "--config", c.configPath(node))
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cluster: start agent on %s: %w", node, err)
	}
	p := &agentProc{cmd: cmd, done: make(chan struct{}), start: time.Now()}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		if !p.stopping.Load() {
			c.mu.Lock()
			c.exits = append(c.exits, fmt.Sprintf("%s: the agent on %s exited unexpectedly (%v); see %s",
				stamp(time.Now()), node, p.err, c.LogPath(node)))
			c.mu.Unlock()
		}
	}()
	c.mu.Lock()
	c.agents[node] = p
	c.mu.Unlock()
	c.log.Debug("agent started", "node", node, "pid", cmd.Process.Pid)
	return nil
}

func (c *Cluster) agent(node string) (*agentProc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.agents[node]
	if !ok {
		return nil, fmt.Errorf("no agent on %s", node)
	}
	return p, nil
}

// Signal sends sig to the node's agent process.
func (c *Cluster) Signal(node string, sig syscall.Signal) error {
	p, err := c.agent(node)
	if err != nil {
		return err
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM || sig == syscall.SIGINT {
		p.stopping.Store(true)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to agent on %s: %w", sig, node, err)
	}
	return nil
}

// WaitAgentExit waits until the node's agent process has exited.
func (c *Cluster) WaitAgentExit(ctx context.Context, node string) error {
	p, err := c.agent(node)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Running reports whether the node's agent process is alive.
func (c *Cluster) Running(node string) bool {
	p, err := c.agent(node)
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

// Crash powers the node off (lab.Crash: switch port down, every process in
// its namespace killed) and opens its off window for the S1 checker.
func (c *Cluster) Crash(node string) (time.Time, error) {
	c.mu.Lock()
	t := time.Now()
	c.off = append(c.off, offWindow{node: node, start: t})
	if p, ok := c.agents[node]; ok {
		p.stopping.Store(true)
	}
	c.mu.Unlock()
	c.markDaemonsStopping(node)
	if err := c.Lab.Crash(node); err != nil {
		return t, err
	}
	p, err := c.agent(node)
	if err == nil {
		<-p.done
	}
	c.waitDaemonsExit(node)
	return t, nil
}

// Restore brings a crashed node's port up (closing its off window) and
// restarts its daemons and its agent on its data dir.
func (c *Cluster) Restore(node string) error {
	if err := c.Lab.Restore(node); err != nil {
		return err
	}
	c.mu.Lock()
	now := time.Now()
	for i := range c.off {
		if c.off[i].node == node && c.off[i].end.IsZero() {
			c.off[i].end = now
		}
	}
	c.mu.Unlock()
	if err := c.startDaemons(node); err != nil {
		return err
	}
	return c.StartAgent(node)
}

// offWindows returns a copy of the off windows.
func (c *Cluster) offWindows() []offWindow {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.off)
}

// SamplesSince returns the sampler's samples taken at or after t, with
// powered-off nodes masked (see excludeOff).
func (c *Cluster) SamplesSince(t time.Time) []lab.Sample {
	return excludeOff(c.Sampler.SamplesSince(t), c.offWindows())
}

// Holders returns the nodes holding the VIP in the last sample, powered-off
// nodes masked.
func (c *Cluster) Holders() []string {
	s, ok := c.Sampler.Last()
	if !ok {
		return nil
	}
	return excludeOff([]lab.Sample{s}, c.offWindows())[0].Holders
}

// View is the cluster as seen at one moment by the checks of WaitStable.
type View struct {
	Leader string // agreed by every running node
	Term   uint64
	Holder string // of VIPRole, per the leader's state
	Epoch  uint64
	Kernel []string // holders per the sampler
	// Services maps each stand-in service role to "holder@epoch" (empty
	// without stand-ins).
	Services map[string]string
	Ready    bool   // every running node ready and agreeing, the kernel and the state agree, the client reaches the holder, every stand-in runs on its holder
	Why      string // why not Ready
}

// same reports whether two views show the same leader and holders.
func (v View) same(o View) bool {
	if v.Holder != o.Holder || v.Leader != o.Leader || v.Epoch != o.Epoch || len(v.Services) != len(o.Services) {
		return false
	}
	for k, s := range v.Services {
		if o.Services[k] != s {
			return false
		}
	}
	return true
}

// standInFresh is how recent a stand-in's last line must be for it to
// count as running (it beats every 20 ms).
const standInFresh = 250 * time.Millisecond

// Look takes one View of the nodes whose agents are running.
func (c *Cluster) Look(ctx context.Context) View {
	var v View
	leaders := map[string]bool{}
	for _, n := range c.nodes {
		if !c.Running(n.Name) {
			v.Why = n.Name + "'s agent is not running"
			if p, err := c.agent(n.Name); err == nil {
				v.Why += fmt.Sprintf(" (%v)", p.err)
			}
			return v
		}
		st, err := c.Status(ctx, n.Name)
		if err != nil {
			v.Why = fmt.Sprintf("status of %s: %v", n.Name, err)
			return v
		}
		if !st.Ready {
			v.Why = n.Name + " not ready"
			return v
		}
		if st.LeaseRemainingMs <= 0 {
			v.Why = n.Name + " holds no lease"
			return v
		}
		leaders[st.Leader] = true
		if st.IsLeader {
			v.Term = st.Term
		}
	}
	if len(leaders) != 1 || leaders[""] {
		v.Why = fmt.Sprintf("leaders disagree: %v", leaders)
		return v
	}
	for l := range leaders {
		v.Leader = l
	}
	roles, err := c.Roles(ctx, v.Leader)
	if err != nil {
		v.Why = fmt.Sprintf("roles from %s: %v", v.Leader, err)
		return v
	}
	byName := map[string]*hmv1.Role{}
	for _, r := range roles.Roles {
		byName[r.Name] = r
		if r.Name == VIPRole && !r.Releasing {
			v.Holder, v.Epoch = r.Holder, r.Epoch
		}
	}
	for _, name := range c.opts.StandIns {
		r, ok := byName[name]
		switch {
		case !ok || r.Holder == "":
			v.Why = "service " + name + " has no holder"
			return v
		case r.Releasing:
			v.Why = "service " + name + " is being released by " + r.Holder
			return v
		}
		if _, ok := c.svcLog.Active(name, r.Holder, r.Epoch, standInFresh); !ok {
			v.Why = fmt.Sprintf("the stand-in of %s does not run on its holder %s at epoch %d", name, r.Holder, r.Epoch)
			return v
		}
		if v.Services == nil {
			v.Services = map[string]string{}
		}
		v.Services[name] = fmt.Sprintf("%s@%d", r.Holder, r.Epoch)
	}
	v.Kernel = c.Holders()
	if v.Holder == "" {
		v.Why = "no holder in the state"
		return v
	}
	if !slices.Equal(v.Kernel, []string{v.Holder}) {
		v.Why = fmt.Sprintf("kernel holders %v, state holder %s", v.Kernel, v.Holder)
		return v
	}
	a, ok := c.Prober.LastSuccess()
	if !ok || time.Since(a.Start) > 100*time.Millisecond || a.Node != v.Holder {
		v.Why = fmt.Sprintf("client does not reach %s through the VIP (last success %v from %q)", v.Holder, ok, a.Node)
		return v
	}
	if mac, ok := c.Lab.ARPCache(client, VIP.Addr()); !ok || mac.String() != c.Node(v.Holder).MAC.String() {
		v.Why = fmt.Sprintf("client's ARP entry for the VIP is %v, not %s's", mac, v.Holder)
		return v
	}
	v.Ready = true
	return v
}

// WaitStable waits until every node runs, is ready and agrees on the
// leader, the VIP is held by exactly one node in the state and in the
// kernels, and the client reaches that node through the VIP with its ARP
// entry pointing at it, all of it unchanged for settle. It returns the last
// View, or an error naming what was missing at the timeout.
func (c *Cluster) WaitStable(ctx context.Context, settle, timeout time.Duration) (View, error) {
	deadline := time.Now().Add(timeout)
	var since time.Time
	var stable, last View
	for {
		v := c.Look(ctx)
		last = v
		switch {
		case !v.Ready:
			since = time.Time{}
		case since.IsZero() || !v.same(stable):
			since, stable = time.Now(), v
		case time.Since(since) >= settle:
			return v, nil
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("cluster not stable after %s: %s", timeout, last.Why)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the prober, the sampler and the services, stops every agent
// (SIGTERM, then SIGKILL after 3 s), tears the lab down and removes a
// temporary work dir. Idempotent enough for deferred and signal paths.
func (c *Cluster) Close() error {
	var errs []error
	if err := c.stopBusy(); err != nil {
		errs = append(errs, err)
	}
	if c.Prober != nil {
		c.Prober.Stop()
		c.Prober = nil
	}
	c.mu.Lock()
	agents := make(map[string]*agentProc, len(c.agents))
	for k, v := range c.agents {
		agents[k] = v
	}
	c.agents = map[string]*agentProc{}
	c.mu.Unlock()
	for _, p := range agents {
		p.stopping.Store(true)
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(3 * time.Second)
	for node, p := range agents {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			c.log.Warn("agent did not stop on SIGTERM; killing it", "node", node)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	c.stopDaemons()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	for _, ln := range c.servers {
		_ = ln.Close()
	}
	if c.Sampler != nil {
		c.Sampler.Stop()
		c.Sampler = nil
	}
	if c.Lab != nil {
		if err := c.Lab.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.tmpDir {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// TimingYAML renders the overrides as a YAML flow mapping ("" when there
// are none), in the config's field names.
func TimingYAML(o config.TimingOverrides) string {
	var parts []string
	for _, f := range []struct {
		name string
		v    conf.Duration
	}{{"heartbeat", o.Heartbeat}, {"election", o.Election}, {"leader_lease", o.LeaderLease}, {"lease", o.Lease}, {"renew", o.Renew}} {
		if f.v != 0 {
			parts = append(parts, f.name+": "+f.v.String())
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// ParseTiming reads "lease=150ms,renew=40ms" (the timing section's field
// names) into overrides, and checks them against the profile the way the
// agent's config does.
func ParseTiming(profile, s string) (config.TimingOverrides, error) {
	var o config.TimingOverrides
	if strings.TrimSpace(s) == "" {
		return o, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		d, err := time.ParseDuration(v)
		if !ok || err != nil {
			return o, fmt.Errorf("%q: write name=duration, such as lease=150ms", kv)
		}
		switch k {
		case "heartbeat":
			o.Heartbeat = conf.Duration(d)
		case "election":
			o.Election = conf.Duration(d)
		case "leader_lease":
			o.LeaderLease = conf.Duration(d)
		case "lease":
			o.Lease = conf.Duration(d)
		case "renew":
			o.Renew = conf.Duration(d)
		default:
			return o, fmt.Errorf("%q: no timing field %q; use heartbeat, election, leader_lease, lease or renew", kv, k)
		}
	}
	if _, err := (&config.Config{Profile: profile, Timing: o}).TimingProfile(); err != nil {
		return o, err
	}
	return o, nil
}
