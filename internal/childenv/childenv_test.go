package childenv

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/internal/conf"
)

func TestValidate(t *testing.T) {
	if err := Validate("env", []string{"HTTPS_PROXY=http://p:3128", "LANG", "_x1=", "TZ=Europe/Paris", "PATH=/opt/bin:/usr/bin"}); err != nil {
		t.Errorf("valid list: %v", err)
	}
	tests := []struct {
		entries []string
		field   string
		msg     string
	}{
		{[]string{"=v"}, "env[0]", "has no variable name"},
		{[]string{""}, "env[0]", "has no variable name"},
		{[]string{"LANG", "1X=2"}, "env[1]", `"1X" is not a variable name`},
		{[]string{"A-B=1"}, "env[0]", `"A-B" is not a variable name`},
		{[]string{"MY VAR"}, "env[0]", `"MY VAR" is not a variable name`},
		{[]string{"HARBORMASTER_EPOCH=7"}, "env[0]", "HARBORMASTER_EPOCH is set by the agent itself"},
		{[]string{"HARBORMASTER_X"}, "env[0]", "reserved"},
		{[]string{"A=x\x00y"}, "env[0]", "NUL byte"},
		{[]string{"A=1", "B", "A"}, "env[2]", "A is also set by env[0]"},
	}
	for _, tc := range tests {
		err := Validate("env", tc.entries)
		var fe *conf.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg) {
			t.Errorf("Validate(%q): got %v, want %s: ...%s...", tc.entries, err, tc.field, tc.msg)
		}
	}
}

func TestBuild(t *testing.T) {
	agent := map[string]string{"LANG": "de_DE.UTF-8", "SECRET_TOKEN": "hunter2", "PATH": "/home/evil/bin:/usr/bin", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := agent[k]; return v, ok }
	tests := []struct {
		name    string
		entries []string
		fixed   []string
		want    []string
	}{
		{"nothing listed: PATH only", nil, nil, []string{"PATH=" + DefaultPath}},
		{"fixed after", nil, []string{"HARBORMASTER_ROLE=notary", "HARBORMASTER_EPOCH=3"},
			[]string{"PATH=" + DefaultPath, "HARBORMASTER_ROLE=notary", "HARBORMASTER_EPOCH=3"}},
		{"set and pass through", []string{"TZ=UTC", "LANG", "NOT_IN_AGENT", "EMPTY"}, nil,
			[]string{"PATH=" + DefaultPath, "TZ=UTC", "LANG=de_DE.UTF-8", "EMPTY="}},
		{"PATH replaced in place", []string{"A=1", "PATH=/opt/x/bin"}, nil, []string{"PATH=/opt/x/bin", "A=1"}},
		{"PATH passed through", []string{"PATH"}, nil, []string{"PATH=/home/evil/bin:/usr/bin"}},
		{"value with =", []string{"OPTS=a=b"}, nil, []string{"PATH=" + DefaultPath, "OPTS=a=b"}},
	}
	for _, tc := range tests {
		got := Build(tc.entries, lookup, tc.fixed...)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		for _, kv := range got {
			if strings.Contains(kv, "hunter2") {
				t.Errorf("%s: %q leaks the agent's SECRET_TOKEN", tc.name, kv)
			}
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "hm-probe")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	noexec := filepath.Join(dir, "hm-noexec")
	if err := os.WriteFile(noexec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=relative:" + t.TempDir() + ":" + dir}
	if got, err := LookPath("hm-probe", env); err != nil || got != prog {
		t.Errorf("LookPath(hm-probe): got %q, %v; want %q", got, err, prog)
	}
	if got, err := LookPath("/x/y", env); err != nil || got != "/x/y" {
		t.Errorf("LookPath(/x/y): got %q, %v; want it as is", got, err)
	}
	for _, name := range []string{"hm-noexec", "hm-missing"} {
		_, err := LookPath(name, env)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), dir) {
			t.Errorf("LookPath(%s): got %v, want not found naming the PATH", name, err)
		}
	}
	// The agent's PATH is not searched: sh is in it, not in this one.
	if _, err := LookPath("sh", []string{"PATH=" + dir}); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookPath(sh) with PATH=%s: got %v, want not found", dir, err)
	}
	if got, err := LookPath("sh", Build(nil, os.LookupEnv)); err != nil || !strings.HasSuffix(got, "/sh") {
		t.Errorf("LookPath(sh) in DefaultPath: got %q, %v", got, err)
	}
}
