package redisctl

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startStockRedis starts a Redis with its stock replication settings (no
// --repl-diskless-sync-delay), no persistence.
func startStockRedis(t *testing.T, extra ...string) *server {
	t.Helper()
	port := freePort(t)
	return runRedis(t, port, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir()}, extra...))
}

func TestSettingsAndWarnings(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	s := startStockRedis(t, "--replica-read-only", "no")
	c := s.client()
	got, err := c.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{DisklessSync: true, SyncDelay: 5, BacklogSize: 1 << 20, Timeout: 60, MinReplicas: 0, MaxLag: 10}
	if got != want {
		t.Fatalf("Settings of a stock Redis 7:\n got %+v\nwant %+v", got, want)
	}
	w := strings.Join(got.Warnings(true), "\n")
	for _, sub := range []string{"no persistence", "replica-read-only is no", "started unfenced"} {
		if !strings.Contains(w, sub) {
			t.Errorf("warnings %q lack %q", w, sub)
		}
	}
	// Fenced, persistent, read-only replicas: nothing to say.
	if err := c.PauseWrites(ctx); err != nil {
		t.Fatal(err)
	}
	must(t, c, "CONFIG", "SET", "appendonly", "yes")
	must(t, c, "CONFIG", "SET", "replica-read-only", "yes")
	got, err = c.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Fenced || got.MinReplicas != 0 || !got.AOF || len(got.Warnings(true)) != 0 {
		t.Fatalf("settings after the fixes: %+v, warnings %q; want fenced, no warnings", got, got.Warnings(true))
	}
}

// TestPromoteSetsSyncDelayAndMinReplicas: the master Promote makes syncs
// from disk (TestReplicaStreamsAsSoonAsItIsOnline says why) and starts a
// replica's first full sync at once (Redis 7 waits 5 s by default), and
// takes min_synced_replicas as its own min-replicas-to-write, under the
// fence.
func TestPromoteSetsSyncDelayAndMinReplicas(t *testing.T) {
	ctx := ctxT(t, 20*time.Second)
	m, r := startStockRedis(t), startStockRedis(t)
	mc, rc := m.client(), r.client()
	if err := mc.PromoteWith(ctx, "redis", 1, PromoteOptions{MinSyncedReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	set, err := mc.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if set.DisklessSync || set.SyncDelay != 0 || set.MinReplicas != 1 || set.Fenced {
		t.Fatalf("master's settings after PromoteWith: %+v; want disk-based sync, sync delay 0, min replicas 1, unfenced", set)
	}
	// No replica yet: min_synced_replicas 1 refuses writes.
	if code := replyCode(t, mc, "SET", "k", "v"); code != "NOREPLICAS" {
		t.Fatalf("write with no replica: %q, want NOREPLICAS", code)
	}
	start := time.Now()
	if err := rc.Follow(ctx, m.addr); err != nil {
		t.Fatal(err)
	}
	waitLinked(t, rc)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("first full sync took %s; it starts at once (stock: a diskless sync 5 s later)", d)
	}
	waitFor(t, 5*time.Second, "a write with one replica in sync", func() bool {
		_, err := mc.do(context.Background(), "SET", "k", "v")
		return err == nil
	})
	// The fence keeps the operator's (here: the spec's) value underneath.
	if err := mc.PauseWrites(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mc.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	if set, _ := mc.Settings(ctx); set.MinReplicas != 1 || set.Fenced {
		t.Fatalf("after fence and unpause: %+v, want min replicas 1 again", set)
	}
}
