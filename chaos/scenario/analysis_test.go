package scenario

import (
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/lab"
)

func samplesOf(t0 time.Time, holders ...[]string) []lab.Sample {
	var out []lab.Sample
	for i, h := range holders {
		out = append(out, lab.Sample{At: t0.Add(time.Duration(i) * samplePeriod), Holders: h})
	}
	return out
}

func TestExcludeOffAndDualHolders(t *testing.T) {
	t0 := time.Now()
	s := samplesOf(t0, []string{"n1"}, []string{"n1", "n2"}, []string{"n1", "n2"}, []string{"n2"}, []string{"n1", "n2"})
	longest, v := dualHolders(s, samplePeriod)
	if len(v) != 2 || longest != 2*samplePeriod {
		t.Fatalf("dual holders: longest %s, violations %v", longest, v)
	}
	// n1 powered off from the second sample to the fourth: only the last
	// sample still counts.
	off := []offWindow{{node: "n1", start: t0.Add(samplePeriod), end: t0.Add(4 * samplePeriod)}}
	longest, v = dualHolders(excludeOff(s, off), samplePeriod)
	if len(v) != 1 || longest != samplePeriod {
		t.Fatalf("with n1 off: longest %s, violations %v", longest, v)
	}
	// Still off (no end): nothing counts.
	off[0].end = time.Time{}
	if _, v = dualHolders(excludeOff(s, off), samplePeriod); len(v) != 0 {
		t.Fatalf("with n1 still off: %v", v)
	}
}

func TestMeasureOutage(t *testing.T) {
	t0 := time.Now()
	at := func(ms int, ok bool) Attempt {
		return Attempt{Start: t0.Add(time.Duration(ms) * time.Millisecond), OK: ok, Node: "n1"}
	}
	as := []Attempt{at(-20, true), at(-10, true), at(0, true), at(10, false), at(20, false), at(30, false), at(40, true), at(50, true)}
	o := measureOutage(as, t0.Add(5*time.Millisecond), t0.Add(55*time.Millisecond))
	if o.Longest != 40*time.Millisecond || o.Failures != 3 || o.Successes != 2 {
		t.Fatalf("outage %+v", o)
	}
	// An outage still going on at the end of the window counts to the end.
	o = measureOutage(as[:5], t0, t0.Add(100*time.Millisecond))
	if o.Longest != 100*time.Millisecond {
		t.Fatalf("open outage %+v", o)
	}
}

func TestMovesAndSummarize(t *testing.T) {
	t0 := time.Now()
	s := samplesOf(t0, []string{"n1"}, nil, nil, []string{"n2"}, []string{"n2"}, nil, []string{"n2"}, []string{"n3"})
	n, drops, holderless, _ := moves(s)
	if n != 2 || drops != 2 || holderless != 3*samplePeriod {
		t.Fatalf("moves %d, drops %d, holderless %s", n, drops, holderless)
	}
	st := summarize([]float64{5, 1, 3, 2, 4})
	if st.P50 != 3 || st.P99 != 5 || st.Max != 5 || st.N != 5 {
		t.Fatalf("summarize %+v", st)
	}
}
