package redisctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// replicaRead bounds one read of a replica's INFO while a master waits for
// its replicas (a replica that does not answer must not hold the wait up
// beyond it: its acknowledged offset still counts).
const replicaRead = 100 * time.Millisecond

// WaitReplicasCaughtUp waits, on a fenced master, until every replica the
// master lists as online has processed the master's whole stream, or ctx
// ends (an error naming the replicas still behind). A replica has when the
// offset it acknowledged reaches the master's, or when its own INFO (read
// at the address the master lists it by, with this client's credentials)
// shows it linked and at that offset. Replicas acknowledge once a second
// by themselves, so the master's view alone makes a graceful hand-over
// wait up to a second; the replicas' own offsets tell within a few
// milliseconds. It returns at once on a replica (nothing to hand over).
func (c *Client) WaitReplicasCaughtUp(ctx context.Context) error {
	remotes := map[string]*Client{}
	defer func() {
		for _, rc := range remotes {
			rc.Close()
		}
	}()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var behind []string // as of the last poll that read the master
	for {
		m, err := c.Replication(ctx)
		switch {
		case err == nil && m.Role != "master":
			return nil
		case err != nil && (ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)):
			// Ended by ctx: the previous poll tells more.
		case err != nil:
			behind = []string{"the master itself: " + err.Error()}
		default:
			behind = nil
			for _, r := range m.Replicas {
				if r.State != "online" || r.Offset >= m.Offset {
					continue
				}
				addr := net.JoinHostPort(r.IP, strconv.Itoa(r.Port))
				if !c.replicaAt(ctx, remotes, addr, m) {
					behind = append(behind, fmt.Sprintf("%s (acknowledged %d of %d)", addr, r.Offset, m.Offset))
				}
			}
		}
		if err == nil && len(behind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replicas of %s not caught up: %v: %w", c.addr, behind, ctx.Err())
		case <-t.C:
		}
	}
}

// replicaAt reports whether the Redis at addr is a linked replica of the
// master m's history that processed m's whole stream.
func (c *Client) replicaAt(ctx context.Context, remotes map[string]*Client, addr string, m Replication) bool {
	rc, ok := remotes[addr]
	if !ok {
		var err error
		if rc, err = Remote(c.cfg, addr); err != nil {
			return false
		}
		remotes[addr] = rc
	}
	rctx, cancel := context.WithTimeout(ctx, replicaRead)
	r, err := rc.Replication(rctx)
	cancel()
	return err == nil && r.Role == "replica" && r.LinkUp && r.ReplID == m.ReplID && r.Offset >= m.Offset
}
