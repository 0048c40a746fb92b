package config

import (
	"reflect"
	"slices"
	"strings"

	"github.com/harbormaster/harbormaster/agent/checks"
)

// Reloadable fields: what a running agent applies on SIGHUP. Every other
// field of Config needs a restart (reloading refuses a change to it).
var reloadable = map[string]bool{
	"log_level": true,
	"checks":    true,
	// The spec file seeds the cluster at bootstrap only; once the cluster
	// has a spec it is ignored, so a change to it is not refused.
	"spec_file": true,
}

// Changes is what a reload applies: the new log level ("" when it is the
// same) and the checks added, removed and changed, each sorted by name.
type Changes struct {
	LogLevel                string
	Added, Removed, Changed []string
}

// Empty reports whether the reload changes nothing.
func (c Changes) Empty() bool {
	return c.LogLevel == "" && len(c.Added)+len(c.Removed)+len(c.Changed) == 0
}

// String is the one-line summary of the log line and the event, e.g.
// "checks +disk -ping ~core, log_level debug", or "no change".
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
	if c.LogLevel != "" {
		parts = append(parts, "log_level "+c.LogLevel)
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
	Fields []string // yaml names, in the order of Config
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
	ov, nv := reflect.ValueOf(*old), reflect.ValueOf(*next)
	t := ov.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
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
	c.Added, c.Removed, c.Changed = diffChecks(old.Checks, next.Checks)
	return c, nil
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
