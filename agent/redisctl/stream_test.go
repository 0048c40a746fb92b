package redisctl

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// streamDelayBound is how soon a replica that its master reports online
// must have a write the master acknowledges then. Far below the second
// after which a replica acknowledges on its own (replicationCron), which
// is how long a diskless sync leaves it without the stream.
const streamDelayBound = 300 * time.Millisecond

// TestReplicaStreamsAsSoonAsItIsOnline: after a full sync with a master
// made by PromoteWith, a write the master acknowledges the moment it lists
// the replica as online reaches the replica at once. After a diskless
// sync Redis (7.0 to 7.4 at least) streams to a replica only from its next
// REPLCONF ACK, up to a second later: writes acknowledged in between are
// on no replica, though the master counts it as a good one. A master made
// by PromoteWith syncs from disk, which starts the stream with the end of
// the transfer. Each round is a fresh, empty replica (a full sync).
func TestReplicaStreamsAsSoonAsItIsOnline(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	m := startRedis(t)
	mc := m.client()
	if err := mc.PromoteWith(ctx, "redis", 1, PromoteOptions{}); err != nil {
		t.Fatal(err)
	}
	// HM_TEST_DISKLESS=1 shows the window this test guards against: with
	// the stock diskless sync it fails (about half the rounds at 0.9-1 s).
	if os.Getenv("HM_TEST_DISKLESS") == "1" {
		must(t, mc, "CONFIG", "SET", "repl-diskless-sync", "yes")
	}
	for i := range 300 {
		must(t, mc, "SET", "seed:"+strconv.Itoa(i), "x")
	}
	for round := range 8 {
		r := startRedis(t)
		rc := r.client()
		if err := rc.Follow(ctx, m.addr); err != nil {
			t.Fatal(err)
		}
		// Poll the master as fast as it answers until it lists r online.
		deadline := time.Now().Add(10 * time.Second)
		for !online(ctx, mc, r.port) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %s not online at its master after 10 s", round, r.addr)
			}
		}
		key := "round:" + strconv.Itoa(round)
		must(t, mc, "SET", key, "v")
		start := time.Now()
		for {
			v, err := rc.do(ctx, "GET", key)
			if err == nil && v == "v" {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("round %d: %s never got %s", round, r.addr, key)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if d := time.Since(start); d > streamDelayBound {
			t.Errorf("round %d: the replica had a write acknowledged when its master listed it online only %s later, want <= %s",
				round, d.Round(time.Millisecond), streamDelayBound)
		} else {
			t.Logf("round %d: %s", round, d.Round(time.Millisecond))
		}
		r.kill()
	}
}

// online reports whether c, a master, lists the replica listening on port
// as online.
func online(ctx context.Context, c *Client, port int) bool {
	r, err := c.Replication(ctx)
	if err != nil {
		return false
	}
	for _, ri := range r.Replicas {
		if ri.Port == port && ri.State == "online" {
			return true
		}
	}
	return false
}
