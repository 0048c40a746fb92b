// Package proccluster runs a harbormaster cluster as real operating-system
// processes: one `harbormaster agent` per node config, each with its own data
// dir and log file, so that tests and benchmarks can crash (SIGKILL), stop
// (SIGTERM) and restart agents and watch the cluster through the admin API.
//
// It is used by both `go test` and the chaos benchmark programs, so it never
// takes a *testing.T: every method returns an error, and the per-node log
// paths are exposed for the caller to print on failure.
//
// Agents only ever listen on, and are only ever asked on, loopback addresses:
// New refuses a config whose addresses are not loopback IPs.
package proccluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"gopkg.in/yaml.v3"

	"github.com/harbormaster/harbormaster/internal/tlsid"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// StopTimeout is how long Stop waits for an agent to exit after SIGTERM
// before it kills it.
const StopTimeout = 10 * time.Second

// killTimeout bounds the wait for a process to be reaped after SIGKILL.
const killTimeout = 10 * time.Second

// PollInterval is how often WaitLeader asks the nodes.
const PollInterval = 10 * time.Millisecond

// rpcTimeout bounds each admin call that Leader makes to one node, so one
// stuck node cannot stall the others' answers.
const rpcTimeout = 500 * time.Millisecond

// Options configure a Cluster.
type Options struct {
	// Binary is the path of the harbormaster binary. Required.
	Binary string
	// Configs are the node config files, one per node. Empty means
	// DefaultConfigs: the three testdata/loopback configs.
	Configs []string
	// Dir is the parent directory of the nodes' data dirs (Dir/<id>/data)
	// and log files (Dir/<id>.log). Required; the caller owns it and removes
	// it.
	Dir string
	// ClientTLS are the operator files the admin clients use; nil with
	// DefaultConfigs means the loopback admin certificate (made by
	// LoopbackCerts), else plain text.
	ClientTLS *tlsid.Files
	// Env is added to the agents' environment (KEY=VALUE). The caller's
	// environment is inherited, minus systemd's NOTIFY_SOCKET and WATCHDOG_*
	// variables.
	Env []string
}

// Node describes one node of the cluster, from its config file.
type Node struct {
	// ID is the node_id of the config.
	ID string
	// Config is the absolute path of the node's config file.
	Config string
	// RaftAddr, APIAddr and MetricsAddr are the addresses from the config
	// (MetricsAddr may be empty).
	RaftAddr    string
	APIAddr     string
	MetricsAddr string
	// DataDir is the node's data dir, passed as --data-dir; it survives
	// restarts.
	DataDir string
	// LogPath is the file the agent's stdout and stderr are appended to,
	// across restarts.
	LogPath string
}

// proc is the mutable state of one node.
type proc struct {
	Node
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has been reaped
	state   *os.ProcessState
	waitErr error
	conn    *grpc.ClientConn
}

func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Cluster is a set of agent processes. Its methods are safe for concurrent
// use.
type Cluster struct {
	bin   string
	env   []string
	order []string
	creds credentials.TransportCredentials

	mu    sync.Mutex
	nodes map[string]*proc
}

// nodeConfig is the part of a node config file that the cluster needs.
// Decoding is lenient: the agent itself validates the file strictly.
type nodeConfig struct {
	NodeID      string `yaml:"node_id"`
	RaftAddr    string `yaml:"raft_addr"`
	APIAddr     string `yaml:"api_addr"`
	MetricsAddr string `yaml:"metrics_addr"`
}

// ModuleRoot returns the directory of the go.mod found by walking up from
// the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod in the working directory or any parent")
		}
		dir = parent
	}
}

// DefaultConfigs returns the three loopback node configs,
// testdata/loopback/n1.yaml to n3.yaml under the module root.
func DefaultConfigs() ([]string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range []string{"n1", "n2", "n3"} {
		p := filepath.Join(root, "testdata", "loopback", n+".yaml")
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("default configs: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// LoopbackCerts makes sure testdata/loopback/tls holds the loopback
// cluster's files (what make loopback-certs writes: the CA of cluster
// "loopback", n1-n3 for 127.0.0.1, operators read, operate and admin),
// writing them when a file is missing or expires within a day, and returns
// the admin operator's files. Safe against concurrent test processes.
func LoopbackCerts() (tlsid.Files, error) {
	root, err := ModuleRoot()
	if err != nil {
		return tlsid.Files{}, err
	}
	dir := filepath.Join(root, "testdata", "loopback", "tls")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return tlsid.Files{}, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return tlsid.Files{}, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return tlsid.Files{}, err
	}
	names := []string{"ca", "n1", "n2", "n3", "read", "operate", "admin"}
	fresh := true
	for _, n := range names {
		f := tlsid.FilesIn(dir, n)
		if _, err := os.Stat(f.Key); err != nil {
			fresh = false
			break
		}
		if st, err := tlsid.Load(f, nil); n != "ca" && (err != nil || time.Until(st.NotAfter()) < 24*time.Hour) {
			fresh = false
			break
		}
	}
	if !fresh {
		lo := []net.IP{net.IPv4(127, 0, 0, 1)}
		if err := tlsid.WriteCluster(dir, "loopback", map[string][]net.IP{"n1": lo, "n2": lo, "n3": lo}, tlsid.Roles...); err != nil {
			return tlsid.Files{}, fmt.Errorf("loopback certificates: %w", err)
		}
	}
	return tlsid.FilesIn(dir, "admin"), nil
}

// New reads the node configs and prepares the cluster. It starts nothing.
func New(opts Options) (*Cluster, error) {
	if opts.Binary == "" {
		return nil, errors.New("proccluster: Options.Binary is empty; give the path of the harbormaster binary")
	}
	bin, err := filepath.Abs(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("proccluster: binary: %w", err)
	}
	if fi, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("proccluster: binary: %w", err)
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("proccluster: binary %s is not an executable file", bin)
	}
	if opts.Dir == "" {
		return nil, errors.New("proccluster: Options.Dir is empty; give a parent directory for data dirs and logs")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("proccluster: dir: %w", err)
	}
	configs := opts.Configs
	clientTLS := opts.ClientTLS
	if len(configs) == 0 {
		if configs, err = DefaultConfigs(); err != nil {
			return nil, fmt.Errorf("proccluster: %w", err)
		}
		if clientTLS == nil {
			f, err := LoopbackCerts()
			if err != nil {
				return nil, fmt.Errorf("proccluster: %w", err)
			}
			clientTLS = &f
		}
	}
	c := &Cluster{bin: bin, env: agentEnv(opts.Env), nodes: map[string]*proc{}, creds: insecure.NewCredentials()}
	if clientTLS != nil {
		st, err := tlsid.Load(*clientTLS, nil)
		if err != nil {
			return nil, fmt.Errorf("proccluster: client tls: %w", err)
		}
		c.creds = credentials.NewTLS(st.ClientConfig(tlsid.AnyNode))
	}
	for _, path := range configs {
		n, err := readNode(path, dir)
		if err != nil {
			return nil, fmt.Errorf("proccluster: %w", err)
		}
		if _, dup := c.nodes[n.ID]; dup {
			return nil, fmt.Errorf("proccluster: node id %s appears in two configs", n.ID)
		}
		c.nodes[n.ID] = &proc{Node: n}
		c.order = append(c.order, n.ID)
	}
	return c, nil
}

func readNode(path, dir string) (Node, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Node{}, err
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		return Node{}, err
	}
	var nc nodeConfig
	if err := yaml.Unmarshal(b, &nc); err != nil {
		return Node{}, fmt.Errorf("%s: %w", abs, err)
	}
	if nc.NodeID == "" || nc.RaftAddr == "" || nc.APIAddr == "" {
		return Node{}, fmt.Errorf("%s: node_id, raft_addr and api_addr are required", abs)
	}
	for _, a := range []string{nc.RaftAddr, nc.APIAddr, nc.MetricsAddr} {
		if a == "" {
			continue
		}
		if err := checkLoopback(a); err != nil {
			return Node{}, fmt.Errorf("%s: %w", abs, err)
		}
	}
	return Node{
		ID: nc.NodeID, Config: abs,
		RaftAddr: nc.RaftAddr, APIAddr: nc.APIAddr, MetricsAddr: nc.MetricsAddr,
		DataDir: filepath.Join(dir, nc.NodeID, "data"),
		LogPath: filepath.Join(dir, nc.NodeID+".log"),
	}, nil
}

// checkLoopback refuses any address that is not a loopback IP with a port.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback IP; proccluster only runs agents on loopback", addr)
	}
	return nil
}

// agentEnv is the caller's environment without systemd's notification
// variables (an agent must not talk to the caller's service manager), plus
// extra.
func agentEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// IDs returns the node ids in config order.
func (c *Cluster) IDs() []string { return append([]string(nil), c.order...) }

// Node returns the description of node id.
func (c *Cluster) Node(id string) (Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[id]
	if !ok {
		return Node{}, c.unknown(id)
	}
	return p.Node, nil
}

// LogPath returns the path of node id's log file (empty for an unknown id).
func (c *Cluster) LogPath(id string) string {
	n, err := c.Node(id)
	if err != nil {
		return ""
	}
	return n.LogPath
}

// LogPaths returns every node's log path by id.
func (c *Cluster) LogPaths() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for id, p := range c.nodes {
		out[id] = p.LogPath
	}
	return out
}

// ReadLog returns the contents of node id's log file.
func (c *Cluster) ReadLog(id string) (string, error) {
	n, err := c.Node(id)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(n.LogPath)
	return string(b), err
}

func (c *Cluster) unknown(id string) error {
	return fmt.Errorf("proccluster: unknown node %q (nodes: %s)", id, strings.Join(c.order, ", "))
}

// Running reports whether node id's agent process is running.
func (c *Cluster) Running(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[id]
	return ok && p.running()
}

// RunningIDs returns the ids of the running nodes, in config order.
func (c *Cluster) RunningIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range c.order {
		if c.nodes[id].running() {
			out = append(out, id)
		}
	}
	return out
}

// PID returns the process id of node id's running agent, or 0.
func (c *Cluster) PID(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[id]
	if !ok || !p.running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// ExitState returns how node id's last process ended: nil while it runs or
// if it never ran.
func (c *Cluster) ExitState(id string) *os.ProcessState {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[id]
	if !ok || p.running() {
		return nil
	}
	return p.state
}

// PortFree reports an error naming the port if addr cannot be listened on.
func PortFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		_, port, _ := net.SplitHostPort(addr)
		return fmt.Errorf("port %s (%s) is not free: %w", port, addr, err)
	}
	return l.Close()
}

func (n Node) addrs() []string {
	out := []string{n.RaftAddr, n.APIAddr}
	if n.MetricsAddr != "" {
		out = append(out, n.MetricsAddr)
	}
	return out
}

// CheckPorts checks that every port of every node that is not running is
// free, and returns an error naming the first busy one.
func (c *Cluster) CheckPorts() error {
	for _, id := range c.order {
		if c.Running(id) {
			continue
		}
		n, _ := c.Node(id)
		for _, a := range n.addrs() {
			if err := PortFree(a); err != nil {
				return fmt.Errorf("proccluster: node %s: %w", id, err)
			}
		}
	}
	return nil
}

// WaitPortsFree polls CheckPorts every 100 ms until the ports are free or
// ctx ends; then it returns CheckPorts' last error. Use it when other runs
// may be using the same fixed ports.
func (c *Cluster) WaitPortsFree(ctx context.Context) error {
	for {
		err := c.CheckPorts()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StartAll checks every node's ports, then starts every node that is not
// running.
func (c *Cluster) StartAll() error {
	if err := c.CheckPorts(); err != nil {
		return err
	}
	for _, id := range c.order {
		if c.Running(id) {
			continue
		}
		if err := c.Start(id); err != nil {
			return err
		}
	}
	return nil
}

// Start starts node id's agent with its data dir, appending its output to
// its log file. It fails, naming the port, if one of the node's ports is
// busy. It does not wait for the agent to be ready.
func (c *Cluster) Start(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[id]
	if !ok {
		return c.unknown(id)
	}
	if p.running() {
		return fmt.Errorf("proccluster: node %s is already running (pid %d)", id, p.cmd.Process.Pid)
	}
	for _, a := range p.addrs() {
		if err := PortFree(a); err != nil {
			return fmt.Errorf("proccluster: cannot start node %s: %w", id, err)
		}
	}
	if err := os.MkdirAll(p.DataDir, 0o750); err != nil {
		return fmt.Errorf("proccluster: node %s: %w", id, err)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("proccluster: node %s: open log: %w", id, err)
	}
	fmt.Fprintf(logf, "=== proccluster: starting %s at %s: %s agent --config %s --data-dir %s\n",
		id, time.Now().Format(time.RFC3339Nano), c.bin, p.Config, p.DataDir)
	cmd := exec.Command(c.bin, "agent", "--config", p.Config, "--data-dir", p.DataDir)
	cmd.Env = c.env
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := startCmd(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("proccluster: start node %s: %w", id, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.state, p.waitErr = cmd, done, nil, nil
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		p.state, p.waitErr = cmd.ProcessState, err
		c.mu.Unlock()
		fmt.Fprintf(logf, "=== proccluster: %s exited at %s: %v\n", id, time.Now().Format(time.RFC3339Nano), cmd.ProcessState)
		logf.Close()
		close(done)
	}()
	// A fresh connection per process: the old one may be in a long
	// reconnect backoff after the previous process died.
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
	return nil
}

// signal sends sig to node id's running process and returns its done
// channel.
func (c *Cluster) signal(id string, sig os.Signal) (<-chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[id]
	if !ok {
		return nil, c.unknown(id)
	}
	if !p.running() {
		return nil, fmt.Errorf("proccluster: node %s is not running", id)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return nil, fmt.Errorf("proccluster: signal node %s: %w", id, err)
	}
	return p.done, nil
}

// Kill crashes node id: SIGKILL, then wait until the process is reaped.
func (c *Cluster) Kill(id string) error {
	done, err := c.signal(id, syscall.SIGKILL)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("proccluster: node %s did not exit within %s of SIGKILL", id, killTimeout)
	}
}

// Stop stops node id gracefully: SIGTERM, then wait up to StopTimeout for
// it to exit. If it does not, Stop kills it and returns an error; it also
// returns an error if the agent exited with a non-zero status.
func (c *Cluster) Stop(id string) error {
	done, err := c.signal(id, syscall.SIGTERM)
	if err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(StopTimeout):
		kerr := c.Kill(id)
		return errors.Join(fmt.Errorf("proccluster: node %s did not stop within %s of SIGTERM; killed it", id, StopTimeout), kerr)
	}
	if st := c.ExitState(id); st != nil && !st.Success() {
		return fmt.Errorf("proccluster: node %s exited after SIGTERM with %v; see %s", id, st, c.LogPath(id))
	}
	return nil
}

// Restart stops node id gracefully if it runs, then starts it again with
// the same data dir.
func (c *Cluster) Restart(id string) error {
	if c.Running(id) {
		if err := c.Stop(id); err != nil {
			return err
		}
	}
	return c.Start(id)
}

// Close kills every agent still running and closes the API connections. It
// is safe to call more than once.
func (c *Cluster) Close() error {
	var errs []error
	for _, id := range c.order {
		if c.Running(id) {
			if err := c.Kill(id); err != nil && c.Running(id) {
				errs = append(errs, err)
			}
		}
	}
	c.mu.Lock()
	for _, p := range c.nodes {
		if p.conn != nil {
			p.conn.Close()
			p.conn = nil
		}
	}
	c.mu.Unlock()
	return errors.Join(errs...)
}

// Client returns an admin API client for node id. The connection is kept
// and replaced when the node is restarted; calls to a node that is down
// fail fast with codes.Unavailable.
func (c *Cluster) Client(id string) (hmv1.AdminClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[id]
	if !ok {
		return nil, c.unknown(id)
	}
	if p.conn == nil {
		conn, err := grpc.NewClient(p.APIAddr,
			grpc.WithTransportCredentials(c.creds),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 100 * time.Millisecond},
				MinConnectTimeout: time.Second,
			}))
		if err != nil {
			return nil, fmt.Errorf("proccluster: dial node %s at %s: %w", id, p.APIAddr, err)
		}
		p.conn = conn
	}
	return hmv1.NewAdminClient(p.conn), nil
}

// Status asks node id for its view of the cluster.
func (c *Cluster) Status(ctx context.Context, id string) (*hmv1.StatusResponse, error) {
	cl, err := c.Client(id)
	if err != nil {
		return nil, err
	}
	return cl.Status(ctx, &hmv1.StatusRequest{})
}

// Roles asks node id for the roles, their holders and epochs.
func (c *Cluster) Roles(ctx context.Context, id string) (*hmv1.ListRolesResponse, error) {
	cl, err := c.Client(id)
	if err != nil {
		return nil, err
	}
	return cl.ListRoles(ctx, &hmv1.ListRolesRequest{})
}

// Spec asks node id for the cluster spec and its version.
func (c *Cluster) Spec(ctx context.Context, id string) (*hmv1.GetSpecResponse, error) {
	cl, err := c.Client(id)
	if err != nil {
		return nil, err
	}
	return cl.GetSpec(ctx, &hmv1.GetSpecRequest{})
}

// NoLeaderError is returned by Leader when the running nodes do not agree
// on a leader by a majority.
type NoLeaderError struct {
	// Views maps each running node to the leader it reported ("" for none)
	// or to "error: ..." when it did not answer.
	Views map[string]string
}

// Error lists every running node's view.
func (e *NoLeaderError) Error() string {
	var parts []string
	for id, v := range e.Views {
		parts = append(parts, id+"="+v)
	}
	if len(parts) == 0 {
		return "proccluster: no leader: no node is running"
	}
	return "proccluster: no leader agreed by a majority of the running nodes: " + strings.Join(parts, " ")
}

// Leader asks every running node for its leader and returns the id that a
// majority of the running nodes report (a node that does not answer counts
// against it). It returns a *NoLeaderError when there is none.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	ids := c.RunningIDs()
	type answer struct{ id, leader string }
	answers := make(chan answer, len(ids))
	for _, id := range ids {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			defer cancel()
			st, err := c.Status(cctx, id)
			if err != nil {
				answers <- answer{id, "error: " + err.Error()}
				return
			}
			answers <- answer{id, st.Leader}
		}()
	}
	views := map[string]string{}
	count := map[string]int{}
	for range ids {
		a := <-answers
		views[a.id] = a.leader
		if a.leader != "" && !strings.HasPrefix(a.leader, "error: ") {
			count[a.leader]++
		}
	}
	for l, n := range count {
		if n > len(ids)/2 {
			return l, nil
		}
	}
	return "", &NoLeaderError{Views: views}
}

// WaitLeader polls Leader every PollInterval until a majority of the
// running nodes agree on a leader that is running and is not exclude (""
// excludes nothing), and returns it. When ctx ends it returns the last
// reason for waiting.
func (c *Cluster) WaitLeader(ctx context.Context, exclude string) (string, error) {
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		l, err := c.Leader(ctx)
		switch {
		case err != nil:
		case l == exclude:
			err = fmt.Errorf("proccluster: the running nodes still agree on the excluded leader %s", l)
		case !c.Running(l):
			err = fmt.Errorf("proccluster: the running nodes agree on leader %s, which is not running", l)
		default:
			return l, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for a leader: %w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// PrintLogTails writes the last n lines of every node's log to w (for a
// failed run).
func (c *Cluster) PrintLogTails(w io.Writer, n int) {
	for _, id := range c.IDs() {
		l, err := c.ReadLog(id)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(l, "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(w, "----- last lines of %s (%s) -----\n%s\n", id, c.LogPath(id), strings.Join(lines, "\n"))
	}
}
