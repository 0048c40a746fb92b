// Package conf holds the vocabulary every harbormaster configuration
// document shares (the node config and its sections, the cluster spec): the
// error that names a field and its fix, and a duration written as a Go
// duration string. It imports nothing of the project, so every section can
// use it without import cycles.
package conf

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// FieldError is a validation failure that names the offending field and
// says how to fix it.
type FieldError struct {
	Field string // path, e.g. roles[1].candidates[0].node or checks[2].timeout
	Msg   string // what is wrong and what to do
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Errorf returns a *FieldError for field with a formatted message.
func Errorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Duration is a time.Duration written in YAML as a Go duration string
// ("250ms", "10s").
type Duration time.Duration

// UnmarshalYAML accepts only Go duration strings: a bare number has no unit
// and is refused rather than guessed.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if n.Kind != yaml.ScalarNode || n.Decode(&s) != nil {
		return fmt.Errorf("line %d: want a duration string such as \"250ms\" or \"10s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration; write it like \"250ms\" or \"10s\"", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String returns the Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// AtMost returns a *FieldError naming field when d is longer than max, and
// nil otherwise: the upper bound a duration gets for what it does (a lease
// a voter would refuse, a timeout that would stall a failover for days).
// reason says what the bound protects, completing "at most max: ...".
func AtMost(field string, d, max time.Duration, reason string) error {
	if d <= max {
		return nil
	}
	return Errorf(field, "%s is too long; use at most %s: %s", d, max, reason)
}
