package redisact

import (
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/fsm"
)

func TestOffsetLogLag(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var l offsetLog
	for i := range 10 { // offset 100*i at t0 + i*200ms
		l.add(t0.Add(time.Duration(i)*200*time.Millisecond), int64(100*i))
	}
	now := t0.Add(9 * 200 * time.Millisecond)
	for _, tc := range []struct {
		ack  int64
		want int64
	}{
		{900, 0},   // the latest
		{950, 0},   // ahead of the last sample
		{850, 200}, // the master was at 800 <= 850 200 ms ago
		{800, 200}, // and exactly there
		{0, 1800},  // at the first sample
		{-5, 1800}, // older than every sample: the oldest's age
	} {
		if got := l.lagMillis(now, tc.ack); got != tc.want {
			t.Errorf("lagMillis(ack %d) = %d, want %d", tc.ack, got, tc.want)
		}
	}
	// A lower offset is a new history: the old samples go.
	l.add(now, 5)
	if len(l.off) != 1 {
		t.Fatalf("after a lower offset: %d samples, want 1", len(l.off))
	}
	for range historyLen + 5 {
		l.add(now, 6)
	}
	if len(l.off) != historyLen {
		t.Fatalf("samples: %d, want at most %d", len(l.off), historyLen)
	}
}

func TestReplicaStates(t *testing.T) {
	st := fsm.NewState()
	st.Nodes = map[string]*fsm.Node{"n2": {ID: "n2", Redis: "198.18.0.12:6379"}, "n3": {ID: "n3", Redis: "198.18.0.13:6379"}}
	now := time.Unix(2000, 0)
	var l offsetLog
	l.add(now.Add(-time.Second), 400)
	l.add(now, 1000)
	repl := redisctl.Replication{Role: fsm.RedisMaster, Offset: 1000, Replicas: []redisctl.ReplicaInfo{
		{IP: "198.18.0.12", Port: 6379, State: "online", Offset: 1000, Lag: 0},
		{IP: "198.18.0.13", Port: 6379, State: "online", Offset: 400, Lag: 11},
		{IP: "198.18.0.14", Port: 6379, State: "wait_bgsave", Offset: 0, Lag: 0},
	}}
	got := replicaStates(st, repl, 10, &l, now)
	want := []fsm.ReplicaState{
		{Node: "n2", Addr: "198.18.0.12:6379", State: "online", Offset: 1000, InSync: true},
		{Node: "n3", Addr: "198.18.0.13:6379", State: "online", Offset: 400, LagBytes: 600, LagMillis: 1000},
		{Addr: "198.18.0.14:6379", State: "wait_bgsave", LagBytes: 1000},
	}
	if len(got) != len(want) {
		t.Fatalf("replicaStates: %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("replica %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if syncSet(got) == syncSet(append([]fsm.ReplicaState{}, got[0], got[1], fsm.ReplicaState{Addr: got[2].Addr, InSync: true})) {
		t.Error("syncSet does not tell a replica coming into sync")
	}
	if replicaStates(st, redisctl.Replication{Role: fsm.RedisReplica, Replicas: repl.Replicas}, 10, &l, now) != nil {
		t.Error("a replica's own replicas are reported")
	}
}
