package kaimport

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/agent/config"
)

var update = flag.Bool("update", false, "rewrite testdata/keepalived/*.golden from the importer's output")

// samples are the directories of testdata/keepalived: one cluster each,
// one keepalived.conf per node, and an args file with the flags.
var samples = []string{"harbor-active-standby", "harbor-registry", "network-faults", "shell-faults"}

// readArgs reads a sample's args file ("--flag value" per line) as the
// command's flags.
func readArgs(t *testing.T, path string) Flags {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f Flags
	w := strings.Fields(string(b))
	for i := 0; i+1 < len(w); i += 2 {
		switch w[i] {
		case "--node-ids":
			f.NodeIDs = w[i+1]
		case "--addr":
			f.Addrs = append(f.Addrs, w[i+1])
		case "--iface-cidr":
			f.IfaceCIDRs = append(f.IfaceCIDRs, w[i+1])
		case "--witness":
			f.Witness = w[i+1]
		case "--scripts-root":
			f.ScriptsRoot = w[i+1]
		default:
			t.Fatalf("%s: unknown flag %s", path, w[i])
		}
	}
	return f
}

// importSample runs the importer on a sample, from testdata/keepalived so
// the findings and comments name the files as the golden files do.
func importSample(t *testing.T, name string) *Result {
	t.Helper()
	t.Chdir("../../testdata/keepalived")
	confs, err := filepath.Glob(filepath.Join(name, "*.conf"))
	if err != nil || len(confs) == 0 {
		t.Fatalf("no .conf in %s: %v", name, err)
	}
	slices.Sort(confs)
	opt, err := readArgs(t, filepath.Join(name, "args")).Options()
	if err != nil {
		t.Fatal(err)
	}
	res, err := Import(confs, opt)
	if err != nil {
		t.Fatalf("Import(%s): %v", name, err)
	}
	return res
}

// TestImport compares each sample's findings and files with its golden
// file; go test ./internal/kaimport -run TestImport -update rewrites them.
func TestImport(t *testing.T) {
	for _, name := range samples {
		t.Run(name, func(t *testing.T) {
			res := importSample(t, name)
			got := res.Render()
			golden := name + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/kaimport -run TestImport -update)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (go test ./internal/kaimport -run TestImport -update rewrites it):\n%s", golden, got)
			}
		})
	}
}

// TestImportedFilesValidate loads every generated node config (and the
// spec through its spec_file) as the agent and harbormaster validate do.
func TestImportedFilesValidate(t *testing.T) {
	for _, name := range samples {
		t.Run(name, func(t *testing.T) {
			res := importSample(t, name)
			dir := t.TempDir()
			for _, f := range res.Files {
				if err := os.WriteFile(filepath.Join(dir, f.Name), []byte(f.Content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			nodes := 0
			for _, f := range res.Files {
				if f.Name == "spec.yaml" {
					continue
				}
				nodes++
				cfg, errs := config.Check(filepath.Join(dir, f.Name))
				for _, e := range errs {
					t.Errorf("%s: %v\n%s", f.Name, e, f.Content)
				}
				if cfg != nil && (cfg.Spec == nil || len(cfg.Spec.Roles) == 0) {
					t.Errorf("%s: no roles in its spec", f.Name)
				}
			}
			if nodes%2 != 1 {
				t.Errorf("%d node configs, want an odd number", nodes)
			}
		})
	}
}

// finding is what a lint test looks for: a warning at a file (suffix) and
// line whose message holds a text.
type finding struct {
	file string
	line int
	text string
}

func hasWarning(res *Result, w finding) bool {
	return slices.ContainsFunc(res.Findings, func(f Finding) bool {
		return f.Severity == Warning && strings.HasSuffix(f.File, w.file) && f.Line == w.line && strings.Contains(f.Msg, w.text)
	})
}

// TestLintFires checks each lint on the sample written for it.
func TestLintFires(t *testing.T) {
	cases := []struct {
		sample string
		want   finding
	}{
		{"harbor-active-standby", finding{"lb1.conf", 10, `unknown keyword "fail" in vrrp_script check_harbor (did you mean "fall"?)`}},
		{"harbor-active-standby", finding{"lb1.conf", 13, `unknown keyword "vrrp_sync_groups" (did you mean "vrrp_sync_group"?)`}},
		{"harbor-active-standby", finding{"lb1.conf", 7, "vrrp_script check_harbor is tracked by no vrrp_instance"}},
		{"harbor-active-standby", finding{"check_harbor.sh", 5, "runs a command named code"}},
		{"harbor-active-standby", finding{"lb2.conf", 25, "priority 10 equals node lb1's"}},
		{"shell-faults", finding{"a.conf", 5, "uses shell syntax (&&)"}},
		{"shell-faults", finding{"a.conf", 12, "uses shell syntax (|)"}},
		{"shell-faults", finding{"a.conf", 16, "is a shell redirection"}},
		{"shell-faults", finding{"a.conf", 20, `starts with "[[", a shell builtin`}},
		{"shell-faults", finding{"a.conf", 26, `unknown keyword "rsie" in vrrp_script chk_nginx (did you mean "rise"?)`}},
		{"shell-faults", finding{"a.conf", 52, `unknown keyword "smtp_alret" in vrrp_instance VI_FRONT (did you mean "smtp_alert"?)`}},
		{"network-faults", finding{"x.conf", 18, "VIP 10.20.0.10/24 is outside the subnet of node lb-x's address 192.168.50.1"}},
		{"network-faults", finding{"x.conf", 19, "VIP 192.168.50.11 has no prefix length"}},
		{"network-faults", finding{"x.conf", 24, "virtual_router_id 51 is also vrrp_instance VI_WEB's"}},
		{"network-faults", finding{"y.conf", 23, "vrrp_instance VI_DB has virtual_router_id 52 here and 51 in"}},
		{"network-faults", finding{"y.conf", 10, "priority 100 equals node lb-x's"}},
		{"network-faults", finding{"z.conf", 12, "unicast_peer 192.168.50.99 is no given node's address"}},
		{"network-faults", finding{"x.conf", 28, "VIP 192.168.50.20/24 is on eth1 but this node's VIPs go on one interface, eth0"}},
	}
	for _, c := range cases {
		t.Run(c.sample+"/"+c.want.text, func(t *testing.T) {
			res := importSample(t, c.sample)
			if !hasWarning(res, c.want) {
				t.Errorf("no warning %s:%d %q; findings:\n%s", c.want.file, c.want.line, c.want.text, res.Render())
			}
		})
	}
}

// TestCleanSampleHasNoFinding: the clean sample draws no warning and no
// note, so every lint above is quiet on a config without its fault.
func TestCleanSampleHasNoFinding(t *testing.T) {
	res := importSample(t, "harbor-registry")
	if len(res.Findings) != 0 {
		t.Errorf("findings on the clean sample:\n%s", res.Render())
	}
}
