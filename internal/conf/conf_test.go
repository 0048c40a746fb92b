package conf

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDurationYAML(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want time.Duration
		err  string
	}{
		{"d: 250ms", 250 * time.Millisecond, ""},
		{"d: 1m30s", 90 * time.Second, ""},
		{"d: 250", 0, `line 1: "250" is not a duration; write it like "250ms" or "10s"`},
		{"d: soon", 0, `line 1: "soon" is not a duration`},
		{"d: [1s]", 0, `line 1: want a duration string such as "250ms" or "10s"`},
		{"d: {ms: 1}", 0, `line 1: want a duration string`},
	} {
		var v struct{ D Duration }
		err := yaml.Unmarshal([]byte(tc.doc), &v)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %v, want an error containing %q", tc.doc, err, tc.err)
			}
			continue
		}
		if err != nil || time.Duration(v.D) != tc.want {
			t.Errorf("%q: got %v, %v; want %v", tc.doc, time.Duration(v.D), err, tc.want)
		}
		out, err := yaml.Marshal(v)
		if err != nil || strings.TrimSpace(string(out)) != "d: "+tc.want.String() {
			t.Errorf("%q: marshalled to %q, %v; want d: %s", tc.doc, out, err, tc.want)
		}
	}
}

func TestFieldError(t *testing.T) {
	if got := Errorf("checks[2].timeout", "%s is too long", time.Second).Error(); got != "checks[2].timeout: 1s is too long" {
		t.Errorf("got %q", got)
	}
	if got := (&FieldError{Msg: "no field"}).Error(); got != "no field" {
		t.Errorf("got %q", got)
	}
}

func TestAtMost(t *testing.T) {
	if err := AtMost("timing.lease", 10*time.Minute, 10*time.Minute, "voters grant no more"); err != nil {
		t.Errorf("at the bound: %v", err)
	}
	err := AtMost("timing.lease", 10*time.Minute+time.Millisecond, 10*time.Minute, "voters grant no more")
	want := "timing.lease: 10m0.001s is too long; use at most 10m0s: voters grant no more"
	if err == nil || err.Error() != want {
		t.Fatalf("over the bound: got %v, want %q", err, want)
	}
	if fe, ok := err.(*FieldError); !ok || fe.Field != "timing.lease" {
		t.Fatalf("got %T %v, want a *FieldError naming timing.lease", err, err)
	}
}
