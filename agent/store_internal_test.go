package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/harbormaster/harbormaster/chaos/labtest"
)

// TestStoreFaultOnAFullFilesystem: a real full filesystem (a 1 MiB tmpfs
// the test mounts and removes) makes the guarded log store's appends fail,
// and the failure is recorded (the agent then fences itself: the
// in-process TestStoreFaultFencesTheNode shows what follows).
func TestStoreFaultOnAFullFilesystem(t *testing.T) {
	labtest.Require(t) // root, to mount
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	start := time.Now()
	faults := &storeFaults{mono: func() time.Duration { return time.Since(start) }}
	var seen []string
	faults.on = func(op string, err error) { seen = append(seen, op+": "+err.Error()) }
	logs := guardedLogs{LogStore: bolt, f: faults}
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{'x'}, 4096)}
	}
	if err := logs.StoreLog(entry(1)); err != nil {
		t.Fatalf("first append on an empty tmpfs: %v", err)
	}
	if faults.recent(time.Hour) != nil {
		t.Fatal("a fault recorded before the disk was full")
	}
	// Fill the filesystem.
	fill, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := fill.Write(chunk); err != nil {
			break
		}
	}
	fill.Close()
	var failed error
	for i := uint64(2); i < 200 && failed == nil; i++ {
		failed = logs.StoreLog(entry(i))
	}
	if failed == nil {
		t.Fatal("appends kept succeeding on a full filesystem")
	}
	if err := faults.recent(time.Hour); err == nil || len(seen) == 0 {
		t.Fatalf("the failed append (%v) was not recorded", failed)
	}
	t.Logf("recorded: %s", seen[0])
}
