// Package promtext reads an agent's /metrics (the Prometheus text
// exposition format) for the tests and lab checks that scrape agents.
package promtext

import (
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families is a parsed exposition, by family name.
type Families map[string]*dto.MetricFamily

// Parse parses body.
func Parse(body string) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(body))
}

// Value returns the value of the first series of family name whose labels
// include want: a counter's or gauge's value, a histogram's sample count;
// -1 when there is none.
func (f Families) Value(name string, want map[string]string) float64 {
	fam := f[name]
	if fam == nil {
		return -1
	}
next:
	for _, m := range fam.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}
