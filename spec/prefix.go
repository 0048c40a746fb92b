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

// Shortest prefix lengths of a vip address: a VIP is announced on the
// nodes' subnet, and a shorter prefix would put a route to a large part of
// the address space on every holder.
const (
	MinVIPBits4 = 8
	MinVIPBits6 = 16
)

// checkVIP reports why p cannot be a vip role's address, as a
// *conf.FieldError for field: it must be a host address of a sane subnet.
// Refused: an unspecified, loopback, multicast, link-local or limited
// broadcast address, an IPv4 address written as IPv6 (::ffff:a.b.c.d), a
// prefix shorter than /8 (IPv4) or /16 (IPv6), the subnet's network address
// (the IPv6 subnet-router anycast) and its IPv4 broadcast address, except
// on /31 and /32 (/127 and /128) where every address is a host.
func checkVIP(field string, p netip.Prefix) error {
	a := p.Addr()
	switch {
	case a.Is4In6():
		return fieldErr(field, fmt.Sprintf("%s is an IPv4 address written as IPv6; write it as IPv4 with its prefix length, e.g. %s/24", p, a.Unmap()))
	case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) ||
		a.Is4() && a.As4()[0] == 0:
		return fieldErr(field, fmt.Sprintf("%s cannot be a virtual IP; use a unicast address of the nodes' subnet", a))
	case p.Bits() == 0:
		return fieldErr(field, fmt.Sprintf("%s has prefix length 0; give the prefix length of the nodes' subnet, e.g. /24 or /64", p))
	case a.Is4() && p.Bits() < MinVIPBits4, a.Is6() && p.Bits() < MinVIPBits6:
		min := MinVIPBits4
		if a.Is6() {
			min = MinVIPBits6
		}
		return fieldErr(field, fmt.Sprintf("%s has a /%d prefix; use the prefix length of the nodes' subnet, at least /%d", p, p.Bits(), min))
	}
	hostBits := a.BitLen() - p.Bits()
	if hostBits < 2 { // /31, /32, /127, /128: every address is a host
		return nil
	}
	if a == p.Masked().Addr() {
		return fieldErr(field, fmt.Sprintf("%s is the network address of %s, not a host's; use a host address of the subnet, e.g. %s/%d", a, p.Masked(), a.Next(), p.Bits()))
	}
	if a.Is4() && a == lastAddr(p) {
		return fieldErr(field, fmt.Sprintf("%s is the broadcast address of %s, not a host's; use a host address of the subnet, e.g. %s/%d", a, p.Masked(), a.Prev(), p.Bits()))
	}
	return nil
}

// lastAddr is the highest address of p's subnet.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
