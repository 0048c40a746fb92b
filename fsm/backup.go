package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Backup is the file `harbormaster snapshot save` writes and `recover`
// restores: a cluster's committed state with the Raft position it was
// taken at. It holds the cluster lease key: keep it private (mode 0600).
type Backup struct {
	ClusterID string `json:"cluster_id"`
	Index     uint64 `json:"index"`
	Term      uint64 `json:"term"`
	TakenMs   int64  `json:"taken_unix_ms"`
	Node      string `json:"node"`
	State     *State `json:"-"`
}

// BackupFormat names the file format.
const BackupFormat = "harbormaster-backup/1"

type backupDoc struct {
	Format string `json:"format"`
	Backup
	Snapshot json.RawMessage `json:"snapshot"`
}

// MarshalBackup encodes b (its state in the snapshot format).
func MarshalBackup(b Backup) ([]byte, error) {
	if b.State == nil {
		return nil, errors.New("backup: no state")
	}
	var snap bytes.Buffer
	if err := WriteSnapshot(&snap, b.State); err != nil {
		return nil, err
	}
	return json.MarshalIndent(backupDoc{Format: BackupFormat, Backup: b, Snapshot: snap.Bytes()}, "", " ")
}

// ReadBackup decodes a file written by MarshalBackup, strictly.
func ReadBackup(r io.Reader) (Backup, error) {
	var doc backupDoc
	dec := json.NewDecoder(io.LimitReader(r, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return Backup{}, fmt.Errorf("read backup: %w", err)
	}
	if doc.Format != BackupFormat {
		return Backup{}, fmt.Errorf("read backup: format %q, this build reads %q", doc.Format, BackupFormat)
	}
	if doc.Index == 0 || doc.Term == 0 {
		return Backup{}, errors.New("read backup: no Raft index or term")
	}
	if doc.ClusterID != "" && !ValidClusterID(doc.ClusterID) {
		return Backup{}, fmt.Errorf("read backup: cluster_id %q is not a cluster id", doc.ClusterID)
	}
	st, err := ReadSnapshot(bytes.NewReader(doc.Snapshot))
	if err != nil {
		return Backup{}, err
	}
	b := doc.Backup
	b.State = st
	return b, nil
}
