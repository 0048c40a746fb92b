package redisact

import (
	"context"
	"io"
	"log/slog"
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
	port := labtest.FreePort(t)
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
	return runActuatorWith(t, node, Config{Redis: redisctl.Config{Address: addr}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// runActuatorWith runs an actuator with cfg until the test ends.
func runActuatorWith(t *testing.T, node *acttest.Node, cfg Config) *Actuator {
	t.Helper()
	x, err := New(node, cfg)
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

// pump applies what the actuator proposes to the node's state, as Raft
// would, and applies the test's own commands (inject) between them.
func pump(t *testing.T, node *acttest.Node, st *fsm.State) (inject func(fsm.Command) *fsm.State) {
	t.Helper()
	in := make(chan fsm.Command)
	out := make(chan *fsm.State)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	node.SetState(st)
	var index uint64
	apply := func(cmd fsm.Command) {
		index++
		if next, err := fsm.Apply(st, index, cmd); err == nil {
			st = next
			node.SetState(st)
		}
	}
	go func() {
		defer close(done)
		seen := 0
		for {
			cmds := node.Proposed()
			for _, cmd := range cmds[seen:] {
				apply(cmd)
			}
			seen = len(cmds)
			select {
			case <-ctx.Done():
				return
			case cmd := <-in:
				apply(cmd)
				out <- st
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func(cmd fsm.Command) *fsm.State { in <- cmd; return <-out }
}

// A node given the role (with a stated data loss: the role's last Redis
// restarted empty) while its own Redis is already master, fresh and
// fenced, promotes it without changing its role, replication id or
// offset (0 while no replica ever connected). The report after the
// promotion must still come: the role's history starts at it. Before, none
// came, the history kept naming the previous Redis, and when this node was
// lost the state judged that history "lost everywhere" and promoted an
// unsynced replica at once, under unsynced_promotion never
// (redis-crash-unsynced, promoted-early).
func TestPromotionOfAMasterStartsTheHistory(t *testing.T) {
	addr := startRedis(t)
	node := acttest.New("n1")
	st := fsm.NewState()
	st.Spec = &spec.Spec{Roles: []spec.Role{{Name: "redis", Type: spec.TypeRedisMaster}}}
	st.Nodes = map[string]*fsm.Node{"n1": {ID: "n1", Redis: addr}, "n2": {ID: "n2", Redis: "127.0.0.1:1"}}
	// Released by n1 at epoch 1, whose Redis (run id "old") restarted.
	st.Assignments = map[string]*fsm.Assignment{"redis": {Role: "redis", Epoch: 1, LostBy: "n1",
		History: &fsm.RedisHistory{Node: "n1", ReplID: "0123456789abcdef0123456789abcdef01234567", RunID: "old", Epoch: 1}}}
	inject := pump(t, node, st)
	hour := time.Now().Add(time.Hour)
	node.SetAuthority(act.Authority{LeaseGen: 3, LeaseValid: true, LeaseUntil: hour})
	runActuator(t, node, addr)
	// Its Redis reported (a fenced master) before the assignment.
	var runID string
	start := time.Now()
	for {
		cur, _ := node.State()
		if rs, ok := cur.Redis["n1"]; ok && rs.Role == fsm.RedisMaster && rs.RunID != "" {
			runID = rs.RunID
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("no report of the fresh master")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the settings' report too
	after := inject(&fsm.Assign{Role: "redis", Node: "n1", HolderGen: 3, Epoch: 2, Time: time.Now().UnixMilli(),
		DataLoss: "n1's Redis restarted without the data of its replication history"})
	if a := after.Assignment("redis"); a.Holder != "n1" || a.Epoch != 2 {
		t.Fatalf("assignment %+v, want n1 at epoch 2", a)
	}
	start = time.Now()
	for {
		cur, _ := node.State()
		h := cur.Assignment("redis").History
		if h != nil && h.Node == "n1" && h.RunID == runID && h.Epoch == 2 {
			if cur.RedisHistoryGone(h) {
				t.Fatalf("history %+v judged lost while its Redis runs", h)
			}
			return
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("the role's history after n1 promoted its Redis (run id %s) at epoch 2: %+v; want that Redis at epoch 2", runID, h)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
