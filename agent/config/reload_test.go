package config_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/agent/config"
)

func parse(t *testing.T, edits ...edit) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(doc(edits...)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

const (
	checksAB  = `[{name: a, type: tcp, address: "127.0.0.1:1"}, {name: b, type: tcp, address: "127.0.0.1:2"}]`
	checksBCD = `[{name: b, type: tcp, address: "127.0.0.1:3"}, {name: c, type: tcp, address: "127.0.0.1:4"}, {name: d, type: tcp, address: "127.0.0.1:5"}]`
)

// What may change at run time is applied: the log level and the checks,
// by name (added, removed, changed).
func TestDiffReloadable(t *testing.T) {
	old := parse(t, set("checks", checksAB))
	next := parse(t, set("checks", checksBCD), set("log_level", "debug"), set("spec_file", "other.yaml"))
	ch, err := config.Diff(old, next)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	if ch.LogLevel != "debug" || !slices.Equal(ch.Added, []string{"c", "d"}) || !slices.Equal(ch.Removed, []string{"a"}) ||
		!slices.Equal(ch.Changed, []string{"b"}) {
		t.Fatalf("Diff = %+v, want log_level debug, checks +c +d -a ~b", ch)
	}
	if got, want := ch.String(), "checks +c +d -a ~b, log_level debug"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	// The same config: nothing to do. A check's defaults written out are
	// the same check.
	same := parse(t, set("checks", `[{name: a, type: tcp, address: "127.0.0.1:1", interval: 10s}, {name: b, type: tcp, address: "127.0.0.1:2"}]`))
	ch, err = config.Diff(old, same)
	if err != nil || !ch.Empty() || ch.String() != "no change" {
		t.Fatalf("Diff of the same config = %+v (%q), %v; want no change", ch, ch.String(), err)
	}
}

// Fields only a restart applies are refused, every one named, and
// nothing of the reloadable changes is returned with them.
func TestDiffRefusesRestartFields(t *testing.T) {
	old := parse(t)
	for _, tc := range []struct {
		edits []edit
		want  []string
	}{
		{[]edit{set("api_addr", "127.0.0.1:7299")}, []string{"api_addr"}},
		{[]edit{set("raft_addr", "127.0.0.1:7101"), set("node_id", "n1")}, nil},
		{[]edit{set("metrics_addr", "127.0.0.1:7399"), set("log_level", "debug"), set("profile", "fast")}, []string{"metrics_addr", "profile"}},
		{[]edit{set("vip_interface", "eth1"), set("garp", "{repeat: 5}")}, []string{"vip_interface", "garp"}},
		{[]edit{set("voter", "true")}, []string{"voter"}},
		{[]edit{set("witness", "true")}, []string{"witness"}},
		{[]edit{set("data_dir", "/srv/hm")}, []string{"data_dir"}},
		{[]edit{set("services", `{web: {start: [/bin/true], stop: [/bin/true]}}`)}, []string{"services"}},
		{[]edit{set("redis", `{address: "127.0.0.1:6379"}`)}, []string{"redis"}},
		{[]edit{set("timing", `{lease: 3s}`)}, []string{"timing"}},
	} {
		ch, err := config.Diff(old, parse(t, tc.edits...))
		if tc.want == nil {
			if err != nil {
				t.Errorf("%v: Diff: %v, want no refusal", tc.edits, err)
			}
			continue
		}
		var re *config.RestartError
		if !errors.As(err, &re) {
			t.Errorf("%v: Diff = %+v, %v; want a RestartError", tc.edits, ch, err)
			continue
		}
		if !slices.Equal(re.Fields, tc.want) {
			t.Errorf("%v: refused fields %v, want %v", tc.edits, re.Fields, tc.want)
		}
		if !ch.Empty() {
			t.Errorf("%v: a refusal returned changes %+v", tc.edits, ch)
		}
		if msg := err.Error(); !strings.Contains(msg, strings.Join(tc.want, ", ")+" cannot change while the agent runs") || !strings.Contains(msg, "restart") {
			t.Errorf("%v: message %q does not name the fields and the fix", tc.edits, msg)
		}
	}
}
