package agent_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// A golden data dir pins what an agent leaves on disk: the Raft log and
// stable store (raft-boltdb's raft.db), the Raft snapshots (snapshots/, the
// fsm's snapshot encoding), the commands in the log (the fsm's command
// encoding) and the cluster id. Every later build must open the data dir of
// every released format and restore the same state: an upgraded agent
// starts on the data dir its predecessor left. fsm/golden_test.go pins
// the encodings alone; this test reads them through the stores as the
// agent opens them.
//
// The fixture was made by this package's in-process agent (one node on
// disk, a snapshot, then more commands in the log after it):
//
//	make golden-datadir   # go test ./agent -run TestGoldenDataDir -update-datadir
//
// Regenerate it only for a new format, as datadir-v2 beside v1; v1 stays.
var updateDataDir = flag.Bool("update-datadir", false, "rewrite testdata/golden/datadir-v1 from an in-process agent")

var (
	goldenDataDir   = filepath.Join("..", "testdata", "golden", "datadir-v1")
	goldenDataState = filepath.Join("..", "testdata", "golden", "datadir-v1.state.json")
)

// replayDataDir opens a data dir as the agent does (raft-boltdb, the file
// snapshot store) and rebuilds its state: the latest snapshot restored,
// then every command after it applied. It returns the state and how many
// commands came after the snapshot.
func replayDataDir(t *testing.T, dir string) (*fsm.State, int) {
	t.Helper()
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatalf("open raft.db: %v", err)
	}
	defer bolt.Close()
	snaps, err := raft.NewFileSnapshotStore(dir, 3, io.Discard)
	if err != nil {
		t.Fatalf("open snapshots: %v", err)
	}
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		t.Fatalf("snapshots in %s: %v (%d): the fixture must hold one", dir, err, len(list))
	}
	meta, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		t.Fatalf("open snapshot %s: %v", list[0].ID, err)
	}
	f := fsm.New()
	if err := f.Restore(rc); err != nil {
		t.Fatalf("restore snapshot %s: %v", meta.ID, err)
	}
	last, err := bolt.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := meta.Index + 1; i <= last; i++ {
		var l raft.Log
		if err := bolt.GetLog(i, &l); err != nil {
			t.Fatalf("log entry %d: %v", i, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		if r := f.Apply(&l); r != nil {
			if err, ok := r.(error); ok {
				t.Logf("entry %d: rejected as when it was applied: %v", i, err)
			}
		}
		n++
	}
	st, _ := f.State()
	return st, n
}

func snapshotBytes(t *testing.T, st *fsm.State) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := fsm.WriteSnapshot(&b, st); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestGoldenDataDir(t *testing.T) {
	if *updateDataDir {
		writeGoldenDataDir(t)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(goldenDataDir)); err != nil {
		t.Fatalf("copy %s: %v (make golden-datadir writes it)", goldenDataDir, err)
	}
	st, after := replayDataDir(t, dir)
	if after == 0 {
		t.Errorf("%s: no command after the snapshot: the log's encoding is not exercised", goldenDataDir)
	}
	want, err := os.ReadFile(goldenDataState)
	if err != nil {
		t.Fatal(err)
	}
	if got := snapshotBytes(t, st); !bytes.Equal(got, want) {
		t.Errorf("the state restored from %s differs from %s: this build reads a released data dir differently.\ngot:  %s\nwant: %s",
			goldenDataDir, goldenDataState, got, want)
	}
	if id, err := os.ReadFile(filepath.Join(dir, "cluster-id")); err != nil || len(bytes.TrimSpace(id)) == 0 {
		t.Errorf("cluster-id: %q, %v", id, err)
	}
}

// writeGoldenDataDir runs one agent on disk with a snapshot threshold low
// enough that the start makes a snapshot, restarts it with the default
// threshold, applies two spec changes, stops the agent and copies its data
// dir and the state it had into the fixture.
func writeGoldenDataDir(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{disk: true, snapshotThreshold: 4, trailingLogs: 1024})
	nd := c.nodes[0]
	c.waitFor("the roles placed", 10*time.Second, func() bool {
		st := nd.agent.State()
		return st.Assignment("notary").Holder == "n1" && st.Assignment("clair").Holder == "n1"
	})
	snaps := filepath.Join(nd.cfg.DataDir, "snapshots")
	c.waitFor("a snapshot", 10*time.Second, func() bool { e, _ := os.ReadDir(snaps); return len(e) > 0 })
	// Restarted with the default threshold, the node keeps what follows
	// in the log only.
	c.stop(nd)
	nd.opts.snapshotThreshold = 0
	c.restart(nd)
	select {
	case <-nd.agent.Ready():
	case <-time.After(15 * time.Second):
		t.Fatal("not ready after the restart")
	}
	for i, doc := range []string{
		"roles:\n  - {name: notary, type: service, marker: true}\n  - {name: clair, type: service, marker: true, avoid: [notary]}\n",
		"roles:\n  - {name: notary, type: service, marker: true}\n",
	} {
		sp, err := spec.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = nd.agent.Propose(ctx, &fsm.ApplySpec{Spec: sp, Actor: "golden", Time: int64(1_800_000_000_000 + i)})
		cancel()
		if err != nil {
			t.Fatalf("apply spec %d: %v", i, err)
		}
	}
	c.stop(nd)
	if err := os.RemoveAll(goldenDataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(goldenDataDir, os.DirFS(nd.cfg.DataDir)); err != nil {
		t.Fatal(err)
	}
	st, _ := replayDataDir(t, goldenDataDir)
	if live := nd.agent.State(); !bytes.Equal(snapshotBytes(t, st), snapshotBytes(t, live)) {
		t.Fatalf("the data dir replays to another state than the agent had:\nreplay: %s\nagent:  %s", snapshotBytes(t, st), snapshotBytes(t, live))
	}
	if err := os.WriteFile(goldenDataState, snapshotBytes(t, st), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s and %s", goldenDataDir, goldenDataState)
	c.restart(nd) // the cluster's cleanup stops it
}
