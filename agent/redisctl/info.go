package redisctl

import (
	"fmt"
	"strconv"
	"strings"
)

// Replication is what INFO says about a Redis server's replication, plus
// whether harbormaster's write fence is armed.
type Replication struct {
	Role       string // "master" or "replica" (INFO's "slave")
	MasterHost string // replica: master_host, as given to REPLICAOF
	MasterPort int    // replica: master_port
	// LinkUp is master_link_status:up on a replica (false on a master).
	LinkUp bool
	// Offset is the replication offset of the data this server holds:
	// master_repl_offset on a master, slave_repl_offset (the offset it
	// processed, not just read) on a replica; -1 when INFO has none.
	// Offsets compare only between servers of one history: same ReplID, or
	// a replica and its master.
	Offset int64
	// ReplID is master_replid: the master's own replication ID; on a
	// synced replica, its master's.
	ReplID string
	// ReplID2 is master_replid2 ("" when all zeros) and Offset2
	// second_repl_offset (0 when none): the history this server continues
	// up to Offset2-1 (its master's before a promotion, or its own before
	// a restart that loaded an RDB).
	ReplID2 string
	Offset2 int64
	// RunID is INFO server's run_id: it changes when the server restarts.
	RunID string
	// Uptime is INFO server's uptime_in_seconds (-1 when absent).
	Uptime int64
	// Paused reports harbormaster's write fence (see PauseWrites): read
	// from the server (CONFIG GET min-replicas-to-write), not tracked by
	// the client, so it survives agent restarts and is seen by Remote
	// clients. Armed on a replica, it takes effect as soon as anyone
	// other than Promote makes the server a master. A CLIENT PAUSE is not
	// reported: Redis 7.0 shows it neither in INFO nor in CLIENT INFO.
	Paused bool
	// ConnectedReplicas is connected_slaves: replicas attached to this
	// server, in any state.
	ConnectedReplicas int
	// Replicas are the slaveN lines of a master (or of a replica that has
	// replicas of its own), in INFO's order.
	Replicas []ReplicaInfo
}

// ReplicaInfo is one "slaveN:ip=...,port=...,state=...,offset=...,lag=..."
// line: a replica as its master sees it.
type ReplicaInfo struct {
	IP     string // the address the replica connected from, or its replica-announce-ip
	Port   int    // its listening port (replica-announce-port)
	State  string // wait_bgsave, send_bulk, online ...
	Offset int64  // the offset the replica acknowledged
	Lag    int64  // seconds since its last acknowledgement
}

// parseReplication fills r from the text of INFO replication and INFO
// server (any sections may be concatenated).
func parseReplication(info string) (Replication, error) {
	r := Replication{Offset: -1, Uptime: -1}
	var masterOff, replicaOff int64 = -1, -1
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimRight(line, "\r")
		key, val, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		switch key {
		case "role":
			switch val {
			case "master":
				r.Role = "master"
			case "slave", "replica":
				r.Role = "replica"
			default:
				return r, fmt.Errorf("INFO: unknown role %q", val)
			}
		case "master_host":
			r.MasterHost = val
		case "master_port":
			r.MasterPort, _ = strconv.Atoi(val)
		case "master_link_status":
			r.LinkUp = val == "up"
		case "master_repl_offset":
			masterOff = parseOffset(val)
		case "slave_repl_offset":
			replicaOff = parseOffset(val)
		case "master_replid":
			r.ReplID = val
		case "master_replid2":
			if strings.Trim(val, "0") != "" {
				r.ReplID2 = val
			}
		case "second_repl_offset":
			r.Offset2 = max(parseOffset(val), 0)
		case "run_id":
			r.RunID = val
		case "uptime_in_seconds":
			r.Uptime = parseOffset(val)
		case "connected_slaves":
			r.ConnectedReplicas, _ = strconv.Atoi(val)
		default:
			if n, ok := strings.CutPrefix(key, "slave"); ok && n != "" && isDigits(n) {
				ri, err := parseReplicaLine(val)
				if err != nil {
					return r, fmt.Errorf("INFO: %s: %w", key, err)
				}
				r.Replicas = append(r.Replicas, ri)
			}
		}
	}
	switch r.Role {
	case "master":
		r.Offset = masterOff
	case "replica":
		r.Offset = replicaOff
	default:
		return r, fmt.Errorf("INFO: no role line; is it a Redis server?")
	}
	return r, nil
}

func parseOffset(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// parseReplicaLine parses "ip=127.0.0.1,port=6380,state=online,offset=42,lag=0".
// Unknown keys are skipped; ip, port, state and offset are required.
func parseReplicaLine(s string) (ReplicaInfo, error) {
	ri := ReplicaInfo{Offset: -1, Lag: -1}
	var seen int
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "ip":
			ri.IP, seen = v, seen|1
		case "port":
			ri.Port, err = strconv.Atoi(v)
			seen |= 2
		case "state":
			ri.State, seen = v, seen|4
		case "offset":
			ri.Offset, err = strconv.ParseInt(v, 10, 64)
			seen |= 8
		case "lag":
			ri.Lag, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return ri, fmt.Errorf("%s in %q is not a number", k, s)
		}
	}
	if seen != 15 {
		return ri, fmt.Errorf("%q lacks one of ip, port, state, offset", s)
	}
	return ri, nil
}
