package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/proccluster"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// procConfigCopies copies the loopback configs into dir with absolute
// tls and spec_file paths, so that tests can rewrite them, and returns
// their paths and a function that rewrites one (the base document plus
// extra lines, with old replaced by new in it).
func procConfigCopies(t *testing.T, dir string) (paths []string, write func(path, extra string, replace ...string)) {
	t.Helper()
	root, err := proccluster.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proccluster.LoopbackCerts(); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "testdata", "loopback")
	base := map[string]string{}
	for _, n := range []string{"n1", "n2", "n3"} {
		b, err := os.ReadFile(filepath.Join(src, n+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		doc := strings.ReplaceAll(string(b), " tls/", " "+filepath.Join(src, "tls")+"/")
		doc = strings.ReplaceAll(doc, "spec_file: spec.yaml", "spec_file: "+filepath.Join(src, "spec.yaml"))
		p := filepath.Join(dir, n+".yaml")
		base[p] = doc
		paths = append(paths, p)
	}
	write = func(path, extra string, replace ...string) {
		t.Helper()
		doc := base[path]
		for i := 0; i+1 < len(replace); i += 2 {
			doc = strings.ReplaceAll(doc, replace[i], replace[i+1])
		}
		if err := os.WriteFile(path, []byte(doc+extra), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range paths {
		write(p, "")
	}
	return paths, write
}

// procReload: SIGHUP applies a new check and log level to a running role
// holder without moving its roles (same holders, same epochs), registers
// the check and records a config-reloaded event; a config that changes
// api_addr, and one that does not validate, are refused while the agent
// runs on; SIGUSR1 is ignored.
func procReload(t *testing.T, bin string) {
	dir := t.TempDir()
	configs, write := procConfigCopies(t, dir)
	admin, err := proccluster.LoopbackCerts()
	if err != nil {
		t.Fatal(err)
	}
	c := procCluster(t, proccluster.Options{Binary: bin, Dir: dir, Configs: configs, ClientTLS: &admin})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(ctx, ""); err != nil {
		t.Fatalf("no leader: %v", err)
	}
	before, err := procAgreedRoles(ctx, c, 2)
	if err != nil {
		t.Fatalf("roles not held: %v", err)
	}
	// The node reloaded is a role holder.
	id := before.Roles[0].Holder
	t.Logf("reloading %s, roles %s", id, procRolesKey(before))
	node, _ := c.Node(id)
	pid := c.PID(id)
	hup := func(sig syscall.Signal) {
		t.Helper()
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatalf("signal %s: %v", sig, err)
		}
	}
	// waitLog waits for the n-th occurrence of s in the node's log.
	waitLog := func(s string, n int) {
		t.Helper()
		err := procPoll(ctx, 20*time.Millisecond, func() error {
			l, err := c.ReadLog(id)
			if err != nil {
				return err
			}
			if got := strings.Count(l, s); got < n {
				return fmt.Errorf("%q %d times in the log of %s, want %d", s, got, id, n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	events, err := procWatch(ctx, c, id)
	if err != nil {
		t.Fatal(err)
	}

	// 1. A new check and log_level debug: applied.
	write(node.Config, "log_level: debug\nchecks:\n  - {name: alive, type: exec, argv: [/bin/true], interval: 200ms}\n")
	hup(syscall.SIGHUP)
	err = procPoll(ctx, 20*time.Millisecond, func() error {
		st, err := c.Status(ctx, id)
		if err != nil {
			return err
		}
		for _, m := range st.Members {
			if m.Id != id {
				continue
			}
			for _, ch := range m.Checks {
				if ch.Name == "alive" && ch.State == "passing" {
					return nil
				}
			}
			return fmt.Errorf("member %s checks %v, want alive passing", id, m.Checks)
		}
		return fmt.Errorf("member %s not listed", id)
	})
	if err != nil {
		t.Fatalf("reloaded check not registered: %v", err)
	}
	waitLog("config reloaded", 1)
	waitLog("level=DEBUG", 1)
	// The event, and the check's first verdict (which may come after it).
	var reloaded *hmv1.Event
	alivePassing := false
	for e := range events {
		switch {
		case e.Kind == "config-reloaded":
			reloaded = e.Event
		case e.Kind == "check" && e.Node == id && e.Message == "alive passing":
			alivePassing = true
		}
		if reloaded != nil && alivePassing {
			break
		}
	}
	if reloaded == nil || reloaded.Node != id || reloaded.Message != "config reloaded: checks +alive, log_level debug" {
		t.Fatalf("config-reloaded event %+v, want node %s: config reloaded: checks +alive, log_level debug", reloaded, id)
	}
	// The status --json of the CLI lists it too.
	out, stderr, code := procCLI(t, bin, "status", "--json", "--addr", node.APIAddr)
	if code != 0 || !strings.Contains(out, `"alive"`) {
		t.Fatalf("status --json: exit %d, %s; want the check alive listed: %s", code, stderr, out)
	}

	// 1b. A second check added: the first keeps its replicated result
	// (the registration of the new names keeps the unchanged ones').
	memberChecks := func() map[string]*hmv1.Check {
		t.Helper()
		st, err := c.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*hmv1.Check{}
		for _, m := range st.Members {
			if m.Id == id {
				for _, ch := range m.Checks {
					out[ch.Name] = ch
				}
			}
		}
		return out
	}
	twoChecks := "log_level: debug\nchecks:\n  - {name: alive, type: exec, argv: [/bin/true], interval: 200ms}\n" +
		"  - {name: second, type: exec, argv: [/bin/true], interval: 200ms}\n"
	write(node.Config, twoChecks)
	hup(syscall.SIGHUP)
	// The log's events in order: up to second's first verdict, none for
	// alive (a reset to unknown would be followed by "alive passing").
	secondPassing := false
	for e := range events {
		if e.Kind != "check" || e.Node != id {
			continue
		}
		if strings.HasPrefix(e.Message, "alive ") {
			t.Fatalf("check alive changed when another check was added: %+v, want its result kept", e.Event)
		}
		if e.Message == "second passing" {
			secondPassing = true
			break
		}
	}
	if !secondPassing {
		t.Fatal("no event of check second passing")
	}
	if got := memberChecks()["alive"]; got.GetState() != "passing" {
		t.Fatalf("check alive after another check was added: %v, want passing", got)
	}

	// 2. api_addr changed: refused, named; 3. log_level invalid: refused;
	// SIGUSR1: logged, ignored.
	write(node.Config, twoChecks, node.APIAddr, "127.0.0.1:7299")
	hup(syscall.SIGHUP)
	waitLog("config reload refused", 1)
	waitLog("api_addr cannot change while the agent runs", 1)
	write(node.Config, "log_level: loud\n")
	hup(syscall.SIGHUP)
	waitLog("config reload refused", 2)
	waitLog(`log_level: \"loud\" is not a level`, 1)
	hup(syscall.SIGUSR1)
	waitLog("signal ignored", 1)

	// The agent runs on with its roles: same holders, same epochs, and
	// the old config (the check still registered and passing).
	if !c.Running(id) || c.PID(id) != pid {
		t.Fatalf("agent %s is not running on after the reloads", id)
	}
	after, err := procAgreedRoles(ctx, c, 2)
	if err != nil {
		t.Fatal(err)
	}
	if procRolesKey(after) != procRolesKey(before) {
		t.Fatalf("roles moved across the reloads: %s, before %s", procRolesKey(after), procRolesKey(before))
	}
	err = procPoll(ctx, 20*time.Millisecond, func() error {
		got := memberChecks()
		if len(got) != 2 || got["alive"].GetState() != "passing" || got["second"].GetState() != "passing" {
			return fmt.Errorf("checks of %s after the refused reloads: %v, want alive and second passing", id, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
