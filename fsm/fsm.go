package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// SnapshotFormat is the version of the snapshot encoding this build writes
// and reads.
const SnapshotFormat = 1

// FSM adapts State to raft.FSM and lets readers watch for changes.
//
// Apply, Snapshot and Restore are called by Raft from its FSM goroutine; State
// may be called from any goroutine.
type FSM struct {
	mu      sync.Mutex
	st      *State
	changed chan struct{} // closed and replaced on every change

	publishes int // states published (tests)
}

// New returns an FSM holding the empty state.
func New() *FSM {
	return &FSM{st: NewState(), changed: make(chan struct{})}
}

// State returns the current state and a channel that is closed at the next
// change. The state must not be modified.
func (f *FSM) State() (*State, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, f.changed
}

func (f *FSM) publish(st *State) {
	f.mu.Lock()
	f.st = st
	f.publishes++
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// Apply implements raft.FSM. It returns nil on success and a
// *RejectedError when the command does not fit the state (the state is then
// unchanged but for its index). A command marked ignorable that this build
// does not know is skipped.
//
// A committed command this build cannot read (an unknown type without the
// ignore flag, an unknown version, a payload that does not decode strictly)
// stops the agent with a panic: applying it differently from the other
// nodes would make the replicated state diverge for good. Commands are
// validated before they are proposed, so only a newer agent can write one;
// the remedy is to upgrade this one.
func (f *FSM) Apply(l *raft.Log) any {
	st, _ := f.State()
	next, resp := apply(st, l)
	if next != st {
		f.publish(next)
	}
	return resp
}

// ApplyBatch implements raft.BatchingFSM: it applies a batch of committed
// entries in order, exactly as Apply would one by one, and publishes the
// state once, after the last. A plan's commands are proposed as one batch
// (a node's crash moves all its roles at once); published entry by entry,
// every watcher (the actuators, the coordinator, the API's watches) woke
// and read the state once per entry, and a new holder of 40 VIPs took them
// in waves. A watcher never saw every intermediate state anyway: it reads
// the latest when it gets to it.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	st, _ := f.State()
	next := st
	out := make([]any, len(logs))
	for i, l := range logs {
		next, out[i] = apply(next, l)
	}
	if next != st {
		f.publish(next)
	}
	return out
}

// apply is Apply on st, without publishing: the next state (st itself for
// an entry that is not a command) and the entry's result.
func apply(st *State, l *raft.Log) (*State, any) {
	if l.Type != raft.LogCommand {
		return st, nil
	}
	cmd, err := Decode(l.Data)
	if err != nil {
		if errors.Is(err, ErrUnknownIgnorable) {
			next := st.shallow()
			next.Index = l.Index
			return next, nil
		}
		panic(fmt.Sprintf("harbormaster: committed log entry %d cannot be read by this agent (%v); "+
			"upgrade the agent to the version of the cluster's leader and start it again", l.Index, err))
	}
	next, err := Apply(st, l.Index, cmd)
	return next, err
}

type snapshotDoc struct {
	Format int    `json:"format"`
	State  *State `json:"state"`
}

// Snapshot implements raft.FSM: it captures the current immutable state; the
// encoding happens in Persist.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	st, _ := f.State()
	return &snapshot{st: st}, nil
}

// Restore implements raft.FSM: it replaces the whole state with the
// snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := ReadSnapshot(rc)
	if err != nil {
		return err
	}
	f.publish(st)
	return nil
}

// WriteSnapshot encodes st in the snapshot format.
func WriteSnapshot(w io.Writer, st *State) error {
	enc := json.NewEncoder(w)
	return enc.Encode(snapshotDoc{Format: SnapshotFormat, State: st})
}

// ReadSnapshot decodes a snapshot written by WriteSnapshot, strictly.
func ReadSnapshot(r io.Reader) (*State, error) {
	var doc snapshotDoc
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("restore snapshot: %w", err)
	}
	if doc.Format != SnapshotFormat {
		return nil, fmt.Errorf("restore snapshot: format %d, this agent reads %d; upgrade it", doc.Format, SnapshotFormat)
	}
	if doc.State == nil {
		return nil, errors.New("restore snapshot: no state")
	}
	doc.State.normalize()
	return doc.State, nil
}

// normalize gives a decoded state the same shape as one built by Apply.
func (s *State) normalize() {
	if s.Spec == nil {
		s.Spec = NewState().Spec
	}
	if len(s.Spec.Roles) == 0 {
		s.Spec.Roles = nil
	}
	if s.Nodes == nil {
		s.Nodes = map[string]*Node{}
	}
	if s.Checks == nil {
		s.Checks = map[string]map[string]CheckResult{}
	}
	if s.Assignments == nil {
		s.Assignments = map[string]*Assignment{}
	}
	if len(s.Redis) == 0 {
		s.Redis = nil
	}
	if len(s.Events) == 0 {
		s.Events = nil
	}
}

type snapshot struct{ st *State }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteSnapshot(sink, s.st); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
