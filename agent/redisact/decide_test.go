package redisact

import (
	"reflect"
	"testing"

	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/fsm"
)

func TestDecide(t *testing.T) {
	n1 := &fsm.Node{ID: "n1", Redis: "198.18.0.11:6379"}
	n2 := &fsm.Node{ID: "n2", Redis: "198.18.0.12:6379"}
	master := redisctl.Replication{Role: fsm.RedisMaster, RunID: "r1"}
	pausedMaster := redisctl.Replication{Role: fsm.RedisMaster, Paused: true}
	replicaOf := func(host string, port int) redisctl.Replication {
		return redisctl.Replication{Role: fsm.RedisReplica, MasterHost: host, MasterPort: port}
	}
	mine := fsm.Assignment{Role: "redis", Holder: "n1", Epoch: 5, HolderGen: 9}
	theirs := fsm.Assignment{Role: "redis", Holder: "n2", Epoch: 5, HolderGen: 3}
	tests := []struct {
		name string
		in   Input
		want []Action
	}{
		{name: "the holder's unfenced master at this epoch: nothing to do",
			in: Input{Assignment: mine, Holder: n1, Repl: master, MayMaster: true, PromotedEpoch: 5}},
		{name: "the holder's replica is promoted",
			in:   Input{Assignment: mine, Holder: n1, Repl: replicaOf("198.18.0.12", 6379), MayMaster: true},
			want: []Action{{Kind: Promote}}},
		{name: "the holder's fenced master is promoted again (lifts the fence)",
			in:   Input{Assignment: mine, Holder: n1, Repl: pausedMaster, MayMaster: true, PromotedEpoch: 5},
			want: []Action{{Kind: Promote}}},
		{name: "a master promoted at an older epoch is promoted at this one",
			in:   Input{Assignment: mine, Holder: n1, Repl: master, MayMaster: true, PromotedEpoch: 4},
			want: []Action{{Kind: Promote}}},
		{name: "the lost master's Redis is demoted first",
			in: Input{Assignment: withLostBy(mine, "n2"), Holder: n1, LostBy: n2, Repl: replicaOf("198.18.0.12", 6379),
				MayMaster: true},
			want: []Action{{Kind: DemoteRemote, Addr: n2.Redis}, {Kind: Promote}}},
		{name: "a lost master without a Redis is not demoted",
			in:   Input{Assignment: withLostBy(mine, "n2"), Holder: n1, LostBy: &fsm.Node{ID: "n2"}, Repl: master, MayMaster: true},
			want: []Action{{Kind: Promote}}},
		{name: "a Redis that restarted under the role is fenced and the role released",
			in:   Input{Assignment: mine, Holder: n1, Repl: master, MayMaster: true, PromotedEpoch: 5, RestartedUnder: true},
			want: []Action{{Kind: Fence, Why: "Redis restarted under the master role"}, {Kind: ReleaseRestarted, Why: "its Redis restarted under the master role"}}},
		{name: "a holder whose Redis does not hold the history is not promoted: fence and release",
			in: Input{Assignment: mine, Holder: n1, Self: "n1", Repl: replicaOf("198.18.0.12", 6379), MayMaster: true, Unfit: true},
			want: []Action{{Kind: Fence, Why: "its Redis no longer holds the role's replication history (it restarted, or was never synced)"},
				{Kind: ReleaseRestarted, Why: "its Redis no longer holds the role's replication history (it restarted, or was never synced)"}}},
		{name: "unfit does not undo a promotion already made at this epoch",
			in: Input{Assignment: mine, Holder: n1, Self: "n1", Repl: master, MayMaster: true, PromotedEpoch: 5, Unfit: true}},
		{name: "a holder that may not act is fenced, never promoted",
			in:   Input{Assignment: mine, Holder: n1, Self: "n1", Repl: master, MayMaster: false, PromotedEpoch: 5},
			want: []Action{{Kind: Fence, Why: "not the master's lease holder"}}},
		{name: "a holder that may not act leaves a replica alone",
			in: Input{Assignment: mine, Holder: n1, Self: "n1", Repl: replicaOf("198.18.0.12", 6379), MayMaster: false}},
		{name: "a holder being released whose Redis is a replica fences it and readies the hand-over (else the role stays with a replica)",
			in:   Input{Assignment: releasing(mine), Holder: n1, Self: "n1", Repl: replicaOf("198.18.0.12", 6379)},
			want: []Action{{Kind: Fence, Why: "releasing the master role while its Redis is a replica"}, {Kind: PrepareRelease}}},
		{name: "a replica that does not hold the role being released is left alone",
			in: Input{Assignment: releasing(theirs), Holder: n2, Self: "n1", Repl: replicaOf("198.18.0.12", 6379)}},
		{name: "a master being released is fenced and readies the hand-over",
			in:   Input{Assignment: releasing(mine), Holder: n1, Self: "n1", Repl: master},
			want: []Action{{Kind: Fence, Why: "not the master's lease holder"}, {Kind: PrepareRelease}}},
		{name: "a master while another node holds the role: fence, then follow it",
			in:   Input{Assignment: theirs, Holder: n2, Self: "n1", Repl: master},
			want: []Action{{Kind: Fence, Why: "another node is the master"}, {Kind: Follow, Addr: n2.Redis}}},
		{name: "a master while another node's role is being released: fenced, follows nobody yet",
			in:   Input{Assignment: releasing(theirs), Holder: n2, Self: "n1", Repl: master},
			want: []Action{{Kind: Fence, Why: "not the master's lease holder"}}},
		{name: "a master with no holder is fenced",
			in:   Input{Assignment: fsm.Assignment{Role: "redis", Epoch: 5}, Self: "n1", Repl: master},
			want: []Action{{Kind: Fence, Why: "not the master's lease holder"}}},
		{name: "a replica of the wrong master follows the holder",
			in:   Input{Assignment: theirs, Holder: n2, Self: "n1", Repl: replicaOf("198.18.0.13", 6379)},
			want: []Action{{Kind: Follow, Addr: n2.Redis}}},
		{name: "a replica of the holder: nothing to do",
			in: Input{Assignment: theirs, Holder: n2, Self: "n1", Repl: replicaOf("198.18.0.12", 6379)}},
		{name: "a holder without a registered Redis is not followed",
			in: Input{Assignment: theirs, Holder: &fsm.Node{ID: "n2"}, Self: "n1", Repl: replicaOf("198.18.0.13", 6379)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.in.Self == "" {
				tc.in.Self = "n1"
			}
			got := Decide(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decide = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDecideNeverPromotesWithoutMayMaster is the actuator's side of the
// safety rule: whatever the Redis and the state say, no Promote (and no
// remote demotion, which precedes one) comes out unless MayMaster is set.
func TestDecideNeverPromotesWithoutMayMaster(t *testing.T) {
	n1 := &fsm.Node{ID: "n1", Redis: "198.18.0.11:6379"}
	n2 := &fsm.Node{ID: "n2", Redis: "198.18.0.12:6379"}
	repls := []redisctl.Replication{{Role: fsm.RedisMaster}, {Role: fsm.RedisMaster, Paused: true},
		{Role: fsm.RedisReplica, MasterHost: "198.18.0.12", MasterPort: 6379}, {}}
	for _, holder := range []*fsm.Node{nil, n1, n2} {
		for _, repl := range repls {
			for _, rel := range []bool{false, true} {
				for _, restarted := range []bool{false, true} {
					as := fsm.Assignment{Role: "redis", Epoch: 2, Releasing: rel, LostBy: "n2"}
					if holder != nil {
						as.Holder = holder.ID
					}
					in := Input{Self: "n1", Assignment: as, Holder: holder, LostBy: n2, Repl: repl, RestartedUnder: restarted}
					for _, a := range Decide(in) {
						if a.Kind == Promote || a.Kind == DemoteRemote || a.Kind == ReleaseRestarted {
							t.Fatalf("Decide(%+v) = %v: %s without MayMaster", in, Decide(in), a.Kind)
						}
					}
				}
			}
		}
	}
}

func withLostBy(as fsm.Assignment, node string) fsm.Assignment { as.LostBy = node; return as }
func releasing(as fsm.Assignment) fsm.Assignment               { as.Releasing = true; return as }
