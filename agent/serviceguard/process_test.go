package serviceguard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary plays both processes: with Args it is the guard (as
// `harbormaster internal service-guard`), and with envAgent set it is the
// agent: it starts a guard of the spec in envAgent, prints the guard's pid
// and waits to be killed.
const envAgent = "HM_SERVICEGUARD_TEST_AGENT"

// envDeadline is the fake agent's lease end (CLOCK_MONOTONIC ns).
const envDeadline = "HM_SERVICEGUARD_TEST_DEADLINE"

func TestMain(m *testing.M) {
	if slices.Equal(os.Args[1:], Args) {
		if err := Main(os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if s := os.Getenv(envAgent); s != "" {
		os.Exit(fakeAgent(s))
	}
	os.Exit(m.Run())
}

func fakeAgent(specJSON string) int {
	var spec Spec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dl, err := strconv.ParseInt(os.Getenv(envDeadline), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	g, err := Start(exe, spec, os.Stderr, func() time.Duration { return time.Duration(dl) })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("guard %d\n", g.PID())
	if os.Getenv(envStart) != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := g.Start(ctx)
		cancel()
		fmt.Printf("start: %v\n", err)
	}
	select {} // until killed
}

// envStart makes the fake agent start the service through its guard.
const envStart = "HM_SERVICEGUARD_TEST_START"

// TestGuardOutlivesKilledAgent: a real guard process survives the SIGKILL
// of its agent's whole process group, shrugs off SIGTERM, and runs the
// service's real stop hook at the deadline, with the instance's env.
func TestGuardOutlivesKilledAgent(t *testing.T) {
	dir := t.TempDir()
	stopped := filepath.Join(dir, "stopped")
	hook := writeScript(t, dir, "stop", fmt.Sprintf("echo \"$HARBORMASTER_ROLE $HARBORMASTER_NODE $HARBORMASTER_EPOCH\" > %s.tmp && mv %s.tmp %s\n", stopped, stopped, stopped))
	spec, deadline := testSpec(), Mono()+1500*time.Millisecond
	spec.Service.Stop = []string{hook}
	agent, pid, _ := runFakeAgent(t, spec, deadline, false)

	// kill -9 of the agent's process group, then SIGTERM to the guard.
	if err := syscall.Kill(-agent.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("the guard (pid %d) is gone with its agent: %v", pid, err)
	}

	var got []byte
	var err error
	hang := time.Now().Add(20 * time.Second) // a hang guard, not a timing assertion
	for {
		got, err = os.ReadFile(stopped)
		if err == nil {
			break
		}
		if time.Now().After(hang) {
			t.Fatalf("the guard did not run the stop hook: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if now := Mono(); now < deadline {
		t.Errorf("the stop hook ran %s before the deadline", deadline-now)
	}
	if want := "notary n1 7"; strings.TrimSpace(string(got)) != want {
		t.Errorf("the stop hook saw %q, want %q", strings.TrimSpace(string(got)), want)
	}
	// The guard exits after its stop (a zombie until init reaps it).
	for !gone(pid) {
		if time.Now().After(hang) {
			t.Fatalf("the guard (pid %d) did not exit after its stop", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reports whether pid has exited (or is a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// runFakeAgent starts the fake agent with spec and deadline (and a start
// through the guard when start is set) in a process group of its own, and
// returns it with the guard's pid and a reader of the rest of its output.
func runFakeAgent(t *testing.T, spec Spec, deadline time.Duration, start bool) (*exec.Cmd, int, *bufio.Reader) {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(exe)
	agent.Env = append(os.Environ(), envAgent+"="+string(b), fmt.Sprintf("%s=%d", envDeadline, int64(deadline)))
	if start {
		agent.Env = append(agent.Env, envStart+"=1")
	}
	agent.Stderr = os.Stderr
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-agent.Process.Pid, syscall.SIGKILL); _ = agent.Wait() })
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("the fake agent printed no guard pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "guard ")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return agent, pid, r
}

func waitFile(t *testing.T, path string) string {
	t.Helper()
	hang := time.Now().Add(20 * time.Second) // a hang guard, not a timing assertion
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(hang) {
			t.Fatalf("no %s: %v", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// groupAlive reports whether any process (not a zombie) is in process
// group pgid.
func groupAlive(pgid int) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true
		}
	}
	return false
}

// TestKilledAgentsStartEndsBeforeTheGuardsStop is chaos seed 147025 with
// real processes: the agent is killed while its start hook is still on its
// way to launching the service (slowly, as on a busy machine). The guard
// kills the start hook's process group before it runs the stop hook, so no
// instance comes up after the stop.
func TestKilledAgentsStartEndsBeforeTheGuardsStop(t *testing.T) {
	dir := t.TempDir()
	began, launched, stopped := filepath.Join(dir, "began"), filepath.Join(dir, "launched"), filepath.Join(dir, "stopped")
	spec := testSpec()
	spec.Service.Start = []string{writeScript(t, dir, "start", fmt.Sprintf(
		"echo $$ > %[1]s.tmp && mv %[1]s.tmp %[1]s\nsleep 2\nsleep 300 &\necho $! > %[2]s\n", began, launched))}
	spec.Service.Stop = []string{writeScript(t, dir, "stop", fmt.Sprintf("echo stopped > %s\n", stopped))}
	agent, guard, _ := runFakeAgent(t, spec, Mono()+time.Second, true)
	hookPG, err := strconv.Atoi(waitFile(t, began))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-agent.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	waitFile(t, stopped)
	hang := time.Now().Add(20 * time.Second) // a hang guard, not a timing assertion
	for !gone(guard) {
		if time.Now().After(hang) {
			t.Fatalf("the guard (pid %d) did not exit after its stop", guard)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if groupAlive(hookPG) {
		t.Fatalf("the start hook's process group %d outlived the guard's stop", hookPG)
	}
	if b, err := os.ReadFile(launched); err == nil {
		t.Fatalf("the start hook launched the service (pid %s) after the guard's stop", strings.TrimSpace(string(b)))
	}
}

// TestServiceStartedByTheGuardStopsOnSIGTERM: the guard catches SIGTERM
// and SIGHUP rather than ignoring them, because an ignored signal stays
// ignored across exec, and the service its start hook launches must still
// stop on SIGTERM.
func TestServiceStartedByTheGuardStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	launched := filepath.Join(dir, "launched")
	spec := testSpec()
	spec.Service.Start = []string{writeScript(t, dir, "start", fmt.Sprintf("sleep 300 &\necho $! > %s\n", launched))}
	_, _, out := runFakeAgent(t, spec, Mono()+time.Minute, true)
	line, err := out.ReadString('\n')
	if err != nil || line != "start: <nil>\n" {
		t.Fatalf("start through the guard: %q %v", line, err)
	}
	pid, err := strconv.Atoi(waitFile(t, launched))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
				if mask&(1<<(uint(sig)-1)) != 0 {
					t.Errorf("the service ignores %v (SigIgn %s)", sig, strings.TrimSpace(v))
				}
			}
			return
		}
	}
	t.Fatal("no SigIgn in /proc/PID/status")
}

// TestGuardOfAnOlderVersion: a guard that answers "ready" without "proto 2"
// (the binary downgraded under a running agent) cannot run starts: Start
// says ErrNoStart at once, and the agent runs the start itself.
func TestGuardOfAnOlderVersion(t *testing.T) {
	old := writeScript(t, t.TempDir(), "old-guard", "read spec\necho ready\nexec cat >/dev/null\n")
	g, err := Start(old, testSpec(), os.Stderr, func() time.Duration { return Mono() + time.Minute })
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Start(ctx); !errors.Is(err, ErrNoStart) {
		t.Fatalf("Start through an old guard = %v, want ErrNoStart", err)
	}
}
