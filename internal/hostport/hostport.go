// Package hostport validates host:port strings for the config sections
// (checks, redis, the node config) with messages that say what to write.
package hostport

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Check reports what is wrong with addr as an address to connect to, or
// "" when it is a valid host:port (an IP or a host name, port 1-65535, not
// an unspecified address). example is a valid address the message quotes.
func Check(addr, example string) string {
	if addr == "" {
		return "is missing; write host:port, e.g. " + example
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port (%v); write it like %s or [::1]:%s", addr, err, example, portOf(example))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Sprintf("port %q in %q is not a number from 1 to 65535", port, addr)
	}
	if host == "" {
		return fmt.Sprintf("%q has no host; write it like %s", addr, example)
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() {
			return fmt.Sprintf("%q is not an address one can connect to; use 127.0.0.1 or the node's address", addr)
		}
		return ""
	}
	if !ValidHostname(host) {
		return fmt.Sprintf("host %q in %q is neither an IP address nor a valid host name", host, addr)
	}
	return ""
}

func portOf(example string) string {
	if _, p, err := net.SplitHostPort(example); err == nil {
		return p
	}
	return "6379"
}

// ValidHostname reports whether h is a syntactically valid DNS host name.
func ValidHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
