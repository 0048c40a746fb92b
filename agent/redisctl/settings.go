package redisctl

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Settings are the replication and persistence settings of a Redis server
// that decide how long a replica stays unsynced with its master and what a
// restart keeps (docs/redis.md, "Settings the agent reads"). Settings reads
// them; Warnings says which of them put acknowledged writes at risk.
type Settings struct {
	// DisklessSync is repl-diskless-sync: a full sync streams the dataset
	// to the replicas instead of writing an RDB file first.
	DisklessSync bool `json:"diskless_sync"`
	// SyncDelay is repl-diskless-sync-delay (seconds): how long a master
	// waits for more replicas before a diskless full sync starts (Redis 7:
	// 5). Promote sets it to 0 on the master it makes.
	SyncDelay int64 `json:"sync_delay_s"`
	// BacklogSize is repl-backlog-size (bytes): how much of the stream a
	// replica may miss and still resync partially instead of fully.
	BacklogSize int64 `json:"backlog_bytes"`
	// Timeout is repl-timeout (seconds): how long a silent link counts as up.
	Timeout int64 `json:"timeout_s"`
	// MinReplicas is min-replicas-to-write without the agent's fence, and
	// MaxLag min-replicas-max-lag (seconds): a replica is "good" (in sync,
	// for Redis) while it acknowledged within MaxLag.
	MinReplicas int64 `json:"min_replicas"`
	MaxLag      int64 `json:"max_lag_s"`
	// Fenced is set when min-replicas-to-write holds the agent's fence.
	Fenced bool `json:"fenced"`
	// Save is the save schedule ("" when RDB snapshots are off) and AOF
	// appendonly.
	Save string `json:"save,omitempty"`
	AOF  bool   `json:"aof"`
	// ReplicaReadOnly is replica-read-only.
	ReplicaReadOnly bool `json:"replica_read_only"`
}

// settingNames are the parameters Settings reads, in its order.
var settingNames = []string{"repl-diskless-sync", "repl-diskless-sync-delay", "repl-backlog-size", "repl-timeout",
	paramMinRep, paramMaxLag, "save", "appendonly", "replica-read-only"}

// Settings reads the replication and persistence settings, in one round
// trip (one CONFIG GET per parameter: Redis 6 takes one name per call).
func (c *Client) Settings(ctx context.Context) (Settings, error) {
	cmds := make([][]string, len(settingNames))
	for i, n := range settingNames {
		cmds[i] = []string{"CONFIG", "GET", n}
	}
	replies, err := c.exec(ctx, "CONFIG GET", cmds...)
	if err != nil {
		return Settings{}, err
	}
	v := map[string]string{}
	for i, n := range settingNames {
		s, err := asConfigString(replies[i], n)
		if err != nil {
			return Settings{}, fmt.Errorf("CONFIG GET %s on %s: %w", n, c.addr, err)
		}
		v[n] = s
	}
	var s Settings
	num := func(name string) int64 {
		if err == nil {
			var n int64
			n, err = strconv.ParseInt(v[name], 10, 64)
			if err != nil {
				err = fmt.Errorf("CONFIG GET %s on %s: %q is not an integer", name, c.addr, v[name])
			}
			return n
		}
		return 0
	}
	s.SyncDelay, s.BacklogSize, s.Timeout = num("repl-diskless-sync-delay"), num("repl-backlog-size"), num("repl-timeout")
	s.MinReplicas, s.MaxLag = num(paramMinRep), num(paramMaxLag)
	if err != nil {
		return Settings{}, err
	}
	if s.MinReplicas >= fenceBase {
		s.MinReplicas, s.Fenced = s.MinReplicas-fenceBase, true
	}
	s.DisklessSync, s.AOF, s.ReplicaReadOnly = v["repl-diskless-sync"] == "yes", v["appendonly"] == "yes", v["replica-read-only"] == "yes"
	s.Save = strings.TrimSpace(v["save"])
	return s, nil
}

// Persistent reports whether a restart keeps the data (RDB snapshots or AOF).
func (s Settings) Persistent() bool { return s.Save != "" || s.AOF }

// Warnings lists what in s puts acknowledged writes at risk, each with its
// fix (the redis-config warnings of docs/redis.md). firstLook is set on the
// first read of a server since it started: only then does an unfenced
// min-replicas-to-write mean redis.conf lacks the start fence (later, the
// agent itself may have lifted it).
func (s Settings) Warnings(firstLook bool) []string {
	var out []string
	if !s.Persistent() {
		out = append(out, "no persistence (save \"\" and appendonly no): a restart of this Redis empties it; "+
			"run it without automatic restart, or turn on appendonly (docs/redis.md, Persistence)")
	}
	if !s.ReplicaReadOnly {
		out = append(out, "replica-read-only is no: writes a client makes on a replica are lost at its next sync; "+
			"set replica-read-only yes")
	}
	if firstLook && !s.Fenced {
		out = append(out, "this Redis started unfenced (it takes writes until the agent fences it): "+
			"put min-replicas-to-write 1073741824 in its redis.conf")
	}
	return out
}

// asConfigString reads the value of a CONFIG GET reply for one parameter.
func asConfigString(v any, name string) (string, error) {
	if err := asError(v); err != nil {
		return "", err
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return "", fmt.Errorf("unexpected CONFIG GET %s reply %v; is the parameter known?", name, v)
	}
	return asString(arr[1])
}
