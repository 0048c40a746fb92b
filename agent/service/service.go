package service

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/harbormaster/harbormaster/internal/childenv"
	"github.com/harbormaster/harbormaster/internal/conf"
)

// Modes of Config.Mode.
const (
	ModeHooks   = "hooks"
	ModeSystemd = "systemd"
)

// Config is how one node runs one service role, from the node's config file:
//
//	services:
//	  notary:                 # the role name in the cluster spec (the map key)
//	    mode: hooks           # hooks (default) or systemd
//	    start: [/usr/local/bin/notary-ctl, start]
//	    stop:  [/usr/local/bin/notary-ctl, stop]
//	    status: [/usr/local/bin/notary-ctl, status]   # optional
//	    env: [TZ=UTC, HTTPS_PROXY]                      # optional
//	  clair:
//	    mode: systemd
//	    unit: clair.service
type Config struct {
	// Mode is "hooks" (the default when empty) or "systemd".
	Mode string `yaml:"mode,omitempty"`
	// Start is the argv of the start hook (hooks mode, required).
	Start []string `yaml:"start,omitempty"`
	// Stop is the argv of the stop hook (hooks mode, required).
	Stop []string `yaml:"stop,omitempty"`
	// Status is the argv of the status hook (hooks mode, optional): exit 0
	// means active, 3 inactive (LSB), anything else is an error.
	Status []string `yaml:"status,omitempty"`
	// Env is the hooks' environment besides PATH (default
	// internal/childenv.DefaultPath) and the HARBORMASTER_* variables of
	// Env: entries NAME=value, or NAME to pass the agent's own value through
	// (hooks mode). The agent's environment is not passed otherwise.
	Env []string `yaml:"env,omitempty"`
	// Unit is the systemd unit (systemd mode, required); it ends in .service.
	Unit string `yaml:"unit,omitempty"`
}

func fieldErr(field, format string, args ...any) error { return conf.Errorf(field, format, args...) }

// Validate checks the config and returns the first problem as a *conf.FieldError.
// field is the path of the config in the file, e.g. "services.notary"; every
// error names a field under it. Validate does not modify c.
func (c *Config) Validate(field string) error {
	sub := func(name string) string {
		if field == "" {
			return name
		}
		return field + "." + name
	}
	switch c.Mode {
	case "", ModeHooks:
		if err := checkArgv(sub("start"), c.Start, true); err != nil {
			return err
		}
		if err := checkArgv(sub("stop"), c.Stop, true); err != nil {
			return err
		}
		if err := checkArgv(sub("status"), c.Status, false); err != nil {
			return err
		}
		if err := childenv.Validate(sub("env"), c.Env); err != nil {
			return err
		}
		if c.Unit != "" {
			return fieldErr(sub("unit"), "is for mode: systemd; remove it, or set mode: systemd and remove start, stop and status")
		}
	case ModeSystemd:
		for _, f := range []struct {
			name string
			argv []string
		}{{"start", c.Start}, {"stop", c.Stop}, {"status", c.Status}} {
			if len(f.argv) > 0 {
				return fieldErr(sub(f.name), "is for mode: hooks; remove it (systemd starts, stops and queries the unit), or set mode: hooks and remove unit")
			}
		}
		if len(c.Env) > 0 {
			return fieldErr(sub("env"), "is for mode: hooks; a unit gets its environment from its own Environment= settings, so remove env")
		}
		if c.Unit == "" {
			return fieldErr(sub("unit"), "is missing; name the systemd unit to run, e.g. unit: clair.service")
		}
		if msg := checkUnit(c.Unit); msg != "" {
			return fieldErr(sub("unit"), "%s", msg)
		}
	default:
		return fieldErr(sub("mode"), "%q is not a mode; use hooks (run start/stop commands) or systemd (run a unit)", c.Mode)
	}
	return nil
}

// checkArgv validates a hook's argv: a non-empty list whose program is an
// absolute path or a bare name looked up in the hook's PATH.
func checkArgv(field string, argv []string, required bool) error {
	if len(argv) == 0 {
		if !required {
			return nil
		}
		return fieldErr(field, "is missing; give the command as a list, e.g. %s: [/usr/local/bin/notary-ctl, %s]", lastElem(field), lastElem(field))
	}
	prog := argv[0]
	switch {
	case prog == "":
		return fieldErr(field+"[0]", "the program is empty; give an absolute path such as /usr/local/bin/notary-ctl")
	case strings.ContainsRune(prog, '/') && !strings.HasPrefix(prog, "/"):
		return fieldErr(field+"[0]", "%q is a relative path, which would depend on the agent's working directory; give an absolute path, or a bare program name looked up in PATH", prog)
	case strings.HasSuffix(prog, "/"):
		return fieldErr(field+"[0]", "%q is a directory; give the path of the program", prog)
	}
	for i, a := range argv {
		if strings.ContainsRune(a, 0) {
			return fieldErr(fmt.Sprintf("%s[%d]", field, i), "contains a NUL byte, which cannot be passed to a program; remove it")
		}
	}
	return nil
}

func lastElem(field string) string {
	return field[strings.LastIndexByte(field, '.')+1:]
}

// checkUnit returns why unit is not a startable service unit name, or "".
// It follows systemd's unit_name_is_valid; it also keeps the name safe to
// use as a path element of the drop-in directory.
func checkUnit(unit string) string {
	if !strings.HasSuffix(unit, ".service") {
		return fmt.Sprintf("%q does not end in .service; harbormaster runs service units, e.g. unit: clair.service", unit)
	}
	if len(unit) > 255 {
		return fmt.Sprintf("%q is longer than systemd's limit of 255 characters", unit)
	}
	name := strings.TrimSuffix(unit, ".service")
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":-_.\\@", r)) {
			return fmt.Sprintf("%q is not a valid unit name (character %q); use letters, digits and :-_.\\@, escaping others with systemd-escape", unit, r)
		}
	}
	prefix, instance, templ := strings.Cut(name, "@")
	switch {
	case prefix == "":
		return fmt.Sprintf("%q has no name before .service or @; write it like clair.service", unit)
	case templ && strings.ContainsRune(instance, '@'):
		return fmt.Sprintf("%q has more than one @; a unit name has at most one", unit)
	case templ && instance == "":
		return fmt.Sprintf("%q is a template, which cannot be started; name an instance, e.g. %s@main.service", unit, prefix)
	}
	return ""
}

// Env is handed to every hook as the environment variables HARBORMASTER_ROLE,
// HARBORMASTER_NODE and HARBORMASTER_EPOCH (decimal), besides PATH and the
// config's env list (never the agent's whole environment); in systemd mode
// it is written into the unit's drop-in by Start.
type Env struct {
	Role  string
	Node  string
	Epoch uint64
}

func (e Env) vars() []string {
	return []string{
		"HARBORMASTER_ROLE=" + e.Role,
		"HARBORMASTER_NODE=" + e.Node,
		fmt.Sprintf("HARBORMASTER_EPOCH=%d", e.Epoch),
	}
}

// Actuator starts and stops one service. Every call is bounded by ctx (the
// caller sets the role's start or stop timeout); when ctx ends first, the
// error wraps ErrTimeout. Implementations are safe for concurrent use, but
// the agent should not overlap Start and Stop of the same service.
type Actuator interface {
	// Start starts the service. Starting an active service is up to the
	// hook or unit; systemd treats it as success.
	Start(ctx context.Context, env Env) error
	// Stop stops the service. Stopping a stopped service succeeds for
	// systemd units and should for hooks. An error wrapping ErrTimeout means
	// the service may still run.
	Stop(ctx context.Context, env Env) error
	// Status reports whether the service is active; ErrNoStatus when the
	// actuator has no way to tell (hooks without a status argv).
	Status(ctx context.Context, env Env) (active bool, err error)
}

// ErrNoStatus is returned by Status when the actuator cannot tell whether the
// service runs (hooks mode without a status hook).
var ErrNoStatus = errors.New("service: no status command configured")

// ErrTimeout is wrapped by errors when ctx ended (deadline or cancellation)
// before the hook or systemd job finished. For hooks the hook's process group
// was killed; the service itself may still run, so a Stop failing with it
// must make the agent fence itself rather than release the role.
var ErrTimeout = errors.New("service: timed out")

// New validates c and returns the actuator of its mode for the role. It
// starts nothing and opens no connection. The systemd actuator (*Systemd)
// holds a D-Bus connection once used: close it through io.Closer when the
// actuator is dropped.
func New(role string, c Config) (Actuator, error) {
	if err := c.Validate("services." + role); err != nil {
		return nil, err
	}
	if c.Mode == ModeSystemd {
		return NewSystemd(c.Unit, SystemdOptions{}), nil
	}
	return NewHooks(c), nil
}

// ConfigOf returns the config a backend built by New (or NewHooks,
// NewSystemd) runs: what another process needs to build the same backend
// and stop the service exactly as this one would (the service guard,
// agent/serviceguard). ok is false for other implementations (fakes).
func ConfigOf(a Actuator) (c Config, ok bool) {
	switch b := a.(type) {
	case *Hooks:
		return Config{Mode: ModeHooks, Start: b.start, Stop: b.stop, Status: b.status, Env: b.env}, true
	case *Systemd:
		return Config{Mode: ModeSystemd, Unit: b.unit}, true
	}
	return Config{}, false
}
