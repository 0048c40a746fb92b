package spec

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a role's duration setting (preempt_delay, hold_down,
// stop_timeout), parsed once when the spec is decoded. It keeps the text as
// the operator wrote it ("1m" stays "1m"), so the spec renders, and its
// commands encode, exactly as before it was typed. Text that does not parse
// decodes without an error into an invalid Duration that Validate reports
// under the field's name.
type Duration struct {
	text string
	d    time.Duration
	ok   bool
}

// Dur is the Duration written as s (invalid when s does not parse).
func Dur(s string) Duration {
	d, err := time.ParseDuration(s)
	return Duration{text: s, d: d, ok: err == nil}
}

// IsZero reports whether the setting is absent (omitempty, omitzero).
func (d Duration) IsZero() bool { return d.text == "" }

// Valid reports whether the text parsed as a Go duration.
func (d Duration) Valid() bool { return d.ok }

// Std returns the duration: 0 when absent or invalid.
func (d Duration) Std() time.Duration {
	if !d.ok {
		return 0
	}
	return d.d
}

// String returns the text as written.
func (d Duration) String() string { return d.text }

// MarshalText writes the text as written.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.text), nil }

// UnmarshalText parses the text; see Duration for text that does not parse.
func (d *Duration) UnmarshalText(b []byte) error {
	*d = Dur(string(b))
	return nil
}

// MarshalYAML writes the text as written.
func (d Duration) MarshalYAML() (any, error) { return d.text, nil }

// UnmarshalYAML accepts a scalar, as UnmarshalText.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as \"30s\"", n.Line)
	}
	*d = Dur(n.Value)
	return nil
}
