package redisctl

import (
	"reflect"
	"strings"
	"testing"
)

// Replies of Redis 7.0.15, CRLF line ends as sent.
const masterInfo = "# Replication\r\n" +
	"role:master\r\n" +
	"connected_slaves:2\r\n" +
	"slave0:ip=127.0.0.1,port=17002,state=online,offset=5016,lag=0\r\n" +
	"slave1:ip=198.18.0.12,port=6379,state=wait_bgsave,offset=0,lag=1\r\n" +
	"master_failover_state:no-failover\r\n" +
	"master_replid:dfd689d94e9a2f97db05f431183de7dc4baa37a9\r\n" +
	"master_replid2:0000000000000000000000000000000000000000\r\n" +
	"master_repl_offset:9007199254740993\r\n" +
	"second_repl_offset:-1\r\n" +
	"repl_backlog_active:1\r\n" +
	"repl_backlog_size:1048576\r\n" +
	"repl_backlog_first_byte_offset:1\r\n" +
	"repl_backlog_histlen:5016\r\n"

const replicaInfo = "# Replication\r\n" +
	"role:slave\r\n" +
	"master_host:198.18.0.11\r\n" +
	"master_port:6379\r\n" +
	"master_link_status:up\r\n" +
	"master_last_io_seconds_ago:1\r\n" +
	"master_sync_in_progress:0\r\n" +
	"slave_read_repl_offset:5100\r\n" +
	"slave_repl_offset:5016\r\n" +
	"slave_priority:100\r\n" +
	"slave_read_only:1\r\n" +
	"replica_announced:1\r\n" +
	"connected_slaves:0\r\n" +
	"master_failover_state:no-failover\r\n" +
	"master_replid:f65ba13eaa002a8b2ca0b9f16538d26a8ef53d93\r\n" +
	"master_replid2:0000000000000000000000000000000000000000\r\n" +
	"master_repl_offset:5100\r\n" +
	"second_repl_offset:-1\r\n"

const serverInfo = "# Server\r\nredis_version:7.0.15\r\nrun_id:0c8a5e35d6c1ab0b3d1f8a4bb1e4f7d0d4d2b2f1\r\ntcp_port:6379\r\nuptime_in_seconds:42\r\n"

func TestParseReplication(t *testing.T) {
	tests := []struct {
		name string
		info string
		want Replication
	}{
		{"master", masterInfo + serverInfo, Replication{
			Role: "master", Offset: 9007199254740993, ReplID: "dfd689d94e9a2f97db05f431183de7dc4baa37a9",
			RunID: "0c8a5e35d6c1ab0b3d1f8a4bb1e4f7d0d4d2b2f1", Uptime: 42, ConnectedReplicas: 2,
			Replicas: []ReplicaInfo{
				{IP: "127.0.0.1", Port: 17002, State: "online", Offset: 5016, Lag: 0},
				{IP: "198.18.0.12", Port: 6379, State: "wait_bgsave", Offset: 0, Lag: 1},
			},
		}},
		{"replica: the processed offset, not the read one", serverInfo + replicaInfo, Replication{
			Role: "replica", MasterHost: "198.18.0.11", MasterPort: 6379, LinkUp: true, Offset: 5016,
			ReplID: "f65ba13eaa002a8b2ca0b9f16538d26a8ef53d93", RunID: "0c8a5e35d6c1ab0b3d1f8a4bb1e4f7d0d4d2b2f1", Uptime: 42,
		}},
		{"replica with link down and no offset", strings.NewReplacer("master_link_status:up", "master_link_status:down",
			"slave_repl_offset:5016\r\n", "").Replace(replicaInfo), Replication{
			Role: "replica", MasterHost: "198.18.0.11", MasterPort: 6379, Offset: -1, Uptime: -1,
			ReplID: "f65ba13eaa002a8b2ca0b9f16538d26a8ef53d93",
		}},
		{"master restarted from its RDB: the previous history as replid2", strings.NewReplacer(
			"master_replid2:0000000000000000000000000000000000000000", "master_replid2:94a06806d571fba45ce68942c595810bc8d9a3cb",
			"second_repl_offset:-1", "second_repl_offset:51").Replace(masterInfo), Replication{
			Role: "master", Offset: 9007199254740993, ReplID: "dfd689d94e9a2f97db05f431183de7dc4baa37a9",
			ReplID2: "94a06806d571fba45ce68942c595810bc8d9a3cb", Offset2: 51, ConnectedReplicas: 2, Uptime: -1,
			Replicas: []ReplicaInfo{
				{IP: "127.0.0.1", Port: 17002, State: "online", Offset: 5016, Lag: 0},
				{IP: "198.18.0.12", Port: 6379, State: "wait_bgsave", Offset: 0, Lag: 1},
			},
		}},
		{"LF line ends", strings.ReplaceAll(masterInfo, "\r\n", "\n"), Replication{
			Role: "master", Offset: 9007199254740993, ReplID: "dfd689d94e9a2f97db05f431183de7dc4baa37a9", ConnectedReplicas: 2,
			Uptime: -1, Replicas: []ReplicaInfo{
				{IP: "127.0.0.1", Port: 17002, State: "online", Offset: 5016, Lag: 0},
				{IP: "198.18.0.12", Port: 6379, State: "wait_bgsave", Offset: 0, Lag: 1},
			},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseReplication(tc.info)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseReplication:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseReplicationErrors(t *testing.T) {
	for name, tc := range map[string]struct{ info, err string }{
		"no role":          {serverInfo, "no role line"},
		"unknown role":     {"role:sentinel\r\n", `unknown role "sentinel"`},
		"bad replica port": {"role:master\r\nslave0:ip=1.2.3.4,port=x,state=online,offset=1,lag=0\r\n", "slave0: port"},
		"short line":       {"role:master\r\nslave0:ip=1.2.3.4,port=1\r\n", "lacks one of"},
		"bad offset":       {"role:master\r\nslave0:ip=1.2.3.4,port=1,state=online,offset=1e3,lag=0\r\n", "offset"},
	} {
		if _, err := parseReplication(tc.info); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: parseReplication: %v, want an error containing %q", name, err, tc.err)
		}
	}
	// slave_read_only, slave_priority and slave_repl_offset are not replica lines.
	r, err := parseReplication(replicaInfo)
	if err != nil || len(r.Replicas) != 0 {
		t.Errorf("replica INFO: %+v, %v; want no replica lines", r.Replicas, err)
	}
}
