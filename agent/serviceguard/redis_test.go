package serviceguard

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/chaos/labtest"
)

// startMaster starts a redis-server on a free loopback port, a master that
// takes writes (no fence), and returns a client of it once it answers.
func startMaster(t *testing.T) *redisctl.Client {
	t.Helper()
	labtest.RequireBin(t, "redis-server")
	port := labtest.FreePort(t)
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	cli, err := redisctl.New(redisctl.Config{Address: "127.0.0.1:" + strconv.Itoa(port)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	hang := time.Now().Add(10 * time.Second) // a hang guard, not a timing assertion
	for {
		if _, err := cli.Replication(context.Background()); err == nil {
			return cli
		}
		if time.Now().After(hang) {
			t.Fatal("redis-server did not answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fenced reports whether the Redis refuses writes (its write fence armed).
func fenced(t *testing.T, cli *redisctl.Client) bool {
	t.Helper()
	r, err := cli.Replication(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r.Paused
}

func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func redisSpec(addr string) Spec {
	return Spec{Role: "redis-master", StopTimeout: 2 * time.Second, Redis: &redisctl.Config{Address: addr}}
}

// TestRedisGuardOfAFrozenAgentFencesAtTheDeadline: the guard of a Redis
// master, a real process, arms the Redis's write fence at its deadline when
// its agent is frozen (SIGSTOP of the agent's process group, which the
// guard's own session escapes: the lab's pause-agent), not before; then it
// exits. Without it the Redis takes writes for as long as the agent is
// frozen (chaos seed 550006).
func TestRedisGuardOfAFrozenAgentFencesAtTheDeadline(t *testing.T) {
	cli := startMaster(t)
	deadline := Mono() + 1500*time.Millisecond
	agent, pid, _ := runFakeAgent(t, redisSpec(cli.Addr()), deadline, false)
	if err := syscall.Kill(-agent.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-agent.Process.Pid, syscall.SIGCONT)
	hang := time.Now().Add(20 * time.Second) // a hang guard, not a timing assertion
	for !fenced(t, cli) {
		if time.Now().After(hang) {
			t.Fatal("the guard did not fence the Redis of a frozen agent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if now := Mono(); now < deadline {
		t.Errorf("the guard fenced the Redis %s before its deadline", deadline-now)
	}
	for !gone(pid) {
		if time.Now().After(hang) {
			t.Fatalf("the guard (pid %d) did not exit after its fence", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRedisGuardWithoutADeadline: a guard kept ready (no deadline) does
// nothing while its agent runs, nothing when released, and fences the
// Redis at once when its agent dies before giving it a deadline (what the
// agent's own exit does to a master).
func TestRedisGuardWithoutADeadline(t *testing.T) {
	cli := startMaster(t)
	exe := testExe(t)
	g, err := Start(exe, redisSpec(cli.Addr()), os.Stderr, func() time.Duration { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if fenced(t, cli) {
		t.Fatal("a guard with no deadline fenced the Redis while its agent runs")
	}
	if err := g.Release(); err != nil {
		t.Fatal(err)
	}
	if fenced(t, cli) {
		t.Fatal("a released guard fenced the Redis")
	}

	// The agent dies (its end of the pipe closes) with no deadline given.
	g, err = Start(exe, redisSpec(cli.Addr()), os.Stderr, func() time.Duration { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.w.Close()
	g.w = nil
	g.mu.Unlock()
	select {
	case <-g.Done():
	case <-time.After(20 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("the guard did not exit after its agent went")
	}
	if !fenced(t, cli) {
		t.Fatal("the guard of an agent that died with no deadline did not fence the Redis")
	}
}

// TestRedisGuardRetriesUntilTheRedisAnswers: the fence is retried while
// the Redis refuses connections, and the error says so when it never
// answers within the stop timeout.
func TestRedisGuardRetriesUntilTheRedisAnswers(t *testing.T) {
	port := labtest.FreePort(t)
	back, err := newRedisFence(redisctl.Config{Address: "127.0.0.1:" + strconv.Itoa(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = back.Stop(ctx, Spec{}.Env)
	if err == nil || !strings.Contains(err.Error(), "write fence not armed after") {
		t.Fatalf("Stop on a Redis that is not there = %v; want the fence not armed after several attempts", err)
	}
	if n := strings.Fields(strings.SplitAfter(err.Error(), "after ")[1])[0]; n == "1" {
		t.Errorf("one attempt in 300 ms: %v", err)
	}
}

// TestRedisSpecIsValidated: a Redis guard's spec names the field at fault.
func TestRedisSpecIsValidated(t *testing.T) {
	s := redisSpec("localhost")
	err := s.validate()
	if err == nil || !strings.Contains(err.Error(), "redis.address") {
		t.Fatalf("validate = %v; want an error naming redis.address", err)
	}
}
