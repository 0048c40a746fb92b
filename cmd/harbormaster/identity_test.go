package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/proccluster"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// procWipedDataDirs is the finding: two nodes whose data dirs were
// wiped used to bootstrap a second history, which then diverged from, or
// overwrote, the third node's. Now: (1) one wiped node restarted while the
// others run joins their history; (2) with every node stopped, n1 and n2
// wiped and started first wait for n3 instead of bootstrapping, and once n3
// starts the cluster is one history, the surviving one: the same cluster
// id, epochs above those before.
func procWipedDataDirs(t *testing.T, bin string) {
	c := procCluster(t, proccluster.Options{Binary: bin, Dir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	node := func(id string) proccluster.Node { return procNode(t, c, id) }
	clusterID := func(id string) string {
		b, err := os.ReadFile(filepath.Join(node(id).DataDir, "cluster-id"))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	before := procHeld(ctx, t, c, "n1", 0)
	if err := procPoll(ctx, 50*time.Millisecond, func() error {
		for _, id := range c.IDs() {
			if clusterID(id) == "" {
				return errors.New("no cluster id on " + id)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cid := clusterID("n3")
	if clusterID("n1") != cid || clusterID("n2") != cid {
		t.Fatalf("cluster ids %s %s %s differ", clusterID("n1"), clusterID("n2"), cid)
	}
	// Move a role around so its epoch is well above a fresh cluster's.
	cl, err := c.Client("n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"n2", "n3", "n1", "n2"} {
		if err := procPoll(ctx, 100*time.Millisecond, func() error {
			mctx, mcancel := context.WithTimeout(ctx, 10*time.Second)
			defer mcancel()
			_, err := cl.Move(mctx, &hmv1.MoveRequest{Role: "notary", Node: target})
			if err != nil && strings.Contains(err.Error(), "already") {
				return nil
			}
			return err
		}); err != nil {
			t.Fatalf("move notary to %s: %v", target, err)
		}
	}
	before = procHeld(ctx, t, c, "n1", 0)

	// (1) n2 wiped while n1 and n3 run: it joins, it does not bootstrap.
	if err := c.Stop("n2"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(node("n2").DataDir); err != nil {
		t.Fatal(err)
	}
	if err := c.Start("n2"); err != nil {
		t.Fatal(err)
	}
	if err := procPoll(ctx, 50*time.Millisecond, func() error {
		if clusterID("n2") != cid {
			return errors.New("n2 has not learnt the cluster id")
		}
		return nil
	}); err != nil {
		t.Fatalf("(1) wiped n2: %v", err)
	}
	if l, _ := c.ReadLog("n2"); strings.Count(l, "bootstrapped a new cluster") > 1 {
		t.Fatalf("(1) wiped n2 bootstrapped again")
	}

	// (2) Every node stopped; n1 and n2 wiped and started first.
	for _, id := range c.IDs() {
		if err := c.Stop(id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"n1", "n2"} {
		if err := os.RemoveAll(node(id).DataDir); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(id); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second) // several elections' time: they must not form a cluster
	for _, id := range []string{"n1", "n2"} {
		l, _ := c.ReadLog(id)
		last := l[strings.LastIndex(l, "=== proccluster: starting"):]
		if strings.Contains(last, "bootstrapped a new cluster") {
			t.Fatalf("(2) wiped %s bootstrapped a new cluster while n3 was down", id)
		}
		if !strings.Contains(last, "waiting for a bootstrap peer") {
			t.Errorf("(2) wiped %s does not say it waits for its bootstrap peers", id)
		}
	}
	if err := c.Start("n3"); err != nil {
		t.Fatal(err)
	}
	after := procHeld(ctx, t, c, "n1", 0)
	for name, r := range before {
		if a, ok := after[name]; !ok || a < r {
			t.Errorf("(2) %s: epoch %d after, %d before: the surviving history was not kept", name, a, r)
		}
	}
	if err := procPoll(ctx, 50*time.Millisecond, func() error {
		for _, id := range c.IDs() {
			if clusterID(id) != cid {
				return errors.New(id + " has cluster id " + clusterID(id))
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("(2) %v, want %s everywhere", err, cid)
	}

	// (3) A damaged raft.db: a clean error naming the file and the way
	// back, exit code 5, no panic; truncated (bbolt maps the file: a fault)
	// and overwritten with garbage.
	for _, id := range c.IDs() {
		if err := c.Stop(id); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(node("n1").DataDir, "raft.db")
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	for name, damage := range map[string]func() error{
		"truncated": func() error { return os.Truncate(db, fi.Size()/3) },
		"garbage":   func() error { return os.WriteFile(db, []byte(strings.Repeat("not a bolt file ", 4096)), 0o600) },
	} {
		if err := damage(); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := procCLI(t, bin, "agent", "--config", node("n1").Config, "--data-dir", node("n1").DataDir)
		if code != exitStore || !strings.Contains(stderr, "raft.db") || !strings.Contains(stderr, "damaged") || strings.Contains(stderr, "panic") {
			t.Errorf("(3) %s raft.db: exit %d, want %d with a message naming raft.db; stderr: %s", name, code, exitStore, stderr)
		}
	}
}
