package lab

import (
	"testing"
	"time"
)

func TestSamplesSince(t *testing.T) {
	t0 := time.Now()
	s := &Sampler{}
	for i := range 5 {
		s.samples = append(s.samples, Sample{At: t0.Add(time.Duration(i) * DefaultSampleEvery)})
	}
	if got := s.SamplesSince(time.Time{}); len(got) != 5 {
		t.Fatalf("since zero: %d samples, want 5", len(got))
	}
	got := s.SamplesSince(t0.Add(2 * DefaultSampleEvery))
	if len(got) != 3 || !got[0].At.Equal(t0.Add(2*DefaultSampleEvery)) {
		t.Fatalf("since the third: %v", got)
	}
	if got := s.SamplesSince(t0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("since later: %v", got)
	}
	got[0].Holders = []string{"x"} // a copy: the sampler's samples stay
	if s.samples[2].Holders != nil {
		t.Fatal("SamplesSince returned the sampler's own slice")
	}
}

func TestInLabNamespaceRefusesOthers(t *testing.T) {
	for _, ns := range []string{"", "default", "hmlab-1", "../hmlab-1-abcd-n1", "hmlab-1-abcd-n1/x"} {
		if err := InLabNamespace(ns, func() error { return nil }); err == nil {
			t.Errorf("InLabNamespace(%q) accepted a name that is not a lab namespace", ns)
		}
	}
}
