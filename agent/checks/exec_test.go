package checks

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/childenv"
	"github.com/harbormaster/harbormaster/internal/conf"
)

func execCheck(shell bool, timeout time.Duration, argv ...string) Config {
	return Config{Name: "script", Type: TypeExec, Argv: argv, Shell: shell, Timeout: conf.Duration(timeout), Interval: conf.Duration(10 * time.Second)}
}

func TestExecProbe(t *testing.T) {
	long := strings.Repeat("0123456789", 300) // 3000 bytes
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
		wantOut string
	}{
		{"exit 0 passes", execCheck(false, 2*time.Second, "true"), "", ""},
		{"output is kept", execCheck(false, 2*time.Second, "/bin/echo", "hello", "world"), "", "hello world\n"},
		{"exit 3 fails with the output's first line", execCheck(false, 2*time.Second, "/bin/sh", "-c", "echo; echo to stdout; echo to stderr >&2; exit 3"),
			"exit status 3: to stdout", "to stdout\nto stderr\n"},
		{"exit 1 without output", execCheck(false, 2*time.Second, "false"), "exit status 1", ""},
		{"shell runs a command line", execCheck(true, 2*time.Second, "echo hello | tr a-z A-Z; test -d /"), "", "HELLO\n"},
		{"shell failure", execCheck(true, 2*time.Second, "echo nope; exit 7"), "exit status 7: nope", "nope\n"},
		{"killed by a signal", execCheck(true, 2*time.Second, "kill -9 $$"), "signal: killed", ""},
		{"missing program", execCheck(false, 2*time.Second, "/nonexistent/check"), "start: fork/exec /nonexistent/check: no such file or directory", ""},
		{"program not in PATH", execCheck(false, 2*time.Second, "no-such-check-program"), `start: "no-such-check-program" not found in PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; give its absolute path, or set PATH in the env list`, ""},
		{"runs in /", execCheck(true, 2*time.Second, "pwd"), "", "/\n"},
		{"output bounded to its tail, error to 200 bytes of its start", execCheck(true, 2*time.Second, "printf "+long+"; echo END; exit 2"),
			"exit status 2: " + long[:197] + "...", "789END\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runProbe(t, tc.cfg)
			checkResult(t, r, tc.wantErr, tc.wantOut)
			if tc.wantOut != "" && !strings.HasSuffix(r.out, tc.wantOut) {
				t.Errorf("output %q does not end with %q", r.out, tc.wantOut)
			}
			if r.err != nil && len(r.err.Error()) > len("exit status 255: ")+maxSummary {
				t.Errorf("error is %d bytes, want at most the status and %d bytes of summary", len(r.err.Error()), maxSummary)
			}
		})
	}
}

// TestExecOutputStaysLocal: a failing program's error (which is
// replicated) carries the sanitized first line of its output only; the
// rest, a secret here, is in the local output alone.
func TestExecOutputStaysLocal(t *testing.T) {
	c := execCheck(true, 2*time.Second, `printf '\033[2Jdisk 91%%\tfull\nDB_PASSWORD=hunter2\n'; exit 1`)
	r := runProbe(t, c)
	if r.err == nil || r.err.Error() != "exit status 1: ?[2Jdisk 91% full" {
		t.Errorf("Probe: got error %v, want %q", r.err, "exit status 1: ?[2Jdisk 91% full")
	}
	if !strings.Contains(r.out, "DB_PASSWORD=hunter2") {
		t.Errorf("Probe: output %q, want the whole output kept locally", r.out)
	}
	s := State{LastErr: r.err.Error(), Output: r.out}
	errText, out := s.Report()
	if errText != "exit status 1: ?[2Jdisk 91% full" || out != "?[2Jdisk 91% full" {
		t.Errorf("Report: got %q, %q; want the error and the first line", errText, out)
	}
}

// TestExecEnv: the program sees PATH, its env list and nothing else of the
// agent's environment; a bare name is found in the program's PATH.
func TestExecEnv(t *testing.T) {
	t.Setenv("HM_TEST_SECRET", "hunter2")
	t.Setenv("HM_TEST_PASS", "passed through")
	t.Setenv("PATH", "/nonexistent") // the agent's PATH plays no part
	tests := []struct {
		name string
		env  []string
		argv []string
		want string
	}{
		{"nothing listed", nil, []string{"/usr/bin/env"}, "PATH=" + childenv.DefaultPath + "\n"},
		{"bare name in the default PATH", nil, []string{"env"}, "PATH=" + childenv.DefaultPath + "\n"},
		{"set, pass through, unset in the agent", []string{"FOO=bar", "HM_TEST_PASS", "HM_TEST_UNSET"}, []string{"env"},
			"PATH=" + childenv.DefaultPath + "\nFOO=bar\nHM_TEST_PASS=passed through\n"},
		{"PATH replaced", []string{"PATH=/usr/bin:/bin"}, []string{"env"}, "PATH=/usr/bin:/bin\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := execCheck(false, 2*time.Second, tc.argv...)
			c.Env = tc.env
			r := runProbe(t, c)
			if r.err != nil || r.out != tc.want {
				t.Errorf("Probe: got %q, %v; want exactly %q", r.out, r.err, tc.want)
			}
		})
	}
}

// gone reports whether process pid has exited: it no longer exists, or it
// is a zombie nobody reaped yet (the container's init may not reap).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

// readPid waits for a script to write its background child's pid to path.
func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, 2*time.Second, "the pid file "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	return pid
}

// TestExecTimeoutKillsGroup runs a script that starts a background
// grandchild and blocks: the probe ends by the check's timeout, before the
// script or the grandchild could end by themselves (each would then leave a
// marker file), and the grandchild dies with the script.
func TestExecTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile, scriptEnd, childEnd := dir+"/pid", dir+"/script-ended", dir+"/child-ended"
	r := runProbe(t, execCheck(true, 300*time.Millisecond,
		"echo started; (sleep 30; touch "+childEnd+") & echo $! > "+pidFile+"; sleep 30; touch "+scriptEnd))
	checkResult(t, r, "timed out after 300ms", "started\n")
	if r.err.Error() != "timed out after 300ms" {
		t.Errorf("Probe: got error %q, want exactly %q", r.err, "timed out after 300ms")
	}
	if exists(scriptEnd) {
		t.Errorf("the probe returned after the script ended by itself, want it cut short by the timeout")
	}
	pid := readPid(t, pidFile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	waitFor(t, 2*time.Second, "the background subshell "+strconv.Itoa(pid)+" to die", func() bool { return gone(pid) })
	if exists(childEnd) {
		t.Errorf("the background subshell ended by itself, want it killed with the script")
	}
}

// TestExecLeftovers runs scripts that exit while a background child still
// holds the output pipe: the probe returns without waiting for the child to
// end by itself (it would then leave a marker file), and the child is
// killed.
func TestExecLeftovers(t *testing.T) {
	dir := t.TempDir()
	pidFile, childEnd := dir+"/pid", dir+"/child-ended"
	r := runProbe(t, execCheck(true, 5*time.Second, "(sleep 30; touch "+childEnd+") & echo $! > "+pidFile+"; echo done"))
	checkResult(t, r, "", "done\n")
	if exists(childEnd) {
		t.Errorf("the probe returned after the background child ended by itself, want it to return when the script exits")
	}
	pid := readPid(t, pidFile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	waitFor(t, 2*time.Second, "the background subshell "+strconv.Itoa(pid)+" to die", func() bool { return gone(pid) })
	if exists(childEnd) {
		t.Errorf("the background subshell ended by itself, want it killed when the script exited")
	}
}

// TestExecEscapedChild runs a script whose child leaves the process group
// (setsid) and keeps the output pipe: the probe still returns after the
// script exits, while the child lives on. How soon (the output grace) is
// not asserted: a wall-clock bound fails under -race on a loaded machine.
func TestExecEscapedChild(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("needs setsid (util-linux)")
	}
	pidFile := t.TempDir() + "/pid"
	r := runProbe(t, execCheck(true, 5*time.Second, "setsid sh -c 'echo $$ > "+pidFile+"; exec sleep 30' & while [ ! -s "+pidFile+" ]; do sleep 0.01; done; echo bye"))
	pid := readPid(t, pidFile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	checkResult(t, r, "", "bye\n")
	if gone(pid) {
		t.Errorf("the setsid child %d is gone: the probe waited for the end of its output, or the test did not exercise an escaped child", pid)
	}
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
