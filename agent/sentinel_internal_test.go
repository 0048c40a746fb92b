package agent

import (
	"testing"

	"github.com/harbormaster/harbormaster/agent/sentinel"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

func TestSentinelSourceStepAside(t *testing.T) {
	st := fsm.NewState()
	apply := func(c fsm.Command) {
		t.Helper()
		next, err := fsm.Apply(st, st.Index+1, c)
		if err != nil {
			t.Fatal(err)
		}
		st = next
	}
	for _, id := range []string{"n1", "n2"} {
		apply(&fsm.RegisterNode{Node: id, RaftAddr: id + ":1", APIAddr: id + ":2", Voter: true, LeaseTTLMillis: 500,
			Redis: id + ":6379", Sentinel: id + ":26379"})
		apply(&fsm.RedisReport{Node: id, Role: fsm.RedisMaster, ReplID: "x" + id, RunID: "r" + id})
	}
	apply(&fsm.ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: "redis", Type: spec.TypeRedisMaster}}}})
	apply(&fsm.Assign{Role: "redis", Node: "n1", HolderGen: 1, Epoch: 1, Reason: "t", Actor: "t"})
	valid := true
	src := func(self string) sentinelSource {
		return sentinelSource{self: self, state: func() (*fsm.State, <-chan struct{}) { return st, nil },
			leaseValid: func() bool { return valid }}
	}
	for _, tc := range []struct {
		self  string
		valid bool
		want  sentinel.Aside
	}{
		{"n1", true, sentinel.AsideSubscribers}, // the master's node
		{"n2", true, sentinel.AsideNone},
		{"n1", false, sentinel.AsideAll}, // cut off: its view may be stale
		{"n2", false, sentinel.AsideAll},
	} {
		valid = tc.valid
		if got := src(tc.self).StepAside(); got != tc.want {
			t.Errorf("%s, lease valid %v: StepAside = %v, want %v", tc.self, tc.valid, got, tc.want)
		}
	}
	// Alone with a listener: it keeps answering, whatever it holds.
	apply(&fsm.RemoveNode{Node: "n2", Actor: "t"})
	valid = false
	if got := src("n1").StepAside(); got != sentinel.AsideNone {
		t.Errorf("the only listener: StepAside = %v, want none", got)
	}
}
