package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"

	"github.com/hashicorp/raft"

	"github.com/harbormaster/harbormaster/spec"
)

// t0 is the proposer time stamped in test commands (unix ms).
const t0 int64 = 1_700_000_000_000

// sampleCommands has one valid command of every type, in an order in which
// they all apply to NewState at consecutive indexes.
func sampleCommands() []Command {
	return append(baseSampleCommands(),
		&ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: "cache", Type: spec.TypeRedisMaster, UnsyncedPromotion: "after 30s"}}},
			Actor: "operator", Time: t0 + 10},
		&RedisHold{Role: "cache", Reason: "no replica synced with n1's Redis", Actor: "n1", Time: t0 + 11},
	)
}

// baseSampleCommands are the sample commands the golden snapshot was made
// from (see snapshotCommands).
func baseSampleCommands() []Command {
	return []Command{
		&RegisterNode{Node: "n1", RaftAddr: "10.0.0.1:7000", APIAddr: "10.0.0.1:7001", Voter: true, LeaseTTLMillis: 3000, Time: t0,
			Checks: []string{"registry-pull"}, Services: []string{"web", "db"}, Redis: "10.0.0.1:6379"},
		&RenewLease{Node: "n1", Seq: 1},
		&ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{
			{Name: "web", Type: spec.TypeService, Candidates: []spec.Candidate{{Node: "n1", Priority: 10}, {Node: "n2", Priority: 5}}},
			{Name: "db", Type: spec.TypeService},
		}}, Actor: "operator", Time: t0 + 1},
		&Assign{Role: "web", Node: "n1", HolderGen: 1_700_000_000_000_000_001, Epoch: 1, Reason: "initial placement", Actor: "n1", Time: t0 + 2, Detected: t0 + 1},
		&RequestRelease{Role: "web", Epoch: 1, Target: "n2", Reason: "rebalance", Actor: "n1", Time: t0 + 3},
		&Release{Role: "web", Node: "n1", Epoch: 1, Reason: "asked to", Time: t0 + 4},
		&Leave{Node: "n1", Reason: "shutting down", Time: t0 + 5},
		&RecordEvent{Event: Event{Time: t0 + 6, Kind: EventLeadership, Node: "n1", Actor: "n1", Message: "leadership transferred"}},
		&SetDrain{Node: "n1", Drained: true, Actor: "operator", Time: t0 + 6},
		&CheckUpdate{Node: "n1", Check: "registry-pull", Passing: true, Output: "pulled library/hello:latest", Time: t0 + 7},
		&RedisReport{Node: "n1", Role: RedisMaster, Offset: 4711, ReplID: "a1", RunID: "b2", Time: t0 + 7},
		&RemoveNode{Node: "n1", Actor: "operator", Time: t0 + 7},
		&SetLeaseKey{ID: 1, Secret: testLeaseKey(1), Actor: "n1", Time: t0 + 8},
		&SetClusterID{ID: "0123456789abcdef0123456789abcdef", Actor: "n1", Time: t0 + 9},
	}
}

// testLeaseKey is a fixed, made-up lease key (32 bytes of b).
func testLeaseKey(b byte) Secret { return Secret(bytes.Repeat([]byte{b}, LeaseKeySize)) }

// tb is the part of testing.TB the helpers use; *rapid.T has it too.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// mustEncode encodes c or fails the test.
func mustEncode(t tb, c Command) []byte {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatalf("Encode(%T): got error %v, want nil", c, err)
	}
	return b
}

// rawCommand builds log bytes by hand, bypassing Encode's validation.
func rawCommand(t tb, typ CommandType, version uint8, payload any) []byte {
	t.Helper()
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatalf("marshal payload: %v", err)
	}
	return append([]byte{byte(typ), version}, p...)
}

// deepCopy copies a state through the snapshot format.
func deepCopy(t tb, st *State) *State {
	t.Helper()
	var b bytes.Buffer
	if err := WriteSnapshot(&b, st); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	c, err := ReadSnapshot(&b)
	if err != nil {
		t.Fatalf("ReadSnapshot: %v", err)
	}
	return c
}

// mustApply applies cmds in order from st, at indexes st.Index+1, ..., and
// fails the test on any error.
func mustApply(t tb, st *State, cmds ...Command) *State {
	t.Helper()
	for _, c := range cmds {
		next, err := Apply(st, st.Index+1, c)
		if err != nil {
			t.Fatalf("Apply(%T %+v): got error %v, want nil", c, c, err)
		}
		st = next
	}
	return st
}

// applyLog feeds data to f as raft log entries at the given indexes.
func applyLog(f *FSM, idx uint64, data []byte) any {
	return f.Apply(&raft.Log{Type: raft.LogCommand, Index: idx, Data: data})
}

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
	failWrite         bool
}

func (s *memSink) Write(p []byte) (int, error) {
	if s.failWrite {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// snapshotRestore persists f's state through Snapshot/Persist and restores it
// into a fresh FSM.
func snapshotRestore(t tb, f *FSM) *State {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("Persist: sink closed=%t cancelled=%t, want closed and not cancelled", sink.closed, sink.cancelled)
	}
	g := New()
	if err := g.Restore(readCloser{&sink.Buffer}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	st, _ := g.State()
	return st
}

type readCloser struct{ *bytes.Buffer }

func (readCloser) Close() error { return nil }

// sameState reports whether two states are deeply equal.
func sameState(a, b *State) bool { return reflect.DeepEqual(a, b) }
