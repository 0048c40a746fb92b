package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/tlsid"
)

func runImport(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"import", "keepalived"}, args...))
	err := root.Execute()
	if err != nil {
		errb.WriteString("error: " + err.Error())
	}
	return out.String(), errb.String(), exitCode(err)
}

// TestImportKeepalivedCommand: files written to --out and never
// overwritten without --force; findings on stderr with exit 0; input that
// cannot be translated exits 2 naming the flag to give.
func TestImportKeepalivedCommand(t *testing.T) {
	const samples = "../../testdata/keepalived/"
	clean, _ := filepath.Glob(samples + "harbor-registry/*.conf")
	dir := filepath.Join(t.TempDir(), "out")
	_, stderr, code := runImport(t, append(clean, "--out", dir)...)
	if code != 0 || stderr != "" {
		t.Fatalf("clean sample: exit %d, stderr %q", code, stderr)
	}
	for _, f := range []string{"n1.yaml", "n2.yaml", "n3.yaml", "spec.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	if _, stderr, code = runImport(t, append(clean, "--out", dir)...); code != exitUsage || !strings.Contains(stderr, "--force") {
		t.Errorf("second import into %s: exit %d, %q; want 2 naming --force", dir, code, stderr)
	}
	if _, _, code = runImport(t, append(clean, "--out", dir, "--force")...); code != 0 {
		t.Errorf("--force: exit %d", code)
	}

	faulty, _ := filepath.Glob(samples + "shell-faults/*.conf")
	stdout, stderr, code := runImport(t, faulty...)
	if code != 0 || !strings.Contains(stderr, "a.conf:5: warning: vrrp_script chk_pull") || !strings.Contains(stdout, "# ==> spec.yaml <==") {
		t.Errorf("shell-faults to stdout: exit %d, stderr %q, stdout %q", code, stderr, stdout)
	}

	noAddr, _ := filepath.Glob(samples + "network-faults/*.conf")
	if _, stderr, code = runImport(t, noAddr...); code != exitUsage || !strings.Contains(stderr, "--addr lb-y=IP") {
		t.Errorf("a node without unicast_src_ip nor --addr: exit %d, %q; want 2 naming --addr lb-y=IP", code, stderr)
	}
	if _, stderr, code = runImport(t, append(noAddr, "--addr", "lb-y")...); code != exitUsage || !strings.Contains(stderr, "ID=IP") {
		t.Errorf("--addr without =IP: exit %d, %q", code, stderr)
	}
}

// TestImportedConfigsPassValidate: with the TLS files they name in place,
// the imported node configs (witness included) pass harbormaster validate
// without a problem.
func TestImportedConfigsPassValidate(t *testing.T) {
	const samples = "../../testdata/keepalived/"
	registry, _ := filepath.Glob(samples + "harbor-registry/*.conf")
	standby, _ := filepath.Glob(samples + "harbor-active-standby/*.conf")
	for name, args := range map[string][]string{
		"harbor-registry": registry,
		"harbor-active-standby": append(standby, "--node-ids", "lb1,lb2", "--addr", "lb1=192.168.40.11", "--addr", "lb2=192.168.40.12",
			"--witness", "w3=192.168.40.13", "--iface-cidr", "ens160=192.168.40.0/24"),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, stderr, code := runImport(t, append(args, "--out", dir)...); code != 0 {
				t.Fatalf("import: exit %d: %s", code, stderr)
			}
			cfgs, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
			nodes := map[string][]net.IP{}
			for _, c := range cfgs {
				if id := strings.TrimSuffix(filepath.Base(c), ".yaml"); id != "spec" {
					nodes[id] = nil
				}
			}
			if err := tlsid.WriteCluster(dir, "test", nodes); err != nil {
				t.Fatal(err)
			}
			for id := range nodes {
				p := filepath.Join(dir, id+".yaml")
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				// The TLS files beside the config instead of /etc/harbormaster/tls.
				write(t, p, strings.ReplaceAll(string(b), "/etc/harbormaster/tls/", ""))
				v := validateFiles(p, "", time.Now())
				if !v.OK || len(v.Problems) != 0 {
					t.Errorf("validate %s: %+v", id, v)
				}
			}
		})
	}
}
