package redisctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// EpochKeyPrefix starts the key in which Promote records a role's fencing
// epoch: harbormaster:epoch:<role>, a decimal string.
const EpochKeyPrefix = "harbormaster:epoch:"

// EpochKey returns the key holding role's epoch.
func EpochKey(role string) string { return EpochKeyPrefix + role }

// The write fence is min-replicas-to-write raised by fenceBase: a value no
// master can satisfy. The operator's own value is kept below it, so Unpause
// restores it exactly, even from another agent process.
const (
	fenceBase   = 1 << 30
	paramMinRep = "min-replicas-to-write"
	paramMaxLag = "min-replicas-max-lag"
	// fenceMaxLag replaces a min-replicas-max-lag of 0, which would turn
	// the min-replicas check off (and the fence with it); it is Redis's
	// default.
	fenceMaxLag = 10
)

// ACLRules are the ACL rules a Redis user needs for every call of this
// package, and no more (tested):
//
//	ACL SETUSER harbormaster on >PASSWORD resetkeys ~harbormaster:* -@all +info +config|get +config|set +replicaof +client|unpause +get +set
//
// Replicas authenticate to their master with masterauth/masteruser, which
// the operator configures in redis.conf; this package does not set them.
const ACLRules = "resetkeys ~harbormaster:* -@all +info +config|get +config|set +replicaof +client|unpause +get +set"

// pollInterval is how often WaitCaughtUp reads INFO.
const pollInterval = 20 * time.Millisecond

// StaleEpochError is Promote's refusal of an epoch lower than the one this
// Redis's data already records for the role (S2: actuators refuse a lower
// epoch).
type StaleEpochError struct {
	Role   string
	Stored uint64 // the epoch in the data
	Given  uint64 // the epoch Promote was called with
}

func (e *StaleEpochError) Error() string {
	return fmt.Sprintf("epoch %d for %s is lower than the %d recorded in %s; a newer holder wrote this data (if the cluster was rebuilt and epochs restarted, DEL the key)",
		e.Given, e.Role, e.Stored, EpochKey(e.Role))
}

// Replication reads INFO replication, INFO server and the state of the
// write fence, in one round trip.
func (c *Client) Replication(ctx context.Context) (Replication, error) {
	replies, err := c.exec(ctx, "INFO replication", []string{"INFO", "replication"}, []string{"INFO", "server"},
		[]string{"INFO", "persistence"}, []string{"INFO", "keyspace"}, []string{"CONFIG", "GET", paramMinRep})
	if err != nil {
		return Replication{}, err
	}
	var text strings.Builder
	for i, name := range []string{"INFO replication", "INFO server", "INFO persistence", "INFO keyspace"} {
		s, err := asString(replies[i])
		if err != nil {
			return Replication{}, fmt.Errorf("%s on %s: %w", name, c.addr, err)
		}
		text.WriteString(s)
		text.WriteString("\n")
	}
	r, err := parseReplication(text.String())
	if err != nil {
		return r, fmt.Errorf("%s on %s: %w", "INFO replication", c.addr, err)
	}
	minRep, err := asConfigInt(replies[4], paramMinRep)
	if err != nil {
		return r, fmt.Errorf("CONFIG GET %s on %s: %w", paramMinRep, c.addr, err)
	}
	r.Paused = minRep >= fenceBase
	return r, nil
}

// Epoch returns the epoch recorded for role (see Promote); ok is false when
// the key is absent. It works on a master and on a replica.
func (c *Client) Epoch(ctx context.Context, role string) (epoch uint64, ok bool, err error) {
	v, err := c.do(ctx, "GET", EpochKey(role))
	if err != nil || v == nil {
		return 0, false, err
	}
	s, err := asString(v)
	if err != nil {
		return 0, false, fmt.Errorf("GET %s on %s: %w", EpochKey(role), c.addr, err)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("GET %s on %s: %q is not an epoch", EpochKey(role), c.addr, clip(s, 32))
	}
	return n, true, nil
}

// Promote makes this Redis the master of role at epoch: REPLICAOF NO ONE
// (skipped on a master), then lifts the write fence and any CLIENT PAUSE
// (as Unpause), then records the epoch: SET harbormaster:epoch:<role>
// <epoch>, skipped when it is already that value. The last two go in one
// round trip; when the operator's own min-replicas-to-write is above 0 it
// is set to 0 around the SET, which it would otherwise refuse until
// enough replicas follow the new master.
//
// The key is an ordinary string key, so it replicates: a client reads it
// on the master or any replica (GET harbormaster:epoch:redis-master) and
// may fence its own writes with it, e.g. in a script that writes only if
// the key still holds the epoch it knows.
//
// Before anything, Promote reads the key and refuses (a *StaleEpochError,
// nothing changed) an epoch lower than the one recorded. Idempotent; only
// the node's own agent calls it, for its own Redis.
func (c *Client) Promote(ctx context.Context, role string, epoch uint64) error {
	return c.PromoteWith(ctx, role, epoch, PromoteOptions{})
}

// PromoteOptions are the settings Promote owns on the master it makes.
type PromoteOptions struct {
	// MinSyncedReplicas, when above 0, becomes the master's own
	// min-replicas-to-write (the spec's min_synced_replicas): it takes
	// writes only while that many replicas acknowledged within
	// min-replicas-max-lag. 0 keeps the operator's value.
	MinSyncedReplicas int
}

// PromoteWith is Promote with the settings of opts. Before REPLICAOF NO ONE
// it sets the two settings of full syncs it owns on a master:
//   - repl-diskless-sync no: after a disk-based transfer Redis streams to
//     the replica at once; after a diskless one (Redis 7's default) only
//     from the replica's next REPLCONF ACK, up to a second later, while it
//     already counts the replica as online and good. Writes acknowledged in
//     that second are on no replica (TestReplicaStreamsAsSoonAsItIsOnline).
//   - repl-diskless-sync-delay 0, in case an operator turns diskless sync
//     back on: Redis 7's default waits 5 s before a first full sync, and a
//     replica that has not synced cannot be promoted without losing data.
func (c *Client) PromoteWith(ctx context.Context, role string, epoch uint64, opts PromoteOptions) error {
	if role == "" {
		return errors.New("promote: empty role name")
	}
	stored, ok, err := c.Epoch(ctx, role)
	if err != nil {
		return err
	}
	if ok && stored > epoch {
		return fmt.Errorf("promote %s: %w", c.addr, &StaleEpochError{Role: role, Stored: stored, Given: epoch})
	}
	r, err := c.Replication(ctx)
	if err != nil {
		return err
	}
	// One parameter per CONFIG SET: Redis 6.2 takes no more.
	for _, kv := range [][2]string{{"repl-diskless-sync", "no"}, {"repl-diskless-sync-delay", "0"}} {
		if err := c.doOK(ctx, "CONFIG", "SET", kv[0], kv[1]); err != nil {
			return err
		}
	}
	if r.Role != "master" {
		if err := c.doOK(ctx, "REPLICAOF", "NO", "ONE"); err != nil {
			return err
		}
	}
	minRep, _, err := c.fenceParams(ctx)
	if err != nil {
		return err
	}
	own := minRep // the operator's min-replicas-to-write
	if own >= fenceBase {
		own -= fenceBase
	}
	if opts.MinSyncedReplicas > 0 {
		own = int64(opts.MinSyncedReplicas)
	}
	setEpoch := []string{"SET", EpochKey(role), strconv.FormatUint(epoch, 10)}
	setMinRep := func(n int64) []string { return []string{"CONFIG", "SET", paramMinRep, strconv.FormatInt(n, 10)} }
	// One write: Redis reads the few commands at once and runs a client's
	// whole input before it serves another client, so no client write
	// falls between them in practice. CLIENT UNPAUSE first, or a pause
	// would hold the rest.
	cmds := [][]string{{"CLIENT", "UNPAUSE"}}
	switch {
	case ok && stored == epoch:
		if minRep != own {
			cmds = append(cmds, setMinRep(own))
		}
	case own > 0:
		// The operator's own min-replicas-to-write would refuse the SET
		// until enough replicas follow this new master.
		cmds = append(cmds, setMinRep(0), setEpoch, setMinRep(own))
	default:
		if minRep != own {
			cmds = append(cmds, setMinRep(own))
		}
		cmds = append(cmds, setEpoch)
	}
	replies, err := c.exec(ctx, "promote", cmds...)
	if err != nil {
		return err
	}
	for i, v := range replies {
		if err := asOK(v); err != nil {
			return fmt.Errorf("%s on %s: %w", strings.Join(cmds[i], " "), c.addr, err)
		}
	}
	return nil
}

// Follow makes this Redis a replica of master (host:port, the master's
// AnnounceAddr). It arms the write fence first (PauseWrites), so a master
// being demoted refuses writes from that instant on; then it sends
// REPLICAOF host port, unless the server already replicates from that
// host and port (no new sync is started; Redis itself also answers "OK
// Already connected to specified master" to a repeated REPLICAOF). The
// fence stays armed while following: if anyone but Promote (an operator, a
// leftover Sentinel) turns the replica into a master, that master refuses
// writes. Idempotent. It refuses to follow its own address.
func (c *Client) Follow(ctx context.Context, master string) error {
	if err := checkAddr("master", master); err != nil {
		return fmt.Errorf("follow on %s: %w", c.addr, err)
	}
	if master == c.addr || master == c.cfg.AnnounceAddr() {
		return fmt.Errorf("follow on %s: %s is this server's own address", c.addr, master)
	}
	host, portStr, _ := net.SplitHostPort(master)
	port, _ := strconv.Atoi(portStr)
	if err := c.PauseWrites(ctx); err != nil {
		return err
	}
	r, err := c.Replication(ctx)
	if err != nil {
		return err
	}
	if r.Role == "replica" && strings.EqualFold(r.MasterHost, host) && r.MasterPort == port {
		return nil
	}
	return c.doOK(ctx, "REPLICAOF", host, portStr)
}

// PauseWrites arms the write fence: from the moment it returns, every
// write command sent to this Redis while it is a master is refused at once
// with "-NOREPLICAS Not enough good replicas to write." (MULTI/EXEC and
// scripts that write included), and nothing is queued to run later. The
// fence is CONFIG SET min-replicas-to-write to the operator's value plus
// 2^30 (and min-replicas-max-lag to 10 if it was 0, which would disable
// the check); it does not lift itself: it lasts until Unpause or Promote,
// across agent restarts, and until the server restarts (it is not written
// to redis.conf). It takes no duration on purpose: a fence that lifted
// itself would let writes through on a master whose demotion came late
// (see the package documentation for why CLIENT PAUSE is not the fence).
// Replication to replicas goes on. Idempotent.
func (c *Client) PauseWrites(ctx context.Context) error {
	minRep, maxLag, err := c.fenceParams(ctx)
	if err != nil {
		return err
	}
	if maxLag == 0 {
		if err := c.doOK(ctx, "CONFIG", "SET", paramMaxLag, strconv.Itoa(fenceMaxLag)); err != nil {
			return err
		}
	}
	if minRep >= fenceBase {
		return nil
	}
	return c.doOK(ctx, "CONFIG", "SET", paramMinRep, strconv.FormatInt(minRep+fenceBase, 10))
}

// Unpause lifts the write fence, restoring the operator's
// min-replicas-to-write, and lifts any CLIENT PAUSE (CLIENT UNPAUSE, Redis
// 6.2 or later), whoever set it. Idempotent.
func (c *Client) Unpause(ctx context.Context) error {
	minRep, _, err := c.fenceParams(ctx)
	if err != nil {
		return err
	}
	if minRep >= fenceBase {
		if err := c.doOK(ctx, "CONFIG", "SET", paramMinRep, strconv.FormatInt(minRep-fenceBase, 10)); err != nil {
			return err
		}
	}
	return c.doOK(ctx, "CLIENT", "UNPAUSE")
}

// fenceParams reads min-replicas-to-write and min-replicas-max-lag.
func (c *Client) fenceParams(ctx context.Context) (minRep, maxLag int64, err error) {
	replies, err := c.exec(ctx, "CONFIG GET "+paramMinRep, []string{"CONFIG", "GET", paramMinRep},
		[]string{"CONFIG", "GET", paramMaxLag})
	if err != nil {
		return 0, 0, err
	}
	if minRep, err = asConfigInt(replies[0], paramMinRep); err != nil {
		return 0, 0, fmt.Errorf("CONFIG GET %s on %s: %w", paramMinRep, c.addr, err)
	}
	if maxLag, err = asConfigInt(replies[1], paramMaxLag); err != nil {
		return 0, 0, fmt.Errorf("CONFIG GET %s on %s: %w", paramMaxLag, c.addr, err)
	}
	return minRep, maxLag, nil
}

// WaitCaughtUp polls INFO until this Redis is a replica whose link to its
// master is up and whose processed offset (slave_repl_offset) is at least
// target, or ctx ends (an error wrapping ctx.Err() that tells the last
// offset seen). A planned switchover fences the old master, reads its
// offset, and waits for the new one to reach it before Promote. It fails
// at once on a master. Errors of single polls (a restarting server) are
// retried until ctx ends.
func (c *Client) WaitCaughtUp(ctx context.Context, target int64) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	last := "no answer yet"
	for {
		r, err := c.Replication(ctx)
		switch {
		case err != nil && (ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)):
			// Ended by ctx: the previous poll tells more.
		case err != nil:
			last = err.Error()
		case r.Role == "master":
			return fmt.Errorf("wait for offset %d on %s: it is a master, not a replica", target, c.addr)
		case r.LinkUp && r.Offset >= target:
			return nil
		default:
			link := "down"
			if r.LinkUp {
				link = "up"
			}
			last = fmt.Sprintf("at offset %d, link %s", r.Offset, link)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for offset %d on %s: %w (last: %s)", target, c.addr, ctx.Err(), last)
		case <-t.C:
		}
	}
}
