package packaging

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// throwawayRoot is a directory dpkg --root installs into: an empty dpkg
// database, the passwd and group files of a fresh system, and, when
// withSystemd, what systemd-analyze verify needs in a root (systemd's
// targets and /bin/kill, copied from this machine) and /run/systemd/system,
// which tells the maintainer scripts that systemd runs there.
func throwawayRoot(t *testing.T, withSystemd bool) string {
	t.Helper()
	r := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		mustMkdir(t, filepath.Join(r, d))
	}
	writeFile(t, filepath.Join(r, "var/lib/dpkg/status"), "", 0o644)
	writeFile(t, filepath.Join(r, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n", 0o644)
	writeFile(t, filepath.Join(r, "etc/group"), "root:x:0:\n", 0o644)
	writeFile(t, filepath.Join(r, "etc/shadow"), "root:*:20000:0:99999:7:::\n", 0o640)
	writeFile(t, filepath.Join(r, "etc/gshadow"), "root:*::\n", 0o640)
	if !withSystemd {
		return r
	}
	mustMkdir(t, filepath.Join(r, "run/systemd/system"))
	mustMkdir(t, filepath.Join(r, "lib/systemd/system"))
	targets, _ := filepath.Glob("/lib/systemd/system/*.target")
	if len(targets) == 0 {
		t.Fatal("no /lib/systemd/system/*.target on this machine (Debian package systemd; scripts/deps.sh)")
	}
	for _, f := range targets {
		copyFile(t, f, filepath.Join(r, "lib/systemd/system", filepath.Base(f)), 0o644)
	}
	kill, err := exec.LookPath("kill")
	if err != nil {
		t.Fatalf("no kill program (Debian package procps): %v", err)
	}
	mustMkdir(t, filepath.Join(r, "bin"))
	copyFile(t, kill, filepath.Join(r, "bin/kill"), 0o755)
	return r
}

// fakeSystemctl puts a systemctl that logs its arguments, one call a line,
// first on PATH, and returns the environment and the log's path.
func fakeSystemctl(t *testing.T) ([]string, string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "systemctl.log")
	writeFile(t, filepath.Join(dir, "systemctl"), fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\n", log), 0o755)
	return append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH")), log
}

// systemctlCalls returns the fake systemctl's logged calls and empties the log.
func systemctlCalls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	_ = os.Remove(log)
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// dpkg runs dpkg on the throwaway root. Maintainer scripts run chrootless
// (the bare root has no shell to chroot into) with DPKG_ROOT set to the
// root, which the scripts honour; the root has no passwd package, hence
// --force-depends.
func dpkg(t *testing.T, env []string, root string, args ...string) string {
	t.Helper()
	out := run(t, env, "dpkg", append([]string{"--root", root, "--force-script-chrootless", "--force-depends"}, args...)...)
	t.Logf("dpkg %s:\n%s", strings.Join(args, " "), out)
	return out
}

func checkInstallUpgrade(t *testing.T, debA, debB string) {
	root := throwawayRoot(t, true)
	env, log := fakeSystemctl(t)

	// Install A.
	dpkg(t, env, root, "--install", debA)
	if calls := systemctlCalls(t, log); strings.Join(calls, ";") != "daemon-reload" {
		t.Errorf("install: systemctl calls %q, want only daemon-reload (never start)", calls)
	}
	passwd := readFile(t, filepath.Join(root, "etc/passwd"))
	user := lineWithPrefix(passwd, "harbormaster:")
	f := strings.Split(user, ":")
	if len(f) != 7 || f[5] != "/var/lib/harbormaster" || f[6] != "/usr/sbin/nologin" {
		t.Fatalf("install: user harbormaster in passwd = %q, want home /var/lib/harbormaster, shell /usr/sbin/nologin", user)
	}
	group := lineWithPrefix(readFile(t, filepath.Join(root, "etc/group")), "harbormaster:")
	if group == "" || strings.Split(group, ":")[2] != f[3] {
		t.Fatalf("install: group harbormaster %q is not the user's group %s", group, f[3])
	}
	dataDir := filepath.Join(root, "var/lib/harbormaster")
	if ls := run(t, nil, "stat", "-c", "%a %u %g", dataDir); strings.TrimSpace(ls) != "700 "+f[2]+" "+f[3] {
		t.Errorf("install: %s is %q (mode uid gid), want 700 %s %s", dataDir, strings.TrimSpace(ls), f[2], f[3])
	}

	// The installed binary validates the installed example config and spec
	// (with the certificates made by the commands the config's comments give).
	chroot := func(args ...string) string {
		return run(t, nil, "chroot", append([]string{root, "/usr/bin/harbormaster"}, args...)...)
	}
	chroot("tls", "ca", "create", "--cluster", "harbor-prod", "--dir", "/etc/harbormaster/tls")
	chroot("tls", "cert", "create", "--node", "n1", "--ip", "10.0.10.11", "--ca-file", "/etc/harbormaster/tls/ca.pem", "--dir", "/etc/harbormaster/tls")
	out := chroot("validate", "--config", "/etc/harbormaster/harbormaster.yaml", "--spec", "/etc/harbormaster/spec.yaml")
	t.Logf("harbormaster validate: %s", out)
	if strings.TrimSpace(out) != "ok" {
		t.Errorf("validate of the installed example: %q, want ok", out)
	}

	// The installed unit, as systemd would load it in that root.
	cmd := exec.Command("systemd-analyze", "verify", "--root="+root, "/lib/systemd/system/harbormaster.service")
	verify, err := cmd.CombinedOutput()
	t.Logf("systemd-analyze verify: %v %s", err, verify)
	if err != nil || len(verify) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, verify)
	}

	// Upgrade to B with an edited conffile and data in the data dir.
	conf := filepath.Join(root, "etc/harbormaster/harbormaster.yaml")
	edited := readFile(t, conf) + "# edited by the operator\n"
	writeFile(t, conf, edited, 0o644)
	writeFile(t, filepath.Join(dataDir, "raft.db"), "the node's Raft log", 0o600)
	dpkg(t, env, root, "--install", debB)
	if calls := systemctlCalls(t, log); strings.Join(calls, ";") != "daemon-reload" {
		t.Errorf("upgrade: systemctl calls %q, want only daemon-reload (no start, restart or stop)", calls)
	}
	if readFile(t, conf) != edited {
		t.Error("upgrade: the operator's edit of harbormaster.yaml was overwritten")
	}
	if v := chroot("version"); !strings.HasPrefix(v, "harbormaster "+versionB+" ") {
		t.Errorf("upgrade: the installed binary says %q, want %s", v, versionB)
	}
	if n := strings.Count("\n"+readFile(t, filepath.Join(root, "etc/passwd")), "\nharbormaster:"); n != 1 {
		t.Errorf("upgrade: %d harbormaster users in passwd, want 1", n)
	}

	// Remove: the operator's decision, so the agent is stopped. Purge keeps
	// the data dir (the Raft log) and the user.
	dpkg(t, env, root, "--remove", "harbormaster")
	if calls := systemctlCalls(t, log); strings.Join(calls, ";") != "stop harbormaster.service;daemon-reload" {
		t.Errorf("remove: systemctl calls %q, want stop harbormaster.service then daemon-reload", calls)
	}
	dpkg(t, env, root, "--purge", "harbormaster")
	if _, err := os.Stat(filepath.Join(dataDir, "raft.db")); err != nil {
		t.Errorf("purge deleted the data dir's raft.db: %v", err)
	}
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Errorf("purge left the conffile %s: %v", conf, err)
	}
	if lineWithPrefix(readFile(t, filepath.Join(root, "etc/passwd")), "harbormaster:") == "" {
		t.Error("purge removed the harbormaster user, the data dir's owner")
	}
}

// checkWithoutSystemctl installs, removes and purges the package with no
// systemctl on PATH (a root without systemd, a container): the scripts must
// not fail.
func checkWithoutSystemctl(t *testing.T, deb string) {
	root := throwawayRoot(t, true)
	env := append(os.Environ(), "PATH="+pathWithout(t, "systemctl"))
	for _, args := range [][]string{{"--install", deb}, {"--remove", "harbormaster"}, {"--purge", "harbormaster"}} {
		cmd := exec.Command("dpkg", append([]string{"--root", root, "--force-script-chrootless", "--force-depends"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "systemctl") {
			t.Errorf("dpkg %s without systemctl: %v, output mentions systemctl or failed:\n%s", args[0], err, out)
		}
		if args[0] == "--install" && lineWithPrefix(readFile(t, filepath.Join(root, "etc/passwd")), "harbormaster:") == "" {
			t.Error("install without systemctl: no harbormaster user")
		}
	}
}

// pathWithout returns a PATH of one directory holding a symlink to every
// program on this PATH except the named one.
func pathWithout(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range filepath.SplitList(os.Getenv("PATH")) {
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if e.Name() == name {
				continue
			}
			// The first directory on PATH wins, as in a lookup.
			_ = os.Symlink(filepath.Join(p, e.Name()), filepath.Join(dir, e.Name()))
		}
	}
	if _, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
		t.Fatalf("%s still in %s", name, dir)
	}
	return dir
}

func lineWithPrefix(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
