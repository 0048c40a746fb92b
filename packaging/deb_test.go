package packaging

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/chaos/labtest"
)

// The versions the test builds: A is installed, then upgraded to B.
const (
	versionA = "1.0.0~test1"
	versionB = "1.0.0~test2"
)

// buildDeb runs `make deb` (the target users and CI run) with VERSION set,
// into a temporary dist dir, and returns the package's path.
func buildDeb(t *testing.T, version string) string {
	t.Helper()
	labtest.RequireBin(t, "make", "gzip")
	dir := t.TempDir()
	dist := filepath.Join(dir, "dist")
	cmd := exec.Command("make", "--no-print-directory", "-C", "..", "deb",
		"VERSION="+version, "DIST="+dist, "DEB_BUILD="+filepath.Join(dir, "build"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make deb VERSION=%s: %v\n%s", version, err, out)
	}
	deb := filepath.Join(dist, "harbormaster_"+version+"_"+runtime.GOARCH+".deb")
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("make deb VERSION=%s did not write %s: %v\n%s", version, deb, err, out)
	}
	return deb
}

// run runs a command and returns its standard output; it fails the test
// on an error, with the command's output.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = env
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// requireRoot skips the install tests unless the test runs as root (dpkg
// --root, chown, chroot); with HM_REQUIRE_LAB=1 (CI) it fails instead.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("HM_REQUIRE_LAB") == "1" {
		t.Fatal("installing the package needs root (HM_REQUIRE_LAB=1)")
	}
	t.Skip("installing the package needs root")
}

// TestDeb builds two versions of the package with make deb, checks the
// contents of the first, installs it into a throwaway root, validates the
// installed example config, verifies the unit, then upgrades to the second
// with an edited conffile, and removes and purges it.
func TestDeb(t *testing.T) {
	labtest.RequireBin(t, "dpkg", "dpkg-deb")
	debA := buildDeb(t, versionA)
	t.Run("contents", func(t *testing.T) { checkContents(t, debA, versionA) })
	t.Run("install-upgrade-remove", func(t *testing.T) {
		requireRoot(t)
		labtest.RequireBin(t, "systemd-analyze", "useradd", "groupadd", "chroot")
		debB := buildDeb(t, versionB)
		checkInstallUpgrade(t, debA, debB)
	})
	t.Run("no-systemctl", func(t *testing.T) {
		requireRoot(t)
		labtest.RequireBin(t, "useradd", "groupadd")
		checkWithoutSystemctl(t, debA)
	})
}

// TestDebVersionIsDebianSafe: make deb turns the characters a Debian
// version may not hold (here '_' and '/') into '+' in the package's version
// and file name (make -n: nothing is built).
func TestDebVersionIsDebianSafe(t *testing.T) {
	labtest.RequireBin(t, "make")
	out, err := exec.Command("make", "-n", "--no-print-directory", "-C", "..", "deb", "VERSION=1.2.0_rc/1").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n deb: %v\n%s", err, out)
	}
	for _, want := range []string{"HM_DEB_VERSION='1.2.0+rc+1'", "harbormaster_1.2.0+rc+1_" + runtime.GOARCH + ".deb"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make -n deb VERSION=1.2.0_rc/1 lacks %q:\n%s", want, out)
		}
	}
}

// wantFiles are the package's files and their modes (dpkg-deb --contents'
// notation), all owned by root.
var wantFiles = map[string]string{
	"/usr/bin/harbormaster":                                  "-rwxr-xr-x",
	"/lib/systemd/system/harbormaster.service":               "-rw-r--r--",
	"/etc/harbormaster/harbormaster.yaml":                    "-rw-r--r--",
	"/etc/harbormaster/spec.yaml":                            "-rw-r--r--",
	"/usr/share/bash-completion/completions/harbormaster":    "-rw-r--r--",
	"/usr/share/zsh/vendor-completions/_harbormaster":        "-rw-r--r--",
	"/usr/share/fish/vendor_completions.d/harbormaster.fish": "-rw-r--r--",
	"/usr/share/man/man1/harbormaster.1.gz":                  "-rw-r--r--",
	"/usr/share/man/man1/harbormaster-agent.1.gz":            "-rw-r--r--",
	"/usr/share/man/man1/harbormaster-validate.1.gz":         "-rw-r--r--",
	"/usr/share/man/man1/harbormaster-spec-apply.1.gz":       "-rw-r--r--",
	"/usr/share/doc/harbormaster/README.md":                  "-rw-r--r--",
	"/usr/share/doc/harbormaster/CHANGELOG.md":               "-rw-r--r--",
	"/usr/share/doc/harbormaster/LICENSE":                    "-rw-r--r--",
	"/usr/share/doc/harbormaster/copyright":                  "-rw-r--r--",
}

func checkContents(t *testing.T, deb, version string) {
	// The control fields and the conffiles.
	for field, want := range map[string]string{"Package": "harbormaster", "Version": version, "Architecture": runtime.GOARCH} {
		if got := strings.TrimSpace(run(t, nil, "dpkg-deb", "--field", deb, field)); got != want {
			t.Errorf("control %s = %q, want %q", field, got, want)
		}
	}
	ctrl := t.TempDir()
	run(t, nil, "dpkg-deb", "--control", deb, ctrl)
	conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil {
		t.Fatalf("no conffiles: %v", err)
	}
	if got, want := string(conffiles), "/etc/harbormaster/harbormaster.yaml\n/etc/harbormaster/spec.yaml\n"; got != want {
		t.Errorf("conffiles = %q, want %q", got, want)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		fi, err := os.Stat(filepath.Join(ctrl, s))
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("maintainer script %s: %v, mode %v; want 0755", s, err, fi)
		}
	}

	// Every file, its mode and owner.
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, nil, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents: odd line %q", line)
		}
		path := strings.TrimPrefix(f[5], ".")
		if f[1] != "root/root" {
			t.Errorf("%s owned by %s, want root/root", path, f[1])
		}
		got[path] = f[0]
	}
	want := map[string]string{}
	for p, m := range wantFiles {
		want[p] = m
	}
	docs, _ := filepath.Glob("../docs/*.md")
	if len(docs) == 0 {
		t.Fatal("no docs/*.md found")
	}
	for _, d := range docs {
		want["/usr/share/doc/harbormaster/"+filepath.Base(d)] = "-rw-r--r--"
	}
	for p, m := range want {
		if got[p] != m {
			t.Errorf("%s: mode %q in the package, want %q", p, got[p], m)
		}
	}

	// What the files hold.
	root := t.TempDir()
	run(t, nil, "dpkg-deb", "-x", deb, root)
	checkStatic(t, filepath.Join(root, "usr/bin/harbormaster"))
	if v := run(t, nil, filepath.Join(root, "usr/bin/harbormaster"), "version"); !strings.HasPrefix(v, "harbormaster "+version+" ") {
		t.Errorf("the packaged binary says %q, want version %s", v, version)
	}
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/harbormaster.service"))
	if err != nil {
		t.Fatal(err)
	}
	deployUnit, err := os.ReadFile("../deploy/harbormaster.service")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unit, deployUnit) {
		t.Error("the packaged unit differs from deploy/harbormaster.service (its one source)")
	}
	for _, line := range []string{
		"Type=notify", "WatchdogSec=10", "ExecReload=/bin/kill -HUP $MAINPID",
		"ExecStart=/usr/bin/harbormaster agent --config /etc/harbormaster/harbormaster.yaml",
		"User=harbormaster", "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW", "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "ReadWritePaths=/var/lib/harbormaster",
	} {
		if !hasLine(string(unit), line) {
			t.Errorf("the unit lacks %q", line)
		}
	}
	man := readGzip(t, filepath.Join(root, "usr/share/man/man1/harbormaster-validate.1.gz"))
	if !strings.Contains(man, `.TH "HARBORMASTER" "1"`) || !strings.Contains(man, "harbormaster validate") {
		t.Errorf("harbormaster-validate.1.gz is not the validate man page:\n%.300s", man)
	}
	for file, line := range map[string]string{
		"usr/share/bash-completion/completions/harbormaster":    "__start_harbormaster harbormaster",
		"usr/share/zsh/vendor-completions/_harbormaster":        "#compdef harbormaster",
		"usr/share/fish/vendor_completions.d/harbormaster.fish": "complete -c harbormaster",
	} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil || !strings.Contains(string(b), line) {
			t.Errorf("%s: %v, lacks %q", file, err, line)
		}
	}
}

// checkStatic fails unless the ELF file has no program interpreter and
// needs no shared library (CGO_ENABLED=0).
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: not a static binary", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", path, libs)
	}
}

func readGzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

func hasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}
