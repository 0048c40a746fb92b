package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/internal/version"
)

func TestVersion(t *testing.T) {
	run := func(args ...string) (string, int) {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(args)
		code := exitCode(root.Execute())
		return out.String(), code
	}
	want := version.Get().String()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, code := run(args...)
		if code != 0 || strings.TrimSpace(out) != want || !strings.Contains(out, runtime.Version()) {
			t.Errorf("%v: exit %d, %q; want %q", args, code, out, want)
		}
	}
	out, code := run("version", "--json")
	var in version.Info
	if err := json.Unmarshal([]byte(out), &in); err != nil || code != 0 || in.Version == "" || in.Commit == "" || in.GoVersion != runtime.Version() {
		t.Fatalf("version --json: exit %d, %q (%v)", code, out, err)
	}
}

// TestEveryCommandHasAnExample: every command a user runs shows an example
// in its help.
func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && c.Example == "" && c.Name() != "help" && c.Name() != "completion" && !c.Hidden {
			t.Errorf("%s: no example in its help", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRoot())
}
