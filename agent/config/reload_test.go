package config_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/agent/service"
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
	next := parse(t, set("checks", checksBCD), set("log_level", "debug"), set("log_format", "json"), set("spec_file", "other.yaml"))
	ch, err := config.Diff(old, next)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	if ch.LogLevel != "debug" || ch.LogFormat != "json" || !slices.Equal(ch.Added, []string{"c", "d"}) || !slices.Equal(ch.Removed, []string{"a"}) ||
		!slices.Equal(ch.Changed, []string{"b"}) {
		t.Fatalf("Diff = %+v, want log_level debug, checks +c +d -a ~b", ch)
	}
	if got, want := ch.String(), "checks +c +d -a ~b, log_level debug, log_format json"; got != want {
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
		{[]edit{set("services", `{web: {start: [/bin/true], stop: [/bin/true]}}`)}, []string{"services.web"}},
		{[]edit{set("redis", `{address: "127.0.0.1:6379"}`)}, []string{"redis"}},
		{[]edit{set("redis", `{address: "127.0.0.1:6379"}`), set("services", `{web: {start: [/bin/true], stop: [/bin/true]}}`), set("garp", "{repeat: 5}")},
			[]string{"garp", "services.web", "redis"}},
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

const (
	servicesAB = `{notary: {start: [/usr/bin/notary-ctl, start], stop: [/usr/bin/notary-ctl, stop]}, clair: {mode: systemd, unit: clair.service}}`
)

// A changed entry of a service role the node already has is applied (at
// the next start and stop: the summary says so); adding or removing a
// service role is refused, the role named; an entry written differently
// but running the same way is no change.
func TestDiffServices(t *testing.T) {
	old := parse(t, set("services", servicesAB))
	next := parse(t, set("services", `{notary: {start: [/usr/bin/notary-ctl, start], stop: [/usr/bin/notary-ctl, stop, --grace=5]}, clair: {mode: systemd, unit: clair2.service}}`),
		set("log_level", "debug"))
	ch, err := config.Diff(old, next)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	if !slices.Equal(ch.Services, []string{"clair", "notary"}) || ch.Empty() {
		t.Fatalf("Diff = %+v, want services clair, notary changed", ch)
	}
	if got, want := ch.String(), "services ~clair ~notary (applies at the next start/stop), log_level debug"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	same := parse(t, set("services", `{notary: {mode: hooks, start: [/usr/bin/notary-ctl, start], stop: [/usr/bin/notary-ctl, stop], env: []}, clair: {mode: systemd, unit: clair.service}}`))
	if ch, err := config.Diff(old, same); err != nil || !ch.Empty() {
		t.Fatalf("Diff of the same services written out = %+v, %v; want no change", ch, err)
	}
	for _, tc := range []struct {
		services string
		want     []string
	}{
		{`{notary: {start: [/bin/true], stop: [/bin/true]}}`, []string{"services.clair"}},
		{servicesAB[:len(servicesAB)-1] + `, web: {start: [/bin/true], stop: [/bin/true]}}`, []string{"services.web"}},
	} {
		ch, err := config.Diff(old, parse(t, set("services", tc.services), set("log_level", "debug")))
		var re *config.RestartError
		if !errors.As(err, &re) || !slices.Equal(re.Fields, tc.want) || !ch.Empty() {
			t.Errorf("services %s: Diff = %+v, %v; want a RestartError naming %v", tc.services, ch, err, tc.want)
		}
	}
}

// SameService compares every field of service.Config: a field added there
// must be added to it (else its change would be reloaded as no change).
func TestSameServiceCoversConfig(t *testing.T) {
	if n := reflect.TypeOf(service.Config{}).NumField(); n != 6 {
		t.Fatalf("service.Config has %d fields; compare the new ones in config.SameService and update this count", n)
	}
	base := service.Config{Mode: "hooks", Start: []string{"/a"}, Stop: []string{"/b"}, Status: []string{"/c"}, Env: []string{"X=1"}}
	for i, mod := range []func(*service.Config){
		func(c *service.Config) { c.Mode = "systemd" },
		func(c *service.Config) { c.Start = []string{"/z"} },
		func(c *service.Config) { c.Stop = []string{"/z"} },
		func(c *service.Config) { c.Status = nil },
		func(c *service.Config) { c.Env = []string{"X=2"} },
		func(c *service.Config) { c.Unit = "u.service" },
	} {
		c := base
		mod(&c)
		if config.SameService(base, c) {
			t.Errorf("change %d: SameService = true", i)
		}
	}
	if !config.SameInstance(base, service.Config{Start: []string{"/z"}, Stop: []string{"/y"}}) {
		t.Error("SameInstance of two hooks entries = false; a new stop hook must stop the running instance")
	}
	if config.SameInstance(service.Config{Mode: "systemd", Unit: "a.service"}, service.Config{Mode: "systemd", Unit: "b.service"}) {
		t.Error("SameInstance of two units = true; the old unit must be stopped with the old entry")
	}
}
