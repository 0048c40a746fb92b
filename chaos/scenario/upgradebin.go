package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// UpgradeFrom is the commit rolling-upgrade builds as the previous build
// (N-1) when it is given no --old-bin. The one place it is recorded.
//
// 5d92cf1 (main, 2026-12-07 01:02): the first build that reports its
// version (internal/version), with today's wire formats (authenticated
// lease datagrams, 517576c; the cluster hello on Raft connections,
// d08b1b2; the snapshot file format, e1975ed) and the Redis replication
// history that follows the master's process (d54f6ff). The upgrade from it
// crosses later changes to how the log is applied (4dd779a, 0bdd7ee) and
// to the Redis actuator (5553335). An older N-1, 18d773e (2026-12-06
// 23:53), was tried first: in 1 of 3 trials its leader kept the Redis role
// vacant after the master's node stopped 1.5 s after the first promotion,
// the history bug d54f6ff fixed (a backlog-less master takes a new
// replication id at its first replica), not an upgrade fault. Move it
// forward when a release changes a format; never to a commit whose formats
// the current build no longer reads.
const UpgradeFrom = "5d92cf160bc21a0a28d46f31de41eca44d81a0ff"

// UpgradeFromVersion is the version BuildUpgradeFrom stamps into the
// previous build: what the Makefile's git describe gives at that commit.
var UpgradeFromVersion = "0.0.0-" + UpgradeFrom[:7]

// BuildUpgradeFrom builds the harbormaster binary of commit UpgradeFrom of
// the git repository that holds dir into outDir/harbormaster-<short>,
// stamped as `make build` stamps it (UpgradeFromVersion). It
// exports the commit's tree with git archive into a temporary directory
// (no worktree is registered) and removes it afterwards. The commit must
// be in the repository: a shallow clone lacks it, and the error says so.
func BuildUpgradeFrom(ctx context.Context, dir, outDir string) (string, error) {
	top, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("build the previous version: %s is not in a git checkout of harbormaster (pass the previous build with --old-bin): %w", dir, err)
	}
	repo := strings.TrimSpace(string(top))
	if out, err := exec.CommandContext(ctx, "git", "-C", repo, "cat-file", "-e", UpgradeFrom+"^{commit}").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the previous version: commit %s (chaos/scenario.UpgradeFrom) is not in %s (a shallow clone? git fetch --unshallow; or pass --old-bin): %v %s",
			UpgradeFrom, repo, err, strings.TrimSpace(string(out)))
	}
	src, err := os.MkdirTemp("", "hm-upgrade-from-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	archive := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", repo, UpgradeFrom, src)
	if out, err := archive.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the previous version: export %s: %v %s", UpgradeFrom, err, out)
	}
	bin := filepath.Join(outDir, "harbormaster-"+UpgradeFrom[:7])
	ldflags := fmt.Sprintf("-X github.com/harbormaster/harbormaster/internal/version.version=%s -X github.com/harbormaster/harbormaster/internal/version.commit=%s",
		UpgradeFromVersion, UpgradeFrom[:12])
	build := exec.CommandContext(ctx, "go", "build", "-ldflags", ldflags, "-o", bin, "./cmd/harbormaster")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the previous version %s: %v\n%s", UpgradeFrom, err, out)
	}
	return bin, nil
}

// BinVersion returns the version a harbormaster binary reports
// (`harbormaster version --json`).
func BinVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "version", "--json").Output()
	if err != nil {
		return "", fmt.Errorf("%s version --json: %w", bin, err)
	}
	var v struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(out, &v); err != nil || v.Version == "" {
		return "", errors.Join(fmt.Errorf("%s version --json printed %q", bin, out), err)
	}
	return v.Version, nil
}
