package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/harbormaster/harbormaster/fsm"
)

// RecoverResult says what Recover wrote.
type RecoverResult struct {
	Index, Term  uint64
	ClusterID    string // the recovered history's new cluster id
	OldClusterID string
	Voters       []raft.Server
	MaxEpoch     uint64 // the highest epoch before: every role's next is above it
	Moved        string // where the data dir's previous snapshots went ("" if none)
}

// Recover rewrites a stopped node's data dir (harbormaster recover) into a
// new cluster of the given voters, from a backup (snapshot save) or, when
// b is nil, from the data dir's own state: the way back for a cluster that
// lost its majority for good. What it writes:
//   - one Raft snapshot at the state's index whose configuration is the
//     voters, the log emptied (the previous snapshots moved aside);
//   - every role without a holder, its epoch kept, so the recovered cluster
//     hands every role out anew at an epoch above any before;
//   - a new cluster id: the lost nodes' data dirs belong to the old history
//     and are refused if they come back (they must be emptied to rejoin).
//
// It refuses while an agent runs on the data dir (the store is locked).
func Recover(dataDir string, b *fsm.Backup, voters []raft.Server, log io.Writer) (RecoverResult, error) {
	var res RecoverResult
	if len(voters) == 0 {
		return res, errors.New("--voters: give at least this node, e.g. n1=10.0.10.11:7101")
	}
	if err := prepareDataDir(dataDir); err != nil {
		return res, err
	}
	path := filepath.Join(dataDir, "raft.db")
	var bolt *raftboltdb.BoltStore
	if err := openGuarded(path, func() (err error) {
		bolt, err = raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: time.Second}})
		if errors.Is(err, bbolt.ErrTimeout) {
			return fmt.Errorf("%s is locked: an agent runs on this data dir; stop it first", path)
		}
		if err != nil {
			return &StoreError{Path: path, Err: err}
		}
		return nil
	}); err != nil {
		return res, err
	}
	defer bolt.Close()
	old, err := readClusterID(dataDir)
	if err != nil {
		return res, err
	}
	res.OldClusterID = old
	snapDir := filepath.Join(dataDir, "snapshots")
	if b == nil {
		// The data dir's own state: replay it into an FSM (the latest
		// snapshot plus the log after it).
		own, err := ownState(dataDir, bolt, log)
		if err != nil {
			return res, err
		}
		b = own
	} else if old != "" && b.ClusterID != "" && old != b.ClusterID {
		return res, fmt.Errorf("the backup is of cluster %s but %s holds cluster %s; empty the data dir to recover another cluster's backup into it", b.ClusterID, dataDir, old)
	}
	if b.State == nil || b.Index == 0 {
		return res, errors.New("nothing to recover: no committed state")
	}
	st := *b.State
	st.Assignments = map[string]*fsm.Assignment{}
	for name, a := range b.State.Assignments {
		c := *a
		res.MaxEpoch = max(res.MaxEpoch, c.Epoch)
		if c.Holder != "" {
			c.LostBy, c.LostAt = c.Holder, time.Now().UnixMilli()
		}
		c.Holder, c.HolderGen, c.Releasing, c.MoveTo, c.AfterRelease = "", 0, false, "", false
		st.Assignments[name] = &c
	}
	id, err := newClusterID()
	if err != nil {
		return res, err
	}
	st.ClusterID = id
	// Empty the log and move the old snapshots aside, so Raft starts from
	// the one written below.
	if first, err := bolt.FirstIndex(); err == nil && first > 0 {
		last, _ := bolt.LastIndex()
		if err := bolt.DeleteRange(first, last); err != nil {
			return res, fmt.Errorf("empty the log: %w", err)
		}
	}
	if _, err := os.Stat(snapDir); err == nil {
		res.Moved = snapDir + ".before-recover-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(snapDir, res.Moved); err != nil {
			return res, err
		}
	}
	snaps, err := raft.NewFileSnapshotStore(dataDir, 3, log)
	if err != nil {
		return res, err
	}
	_, trans := raft.NewInmemTransport("")
	term := b.Term
	if cur, err := bolt.GetUint64([]byte("CurrentTerm")); err == nil && cur > term {
		term = cur
	}
	conf := raft.Configuration{Servers: voters}
	sink, err := snaps.Create(raft.SnapshotVersionMax, b.Index, term, conf, b.Index, trans)
	if err != nil {
		return res, err
	}
	if err := fsm.WriteSnapshot(sink, &st); err != nil {
		_ = sink.Cancel()
		return res, err
	}
	if err := sink.Close(); err != nil {
		return res, err
	}
	if err := bolt.SetUint64([]byte("CurrentTerm"), term); err != nil {
		return res, err
	}
	if err := writeClusterID(dataDir, id); err != nil {
		return res, err
	}
	res.Index, res.Term, res.ClusterID, res.Voters = b.Index, term, id, voters
	return res, nil
}

// ownState replays a data dir's committed state: its latest snapshot and
// the log entries after it.
func ownState(dataDir string, bolt *raftboltdb.BoltStore, log io.Writer) (*fsm.Backup, error) {
	snaps, err := raft.NewFileSnapshotStore(dataDir, 3, log)
	if err != nil {
		return nil, err
	}
	f := fsm.New()
	var index, term uint64
	if list, err := snaps.List(); err == nil && len(list) > 0 {
		meta, rc, err := snaps.Open(list[0].ID)
		if err != nil {
			return nil, err
		}
		if err := f.Restore(rc); err != nil {
			return nil, err
		}
		index, term = meta.Index, meta.Term
	}
	last, err := bolt.LastIndex()
	if err != nil {
		return nil, err
	}
	for i := index + 1; i <= last; i++ {
		var l raft.Log
		if err := bolt.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				continue
			}
			return nil, err
		}
		if l.Type == raft.LogCommand {
			f.Apply(&l)
		}
		index, term = l.Index, l.Term
	}
	st, _ := f.State()
	return &fsm.Backup{ClusterID: st.ClusterID, Index: index, Term: term, State: st}, nil
}
