package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"

	"github.com/harbormaster/harbormaster/spec"
)

var (
	propNodes = []string{"n1", "n2", "n3", "n4"}
	propRoles = []string{"web", "db", "cache"}
)

// entry is one generated log entry: a command and the bytes proposed for it.
// Cmd is nil for hand-made bytes (unknown types and versions, garbage).
type entry struct {
	Cmd     Command
	Data    []byte
	Encoded bool // Data came from Encode
	// Unreadable bytes stop the FSM with a panic: only a newer build could
	// have written them, and this one must not apply them differently.
	Unreadable bool
}

func (e entry) String() string {
	if e.Cmd != nil {
		return fmt.Sprintf("%T%+v", e.Cmd, e.Cmd)
	}
	return fmt.Sprintf("raw %q", e.Data)
}

// uniform draws an int in [0, n) from unbiased bits. rapid's integer and
// SampledFrom draws favour small values, which would make the first command
// kinds and the first node swamp the others; uniform still shrinks to 0.
func uniform(t *rapid.T, label string, n int) int {
	if n <= 1 {
		return 0
	}
	b := bits.Len(uint(n-1)) + 2 // spare bits keep the scaling even
	v := 0
	for i := 0; i < b; i++ {
		v <<= 1
		if rapid.Bool().Draw(t, label) {
			v |= 1
		}
	}
	return v * n >> b
}

func pick[E any](t *rapid.T, label string, from []E) E { return from[uniform(t, label, len(from))] }

// specGen draws a valid spec of 0-3 service roles.
func specGen() *rapid.Generator[*spec.Spec] {
	return rapid.Custom(func(t *rapid.T) *spec.Spec {
		names := rapid.Permutation(propRoles).Draw(t, "roles")[:uniform(t, "nroles", 4)]
		s := &spec.Spec{}
		for _, n := range names {
			r := spec.Role{Name: n, Type: spec.TypeService, Marker: rapid.Bool().Draw(t, "marker")}
			// Half the specs with roles have a redis-master role: redis-hold
			// applies only against one (at a quarter, some runs of 100
			// checks drew no applicable redis-hold at all).
			if len(s.Roles) == 0 && rapid.Bool().Draw(t, "redis_role") {
				r = spec.Role{Name: n, Type: spec.TypeRedisMaster}
			}
			cands := rapid.Permutation(propNodes).Draw(t, "candidates")[:uniform(t, "ncandidates", 4)]
			for _, c := range cands {
				r.Candidates = append(r.Candidates, spec.Candidate{Node: c, Priority: rapid.IntRange(-1, 5).Draw(t, "priority")})
			}
			s.Roles = append(s.Roles, r)
		}
		return s
	})
}

// commandGen draws a command of any type. It looks at st so that many
// commands are plausible (the right epoch, the current holder, a fresh lease
// seq) and apply, while others are stale or wrong and are rejected.
func commandGen(st *State) *rapid.Generator[entry] {
	return rapid.Custom(func(t *rapid.T) entry {
		node := pick(t, "node", propNodes)
		role := pick(t, "role", propRoles)
		plausible := uniform(t, "plausible", 4) > 0 // 3 in 4
		time := rapid.Int64Range(t0, t0+1000).Draw(t, "time")
		var held []string
		for _, r := range propRoles {
			if st.Assignment(r).Holder != "" {
				held = append(held, r)
			}
		}
		kind := uniform(t, "kind", 100)
		switch {
		case plausible && kind >= 33 && kind < 55 && len(st.Spec.Roles) > 0: // assign
			role = pick(t, "spec_role", st.Spec.Roles).Name
		case plausible && kind >= 55 && kind < 75 && len(held) > 0: // (request-)release
			role = pick(t, "held_role", held)
		}
		cur := st.Assignment(role)
		anyEpoch := func() uint64 { return rapid.Uint64Range(1, 6).Draw(t, "epoch") }

		var c Command
		switch {
		case kind < 12:
			c = &RegisterNode{
				Node:           node,
				RaftAddr:       rapid.SampledFrom([]string{"10.0.0.1:7000", "10.0.0.2:7000"}).Draw(t, "raft_addr"),
				APIAddr:        node + ":7001",
				Voter:          rapid.Bool().Draw(t, "voter"),
				Witness:        node == "n4" && rapid.Bool().Draw(t, "witness"),
				LeaseTTLMillis: rapid.Int64Range(500, 5000).Draw(t, "ttl"),
				Time:           time,
				Checks:         rapid.SampledFrom([][]string{nil, {"pull"}, {"pull", "http"}}).Draw(t, "checks"),
				Services:       rapid.SampledFrom([][]string{nil, nil, propRoles[:1]}).Draw(t, "services"),
				Redis:          rapid.SampledFrom([]string{"", node + ":6379"}).Draw(t, "redis"),
			}
		case kind < 15:
			c = &RemoveNode{Node: node, Actor: "operator", Time: time}
		case kind < 25:
			seq := rapid.Uint64Range(1, 8).Draw(t, "seq")
			if n, ok := st.Nodes[node]; ok && plausible {
				seq = n.LeaseSeq + rapid.Uint64Range(1, 3).Draw(t, "seq_step")
			}
			c = &RenewLease{Node: node, Seq: seq}
		case kind < 33:
			ev := rapid.SampledFrom([]uint64{0, 0, st.SpecVersion, st.SpecVersion + 1, 1}).Draw(t, "expected_version")
			c = &ApplySpec{Spec: specGen().Draw(t, "spec"), ExpectedVersion: ev,
				Seed: rapid.IntRange(0, 5).Draw(t, "seed") == 0, Actor: "operator", Time: time}
		case kind < 55:
			a := &Assign{Role: role, Node: node, PrevHolder: cur.Holder, Epoch: cur.Epoch + 1,
				Reason: "placement", Actor: "n1", Time: time}
			if r, ok := st.Spec.Role(role); ok && plausible {
				var eligible []string
				for _, id := range st.NodeIDs() {
					n := st.Nodes[id]
					if _, cand := r.Candidate(id); cand && !n.Witness && !n.Leaving && id != cur.Holder {
						eligible = append(eligible, id)
					}
				}
				if len(eligible) > 0 {
					a.Node = pick(t, "eligible", eligible)
				}
			}
			if !plausible {
				a.PrevHolder = rapid.SampledFrom(append([]string{""}, propNodes...)).Draw(t, "prev_holder")
				a.Epoch = anyEpoch()
			}
			c = a
		case kind < 63:
			e := cur.Epoch
			if !plausible || e == 0 {
				e = anyEpoch()
			}
			target := rapid.SampledFrom([]string{"", "", node}).Draw(t, "target") // an operator's move
			c = &RequestRelease{Role: role, Epoch: e, Target: target, Reason: "rebalance", Actor: "n1", Time: time}
		case kind < 75:
			r := &Release{Role: role, Node: node, Epoch: cur.Epoch, Reason: "stopped", Time: time}
			if plausible && cur.Holder != "" {
				r.Node = cur.Holder
			}
			if !plausible || r.Epoch == 0 {
				r.Epoch = anyEpoch()
			}
			c = r
		case kind < 76:
			r := &RedisReport{Node: node, Role: rapid.SampledFrom([]string{RedisMaster, RedisReplica, ""}).Draw(t, "redis_role"),
				Offset: rapid.Int64Range(-1, 5000).Draw(t, "offset"), LinkUp: rapid.Bool().Draw(t, "link_up"), Time: time}
			switch r.Role {
			case RedisReplica:
				r.Master = "n1:6379"
			case "":
				r.Error = "connection refused"
			}
			c = r
		case kind < 78:
			check := rapid.SampledFrom([]string{"pull", "http", "redis"}).Draw(t, "check")
			c = &CheckUpdate{Node: node, Check: check, Passing: rapid.Bool().Draw(t, "passing"),
				Error: rapid.SampledFrom([]string{"", "timed out"}).Draw(t, "check_error"), Time: time}
		case kind < 81:
			c = &RecordEvent{Event: Event{
				Time: time,
				Kind: rapid.SampledFrom([]EventKind{EventMember, EventLeadership, EventOperator}).Draw(t, "event_kind"),
				Node: node, Actor: "n1", Message: rapid.SampledFrom([]string{"", "promoted", "leader changed"}).Draw(t, "message"),
			}}
		case kind < 84:
			c = &Leave{Node: node, Reason: "shutdown", Time: time}
		case kind < 86:
			c = &SetDrain{Node: node, Drained: rapid.Bool().Draw(t, "drained"), Actor: "operator", Time: time}
		case kind < 87:
			// The cluster id: the first applies, every later one fails.
			c = &SetClusterID{ID: rapid.SampledFrom([]string{"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"}).Draw(t, "cluster_id"),
				Actor: "n1", Time: time}
		case kind < 88:
			// The leader's next key, or one decided on a stale view.
			id := uint32(1)
			if st.LeaseKey != nil {
				id = st.LeaseKey.ID + 1
			}
			if !plausible {
				id = uint32(rapid.IntRange(1, 4).Draw(t, "key_id"))
			}
			c = &SetLeaseKey{ID: id, Secret: testLeaseKey(byte(id)), Actor: "n1", Time: time}
		case kind < 89:
			hold, e := role, cur.Epoch
			for _, r := range st.Spec.Roles {
				if r.Type == spec.TypeRedisMaster {
					hold, e = r.Name, st.Assignment(r.Name).Epoch
				}
			}
			if !plausible {
				e = anyEpoch()
			}
			c = &RedisHold{Role: hold, Epoch: e, Reason: rapid.SampledFrom([]string{"no replica synced", "still none"}).Draw(t, "hold"),
				Actor: "n1", Time: time}
		case kind < 91:
			// A well-formed command that fails Validate, written by hand.
			// Apply rejects it, except an ApplySpec with an invalid spec:
			// only its presence is checked in Apply.
			bad := rapid.SampledFrom([]Command{
				&RenewLease{Node: node},
				&RegisterNode{Node: node, RaftAddr: "10.0.0.1:7000"},
				&Leave{Node: "N1"},
				&SetDrain{Node: "-", Drained: true},
				&RemoveNode{},
				&Assign{Role: role, Node: node},
				&RecordEvent{},
				&ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: role, Type: "cron"}}}},
				&Release{Role: role, Epoch: 1},
			}).Draw(t, "invalid")
			p, _ := json.Marshal(bad)
			return entry{Cmd: bad, Data: append([]byte{byte(bad.Type()), 1}, p...)}
		default:
			good, _ := Encode(&Assign{Role: role, Node: node, PrevHolder: cur.Holder, Epoch: cur.Epoch + 1})
			type rawEntry struct {
				data       []byte
				unreadable bool
			}
			raw := rapid.SampledFrom([]rawEntry{
				{append([]byte{good[0], 2}, good[2:]...), true},           // unknown version
				{append([]byte{0x7e, 1}, good[2:]...), true},              // unknown type
				{append([]byte{good[0] | 0x80, 1}, good[2:]...), true},    // ignore flag on a mandatory type
				{append([]byte{0xfe, 1}, good[2:]...), false},             // unknown type, ignorable
				{append(append([]byte{}, good...), '}'), true},            // trailing data
				{[]byte{good[0]}, true},                                   // short
				{append([]byte{good[0], 1}, `{"role":"web"`...), true},    // truncated
				{append([]byte{good[0], 1}, `{"bogus":true}`...), true},   // unknown field
				{append([]byte{byte(TypeRelease), 1}, `null`...), false},  // decodes, fails Validate
				{append([]byte{byte(TypeAssign), 1}, good[2:]...), false}, // the plausible assign itself
			}).Draw(t, "raw")
			return entry{Data: raw.data, Unreadable: raw.unreadable}
		}
		b, err := Encode(c)
		if err != nil {
			// Plausible choices can still be invalid (e.g. no holder to
			// release for); propose them anyway, by hand.
			p, _ := json.Marshal(c)
			return entry{Cmd: c, Data: append([]byte{byte(c.Type()), 1}, p...)}
		}
		return entry{Cmd: c, Data: b, Encoded: true}
	})
}

// applyCatch applies l to f and returns its result, or what it panicked
// with.
func applyCatch(f *FSM, l *raft.Log) (res, panicked any) {
	defer func() { panicked = recover() }()
	return f.Apply(l), nil
}

func stateJSON(t *rapid.T, st *State) []byte {
	var b bytes.Buffer
	if err := WriteSnapshot(&b, st); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	return b.Bytes()
}

func TestPropertyReplaySnapshotEpochs(t *testing.T) {
	// Across all runs, how many entries of each type applied and failed:
	// the generator must exercise both paths of every command.
	okByType := map[CommandType]int{}
	failByType := map[CommandType]int{}
	total := 0
	defer func() {
		t.Logf("%d entries; applied by type %v; failed by type %v", total, okByType, failByType)
		if total < 1000 || t.Failed() {
			return // too few runs (-rapid.checks) to judge the mix
		}
		for typ := range registry {
			if okByType[typ] == 0 || failByType[typ] == 0 {
				t.Errorf("%s: %d applied, %d failed; the generator must produce both", typ, okByType[typ], failByType[typ])
			}
		}
	}()
	rapid.Check(t, func(t *rapid.T) {
		drv := New()
		var log []*raft.Log
		var index uint64
		applied, rejected, unreadable := 0, 0, 0

		epoch := map[string]uint64{}  // last seen epoch per role
		holder := map[string]string{} // last seen holder per role

		n := 1 + uniform(t, "len", 80)
		for i := 0; i < n; i++ {
			before, _ := drv.State()
			beforeJSON := stateJSON(t, before)
			e := commandGen(before).Draw(t, fmt.Sprintf("cmd%d", i))
			index += rapid.Uint64Range(1, 3).Draw(t, "index_step")
			l := &raft.Log{Type: raft.LogCommand, Index: index, Data: e.Data}

			res, panicked := applyCatch(drv, l)
			total++
			if e.Unreadable {
				// The agent stops before anything is published. The entry
				// is left out of the log the replicas replay, which then
				// has a gap there (as if this build never saw it).
				msg := fmt.Sprint(panicked)
				if panicked == nil || !strings.Contains(msg, "cannot be read") || !strings.Contains(msg, fmt.Sprintf("entry %d ", index)) {
					t.Fatalf("entry %d (%v): got result %v, panic %q; want a panic naming index %d", i, e, res, msg, index)
				}
				if after, _ := drv.State(); after != before {
					t.Fatalf("entry %d (%v): state published before the panic:\n got %+v\nwant %+v", i, e, after, before)
				}
				if got := stateJSON(t, before); !bytes.Equal(got, beforeJSON) {
					t.Fatalf("entry %d (%v) mutated the previous state:\n got %s\nwant %s", i, e, got, beforeJSON)
				}
				unreadable++
				continue
			}
			if panicked != nil {
				t.Fatalf("entry %d (%v): FSM.Apply panicked: %v", i, e, panicked)
			}
			log = append(log, l)
			if res == nil {
				applied++
			} else {
				rejected++
			}
			if e.Cmd != nil {
				if res == nil {
					okByType[e.Cmd.Type()]++
				} else {
					failByType[e.Cmd.Type()]++
				}
			}
			if e.Encoded {
				// Whatever Encode wrote decodes: only domain rejections.
				var rej *RejectedError
				if err, _ := res.(error); res != nil && !errors.As(err, &rej) {
					t.Fatalf("entry %d (%v): got %T %v, want nil or *RejectedError", i, e, res, res)
				}
			}
			after, _ := drv.State()

			// Published states are immutable.
			if got := stateJSON(t, before); !bytes.Equal(got, beforeJSON) {
				t.Fatalf("entry %d (%v) mutated the previous state:\n got %s\nwant %s", i, e, got, beforeJSON)
			}
			// (d) Index is the last applied index.
			if after.Index != index {
				t.Fatalf("entry %d: Index got %d, want %d", i, after.Index, index)
			}
			// A failed entry changes nothing but the index.
			if res != nil {
				want := *before
				want.Index = index
				if !reflect.DeepEqual(after, &want) {
					t.Fatalf("entry %d (%v) failed with %v but changed the state:\n got %+v\nwant %+v", i, e, res, after, &want)
				}
			}
			// (c) Epochs never go back; a new holder comes with a new epoch.
			for role, prev := range epoch {
				if _, ok := after.Assignments[role]; !ok {
					t.Fatalf("entry %d (%v): assignment record of %q disappeared (was at epoch %d)", i, e, role, prev)
				}
			}
			for role, a := range after.Assignments {
				if a.Role != role {
					t.Fatalf("entry %d: Assignments[%q].Role = %q", i, role, a.Role)
				}
				if a.Epoch < epoch[role] {
					t.Fatalf("entry %d (%v): role %q epoch went back from %d to %d", i, e, role, epoch[role], a.Epoch)
				}
				if a.Holder != holder[role] && a.Holder != "" && a.Epoch <= epoch[role] {
					t.Fatalf("entry %d (%v): role %q moved %q -> %q at epoch %d, want an epoch above %d",
						i, e, role, holder[role], a.Holder, a.Epoch, epoch[role])
				}
				if a.Holder == "" && a.Releasing {
					t.Fatalf("entry %d (%v): role %q has no holder but is releasing", i, e, role)
				}
				epoch[role], holder[role] = a.Epoch, a.Holder
			}
			// Events are bounded; each one's Seq is its log index, strictly
			// increasing; the last one's is EventSeq. A command makes at
			// most one event, and only this one's can be new.
			if len(after.Events) > MaxEvents {
				t.Fatalf("entry %d: %d events, want at most %d", i, len(after.Events), MaxEvents)
			}
			for k, ev := range after.Events {
				if ev.Seq != ev.Index || ev.Seq > after.Index {
					t.Fatalf("entry %d: Events[%d] seq %d index %d, want seq = index <= %d", i, k, ev.Seq, ev.Index, after.Index)
				}
				if k > 0 && ev.Seq <= after.Events[k-1].Seq {
					t.Fatalf("entry %d: Events[%d].Seq = %d, want above %d", i, k, ev.Seq, after.Events[k-1].Seq)
				}
			}
			if k := len(after.Events); k > 0 && after.Events[k-1].Seq != after.EventSeq {
				t.Fatalf("entry %d: last event seq %d, EventSeq %d; want equal", i, after.Events[k-1].Seq, after.EventSeq)
			}
			switch added := after.EventsSince(before.EventSeq); {
			case after.EventSeq == before.EventSeq:
				if len(added) != 0 || len(after.Events) != len(before.Events) {
					t.Fatalf("entry %d (%v): events changed but EventSeq stayed %d", i, e, after.EventSeq)
				}
			case len(added) != 1 || after.EventSeq != index || res != nil:
				t.Fatalf("entry %d (%v, result %v): got %d new events, EventSeq %d -> %d; want one event at index %d from an applied command",
					i, e, res, len(added), before.EventSeq, after.EventSeq, index)
			}
		}
		t.Logf("%d entries: %d applied, %d failed, %d unreadable (left out)", n, applied, rejected, unreadable)
		final, _ := drv.State()

		// (a) Snapshot and restore give the same state.
		if got := snapshotRestore(t, drv); !reflect.DeepEqual(got, final) {
			t.Fatalf("restored state differs:\n got %+v\nwant %+v", got, final)
		}
		var b bytes.Buffer
		if err := WriteSnapshot(&b, final); err != nil {
			t.Fatal(err)
		}
		restored, err := ReadSnapshot(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatalf("ReadSnapshot: %v", err)
		}
		if again := stateJSON(t, restored); !bytes.Equal(again, b.Bytes()) {
			t.Fatalf("snapshot of a restored state differs:\n got %s\nwant %s", again, b.Bytes())
		}

		// (b) Determinism: the same log gives the same state, every time.
		f1, f2 := New(), New()
		for _, l := range log {
			r1, r2 := f1.Apply(l), f2.Apply(l)
			if fmt.Sprint(r1) != fmt.Sprint(r2) {
				t.Fatalf("index %d: replicas answered %v and %v", l.Index, r1, r2)
			}
		}
		s1, _ := f1.State()
		s2, _ := f2.State()
		if !reflect.DeepEqual(s1, s2) {
			t.Fatalf("two replicas of the same log differ:\n got %+v\nwant %+v", s1, s2)
		}
		if !reflect.DeepEqual(s1, final) {
			t.Fatalf("replica differs from the proposer's FSM:\n got %+v\nwant %+v", s1, final)
		}

		// Restoring a snapshot and applying the rest of the log is the same
		// as applying the whole log.
		cut := rapid.IntRange(0, len(log)).Draw(t, "cut")
		f3 := New()
		for _, l := range log[:cut] {
			f3.Apply(l)
		}
		f4 := New()
		if err := f4.Restore(readCloser{bytes.NewBuffer(stateJSON(t, mustState(f3)))}); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		for _, l := range log[cut:] {
			f4.Apply(l)
		}
		if got := mustState(f4); !reflect.DeepEqual(got, final) {
			t.Fatalf("restore at entry %d then replay differs:\n got %+v\nwant %+v", cut, got, final)
		}

		// (e) The same log in batches (raft.BatchingFSM), with entries that
		// are not commands among them, gives the same results entry by
		// entry, the same state, and one published state per batch.
		f5 := New()
		var mixed []*raft.Log
		var want []any
		for _, l := range log {
			if rapid.Bool().Draw(t, "other_entry") {
				mixed = append(mixed, &raft.Log{Type: raft.LogNoop, Index: l.Index})
				want = append(want, nil)
			}
			mixed = append(mixed, l)
			want = append(want, nil)
		}
		f6 := New()
		for i, l := range mixed {
			want[i] = f6.Apply(l)
		}
		for len(mixed) > 0 {
			k := rapid.IntRange(1, len(mixed)).Draw(t, "batch")
			before, _ := f5.State()
			published := f5.publishes
			res := f5.ApplyBatch(mixed[:k])
			if len(res) != k {
				t.Fatalf("ApplyBatch of %d entries returned %d results", k, len(res))
			}
			for i := range res {
				if fmt.Sprint(res[i]) != fmt.Sprint(want[i]) {
					t.Fatalf("ApplyBatch: entry %d (index %d) answered %v, Apply %v", i, mixed[i].Index, res[i], want[i])
				}
			}
			after, _ := f5.State()
			wantPub := 0
			if slices.ContainsFunc(mixed[:k], func(l *raft.Log) bool { return l.Type == raft.LogCommand }) {
				wantPub = 1
			}
			if got := f5.publishes - published; got != wantPub || (wantPub == 0) != (after == before) {
				t.Fatalf("a batch of %d entries (commands: %v) published %d states, want %d", k, wantPub == 1, got, wantPub)
			}
			mixed, want = mixed[k:], want[k:]
		}
		if got := mustState(f5); !reflect.DeepEqual(got, final) {
			t.Fatalf("the log in batches differs:\n got %+v\nwant %+v", got, final)
		}
	})
}

func mustState(f *FSM) *State {
	st, _ := f.State()
	return st
}
