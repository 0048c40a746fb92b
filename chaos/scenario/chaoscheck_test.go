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

// synth builds a chaos observation over 20 s: the VIP's kernel holders
// from a function of time, probes every 10 ms succeeding when someone
// holds it, and the given faults.
type synth struct {
	t0      time.Time
	holders func(ms int) []string
	faults  []appliedFault
	insts   []Instance
}

func (s synth) obs() chaosObs {
	o := chaosObs{Start: s.t0, End: s.t0.Add(20 * time.Second), VIP: "registry-vip", Faults: s.faults, Instances: s.insts,
		// A leader reading after the end (the poller stops after it).
		Leaders: []leaderObs{{At: s.t0, Leader: "n1", Term: 2}, {At: s.t0.Add(20*time.Second + time.Millisecond), Leader: "n1", Term: 3}}}
	if len(s.insts) > 0 {
		o.Services = []string{"notary"}
	}
	for ms := 0; ms < 20000; ms += 10 {
		at := s.t0.Add(time.Duration(ms) * time.Millisecond)
		h := s.holders(ms)
		o.Samples = append(o.Samples, lab.Sample{At: at, Holders: h})
		o.Attempts = append(o.Attempts, Attempt{Start: at, OK: len(h) == 1})
	}
	return o
}

func (s synth) at(ms int) time.Time { return s.t0.Add(time.Duration(ms) * time.Millisecond) }

func fault(s synth, id int, kind schedule.Kind, fromMS, toMS int) appliedFault {
	return appliedFault{Fault: schedule.Fault{ID: id, Kind: kind}, Targets: []string{"n1"}, From: s.at(fromMS), To: s.at(toMS)}
}

var lim = chaosLimits{Settle: 2 * time.Second, Grace: 2 * time.Second, Period: 10 * time.Millisecond, ServiceExtra: time.Second}

func invariants(r report.Run) []string {
	var out []string
	for _, v := range r.Violations {
		out = append(out, v.Invariant)
	}
	return out
}

func TestAnalyseChaosCleanFailover(t *testing.T) {
	s := synth{t0: time.Now()}
	// n1 holds; crashed at 5 s; n2 holds from 5.6 s on.
	s.holders = func(ms int) []string {
		switch {
		case ms < 5000:
			return []string{"n1"}
		case ms < 5600:
			return nil
		}
		return []string{"n2"}
	}
	s.faults = []appliedFault{fault(s, 0, schedule.Crash, 5000, 8000)}
	r := analyseChaos(s.obs(), lim)
	if !r.OK || len(r.Violations) != 0 {
		t.Fatalf("clean failover: violations %+v", r.Violations)
	}
	if len(r.Moves) != 1 || r.Moves[0].From != "n1" || r.Moves[0].To != "n2" || r.Moves[0].Fault != 0 {
		t.Fatalf("moves %+v, want one n1->n2 charged to fault 0", r.Moves)
	}
	if len(r.Outages) != 1 || r.Outages[0].FromMS != 5000 || r.Outages[0].ToMS != 5600 {
		t.Fatalf("outages %+v, want 5000-5600", r.Outages)
	}
	if len(r.Roles) != 1 || len(r.Roles[0].Spans) != 3 {
		t.Fatalf("lanes %+v, want one lane of 3 spans", r.Roles)
	}
	if err := r.Validate(); err != nil {
		t.Fatalf("the record cannot be drawn: %v", err)
	}
}

func TestAnalyseChaosFindsEveryViolation(t *testing.T) {
	cases := []struct {
		name    string
		holders func(ms int) []string
		faults  func(s synth) []appliedFault
		want    []string
	}{
		{"dual holder", func(ms int) []string {
			if ms >= 5000 && ms < 5050 {
				return []string{"n1", "n2"}
			}
			if ms >= 5050 {
				return []string{"n2"}
			}
			return []string{"n1"}
		}, func(s synth) []appliedFault { return []appliedFault{fault(s, 0, schedule.Partition, 4000, 9000)} }, []string{"S1"}},
		{"flap: three moves for one fault", func(ms int) []string {
			switch {
			case ms < 5000:
				return []string{"n1"}
			case ms < 5500:
				return []string{"n2"}
			case ms < 6000:
				return nil
			case ms < 6500:
				return []string{"n2"}
			}
			return []string{"n3"}
		}, func(s synth) []appliedFault { return []appliedFault{fault(s, 0, schedule.Partition, 4900, 9000)} }, []string{"flap", "flap"}},
		{"move without fault", func(ms int) []string {
			if ms < 12000 {
				return []string{"n1"}
			}
			return []string{"n2"}
		}, func(s synth) []appliedFault { return []appliedFault{fault(s, 0, schedule.CPU, 1000, 3000)} }, []string{"move-without-fault"}},
		{"no holder after the heal", func(ms int) []string {
			if ms < 5000 {
				return []string{"n1"}
			}
			return nil
		}, func(s synth) []appliedFault { return []appliedFault{fault(s, 0, schedule.Partition, 5000, 8000)} }, []string{"liveness", "liveness"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := synth{t0: time.Now(), holders: c.holders}
			s.faults = c.faults(s)
			r := analyseChaos(s.obs(), lim)
			if got := invariants(r); !slices.Equal(got, c.want) {
				t.Fatalf("violations %v, want %v: %+v", got, c.want, r.Violations)
			}
			if r.OK {
				t.Fatalf("run with violations reported OK")
			}
		})
	}
}

func TestAnalyseChaosChecksTheServicesLog(t *testing.T) {
	s := synth{t0: time.Now(), holders: func(int) []string { return []string{"n1"} }}
	s.insts = []Instance{
		{Role: "notary", Node: "n1", Epoch: 3, Start: s.at(-1000), End: s.at(6000)},
		{Role: "notary", Node: "n2", Epoch: 3, Start: s.at(5900), End: s.at(20000)},
	}
	s.faults = []appliedFault{fault(s, 0, schedule.Crash, 5000, 7000)}
	r := analyseChaos(s.obs(), lim)
	got := invariants(r)
	if !slices.Contains(got, "S1") || !slices.Contains(got, "S2") {
		t.Fatalf("overlapping instances with the same epoch: violations %v, want S1 and S2", got)
	}
	lane := r.Roles[1]
	var holders []string
	for _, sp := range lane.Spans {
		holders = append(holders, sp.Holder)
	}
	if !slices.Equal(holders, []string{"n1", "n1+n2", "n2"}) {
		t.Fatalf("notary lane %v, want n1, n1+n2, n2", holders)
	}
}

// TestInstanceSpansSkipsAnInstanceKilledAtOnce: an instance with a start
// line and nothing after it (killed at once) is no holder: it neither
// joins the next instance as "a+b" nor stays for ever.
func TestInstanceSpansSkipsAnInstanceKilledAtOnce(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	insts := []Instance{
		{Role: "notary", Node: "n1", Epoch: 2, Start: at(3000), End: at(3000)},
		{Role: "notary", Node: "n5", Epoch: 3, Start: at(6000), End: at(20000)},
	}
	spans := instanceSpans(insts, t0, at(20000), 250*time.Millisecond)
	var holders []string
	for _, s := range spans {
		holders = append(holders, s.Holder)
	}
	if !slices.Equal(holders, []string{"", "n5"}) {
		t.Fatalf("spans %+v, want vacant then n5", spans)
	}
}

func TestChargeMovesAllowances(t *testing.T) {
	s := synth{t0: time.Now()}
	rolling := fault(s, 0, schedule.RollingRestart, 0, 10000)
	rolling.Targets = []string{"n1", "n2", "n3"}
	moves := []report.Move{{Role: "v", AtMS: 1000}, {Role: "v", AtMS: 4000}, {Role: "v", AtMS: 7000}, {Role: "v", AtMS: 9000}}
	chargeMoves(moves, []appliedFault{rolling}, s.t0, func(string) time.Duration { return time.Second })
	var flaps int
	for _, m := range moves {
		if m.Flap {
			flaps++
		}
	}
	if flaps != 1 {
		t.Fatalf("a rolling restart of 3 nodes with 4 moves: %d flaps, want 1 (%+v)", flaps, moves)
	}
}

func TestQuietPoints(t *testing.T) {
	s := synth{t0: time.Now()}
	fs := []appliedFault{fault(s, 0, schedule.Crash, 1000, 3000), fault(s, 1, schedule.CPU, 2000, 4000),
		fault(s, 2, schedule.Loss, 4500, 5000), fault(s, 3, schedule.Loss, 9000, 10000)}
	got := quietPoints(fs, s.at(20000), 2*time.Second)
	var ms []int
	for _, q := range got {
		ms = append(ms, int(q.Sub(s.t0)/time.Millisecond))
	}
	// 4000 is followed by a fault 500 ms later: not quiet.
	if !slices.Equal(ms, []int{5000, 10000}) {
		t.Fatalf("quiet points %v, want [5000 10000]", ms)
	}
	if !strings.Contains(faultName(fs, 1), "cpu") {
		t.Fatalf("faultName: %q", faultName(fs, 1))
	}
}
