package service

import (
	"errors"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/internal/conf"
)

func TestValidate(t *testing.T) {
	hooks := func(mut func(*Config)) Config {
		c := Config{Start: []string{"/usr/local/bin/notary-ctl", "start"}, Stop: []string{"/usr/local/bin/notary-ctl", "stop"}}
		mut(&c)
		return c
	}
	systemd := func(mut func(*Config)) Config {
		c := Config{Mode: "systemd", Unit: "clair.service"}
		mut(&c)
		return c
	}
	none := func(*Config) {}
	tests := []struct {
		name      string
		c         Config
		wantField string // "" means valid
		wantMsg   string // part of the message: the fix
	}{
		{"hooks default mode", hooks(none), "", ""},
		{"hooks explicit with status and bare names", hooks(func(c *Config) {
			c.Mode = "hooks"
			c.Start = []string{"notary-ctl", "start"}
			c.Status = []string{"notary-ctl", "status"}
		}), "", ""},
		{"hooks with env", hooks(func(c *Config) { c.Env = []string{"TZ=UTC", "HTTPS_PROXY"} }), "", ""},
		{"systemd", systemd(none), "", ""},
		{"systemd instance", systemd(func(c *Config) { c.Unit = "trivy@main.service" }), "", ""},
		{"systemd escaped name", systemd(func(c *Config) { c.Unit = `clair-x\x2dy:z_1.service` }), "", ""},

		{"unknown mode", hooks(func(c *Config) { c.Mode = "docker" }), "services.notary.mode", "use hooks"},
		{"hooks without start", hooks(func(c *Config) { c.Start = nil }), "services.notary.start", "is missing"},
		{"hooks with empty start", hooks(func(c *Config) { c.Start = []string{} }), "services.notary.start", "start: [/usr/local/bin/notary-ctl, start]"},
		{"hooks without stop", hooks(func(c *Config) { c.Stop = nil }), "services.notary.stop", "stop: [/usr/local/bin/notary-ctl, stop]"},
		{"start program empty", hooks(func(c *Config) { c.Start = []string{"", "start"} }), "services.notary.start[0]", "absolute path"},
		{"start program relative dot", hooks(func(c *Config) { c.Start = []string{"./notary-ctl"} }), "services.notary.start[0]", "relative path"},
		{"stop program relative dir", hooks(func(c *Config) { c.Stop = []string{"bin/notary-ctl"} }), "services.notary.stop[0]", "relative path"},
		{"status program relative", hooks(func(c *Config) { c.Status = []string{"../ctl", "status"} }), "services.notary.status[0]", "bare program name"},
		{"start program is a directory", hooks(func(c *Config) { c.Start = []string{"/usr/local/bin/"} }), "services.notary.start[0]", "is a directory"},
		{"argument with NUL", hooks(func(c *Config) { c.Start = []string{"/bin/x", "a\x00b"} }), "services.notary.start[1]", "NUL"},
		{"env bad name", hooks(func(c *Config) { c.Env = []string{"TZ=UTC", "9LIVES=1"} }), "services.notary.env[1]", "not a variable name"},
		{"env reserved name", hooks(func(c *Config) { c.Env = []string{"HARBORMASTER_ROLE=x"} }), "services.notary.env[0]", "set by the agent itself"},
		{"systemd with env", systemd(func(c *Config) { c.Env = []string{"TZ=UTC"} }), "services.notary.env", "Environment="},
		{"hooks with unit", hooks(func(c *Config) { c.Unit = "notary.service" }), "services.notary.unit", "set mode: systemd"},

		{"systemd without unit", systemd(func(c *Config) { c.Unit = "" }), "services.notary.unit", "unit: clair.service"},
		{"systemd unit without suffix", systemd(func(c *Config) { c.Unit = "clair" }), "services.notary.unit", "end in .service"},
		{"systemd timer unit", systemd(func(c *Config) { c.Unit = "clair.timer" }), "services.notary.unit", "end in .service"},
		{"systemd unit with slash", systemd(func(c *Config) { c.Unit = "../../etc/x.service" }), "services.notary.unit", "systemd-escape"},
		{"systemd unit with space", systemd(func(c *Config) { c.Unit = "my clair.service" }), "services.notary.unit", "not a valid unit name"},
		{"systemd unit only suffix", systemd(func(c *Config) { c.Unit = ".service" }), "services.notary.unit", "no name"},
		{"systemd template", systemd(func(c *Config) { c.Unit = "trivy@.service" }), "services.notary.unit", "trivy@main.service"},
		{"systemd two @", systemd(func(c *Config) { c.Unit = "a@b@c.service" }), "services.notary.unit", "more than one @"},
		{"systemd unit too long", systemd(func(c *Config) { c.Unit = strings.Repeat("a", 250) + ".service" }), "services.notary.unit", "255"},
		{"systemd with start", systemd(func(c *Config) { c.Start = []string{"/bin/x"} }), "services.notary.start", "remove it"},
		{"systemd with stop", systemd(func(c *Config) { c.Stop = []string{"/bin/x"} }), "services.notary.stop", "remove it"},
		{"systemd with status", systemd(func(c *Config) { c.Status = []string{"/bin/x"} }), "services.notary.status", "remove it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate("services.notary")
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v (%T), want a *conf.FieldError", err, err)
			}
			if fe.Field != tt.wantField {
				t.Fatalf("Field = %q, want %q (error: %v)", fe.Field, tt.wantField, err)
			}
			if !strings.Contains(fe.Msg, tt.wantMsg) {
				t.Fatalf("Msg = %q, want it to contain %q", fe.Msg, tt.wantMsg)
			}
			if got, want := err.Error(), fe.Field+": "+fe.Msg; got != want {
				t.Fatalf("Error() = %q, want %q", got, want)
			}
		})
	}
}

func TestValidateEmptyPrefix(t *testing.T) {
	err := (&Config{Mode: "systemd"}).Validate("")
	var fe *conf.FieldError
	if !errors.As(err, &fe) || fe.Field != "unit" {
		t.Fatalf("Validate(\"\") = %v, want a *conf.FieldError for field unit", err)
	}
}

func TestNew(t *testing.T) {
	a, err := New("notary", Config{Start: []string{"/bin/true"}, Stop: []string{"/bin/true"}})
	if err != nil {
		t.Fatalf("New(hooks) = %v", err)
	}
	if _, ok := a.(*Hooks); !ok {
		t.Fatalf("New(hooks) = %T, want *Hooks", a)
	}

	a, err = New("clair", Config{Mode: "systemd", Unit: "clair.service"})
	if err != nil {
		t.Fatalf("New(systemd) = %v", err)
	}
	s, ok := a.(*Systemd)
	if !ok {
		t.Fatalf("New(systemd) = %T, want *Systemd", a)
	}
	if got, want := s.dropInPath(), "/run/systemd/system/clair.service.d/50-harbormaster.conf"; got != want {
		t.Fatalf("drop-in path = %q, want %q", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	_, err = New("trivy", Config{Mode: "systemd"})
	var fe *conf.FieldError
	if !errors.As(err, &fe) || fe.Field != "services.trivy.unit" {
		t.Fatalf("New(invalid) = %v, want a *conf.FieldError for services.trivy.unit", err)
	}
}
