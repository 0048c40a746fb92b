// Package agent is the composition root of one harbormaster node: it wires
// the config, the Raft node (transport, bolt stores, snapshots), the fsm, the
// leader-only coordinator, the gRPC admin server, the node's own loops (lease
// renewal, registration, releases, joining) and its lifecycle (sd_notify,
// graceful stop).
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/raft"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/harbormaster/harbormaster/agent/checks"
	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/coordinator"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/lease"
	"github.com/harbormaster/harbormaster/vip"
)

// Version is the agent's version, set at build time with -ldflags.
var Version = "dev"

// Options change how an agent is built; the zero value is production.
// Tests use them to run agents in process on an in-memory transport.
type Options struct {
	// Transport replaces the TCP transport on cfg.RaftAddr.
	Transport raft.Transport
	// InmemStore keeps the log, stable store and snapshots in memory.
	InmemStore bool
	// APIListener replaces listening on cfg.APIAddr; its address is the one
	// registered for the node.
	APIListener net.Listener
	// Logger receives the agent's logs (slog.Default when nil).
	Logger *slog.Logger
	// RaftLogOutput receives hashicorp/raft's own log (stderr when nil).
	RaftLogOutput io.Writer
	// Dialer replaces the dialer of agent-to-agent gRPC connections (lease
	// renewals, forwarding); tests use it to cut links.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// LeaseFilter, when set, drops lease datagrams from one node to another
	// when it returns true (tests use it to cut links).
	LeaseFilter func(from, to string) bool
	// VIPKernel and VIPAnnouncer replace netlink and the raw sockets of the
	// VIP manager (tests use vip/viptest fakes).
	VIPKernel    vip.Kernel
	VIPAnnouncer vip.Announcer
	// ServiceActuator replaces agent/service's actuators (tests).
	ServiceActuator func(role string, c service.Config) (service.Actuator, error)
	// SnapshotThreshold and TrailingLogs override Raft's defaults (tests use
	// small values to force snapshots and install-snapshot catch-up).
	SnapshotThreshold uint64
	TrailingLogs      uint64
}

func (o Options) raftLogOutput() io.Writer {
	if o.RaftLogOutput != nil {
		return o.RaftLogOutput
	}
	return os.Stderr
}

// raftLogLevel keeps hashicorp/raft's chatty info logs out unless debugging.
func (o Options) raftLogLevel(level string) string {
	if level == "debug" {
		return "debug"
	}
	return "warn"
}

// Agent is one running node. Build it with New, run it with Run. Its methods
// are safe for concurrent use once Run has opened Raft.
type Agent struct {
	cfg    *config.Config
	opts   Options
	timing config.Timing
	log    *slog.Logger

	fsm          *fsm.FSM
	raft         *raft.Raft
	raftAddr     string
	apiAddr      string
	leaderCh     chan bool
	grants       *lease.Grants  // the leases this node granted (every node grants)
	holder       *lease.Holder  // this node's own quorum lease
	roleWake     chan struct{}  // pokes the release loop when the lease changes
	vipWake      chan struct{}  // pokes the VIP loop when the lease changes
	vips         *vip.Manager   // nil without a vip_interface
	phases       vipPhases      // failover phase times, for the failover event
	vipAnn       vip.Announcer  // for the non-holders' conflict probes
	vipMAC       string         // this node's vip_interface MAC
	vipConflicts atomic.Int64   // foreign answers seen by conflictLoop
	checks       *checks.Runner // nil without checks
	checkWake    chan struct{}  // pokes the check loop on a transition
	services     *serviceSet    // the service roles' actuators
	serviceWake  chan struct{}  // pokes the service loop when the lease changes
	fenceUntil   atomic.Int64   // unix nanos until which the lease is left to lapse
	redis        *redisNode     // nil without a redis endpoint
	redisWake    chan struct{}  // pokes the Redis loop when the lease changes

	leaseNet  *leaseNet
	peersMu   sync.Mutex
	peersDown map[string]bool // members that did not answer the last renewal
	closers   []io.Closer
	health    *health.Server

	conns    sync.Mutex
	connPool map[string]*grpc.ClientConn

	stopping  atomic.Bool   // set when a graceful stop begins
	stopped   chan struct{} // closed when a graceful stop begins
	lastRenew atomic.Int64  // unix nanos of the renew loop's last pass (watchdog)
	ready     chan struct{}
	readyOnce sync.Once
}

// New checks the config and prepares an agent. It starts nothing.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t, err := cfg.TimingProfile()
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{
		cfg: cfg, opts: opts, timing: t,
		log:         log.With("node", cfg.NodeID),
		fsm:         fsm.New(),
		leaderCh:    make(chan bool, 1),
		holder:      lease.NewHolder(t.Lease),
		roleWake:    make(chan struct{}, 1),
		vipWake:     make(chan struct{}, 1),
		connPool:    map[string]*grpc.ClientConn{},
		ready:       make(chan struct{}),
		stopped:     make(chan struct{}),
		checkWake:   make(chan struct{}, 1),
		serviceWake: make(chan struct{}, 1),
		redisWake:   make(chan struct{}, 1),
	}
	if len(cfg.Checks) > 0 {
		r, err := checks.NewRunner(cfg.Checks, a.onCheckChange)
		if err != nil {
			return nil, &config.Error{Path: cfg.Path, Field: "checks", Msg: err.Error()}
		}
		a.checks = r
	}
	svcs, err := newServiceSet(a)
	if err != nil {
		return nil, err
	}
	a.services = svcs
	if a.redis, err = newRedisNode(a); err != nil {
		return nil, &config.Error{Path: cfg.Path, Field: "redis", Msg: err.Error()}
	}
	return a, nil
}

// NodeID returns the node's id.
func (a *Agent) NodeID() string { return a.cfg.NodeID }

// APIAddr returns the address other nodes reach the admin API at: the
// advertised one, or the one it listens on (valid once Run has started
// listening, i.e. after Ready is closed).
func (a *Agent) APIAddr() string { return a.apiAddr }

// Ready is closed once the agent has registered and caught up with the log.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

func (a *Agent) isReady() bool {
	select {
	case <-a.ready:
		return true
	default:
		return false
	}
}

// State returns the node's current replicated state.
func (a *Agent) State() *fsm.State { st, _ := a.fsm.State(); return st }

// Lease returns this node's quorum lease: its generation, and whether it
// is valid now with the end by this node's clock.
func (a *Agent) Lease() (gen uint64, valid bool, until time.Time) {
	gen, until = a.holder.Current()
	_, valid = a.holder.Valid(time.Now())
	return gen, valid, until
}

// Raft exposes the Raft node to in-process tests and the admin server.
func (a *Agent) Raft() *raft.Raft { return a.raft }

// Run runs the agent until ctx ends, then stops gracefully: STOPPING, release
// held roles, hand leadership over if it leads, stop the API, shut Raft
// down last. It returns an error if the agent could not start.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("starting", "version", Version, "profile", a.cfg.Profile, "timing", a.timing.String())
	lis := a.opts.APIListener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", a.cfg.APIAddr); err != nil {
			return fmt.Errorf("listen on api_addr %s: %w", a.cfg.APIAddr, err)
		}
	}
	a.apiAddr = lis.Addr().String()
	if a.cfg.AdvertiseAPIAddr != "" {
		a.apiAddr = a.cfg.AdvertiseAPIAddr
	}
	// A restarted node may have granted leases it no longer remembers: its
	// table says "not ended" to everything for one stretched lease.
	a.grants = lease.NewGrants(time.Now(), leaseMargin, a.timing.Lease+time.Duration(float64(a.timing.Lease)*leaseMargin))
	ln, err := a.openLeaseNet(lis.Addr().String())
	if err != nil {
		lis.Close()
		return fmt.Errorf("listen for lease renewals on udp %s: %w", lis.Addr(), err)
	}
	a.leaseNet = ln
	go ln.serve()
	a.closers = append(a.closers, ln.conn)
	if err := a.openRaft(); err != nil {
		lis.Close()
		a.closeAll()
		return err
	}

	vips, vipCleanup, err := a.newVIPManager()
	if err != nil {
		lis.Close()
		a.raft.Shutdown().Error()
		a.closeAll()
		return fmt.Errorf("vip_interface %s: %w", a.cfg.VIPInterface, err)
	}
	defer vipCleanup()
	a.vips = vips
	srv := grpc.NewServer()
	a.registerServices(srv)
	var metricsSrv *http.Server
	if a.cfg.MetricsAddr != "" {
		mlis, err := net.Listen("tcp", a.cfg.MetricsAddr)
		if err != nil {
			lis.Close()
			a.raft.Shutdown().Error()
			a.closeAll()
			return fmt.Errorf("listen on metrics_addr %s: %w", a.cfg.MetricsAddr, err)
		}
		metricsSrv = &http.Server{Handler: a.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
		go metricsSrv.Serve(mlis)
	}

	work, stopWork := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(work)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()

	coord := coordinator.New(coordinator.Config{NodeID: a.cfg.NodeID, Interval: a.timing.Renew, Settle: a.timing.Lease, Seed: a.cfg.Spec,
		Log: a.log}, raftNode{a}, a.fsm.State, a)
	g.Go(func() error { return coord.Run(gctx, a.leaderCh) })
	g.Go(func() error { a.joinLoop(gctx); return nil })
	g.Go(func() error { a.registerLoop(gctx); return nil })
	g.Go(func() error { a.renewLoop(gctx); return nil })
	g.Go(func() error { a.releaseLoop(gctx); return nil })
	g.Go(func() error { a.readyLoop(gctx); return nil })
	g.Go(func() error { a.watchdogLoop(gctx); return nil })
	g.Go(func() error { a.vipLoop(gctx); return nil })
	g.Go(func() error { a.conflictLoop(gctx); return nil })
	g.Go(func() error { a.checkLoop(gctx); return nil })
	g.Go(func() error { a.serviceLoop(gctx); return nil })
	g.Go(func() error { a.redisLoop(gctx); return nil })
	stopSentinel, err := a.startSentinel(gctx)
	if err != nil {
		a.log.Error("sentinel listener", "err", err)
		stopSentinel = func() {}
	}
	defer stopSentinel()
	defer a.services.close()
	vipCtx, stopVIPs := context.WithCancel(context.Background())
	vipDone := make(chan struct{})
	go func() {
		defer close(vipDone)
		if a.vips != nil {
			_ = a.vips.Run(vipCtx) // removes every held address when it returns
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("admin API stopped: %w", err)
	}

	a.log.Info("stopping")
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	a.stopping.Store(true)
	close(a.stopped)
	a.health.Shutdown()
	// A leader releases its roles while it still leads, so that its own
	// coordinator places them at once, then hands leadership over; handing
	// over first would leave the roles waiting for an election.
	if a.raft.State() == raft.Leader {
		held := a.State().HeldBy(a.cfg.NodeID)
		a.gracefulRelease()
		a.waitPlaced(held, 4*a.timing.Election)
		a.handOverLeadership()
	} else {
		a.gracefulRelease()
	}
	stopWork()
	_ = g.Wait()
	stopVIPs()
	<-vipDone
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		srv.Stop()
	}
	if metricsSrv != nil {
		_ = metricsSrv.Close()
	}
	if err := a.raft.Shutdown().Error(); err != nil {
		a.log.Warn("raft shutdown", "err", err)
	}
	a.closeConns()
	a.closeAll()
	a.log.Info("stopped")
	return runErr
}

func (a *Agent) closeAll() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		_ = a.closers[i].Close()
	}
	a.closers = nil
}

// gracefulRelease marks the node as leaving (so no role is given back to it)
// and commits a release of every role it holds, so the next holder takes
// over at once instead of waiting for the lease to run out (DESIGN.md §4,
// graceful paths).
func (a *Agent) gracefulRelease() {
	// Long enough for an election after a hand-over, short enough that a
	// whole cluster stopped at once does not hang its shutdown.
	deadline := time.Now().Add(4 * a.timing.Election)
	// propose retries while no leader is known: right after a leadership
	// hand-over the cluster takes an election's time to name the new one.
	propose := func(cmd fsm.Command) error {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Until(deadline))
			_, err := a.Propose(ctx, cmd)
			cancel()
			var nl *NotLeaderError
			if err == nil || !errors.As(err, &nl) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	err := propose(&fsm.Leave{Node: a.cfg.NodeID, Reason: "agent shutdown", Time: time.Now().UnixMilli()})
	var rej *fsm.RejectedError
	announced := err == nil || errors.As(err, &rej)
	// Stop acting first (stopping is set), whether or not the leave was
	// committed: the addresses go and the services stop (each within its
	// stop_timeout) before the releases that let another node take them.
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	a.dropVIPs(dctx)
	dcancel()
	a.roleTrigger()
	sctx, scancel := context.WithTimeout(context.Background(), a.services.maxStopTimeout()+time.Second)
	a.services.waitStopped(sctx)
	scancel()
	a.redis.waitFenced(time.Second)
	if !announced {
		a.log.Warn("could not announce shutdown; roles move when the lease runs out", "err", err)
		return
	}
	// A stop that failed is not released: its role moves when the lease
	// has run out, plus the stop timeout.
	st := a.State()
	for _, as := range st.HeldBy(a.cfg.NodeID) {
		if !a.services.stopped(as.Role) {
			a.log.Warn("service stop unconfirmed; not releasing its role (it moves after the lease and stop_timeout)", "role", as.Role)
			continue
		}
		if !a.redis.releasable(st, as.Role) {
			a.log.Warn("Redis not fenced; not releasing the master role (it moves when the lease runs out)", "role", as.Role)
			continue
		}
		err := propose(&fsm.Release{Role: as.Role, Node: a.cfg.NodeID, Epoch: as.Epoch,
			Reason: "agent shutdown", Time: time.Now().UnixMilli()})
		if err != nil {
			a.log.Warn("release on shutdown failed; the role moves when the lease runs out", "role", as.Role, "epoch", as.Epoch, "err", err)
			continue
		}
		a.log.Info("released role on shutdown", "role", as.Role, "epoch", as.Epoch)
	}
}

// waitPlaced waits (bounded) until each of the roles this node released has
// another holder, or can have none (no candidate).
func (a *Agent) waitPlaced(released []fsm.Assignment, limit time.Duration) {
	deadline := time.After(limit)
	for {
		st, changed := a.fsm.State()
		done := true
		for _, r := range released {
			if cur := st.Assignment(r.Role); cur.Holder == "" || cur.Holder == a.cfg.NodeID {
				done = false
			}
		}
		if done {
			return
		}
		select {
		case <-deadline:
			return
		case <-changed:
		}
	}
}

// handOverLeadership transfers leadership away before shutting down, so the
// cluster does not wait an election timeout.
func (a *Agent) handOverLeadership() {
	if a.raft.State() != raft.Leader {
		return
	}
	if err := a.raft.LeadershipTransfer().Error(); err != nil {
		a.log.Warn("leadership transfer on shutdown failed", "err", err)
		return
	}
	a.log.Info("handed leadership over on shutdown")
}

// conn returns a pooled client connection to another agent's API.
func (a *Agent) conn(addr string) (*grpc.ClientConn, error) {
	a.conns.Lock()
	defer a.conns.Unlock()
	if c, ok := a.connPool[addr]; ok {
		return c, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		// gRPC's default reconnect backoff grows to 120 s: after a partition
		// heals, lease renewals would stay cut for minutes. Retry fast.
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second, Backoff: backoff.Config{
			BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond}})}
	if a.opts.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(a.opts.Dialer))
	}
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	a.connPool[addr] = c
	return c, nil
}

func (a *Agent) closeConns() {
	a.conns.Lock()
	defer a.conns.Unlock()
	for k, c := range a.connPool {
		_ = c.Close()
		delete(a.connPool, k)
	}
}

// roleTrigger wakes the loops that act on roles (lease gained or lost).
func (a *Agent) roleTrigger() {
	for _, ch := range []chan struct{}{a.roleWake, a.vipWake, a.serviceWake, a.redisWake} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (a *Agent) markReady() {
	a.readyOnce.Do(func() {
		close(a.ready)
		a.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
			a.log.Warn("sd_notify READY", "err", err)
		} else if ok {
			a.log.Info("notified systemd: READY")
		}
		a.log.Info("ready", "api", a.apiAddr, "raft", a.raftAddr)
	})
}
