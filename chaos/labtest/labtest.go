// Package labtest has the helpers every lab test starts with.
package labtest

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Require skips the test unless it can build labs (root, ip, nft); with
// HM_REQUIRE_LAB=1 (CI) it fails instead of skipping.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("HM_REQUIRE_LAB") == "1" {
		t.Fatalf("lab needs %s (HM_REQUIRE_LAB=1)", strings.Join(missing, ", "))
	}
	t.Skipf("lab needs %s", strings.Join(missing, ", "))
}

// RequireBin skips the test unless every named program is on PATH (a
// Debian package scripts/deps.sh installs: redis-server, docker-registry);
// with HM_REQUIRE_LAB=1 (CI) it fails instead of skipping.
func RequireBin(t testing.TB, bins ...string) {
	t.Helper()
	var missing []string
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("HM_REQUIRE_LAB") == "1" {
		t.Fatalf("test needs %s on PATH (HM_REQUIRE_LAB=1); run scripts/deps.sh", strings.Join(missing, ", "))
	}
	t.Skipf("test needs %s on PATH; run scripts/deps.sh", strings.Join(missing, ", "))
}

// FreePort returns a TCP port on loopback that was free a moment ago (for a
// server the test starts: redis-server takes its port on the command line).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
