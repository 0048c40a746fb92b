package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

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
