package kaimport

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Severity of a finding: a warning is a fault in the keepalived config (it
// did not do what it says); a note is a part with no equivalent, and what
// to do instead.
type Severity string

// Severities.
const (
	Warning Severity = "warning"
	Note    Severity = "note"
)

// Finding is one lint result, at a line of an input file.
type Finding struct {
	File     string
	Line     int
	Severity Severity
	Msg      string
}

// String is "FILE:LINE: warning: MESSAGE", as compilers print it.
func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", f.File, f.Line, f.Severity, f.Msg)
}

type linter struct {
	out  []Finding
	seen map[string]bool
}

// once reports whether key is new: a finding about a thing several files
// share (a script file, a VIP) is reported once.
func (l *linter) once(key string) bool {
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if l.seen[key] {
		return false
	}
	l.seen[key] = true
	return true
}

// sorted returns the findings by file, then line (stable).
func (l *linter) sorted() []Finding {
	out := slices.Clone(l.out)
	slices.SortStableFunc(out, func(a, b Finding) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return a.Line - b.Line
	})
	return out
}

func (l *linter) add(sev Severity, file string, line int, format string, args ...any) {
	l.out = append(l.out, Finding{File: file, Line: line, Severity: sev, Msg: fmt.Sprintf(format, args...)})
}

func (l *linter) warn(n *node, format string, args ...any) {
	l.add(Warning, n.File, n.Line, format, args...)
}

func (l *linter) note(n *node, format string, args ...any) {
	l.add(Note, n.File, n.Line, format, args...)
}

// splitWords splits a script value as keepalived 2.x does before execve:
// at unquoted white space, with single quotes grouping. ok is false when a
// single quote is not closed.
func splitWords(cmd string) (words []string, ok bool) {
	var cur strings.Builder
	in, have := false, false
	for _, r := range cmd {
		switch {
		case r == '\'':
			in, have = !in, true
		case !in && (r == ' ' || r == '\t'):
			if have {
				words = append(words, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		words = append(words, cur.String())
	}
	return words, !in
}

// shellSyntax are the shell operators that mean nothing to execve: they
// reach the program as arguments.
var shellSyntax = []string{"&&", "||", "|", ";", ">", "<", "$(", "`", "$"}

// runsShell says whether argv runs a shell on its -c argument.
func runsShell(words []string) bool {
	if len(words) < 3 {
		return false
	}
	switch filepath.Base(words[0]) {
	case "sh", "bash", "dash", "ash", "zsh", "ksh":
		return words[1] == "-c"
	}
	return false
}

func shellOperators(words []string) []string {
	var found []string
	for _, w := range words {
		for _, op := range shellSyntax {
			if strings.Contains(w, op) && !slices.Contains(found, op) {
				found = append(found, op)
			}
		}
	}
	return found
}

// shellOnly are words that name no program: shell builtins and keywords,
// which execve cannot run.
var shellOnly = []string{"source", ".", "if", "then", "[[", "exit", "export", "cd", "set", "let", "function", "for", "while", "case", "declare", "local", "eval", "!"}

// lintCommand reports a script command keepalived can never run
// successfully as written: shell syntax without a shell, a builtin as the
// program, an unclosed quote, a script file (under root) that is missing,
// not executable or runs a command where it means an assignment.
func lintCommand(s *script, root string, lint *linter) {
	at := &node{File: s.At.File, Line: s.CmdLine}
	words, ok := splitWords(s.Command)
	if !ok {
		lint.warn(at, "vrrp_script %s: script %q has an unclosed single quote; keepalived runs it with a broken argument list, so the check cannot succeed; close the quote", s.Name, s.Command)
	}
	if len(words) == 0 {
		return
	}
	if runsShell(words) {
		return
	}
	if len(words) == 1 && strings.HasPrefix(words[0], "<") {
		// keepalived hands a script starting with "</" to system(), so
		// /bin/sh runs it (keepalived/core/notify.c, check_script_secure);
		// /dev/tcp and /dev/udp are bash's, not a file dash can open.
		if p := strings.TrimLeft(words[0], "< \t"); strings.HasPrefix(p, "/dev/tcp/") || strings.HasPrefix(p, "/dev/udp/") {
			lint.warn(at, "vrrp_script %s: script %q is a shell redirection, which keepalived runs with /bin/sh; %s is a bash feature, so where /bin/sh is dash (Debian, Ubuntu) the check always fails (keepalived issue #1926); in keepalived write script \"/bin/bash -c '%s'\"; the import makes it a tcp check", s.Name, s.Command, p[:len("/dev/tcp")], s.Command)
		}
		return
	}
	if ops := shellOperators(words); len(ops) > 0 {
		lint.warn(at, "vrrp_script %s: script %q uses shell syntax (%s) but keepalived 2.x runs it without a shell: %s gets %q as arguments, so the check cannot succeed as intended; in keepalived write script \"/bin/sh -c '...'\"; the import runs it with shell: true",
			s.Name, s.Command, strings.Join(ops, " "), words[0], strings.Join(words[1:], " "))
		return
	}
	if slices.Contains(shellOnly, words[0]) {
		lint.warn(at, "vrrp_script %s: script starts with %q, a shell builtin no program provides, and keepalived 2.x runs it without a shell, so the check always fails; use script \"/bin/bash -c '...'\"", s.Name, words[0])
		return
	}
	if root != "" && filepath.IsAbs(words[0]) {
		lintScriptFile(s, at, words[0], root, lint)
	}
}

// assignWithSpaces matches "name = value" at the start of a shell line: the
// shell runs a command called name with arguments "=" and value, and name
// stays unset.
var assignWithSpaces = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s+=\s*\S`)

func lintScriptFile(s *script, at *node, prog, root string, lint *linter) {
	path := filepath.Join(root, prog)
	if !lint.once("script " + path) {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		lint.warn(at, "vrrp_script %s: %s does not exist (looked for %s); the check cannot succeed; install it or fix the path", s.Name, prog, path)
		return
	}
	if fi.Mode()&0o111 == 0 {
		lint.warn(at, "vrrp_script %s: %s is not executable (mode %v); keepalived disables the script; chmod 755 it", s.Name, prog, fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	first, shell := true, false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if first {
			first = false
			shell = strings.HasPrefix(line, "#!") && (strings.Contains(line, "sh") || strings.Contains(line, "bash"))
			continue
		}
		if !shell {
			return
		}
		if m := assignWithSpaces.FindStringSubmatch(line); m != nil {
			lint.add(Warning, path, n, "%q runs a command named %s (a shell assignment has no spaces around =), so %s stays empty and the tests on it fail: the check (vrrp_script %s, %s:%d) cannot succeed; write %s=... without spaces",
				strings.TrimSpace(line), m[1], m[1], s.Name, at.File, at.Line, m[1])
		}
	}
}
