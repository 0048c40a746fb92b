package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/childenv"
)

// writeScript writes an executable sh script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// sh is the argv of an inline shell script.
func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

// readPID reads a pid a hook wrote into path, waiting up to 2 s for it.
func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && bytes.HasSuffix(b, []byte("\n")) {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("%s holds %q, not a pid", path, b)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s after 2s (err %v)", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs. A zombie counts as dead: the init of some
// containers never reaps the orphans a killed hook leaves.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// waitGone fails the test unless pid dies within 2 s.
func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still runs 2s after the timeout", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killInCleanup kills a daemon the test started, whatever happens.
func killInCleanup(t *testing.T, pid int) {
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
}

// TestHooksPassEnvAndArgv: a hook gets its argv as is, runs in /, and sees
// exactly PATH, its env list and the HARBORMASTER_* variables: nothing else
// of the agent's environment (HM_SERVICE_TEST_SECRET), and the agent's own
// HARBORMASTER_EPOCH is replaced.
func TestHooksPassEnvAndArgv(t *testing.T) {
	t.Setenv("HM_SERVICE_TEST_SECRET", "hunter2")
	t.Setenv("HM_SERVICE_TEST_PASS", "passed through")
	t.Setenv("HARBORMASTER_EPOCH", "stale value of the agent")
	dir := t.TempDir()
	// env | sort: the whole environment, less PWD, which dash exports itself.
	rec := writeScript(t, dir, "rec.sh", `out="$1"; shift
{
  env | grep -v '^PWD=' | sort
  echo "pwd=$(pwd)"
  for a in "$@"; do echo "arg=$a"; done
} > "$out"
`)
	argv := func(action string) []string {
		return []string{rec, filepath.Join(dir, action+".out"), action, "two words", "$HOME;`id`"}
	}
	h := NewHooks(Config{Start: argv("start"), Stop: argv("stop"), Status: argv("status"),
		Env: []string{"TZ=UTC", "HM_SERVICE_TEST_PASS", "HM_SERVICE_TEST_UNSET"}})
	env := Env{Role: "notary", Node: "n1", Epoch: 18446744073709551615}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	calls := map[string]func() error{
		"start": func() error { return h.Start(ctx, env) },
		"stop":  func() error { return h.Stop(ctx, env) },
		"status": func() error {
			active, err := h.Status(ctx, env)
			if err == nil && !active {
				return errors.New("status hook exited 0 but Status reported inactive")
			}
			return err
		},
	}
	for action, call := range calls {
		t.Run(action, func(t *testing.T) {
			if err := call(); err != nil {
				t.Fatalf("%s: %v", action, err)
			}
			got, err := os.ReadFile(filepath.Join(dir, action+".out"))
			if err != nil {
				t.Fatalf("the %s hook did not run: %v", action, err)
			}
			want := "HARBORMASTER_EPOCH=18446744073709551615\nHARBORMASTER_NODE=n1\nHARBORMASTER_ROLE=notary\n" +
				"HM_SERVICE_TEST_PASS=passed through\nPATH=" + childenv.DefaultPath + "\nTZ=UTC\npwd=/\n" +
				"arg=" + action + "\narg=two words\narg=$HOME;`id`\n"
			if string(got) != want {
				t.Fatalf("the %s hook saw\n%s\nwant\n%s", action, got, want)
			}
		})
	}
}

func TestHookFailureReportsStatusAndOutputTail(t *testing.T) {
	dir := t.TempDir()
	fail := writeScript(t, dir, "fail.sh", `echo HEAD-MARKER
i=0; while [ $i -lt 300 ]; do echo "filler line $i ........................"; i=$((i+1)); done
echo "notary: config invalid" >&2
exit 2
`)
	h := NewHooks(Config{Start: []string{fail}, Stop: []string{fail}})
	err := h.Start(context.Background(), Env{Role: "notary", Node: "n1", Epoch: 1})
	if err == nil {
		t.Fatal("Start of a hook exiting 2 succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"start hook", fail, "exited with status 2", "notary: config invalid", "filler line 299"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "HEAD-MARKER") {
		t.Errorf("error holds the head of a 12 KB output; want only its last 4 KiB")
	}
	if len(msg) > outputTail+200 {
		t.Errorf("error is %d bytes long; want the output bounded to %d", len(msg), outputTail)
	}
	if errors.Is(err, ErrTimeout) {
		t.Errorf("a failing hook's error wraps ErrTimeout: %v", err)
	}
}

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"empty", nil, ""},
		{"blank", []string{" \n"}, ""},
		{"fits", []string{"ab", "cd\n"}, ": abcd"},
		{"exactly full", []string{"abcd", "efgh"}, ": abcdefgh"},
		{"overflow across writes", []string{"abcdef", "ghij"}, ": ...cdefghij"},
		{"one big write", []string{"0123456789"}, ": ...23456789"},
		{"big write after small", []string{"xy", "abcdefgh"}, ": ...abcdefgh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &tailBuffer{max: 8}
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := b.suffix(); got != tt.want {
				t.Fatalf("suffix() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHookStatusExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		status     []string
		wantActive bool
		wantErr    string // "" means no error
	}{
		{"exit 0 is active", sh("exit 0"), true, ""},
		{"exit 3 is inactive", sh("exit 3"), false, ""},
		{"exit 1 is an error", sh("echo cannot tell; exit 1"), false, "exited with status 1 (want 0 for active or 3 for inactive): cannot tell"},
		{"exit 4 is an error", sh("exit 4"), false, "exited with status 4"},
		{"killed by a signal is an error", sh("kill -TERM $$"), false, "killed by signal terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHooks(Config{Start: sh("exit 0"), Stop: sh("exit 0"), Status: tt.status})
			active, err := h.Status(context.Background(), Env{Role: "notary", Node: "n1", Epoch: 1})
			if tt.wantErr == "" {
				if err != nil || active != tt.wantActive {
					t.Fatalf("Status() = %v, %v; want %v, nil", active, err, tt.wantActive)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Status() = %v, %v; want an error containing %q", active, err, tt.wantErr)
			}
			if active {
				t.Fatalf("Status() reported active along with error %v", err)
			}
		})
	}

	t.Run("no status hook", func(t *testing.T) {
		h := NewHooks(Config{Start: sh("exit 0"), Stop: sh("exit 0")})
		if _, err := h.Status(context.Background(), Env{}); !errors.Is(err, ErrNoStatus) {
			t.Fatalf("Status() without a status hook = %v, want ErrNoStatus", err)
		}
	})
	t.Run("exit 3 of start is an error", func(t *testing.T) {
		h := NewHooks(Config{Start: sh("exit 3"), Stop: sh("exit 0")})
		if err := h.Start(context.Background(), Env{}); err == nil || !strings.Contains(err.Error(), "exited with status 3") {
			t.Fatalf("Start() of a hook exiting 3 = %v, want an error", err)
		}
	})
}

func TestStopTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	hookPID, childPID := filepath.Join(dir, "hook.pid"), filepath.Join(dir, "child.pid")
	h := NewHooks(Config{Start: sh("exit 0"), Stop: sh(fmt.Sprintf(
		"echo $$ > '%s'; sleep 60 & echo $! > '%s'; echo waiting for notary; sleep 60", hookPID, childPID))})

	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// The hook would run for 60 s: returning within the liveness wait
	// proves Stop killed it rather than waited it out.
	done := make(chan error, 1)
	go func() { done <- h.Stop(ctx, Env{Role: "notary", Node: "n1", Epoch: 7}) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop() still waits for the hung hook 10s after its 300ms timeout")
	}
	took := time.Since(begin)

	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop() of a hung hook = %v, want ErrTimeout and context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "stop hook") || !strings.Contains(err.Error(), "timed out after 300ms; killed its process group") {
		t.Errorf("error %q does not say which hook timed out after how long", err)
	}
	if !strings.HasSuffix(err.Error(), ": waiting for notary") {
		t.Errorf("error %q does not end with the hook's output", err)
	}
	if took < 300*time.Millisecond {
		t.Errorf("Stop() returned after %v, before its 300ms timeout", took)
	}
	waitGone(t, "the stop hook", readPID(t, hookPID))
	waitGone(t, "the stop hook's background child", readPID(t, childPID))
}

func TestStartLeavesDaemonRunning(t *testing.T) {
	tests := []struct {
		name   string
		script string // %s is the pid file
	}{
		{"daemon output redirected", "sleep 60 >/dev/null 2>&1 & echo $! > '%s'"},
		{"daemon keeps the hook's stdout", "sleep 60 & echo $! > '%s'; echo started"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "daemon.pid")
			h := NewHooks(Config{Start: sh(fmt.Sprintf(tt.script, pidFile)), Stop: sh("exit 0")})
			// A Start the daemon held (by its output pipe) would return
			// only once the daemon exits (60 s), or fail with ErrTimeout
			// when ctx ends, the daemon killed: success, within the
			// liveness wait, with the daemon alive proves it did not.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			done := make(chan error, 1)
			go func() { done <- h.Start(ctx, Env{Role: "notary", Node: "n1", Epoch: 1}) }()
			pid := readPID(t, pidFile)
			killInCleanup(t, pid)
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Start() still waits 10s later: the daemon holds it")
			}
			if err != nil {
				t.Fatalf("Start() = %v, want it back before its 5s timeout: the daemon must not hold it", err)
			}
			if !alive(pid) {
				t.Fatalf("the daemon (pid %d) died before Start returned", pid)
			}
			// The end of the call's context must not reach the daemon either.
			cancel()
			time.Sleep(100 * time.Millisecond)
			if !alive(pid) {
				t.Fatalf("the daemon (pid %d) died after Start returned", pid)
			}
		})
	}
}

func TestStopTimeoutSparesStartDaemon(t *testing.T) {
	dir := t.TempDir()
	daemonPID, childPID := filepath.Join(dir, "daemon.pid"), filepath.Join(dir, "child.pid")
	h := NewHooks(Config{
		Start: sh(fmt.Sprintf("sleep 60 >/dev/null 2>&1 & echo $! > '%s'", daemonPID)),
		Stop:  sh(fmt.Sprintf("sleep 60 & echo $! > '%s'; sleep 60", childPID)),
	})
	env := Env{Role: "notary", Node: "n1", Epoch: 3}
	if err := h.Start(context.Background(), env); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	daemon := readPID(t, daemonPID)
	killInCleanup(t, daemon)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := h.Stop(ctx, env); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Stop() of a hung hook = %v, want ErrTimeout", err)
	}
	waitGone(t, "the stop hook's child", readPID(t, childPID))
	if !alive(daemon) {
		t.Fatalf("the daemon of the start hook (pid %d) died when the stop hook's group was killed", daemon)
	}
}

func TestHookCanceled(t *testing.T) {
	dir := t.TempDir()
	childPID := filepath.Join(dir, "child.pid")
	h := NewHooks(Config{Start: sh(fmt.Sprintf("sleep 60 & echo $! > '%s'; wait", childPID)), Stop: sh("exit 0")})
	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(200*time.Millisecond, cancel)
	defer stop.Stop()

	err := h.Start(ctx, Env{Role: "notary", Node: "n1", Epoch: 1})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Start() canceled = %v, want ErrTimeout and context.Canceled", err)
	}
	if !strings.Contains(err.Error(), "was canceled after") {
		t.Errorf("error %q does not say the hook was canceled", err)
	}
	waitGone(t, "the start hook's child", readPID(t, childPID))
}

func TestHookNotRunWhenContextDone(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	h := NewHooks(Config{Start: sh("exit 0"), Stop: sh(fmt.Sprintf("touch '%s'", marker))})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := h.Stop(ctx, Env{})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "not run") {
		t.Fatalf("Stop() with a done context = %v, want ErrTimeout saying the hook did not run", err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the hook ran with a done context (stat: %v)", err)
	}
}

// TestHookBareNameInHookPath: a bare program name is looked up in the
// hook's PATH (here set by the env list), not the agent's.
func TestHookBareNameInHookPath(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	writeScript(t, dir, "hm-test-hook", fmt.Sprintf("touch '%s'\n", marker))
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	h := NewHooks(Config{Start: []string{"hm-test-hook"}, Stop: sh("exit 0")})
	if err := h.Start(context.Background(), Env{}); err == nil || !strings.Contains(err.Error(), "not found in PATH "+childenv.DefaultPath) {
		t.Fatalf("Start() with the program in the agent's PATH only = %v, want not found in the default PATH", err)
	}
	h = NewHooks(Config{Start: []string{"hm-test-hook"}, Stop: sh("exit 0"), Env: []string{"PATH=/usr/bin:" + dir}})
	if err := h.Start(context.Background(), Env{}); err != nil {
		t.Fatalf("Start() with the program in the hook's PATH: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
}

func TestHookCannotRun(t *testing.T) {
	h := NewHooks(Config{Start: []string{"/nonexistent/notary-ctl", "start"}, Stop: []string{"no-such-program-in-path"}})
	if err := h.Start(context.Background(), Env{}); err == nil || errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "cannot be run") {
		t.Fatalf("Start() of a missing program = %v, want a non-timeout error saying it cannot be run", err)
	}
	if err := h.Stop(context.Background(), Env{}); err == nil || errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "cannot be run") {
		t.Fatalf("Stop() of a program not in PATH = %v, want a non-timeout error saying it cannot be run", err)
	}
}
