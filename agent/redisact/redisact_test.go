package redisact

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/act/acttest"
	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// TestInputTakesMayMasterFromTheRule: the actuator's MayMaster is act.MayAct
// with the FenceAhead margin, so every input of the rule (fence, stopping,
// generation, margin) keeps Decide from promoting.
func TestInputTakesMayMasterFromTheRule(t *testing.T) {
	node := acttest.New("n1")
	x, err := New(node, Config{Redis: redisctl.Config{Address: "127.0.0.1:1"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	st := fsm.NewState()
	r := spec.Role{Name: "redis", Type: spec.TypeRedisMaster}
	st.Spec = &spec.Spec{Roles: []spec.Role{r}}
	st.Assignments = map[string]*fsm.Assignment{"redis": {Role: "redis", Holder: "n1", HolderGen: 3, Epoch: 1}}
	repl := redisctl.Replication{Role: fsm.RedisReplica}
	hour := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name string
		auth act.Authority
		want bool
	}{
		{"holder with a valid lease", act.Authority{LeaseGen: 3, LeaseValid: true, LeaseUntil: hour}, true},
		{"stopping", act.Authority{LeaseGen: 3, LeaseValid: true, LeaseUntil: hour, Stopping: true}, false},
		{"another generation", act.Authority{LeaseGen: 4, LeaseValid: true, LeaseUntil: hour}, false},
		{"within FenceAhead of the lease's end", act.Authority{LeaseGen: 3, LeaseValid: true, LeaseUntil: time.Now().Add(FenceAhead / 2)}, false},
	} {
		node.SetAuthority(tc.auth)
		in := x.input(st, r, repl)
		if in.MayMaster != tc.want {
			t.Fatalf("%s: MayMaster = %v, want %v", tc.name, in.MayMaster, tc.want)
		}
		promotes := false
		for _, a := range Decide(in) {
			promotes = promotes || a.Kind == Promote
		}
		if promotes != tc.want {
			t.Fatalf("%s: Decide promotes = %v, want %v", tc.name, promotes, tc.want)
		}
	}
}
