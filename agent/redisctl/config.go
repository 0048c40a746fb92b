package redisctl

import (
	"net"
	"path/filepath"
	"strings"

	"github.com/harbormaster/harbormaster/internal/conf"
	"github.com/harbormaster/harbormaster/internal/hostport"
	"github.com/harbormaster/harbormaster/internal/secretfile"
)

// Config is a node's Redis endpoint, the redis section of its node config
// file.
type Config struct {
	// Address is the host:port the agent connects to, often 127.0.0.1:6379.
	Address string `yaml:"address"`
	// Announce is the host:port other nodes' Redis and clients use to reach
	// this Redis (the master address replicas are given in REPLICAOF, and
	// the address Remote dials). Default: Address. It must not be a
	// loopback address when the cluster has several nodes; Validate cannot
	// know the cluster, so the agent's config checks that (see
	// AnnounceAddr and IsLoopback).
	Announce string `yaml:"announce,omitempty"`
	// PasswordFile holds the AUTH credentials on its first line: the
	// password alone, or "username password" for an ACL user (so a
	// password with a space needs the username: "default my pass"). It is
	// read at each connect, so it may be rotated. A secret file: mode 0600
	// or 0400, owned by the agent's user or root (internal/secretfile).
	PasswordFile string `yaml:"password_file,omitempty"`
	// CAFile turns on TLS to Redis (as with rediss://): the server's
	// certificate must chain to a CA in this PEM file and name the host of
	// the address. Read at each connect. No client certificate is sent, so
	// the server needs tls-auth-clients no (or optional).
	CAFile string `yaml:"ca_file,omitempty"`
}

func fieldErr(field, format string, args ...any) error { return conf.Errorf(field, format, args...) }

// Validate checks c and returns the first problem as a *conf.FieldError. field
// is the config's path in the file, e.g. "redis"; every error names a field
// under it (redis.address, redis.announce, redis.password_file,
// redis.ca_file). It does no I/O: files are only required to be absolute
// paths (they are read at connect time, so they may be rotated).
func (c *Config) Validate(field string) error {
	sub := func(name string) string {
		if field == "" {
			return name
		}
		return field + "." + name
	}
	if err := checkAddr(sub("address"), c.Address); err != nil {
		return err
	}
	if c.Announce != "" {
		if err := checkAddr(sub("announce"), c.Announce); err != nil {
			return err
		}
	}
	for _, f := range []struct{ name, path string }{{"password_file", c.PasswordFile}, {"ca_file", c.CAFile}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return fieldErr(sub(f.name), "%q is a relative path, which would depend on the agent's working directory; give an absolute path", f.path)
		}
	}
	return nil
}

// AnnounceAddr returns the address other nodes use for this Redis:
// Announce, or Address when Announce is empty.
func (c *Config) AnnounceAddr() string {
	if c.Announce != "" {
		return c.Announce
	}
	return c.Address
}

// IsLoopback reports whether addr (host:port) names a loopback address:
// 127.0.0.0/8, ::1 or "localhost". A cluster of several nodes must not
// announce such an address: the other nodes' Redis would replicate from
// themselves.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkAddr(field, addr string) error {
	if msg := hostport.Check(addr, "127.0.0.1:6379"); msg != "" {
		return fieldErr(field, "%s", msg)
	}
	return nil
}

// readAuth returns the AUTH arguments from the first line of path: the
// password alone, or a username and a password separated by the first
// space. The file must be a secret file (internal/secretfile: mode 0600 or
// 0400, owned by the agent's user or root).
func readAuth(path string) ([]string, error) {
	line, err := secretfile.ReadLine("password_file", path)
	if err != nil {
		return nil, err
	}
	if user, pass, ok := strings.Cut(line, " "); ok && user != "" {
		return []string{"AUTH", user, pass}, nil
	}
	return []string{"AUTH", line}, nil
}
