// Package version says which build of harbormaster runs: the version the
// build stamped (`make build`: git describe), the commit and whether the
// tree had local changes (from Go's embedded VCS information when the
// build did not stamp them), and the Go version.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time with -ldflags "-X .../internal/version.version=...
// -X .../internal/version.commit=..." (the Makefile does).
var (
	version = ""
	commit  = ""
)

// Info describes the running build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Get returns the running build's Info. A build that stamped nothing is
// version "dev"; its commit comes from Go's VCS stamp when it has one.
func Get() Info {
	in := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if in.Version == "" {
		in.Version = "dev"
	}
	if len(in.Commit) > 12 {
		in.Commit = in.Commit[:12]
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	return in
}

// String is the one-line form: "harbormaster 1.2.0 (commit abc123, go1.26, linux/amd64)".
func (in Info) String() string {
	c := in.Commit
	if in.Modified {
		c += "+modified"
	}
	return fmt.Sprintf("harbormaster %s (commit %s, %s, %s)", in.Version, c, in.GoVersion, in.Platform)
}
