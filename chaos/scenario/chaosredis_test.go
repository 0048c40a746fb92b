package scenario

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/report"
	"github.com/harbormaster/harbormaster/chaos/schedule"
)

// masterSamples returns one sample per samplePeriod from t0, holders[i]
// ("" none, "a+b" two) for the i-th.
func masterSamples(t0 time.Time, holders ...string) []lab.Sample {
	var out []lab.Sample
	for i, h := range holders {
		s := lab.Sample{At: t0.Add(time.Duration(i) * samplePeriod)}
		switch h {
		case "":
		case "n1+n2":
			s.Holders = []string{"n1", "n2"}
		default:
			s.Holders = []string{h}
		}
		out = append(out, s)
	}
	return out
}

// The redis-master lane has a span per run of samples with the same
// writable nodes, two at once drawn as "a+b", and a move per change.
func TestRedisLane(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ss := masterSamples(t0, "n1", "n1", "", "", "n2", "n1+n2", "n2")
	lane := redisLane(ss, nil, t0, t0.Add(70*time.Millisecond))
	if lane.Kind != "redis-master" || lane.Role != RedisRole {
		t.Fatalf("lane %s of kind %s", lane.Role, lane.Kind)
	}
	want := []report.Span{{Holder: "n1", FromMS: 0, ToMS: 20}, {Holder: "", FromMS: 20, ToMS: 40}, {Holder: "n2", FromMS: 40, ToMS: 50},
		{Holder: "n1+n2", FromMS: 50, ToMS: 60}, {Holder: "n2", FromMS: 60, ToMS: 70}}
	if !slices.Equal(lane.Spans, want) {
		t.Fatalf("spans %v, want %v", lane.Spans, want)
	}
	if ms := laneMoves(lane); len(ms) != 1 || ms[0].From != "n1" || ms[0].To != "n2" {
		t.Fatalf("moves %v, want one n1 -> n2", ms)
	}
	// No answer in time from the master (n2) keeps it; a refusal does not.
	un := make([][]string, len(ss))
	un[2], un[3] = []string{"n1"}, []string{"n2"}
	ss = masterSamples(t0, "n2", "n2", "", "", "n2")
	if sp := redisLane(ss, un, t0, t0.Add(50*time.Millisecond)).Spans; !slices.Equal(sp, []report.Span{{Holder: "n2", FromMS: 0, ToMS: 20}, {Holder: "", FromMS: 20, ToMS: 40}, {Holder: "n2", FromMS: 40, ToMS: 50}}) {
		t.Errorf("a timeout of a node that is not the master: spans %v", sp)
	}
	un[2] = []string{"n2", "n3"}
	if sp := redisLane(ss, un, t0, t0.Add(50*time.Millisecond)).Spans; !slices.Equal(sp, []report.Span{{Holder: "n2", FromMS: 0, ToMS: 50}}) {
		t.Errorf("timeouts of the master: spans %v, want n2 throughout", sp)
	}
	settle, grace := chaosLimits{Settle: 3 * time.Second, Grace: 3 * time.Second, ServiceExtra: 5 * time.Second}.forLane(lane)
	if settle != 3*time.Second || grace != 3*time.Second {
		t.Fatalf("redis-master lane settle %s grace %s, want the VIP's 3s", settle, grace)
	}
}

// A Redis lane in chaosObs.Lanes is checked like the others: its moves
// are charged to faults, a move with no fault is a violation, and so is
// no writable master within the settle time after the faults.
func TestAnalyseChaosChecksTheRedisLane(t *testing.T) {
	t0 := time.Unix(1000, 0)
	end := t0.Add(10 * time.Second)
	fault := appliedFault{Fault: schedule.Fault{ID: 0, Kind: schedule.KillRedis}, Targets: []string{"n1"}, From: t0.Add(time.Second), To: t0.Add(2 * time.Second)}
	lim := chaosLimits{Settle: 3 * time.Second, Grace: 3 * time.Second, Period: samplePeriod}
	redisViolations := func(spans ...report.Span) (report.Run, []string) {
		lane := report.Lane{Role: RedisRole, Kind: "redis-master", Spans: spans}
		run := analyseChaos(chaosObs{Start: t0, End: end, Faults: []appliedFault{fault}, Lanes: []report.Lane{lane}}, lim)
		var out []string
		for _, v := range run.Violations {
			if strings.HasPrefix(v.Detail, RedisRole+" ") {
				out = append(out, v.Invariant)
			}
		}
		return run, out
	}
	run, vs := redisViolations(report.Span{Holder: "n1", FromMS: 0, ToMS: 1000}, report.Span{Holder: "", FromMS: 1000, ToMS: 1500}, report.Span{Holder: "n2", FromMS: 1500, ToMS: 10000})
	if len(vs) != 0 {
		t.Errorf("a failover during a kill-redis: violations %v", vs)
	}
	if i := slices.IndexFunc(run.Moves, func(m report.Move) bool { return m.Role == RedisRole }); i < 0 || run.Moves[i].Fault != 0 {
		t.Errorf("the move to n2 was not charged to the kill-redis: %v", run.Moves)
	}
	_, vs = redisViolations(report.Span{Holder: "n1", FromMS: 0, ToMS: 1000}, report.Span{Holder: "", FromMS: 1000, ToMS: 6000}, report.Span{Holder: "n2", FromMS: 6000, ToMS: 10000})
	if !slices.Contains(vs, "liveness") || !slices.Contains(vs, "move-without-fault") {
		t.Errorf("a master 4 s after the fault's end: violations %v, want liveness and move-without-fault", vs)
	}
}

// Lost writes are S7 unless sent within the in-flight window of a crash
// or SIGKILL of the master's node (its redis-server), or acknowledged by
// a master cut off by a partition before its fence bound.
func TestLostRedisWrites(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// n1 takes writes for 1 s, then n2.
	var hs []string
	for i := 0; i < 300; i++ {
		h := "n1"
		if i >= 100 {
			h = "n2"
		}
		hs = append(hs, h)
	}
	ss := masterSamples(t0, hs...)
	crash := t0.Add(500 * time.Millisecond)
	cut := t0.Add(1500 * time.Millisecond)
	fence := 600 * time.Millisecond
	faults := []appliedFault{
		{Fault: schedule.Fault{ID: 0, Kind: schedule.Crash}, Targets: []string{"n1"}, From: crash, To: crash.Add(time.Second)},
		{Fault: schedule.Fault{ID: 1, Kind: schedule.Partition}, Targets: []string{"n2"}, From: cut, To: cut.Add(time.Second)},
		// A kill-redis of a replica explains nothing.
		{Fault: schedule.Fault{ID: 2, Kind: schedule.KillRedis}, Targets: []string{"n3"}, From: t0.Add(2500 * time.Millisecond), To: t0.Add(3 * time.Second)},
		{Fault: schedule.Fault{ID: 3, Kind: schedule.Crash}, Targets: []string{"n1"}, From: t0.Add(2800 * time.Millisecond), Skipped: "busy"},
	}
	ack := func(val int64, sent time.Time) Ack {
		return Ack{Val: val, Start: sent, End: sent.Add(200 * time.Microsecond)}
	}
	lost := []Ack{
		ack(1, crash.Add(-inFlightWindow)),                  // in flight
		ack(2, crash.Add(-time.Millisecond)),                // in flight
		ack(3, crash.Add(-inFlightWindow-time.Microsecond)), // had time to replicate
		ack(4, cut.Add(-time.Millisecond)),                  // in the cut master's stream
		ack(5, cut.Add(fence-time.Millisecond)),             // before the fence bound
		ack(6, cut.Add(fence+time.Millisecond)),             // beyond it
		ack(7, crash.Add(50*time.Millisecond)),              // acknowledged by the next master
		ack(8, t0.Add(2500*time.Millisecond)),               // at a replica's kill
		ack(9, t0.Add(2800*time.Millisecond)),               // at a skipped fault
	}
	got := lostRedisWrites(lost, ss, faults, fence)
	vals := func(as []Ack) []int64 {
		var out []int64
		for _, a := range as {
			out = append(out, a.Val)
		}
		return out
	}
	if g := vals(got.InFlight); !slices.Equal(g, []int64{1, 2}) {
		t.Errorf("in flight %v, want [1 2]", g)
	}
	if g := vals(got.Partition); !slices.Equal(g, []int64{4, 5}) {
		t.Errorf("partition %v, want [4 5]", g)
	}
	if g := vals(got.Other); !slices.Equal(g, []int64{3, 6, 7, 8, 9}) {
		t.Errorf("other (S7) %v, want [3 6 7 8 9]", g)
	}
	if m := masterAt(ss, t0.Add(-time.Millisecond)); m != "" {
		t.Errorf("master before the first sample: %q", m)
	}
}

// A Redis master cut off by a partition (not a bridge) or a one-way fault
// must take no write later than the fence bound after the cut; a timeout
// is not a write.
func TestUnfencedMasters(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var hs []string
	for i := 0; i < 200; i++ {
		h := "n1"
		switch {
		case i >= 150:
			h = "n2"
		case i >= 60 && i < 100:
			h = "" // n1 fenced 500 ms after the cut at 100 ms...
		case i >= 100:
			h = "n1" // ...and writable again at 1 s
		}
		hs = append(hs, h)
	}
	ss := masterSamples(t0, hs...)
	cut := func(id int, kind schedule.Kind, shape string, from, to time.Duration) appliedFault {
		return appliedFault{Fault: schedule.Fault{ID: id, Kind: kind, Shape: shape}, Targets: []string{"n1"}, From: t0.Add(from), To: t0.Add(to)}
	}
	fence := 510 * time.Millisecond
	vs := unfencedMasters(ss, []appliedFault{cut(0, schedule.Partition, schedule.ShapeHolder, 100*time.Millisecond, 1200*time.Millisecond)}, fence)
	if len(vs) != 1 || vs[0].Invariant != "S3" || !vs[0].Time.Equal(t0.Add(time.Second)) {
		t.Fatalf("a cut-off master writable 900 ms after the cut: %v, want one S3 at 1 s", vs)
	}
	for _, f := range []appliedFault{
		cut(1, schedule.Partition, schedule.ShapeHolder, 100*time.Millisecond, 900*time.Millisecond),  // healed before it wrote again
		cut(2, schedule.Partition, schedule.ShapeBridge, 100*time.Millisecond, 1200*time.Millisecond), // a bridge may keep a majority
		cut(3, schedule.Loss, "", 100*time.Millisecond, 1200*time.Millisecond),
	} {
		if vs := unfencedMasters(ss, []appliedFault{f}, fence); len(vs) != 0 {
			t.Errorf("%v: %v, want none", f.Fault, vs)
		}
	}
	if vs := unfencedMasters(ss, []appliedFault{cut(4, schedule.OneWay, "", 100*time.Millisecond, 1200*time.Millisecond)}, fence); len(vs) != 1 {
		t.Errorf("one-way: %v, want one S3", vs)
	}
	// n2 is not the master at the cut: nothing to fence.
	f := cut(5, schedule.Partition, schedule.ShapeHolder, 100*time.Millisecond, 1900*time.Millisecond)
	f.Targets = []string{"n2"}
	if vs := unfencedMasters(ss, []appliedFault{f}, fence); len(vs) != 0 {
		t.Errorf("a replica cut off: %v, want none", vs)
	}
}

// TestUnfencedMastersCountFromTheCutInEffect: the fence bound runs from when
// the cut had surely taken effect (InEffect: its rules installed), not from
// when the runner began installing them; a write the master took 30 ms past
// the bound counted from the start, but before the bound counted from
// InEffect (40 ms later), is no violation.
func TestUnfencedMastersCountFromTheCutInEffect(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var hs []string
	for i := 0; i < 100; i++ {
		if i < 54 {
			hs = append(hs, "n1") // writable until 540 ms
		} else {
			hs = append(hs, "")
		}
	}
	ss := masterSamples(t0, hs...)
	f := appliedFault{Fault: schedule.Fault{ID: 0, Kind: schedule.Partition, Shape: schedule.ShapeHolder}, Targets: []string{"n1"},
		From: t0.Add(time.Millisecond), To: t0.Add(900 * time.Millisecond)}
	if vs := unfencedMasters(ss, []appliedFault{f}, 510*time.Millisecond); len(vs) != 1 {
		t.Fatalf("without InEffect, a write 30 ms past the bound: %v, want one S3", vs)
	}
	f.InEffect = t0.Add(40 * time.Millisecond)
	if vs := unfencedMasters(ss, []appliedFault{f}, 510*time.Millisecond); len(vs) != 0 {
		t.Fatalf("the cut in effect at 40 ms, writable until 540 ms: %v, want none", vs)
	}
}
