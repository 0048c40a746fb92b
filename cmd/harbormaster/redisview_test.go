package main

import (
	"bytes"
	"strings"
	"testing"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

func TestPrintRedis(t *testing.T) {
	r := &hmv1.Role{Name: "redis", Type: "redis-master", UnsyncedPromotion: "never",
		RedisHistory: &hmv1.RedisHistory{Node: "n1", ReplId: "0123456789abcdef", Offset: 5000, TimeUnixMs: 1},
		Unsynced:     "no live candidate's Redis has synced with n1's", UnsyncedSinceUnixMs: 2,
		Redis: []*hmv1.RedisNode{
			{Node: "n1", Role: "master", Offset: 5000, Synced: true, Replicas: []*hmv1.RedisReplica{
				{Node: "n2", Addr: "10.0.0.2:6379", State: "online", InSync: true, LagBytes: 10, LagMs: 200, SinceUnixMs: 3},
				{Node: "n3", Addr: "10.0.0.3:6379", State: "wait_bgsave", LagBytes: 5000},
			}},
			{Node: "n2", Role: "replica", Master: "10.0.0.1:6379", LinkUp: true, Offset: 4990, Synced: true, BehindBytes: 10},
			{Node: "n3", Role: "replica", Master: "10.0.0.1:6379", Offset: 0, Warnings: []string{"no persistence"}},
		}}
	var b bytes.Buffer
	printRedis(&b, r)
	out := b.String()
	for _, want := range []string{
		"unsynced_promotion: never",
		"history: n1's Redis, replication id 01234567, offset 5000",
		"VACANT since",
		"n2  ", "yes, 10 B behind", "online, in sync since",
		"no (never synced with it)", "wait_bgsave, out of sync",
		"redis-config warnings:\n  n3: no persistence",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("printRedis output lacks %q:\n%s", want, out)
		}
	}
	if got := redisLine(r.Redis[0]); got != "master, offset 5000, 1 of 2 replicas in sync" {
		t.Errorf("redisLine(master) = %q", got)
	}
	if got := redisLine(r.Redis[2]); !strings.Contains(got, "not synced with the role's history") || !strings.Contains(got, "1 redis-config warning") {
		t.Errorf("redisLine(n3) = %q", got)
	}
}
