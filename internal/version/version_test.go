package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestGetDefaultsAndString(t *testing.T) {
	in := Get()
	if in.Version != "dev" || in.GoVersion != runtime.Version() || in.Commit == "" {
		t.Fatalf("Get() without stamps = %+v; want version dev, this Go, a commit or unknown", in)
	}
	version, commit = "1.2.3", "0123456789abcdef0123"
	defer func() { version, commit = "", "" }()
	in = Get()
	if in.Version != "1.2.3" || in.Commit != "0123456789ab" {
		t.Fatalf("stamped: %+v", in)
	}
	in.Modified = false
	if s := in.String(); !strings.HasPrefix(s, "harbormaster 1.2.3 (commit 0123456789ab, go") || !strings.Contains(s, runtime.GOOS+"/") {
		t.Fatalf("String() = %q", s)
	}
}
