package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/harbormaster/harbormaster/internal/conf"
	"github.com/harbormaster/harbormaster/spec"
)

func reg(node string, witness bool) *RegisterNode {
	return &RegisterNode{Node: node, RaftAddr: node + ":7000", APIAddr: node + ":7001", Voter: true, Witness: witness, LeaseTTLMillis: 3000, Time: t0}
}

var testSpec = &spec.Spec{Roles: []spec.Role{
	{Name: "web", Type: spec.TypeService, Marker: true, Candidates: []spec.Candidate{{Node: "n1", Priority: 10}, {Node: "n2", Priority: 5}}},
	{Name: "db", Type: spec.TypeService, Marker: true},
}}

// baseState: n1, n2, n3 and witness w1 registered; n1's lease at seq 5; spec
// version 1 with web (candidates n1, n2) and db (open); web held by n1 at
// epoch 1; db never assigned.
func baseState(t testing.TB) *State {
	t.Helper()
	return mustApply(t, NewState(),
		reg("n1", false), reg("n2", false), reg("n3", false), reg("w1", true),
		&RenewLease{Node: "n1", Seq: 5},
		&ApplySpec{Spec: testSpec, Actor: "operator", Time: t0},
		&Assign{Role: "web", Node: "n1", Epoch: 1, Actor: "n1", Time: t0 + 10},
	)
}

// releasedState: baseState after web was released at epoch 1.
func releasedState(t testing.TB) *State {
	return mustApply(t, baseState(t), &Release{Role: "web", Node: "n1", Epoch: 1, Time: t0 + 20})
}

// heldAtGen7: baseState after web was given back to n1 at lease generation
// 7 (epoch 2).
func heldAtGen7(t testing.TB) *State {
	return mustApply(t, baseState(t), &Assign{Role: "web", Node: "n1", PrevHolder: "n1", HolderGen: 7, Epoch: 2, Time: t0 + 15})
}

// vipState: baseState plus a vip role "ip" (open) and n3 registered again
// with a vip interface.
func vipState(t testing.TB) *State {
	s := testSpec.Clone()
	s.Roles = append(s.Roles, spec.Role{Name: "ip", Type: spec.TypeVIP, Address: spec.MustParsePrefix("198.18.0.200/24")})
	st := mustApply(t, baseState(t), &ApplySpec{Spec: s, ExpectedVersion: 1})
	r := reg("n3", false)
	r.VIP = true
	return mustApply(t, st, r)
}

// releasingState: baseState after the holder of web was asked to let go.
func releasingState(t testing.TB) *State {
	return mustApply(t, baseState(t), &RequestRelease{Role: "web", Epoch: 1, Actor: "n2", Time: t0 + 20})
}

// checkRejected applies cmd to st and checks it is a rejection that changes
// nothing but the index, and leaves st itself untouched.
func checkRejected(t *testing.T, st *State, cmd Command) {
	t.Helper()
	before := deepCopy(t, st)
	if !sameState(before, st) {
		t.Fatalf("snapshot copy of the input differs from it:\n got %+v\nwant %+v", before, st)
	}
	index := st.Index + 7
	got, err := Apply(st, index, cmd)
	var rej *RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("Apply(%T %+v): got error %T %v, want *RejectedError", cmd, cmd, err, err)
	}
	if rej.Command != cmd.Type().String() || rej.Reason == "" {
		t.Fatalf("RejectedError: got Command %q Reason %q, want Command %q and a reason", rej.Command, rej.Reason, cmd.Type())
	}
	if got == nil {
		t.Fatalf("Apply: got nil state on rejection")
	}
	if got == st {
		t.Fatalf("Apply: returned the input state itself; its Index would have changed under readers")
	}
	want := *st
	want.Index = index
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("rejected Apply changed the state:\n got %+v\nwant %+v", got, &want)
	}
	if !sameState(st, before) {
		t.Fatalf("Apply mutated its input state:\n got %+v\nwant %+v", st, before)
	}
}

func TestApplyRejections(t *testing.T) {
	tests := []struct {
		name  string
		state func(testing.TB) *State
		cmd   Command
		why   string // a word the reason must contain
	}{
		// Invalid commands that reach Apply (e.g. written by hand) are rejected too.
		{"register invalid", baseState, &RegisterNode{Node: "n5", RaftAddr: "x:1"}, "api_addr"},
		{"record-event no kind", baseState, &RecordEvent{Event: Event{Message: "m"}}, "event.kind"},

		{"remove unknown node", baseState, &RemoveNode{Node: "n9", Actor: "operator"}, "n9"},
		{"remove already removed", func(t testing.TB) *State {
			return mustApply(t, baseState(t), &RemoveNode{Node: "n3"})
		}, &RemoveNode{Node: "n3"}, "not registered"},

		{"leave unknown node", baseState, &Leave{Node: "n9"}, "not registered"},
		{"leave invalid node", baseState, &Leave{Node: "N9"}, "node"},
		{"leave removed node", func(t testing.TB) *State {
			return mustApply(t, baseState(t), &RemoveNode{Node: "n2"})
		}, &Leave{Node: "n2"}, "not registered"},

		{"renew unknown node", baseState, &RenewLease{Node: "n9", Seq: 1}, "not registered"},
		{"renew stale equal seq", baseState, &RenewLease{Node: "n1", Seq: 5}, "stale"},
		{"renew stale lower seq", baseState, &RenewLease{Node: "n1", Seq: 4}, "stale"},
		{"renew zero seq", baseState, &RenewLease{Node: "n2", Seq: 0}, "seq"},

		{"spec cas mismatch higher", baseState, &ApplySpec{Spec: &spec.Spec{}, ExpectedVersion: 2}, "version"},
		{"spec cas mismatch lower", func(t testing.TB) *State {
			return mustApply(t, baseState(t), &ApplySpec{Spec: testSpec, ExpectedVersion: 1})
		}, &ApplySpec{Spec: &spec.Spec{}, ExpectedVersion: 1}, "version"},
		{"spec cas on fresh state", NewStateTB, &ApplySpec{Spec: &spec.Spec{}, ExpectedVersion: 1}, "version"},
		{"spec nil", baseState, &ApplySpec{}, "spec"},
		{"spec seed after spec", baseState, &ApplySpec{Spec: &spec.Spec{}, Seed: true}, "seed"},
		{"spec seed after empty spec", func(t testing.TB) *State {
			return mustApply(t, NewState(), &ApplySpec{Spec: &spec.Spec{}})
		}, &ApplySpec{Spec: testSpec, Seed: true}, "seed"},
		// An invalid spec is not rejected here: Apply checks only that there
		// is one (see TestApplySpecValidatedAtTheEdgeOnly).

		{"assign role not in spec", baseState, &Assign{Role: "cache", Node: "n1", Epoch: 1}, "not in the spec"},
		{"assign role removed from spec", func(t testing.TB) *State {
			return mustApply(t, baseState(t), &ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: "db", Type: spec.TypeService}}}})
		}, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2}, "not in the spec"},
		{"assign on empty spec", func(t testing.TB) *State {
			return mustApply(t, NewState(), reg("n1", false))
		}, &Assign{Role: "web", Node: "n1", Epoch: 1}, "not in the spec"},
		{"assign unregistered node", baseState, &Assign{Role: "db", Node: "n9", Epoch: 1}, "not registered"},
		{"assign removed node", func(t testing.TB) *State {
			return mustApply(t, baseState(t), &RemoveNode{Node: "n2"})
		}, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2}, "not registered"},
		{"assign witness", baseState, &Assign{Role: "db", Node: "w1", Epoch: 1}, "witness"},
		{"assign leaving node", func(t testing.TB) *State {
			return mustApply(t, baseState(t), &Leave{Node: "n2"})
		}, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2}, "shutting down"},
		{"assign non-candidate", baseState, &Assign{Role: "web", Node: "n3", PrevHolder: "n1", Epoch: 2}, "not a candidate"},
		{"assign prev holder empty but held", baseState, &Assign{Role: "web", Node: "n2", Epoch: 2}, "held by"},
		{"assign prev holder wrong node", baseState, &Assign{Role: "web", Node: "n2", PrevHolder: "n3", Epoch: 2}, "held by"},
		{"assign prev holder set but free", baseState, &Assign{Role: "db", Node: "n2", PrevHolder: "n1", Epoch: 1}, "held by"},
		{"assign prev holder after release", releasedState, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2}, "held by"},
		{"assign same epoch", baseState, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 1}, "epoch"},
		{"assign skipped epoch", baseState, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 3}, "epoch"},
		{"assign fresh role epoch 2", baseState, &Assign{Role: "db", Node: "n2", Epoch: 2}, "epoch"},
		{"assign after release reusing epoch", releasedState, &Assign{Role: "web", Node: "n2", Epoch: 1}, "epoch"},
		{"assign zero epoch", baseState, &Assign{Role: "db", Node: "n2"}, "epoch"},
		{"assign same holder", baseState, &Assign{Role: "web", Node: "n1", PrevHolder: "n1", Epoch: 2}, "already holds"},
		{"assign same holder same generation", heldAtGen7, &Assign{Role: "web", Node: "n1", PrevHolder: "n1", HolderGen: 7, Epoch: 3}, "already holds"},
		{"assign same holder new generation stale epoch", heldAtGen7, &Assign{Role: "web", Node: "n1", PrevHolder: "n1", HolderGen: 8, Epoch: 2}, "epoch"},
		{"assign same holder new generation wrong prev holder", heldAtGen7, &Assign{Role: "web", Node: "n1", HolderGen: 8, Epoch: 3}, "held by"},

		{"request-release wrong epoch", baseState, &RequestRelease{Role: "web", Epoch: 2}, "epoch"},
		{"request-release old epoch", func(t testing.TB) *State {
			return mustApply(t, baseState(t), &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2})
		}, &RequestRelease{Role: "web", Epoch: 1}, "epoch"},
		{"request-release never assigned", baseState, &RequestRelease{Role: "db", Epoch: 1}, "no holder"},
		{"request-release unknown role", baseState, &RequestRelease{Role: "cache", Epoch: 1}, "no holder"},
		{"request-release after release", releasedState, &RequestRelease{Role: "web", Epoch: 1}, "no holder"},
		{"request-release releasing wrong epoch", releasingState, &RequestRelease{Role: "web", Epoch: 3}, "epoch"},
		{"request-release invalid target", baseState, &RequestRelease{Role: "web", Epoch: 1, Target: "N2"}, "target"},
		{"request-release move wrong epoch", baseState, &RequestRelease{Role: "web", Epoch: 2, Target: "n2"}, "epoch"},

		{"set-drain unknown node", baseState, &SetDrain{Node: "n9", Drained: true}, "not registered"},
		{"set-drain removed node", func(t testing.TB) *State {
			return mustApply(t, baseState(t), &RemoveNode{Node: "n2"})
		}, &SetDrain{Node: "n2", Drained: true}, "not registered"},
		{"set-drain invalid node", baseState, &SetDrain{Node: "", Drained: true}, "node"},

		{"assign vip to a node without vip", vipState, &Assign{Role: "ip", Node: "n1", Epoch: 1}, "vip_interface"},

		{"release by non-holder", baseState, &Release{Role: "web", Node: "n2", Epoch: 1}, "does not hold"},
		{"release wrong epoch", baseState, &Release{Role: "web", Node: "n1", Epoch: 2}, "epoch"},
		{"release releasing wrong epoch", releasingState, &Release{Role: "web", Node: "n1", Epoch: 7}, "epoch"},
		{"release never assigned", baseState, &Release{Role: "db", Node: "n1", Epoch: 1}, "does not hold"},
		{"release twice", releasedState, &Release{Role: "web", Node: "n1", Epoch: 1}, "does not hold"},
		{"release by old holder", func(t testing.TB) *State {
			return mustApply(t, baseState(t), &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2})
		}, &Release{Role: "web", Node: "n1", Epoch: 1}, "does not hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.state(t)
			checkRejected(t, st, tt.cmd)
			_, err := Apply(st, st.Index+1, tt.cmd)
			if !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("rejection reason: got %q, want it to mention %q", err, tt.why)
			}
			if !strings.HasPrefix(err.Error(), tt.cmd.Type().String()+" rejected: ") {
				t.Fatalf("rejection: got %q, want it prefixed %q", err, tt.cmd.Type().String()+" rejected: ")
			}
		})
	}
}

// NewStateTB adapts NewState to the table's state constructors.
func NewStateTB(testing.TB) *State { return NewState() }

// applyOK applies cmd to st at st.Index+1, checks it succeeds without touching
// st, and returns the new state.
func applyOK(t *testing.T, st *State, cmd Command) *State {
	t.Helper()
	before := deepCopy(t, st)
	got, err := Apply(st, st.Index+1, cmd)
	if err != nil {
		t.Fatalf("Apply(%T %+v): got error %v, want nil", cmd, cmd, err)
	}
	if got == st {
		t.Fatalf("Apply returned its input state")
	}
	if got.Index != st.Index+1 {
		t.Fatalf("Index: got %d, want %d", got.Index, st.Index+1)
	}
	if !sameState(st, before) {
		t.Fatalf("Apply mutated its input state:\n got %+v\nwant %+v", st, before)
	}
	if again, _ := Apply(before, st.Index+1, cmd); !sameState(again, got) {
		t.Fatalf("Apply is not deterministic:\n got %+v\nwant %+v", again, got)
	}
	return got
}

// applyErr applies cmd to st and checks it is rejected with a
// *RejectedError, leaving everything but the index as it was.
func applyErr(t *testing.T, st *State, cmd Command) {
	t.Helper()
	got, err := Apply(st, st.Index+1, cmd)
	var rej *RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("Apply(%T %+v): got error %v, want a rejection", cmd, cmd, err)
	}
	if len(got.Events) != len(st.Events) || !reflect.DeepEqual(got.Assignments, st.Assignments) || !reflect.DeepEqual(got.Checks, st.Checks) {
		t.Fatalf("rejected %T changed the state", cmd)
	}
}

// lastEvent returns the newest event, failing if there is none.
func lastEvent(t *testing.T, st *State) Event {
	t.Helper()
	if len(st.Events) == 0 {
		t.Fatalf("no events")
	}
	return st.Events[len(st.Events)-1]
}

func checkEvent(t *testing.T, got, want Event) {
	t.Helper()
	if got != want {
		t.Fatalf("event:\n got %+v\nwant %+v", got, want)
	}
}

func TestApplyRegisterNode(t *testing.T) {
	st := NewState()
	st = applyOK(t, st, &RegisterNode{Node: "n1", RaftAddr: "r1", APIAddr: "a1", Voter: true, LeaseTTLMillis: 3000, Time: t0})
	want := &Node{ID: "n1", RaftAddr: "r1", APIAddr: "a1", Voter: true, LeaseTTLMillis: 3000, Registered: t0}
	if got := st.Nodes["n1"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("node: got %+v, want %+v", got, want)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: 1, Index: 1, Time: t0, Kind: EventNodeRegistered, Node: "n1", Actor: "n1",
		New: "raft=r1 api=a1 voter=true witness=false"})

	st = applyOK(t, st, &RenewLease{Node: "n1", Seq: 4})

	// Re-registering with the same addresses keeps the lease, adds no event.
	st = applyOK(t, st, &RegisterNode{Node: "n1", RaftAddr: "r1", APIAddr: "a1", Voter: true, LeaseTTLMillis: 5000, Time: t0 + 9})
	want = &Node{ID: "n1", RaftAddr: "r1", APIAddr: "a1", Voter: true, LeaseTTLMillis: 5000, LeaseSeq: 4, Registered: t0 + 9}
	if got := st.Nodes["n1"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("re-registered node: got %+v, want %+v", got, want)
	}
	if len(st.Events) != 1 || st.EventSeq != 1 {
		t.Fatalf("identical re-registration: got %d events (seq %d), want 1 (seq 1)", len(st.Events), st.EventSeq)
	}

	// A changed address is recorded with old and new.
	st = applyOK(t, st, &RegisterNode{Node: "n1", RaftAddr: "r2", APIAddr: "a1", Witness: true, LeaseTTLMillis: 5000, Time: t0 + 10})
	if got := st.Nodes["n1"].LeaseSeq; got != 4 {
		t.Fatalf("LeaseSeq after re-registration: got %d, want 4", got)
	}
	// Its Seq is its log index (4), not a count of events (it is the 2nd).
	checkEvent(t, lastEvent(t, st), Event{Seq: 4, Index: 4, Time: t0 + 10, Kind: EventNodeRegistered, Node: "n1", Actor: "n1",
		Old: "raft=r1 api=a1 voter=true witness=false", New: "raft=r2 api=a1 voter=false witness=true"})
	if len(st.Events) != 2 || st.EventSeq != 4 {
		t.Fatalf("changed re-registration: got %d events (seq %d), want 2 (seq 4)", len(st.Events), st.EventSeq)
	}
	if got, want := st.NodeIDs(), []string{"n1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("NodeIDs: got %v, want %v", got, want)
	}
}

func TestApplyRemoveNode(t *testing.T) {
	st := applyOK(t, baseState(t), &RemoveNode{Node: "n1", Actor: "operator", Time: t0 + 50})
	if _, ok := st.Nodes["n1"]; ok {
		t.Fatalf("removed node n1 is still registered")
	}
	if got, want := st.NodeIDs(), []string{"n2", "n3", "w1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("NodeIDs: got %v, want %v", got, want)
	}
	// The assignment stays until the coordinator moves it.
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Holder: "n1", Epoch: 1, Since: t0 + 10}); got != want {
		t.Fatalf("assignment after removal: got %+v, want %+v", got, want)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: st.EventSeq, Index: st.Index, Time: t0 + 50, Kind: EventNodeRemoved, Node: "n1", Actor: "operator"})

	// Re-registration starts a fresh lease counter.
	st = applyOK(t, st, reg("n1", false))
	if got := st.Nodes["n1"].LeaseSeq; got != 0 {
		t.Fatalf("LeaseSeq after remove and register: got %d, want 0", got)
	}
}

func TestApplyRenewLease(t *testing.T) {
	base := baseState(t)
	st := applyOK(t, base, &RenewLease{Node: "n1", Seq: 6})
	if got := st.Nodes["n1"].LeaseSeq; got != 6 {
		t.Fatalf("LeaseSeq: got %d, want 6", got)
	}
	if base.Nodes["n1"].LeaseSeq != 5 {
		t.Fatalf("renewal changed the node in the input state")
	}
	st = applyOK(t, st, &RenewLease{Node: "n2", Seq: 1000})
	if got := st.Nodes["n2"].LeaseSeq; got != 1000 {
		t.Fatalf("LeaseSeq of n2: got %d, want 1000 (gaps are allowed)", got)
	}
	if st.EventSeq != base.EventSeq || len(st.Events) != len(base.Events) {
		t.Fatalf("renewals recorded events: got seq %d, want %d", st.EventSeq, base.EventSeq)
	}
	// Everything but the node is shared, unchanged.
	want := *base
	want.Index = st.Index
	want.Nodes = st.Nodes
	if !reflect.DeepEqual(st, &want) {
		t.Fatalf("renewal changed more than the node:\n got %+v\nwant %+v", st, &want)
	}
}

func TestApplySpec(t *testing.T) {
	st := NewState()
	if st.SpecVersion != 0 {
		t.Fatalf("fresh SpecVersion: got %d, want 0", st.SpecVersion)
	}
	in := testSpec.Clone()
	st = applyOK(t, st, &ApplySpec{Spec: in, Actor: "alice", Time: t0})
	if st.SpecVersion != 1 {
		t.Fatalf("SpecVersion: got %d, want 1", st.SpecVersion)
	}
	if !reflect.DeepEqual(st.Spec, testSpec) {
		t.Fatalf("Spec: got %+v, want %+v", st.Spec, testSpec)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: 1, Index: 1, Time: t0, Kind: EventSpecApplied, Actor: "alice", Old: "0", New: "1", Message: "roles=[db,web]"})

	// The state does not alias the command's spec.
	in.Roles[0].Candidates[0].Node = "zz"
	in.Roles[1].Name = "changed"
	if !reflect.DeepEqual(st.Spec, testSpec) {
		t.Fatalf("changing the command's spec changed the state: got %+v", st.Spec)
	}

	// Compare-and-set with the right version.
	st = applyOK(t, st, &ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{}}, ExpectedVersion: 1, Actor: "bob", Time: t0 + 1})
	if st.SpecVersion != 2 {
		t.Fatalf("SpecVersion: got %d, want 2", st.SpecVersion)
	}
	if !reflect.DeepEqual(st.Spec, &spec.Spec{}) {
		t.Fatalf("Spec: got %#v, want empty spec", st.Spec)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: 2, Index: 2, Time: t0 + 1, Kind: EventSpecApplied, Actor: "bob", Old: "1", New: "2", Message: "roles=[]"})

	// ExpectedVersion 0 is unconditional.
	st = applyOK(t, st, &ApplySpec{Spec: testSpec})
	if st.SpecVersion != 3 {
		t.Fatalf("SpecVersion: got %d, want 3", st.SpecVersion)
	}
}

func TestApplySpecSeed(t *testing.T) {
	// A seed applies only while no spec was ever applied.
	st := applyOK(t, NewState(), &ApplySpec{Spec: testSpec, Seed: true, Actor: "n1", Time: t0})
	if st.SpecVersion != 1 || !reflect.DeepEqual(st.Spec, testSpec) {
		t.Fatalf("seeded spec: got version %d %+v, want version 1 %+v", st.SpecVersion, st.Spec, testSpec)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: 1, Index: 1, Time: t0, Kind: EventSpecApplied, Actor: "n1", Old: "0", New: "1", Message: "roles=[db,web]"})
	// A second node's seed is rejected and changes nothing.
	checkRejected(t, st, &ApplySpec{Spec: &spec.Spec{}, Seed: true, Actor: "n2"})
}

func TestApplyLeave(t *testing.T) {
	base := baseState(t)
	st := applyOK(t, base, &Leave{Node: "n1", Reason: "shutting down", Time: t0 + 80})
	if !st.Nodes["n1"].Leaving {
		t.Fatalf("node n1 after Leave: got %+v, want Leaving", st.Nodes["n1"])
	}
	if base.Nodes["n1"].Leaving {
		t.Fatalf("Leave changed the node in the input state")
	}
	want := *base.Nodes["n1"]
	want.Leaving = true
	if got := st.Nodes["n1"]; !reflect.DeepEqual(got, &want) {
		t.Fatalf("node after Leave: got %+v, want %+v", got, &want)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: st.EventSeq, Index: st.Index, Time: t0 + 80, Kind: EventNodeLeaving, Node: "n1", Actor: "n1", Message: "shutting down"})
	// Roles stay with the leaving node until it releases them.
	if got := st.Assignment("web"); got.Holder != "n1" || got.Epoch != 1 {
		t.Fatalf("assignment after Leave: got %+v, want n1 at epoch 1", got)
	}
	st = applyOK(t, st, &Release{Role: "web", Node: "n1", Epoch: 1})

	// Leaving again is idempotent: success, only the index moves.
	again, err := Apply(st, st.Index+1, &Leave{Node: "n1", Reason: "again"})
	if err != nil {
		t.Fatalf("repeated Leave: got error %v, want nil", err)
	}
	w := *st
	w.Index = st.Index + 1
	if !reflect.DeepEqual(again, &w) {
		t.Fatalf("repeated Leave changed the state:\n got %+v\nwant %+v", again, &w)
	}

	// The leaving node is given no role ...
	checkRejected(t, st, &Assign{Role: "web", Node: "n1", Epoch: 2})
	// ... until it registers again, which keeps its lease counter.
	st = applyOK(t, st, reg("n1", false))
	if n := st.Nodes["n1"]; n.Leaving || n.LeaseSeq != 5 {
		t.Fatalf("node after re-registration: got %+v, want not leaving, LeaseSeq 5", n)
	}
	st = applyOK(t, st, &Assign{Role: "web", Node: "n1", Epoch: 2})
	if got := st.Assignment("web"); got.Holder != "n1" || got.Epoch != 2 {
		t.Fatalf("assignment after re-registration: got %+v, want n1 at epoch 2", got)
	}
}

func TestApplyAssign(t *testing.T) {
	base := baseState(t)
	if got, want := base.Assignment("web"), (Assignment{Role: "web", Holder: "n1", Epoch: 1, Since: t0 + 10}); got != want {
		t.Fatalf("initial assignment: got %+v, want %+v", got, want)
	}

	// Handover between candidates.
	st := applyOK(t, base, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2, Reason: "n1 down", Actor: "n3", Time: t0 + 30})
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Holder: "n2", Epoch: 2, Since: t0 + 30, LostBy: "n1", LostAt: t0 + 30}); got != want {
		t.Fatalf("assignment: got %+v, want %+v", got, want)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: st.EventSeq, Index: st.Index, Time: t0 + 30, Kind: EventRoleAssigned, Node: "n2", Actor: "n3",
		Role: "web", Old: "n1", New: "n2", Epoch: 2, Message: "n1 down"})
	if base.Assignment("web").Holder != "n1" {
		t.Fatalf("Assign changed the input state's assignment")
	}

	// An open role admits any non-witness node.
	st = applyOK(t, st, &Assign{Role: "db", Node: "n3", Epoch: 1, Time: t0 + 31})
	if got, want := st.Assignment("db"), (Assignment{Role: "db", Holder: "n3", Epoch: 1, Since: t0 + 31}); got != want {
		t.Fatalf("db assignment: got %+v, want %+v", got, want)
	}
	if got, want := st.HeldBy("n3"), []Assignment{{Role: "db", Holder: "n3", Epoch: 1, Since: t0 + 31}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("HeldBy(n3): got %+v, want %+v", got, want)
	}

	// Assign clears Releasing.
	st = applyOK(t, releasingState(t), &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2})
	if a := st.Assignment("web"); a.Releasing || a.Holder != "n2" {
		t.Fatalf("assignment after handover from a releasing holder: got %+v, want n2 not releasing", a)
	}

	// A role unknown to the state reads as a zero assignment.
	if got, want := base.Assignment("cache"), (Assignment{Role: "cache"}); got != want {
		t.Fatalf("Assignment(cache): got %+v, want %+v", got, want)
	}
}

func TestApplyAssignHolderGen(t *testing.T) {
	base := baseState(t)

	// A handover records the new holder's lease generation.
	st := applyOK(t, base, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", HolderGen: 5, Epoch: 2, Actor: "n3", Time: t0 + 30})
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Holder: "n2", HolderGen: 5, Epoch: 2, Since: t0 + 30, LostBy: "n1", LostAt: t0 + 30}); got != want {
		t.Fatalf("assignment: got %+v, want %+v", got, want)
	}

	// The holder's new generation: the role is given back to it, with a new
	// epoch, bound to the new generation.
	st = applyOK(t, st, &Assign{Role: "web", Node: "n2", PrevHolder: "n2", HolderGen: 6, Epoch: 3, Reason: "new lease", Actor: "n3", Time: t0 + 31})
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Holder: "n2", HolderGen: 6, Epoch: 3, Since: t0 + 31, LostBy: "n1", LostAt: t0 + 30}); got != want {
		t.Fatalf("assignment at the new generation: got %+v, want %+v", got, want)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: st.Index, Index: st.Index, Time: t0 + 31, Kind: EventRoleAssigned, Node: "n2", Actor: "n3",
		Role: "web", Old: "n2", New: "n2", Epoch: 3, Message: "new lease"})
	if got, want := st.HeldBy("n2"), []Assignment{{Role: "web", Holder: "n2", HolderGen: 6, Epoch: 3, Since: t0 + 31, LostBy: "n1", LostAt: t0 + 30}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("HeldBy(n2): got %+v, want %+v", got, want)
	}

	// The same generation again is rejected, whatever the epoch.
	checkRejected(t, st, &Assign{Role: "web", Node: "n2", PrevHolder: "n2", HolderGen: 6, Epoch: 4})

	// From generation 0 (an assignment written before quorum leases) to a
	// real one is a new generation too.
	st = applyOK(t, base, &Assign{Role: "web", Node: "n1", PrevHolder: "n1", HolderGen: 1, Epoch: 2})
	if got := st.Assignment("web"); got.Holder != "n1" || got.HolderGen != 1 || got.Epoch != 2 {
		t.Fatalf("assignment from generation 0: got %+v, want n1 at generation 1, epoch 2", got)
	}

	// A re-assignment to the holder while it is asked to release clears the
	// request, like any assignment.
	st = applyOK(t, releasingState(t), &Assign{Role: "web", Node: "n1", PrevHolder: "n1", HolderGen: 3, Epoch: 2})
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Holder: "n1", HolderGen: 3, Epoch: 2}); got != want {
		t.Fatalf("re-assignment of a releasing role: got %+v, want %+v", got, want)
	}

	// A release drops the generation with the holder.
	st = applyOK(t, st, &Release{Role: "web", Node: "n1", Epoch: 2, Time: t0 + 40})
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Epoch: 2, Since: t0 + 40, LostBy: "n1", LostAt: t0 + 40}); got != want {
		t.Fatalf("assignment after release: got %+v, want %+v", got, want)
	}
}

func TestApplyRequestRelease(t *testing.T) {
	base := baseState(t)
	st := applyOK(t, base, &RequestRelease{Role: "web", Epoch: 1, Reason: "rebalance", Actor: "n2", Time: t0 + 40})
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Holder: "n1", Epoch: 1, Since: t0 + 10, Releasing: true}); got != want {
		t.Fatalf("assignment: got %+v, want %+v", got, want)
	}
	if base.Assignment("web").Releasing {
		t.Fatalf("RequestRelease changed the input state's assignment")
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: st.EventSeq, Index: st.Index, Time: t0 + 40, Kind: EventReleaseRequested, Node: "n1", Actor: "n2",
		Role: "web", Old: "n1", Epoch: 1, Message: "rebalance"})

	// Asking again is idempotent: success, nothing but the index changes.
	again, err := Apply(st, st.Index+1, &RequestRelease{Role: "web", Epoch: 1, Reason: "again", Time: t0 + 41})
	if err != nil {
		t.Fatalf("repeated RequestRelease: got error %v, want nil", err)
	}
	want := *st
	want.Index = st.Index + 1
	if !reflect.DeepEqual(again, &want) {
		t.Fatalf("repeated RequestRelease changed the state:\n got %+v\nwant %+v", again, &want)
	}
}

func TestApplyRequestReleaseMove(t *testing.T) {
	base := baseState(t)
	st := applyOK(t, base, &RequestRelease{Role: "web", Epoch: 1, Target: "n2", Reason: "move", Actor: "operator", Time: t0 + 40})
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Holder: "n1", Epoch: 1, Since: t0 + 10, Releasing: true, MoveTo: "n2"}); got != want {
		t.Fatalf("assignment: got %+v, want %+v", got, want)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: st.Index, Index: st.Index, Time: t0 + 40, Kind: EventReleaseRequested, Node: "n1", Actor: "operator",
		Role: "web", Old: "n1", Epoch: 1, Message: "move"})

	// The same move again is idempotent: only the index moves.
	again, err := Apply(st, st.Index+1, &RequestRelease{Role: "web", Epoch: 1, Target: "n2", Reason: "again"})
	if err != nil {
		t.Fatalf("repeated move: got error %v, want nil", err)
	}
	want := *st
	want.Index = st.Index + 1
	if !reflect.DeepEqual(again, &want) {
		t.Fatalf("repeated move changed the state:\n got %+v\nwant %+v", again, &want)
	}

	// Another target replaces it, and is recorded.
	st = applyOK(t, st, &RequestRelease{Role: "web", Epoch: 1, Target: "n3", Reason: "changed my mind", Time: t0 + 41})
	if got := st.Assignment("web"); !got.Releasing || got.MoveTo != "n3" {
		t.Fatalf("assignment after a move to n3: got %+v, want releasing, MoveTo n3", got)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: st.Index, Index: st.Index, Time: t0 + 41, Kind: EventReleaseRequested, Node: "n1",
		Role: "web", Old: "n1", Epoch: 1, Message: "changed my mind"})

	// The target outlives the release, until the next assignment.
	st = applyOK(t, base, &RequestRelease{Role: "web", Epoch: 1, Target: "n2"})
	st = applyOK(t, st, &Release{Role: "web", Node: "n1", Epoch: 1, Time: t0 + 50})
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Epoch: 1, Since: t0 + 50, MoveTo: "n2", LostBy: "n1", LostAt: t0 + 50}); got != want {
		t.Fatalf("assignment after release: got %+v, want %+v", got, want)
	}
	st = applyOK(t, st, &Assign{Role: "web", Node: "n2", Epoch: 2, HolderGen: 3, Detected: t0 + 50, Time: t0 + 51})
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Holder: "n2", HolderGen: 3, Epoch: 2, Since: t0 + 51, AfterRelease: true, Detected: t0 + 50, LostBy: "n1", LostAt: t0 + 50}); got != want {
		t.Fatalf("assignment after the move: got %+v, want %+v", got, want)
	}
}

func TestApplyAssignAfterRelease(t *testing.T) {
	// After a committed release the previous holder has stopped: the next
	// assignment says so.
	st := applyOK(t, releasedState(t), &Assign{Role: "web", Node: "n2", Epoch: 2, Detected: t0 + 20, Time: t0 + 25})
	if got, want := st.Assignment("web"), (Assignment{Role: "web", Holder: "n2", Epoch: 2, Since: t0 + 25, AfterRelease: true, Detected: t0 + 20, LostBy: "n1", LostAt: t0 + 20}); got != want {
		t.Fatalf("assignment after release: got %+v, want %+v", got, want)
	}
	// A handover from a live holder, a re-assignment to the holder and a
	// first assignment do not.
	for name, tc := range map[string]struct {
		from func(testing.TB) *State
		cmd  *Assign
	}{
		"handover":           {baseState, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2}},
		"new generation":     {baseState, &Assign{Role: "web", Node: "n1", PrevHolder: "n1", HolderGen: 2, Epoch: 2}},
		"first":              {baseState, &Assign{Role: "db", Node: "n2", Epoch: 1}},
		"releasing handover": {releasingState, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2}},
	} {
		st := applyOK(t, tc.from(t), tc.cmd)
		if got := st.Assignment(tc.cmd.Role); got.AfterRelease || got.Holder != tc.cmd.Node {
			t.Errorf("%s: assignment got %+v, want %s holding, AfterRelease false", name, got, tc.cmd.Node)
		}
	}
}

func TestApplySetDrain(t *testing.T) {
	base := baseState(t)
	st := applyOK(t, base, &SetDrain{Node: "n2", Drained: true, Actor: "operator", Time: t0 + 90})
	if !st.Nodes["n2"].Drained {
		t.Fatalf("node n2 after drain: got %+v, want Drained", st.Nodes["n2"])
	}
	if base.Nodes["n2"].Drained {
		t.Fatalf("SetDrain changed the node in the input state")
	}
	want := *base.Nodes["n2"]
	want.Drained = true
	if got := st.Nodes["n2"]; !reflect.DeepEqual(got, &want) {
		t.Fatalf("node after drain: got %+v, want %+v", got, &want)
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: st.Index, Index: st.Index, Time: t0 + 90, Kind: EventNodeDrained, Node: "n2", Actor: "operator", Old: "false", New: "true"})

	// Draining again is idempotent: success, only the index moves.
	again, err := Apply(st, st.Index+1, &SetDrain{Node: "n2", Drained: true, Actor: "operator"})
	if err != nil {
		t.Fatalf("repeated drain: got error %v, want nil", err)
	}
	w := *st
	w.Index = st.Index + 1
	if !reflect.DeepEqual(again, &w) {
		t.Fatalf("repeated drain changed the state:\n got %+v\nwant %+v", again, &w)
	}

	// Roles stay with a drained holder until it releases them.
	st = applyOK(t, st, &SetDrain{Node: "n1", Drained: true, Actor: "operator", Time: t0 + 91})
	if got := st.Assignment("web"); got.Holder != "n1" || got.Epoch != 1 {
		t.Fatalf("assignment after drain: got %+v, want n1 at epoch 1", got)
	}

	// A drain survives re-registration (the node restarting).
	st = applyOK(t, st, reg("n2", false))
	if !st.Nodes["n2"].Drained {
		t.Fatalf("node n2 after re-registration: got %+v, want still Drained", st.Nodes["n2"])
	}

	// Undrain.
	st = applyOK(t, st, &SetDrain{Node: "n2", Actor: "operator", Time: t0 + 92})
	if st.Nodes["n2"].Drained {
		t.Fatalf("node n2 after undrain: got %+v, want not Drained", st.Nodes["n2"])
	}
	checkEvent(t, lastEvent(t, st), Event{Seq: st.Index, Index: st.Index, Time: t0 + 92, Kind: EventNodeDrained, Node: "n2", Actor: "operator", Old: "true", New: "false"})
	// Undraining a node that is not drained changes nothing but the index.
	again, err = Apply(st, st.Index+1, &SetDrain{Node: "n3"})
	if err != nil {
		t.Fatalf("undrain of an undrained node: got error %v, want nil", err)
	}
	w = *st
	w.Index = st.Index + 1
	if !reflect.DeepEqual(again, &w) {
		t.Fatalf("undrain of an undrained node changed the state:\n got %+v\nwant %+v", again, &w)
	}
}

func TestApplyVIPNode(t *testing.T) {
	st := vipState(t)
	if n := st.Nodes["n3"]; !n.VIP {
		t.Fatalf("node n3: got %+v, want VIP", n)
	}
	// Gaining a vip interface is a registration change, recorded.
	checkEvent(t, lastEvent(t, st), Event{Seq: st.Index, Index: st.Index, Time: t0, Kind: EventNodeRegistered, Node: "n3", Actor: "n3",
		Old: "raft=n3:7000 api=n3:7001 voter=true witness=false", New: "raft=n3:7000 api=n3:7001 voter=true witness=false vip=true"})
	// Only a node with a vip interface gets a vip role.
	checkRejected(t, st, &Assign{Role: "ip", Node: "n2", Epoch: 1})
	st = applyOK(t, st, &Assign{Role: "ip", Node: "n3", HolderGen: 1, Epoch: 1})
	if got := st.Assignment("ip"); got.Holder != "n3" || got.Epoch != 1 {
		t.Fatalf("ip assignment: got %+v, want n3 at epoch 1", got)
	}
	// Service roles do not care.
	st = applyOK(t, st, &Assign{Role: "db", Node: "n2", Epoch: 1})
	if got := st.Assignment("db"); got.Holder != "n2" {
		t.Fatalf("db assignment: got %+v, want n2", got)
	}
	// Registering without the interface again is recorded too.
	st = applyOK(t, st, reg("n3", false))
	if n := st.Nodes["n3"]; n.VIP {
		t.Fatalf("node n3 after re-registration without vip: got %+v, want not VIP", n)
	}
	if e := lastEvent(t, st); e.Old != "raft=n3:7000 api=n3:7001 voter=true witness=false vip=true" || e.New != "raft=n3:7000 api=n3:7001 voter=true witness=false" {
		t.Fatalf("event: got %+v, want vip=true dropped", e)
	}
}

func TestApplyRelease(t *testing.T) {
	for name, from := range map[string]func(testing.TB) *State{"held": baseState, "releasing": releasingState} {
		t.Run(name, func(t *testing.T) {
			st := applyOK(t, from(t), &Release{Role: "web", Node: "n1", Epoch: 1, Reason: "stopped", Time: t0 + 60})
			if got, want := st.Assignment("web"), (Assignment{Role: "web", Epoch: 1, Since: t0 + 60, LostBy: "n1", LostAt: t0 + 60}); got != want {
				t.Fatalf("assignment: got %+v, want %+v", got, want)
			}
			if got := st.HeldBy("n1"); len(got) != 0 {
				t.Fatalf("HeldBy(n1) after release: got %+v, want none", got)
			}
			checkEvent(t, lastEvent(t, st), Event{Seq: st.EventSeq, Index: st.Index, Time: t0 + 60, Kind: EventRoleReleased, Node: "n1", Actor: "n1",
				Role: "web", Old: "n1", Epoch: 1, Message: "stopped"})
		})
	}
}

func TestApplyRecordEvent(t *testing.T) {
	base := baseState(t)
	// baseState's events are at indexes 1-4, 6 and 7 (the renewal at 5
	// records none): 6 events, the last at seq 7.
	if len(base.Events) != 6 || base.EventSeq != 7 {
		t.Fatalf("baseState: got %d events (seq %d), want 6 (seq 7)", len(base.Events), base.EventSeq)
	}
	baseEvents := append([]Event(nil), base.Events...)
	in := Event{Seq: 999, Index: 999, Time: t0 + 70, Kind: EventMember, Node: "n4", Actor: "n1", Message: "added voter"}
	st := applyOK(t, base, &RecordEvent{Event: in})
	want := in
	want.Seq = st.Index // Seq and Index are the log's, not the proposer's
	want.Index = st.Index
	checkEvent(t, lastEvent(t, st), want)
	if st.EventSeq != st.Index || len(st.Events) != len(base.Events)+1 {
		t.Fatalf("events: got %d (seq %d), want %d (seq %d)", len(st.Events), st.EventSeq, len(base.Events)+1, st.Index)
	}
	if base.EventSeq != 7 || !reflect.DeepEqual(base.Events, baseEvents) {
		t.Fatalf("RecordEvent changed the input state's events: got %+v (seq %d), want %+v (seq 7)", base.Events, base.EventSeq, baseEvents)
	}

	// At a later index, with a gap in between, Seq follows the index.
	next, err := Apply(st, st.Index+40, &RecordEvent{Event: in})
	if err != nil {
		t.Fatalf("RecordEvent at index %d: got error %v, want nil", st.Index+40, err)
	}
	want.Seq, want.Index = st.Index+40, st.Index+40
	checkEvent(t, lastEvent(t, next), want)
	if next.EventSeq != st.Index+40 {
		t.Fatalf("EventSeq: got %d, want %d", next.EventSeq, st.Index+40)
	}
}

// TestEventSeqIsLogIndex: an event's Seq is the log index of the command
// that made it, whatever the gaps in the log and however many commands in
// between made no event; EventSeq is the Seq of the last event.
func TestEventSeqIsLogIndex(t *testing.T) {
	steps := []struct {
		index uint64
		cmd   Command
		event bool // the command records an event
	}{
		{3, reg("n1", false), true},
		{4, reg("n2", false), true},
		{9, &RenewLease{Node: "n1", Seq: 1}, false},
		{10, reg("n1", false), false}, // identical re-registration
		{12, &ApplySpec{Spec: testSpec, Actor: "operator"}, true},
		{13, &RemoveNode{Node: "n9"}, false}, // rejected
		{20, &Assign{Role: "web", Node: "n1", HolderGen: 1, Epoch: 1}, true},
		{21, &RequestRelease{Role: "web", Epoch: 1}, true},
		{22, &RequestRelease{Role: "web", Epoch: 1}, false}, // idempotent
		{30, &Assign{Role: "web", Node: "n1", PrevHolder: "n1", HolderGen: 2, Epoch: 2}, true},
		{31, &Leave{Node: "n2"}, true},
		{32, &Leave{Node: "n2"}, false}, // idempotent
		{50, &RecordEvent{Event: Event{Kind: EventOperator}}, true},
		{51, &RenewLease{Node: "n1", Seq: 1}, false}, // rejected: stale
	}
	st := NewState()
	var wantSeqs []uint64
	for _, s := range steps {
		next, err := Apply(st, s.index, s.cmd)
		var rej *RejectedError
		if err != nil && !errors.As(err, &rej) {
			t.Fatalf("index %d (%T): got error %T %v, want nil or *RejectedError", s.index, s.cmd, err, err)
		}
		if s.event {
			if err != nil {
				t.Fatalf("index %d (%T): got error %v, want nil", s.index, s.cmd, err)
			}
			wantSeqs = append(wantSeqs, s.index)
		}
		st = next
		var gotSeqs []uint64
		for _, e := range st.Events {
			if e.Seq != e.Index {
				t.Fatalf("index %d: event %+v: got seq %d, want its index %d", s.index, e, e.Seq, e.Index)
			}
			gotSeqs = append(gotSeqs, e.Seq)
		}
		if !reflect.DeepEqual(gotSeqs, wantSeqs) {
			t.Fatalf("index %d (%T): got event seqs %v, want %v", s.index, s.cmd, gotSeqs, wantSeqs)
		}
		if want := wantSeqs[len(wantSeqs)-1]; st.EventSeq != want {
			t.Fatalf("index %d (%T): EventSeq got %d, want %d", s.index, s.cmd, st.EventSeq, want)
		}
	}
	if st.Index != 51 || st.EventSeq != 50 {
		t.Fatalf("final: got index %d event seq %d, want 51 and 50", st.Index, st.EventSeq)
	}

	// EventsSince takes any cursor, an event's seq or not.
	since := []struct {
		seq  uint64
		want []uint64
	}{
		{0, []uint64{3, 4, 12, 20, 21, 30, 31, 50}},
		{3, []uint64{4, 12, 20, 21, 30, 31, 50}},
		{4, []uint64{12, 20, 21, 30, 31, 50}},
		{5, []uint64{12, 20, 21, 30, 31, 50}},
		{11, []uint64{12, 20, 21, 30, 31, 50}},
		{21, []uint64{30, 31, 50}},
		{49, []uint64{50}},
		{50, nil},
		{51, nil},
		{1 << 63, nil},
	}
	for _, tt := range since {
		var got []uint64
		for _, e := range st.EventsSince(tt.seq) {
			got = append(got, e.Seq)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("EventsSince(%d): got seqs %v, want %v", tt.seq, got, tt.want)
		}
	}

	// The numbering survives a snapshot, and the next event carries on.
	c := deepCopy(t, st)
	if !sameState(c, st) {
		t.Fatalf("snapshot copy differs:\n got %+v\nwant %+v", c, st)
	}
	c = mustApply(t, c, &RecordEvent{Event: Event{Kind: EventOperator}})
	if got := lastEvent(t, c); got.Seq != 52 || c.EventSeq != 52 {
		t.Fatalf("event after restore: got seq %d (EventSeq %d), want 52", got.Seq, c.EventSeq)
	}
}

func TestEpochsStrictlyIncrease(t *testing.T) {
	st := mustApply(t, NewState(), reg("n1", false), reg("n2", false), &ApplySpec{Spec: testSpec})
	steps := []Command{
		&Assign{Role: "web", Node: "n1", Epoch: 1},
		&Release{Role: "web", Node: "n1", Epoch: 1},
		&Assign{Role: "web", Node: "n2", Epoch: 2},
		&RequestRelease{Role: "web", Epoch: 2},
		&Release{Role: "web", Node: "n2", Epoch: 2},
		&Assign{Role: "web", Node: "n1", Epoch: 3},
		&Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 4},
		// The role leaves the spec and comes back: its epoch carries on.
		&ApplySpec{Spec: &spec.Spec{}},
		&Release{Role: "web", Node: "n2", Epoch: 4},
		&ApplySpec{Spec: testSpec},
		&Assign{Role: "web", Node: "n1", Epoch: 5},
	}
	var last uint64
	holder := ""
	for i, c := range steps {
		st = applyOK(t, st, c)
		a := st.Assignment("web")
		if a.Epoch < last {
			t.Fatalf("step %d (%T): epoch went back from %d to %d", i, c, last, a.Epoch)
		}
		if a.Holder != holder && a.Holder != "" && a.Epoch <= last {
			t.Fatalf("step %d (%T): holder %q -> %q at epoch %d, want an epoch above %d", i, c, holder, a.Holder, a.Epoch, last)
		}
		last, holder = a.Epoch, a.Holder
	}
	if last != 5 || holder != "n1" {
		t.Fatalf("final assignment: got %q at epoch %d, want n1 at 5", holder, last)
	}
	// A stale epoch from before the spec change cannot be reused.
	checkRejected(t, st, &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 5})
}

// TestEventsBoundedByBytes: large events make the log keep fewer than
// MaxEvents, within MaxEventBytes, oldest dropped first; the newest is kept
// even alone over the bound (an older build may have proposed it), and
// Apply does not refuse it: every build applies the log alike.
// TestApplyKeepsLongTextOfOlderBuilds: the text bounds of leave, release
// and record-event are checked where they are proposed; Apply takes what an
// older build proposed, as that build did, or the nodes would diverge.
func TestApplyKeepsLongTextOfOlderBuilds(t *testing.T) {
	long := strings.Repeat("r", MaxEventMessage+1)
	st := mustApply(t, NewState(), &RegisterNode{Node: "n1", RaftAddr: "a:1", APIAddr: "a:2", LeaseTTLMillis: 1000})
	for _, c := range []Command{
		&Leave{Node: "n1", Reason: long},
		&RecordEvent{Event: Event{Kind: EventOperator, Message: long}},
	} {
		if c.Validate() == nil {
			t.Fatalf("%s: Validate accepted a reason over the bound", c.Type())
		}
		next, err := Apply(st, st.Index+1, c)
		if err != nil {
			t.Fatalf("%s with a long text: Apply refused it: %v", c.Type(), err)
		}
		if got := next.Events[len(next.Events)-1].Message; got != long {
			t.Fatalf("%s: event message of %d bytes, want the %d proposed", c.Type(), len(got), len(long))
		}
		st = next
	}
	if err := validateForApply(&Release{Role: "web", Node: "n1", Epoch: 1, Reason: long}); err != nil {
		t.Fatalf("release with a long reason: Apply would refuse it: %v", err)
	}
}

func TestEventsBoundedByBytes(t *testing.T) {
	msg := strings.Repeat("m", MaxEventMessage)
	per := EventSize(Event{Kind: EventOperator, Message: msg})
	st := NewState()
	const n = 600
	for i := 1; i <= n; i++ {
		next, err := Apply(st, uint64(i), &RecordEvent{Event: Event{Kind: EventOperator, Message: msg}})
		if err != nil {
			t.Fatalf("RecordEvent %d: %v", i, err)
		}
		st = next
	}
	want := MaxEventBytes / per
	if len(st.Events) != want {
		t.Fatalf("events of %d bytes kept: %d, want %d (%d bytes in all)", per, len(st.Events), want, MaxEventBytes)
	}
	if got := st.Events[len(st.Events)-1].Seq; got != n {
		t.Fatalf("newest kept: seq %d, want %d", got, n)
	}
	if got := st.Events[0].Seq; got != uint64(n-want+1) {
		t.Fatalf("oldest kept: seq %d, want %d (oldest dropped first)", got, n-want+1)
	}
	huge := strings.Repeat("h", MaxEventBytes)
	st, err := Apply(st, n+1, &RecordEvent{Event: Event{Kind: EventOperator, Message: huge}})
	if err != nil {
		t.Fatalf("RecordEvent over the bound: %v; Apply must not refuse what an older build accepted", err)
	}
	if len(st.Events) != 1 || st.Events[0].Message != huge {
		t.Fatalf("after an event alone over the bound: %d events kept, want it alone", len(st.Events))
	}
	st, _ = Apply(st, n+2, &RecordEvent{Event: Event{Kind: EventOperator, Message: "small"}})
	if len(st.Events) != 1 || st.Events[0].Message != "small" {
		t.Fatalf("after a small event: %d events kept, want the small one alone", len(st.Events))
	}
}

func TestEventsBounded(t *testing.T) {
	// Event i is recorded at log index idx(i): strictly increasing, with
	// gaps of 4 and 2, so Seq is not contiguous.
	idx := func(i int) uint64 { return uint64(3*i - i%2) }
	st := NewState()
	const n = MaxEvents + 10
	for i := 1; i <= n; i++ {
		next, err := Apply(st, idx(i), &RecordEvent{Event: Event{Kind: EventOperator, Time: int64(i)}})
		if err != nil {
			t.Fatalf("RecordEvent %d: %v", i, err)
		}
		if len(next.Events) > MaxEvents {
			t.Fatalf("after %d events: got %d kept, want at most %d", i, len(next.Events), MaxEvents)
		}
		if want := min(i, MaxEvents); len(next.Events) != want {
			t.Fatalf("after %d events: got %d kept, want %d", i, len(next.Events), want)
		}
		if got, want := next.Events[0].Seq, idx(max(1, i-MaxEvents+1)); got != want {
			t.Fatalf("after %d events: oldest kept has seq %d, want %d", i, got, want)
		}
		if prev := len(st.Events); prev > 0 && st.Events[prev-1].Seq != idx(i-1) {
			t.Fatalf("event %d: input state's last event changed to seq %d, want %d", i, st.Events[prev-1].Seq, idx(i-1))
		}
		st = next
	}
	if len(st.Events) != MaxEvents {
		t.Fatalf("events kept: got %d, want %d", len(st.Events), MaxEvents)
	}
	if st.EventSeq != idx(n) {
		t.Fatalf("EventSeq: got %d, want %d", st.EventSeq, idx(n))
	}
	if got, want := st.Events[0].Seq, idx(n-MaxEvents+1); got != want {
		t.Fatalf("oldest kept event: got seq %d, want %d (oldest dropped first)", got, want)
	}
	for k, e := range st.Events {
		i := n - MaxEvents + 1 + k // the event's number, stamped in Time
		want := idx(i)
		if e.Seq != want || e.Index != want || e.Time != int64(i) {
			t.Fatalf("Events[%d]: got seq %d index %d time %d, want seq and index %d, time %d", k, e.Seq, e.Index, e.Time, want, i)
		}
		if k > 0 && e.Seq <= st.Events[k-1].Seq {
			t.Fatalf("Events[%d]: seq %d does not follow %d", k, e.Seq, st.Events[k-1].Seq)
		}
	}
	if got := st.EventsSince(idx(n - 3)); len(got) != 3 || got[0].Seq != idx(n-2) {
		t.Fatalf("EventsSince(%d): got %d events starting at %v, want 3 starting at %d", idx(n-3), len(got), got, idx(n-2))
	}
	// A cursor between two events' seqs gives the events after it.
	if got := st.EventsSince(idx(n-3) + 1); len(got) != 3 || got[0].Seq != idx(n-2) {
		t.Fatalf("EventsSince(%d): got %d events starting at %v, want 3 starting at %d", idx(n-3)+1, len(got), got, idx(n-2))
	}
	// A cursor older than the oldest kept event gives all that is kept.
	if got := st.EventsSince(idx(n-MaxEvents+1) - 1); len(got) != MaxEvents {
		t.Fatalf("EventsSince(before the oldest kept): got %d events, want %d", len(got), MaxEvents)
	}
	if got := st.EventsSince(0); len(got) != MaxEvents {
		t.Fatalf("EventsSince(0): got %d events, want %d", len(got), MaxEvents)
	}
	if got := st.EventsSince(idx(n)); len(got) != 0 {
		t.Fatalf("EventsSince(last): got %d events, want 0", len(got))
	}
	// The bounded log survives a snapshot.
	if c := deepCopy(t, st); !sameState(c, st) {
		t.Fatalf("snapshot of a full event log differs")
	}
}

func TestFSMApply(t *testing.T) {
	f := New()
	var idx uint64
	for _, c := range sampleCommands() {
		idx++
		if res := applyLog(f, idx, mustEncode(t, c)); res != nil {
			t.Fatalf("FSM.Apply(%T): got %v, want nil", c, res)
		}
	}
	st, _ := f.State()
	want := mustApply(t, NewState(), sampleCommands()...)
	if !sameState(st, want) {
		t.Fatalf("FSM state differs from Apply's:\n got %+v\nwant %+v", st, want)
	}

	// A rejection is returned as the log's response.
	idx++
	res := applyLog(f, idx, mustEncode(t, &RenewLease{Node: "n9", Seq: 1}))
	var rej *RejectedError
	if err, _ := res.(error); !errors.As(err, &rej) {
		t.Fatalf("FSM.Apply of a rejected command: got %T %v, want *RejectedError", res, res)
	}
	if st, _ := f.State(); st.Index != idx {
		t.Fatalf("Index after rejection: got %d, want %d", st.Index, idx)
	}
}

// unreadableIndex is the log index at which TestFSMApplyUnreadable feeds
// its entries: distinctive enough to look for in a panic message.
const unreadableIndex = 4711

func TestFSMApplyUnreadable(t *testing.T) {
	good := mustEncode(t, &Assign{Role: "db", Node: "n2", Epoch: 1})
	tests := []struct {
		name string
		data []byte
		why  string // what the panic message must also say
	}{
		{"unknown version", append([]byte{good[0], 2}, good[2:]...), "version 2"},
		{"unknown type", append([]byte{42, 1}, good[2:]...), "type-42"},
		{"unknown type unknown version", append([]byte{0x7f, 9}, good[2:]...), "unknown command type"},
		{"ignore flag on a mandatory type", append([]byte{good[0] | 0x80, 1}, good[2:]...), "may not be skipped"},
		{"unknown field", append([]byte{good[0], 1}, `{"role":"db","node":"n2","epoch":1,"force":true}`...), "force"},
		{"trailing data", append(append([]byte{}, good...), '}'), "trailing"},
		{"truncated", append([]byte{good[0], 1}, `{"role":"db"`...), "decode assign"},
		{"short", []byte{5}, "2-byte header"},
		{"empty", []byte{}, "2-byte header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New()
			for i, c := range []Command{reg("n2", false), &ApplySpec{Spec: testSpec}} {
				applyLog(f, uint64(i+1), mustEncode(t, c))
			}
			before, changed := f.State()
			snap := deepCopy(t, before)

			var res any
			recovered := func() (r any) {
				defer func() { r = recover() }()
				res = applyLog(f, unreadableIndex, tt.data)
				return nil
			}()
			if recovered == nil {
				t.Fatalf("FSM.Apply(%q): got %T %v, want a panic", tt.data, res, res)
			}
			msg := fmt.Sprint(recovered)
			for _, want := range []string{"cannot be read", fmt.Sprintf("entry %d ", unreadableIndex), "upgrade", tt.why} {
				if !strings.Contains(msg, want) {
					t.Errorf("panic message: got %q, want it to contain %q", msg, want)
				}
			}

			// Nothing was published before the panic: not even the index.
			after, _ := f.State()
			if after != before {
				t.Fatalf("FSM.Apply published a state before panicking:\n got %+v\nwant %+v", after, before)
			}
			if !sameState(before, snap) {
				t.Fatalf("FSM.Apply mutated the published state:\n got %+v\nwant %+v", before, snap)
			}
			select {
			case <-changed:
				t.Fatalf("State channel closed by an Apply that panicked")
			default:
			}
			if a := after.Assignment("db"); a.Holder != "" {
				t.Fatalf("assignment: got %+v, want none", a)
			}
			// The FSM is not left locked: the same log, readable, still applies.
			if res := applyLog(f, unreadableIndex, good); res != nil {
				t.Fatalf("FSM.Apply of the readable command after the panic: got %v, want nil", res)
			}
			if a := mustState(f).Assignment("db"); a.Holder != "n2" || a.Epoch != 1 {
				t.Fatalf("assignment after the readable command: got %+v, want n2 at epoch 1", a)
			}
		})
	}
}

func TestFSMApplySkipsUnknownIgnorable(t *testing.T) {
	good := mustEncode(t, &Assign{Role: "db", Node: "n2", Epoch: 1})
	for name, data := range map[string][]byte{
		"unknown ignorable type":             append([]byte{42 | 0x80, 1}, good[2:]...),
		"unknown ignorable type any version": append([]byte{0xff, 200}, "not even json"...),
	} {
		t.Run(name, func(t *testing.T) {
			f := New()
			for i, c := range []Command{reg("n2", false), &ApplySpec{Spec: testSpec}} {
				applyLog(f, uint64(i+1), mustEncode(t, c))
			}
			before, changed := f.State()
			snap := deepCopy(t, before)
			if res := applyLog(f, 3, data); res != nil {
				t.Fatalf("FSM.Apply: got %T %v, want nil", res, res)
			}
			after, _ := f.State()
			want := *before
			want.Index = 3
			if !reflect.DeepEqual(after, &want) {
				t.Fatalf("a skipped command changed more than the index:\n got %+v\nwant %+v", after, &want)
			}
			if !sameState(before, snap) {
				t.Fatalf("FSM.Apply mutated the published state")
			}
			select {
			case <-changed:
			default:
				t.Fatalf("State channel not closed after an Apply that advanced the index")
			}
			if a := after.Assignment("db"); a.Holder != "" {
				t.Fatalf("assignment: got %+v, want none", a)
			}
		})
	}
}

// TestApplySpecValidatedAtTheEdgeOnly: Apply takes any spec (a newer build
// may know role types this one does not); Encode, the edge, refuses invalid
// ones and names the field.
func TestApplySpecValidatedAtTheEdgeOnly(t *testing.T) {
	tests := []struct {
		name  string
		spec  *spec.Spec
		field string
	}{
		{"address on a redis-master", &spec.Spec{Roles: []spec.Role{{Name: "x", Type: spec.TypeRedisMaster, Address: spec.MustParsePrefix("198.18.0.1/24")}}}, "roles[0].address"},
		{"second redis-master after a valid role", &spec.Spec{Roles: []spec.Role{{Name: "web", Type: spec.TypeRedisMaster}, {Name: "cache", Type: spec.TypeRedisMaster}}}, "roles[1].type"},
		{"unknown type", &spec.Spec{Roles: []spec.Role{{Name: "x", Type: "cron"}}}, "roles[0].type"},
		{"empty type", &spec.Spec{Roles: []spec.Role{{Name: "x"}}}, "roles[0].type"},
		{"empty name", &spec.Spec{Roles: []spec.Role{{Type: spec.TypeService}}}, "roles[0].name"},
		{"invalid name", &spec.Spec{Roles: []spec.Role{{Name: "Web", Type: spec.TypeService}}}, "roles[0].name"},
		{"duplicate name", &spec.Spec{Roles: []spec.Role{{Name: "web", Type: spec.TypeService}, {Name: "web", Type: spec.TypeService}}}, "roles[1].name"},
		{"invalid candidate", &spec.Spec{Roles: []spec.Role{{Name: "web", Type: spec.TypeService, Candidates: []spec.Candidate{{Node: "N1"}}}}}, "roles[0].candidates[0].node"},
		{"duplicate candidate", &spec.Spec{Roles: []spec.Role{{Name: "web", Type: spec.TypeService, Candidates: []spec.Candidate{{Node: "n1"}, {Node: "n1"}}}}}, "roles[0].candidates[1].node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := &ApplySpec{Spec: tt.spec, Actor: "operator", Time: t0 + 90}

			// The edge refuses it.
			b, err := Encode(cmd)
			if err == nil {
				t.Fatalf("Encode(%v): got %q, nil error; want an error naming %q", tt.spec, b, tt.field)
			}
			if b != nil {
				t.Fatalf("Encode: got bytes %q alongside error %v, want nil", b, err)
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Encode: got error %T %v, want a *conf.FieldError for %q", err, err, tt.field)
			}
			if !strings.HasPrefix(err.Error(), "apply-spec: ") {
				t.Fatalf("Encode error: got %q, want it prefixed %q", err, "apply-spec: ")
			}

			// Apply takes it.
			base := baseState(t)
			st := applyOK(t, base, cmd)
			if st.SpecVersion != base.SpecVersion+1 {
				t.Fatalf("SpecVersion: got %d, want %d", st.SpecVersion, base.SpecVersion+1)
			}
			if !reflect.DeepEqual(st.Spec, tt.spec.Clone()) {
				t.Fatalf("Spec: got %+v, want %+v", st.Spec, tt.spec)
			}
			if e := lastEvent(t, st); e.Kind != EventSpecApplied || e.Seq != st.Index {
				t.Fatalf("event: got %+v, want %s at seq %d", e, EventSpecApplied, st.Index)
			}

			// And so does the FSM, from bytes a newer build wrote.
			f := New()
			applyLog(f, 1, mustEncode(t, reg("n1", false)))
			if res := applyLog(f, 2, rawCommand(t, TypeApplySpec, 1, cmd)); res != nil {
				t.Fatalf("FSM.Apply: got %v, want nil", res)
			}
			if got := mustState(f); got.SpecVersion != 1 || !reflect.DeepEqual(got.Spec, tt.spec.Clone()) {
				t.Fatalf("FSM state: got spec version %d %+v, want version 1 %+v", got.SpecVersion, got.Spec, tt.spec)
			}
			// The state, invalid spec included, survives a snapshot.
			if got := snapshotRestore(t, f); !sameState(got, mustState(f)) {
				t.Fatalf("restored state:\n got %+v\nwant %+v", got, mustState(f))
			}
		})
	}
}

func TestFSMApplyNonCommandLog(t *testing.T) {
	f := New()
	applyLog(f, 1, mustEncode(t, reg("n1", false)))
	before, _ := f.State()
	for _, typ := range []raft.LogType{raft.LogNoop, raft.LogConfiguration, raft.LogBarrier} {
		if res := f.Apply(&raft.Log{Type: typ, Index: 2, Data: []byte("junk")}); res != nil {
			t.Fatalf("FSM.Apply(%v): got %v, want nil", typ, res)
		}
	}
	if after, _ := f.State(); after != before {
		t.Fatalf("non-command log changed the state: got %+v, want %+v", after, before)
	}
}

func TestFSMStateChannel(t *testing.T) {
	f := New()
	st0, ch0 := f.State()
	if !sameState(st0, NewState()) {
		t.Fatalf("New().State(): got %+v, want NewState()", st0)
	}
	select {
	case <-ch0:
		t.Fatalf("State channel closed before any Apply")
	default:
	}
	applyLog(f, 1, mustEncode(t, reg("n1", false)))
	select {
	case <-ch0:
	default:
		t.Fatalf("State channel not closed after Apply")
	}
	st1, ch1 := f.State()
	if st1 == st0 || st1.Index != 1 {
		t.Fatalf("State after Apply: got index %d (same pointer %t), want a new state at index 1", st1.Index, st1 == st0)
	}
	select {
	case <-ch1:
		t.Fatalf("new State channel already closed")
	default:
	}
	// A rejected command still publishes (the index moved).
	applyLog(f, 2, mustEncode(t, &RemoveNode{Node: "n9"}))
	select {
	case <-ch1:
	default:
		t.Fatalf("State channel not closed after a rejected Apply")
	}
	// Restore publishes too.
	_, ch2 := f.State()
	var b bytes.Buffer
	if err := WriteSnapshot(&b, NewState()); err != nil {
		t.Fatal(err)
	}
	if err := f.Restore(readCloser{&b}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	select {
	case <-ch2:
	default:
		t.Fatalf("State channel not closed after Restore")
	}
}

func TestFSMSnapshotRestore(t *testing.T) {
	f := New()
	for i, c := range sampleCommands() {
		applyLog(f, uint64(i+1), mustEncode(t, c))
	}
	applyLog(f, uint64(len(sampleCommands())+1), mustEncode(t, reg("n2", false)))
	want, _ := f.State()
	if got := snapshotRestore(t, f); !sameState(got, want) {
		t.Fatalf("restored state:\n got %+v\nwant %+v", got, want)
	}

	// Persist cancels the sink when writing fails.
	snap, _ := f.Snapshot()
	sink := &memSink{failWrite: true}
	if err := snap.Persist(sink); err == nil {
		t.Fatalf("Persist to a failing sink: got nil, want an error")
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("Persist to a failing sink: cancelled=%t closed=%t, want cancelled only", sink.cancelled, sink.closed)
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	tests := map[string]string{
		"empty":          ``,
		"not json":       `snapshot`,
		"future format":  `{"format":2,"state":{"index":1}}`,
		"no format":      `{"state":{"index":1}}`,
		"no state":       `{"format":1}`,
		"null state":     `{"format":1,"state":null}`,
		"unknown field":  `{"format":1,"state":{"index":1,"leader":"n1"}}`,
		"unknown top":    `{"format":1,"state":{"index":1},"extra":true}`,
		"unknown nested": `{"format":1,"state":{"index":1,"nodes":{"n1":{"id":"n1","zone":"a"}}}}`,
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			f := New()
			applyLog(f, 1, mustEncode(t, reg("n1", false)))
			before, _ := f.State()
			if err := f.Restore(readCloser{bytes.NewBufferString(doc)}); err == nil {
				t.Fatalf("Restore(%q): got nil, want an error", doc)
			}
			if after, _ := f.State(); after != before {
				t.Fatalf("failed Restore replaced the state")
			}
		})
	}
}

func TestReadSnapshotNormalizes(t *testing.T) {
	st, err := ReadSnapshot(strings.NewReader(`{"format":1,"state":{"index":4,"spec_version":0,"spec":null,"nodes":null,"checks":null,"assignments":null,"events":[],"event_seq":0}}`))
	if err != nil {
		t.Fatalf("ReadSnapshot: %v", err)
	}
	want := NewState()
	want.Index = 4
	if !sameState(st, want) {
		t.Fatalf("normalized state:\n got %#v\nwant %#v", st, want)
	}
	st, err = ReadSnapshot(strings.NewReader(`{"format":1,"state":{"index":4,"spec":{"roles":[]}}}`))
	if err != nil {
		t.Fatalf("ReadSnapshot: %v", err)
	}
	if !sameState(st, want) {
		t.Fatalf("normalized state with empty roles:\n got %#v\nwant %#v", st, want)
	}
}

// A plain release request (the coordinator's) on a role an operator is
// moving keeps the move's target; an assignment to a drained node is
// refused even if it was planned before the drain committed.
func TestApplyMoveSurvivesPlainRequestAndDrainedRefused(t *testing.T) {
	base := baseState(t)
	st := applyOK(t, base, &RequestRelease{Role: "web", Epoch: 1, Target: "n2", Reason: "move", Actor: "operator", Time: t0 + 40})
	st = applyOK(t, st, &RequestRelease{Role: "web", Epoch: 1, Reason: "no longer eligible", Actor: "n1", Time: t0 + 41})
	if got := st.Assignment("web"); !got.Releasing || got.MoveTo != "n2" {
		t.Fatalf("after a plain request on a move: got %+v, want releasing with MoveTo n2", got)
	}
	st = applyOK(t, st, &Release{Role: "web", Node: "n1", Epoch: 1, Time: t0 + 42})
	st = applyOK(t, st, &SetDrain{Node: "n2", Drained: true, Actor: "operator", Time: t0 + 43})
	_, err := Apply(st, st.Index+1, &Assign{Role: "web", Node: "n2", Epoch: 2, Reason: "planned before the drain", Time: t0 + 44})
	var rej *RejectedError
	if !errors.As(err, &rej) || !strings.Contains(err.Error(), "drained") {
		t.Fatalf("assign to a drained node: got %v, want a rejection naming the drain", err)
	}
}

func TestApplyChecks(t *testing.T) {
	r := reg("n1", false)
	r.Checks = []string{"pull", "http"}
	st := mustApply(t, NewState(), r)
	want := map[string]CheckResult{"pull": {Since: t0}, "http": {Since: t0}}
	if got := st.Checks["n1"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("checks after register: got %+v, want %+v (unknown)", got, want)
	}
	if st.CheckPassing("n1", "pull") {
		t.Fatalf("CheckPassing(unknown) = true, want false")
	}

	// First verdict: a transition from unknown, with an event.
	st = applyOK(t, st, &CheckUpdate{Node: "n1", Check: "pull", Passing: true, Output: "pulled", Time: t0 + 10})
	if got := st.Checks["n1"]["pull"]; got != (CheckResult{Known: true, Passing: true, Since: t0 + 10, Output: "pulled"}) {
		t.Fatalf("pull after first verdict: got %+v", got)
	}
	if !st.CheckPassing("n1", "pull") || st.CheckPassing("n1", "http") || st.CheckPassing("n2", "pull") {
		t.Fatalf("CheckPassing: pull %v http %v n2 %v, want true false false",
			st.CheckPassing("n1", "pull"), st.CheckPassing("n1", "http"), st.CheckPassing("n2", "pull"))
	}
	e := st.Events[len(st.Events)-1]
	if e.Kind != EventCheck || e.Old != "unknown" || e.New != "passing" || e.Node != "n1" || e.Message != "pull passing" {
		t.Fatalf("event: got %+v, want check unknown -> passing", e)
	}

	// The same verdict again refreshes the texts, keeps Since, adds no event.
	n := len(st.Events)
	st = applyOK(t, st, &CheckUpdate{Node: "n1", Check: "pull", Passing: true, Output: "pulled again", Time: t0 + 20})
	if got := st.Checks["n1"]["pull"]; got.Since != t0+10 || got.Output != "pulled again" {
		t.Fatalf("pull after same verdict: got %+v, want since t0+10 and the new output", got)
	}
	if len(st.Events) != n {
		t.Fatalf("same verdict added an event: %+v", st.Events[n:])
	}

	// Failing: a transition with the error in the event.
	st = applyOK(t, st, &CheckUpdate{Node: "n1", Check: "pull", Error: "manifest: 404", Time: t0 + 30})
	e = st.Events[len(st.Events)-1]
	if e.Old != "passing" || e.New != "failing" || e.Message != "pull failing: manifest: 404" {
		t.Fatalf("event: got %+v, want passing -> failing with the error", e)
	}

	// Unknown check and unknown node are refused.
	applyErr(t, st, &CheckUpdate{Node: "n1", Check: "tcp", Passing: true})
	applyErr(t, st, &CheckUpdate{Node: "n9", Check: "pull", Passing: true})

	// Re-registration resets the checks to unknown and drops undeclared ones.
	r2 := reg("n1", false)
	r2.Checks = []string{"pull"}
	r2.Time = t0 + 40
	st = applyOK(t, st, r2)
	if got, want := st.Checks["n1"], (map[string]CheckResult{"pull": {Since: t0 + 40}}); !reflect.DeepEqual(got, want) {
		t.Fatalf("checks after re-register: got %+v, want %+v", got, want)
	}
	// And registering without checks forgets them.
	st = applyOK(t, st, reg("n1", false))
	if _, ok := st.Checks["n1"]; ok {
		t.Fatalf("checks after register without checks: got %+v, want none", st.Checks["n1"])
	}
}

func TestApplyAssignRequiresChecksAndActuator(t *testing.T) {
	sp := &spec.Spec{Roles: []spec.Role{
		{Name: "ip", Type: spec.TypeService, Requires: []string{"pull"}},
		{Name: "notary", Type: spec.TypeService},
		{Name: "tag", Type: spec.TypeService, Marker: true},
	}}
	r1 := reg("n1", false)
	r1.Checks, r1.Services = []string{"pull"}, []string{"ip"}
	r2 := reg("n2", false) // no checks, no declared services
	st := mustApply(t, NewState(), r1, r2, &ApplySpec{Spec: sp, Actor: "operator", Time: t0})

	applyErr(t, st, &Assign{Role: "ip", Node: "n1", Epoch: 1, Time: t0})     // pull unknown
	applyErr(t, st, &Assign{Role: "ip", Node: "n2", Epoch: 1, Time: t0})     // n2 does not run pull
	applyErr(t, st, &Assign{Role: "notary", Node: "n1", Epoch: 1, Time: t0}) // n1 runs only ip
	applyErr(t, st, &Assign{Role: "notary", Node: "n2", Epoch: 1, Time: t0}) // n2 declares none
	applyOK(t, st, &Assign{Role: "tag", Node: "n2", Epoch: 1, Time: t0})     // a marker needs no actuator
	st = applyOK(t, st, &CheckUpdate{Node: "n1", Check: "pull", Passing: true, Time: t0})
	applyOK(t, st, &Assign{Role: "ip", Node: "n1", Epoch: 1, Time: t0})
	st = applyOK(t, st, &CheckUpdate{Node: "n1", Check: "pull", Passing: false, Time: t0})
	applyErr(t, st, &Assign{Role: "ip", Node: "n1", Epoch: 1, Time: t0})
}

func TestApplyRedisReport(t *testing.T) {
	r := reg("n1", false)
	r.Redis = "10.0.0.1:6379"
	st := mustApply(t, NewState(), r, reg("n2", false))
	applyErr(t, st, &RedisReport{Node: "n2", Role: RedisMaster, Time: t0}) // n2 has no redis endpoint
	applyErr(t, st, &RedisReport{Node: "n9", Role: RedisMaster, Time: t0}) // not registered
	st = applyOK(t, st, &RedisReport{Node: "n1", Role: RedisMaster, Offset: 10, RunID: "r1", Time: t0 + 1})
	if got := st.Redis["n1"]; !reflect.DeepEqual(got, RedisState{Role: RedisMaster, Offset: 10, RunID: "r1", Time: t0 + 1, Since: t0 + 1}) {
		t.Fatalf("redis state: %+v", got)
	}
	e := lastEvent(t, st)
	if e.Kind != EventRedis || e.Old != "unknown" || e.New != "master" {
		t.Fatalf("event: %+v, want redis unknown -> master", e)
	}
	// An offset-only report updates the state, keeps Since, adds no event.
	n := len(st.Events)
	st = applyOK(t, st, &RedisReport{Node: "n1", Role: RedisMaster, Offset: 99, RunID: "r1", Time: t0 + 2})
	if got := st.Redis["n1"]; got.Offset != 99 || got.Since != t0+1 || got.Time != t0+2 || len(st.Events) != n {
		t.Fatalf("offset report: %+v, %d new events", got, len(st.Events)-n)
	}
	// Demotion is an event naming the master.
	st = applyOK(t, st, &RedisReport{Node: "n1", Role: RedisReplica, Master: "10.0.0.2:6379", LinkUp: true, Offset: 99, RunID: "r1", Time: t0 + 3})
	if e := lastEvent(t, st); e.Old != "master" || e.New != "replica of 10.0.0.2:6379" {
		t.Fatalf("event: %+v", e)
	}
	// Re-registration forgets the report; removal too.
	st = applyOK(t, st, r)
	if _, ok := st.Redis["n1"]; ok {
		t.Fatalf("report kept across a re-registration: %+v", st.Redis)
	}
	st = applyOK(t, st, &RedisReport{Node: "n1", Offset: -1, Error: "connection refused", Time: t0 + 4})
	st = applyOK(t, st, &RemoveNode{Node: "n1", Actor: "op", Time: t0 + 5})
	if _, ok := st.Redis["n1"]; ok {
		t.Fatalf("report kept after removal")
	}
}

func TestApplyAssignRedisMasterNeedsAnOffset(t *testing.T) {
	r := reg("n1", false)
	r.Redis = "10.0.0.1:6379"
	st := mustApply(t, NewState(), r, reg("n2", false),
		&ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: "redis", Type: spec.TypeRedisMaster}}}, Actor: "op", Time: t0})
	applyErr(t, st, &Assign{Role: "redis", Node: "n2", Epoch: 1, Time: t0}) // no endpoint
	applyErr(t, st, &Assign{Role: "redis", Node: "n1", Epoch: 1, Time: t0}) // no report yet
	st = applyOK(t, st, &RedisReport{Node: "n1", Offset: -1, Error: "down", Time: t0})
	applyErr(t, st, &Assign{Role: "redis", Node: "n1", Epoch: 1, Time: t0}) // unreadable
	st = applyOK(t, st, &RedisReport{Node: "n1", Role: RedisReplica, Master: "10.0.0.2:6379", Offset: 5, Time: t0})
	applyOK(t, st, &Assign{Role: "redis", Node: "n1", Epoch: 1, Time: t0})
}

// A re-registration resets the node's check results, unless it keeps them
// (a config reload): then the checks named before and now keep theirs, new
// ones start unknown, and dropped ones go.
func TestRegisterKeepChecks(t *testing.T) {
	r := reg("n1", false)
	r.Checks = []string{"a", "b"}
	st := applyOK(t, baseState(t), r)
	st = applyOK(t, st, &CheckUpdate{Node: "n1", Check: "a", Passing: true, Time: t0 + 5})
	st = applyOK(t, st, &CheckUpdate{Node: "n1", Check: "b", Passing: true, Time: t0 + 5})

	again := reg("n1", false)
	again.Checks, again.Time = []string{"a", "c"}, t0+9
	reset := applyOK(t, st, again)
	if res := reset.Checks["n1"]["a"]; res.Known {
		t.Fatalf("a plain re-registration kept check a's result: %+v", res)
	}
	again.KeepChecks = true
	kept := applyOK(t, st, again)
	if res := kept.Checks["n1"]["a"]; !res.Known || !res.Passing || res.Since != t0+5 {
		t.Fatalf("check a after a keeping re-registration: %+v, want its passing result", res)
	}
	if res, ok := kept.Checks["n1"]["c"]; !ok || res.Known || res.Since != t0+9 {
		t.Fatalf("new check c: %+v (present %t), want unknown since the registration", res, ok)
	}
	if _, ok := kept.Checks["n1"]["b"]; ok {
		t.Fatalf("dropped check b still recorded: %+v", kept.Checks["n1"])
	}
}
