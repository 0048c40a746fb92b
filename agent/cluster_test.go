package agent_test

// In-process clusters: real agents (Raft, fsm, coordinator, gRPC API on
// loopback) with Raft on InmemTransport, so partitions and crashes are cut
// and healed in the transport.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/harbormaster/harbormaster/agent"
	"github.com/harbormaster/harbormaster/agent/checks"
	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/tlsid"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
	"github.com/harbormaster/harbormaster/spec"
	"github.com/harbormaster/harbormaster/vip"
	"github.com/harbormaster/harbormaster/vip/viptest"
)

type tnode struct {
	id     string
	kernel *viptest.Kernel    // the node's fake kernel, when the cluster has VIPs
	ann    *viptest.Announcer // and its fake announcer
	cfg    *config.Config
	opts   clusterOpts
	agent  *agent.Agent
	trans  *raft.InmemTransport
	cancel context.CancelFunc
	done   chan error
}

type cluster struct {
	t     *testing.T
	nodes []*tnode
	lw    *tlogWriter
	cut   *netcut
	// tlsDir holds the test cluster's CA and certificates (tlsid.WriteCluster).
	tlsDir string
	// conns are the tests' API connections by address and certificate,
	// kept so that a polling test does not open one per call (the API
	// bounds connections per address).
	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn
}

// netcut cuts the agents' gRPC links (lease renewals, forwarding) the way
// isolate cuts Raft: a dialer refuses, and open connections fail on their
// next read or write.
type netcut struct {
	mu       sync.Mutex
	isolated map[string]bool
	owner    map[string]string // API address -> node id
}

var errCut = errors.New("link cut by the test")

// leaseDropped cuts lease datagrams from or to an isolated node.
func (n *netcut) leaseDropped(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.isolated[from] || n.isolated[to]
}

func (n *netcut) blocked(from, addr string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.isolated[from] || n.isolated[n.owner[addr]]
}

func (n *netcut) dialer(from string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if n.blocked(from, addr) {
			return nil, errCut
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &cutConn{Conn: c, cut: func() bool { return n.blocked(from, addr) }}, nil
	}
}

type cutConn struct {
	net.Conn
	cut func() bool
}

func (c *cutConn) Read(b []byte) (int, error) {
	if c.cut() {
		c.Conn.Close()
		return 0, errCut
	}
	return c.Conn.Read(b)
}

func (c *cutConn) Write(b []byte) (int, error) {
	if c.cut() {
		c.Conn.Close()
		return 0, errCut
	}
	return c.Conn.Write(b)
}

// tlogWriter routes logs to t.Log until the test ends.
// It keeps the lines for the tests that read the logs (lines).
type tlogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
	all  []string
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all = append(w.all, string(p))
	if !w.done {
		w.t.Log(string(p))
	}
	return len(p), nil
}

// lines returns the lines logged so that contain every one of subs.
func (w *tlogWriter) lines(subs ...string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
next:
	for _, l := range w.all {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

type clusterOpts struct {
	snapshotThreshold, trailingLogs uint64
	spec                            string
	// disk keeps the Raft log, stable store and snapshots in bolt and files
	// under each node's data dir (as in production), so nodes can restart.
	disk bool
	// vip gives every node a vip_interface backed by a fake kernel.
	vip bool
	// services gives every node an actuator (the fake fakeServices) for
	// these service roles.
	services []string
	fake     *fakeServices
	// checks are every node's checks; "{node}" in an exec argv is
	// replaced by the node id.
	checks []checks.Config
	// redis gives node i (0-based) the Redis at this address, and a
	// Sentinel-compatible listener on sentinel[i] when set.
	redis    []string
	sentinel []string
	// sentinelTLS serves the Sentinel listeners with the nodes' certificates.
	sentinelTLS bool
	// logHandler logs through agent.NewLogHandler (text at first), passed
	// as Options.LogHandler, so a reload can switch its format.
	logHandler bool
	// storeErr, when set, fails node's Raft store writes while it returns
	// an error (Options.StoreWriteErr).
	storeErr func(node string) error
}

func newCluster(t *testing.T, n int, o clusterOpts) *cluster {
	t.Helper()
	lw := &tlogWriter{t: t}
	c := &cluster{t: t, lw: lw, cut: &netcut{isolated: map[string]bool{}, owner: map[string]string{}}}
	t.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	var peers []config.Peer
	for i := 1; i <= n; i++ {
		peers = append(peers, config.Peer{ID: "n" + strconv.Itoa(i), RaftAddr: fmt.Sprintf("127.0.0.1:%d", 9100+i)})
	}
	// The API runs mutual TLS as in production: a CA and certificates for
	// n1-n9 and the read, operate and admin operators.
	c.tlsDir = t.TempDir()
	lo := []net.IP{net.IPv4(127, 0, 0, 1)}
	certs := map[string][]net.IP{}
	for i := 1; i <= 9; i++ {
		certs["n"+strconv.Itoa(i)] = lo
	}
	if err := tlsid.WriteCluster(c.tlsDir, "test", certs, tlsid.Roles...); err != nil {
		t.Fatal(err)
	}
	if o.spec == "" {
		o.spec = "roles:\n  - {name: notary, type: service, marker: true}\n  - {name: clair, type: service, marker: true}\n"
	}
	sp, err := spec.Parse([]byte(o.spec))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		cfg := &config.Config{NodeID: p.ID, RaftAddr: p.RaftAddr, APIAddr: "127.0.0.1:1", DataDir: t.TempDir(),
			Profile: "lan", LogLevel: "info", Bootstrap: peers, Spec: sp, TLS: c.tlsFor(p.ID)}
		if o.vip {
			cfg.VIPInterface = "eth0"
		}
		for _, name := range o.services {
			if cfg.Services == nil {
				cfg.Services = map[string]service.Config{}
			}
			cfg.Services[name] = service.Config{Start: []string{"true"}, Stop: []string{"true"}}
		}
		if i := len(c.nodes); i < len(o.redis) {
			cfg.Redis = &redisctl.Config{Address: o.redis[i]}
			if i < len(o.sentinel) {
				cfg.Sentinel = &config.SentinelConfig{Addr: o.sentinel[i], TLS: o.sentinelTLS}
			}
		}
		for _, ch := range o.checks {
			ch.Argv = append([]string(nil), ch.Argv...)
			for i := range ch.Argv {
				ch.Argv[i] = strings.ReplaceAll(ch.Argv[i], "{node}", p.ID)
			}
			ch.Normalize()
			cfg.Checks = append(cfg.Checks, ch)
		}
		c.nodes = append(c.nodes, c.build(cfg, o))
	}
	c.heal()
	for _, nd := range c.nodes {
		c.start(nd)
	}
	t.Cleanup(func() {
		for i := len(c.nodes) - 1; i >= 0; i-- {
			c.nodes[i].cancel()
		}
		for _, nd := range c.nodes {
			select {
			case <-nd.done:
			case <-time.After(15 * time.Second):
				t.Errorf("%s did not stop", nd.id)
			}
		}
	})
	for _, nd := range c.nodes {
		select {
		case <-nd.agent.Ready():
		case err := <-nd.done:
			t.Fatalf("%s stopped: %v", nd.id, err)
		case <-time.After(15 * time.Second):
			t.Fatalf("%s not ready", nd.id)
		}
	}
	return c
}

// tlsFor is node id's tls section.
func (c *cluster) tlsFor(id string) *config.TLSConfig {
	f := tlsid.FilesIn(c.tlsDir, id)
	return &config.TLSConfig{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}
}

// build makes an agent on an in-memory transport and store.
func (c *cluster) build(cfg *config.Config, o clusterOpts) *tnode {
	c.t.Helper()
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.RaftAddr))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	c.cut.mu.Lock()
	c.cut.owner[lis.Addr().String()] = cfg.NodeID
	c.cut.mu.Unlock()
	var kernel *viptest.Kernel
	var ann *viptest.Announcer
	var vk vip.Kernel
	var va vip.Announcer
	if o.vip {
		kernel = viptest.NewKernel(time.Now)
		ann = &viptest.Announcer{Now: time.Now}
		vk, va = kernel, ann
	}
	var actuator func(string, service.Config) (service.Actuator, error)
	if o.fake != nil {
		actuator = o.fake.actuatorFor(cfg.NodeID)
	}
	var storeErr func() error
	if o.storeErr != nil {
		id := cfg.NodeID
		storeErr = func() error { return o.storeErr(id) }
	}
	logger := slog.New(slog.NewTextHandler(c.lw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var handler *agent.LogHandler
	if o.logHandler {
		level := new(slog.LevelVar)
		h, err := agent.NewLogHandler(c.lw, cfg.LogFormat, level)
		if err != nil {
			c.t.Fatal(err)
		}
		handler, logger = h, slog.New(h)
	}
	a, err := agent.New(cfg, agent.Options{LogHandler: handler, StoreWriteErr: storeErr, ServiceActuator: actuator, VIPKernel: vk, VIPAnnouncer: va, LeaseFilter: c.cut.leaseDropped, Transport: trans, InmemStore: !o.disk, APIListener: lis, Dialer: c.cut.dialer(cfg.NodeID),
		Logger: logger.With("test", c.t.Name()),
		// The test binary has no guard command; the Redis guard is
		// tested in agent/redisact, agent/serviceguard and the lab
		// (redis-pause-agent).
		NoRedisGuard:      true,
		SnapshotThreshold: o.snapshotThreshold, TrailingLogs: o.trailingLogs})
	if err != nil {
		c.t.Fatal(err)
	}
	return &tnode{id: cfg.NodeID, cfg: cfg, opts: o, agent: a, trans: trans, kernel: kernel, ann: ann}
}

// stop stops a node's agent (gracefully, as SIGTERM would) and waits.
func (c *cluster) stop(nd *tnode) {
	c.t.Helper()
	nd.cancel()
	select {
	case <-nd.done:
	case <-time.After(15 * time.Second):
		c.t.Fatalf("%s did not stop", nd.id)
	}
}

// restart builds a new agent for a stopped node on the same config and data
// dir (a process restart) and starts it.
func (c *cluster) restart(nd *tnode) {
	c.t.Helper()
	fresh := c.build(nd.cfg, nd.opts)
	nd.agent, nd.trans, nd.kernel, nd.ann = fresh.agent, fresh.trans, fresh.kernel, fresh.ann
	c.heal()
	c.start(nd)
}

func (c *cluster) start(nd *tnode) {
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel, nd.done = cancel, make(chan error, 1)
	go func() { nd.done <- nd.agent.Run(ctx) }()
}

func (c *cluster) node(id string) *tnode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	c.t.Fatalf("no node %s", id)
	return nil
}

// isolate cuts every link (Raft and the agents' gRPC) of the given nodes.
func (c *cluster) isolate(ids ...string) {
	cut := map[string]bool{}
	c.cut.mu.Lock()
	for _, id := range ids {
		cut[id] = true
		c.cut.isolated[id] = true
	}
	c.cut.mu.Unlock()
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a != b && (cut[a.id] || cut[b.id]) {
				a.trans.Disconnect(b.trans.LocalAddr())
			}
		}
	}
}

// heal connects every pair.
func (c *cluster) heal() {
	c.cut.mu.Lock()
	c.cut.isolated = map[string]bool{}
	c.cut.mu.Unlock()
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a != b {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
}

// waitFor polls cond every 10 ms until it holds or the deadline passes.
func (c *cluster) waitFor(what string, d time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leaseEnd waits for nd's own lease to lapse and returns when it ended (the
// holder forgets it at its next renewal, so it is read until then).
func leaseEnd(c *cluster, nd *tnode) time.Time {
	c.t.Helper()
	var until time.Time
	c.waitFor("the lease of "+nd.id+" to lapse", 3*time.Second, func() bool {
		_, valid, u := nd.agent.Lease()
		if !u.IsZero() {
			until = u
		}
		return !valid
	})
	if until.IsZero() {
		c.t.Fatalf("%s had no lease", nd.id)
	}
	return until
}

// leader returns the node that is leader, among the given ones (all if none).
func (c *cluster) leader(among ...string) *tnode {
	set := map[string]bool{}
	for _, id := range among {
		set[id] = true
	}
	for _, n := range c.nodes {
		if (len(set) == 0 || set[n.id]) && n.agent.Raft().State() == raft.Leader {
			return n
		}
	}
	return nil
}

func (c *cluster) others(id string) []string {
	var out []string
	for _, n := range c.nodes {
		if n.id != id {
			out = append(out, n.id)
		}
	}
	return out
}

// admin is an API client of node n with the admin operator's certificate.
func (c *cluster) admin(n *tnode) hmv1.AdminClient {
	return hmv1.NewAdminClient(c.connAs(n, string(tlsid.RoleAdmin)))
}

// connAs connects to node n's API with the certificate named who in the
// cluster's TLS dir (an operator role or a node id); "" connects in plain
// text.
func (c *cluster) connAs(n *tnode, who string) *grpc.ClientConn {
	c.t.Helper()
	key := n.agent.APIAddr() + "|" + who
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if conn, ok := c.conns[key]; ok {
		return conn
	}
	creds := insecure.NewCredentials()
	if who != "" {
		st, err := tlsid.Load(tlsid.FilesIn(c.tlsDir, who), nil)
		if err != nil {
			c.t.Fatal(err)
		}
		creds = credentials.NewTLS(st.ClientConfig(tlsid.AnyNode))
	}
	conn, err := grpc.NewClient(n.agent.APIAddr(), grpc.WithTransportCredentials(creds))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	if c.conns == nil {
		c.conns = map[string]*grpc.ClientConn{}
	}
	c.conns[key] = conn
	return conn
}

// allHeld reports whether every role in the spec has a live holder in st.
func allHeld(st *fsm.State) bool {
	if st.SpecVersion == 0 {
		return false
	}
	for _, r := range st.Spec.Roles {
		if st.Assignment(r.Name).Holder == "" {
			return false
		}
	}
	return true
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
