package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/proccluster"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// procRecover is issue 11's disaster: two of three nodes lost for good.
// From a snapshot saved before, the survivor is recovered as a one-node
// cluster (harbormaster recover refuses while its agent runs), two fresh
// nodes are added, and every role is held again at an epoch strictly above
// any before.
func procRecover(t *testing.T, bin string) {
	c := procCluster(t, proccluster.Options{Binary: bin, Dir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	node := func(id string) proccluster.Node { return procNode(t, c, id) }
	held := func(id string, above uint64) map[string]uint64 { return procHeld(ctx, t, c, id, above) }
	held("n1", 0)
	file := filepath.Join(t.TempDir(), "backup.json")
	n1 := node("n1")
	if _, stderr, code := procCLI(t, bin, "snapshot", "save", file, "--addr", n1.APIAddr); code != 0 {
		t.Fatalf("snapshot save: exit %d: %s", code, stderr)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v, mode %v; want 0600 (it holds the lease key)", err, st.Mode().Perm())
	}
	out, stderr, code := procCLI(t, bin, "snapshot", "inspect", file, "--json")
	if code != 0 {
		t.Fatalf("snapshot inspect: exit %d: %s", code, stderr)
	}
	var sum struct {
		ClusterID string `json:"cluster_id"`
		MaxEpoch  uint64 `json:"max_epoch"`
		Roles     []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil || len(sum.Roles) == 0 || sum.MaxEpoch == 0 {
		t.Fatalf("snapshot inspect --json: %v: %s", err, out)
	}
	recoverArgs := []string{"recover", "--data-dir", n1.DataDir, "--from-snapshot", file, "--voters", "n1=" + n1.RaftAddr}
	if _, stderr, code := procCLI(t, bin, recoverArgs...); code == 0 || !strings.Contains(stderr, "stop it first") {
		t.Errorf("recover while the agent runs: exit %d, stderr %s; want a refusal", code, stderr)
	}

	// n2 and n3 are lost for good; n1 is stopped for the recovery.
	for _, id := range []string{"n2", "n3", "n1"} {
		if err := c.Kill(id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"n2", "n3"} {
		if err := os.RemoveAll(node(id).DataDir); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, code = procCLI(t, bin, recoverArgs...)
	if code != 0 {
		t.Fatalf("recover: exit %d: %s", code, stderr)
	}
	t.Logf("recover: %s", strings.TrimSpace(out))
	if err := c.Start("n1"); err != nil {
		t.Fatal(err)
	}
	held("n1", sum.MaxEpoch)
	// Two fresh nodes: they find n1 holding the history and wait to be
	// added instead of bootstrapping.
	cl, err := c.Client("n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n2", "n3"} {
		if err := c.Start(id); err != nil {
			t.Fatal(err)
		}
		if err := procPoll(ctx, 200*time.Millisecond, func() error {
			jctx, jcancel := context.WithTimeout(ctx, 5*time.Second)
			defer jcancel()
			_, err := cl.Join(jctx, &hmv1.JoinRequest{Id: id, RaftAddress: node(id).RaftAddr, Voter: true})
			return err
		}); err != nil {
			t.Fatalf("join %s: %v", id, err)
		}
	}
	if err := procPoll(ctx, 100*time.Millisecond, func() error {
		mctx, mcancel := context.WithTimeout(ctx, time.Second)
		defer mcancel()
		ms, err := cl.Members(mctx, &hmv1.MembersRequest{})
		if err != nil {
			return err
		}
		alive := 0
		for _, m := range ms.Members {
			if m.Voter && m.Alive {
				alive++
			}
		}
		if alive != 3 {
			return fmt.Errorf("%d live voters", alive)
		}
		return nil
	}); err != nil {
		t.Fatalf("after adding n2 and n3: %v", err)
	}
	after := held("n2", sum.MaxEpoch)
	t.Logf("epochs before at most %d, after %v", sum.MaxEpoch, after)
}
