package spec

import (
	"fmt"
	"net/netip"

	"gopkg.in/yaml.v3"
)

// Prefix is a vip role's address with its prefix length, parsed once when
// the spec is decoded, so every user compares netip values and a
// non-canonical spelling ("fd00:0::200/64") is the same address as the
// canonical one. Its YAML and JSON form is the string ("198.18.0.200/24").
//
// Text that does not parse decodes without an error into an invalid
// Prefix that remembers it, so that Validate reports it with the field's
// name.
type Prefix struct {
	netip.Prefix
	bad string // the text, when it did not parse
}

// MustParsePrefix parses s, or panics: for constants and tests.
func MustParsePrefix(s string) Prefix { return Prefix{Prefix: netip.MustParsePrefix(s)} }

// IsZero reports whether no address was given (omitempty, omitzero).
func (p Prefix) IsZero() bool { return !p.IsValid() && p.bad == "" }

// String is the canonical text, or the text that did not parse, or "".
func (p Prefix) String() string {
	if !p.IsValid() {
		return p.bad
	}
	return p.Prefix.String()
}

// MarshalText writes String.
func (p Prefix) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// AppendText appends String (it shadows netip.Prefix's, which would write
// "invalid Prefix" for an address that did not parse).
func (p Prefix) AppendText(b []byte) ([]byte, error) { return append(b, p.String()...), nil }

// UnmarshalText parses an address with its prefix length; see Prefix for
// text that does not parse.
func (p *Prefix) UnmarshalText(b []byte) error {
	v, err := netip.ParsePrefix(string(b))
	if err != nil {
		*p = Prefix{bad: string(b)}
		return nil
	}
	*p = Prefix{Prefix: v}
	return nil
}

// MarshalYAML writes String.
func (p Prefix) MarshalYAML() (any, error) { return p.String(), nil }

// UnmarshalYAML accepts a scalar, as UnmarshalText.
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want an address with a prefix length such as 198.18.0.200/24", n.Line)
	}
	return p.UnmarshalText([]byte(n.Value))
}
