// Package agent is the composition root of one harbormaster node: it wires
// the config, the Raft node (transport, bolt stores, snapshots), the fsm, the
// leader-only coordinator, the gRPC admin server, the node's own loops (lease
// renewal, registration, releases, joining, checks), the actuators of its
// role types (agent/vipact, agent/serviceact, agent/redisact, behind
// agent/act's interface) and its lifecycle (sd_notify, graceful stop).
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/checks"
	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/agent/leasing"
	"github.com/harbormaster/harbormaster/agent/sentinel"
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/agent/serviceact"
	"github.com/harbormaster/harbormaster/agent/vipact"
	"github.com/harbormaster/harbormaster/coordinator"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/clock"
	"github.com/harbormaster/harbormaster/internal/tlsid"
	"github.com/harbormaster/harbormaster/internal/version"
	"github.com/harbormaster/harbormaster/spec"
	"github.com/harbormaster/harbormaster/vip"
)

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
	// LogLevel, when set, is the level of Logger's handler: Reload sets it
	// to a reloaded config's log_level.
	LogLevel *slog.LevelVar
	// LogHandler, when set, is Logger's handler: Reload sets its format to
	// a reloaded config's log_format (its level is LogLevel's).
	LogHandler *LogHandler
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
	// VIPFence replaces the nftables fence (tests); with VIPKernel set and
	// no VIPFence, the agent runs without one.
	VIPFence vip.Fence
	// ServiceActuator replaces agent/service's actuators (tests).
	ServiceActuator func(role string, c service.Config) (service.Actuator, error)
	// ServiceGuardBin is the binary that runs the guards of running
	// services and of the Redis (`internal service-guard`,
	// agent/serviceguard); default: the agent's own (os.Executable), or
	// none for services with ServiceActuator.
	ServiceGuardBin string
	// NoRedisGuard runs the Redis actuator without its guard process
	// (tests with in-process agents, whose binary has no guard command).
	NoRedisGuard bool
	// StoreWriteErr, when set, is asked before every write to the Raft
	// log and stable stores; an error fails the write (tests: a full disk).
	StoreWriteErr func() error
	// BootstrapNewCluster bootstraps the bootstrap list even when a peer
	// does not answer or holds another history (--bootstrap-new-cluster).
	BootstrapNewCluster bool
	// SnapshotThreshold and TrailingLogs override Raft's defaults (tests use
	// small values to force snapshots and install-snapshot catch-up).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// Clock replaces the machine's clocks for the self-fence, the
	// watchdog's sign of life and the coordinator (tests step the wall
	// clock with internal/clock/clocktest).
	Clock clock.Clock
}

// Agent is one running node. Build it with New, run it with Run. Its methods
// are safe for concurrent use once Run has opened Raft.
type Agent struct {
	cfg    *config.Config
	opts   Options
	timing config.Timing
	log    *slog.Logger

	fsm      *fsm.FSM
	raft     *raft.Raft
	raftAddr string
	apiAddr  string
	leaderCh chan bool
	leases   *leasing.Node // this node's quorum lease and the leases it grants
	events   *recorder
	health   *health.Server
	conns    connPool
	tls      *tlsid.Store // the node's identity; nil on an insecure agent
	// clusterID is the id of the history this node belongs to (nil or ""
	// until known); startedWithState says the stores held Raft state.
	clusterID        atomic.Pointer[string]
	startedWithState atomic.Bool
	// faults records the Raft stores' write failures (store.go).
	faults      *storeFaults
	faultLogged atomic.Bool
	faultFenced atomic.Int64 // clock.Mono reading (+1) of the last fence for a store fault

	// obs are the event metrics (obs.go).
	obs *obsMetrics

	// leaseBoot is this run's lease boot counter (nextLeaseBoot), and
	// nextBoot takes the next one (when a boot's sequence numbers run out).
	leaseBoot uint64
	nextBoot  func() (uint64, error)

	// The actuators, in the order a graceful stop quiesces them (VIP,
	// services, Redis); vips and services are also kept typed for the
	// re-announcements and the metrics (nil when the node has none).
	actuators []act.Actuator
	vips      *vipact.Actuator
	vipMAC    string // the vip_interface's MAC, registered for conflict probes
	services  *serviceact.Actuator

	checks    *checks.Runner // runs even without checks: a reload may add some
	checkWake chan struct{}  // pokes the check loop on a transition
	// checkNames are the names of the checks run now, registered by the
	// register loop (registerWake pokes it after a reload).
	checkNames   atomic.Pointer[[]string]
	registerWake chan struct{}
	// reloadMu serializes Reload; running is the config last applied (the
	// start one, then each reloaded one).
	reloadMu    sync.Mutex
	running     *config.Config
	releaseWake chan struct{}  // pokes the release loop (authority changed, an actuator let go)
	clock       clock.Clock    // Options.Clock or the machine's
	fenceUntil  atomic.Int64   // clock.Mono (ns) until which the lease is left to lapse; never a wall time
	quorum      *quorumTracker // whether the node has quorum, fed by quorumLoop
	timingWarn  *timingWarn    // the timing warning, fed by the lease renewals
	store       *storeHealth   // whether the data dir is writable (/healthz)

	stopping  atomic.Bool   // set when a graceful stop begins
	stopped   chan struct{} // closed when a graceful stop begins
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
		log:          log.With("node", cfg.NodeID),
		fsm:          fsm.New(),
		leaderCh:     make(chan bool, 1),
		releaseWake:  make(chan struct{}, 1),
		checkWake:    make(chan struct{}, 1),
		registerWake: make(chan struct{}, 1),
		running:      cfg,
		ready:        make(chan struct{}),
		stopped:      make(chan struct{}),
		conns:        connPool{dialer: opts.Dialer},
		clock:        opts.Clock,
	}
	if a.clock == nil {
		a.clock = clock.System()
	}
	if cfg.TLS != nil {
		st, err := tlsid.Load(tlsid.Files{CA: cfg.TLS.CAFile, Cert: cfg.TLS.CertFile, Key: cfg.TLS.KeyFile}, func(id tlsid.Identity) error {
			if id.Kind != tlsid.Node || id.Name != cfg.NodeID {
				return fmt.Errorf("the certificate is for %s, this node is %s; make one with harbormaster tls cert create --node %s", id, cfg.NodeID, cfg.NodeID)
			}
			return nil
		})
		if err != nil {
			return nil, &config.Error{Path: cfg.Path, Field: "tls", Msg: err.Error()}
		}
		a.tls = st
		a.conns.tls = st
	}
	a.conns.clusterID = a.currentClusterID
	a.events = newRecorder(a.Propose, a.log)
	a.quorum = newQuorumTracker(time.Now(), quorumAfter(t), 2*quorumAfter(t))
	a.store = newStoreHealth(cfg.DataDir, a.StoreFault)
	r, err := checks.NewRunner(cfg.Checks, a.onCheckChange)
	if err != nil {
		return nil, &config.Error{Path: cfg.Path, Field: "checks", Msg: err.Error()}
	}
	a.checks = r
	a.obs = newObsMetrics(cfg.NodeID, t.Lease)
	a.timingWarn = &timingWarn{profile: cfg.Profile, lease: t.Lease, log: a.log, record: a.events.Record, node: cfg.NodeID,
		gauge: a.obs.timingWarning.Set, watch: leasing.NewSlowWatch(t.Lease)}
	if _, err := raftMetricsSink(); err != nil { // before Raft starts emitting
		a.log.Warn("Raft internals not exported", "err", err)
	}
	r.OnProbe = a.obs.probe
	a.checkNames.Store(new(cfg.CheckNames()))
	if err := a.buildActuators(); err != nil {
		return nil, err
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
	return a.leases.Lease(time.Now())
}

// Raft exposes the Raft node to in-process tests and the admin server.
func (a *Agent) Raft() *raft.Raft { return a.raft }

// Run runs the agent until ctx ends, then stops gracefully. It has three
// phases:
//   - open: listen on the API (TCP) and lease (UDP) ports, open Raft, the
//     VIP interface, the metrics and Sentinel listeners; any failure is
//     fatal and undoes what was opened (the cleanup stack);
//   - run: the servers and the background work (coordinator, node loops,
//     checks, actuators, event recorder), every goroutine started through a
//     tasks group; a server that fails ends the run with its error;
//   - stop: STOPPING, release held roles (a leader first waits for them to
//     be placed, then hands leadership over), stop the work and wait for
//     it, stop the servers, shut Raft down, run the cleanup stack.
//
// Run returns after every goroutine it started has returned.
func (a *Agent) Run(ctx context.Context) (err error) {
	bi := version.Get()
	a.log.Info("starting", "version", bi.Version, "commit", bi.Commit, "modified", bi.Modified, "go", bi.GoVersion,
		"profile", a.cfg.Profile, "timing", a.timing.String())
	if a.tls == nil {
		a.log.Warn("insecure: true: Raft, the API, lease renewals and metrics run without TLS or authentication; anyone who reaches these ports controls the cluster (docs/security.md)")
	} else {
		a.log.Info("mutual TLS", "identity", a.tls.Self().URI().String(), "cluster", a.tls.Cluster(),
			"expires", a.tls.NotAfter().UTC().Format(time.RFC3339))
		if left := time.Until(a.tls.NotAfter()); left < 30*24*time.Hour {
			a.log.Warn("the node certificate expires soon; make a new one and send SIGHUP", "in", left.Round(time.Hour).String())
		}
	}
	var cleanup cleanups
	defer cleanup.run()
	o, err := a.open(ctx, &cleanup)
	if err != nil {
		return err
	}

	var servers tasks
	servers.Go("admin API", func() error { return o.grpc.Serve(o.api) })
	servers.Go("lease socket", a.leases.Serve)
	if o.metrics != nil {
		servers.Go("metrics server", func() error { return ignore(o.metrics.Serve(o.metricsLis), http.ErrServerClosed) })
	}
	if o.sentinel != nil {
		servers.Go("sentinel listener", func() error { return ignore(o.sentinel.Serve(o.sentinelLis), sentinel.ErrServerClosed) })
	}

	workCtx, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	var work tasks
	coord := coordinator.New(coordinator.Config{NodeID: a.cfg.NodeID, Interval: a.timing.Renew, Quiet: a.timing.Lease, Settle: a.timing.Lease,
		Seed: a.cfg.Spec, NewLeaseKey: newLeaseSecret, NewClusterID: newClusterID, Log: a.log, Clock: a.clock,
		OnReconcile: a.obs.reconciled}, raftNode{a}, a.fsm.State, a)
	work.Go("coordinator", func() error { return coord.Run(workCtx, a.leaderCh) })
	work.Go("leader watch", func() error { a.watchLeader(workCtx.Done()); return nil })
	work.Go("event recorder", func() error { a.events.run(workCtx); return nil })
	work.Go("join loop", func() error { a.joinLoop(workCtx); return nil })
	work.Go("register loop", func() error { a.registerLoop(workCtx); return nil })
	work.Go("renew loop", func() error { a.leases.RenewLoop(workCtx); return nil })
	work.Go("release loop", func() error { a.releaseLoop(workCtx); return nil })
	work.Go("ready loop", func() error { a.readyLoop(workCtx); return nil })
	work.Go("cluster id", func() error { return a.clusterIDLoop(workCtx) })
	work.Go("watchdog loop", func() error { a.watchdogLoop(workCtx); return nil })
	work.Go("quorum loop", func() error { a.quorumLoop(workCtx); return nil })
	work.Go("check runner", func() error { a.checks.Run(workCtx); return nil })
	work.Go("check loop", func() error { a.checkLoop(workCtx); return nil })
	for _, x := range a.actuators {
		work.Go(string(x.Type())+" actuator", func() error { return x.Run(workCtx) })
	}
	if o.sentinel != nil {
		work.Go("sentinel watch", func() error { a.watchSentinel(workCtx, o.sentinel); return nil })
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-servers.Failed():
	case runErr = <-work.Failed():
	}
	if runErr != nil {
		a.log.Error("stopping after a failure", "err", runErr)
	}
	a.stop()
	stopWork()
	work.Wait()
	a.stopServers(o)
	servers.Wait()
	if err := a.raft.Shutdown().Error(); err != nil {
		a.log.Warn("raft shutdown", "err", err)
	}
	a.conns.close()
	a.log.Info("stopped")
	return runErr
}

// opened is what the open phase made for the run phase.
type opened struct {
	api         net.Listener
	grpc        *grpc.Server
	metrics     *http.Server // nil without metrics_addr
	metricsLis  net.Listener
	sentinel    *sentinel.Server // nil without a sentinel section
	sentinelLis net.Listener
}

// open is Run's first phase: everything that can fail at start, each undo
// pushed on cleanup.
func (a *Agent) open(ctx context.Context, cleanup *cleanups) (*opened, error) {
	o := &opened{api: a.opts.APIListener}
	if o.api == nil {
		lis, err := net.Listen("tcp", a.cfg.APIAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on api_addr %s: %w", a.cfg.APIAddr, err)
		}
		o.api = lis
	}
	cleanup.push(func() { _ = o.api.Close() })
	a.apiAddr = o.api.Addr().String()
	if a.cfg.AdvertiseAPIAddr != "" {
		a.apiAddr = a.cfg.AdvertiseAPIAddr
	}
	pc, err := net.ListenPacket("udp", o.api.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("listen for lease renewals on udp %s: %w", o.api.Addr(), err)
	}
	cleanup.push(func() { _ = pc.Close() })
	if err := a.openRaft(ctx, cleanup); err != nil {
		return nil, err
	}
	a.leases = leasing.New(leasing.Config{Self: a.cfg.NodeID, Lease: a.timing.Lease, Renew: a.timing.Renew,
		Members: a.raftMembers, State: a.State, Conn: a.conns.get, Redial: a.conns.redial, Fenced: a.fenced, Clock: a.clock, OnRenew: a.wakeActuators,
		OnRTT: func(d time.Duration) { a.obs.renewRTT.Observe(d.Seconds()) }, OnLapse: a.obs.lapses.Inc,
		OnAge:      func(d time.Duration) { a.obs.renewAge.Observe(d.Seconds()); a.timingWarn.observe(time.Now(), d) },
		OnPeerBack: a.reannounce, Filter: a.opts.LeaseFilter, Boot: a.leaseBoot, NextBoot: a.nextBoot, Log: a.log.With("component", "lease")}, pc)
	vipCleanup, err := a.openVIPs()
	if err != nil {
		return nil, fmt.Errorf("vip_interface %s: %w", a.cfg.VIPInterface, err)
	}
	cleanup.push(vipCleanup)
	o.api = a.limitAPI(o.api)
	o.grpc = grpc.NewServer(a.grpcServerOptions()...)
	a.registerServices(o.grpc)
	if a.cfg.MetricsAddr != "" {
		mlis, err := net.Listen("tcp", a.cfg.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on metrics_addr %s: %w", a.cfg.MetricsAddr, err)
		}
		cleanup.push(func() { _ = mlis.Close() })
		o.metricsLis = mlis
		o.metrics = &http.Server{Handler: a.metricsHandler(), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
		if a.metricsTLS() {
			o.metricsLis = tls.NewListener(mlis, a.tls.ServerConfig(tlsid.AnyIdentity))
		}
	}
	if o.sentinel, o.sentinelLis, err = a.openSentinel(); err != nil {
		return nil, err
	}
	if o.sentinel != nil {
		cleanup.push(func() { _ = o.sentinel.Close() })
	}
	return o, nil
}

// stop is the start of Run's last phase, while the work still runs: tell
// systemd and the API clients, then release the held roles. A leader
// releases them while it still leads, so that its own coordinator places
// them at once, then hands leadership over; handing over first would leave
// the roles waiting for an election.
func (a *Agent) stop() {
	a.log.Info("stopping")
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	a.stopping.Store(true)
	close(a.stopped)
	a.health.Shutdown()
	// The actuators are not woken here: gracefulRelease quiesces them once
	// the leave is proposed. Woken now, the VIP would go before the leave
	// commits, and the next holder would wait that much longer for it.
	if a.raft.State() == raft.Leader {
		held := a.State().HeldBy(a.cfg.NodeID)
		a.gracefulRelease()
		a.waitPlaced(held, 4*a.timing.Election)
		a.handOverLeadership()
	} else {
		a.gracefulRelease()
	}
}

// stopServers stops the admin API (gracefully, for at most 2 s), the
// metrics and Sentinel listeners and the lease socket.
func (a *Agent) stopServers(o *opened) {
	stopped := make(chan struct{})
	go func() { o.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		o.grpc.Stop()
		<-stopped
	}
	if o.metrics != nil {
		_ = o.metrics.Close()
	}
	if o.sentinel != nil {
		_ = o.sentinel.Close()
	}
	a.leases.Close()
}

// gracefulRelease marks the node as leaving (so no role is given back to it)
// and commits a release of every role it holds once its actuator has let
// go, so the next holder takes over at once instead of waiting for the
// lease to run out (DESIGN.md §4, graceful paths).
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
	// Each actuator stops acting (stopping is set), whether or not the leave
	// was committed: the addresses go, the services stop (each within its
	// stop_timeout) and Redis is fenced; then the roles of its type are
	// released, so another node may take them. The actuators do this side
	// by side: a VIP's release does not wait for a service's stop hook or
	// for Redis's replicas to catch up (the rolling-upgrade scenario
	// measured 80-171 ms of VIP outage on a node that held all three, when
	// every release waited for every actuator). Each actuator bounds its
	// own wait.
	release := func(as fsm.Assignment) {
		st := a.State()
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ok := a.releasable(rctx, st, as.Role)
		cancel()
		// A role whose actuator could not confirm it let go (a failed
		// service stop, an unfenced Redis) is not released: it moves when
		// the lease has run out (plus a service's stop timeout).
		if !ok {
			a.log.Warn("not releasing a role its actuator has not let go of; it moves when the lease runs out", "role", as.Role)
			return
		}
		err := propose(&fsm.Release{Role: as.Role, Node: a.cfg.NodeID, Epoch: as.Epoch,
			Reason: "agent shutdown", Cause: fsm.CauseShutdown, Time: time.Now().UnixMilli()})
		if err != nil {
			a.log.Warn("release on shutdown failed; the role moves when the lease runs out", "role", as.Role, "epoch", as.Epoch, "err", err)
			return
		}
		a.log.Info("released role on shutdown", "role", as.Role, "epoch", as.Epoch)
	}
	st := a.State()
	acts := map[spec.RoleType]bool{}
	for _, x := range a.actuators {
		acts[x.Type()] = true
	}
	// byType are the held roles an actuator here lets go of; later the
	// others (no longer in the spec, or of a type no actuator here acts
	// for, as marker roles), released once every actuator has let go.
	byType := map[spec.RoleType][]fsm.Assignment{}
	var later []fsm.Assignment
	for _, as := range st.HeldBy(a.cfg.NodeID) {
		if r, ok := st.Spec.Role(as.Role); ok && acts[r.Type] {
			byType[r.Type] = append(byType[r.Type], as)
		} else {
			later = append(later, as)
		}
	}
	var wg sync.WaitGroup
	for _, x := range a.actuators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x.Quiesce(context.Background())
			if !announced {
				return
			}
			var rw sync.WaitGroup
			for _, as := range byType[x.Type()] {
				rw.Add(1)
				go func() { defer rw.Done(); release(as) }()
			}
			rw.Wait()
		}()
	}
	wg.Wait()
	if !announced {
		a.log.Warn("could not announce shutdown; roles move when the lease runs out", "err", err)
		return
	}
	for _, as := range later {
		release(as)
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

// connPool keeps one client connection per agent API address.
type connPool struct {
	dialer func(ctx context.Context, addr string) (net.Conn, error) // Options.Dialer (tests)
	tls    *tlsid.Store                                             // nil: plain text
	// clusterID, when set, names this node's history on every call
	// (clusterIDKey), so a member of another history is refused.
	clusterID func() string
	mu        sync.Mutex
	conns     map[string]*grpc.ClientConn
}

// get returns a pooled client connection to another agent's API.
func (p *connPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	creds := insecure.NewCredentials()
	if p.tls != nil {
		creds = credentials.NewTLS(p.tls.ClientConfig(tlsid.AnyNode))
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		// gRPC's default reconnect backoff grows to 120 s: after a partition
		// heals, lease renewals would stay cut for minutes. Retry fast.
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second, Backoff: backoff.Config{
			BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond}})}
	if p.dialer != nil {
		opts = append(opts, grpc.WithContextDialer(p.dialer))
	}
	if p.clusterID != nil {
		opts = append(opts, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, o ...grpc.CallOption) error {
			return inv(withClusterID(ctx, p.clusterID()), method, req, reply, cc, o...)
		}), grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, st grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
			return st(withClusterID(ctx, p.clusterID()), desc, cc, method, o...)
		}))
	}
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if p.conns == nil {
		p.conns = map[string]*grpc.ClientConn{}
	}
	p.conns[addr] = c
	return c, nil
}

// redial closes c, the pooled connection to addr, and forgets it, so that
// the next get dials a new one (not one another caller got meanwhile).
func (p *connPool) redial(addr string, c *grpc.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[addr] == c {
		delete(p.conns, addr)
		_ = c.Close()
	}
}

func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.conns {
		_ = c.Close()
		delete(p.conns, k)
	}
}
