package redisact

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/act/acttest"
	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/chaos/labtest"
)

// Without a redis-master role in the spec the agent manages no Redis: its
// graceful stop (Quiesce, then the end of Run) leaves a master it finds
// unfenced, as during a migration from Sentinel (docs/migrate.md), where
// fencing it on the way out would stop every write until someone lifted the
// fence by hand.
func TestStopLeavesAnUnmanagedRedisAlone(t *testing.T) {
	labtest.RequireBin(t, "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	cfg := redisctl.Config{Address: "127.0.0.1:" + strconv.Itoa(port)}
	cli, err := redisctl.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := cli.Replication(context.Background()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	node := acttest.New("n1")
	node.SetAuthority(act.Authority{LeaseGen: 1, LeaseValid: true, LeaseUntil: time.Now().Add(time.Hour), Stopping: true})
	x, err := New(node, Config{Redis: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	start := time.Now()
	x.Quiesce(context.Background())
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Quiesce without a redis-master role took %s, want at once", d)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r, err := cli.Replication(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Role != "master" || r.Paused {
		t.Fatalf("the unmanaged Redis after the agent's stop: role %s, fenced %v; want an unfenced master", r.Role, r.Paused)
	}
}
