// Package childenv builds the environment of the programs the agent runs on
// its node (service hooks, exec checks): only what the config says, never
// the agent's own environment wholesale. The agent's environment may hold
// secrets (credentials of the service manager, a token a wrapper exported),
// and a hook or check has no need to see them.
//
// A program gets:
//   - PATH=DefaultPath: a fixed search path, the one systemd gives services,
//     rather than whatever PATH the agent was started with;
//   - the entries of its config's env list, each either NAME=value (set
//     that value) or NAME (pass the agent's own value through, left out when
//     the agent has none); an entry for PATH replaces the default;
//   - the variables the agent sets for that kind of program (the hooks'
//     HARBORMASTER_ROLE, HARBORMASTER_NODE, HARBORMASTER_EPOCH), which the
//     config cannot name.
//
// Nothing else: no HOME, LANG, TZ or USER unless listed. Without LANG a
// program runs in the C locale, whose messages and number formats do not
// change with the host's settings; without TZ, libc uses /etc/localtime.
package childenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// DefaultPath is the PATH a program gets unless its env list names PATH:
// systemd's default for services.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ReservedPrefix starts the names the agent sets itself; an env list may not
// name them.
const ReservedPrefix = "HARBORMASTER_"

// Validate checks an env list and returns the first problem as a
// *conf.FieldError naming field[i]: every entry is NAME or NAME=value, NAME
// a letter or '_' followed by letters, digits and '_', not starting with
// HARBORMASTER_, each NAME at most once, no NUL byte.
func Validate(field string, entries []string) error {
	seen := make(map[string]int, len(entries))
	for i, e := range entries {
		f := fmt.Sprintf("%s[%d]", field, i)
		name, _, _ := strings.Cut(e, "=")
		switch {
		case name == "":
			return conf.Errorf(f, "%q has no variable name; write NAME=value to set a value, or NAME to pass the agent's own value through", e)
		case !validName(name):
			return conf.Errorf(f, "%q is not a variable name; use letters, digits and '_', not starting with a digit, e.g. HTTPS_PROXY or HTTPS_PROXY=http://proxy:3128", name)
		case strings.HasPrefix(name, ReservedPrefix):
			return conf.Errorf(f, "%s is set by the agent itself (names starting with %s are reserved); remove it", name, ReservedPrefix)
		case strings.ContainsRune(e, 0):
			return conf.Errorf(f, "contains a NUL byte, which cannot be passed to a program; remove it")
		}
		if j, dup := seen[name]; dup {
			return conf.Errorf(f, "%s is also set by %s[%d]; list each variable once", name, field, j)
		}
		seen[name] = i
	}
	return nil
}

func validName(s string) bool {
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// Build returns the environment of a program (see the package
// documentation): PATH, then entries (valid by Validate) resolved against
// lookup (os.LookupEnv for the agent's own environment), then fixed
// (NAME=value pairs the agent sets). Each name occurs once; a later source
// replaces an earlier one's value in place.
func Build(entries []string, lookup func(string) (string, bool), fixed ...string) []string {
	out := []string{"PATH=" + DefaultPath}
	index := map[string]int{"PATH": 0}
	put := func(name, kv string) {
		if i, ok := index[name]; ok {
			out[i] = kv
			return
		}
		index[name] = len(out)
		out = append(out, kv)
	}
	for _, e := range entries {
		if name, _, ok := strings.Cut(e, "="); ok {
			put(name, e)
		} else if v, ok := lookup(e); ok {
			put(e, e+"="+v)
		}
	}
	for _, kv := range fixed {
		name, _, _ := strings.Cut(kv, "=")
		put(name, kv)
	}
	return out
}

// Get returns the value of name in env ("" when absent).
func Get(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v
		}
	}
	return ""
}

// ErrNotFound is wrapped by LookPath's error when no directory of the PATH
// holds the program.
var ErrNotFound = errors.New("not found")

// LookPath resolves a program for a child whose environment is env: a name
// with a '/' is returned as is; a bare name is searched in env's PATH (not
// the agent's), in its absolute directories only, for an executable regular
// file.
func LookPath(prog string, env []string) (string, error) {
	if strings.ContainsRune(prog, '/') {
		return prog, nil
	}
	path := Get(env, "PATH")
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue // "" and "." would depend on the working directory
		}
		p := filepath.Join(dir, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			if _, err := exec.LookPath(p); err == nil { // executable for us
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%q %w in PATH %s; give its absolute path, or set PATH in the env list", prog, ErrNotFound, path)
}
