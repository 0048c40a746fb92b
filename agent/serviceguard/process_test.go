package serviceguard

import (
	"bufio"
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
	select {} // until killed
}

// TestGuardOutlivesKilledAgent: a real guard process survives the SIGKILL
// of its agent's whole process group, ignores SIGTERM, and runs the
// service's real stop hook at the deadline, with the instance's env.
func TestGuardOutlivesKilledAgent(t *testing.T) {
	dir := t.TempDir()
	stopped := filepath.Join(dir, "stopped")
	hook := writeScript(t, dir, "stop", fmt.Sprintf("echo \"$HARBORMASTER_ROLE $HARBORMASTER_NODE $HARBORMASTER_EPOCH\" > %s.tmp && mv %s.tmp %s\n", stopped, stopped, stopped))
	spec, deadline := testSpec(), Mono()+1500*time.Millisecond
	spec.Service.Stop = []string{hook}
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
	agent.Stderr = os.Stderr
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = agent.Process.Kill()
		_ = agent.Wait()
		t.Fatalf("the fake agent printed no guard pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "guard ")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	// kill -9 of the agent's process group, then SIGTERM to the guard.
	if err := syscall.Kill(-agent.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("the guard (pid %d) is gone with its agent: %v", pid, err)
	}

	var got []byte
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
