package redisact

import (
	"net"
	"strconv"
	"time"

	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/fsm"
)

// offsetLog remembers when this node's master reached which replication
// offset (one sample per poll, the last historyLen), to tell how many
// milliseconds a replica's acknowledged offset is behind.
type offsetLog struct {
	at  []time.Time
	off []int64
}

// historyLen covers a minute of 200 ms polls.
const historyLen = 300

// add records the master's offset at t (a replica's history is dropped:
// offsets of another history do not compare).
func (l *offsetLog) add(t time.Time, off int64) {
	if n := len(l.off); n > 0 && off < l.off[n-1] {
		l.at, l.off = nil, nil // a new history
	}
	l.at, l.off = append(l.at, t), append(l.off, off)
	if len(l.off) > historyLen {
		l.at, l.off = l.at[1:], l.off[1:]
	}
}

// lagMillis is how long ago the master was last at most at offset ack:
// the replica has everything the master had then, and lacks some of what
// it wrote since. 0 when ack is the master's latest; the age of the oldest
// sample when ack is older than all of them (a lower bound).
func (l *offsetLog) lagMillis(now time.Time, ack int64) int64 {
	n := len(l.off)
	if n == 0 || ack >= l.off[n-1] {
		return 0
	}
	for i := n - 2; i >= 0; i-- {
		if l.off[i] <= ack {
			return max(now.Sub(l.at[i]).Milliseconds(), 0)
		}
	}
	return max(now.Sub(l.at[0]).Milliseconds(), 0)
}

// replicaStates turns a master's INFO replica lines into the report's
// replicas: the member each one is (by announced Redis address), lag in
// bytes and milliseconds, and whether Redis counts it as good (online,
// acknowledged within min-replicas-max-lag seconds).
func replicaStates(st *fsm.State, repl redisctl.Replication, maxLag int64, log *offsetLog, now time.Time) []fsm.ReplicaState {
	if repl.Role != fsm.RedisMaster || len(repl.Replicas) == 0 {
		return nil
	}
	byAddr := map[string]string{}
	for id, n := range st.Nodes {
		if n.Redis != "" {
			byAddr[n.Redis] = id
		}
	}
	if maxLag <= 0 {
		maxLag = 10 // Redis's default
	}
	out := make([]fsm.ReplicaState, 0, min(len(repl.Replicas), fsm.MaxRedisReplicas))
	for _, r := range repl.Replicas {
		if len(out) == fsm.MaxRedisReplicas {
			break
		}
		addr := net.JoinHostPort(r.IP, strconv.Itoa(r.Port))
		rs := fsm.ReplicaState{Node: byAddr[addr], Addr: addr, State: fsm.Truncate(r.State, 64), Offset: max(r.Offset, 0),
			InSync: r.State == "online" && r.Lag >= 0 && r.Lag <= maxLag}
		if r.State == "online" {
			rs.LagBytes = max(repl.Offset-r.Offset, 0)
			rs.LagMillis = log.lagMillis(now, r.Offset)
		} else {
			rs.LagBytes = max(repl.Offset, 0) // not synced: all of it
		}
		out = append(out, rs)
	}
	return out
}

// syncSet is the replicas' in-sync verdicts, to tell a change.
func syncSet(rs []fsm.ReplicaState) string {
	var b []byte
	for _, r := range rs {
		b = append(b, r.Addr...)
		b = append(b, '=')
		b = strconv.AppendBool(b, r.InSync)
		b = append(b, ',')
	}
	return string(b)
}
