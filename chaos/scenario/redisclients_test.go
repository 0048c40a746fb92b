package scenario

import (
	"context"
	"testing"
	"time"
)

// TestClientSetFinish: each client is measured against its own list: a
// value missing is lost, the first ack after the fault's gap is its first
// ack, and a client with none within stallAfter is stalled.
func TestClientSetFinish(t *testing.T) {
	// Every client writes until just before Finish (which measures up to
	// now), as in a trial.
	t0 := time.Now().Add(-5600 * time.Millisecond)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	mk := func(acks ...Ack) *RedisWriter {
		w := &RedisWriter{cli: nopTarget{}, stop: make(chan struct{}), done: make(chan struct{}), errMsg: map[string]int{}, acks: acks}
		close(w.done)
		return w
	}
	cs := &ClientSet{
		w: map[string]*RedisWriter{
			ClientRedigo:  mk(Ack{Val: 1, End: at(-10)}, Ack{Val: 2, End: at(900)}, Ack{Val: 3, End: at(1800)}, Ack{Val: 4, End: at(2700)}, Ack{Val: 5, End: at(3600)}, Ack{Val: 6, End: at(4500)}, Ack{Val: 7, End: at(5400)}),
			ClientGoRedis: mk(Ack{Val: 1, End: at(-10)}, Ack{Val: 2, End: at(5500)}),
			ClientLab:     mk(Ack{Val: 1, End: at(-10)}, Ack{Val: 2, End: at(5)}, Ack{Val: 3, End: at(800)}, Ack{Val: 4, End: at(1600)}, Ack{Val: 5, End: at(2400)}, Ack{Val: 6, End: at(3200)}, Ack{Val: 7, End: at(4000)}, Ack{Val: 8, End: at(4800)}, Ack{Val: 9, End: at(5500)}),
		},
		keys: map[string]string{ClientRedigo: "k:r", ClientGoRedis: "k:g", ClientLab: "k:l"},
	}
	lists := map[string][]string{"k:r": {"1", "2", "3", "4", "5", "6", "7"}, "k:g": {"1", "2"}, "k:l": {"1", "3", "4", "5", "6", "7", "8", "9"}}
	got, err := cs.Finish(func(key string) ([]string, error) { return lists[key], nil }, t0)
	if err != nil {
		t.Fatal(err)
	}
	if r := got[ClientRedigo]; r.FirstAckMS != 900 || r.Lost != 0 || r.Stalled {
		t.Errorf("redigo: %+v, want first ack 900 ms, none lost, not stalled", r)
	}
	if r := got[ClientGoRedis]; r.FirstAckMS != 5500 || !r.Stalled {
		t.Errorf("go-redis: %+v, want first ack 5500 ms and stalled", r)
	}
	// Value 2, acknowledged 5 ms after the fault, is not on the final
	// master: lost, and it does not end the outage.
	if r := got[ClientLab]; r.Lost != 1 || r.FirstAckMS != 800 {
		t.Errorf("lab: %+v, want 1 lost and first ack 800 ms", r)
	}

	s := SummarizeClients([]map[string]ClientTrial{got, {ClientGoRedis: {FirstAckMS: 700}}})
	if g := s[ClientGoRedis]; g.StalledTrials != 1 || g.Trials != 2 || g.FirstAckMS.Max != 5500 || g.FirstAckMS.P50 != 700 {
		t.Errorf("go-redis summary: %+v", g)
	}
	if l := s[ClientLab]; l.LostAckedWrites != 1 || l.Trials != 1 || l.StalledTrials != 0 {
		t.Errorf("lab summary: %+v", l)
	}
}

// TestClientTargets: the targets are checked on a crash of the master's
// node only, p99 only on lan.
func TestClientTargets(t *testing.T) {
	r := &Result{Profile: "lan", Fault: FaultCrashMaster, Clients: map[string]ClientStats{
		ClientGoRedis: {FirstAckMS: Stats{P99: 1201}, LostBeforeFault: 2},
		ClientRedigo:  {FirstAckMS: Stats{P99: 1200}, StalledTrials: 1},
	}}
	met := map[string]bool{}
	for _, tg := range clientTargets(r) {
		met[tg.What] = tg.Met
	}
	want := map[string]bool{
		"go-redis first_ack_ms.p99 <= 1200": false, "go-redis stalled_trials == 0": true,
		"redigo first_ack_ms.p99 <= 1200": true, "redigo stalled_trials == 0": false,
		"go-redis lost_before_fault == 0 (lost writes sent earlier than the crash's 5 ms in-flight window)": false,
		"redigo lost_before_fault == 0 (lost writes sent earlier than the crash's 5 ms in-flight window)":   true,
	}
	if len(met) != len(want) {
		t.Fatalf("targets %v, want %v", met, want)
	}
	for k, v := range want {
		if m, ok := met[k]; !ok || m != v {
			t.Errorf("%s: met %v (present %v), want %v", k, m, ok, v)
		}
	}
	r.Fault = FaultMove
	if tg := clientTargets(r); len(tg) != 0 {
		t.Errorf("move: targets %v, want none", tg)
	}
	r.Fault, r.Profile = FaultCrashMaster, "fast"
	if tg := clientTargets(r); len(tg) != 4 {
		t.Errorf("fast: targets %v, want the two stall and the two loss targets", tg)
	}
}

type nopTarget struct{}

func (nopTarget) RPush(context.Context, string, int64) error { return nil }
func (nopTarget) Close()                                     {}

// A lost write counts as in flight only when it was sent within
// inFlightWindow of the fault, or after it.
func TestLostInFlight(t *testing.T) {
	fault := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	at := func(d time.Duration) Ack { return Ack{Start: fault.Add(d), End: fault.Add(d + time.Millisecond)} }
	lost := []Ack{at(-time.Second), at(-inFlightWindow - time.Microsecond), at(-inFlightWindow), at(-time.Millisecond), at(time.Millisecond)}
	if got := inFlight(lost, fault); got != 3 {
		t.Fatalf("inFlight = %d, want 3 (sent at -5 ms, -1 ms, +1 ms)", got)
	}
	s := SummarizeClients([]map[string]ClientTrial{{"redigo": {Lost: 5, LostInFlight: 3}}, {"redigo": {Lost: 1, LostInFlight: 1}}})
	if r := s["redigo"]; r.LostAckedWrites != 5 || r.LostBeforeFault != 2 {
		t.Fatalf("summary %+v, want 5 lost, 2 before the fault's window", r)
	}
}
