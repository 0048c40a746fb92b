package scenario

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunStandIn(t *testing.T) {
	dir := t.TempDir()
	log, pidFile := filepath.Join(dir, "services.log"), filepath.Join(dir, "notary.pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunStandIn(ctx, StandInConfig{Role: "notary", Node: "n1", Epoch: 7, Log: log, PIDFile: pidFile, Beat: 10 * time.Millisecond})
	}()
	sl := NewServiceLog(log)
	if !poll(context.Background(), 2*time.Second, func() bool { _, err := os.Stat(pidFile); return err == nil }) {
		t.Fatal("no pid file")
	}
	if !poll(context.Background(), 2*time.Second, func() bool {
		_, ok := sl.Active("notary", "n1", 7, 50*time.Millisecond)
		return ok
	}) {
		t.Fatal("the stand-in is not active in its log")
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file after the stop: %v, want it removed", err)
	}
	insts, err := sl.Instances()
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 1 {
		t.Fatalf("%d instances, want 1: %v", len(insts), insts)
	}
	in := insts[0]
	if in.Role != "notary" || in.Node != "n1" || in.Epoch != 7 || in.PID != os.Getpid() || !in.Stopped || !in.End.After(in.Start) {
		t.Errorf("instance %+v, want notary on n1 at epoch 7, this pid, stopped after it started", in)
	}
	if bad := sl.TakeMalformed(); len(bad) > 0 {
		t.Errorf("malformed lines: %q", bad)
	}
}

// logLines writes a service log from (kind, role, node, epoch, ms, pid).
func logLines(t *testing.T, base time.Time, lines ...string) *ServiceLog {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		var kind, role, node string
		var epoch, msec, pid int
		if _, err := fmt.Sscan(l, &kind, &role, &node, &epoch, &msec, &pid); err != nil {
			t.Fatalf("test line %q: %v", l, err)
		}
		fmt.Fprintf(&b, "%s %s %s %d %d %d\n", kind, role, node, epoch, base.Add(time.Duration(msec)*time.Millisecond).UnixNano(), pid)
	}
	p := filepath.Join(t.TempDir(), "services.log")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return NewServiceLog(p)
}

func TestCheckInstances(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name  string
		lines []string
		from  time.Duration
		want  []string // substrings, one per violation, in order
	}{
		{"hand-over after a stop", []string{
			"start notary n1 1 0 10", "beat notary n1 1 20 10", "stop notary n1 1 30 10",
			"start notary n2 2 2500 20", "beat notary n2 2 2520 20",
			"start clair n2 1 0 30", "beat clair n2 1 2600 30"}, 0, nil},
		{"killed holder, next one after its last beat", []string{
			"start notary n1 1 0 10", "beat notary n1 1 20 10",
			"start notary n2 2 21 20"}, 0, nil},
		{"killed holder still beating when the next one starts", []string{
			"start notary n1 1 0 10", "beat notary n1 1 20 10",
			"start notary n2 2 15 20", "beat notary n1 1 40 10"}, 0,
			[]string{"two actives of notary, said by the services themselves: notary on n1 (epoch 1, pid 10, start " +
				stamp(base) + ", last beat " + stamp(base.Add(40*time.Millisecond)) + ") and notary on n2 (epoch 2, pid 20, start " +
				stamp(base.Add(15*time.Millisecond)) + ", last beat " + stamp(base.Add(15*time.Millisecond)) + ") overlap (by at least 0ms)"}},
		{"a stop line after the next start", []string{
			"start notary n1 1 0 10", "start notary n2 2 100 20", "stop notary n1 1 150 10", "beat notary n2 2 160 20"}, 0,
			[]string{"overlap (by at least 50ms)"}},
		{"overlap before the window is not reported again", []string{
			"start notary n1 1 0 10", "start notary n2 2 100 20", "stop notary n1 1 150 10"}, 120 * time.Millisecond, nil},
		{"other roles may overlap", []string{
			"start notary n1 1 0 10", "start clair n2 1 10 20", "beat notary n1 1 30 10", "beat clair n2 1 30 20"}, 0, nil},
		{"a new holder without a greater epoch", []string{
			"start notary n1 3 0 10", "stop notary n1 3 10 10", "start notary n2 3 100 20"}, 0,
			[]string{"S2: notary on n2 (epoch 3"}},
		{"a restart on the same node at its epoch", []string{
			"start notary n1 3 0 10", "stop notary n1 3 10 10", "start notary n1 3 100 20"}, 0, nil},
		{"epochs backwards on one node", []string{
			"start notary n1 3 0 10", "stop notary n1 3 10 10", "start notary n1 2 100 20"}, 0,
			[]string{"epochs went backwards"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			insts, err := logLines(t, base, tc.lines...).Instances()
			if err != nil {
				t.Fatal(err)
			}
			got := checkInstances(insts, base.Add(tc.from))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d violations %q, want %d %q", len(got), got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("violation %d: %q, want it to contain %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestServiceLogIncremental(t *testing.T) {
	p := filepath.Join(t.TempDir(), "services.log")
	l := NewServiceLog(p)
	if insts, err := l.Instances(); err != nil || len(insts) != 0 {
		t.Fatalf("missing log: %v %v, want no instance and no error", insts, err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	now := time.Now().UnixNano()
	fmt.Fprintf(f, "start notary n1 1 %d 10\nbeat notary n1 1 %d", now, now+1e6) // the beat is not finished
	insts, _ := l.Instances()
	if len(insts) != 1 || !insts[0].End.Equal(insts[0].Start) {
		t.Fatalf("after a partial line: %v", insts)
	}
	fmt.Fprintf(f, " 10\nbeat clair n1 1 %d 99\ngarbage\n", now+2e6)
	insts, _ = l.Instances()
	if len(insts) != 1 || insts[0].End.Sub(insts[0].Start) != time.Millisecond {
		t.Fatalf("after the line was finished: %v", insts)
	}
	if bad := l.TakeMalformed(); len(bad) != 2 {
		t.Errorf("malformed: %q, want the orphan beat and the garbage", bad)
	}
	if bad := l.TakeMalformed(); len(bad) != 0 {
		t.Errorf("malformed lines reported twice: %q", bad)
	}
}

// TestStandInHooksSerializeStartAndStop: a stop hook run while a start hook
// is still launching the stand-in (the service guard does this when the
// agent froze mid-start) waits for the start and stops what it launched; a
// stop that ran first would find no pid file, and the stand-in would start
// after it, unwatched (two instances on one node, found by the chaos
// matrix).
func TestStandInHooksSerializeStartAndStop(t *testing.T) {
	dir := t.TempDir()
	// A fake harbormaster-lab whose `internal service` takes 300 ms to
	// write its pid file, then runs until killed.
	fake := filepath.Join(dir, "fake-lab")
	body := `#!/bin/sh
pid_file=""
while [ $# -gt 0 ]; do
	if [ "$1" = "--pid-file" ]; then pid_file=$2; fi
	shift
done
sleep 0.3
echo $$ >"$pid_file"
while :; do sleep 0.05; done
`
	if err := os.WriteFile(fake, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	hooks := filepath.Join(dir, "hooks.sh")
	if err := os.WriteFile(hooks, []byte(fmt.Sprintf(standInScript, shellQuote(dir), shellQuote(fake), shellQuote(filepath.Join(dir, "services.log")))), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HARBORMASTER_ROLE=notary", "HARBORMASTER_NODE=n1", "HARBORMASTER_EPOCH=3")
	hook := func(arg string) *exec.Cmd {
		c := exec.Command("/bin/sh", hooks, arg)
		c.Env = env
		return c
	}
	start := hook("start")
	if err := start.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the start is launching the stand-in
	if out, err := hook("stop").CombinedOutput(); err != nil {
		t.Fatalf("stop hook: %v: %s", err, out)
	}
	if err := start.Wait(); err != nil {
		t.Fatalf("start hook: %v", err)
	}
	// Whatever the start launched, the stop must have stopped it.
	out, _ := exec.Command("pgrep", "-f", fake+" internal service").Output()
	if pids := strings.Fields(string(out)); len(pids) > 0 {
		for _, p := range pids {
			_ = exec.Command("kill", p).Run()
		}
		t.Fatalf("the stand-in %v runs after start and a concurrent stop: the hooks race", pids)
	}
}
