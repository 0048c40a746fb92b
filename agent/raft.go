package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/harbormaster/harbormaster/agent/leasing"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/tlsid"
)

// NotLeaderError says a write needs the leader and this node is not it.
// LeaderID is empty while there is no known leader.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string // the leader's API address, when known
	// Transferring is set on a leader that is handing leadership over.
	Transferring bool
}

func (e *NotLeaderError) Error() string {
	if e.Transferring {
		return "leadership is being handed over; retry in a moment"
	}
	if e.LeaderID == "" {
		return "no leader is known; the cluster may be electing one or have lost its quorum"
	}
	return fmt.Sprintf("not the leader; the leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// maxAppendEntries bounds the entries of one disk write and one
// AppendEntries: a plan that moves every role of a spec (at most a few
// hundred) fits in one.
const maxAppendEntries = 512

// openRaft builds the Raft node: stores under the data dir (or in memory),
// the transport, and bootstrap from the static peer list when this node has
// no state yet.
func (a *Agent) openRaft(ctx context.Context, cleanup *cleanups) error {
	cfg := a.cfg
	t := a.timing
	logger := newHclogAdapter(a.log, a.raftDemote)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = t.Heartbeat
	rc.ElectionTimeout = t.Election
	rc.LeaderLeaseTimeout = t.LeaderLease
	// Followers learn that an entry committed from the next AppendEntries.
	// Every apply on the leader is followed by a barrier entry, whose
	// AppendEntries carries that commit index at once (proposeBytes,
	// ProposeAll), so CommitTimeout, the empty AppendEntries hashicorp/raft
	// sends while the log is idle, is only the backstop: at the heartbeat
	// timeout rather than raft's 50 ms an idle cluster makes five times
	// fewer of those round trips (docs/chaos.md, "Idle cost").
	rc.CommitTimeout = t.Heartbeat
	// Raft's legacy metrics repeat every per-peer timer under a name with
	// the peer's id appended; the labelled ones (peer_id) carry the same.
	rc.NoLegacyTelemetry = true
	// A plan's commands (ProposeAll: one per role a failover moves) reach
	// the leader's loop one Apply at a time; with raft's unbuffered apply
	// channel its group commit found at most one or two waiting, so every
	// command was a disk write and a replication round of its own: 160
	// assignments committed over half a second, and the new holders took
	// their roles in waves. Buffered, a plan is written and sent as one
	// batch of up to MaxAppendEntries.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = maxAppendEntries
	rc.Logger = logger
	rc.NotifyCh = a.leaderCh
	if a.opts.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = a.opts.SnapshotThreshold
		rc.SnapshotInterval = 50 * time.Millisecond
	}
	if a.opts.TrailingLogs > 0 {
		rc.TrailingLogs = a.opts.TrailingLogs
	}

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if a.opts.InmemStore {
		s := raft.NewInmemStore()
		logs, stable, snaps = s, s, &memSnaps{}
	} else {
		if err := prepareDataDir(cfg.DataDir); err != nil {
			return err
		}
		path := filepath.Join(cfg.DataDir, "raft.db")
		// A damaged file may panic or fault inside bbolt: openGuarded
		// turns that into a StoreError (exit code 5), never a crash.
		err := openGuarded(path, func() error {
			bolt, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: 2 * time.Second}})
			if errors.Is(err, bbolt.ErrTimeout) {
				return fmt.Errorf("open %s: the data dir is in use by another agent", path)
			}
			if err != nil {
				return &StoreError{Path: path, Err: err}
			}
			cleanup.push(func() { _ = bolt.Close() })
			cache, err := raft.NewLogCache(512, bolt)
			if err != nil {
				return &StoreError{Path: path, Err: err}
			}
			logs, stable = cache, bolt
			if _, err := logs.LastIndex(); err != nil {
				return &StoreError{Path: path, Err: err}
			}
			return nil
		})
		if err != nil {
			return err
		}
		fss, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 3, logger)
		if err != nil {
			return fmt.Errorf("open snapshot store in %s: %w", cfg.DataDir, err)
		}
		snaps = fss
	}
	a.faults = &storeFaults{on: a.onStoreFault, mono: a.clock.Mono}
	logs = guardedLogs{logs, a.faults, a.opts.StoreWriteErr}
	stable = guardedStable{stable, a.faults, a.opts.StoreWriteErr}
	snaps = guardedSnaps{snaps, a.faults}

	boot, err := nextLeaseBoot(stable, time.Now())
	if err != nil {
		return err
	}
	a.leaseBoot = boot
	a.nextBoot = func() (uint64, error) { return nextLeaseBoot(stable, time.Now()) }

	var has bool
	if err := openGuarded(filepath.Join(cfg.DataDir, "raft.db"), func() (err error) {
		if has, err = raft.HasExistingState(logs, stable, snaps); err != nil {
			return &StoreError{Path: filepath.Join(cfg.DataDir, "raft.db"), Err: err}
		}
		return nil
	}); err != nil {
		return err
	}
	a.startedWithState.Store(has)
	if !a.opts.InmemStore {
		id, err := readClusterID(cfg.DataDir)
		if err != nil {
			return err
		}
		if id != "" {
			a.clusterID.Store(&id)
		}
	}

	trans := a.opts.Transport
	var stream *tlsStream
	if trans == nil {
		adv, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
		if err != nil {
			return fmt.Errorf("resolve raft_addr %s: %w", cfg.RaftAddr, err)
		}
		lis, err := net.Listen("tcp", cfg.RaftAddr)
		if err != nil {
			return fmt.Errorf("listen on raft_addr %s: %w", cfg.RaftAddr, err)
		}
		var server, client *tls.Config
		if a.tls != nil {
			server, client = a.tls.ServerConfig(tlsid.AnyNode), a.tls.ClientConfig(tlsid.AnyNode)
		}
		stream = newTLSStream(lis, adv, server, client, a.localHello, a.log.With("component", "raft-transport").Warn)
		nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: stream, MaxPool: 3, Timeout: 5 * time.Second, Logger: logger})
		cleanup.push(func() { _ = nt.Close() })
		trans = nt
	}
	a.raftAddr = string(trans.LocalAddr())

	if len(cfg.Bootstrap) > 0 && !has {
		boot := true
		if stream != nil && !a.opts.BootstrapNewCluster {
			if boot, err = a.awaitBootstrapPeers(ctx, stream); err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			}
		}
		if boot {
			var conf raft.Configuration
			for _, p := range cfg.Bootstrap {
				addr := raft.ServerAddress(p.RaftAddr)
				if p.ID == cfg.NodeID {
					addr = trans.LocalAddr()
				}
				conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: addr, Suffrage: raft.Voter})
			}
			if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, conf); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				return fmt.Errorf("bootstrap: %w", err)
			}
			a.startedWithState.Store(true)
			a.log.Info("bootstrapped a new cluster", "peers", len(conf.Servers), "forced", a.opts.BootstrapNewCluster)
		}
	}

	r, err := raft.NewRaft(rc, a.fsm, logs, stable, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	a.raft = r
	cleanup.push(func() { _ = r.Shutdown().Error() }) // a no-op once Run shut it down
	return nil
}

// prepareDataDir creates the data dir, or tightens an existing one, to
// 0700: the Raft log and the snapshots in it hold the cluster lease key,
// and hashicorp/raft writes snapshot files 0644.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: make it private (0700): %w", dir, err)
	}
	return nil
}

// leaseBootKey is where the stable store keeps the lease boot counter.
var leaseBootKey = []byte("harbormaster_lease_boot")

// leaseBootEpoch is the zero of the boot counter's clock floor.
var leaseBootEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// nextLeaseBoot increases the boot counter in the stable store and returns
// it: the high bits of this run's lease sequence numbers, which the other
// nodes' replay windows require to increase across restarts. It is at
// least the seconds since 2020, so that a node whose data dir was wiped
// (the counter lost) still starts above its old sequence numbers unless it
// restarted more than once a second on average or its clock went back; a
// lease key rotation clears the windows otherwise. (Boots in hours, before,
// locked a node out for up to an hour when it was wiped after two restarts
// within the hour: found by the chaos matrix, seed 43000.)
func nextLeaseBoot(stable raft.StableStore, now time.Time) (uint64, error) {
	prev, err := stable.GetUint64(leaseBootKey)
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, fmt.Errorf("read the lease boot counter: %w", err)
	}
	boot := prev + 1
	if sec := now.Sub(leaseBootEpoch) / time.Second; sec > 0 {
		boot = max(boot, uint64(sec))
	}
	if boot > leasing.MaxBoot {
		return 0, fmt.Errorf("lease boot counter %d exceeds %d; rotate the lease key and reset %s in the stable store", boot, uint64(leasing.MaxBoot), leaseBootKey)
	}
	if err := stable.SetUint64(leaseBootKey, boot); err != nil {
		return 0, fmt.Errorf("write the lease boot counter: %w", err)
	}
	return boot, nil
}

// raftNode adapts the agent to coordinator.Raft.
type raftNode struct{ a *Agent }

func (n raftNode) Barrier(ctx context.Context) error {
	return n.a.raft.Barrier(timeoutOf(ctx, 5*time.Second)).Error()
}

// Propose applies the coordinator's commands on this node only: a node that
// lost leadership must not have its plan, made on its view of the state,
// committed by the next leader.
func (n raftNode) Propose(ctx context.Context, cmd fsm.Command) (uint64, error) {
	b, err := fsm.Encode(cmd)
	if err != nil {
		return 0, err
	}
	if n.a.raft.State() != raft.Leader {
		return 0, n.a.notLeader()
	}
	return n.a.proposeBytes(ctx, b)
}

// ProposeAll implements coordinator.BatchRaft: it applies cmds in order on
// this (leader) node without waiting for one before appending the next, so
// a plan of k commands costs about one commit instead of k (a node leaving
// with four roles: measured in rolling-upgrade). Each command is still
// validated by the state when applied, in log order, exactly as if
// proposed one after another from the same plan. errs[i] is cmds[i]'s
// error: its rejection by the state, or *NotLeaderError when leadership
// was lost (the rest are then not appended).
func (n raftNode) ProposeAll(ctx context.Context, cmds []fsm.Command) []error {
	errs := make([]error, len(cmds))
	futures := make([]raft.ApplyFuture, len(cmds))
	timeout := timeoutOf(ctx, 5*time.Second)
	for i, cmd := range cmds {
		b, err := fsm.Encode(cmd)
		if err != nil {
			errs[i] = err
			continue
		}
		if n.a.raft.State() != raft.Leader {
			errs[i] = n.a.notLeader()
			continue
		}
		futures[i] = n.a.raft.Apply(b, timeout)
	}
	applied := false
	for i, f := range futures {
		if f == nil {
			continue
		}
		if err := f.Error(); err != nil {
			errs[i] = n.a.applyError(err)
			continue
		}
		applied = true
		if err, ok := f.Response().(error); ok && err != nil {
			errs[i] = err
		}
	}
	if applied {
		n.a.raft.Barrier(time.Second) // as proposeBytes: carries the commit index to the followers at once
	}
	return errs
}

func (n raftNode) Term() uint64 { return n.a.raft.CurrentTerm() }

func (n raftNode) Members() ([]string, error) {
	f := n.a.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	return ids, nil
}

func timeoutOf(ctx context.Context, def time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return def
}

// Propose puts a command through the log and returns its index once it is
// applied here. On a follower it forwards the command to the leader. It
// returns a *fsm.RejectedError when the state refused the command, a
// *NotLeaderError when no leader could take it, and a validation error
// (naming the field) before anything is sent.
func (a *Agent) Propose(ctx context.Context, cmd fsm.Command) (uint64, error) {
	b, err := fsm.Encode(cmd)
	if err != nil {
		return 0, err
	}
	return a.proposeBytes(ctx, b)
}

func (a *Agent) proposeBytes(ctx context.Context, b []byte) (uint64, error) {
	if a.raft.State() != raft.Leader {
		return a.forwardPropose(ctx, b)
	}
	f := a.raft.Apply(b, timeoutOf(ctx, 5*time.Second))
	if err := f.Error(); err != nil {
		return 0, a.applyError(err)
	}
	// Followers learn that an entry committed only with the next
	// AppendEntries, which hashicorp/raft sends after CommitTimeout (the
	// heartbeat timeout) when the log is idle. A barrier entry right behind
	// the command carries its commit index to every follower at once (a
	// placement decision to its new holder, a forwarded command back to the
	// node that sent it); nothing waits for the barrier itself.
	a.raft.Barrier(time.Second)
	if err, ok := f.Response().(error); ok && err != nil {
		return f.Index(), err
	}
	return f.Index(), nil
}

// applyError words the error of a Raft apply: a *NotLeaderError when this
// node is not, or stopped being, the leader.
func (a *Agent) applyError(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return a.notLeader()
	}
	return fmt.Errorf("raft apply: %w", err)
}

func (a *Agent) notLeader() *NotLeaderError {
	_, id := a.raft.LeaderWithID()
	if string(id) == a.cfg.NodeID {
		return &NotLeaderError{Transferring: true}
	}
	e := &NotLeaderError{LeaderID: string(id)}
	if id != "" {
		st, _ := a.fsm.State()
		if n, ok := st.Nodes[string(id)]; ok {
			e.LeaderAddr = n.APIAddr
		}
	}
	return e
}

// leaderAPI returns the leader's API address, or a *NotLeaderError when it is
// unknown (no leader, or the leader has not registered yet).
func (a *Agent) leaderAPI() (string, error) {
	e := a.notLeader()
	if e.LeaderAddr == "" {
		if e.LeaderID != "" {
			return "", fmt.Errorf("leader %s has not registered its API address yet: %w", e.LeaderID, &NotLeaderError{})
		}
		return "", e
	}
	return e.LeaderAddr, nil
}

var _ io.Closer = (*raftboltdb.BoltStore)(nil)
