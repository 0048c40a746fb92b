package fsm

import "github.com/harbormaster/harbormaster/spec"

// Redis replication state beyond the master's role and offset
// (docs/redis.md): what a master reports of each replica, the settings
// that decide how long a replica stays unsynced, and the history of a
// redis-master role's masters, which decides who may be promoted without
// losing acknowledged writes (S10).

// Bounds of a RedisReport's lists.
const (
	MaxRedisReplicas = 64
	MaxRedisWarnings = 8
	maxRedisText     = 256
)

// ReplicaState is one replica as its master's agent sees it (INFO
// replication's slaveN line) when it reports.
type ReplicaState struct {
	// Node is the member whose announced Redis address matches the
	// replica's; "" when none does (Addr says who it is).
	Node string `json:"node,omitempty"`
	Addr string `json:"addr"`
	// State is Redis's: wait_bgsave and send_bulk during a full sync,
	// online once synced.
	State string `json:"state"`
	// Offset is the offset the replica acknowledged; LagBytes how far the
	// master is ahead of it, LagMillis how long ago the master was at that
	// offset (replicas acknowledge once a second, so an idle or quick
	// replica shows 0 to about 1000).
	Offset    int64 `json:"offset"`
	LagBytes  int64 `json:"lag_bytes"`
	LagMillis int64 `json:"lag_ms"`
	// InSync is Redis's "good replica": online and acknowledged within
	// min-replicas-max-lag. Since (in RedisState) is when it last changed.
	InSync bool  `json:"in_sync"`
	Since  int64 `json:"since,omitempty"`
}

// RedisSettings are the replication and persistence settings a node's
// agent read from its Redis (see redisctl.Settings).
type RedisSettings struct {
	DisklessSync    bool   `json:"diskless_sync"`
	SyncDelay       int64  `json:"sync_delay_s"`
	BacklogSize     int64  `json:"backlog_bytes"`
	Timeout         int64  `json:"timeout_s"`
	MinReplicas     int64  `json:"min_replicas"`
	MaxLag          int64  `json:"max_lag_s"`
	Save            string `json:"save,omitempty"`
	AOF             bool   `json:"aof"`
	ReplicaReadOnly bool   `json:"replica_read_only"`
}

// RedisHistory is the replication position of a redis-master role's
// master as its holder last reported it: its replication id, offset and
// run id. It outlives the holder (a crash, a release, a re-registration):
// it names the data a new master must have for no acknowledged write to be
// lost.
type RedisHistory struct {
	Node   string `json:"node"`
	ReplID string `json:"repl_id"`
	Offset int64  `json:"offset"`
	RunID  string `json:"run_id,omitempty"`
	Time   int64  `json:"time"`
	// Epoch is the role's epoch when the history was last updated.
	Epoch uint64 `json:"epoch,omitempty"`
}

// RedisHistoryOf is the replication history a redis-master role's next
// master must continue: the one recorded in the assignment, or (states
// written before it was recorded) the holder's last master report.
func (s *State) RedisHistoryOf(a Assignment) *RedisHistory {
	if a.History != nil {
		return a.History
	}
	if rs, ok := s.Redis[a.Holder]; ok && a.Holder != "" && rs.Role == RedisMaster && rs.ReplID != "" {
		return &RedisHistory{Node: a.Holder, ReplID: rs.ReplID, Offset: rs.Offset, RunID: rs.RunID, Time: rs.Time}
	}
	return nil
}

// RedisSynced reports whether node's Redis, as last reported, holds the
// data of history h: it replicated from h's master (same replication id),
// or it continues h (its previous id is h's: a replica promoted from h, or
// h's master restarted from its own RDB), or it is h's master's own Redis
// restarted with keys it read from its files (an AOF keeps no replication
// id). behind is how many bytes of h's stream it lacks at least (h.Offset
// is a lower bound of what h's master wrote); -1 when unknown (restarted
// from its files). With no history (no master ever reported) every node is
// synced.
func (s *State) RedisSynced(h *RedisHistory, node string) (synced bool, behind int64) {
	if h == nil || h.ReplID == "" {
		return true, 0
	}
	rs, ok := s.Redis[node]
	if !ok || rs.Error != "" || rs.Loading {
		return false, h.Offset
	}
	pos := rs.Offset
	switch {
	case rs.ReplID == h.ReplID:
	case rs.ReplID2 == h.ReplID:
		if rs.Offset2 > 0 {
			pos = min(pos, rs.Offset2-1)
		}
	case node == h.Node && restartedWithKeys(rs, h):
		return true, -1
	default:
		return false, h.Offset
	}
	return true, max(h.Offset-pos, 0)
}

// restartedWithKeys reports whether rs is h's master's Redis after a
// restart (another run id) that loaded keys from files carrying no
// replication id: an AOF. An RDB carries one (Redis 7 restores it as
// master_replid2): if it is not h's, the keys are of an older history (a
// replica writes an RDB at every full sync, even with save ""), not what
// h's master acknowledged.
func restartedWithKeys(rs RedisState, h *RedisHistory) bool {
	return rs.RunID != "" && h.RunID != "" && rs.RunID != h.RunID && !rs.Loading && rs.Keys != nil && *rs.Keys > 0 &&
		rs.ReplID2 == ""
}

// RedisHistoryGone reports whether the data of history h survives nowhere
// it could come back from: h's master's node runs a Redis again that
// restarted (another run id) without it: empty, or with an RDB of another
// history. Promoting an unsynced replica then loses nothing more than is
// already lost.
func (s *State) RedisHistoryGone(h *RedisHistory) bool {
	if h == nil || h.ReplID == "" {
		return false
	}
	rs, ok := s.Redis[h.Node]
	if !ok || rs.Error != "" || rs.RunID == "" || rs.RunID == h.RunID || rs.Loading || rs.Keys == nil {
		return false // not back, or its data not known yet
	}
	synced, _ := s.RedisSynced(h, h.Node)
	return !synced
}

// ShortReplID abbreviates a replication id for messages (its first 8
// hex digits).
func ShortReplID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// updateHistory folds a master's report into the history of the
// redis-master roles the node holds:
//   - the holder's first master report at its assignment starts from the
//     history or continues it: the assignment was only made to a Redis that
//     holds the history (or with a stated data loss, which starts a new
//     one);
//   - later reports at that assignment update it while they come from the
//     same Redis process (run id): Redis changes a master's replication id
//     when it creates its backlog for a first replica, keeping the data;
//   - a report of another process at the same assignment is a Redis that
//     restarted under the role: its agent releases the role, and the
//     history stays for the next master.
func (s *State) updateHistory(c *RedisReport) {
	if c.Role != RedisMaster {
		return
	}
	for _, r := range s.Spec.Roles {
		a, ok := s.Assignments[r.Name]
		if r.Type != spec.TypeRedisMaster || !ok || a.Holder != c.Node {
			continue
		}
		h := a.History
		first := h == nil || h.Epoch < a.Epoch
		same := h != nil && h.Node == c.Node && h.RunID != "" && h.RunID == c.RunID
		if !first && !same {
			continue
		}
		next := *a
		next.History = &RedisHistory{Node: c.Node, ReplID: c.ReplID, Offset: c.Offset, RunID: c.RunID, Time: c.Time, Epoch: a.Epoch}
		s.setAssignment(&next)
	}
}
