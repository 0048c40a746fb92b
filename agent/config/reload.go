package config

import (
	"reflect"
	"slices"
	"strings"

	"github.com/harbormaster/harbormaster/agent/checks"
	"github.com/harbormaster/harbormaster/agent/service"
)

// Reloadable fields: what a running agent applies on SIGHUP. Every other
// field of Config needs a restart (reloading refuses a change to it).
var reloadable = map[string]bool{
	"log_level":  true,
	"log_format": true,
	"checks":     true,
	// The entries of the service roles the node already has (Diff refuses
	// an added or removed one): they apply at the next start and stop.
	"services": true,
	// The spec file seeds the cluster at bootstrap only; once the cluster
	// has a spec it is ignored, so a change to it is not refused.
	"spec_file": true,
}

// Changes is what a reload applies: the new log level ("" when it is the
// same), the checks added, removed and changed, and the service roles
// whose entry changed (Services), each sorted by name.
type Changes struct {
	LogLevel, LogFormat     string
	Added, Removed, Changed []string
	// Services are the service roles whose services entry changed: their
	// next start and stop use the new entry; a running instance is not
	// restarted.
	Services []string
}

// Empty reports whether the reload changes nothing.
func (c Changes) Empty() bool {
	return c.LogLevel == "" && c.LogFormat == "" && len(c.Added)+len(c.Removed)+len(c.Changed)+len(c.Services) == 0
}

// String is the one-line summary of the log line and the event, e.g.
// "checks +disk -ping ~core, services ~notary (applies at the next
// start/stop), log_level debug", or "no change".
func (c Changes) String() string {
	var parts []string
	if len(c.Added)+len(c.Removed)+len(c.Changed) > 0 {
		var ch []string
		for _, n := range c.Added {
			ch = append(ch, "+"+n)
		}
		for _, n := range c.Removed {
			ch = append(ch, "-"+n)
		}
		for _, n := range c.Changed {
			ch = append(ch, "~"+n)
		}
		parts = append(parts, "checks "+strings.Join(ch, " "))
	}
	if len(c.Services) > 0 {
		parts = append(parts, "services ~"+strings.Join(c.Services, " ~")+" (applies at the next start/stop)")
	}
	if c.LogLevel != "" {
		parts = append(parts, "log_level "+c.LogLevel)
	}
	if c.LogFormat != "" {
		parts = append(parts, "log_format "+c.LogFormat)
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, ", ")
}

// RestartError refuses a reload that changes fields only a restart
// applies; the running config is kept whole.
type RestartError struct {
	Path   string
	Fields []string // yaml names, in the order of Config ("services.<role>" for a service role added or removed)
}

func (e *RestartError) Error() string {
	p := ""
	if e.Path != "" {
		p = e.Path + ": "
	}
	return p + strings.Join(e.Fields, ", ") + " cannot change while the agent runs; the running config is kept. " +
		"Undo the change and reload, or restart the agent to apply it (a role holder's roles move to another node when it stops)"
}

// Diff compares the running config with a new one (both loaded and
// validated) and returns what a reload applies, or a *RestartError naming
// every field that differs but needs a restart (no partial apply). The
// TLS files are re-read on every reload whatever Diff says; their paths
// need a restart. It is a pure function.
func Diff(old, next *Config) (Changes, error) {
	var restart []string
	changedServices, addedOrRemoved := diffServices(old.Services, next.Services)
	ov, nv := reflect.ValueOf(*old), reflect.ValueOf(*next)
	t := ov.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "services" {
			restart = append(restart, addedOrRemoved...)
		}
		if name == "-" || reloadable[name] {
			continue // Spec and Path follow spec_file and the file
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			restart = append(restart, name)
		}
	}
	if len(restart) > 0 {
		return Changes{}, &RestartError{Path: next.Path, Fields: restart}
	}
	var c Changes
	if old.LogLevel != next.LogLevel {
		c.LogLevel = next.LogLevel
	}
	if old.LogFormat != next.LogFormat {
		c.LogFormat = next.LogFormat
	}
	c.Added, c.Removed, c.Changed = diffChecks(old.Checks, next.Checks)
	c.Services = changedServices
	return c, nil
}

// diffServices compares two services maps: the roles in both whose entry
// changed, and "services.<role>" for each role added or removed (a
// restart: the node's registered services and its workers change), each
// sorted.
func diffServices(old, next map[string]service.Config) (changed, restart []string) {
	for name, n := range next {
		o, ok := old[name]
		switch {
		case !ok:
			restart = append(restart, "services."+name)
		case !SameService(o, n):
			changed = append(changed, name)
		}
	}
	for name := range old {
		if _, ok := next[name]; !ok {
			restart = append(restart, "services."+name)
		}
	}
	slices.Sort(changed)
	slices.Sort(restart)
	return changed, restart
}

// SameService reports whether two entries of a service role run it the
// same way (an empty mode is hooks; nil and empty lists are the same).
func SameService(a, b service.Config) bool {
	return sameMode(a.Mode, b.Mode) && slices.Equal(a.Start, b.Start) && slices.Equal(a.Stop, b.Stop) &&
		slices.Equal(a.Status, b.Status) && slices.Equal(a.Env, b.Env) && a.Unit == b.Unit
}

// SameInstance reports whether the backends of two entries of a service
// role act on the same running instance: the same mode and, for systemd,
// the same unit. When not, the instance the old entry started must be
// stopped with the old entry.
func SameInstance(a, b service.Config) bool {
	return sameMode(a.Mode, b.Mode) && a.Unit == b.Unit
}

func sameMode(a, b string) bool {
	norm := func(m string) string {
		if m == "" {
			return service.ModeHooks
		}
		return m
	}
	return norm(a) == norm(b)
}

// diffChecks compares two normalized check lists by name.
func diffChecks(old, next []checks.Config) (added, removed, changed []string) {
	byName := map[string]checks.Config{}
	for _, c := range old {
		byName[c.Name] = c
	}
	for _, c := range next {
		o, ok := byName[c.Name]
		switch {
		case !ok:
			added = append(added, c.Name)
		case !reflect.DeepEqual(o, c):
			changed = append(changed, c.Name)
		}
		delete(byName, c.Name)
	}
	for n := range byName {
		removed = append(removed, n)
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	return added, removed, changed
}
