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
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// startRedis starts a redis-server on a free loopback port, without
// persistence, fenced as the lab starts it (min-replicas-to-write out of
// reach), and returns its address once it answers.
func startRedis(t *testing.T) string {
	t.Helper()
	labtest.RequireBin(t, "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir(), "--min-replicas-to-write", "1073741824")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cli, err := redisctl.New(redisctl.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := cli.Replication(context.Background()); err == nil {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runActuator runs an actuator for node n1 on the Redis at addr until the
// test ends.
func runActuator(t *testing.T, node *acttest.Node, addr string) *Actuator {
	t.Helper()
	x, err := New(node, Config{Redis: redisctl.Config{Address: addr}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return x
}

// A holder asked to let the role go whose Redis is a replica (its
// promotion never took: chaos seed 101 with --redis, a SIGSTOPped Redis)
// becomes releasable, at once: there is nothing to hand over, not even to
// a move target that cannot be reached. Before, only a master readied the
// hand-over: the release never committed and the role stayed with a
// replica, the cluster without a master.
func TestReleasingHolderWithAReplicaBecomesReleasable(t *testing.T) {
	addr := startRedis(t)
	cli, err := redisctl.New(redisctl.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	// A replica of a master that is not there (link down), as the lab's
	// blocked or frozen peers leave it.
	if err := cli.Follow(ctx, "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"", "n2"} {
		t.Run("move target "+strconv.Quote(target), func(t *testing.T) {
			node := acttest.New("n1")
			st := fsm.NewState()
			st.Spec = &spec.Spec{Roles: []spec.Role{{Name: "redis", Type: spec.TypeRedisMaster}}}
			st.Nodes = map[string]*fsm.Node{"n1": {ID: "n1", Redis: addr}, "n2": {ID: "n2", Redis: "127.0.0.1:1"}}
			st.Assignments = map[string]*fsm.Assignment{"redis": {Role: "redis", Holder: "n1", HolderGen: 3, Epoch: 4,
				Releasing: true, MoveTo: target, History: &fsm.RedisHistory{Node: "n2", ReplID: "aaaa", Offset: 100, Epoch: 3}}}
			node.SetState(st)
			node.SetAuthority(act.Authority{LeaseGen: 3, LeaseValid: true, LeaseUntil: time.Now().Add(time.Hour)})
			x := runActuator(t, node, addr)
			start := time.Now()
			for !x.Releasable(ctx, st, "redis") {
				if time.Since(start) > 2*time.Second {
					t.Fatalf("a holder being released whose Redis is a replica is not releasable after %s", time.Since(start))
				}
				time.Sleep(20 * time.Millisecond)
			}
			r, err := cli.Replication(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if r.Role != fsm.RedisReplica || !r.Paused {
				t.Fatalf("the released holder's Redis: role %s, fenced %v; want a fenced replica", r.Role, r.Paused)
			}
		})
	}
}
