package promtext

import "testing"

func TestValue(t *testing.T) {
	fams, err := Parse(`# TYPE c counter
c{node="n1",cause="lease"} 2
c{node="n1",cause="first"} 1
# TYPE g gauge
g{node="n1"} 0
# TYPE h histogram
h_bucket{phase="acted",le="+Inf"} 3
h_sum{phase="acted"} 0.4
h_count{phase="acted"} 3
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want map[string]string
		v    float64
	}{
		{"c", map[string]string{"cause": "lease"}, 2},
		{"c", map[string]string{"cause": "first", "node": "n1"}, 1},
		{"c", map[string]string{"cause": "check"}, -1},
		{"g", nil, 0},
		{"h", map[string]string{"phase": "acted"}, 3},
		{"missing", nil, -1},
	} {
		if v := fams.Value(tc.name, tc.want); v != tc.v {
			t.Errorf("Value(%s, %v) = %v, want %v", tc.name, tc.want, v, tc.v)
		}
	}
	if _, err := Parse("c{ 1\n"); err == nil {
		t.Error("Parse of a broken exposition: no error")
	}
}
