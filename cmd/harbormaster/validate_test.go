package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/tlsid"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// validateDir writes a node config for n1 (a check "disk", tls files of
// cluster "test" in dir) with spec_file spec.yaml, and returns the
// config's path.
func validateDir(t *testing.T, spec string) (dir, cfgPath string) {
	t.Helper()
	dir = t.TempDir()
	lo := []net.IP{net.IPv4(127, 0, 0, 1)}
	if err := tlsid.WriteCluster(dir, "test", map[string][]net.IP{"n1": lo, "n2": lo}); err != nil {
		t.Fatal(err)
	}
	cfg := `node_id: n1
raft_addr: 127.0.0.1:7101
api_addr: 127.0.0.1:7201
data_dir: ` + filepath.Join(dir, "data") + `
bootstrap:
  - {id: n1, raft_addr: 127.0.0.1:7101}
spec_file: spec.yaml
checks:
  - {name: disk, type: exec, argv: ["true"]}
tls:
  ca_file: ca.pem
  cert_file: n1.pem
  key_file: n1-key.pem
`
	write(t, filepath.Join(dir, "spec.yaml"), spec)
	cfgPath = filepath.Join(dir, "n1.yaml")
	write(t, cfgPath, cfg)
	return dir, cfgPath
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func validateJSON(t *testing.T, args ...string) (validation, int) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(append([]string{"validate", "--json"}, args...))
	code := exitCode(root.Execute())
	var v validation
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("validate --json %v printed %q: %v", args, out.String(), err)
	}
	return v, code
}

const goodSpec = "roles:\n  - {name: web, type: service, marker: true, requires: [disk]}\n"

func TestValidateGood(t *testing.T) {
	_, cfg := validateDir(t, goodSpec)
	v, code := validateJSON(t, "--config", cfg)
	if code != exitOK || !v.OK || v.Problems == nil || len(v.Problems) != 0 {
		t.Fatalf("validate good config: exit %d, %+v; want 0, ok, problems []", code, v)
	}
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"validate", "--config", cfg})
	if code := exitCode(root.Execute()); code != exitOK || out.String() != "ok\n" {
		t.Fatalf("validate good config: exit %d, %q; want 0, ok", code, out.String())
	}
	// The raw JSON has the documented keys.
	root = newRoot()
	out.Reset()
	root.SetOut(&out)
	root.SetArgs([]string{"validate", "--json", "--config", cfg})
	_ = root.Execute()
	if got := strings.Join(strings.Fields(out.String()), ""); got != `{"ok":true,"problems":[]}` {
		t.Fatalf("validate --json = %s", got)
	}
}

func TestValidateFindsProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir, cfg string) []string // extra args
		code  int
		want  problem // Message is a substring
	}{
		{"config error", func(t *testing.T, dir, cfg string) []string {
			b, _ := os.ReadFile(cfg)
			write(t, cfg, string(b)+"nosuchfield: 1\n")
			return nil
		}, exitUsage, problem{Field: "", Message: "nosuchfield", Severity: sevError}},
		{"spec_file error", func(t *testing.T, dir, cfg string) []string {
			write(t, filepath.Join(dir, "spec.yaml"), "roles:\n  - {name: web, type: service, marker: true, follow: nosuchrole}\n")
			return nil
		}, exitUsage, problem{Field: "spec_file", Message: `"nosuchrole" is not a role of this spec`, Severity: sevError}},
		{"--spec error", func(t *testing.T, dir, cfg string) []string {
			p := filepath.Join(dir, "other.yaml")
			write(t, p, "roles:\n  - {name: web, type: nosuchtype}\n")
			return []string{"--spec", p}
		}, exitUsage, problem{Field: "spec", Message: `roles[0].type: unknown role type "nosuchtype"`, Severity: sevError}},
		{"--spec missing", func(t *testing.T, dir, cfg string) []string {
			return []string{"--spec", filepath.Join(dir, "missing.yaml")}
		}, exitUsage, problem{Field: "spec", Message: "fix the --spec path", Severity: sevError}},
		{"requires a check this node does not define", func(t *testing.T, dir, cfg string) []string {
			p := filepath.Join(dir, "other.yaml")
			write(t, p, "roles:\n  - {name: web, type: service, marker: true, requires: [disk, nosuchcheck]}\n")
			return []string{"--spec", p}
		}, exitOK, problem{Field: "roles[0].requires[1]", Message: `requires check "nosuchcheck", which this node's config does not define (its checks: [disk])`, Severity: sevWarning}},
		{"service without actuator", func(t *testing.T, dir, cfg string) []string {
			p := filepath.Join(dir, "other.yaml")
			write(t, p, "roles:\n  - {name: web, type: service}\n")
			return []string{"--spec", p}
		}, exitOK, problem{Field: "roles[0].name", Message: "service role web has no actuator in this node's config", Severity: sevWarning}},
		{"tls: missing CA", func(t *testing.T, dir, cfg string) []string {
			os.Remove(filepath.Join(dir, "ca.pem"))
			return nil
		}, exitUsage, problem{Field: "tls", Message: "ca_file: open " + "", Severity: sevError}},
		{"tls: another node's certificate", func(t *testing.T, dir, cfg string) []string {
			for _, ext := range []string{".pem", "-key.pem"} {
				b, _ := os.ReadFile(filepath.Join(dir, "n2"+ext))
				write(t, filepath.Join(dir, "n1"+ext), string(b))
			}
			return nil
		}, exitUsage, problem{Field: "tls", Message: "the certificate is for node:n2, this node is n1", Severity: sevError}},
		{"tls: expired certificate", func(t *testing.T, dir, cfg string) []string {
			issue(t, dir, -time.Minute)
			return nil
		}, exitUsage, problem{Field: "tls", Message: "expired", Severity: sevError}},
		{"tls: certificate expiring soon", func(t *testing.T, dir, cfg string) []string {
			issue(t, dir, 24*time.Hour)
			return nil
		}, exitOK, problem{Field: "tls.cert_file", Message: "renew it with harbormaster tls cert create --node n1", Severity: sevWarning}},
		{"key file others may read", func(t *testing.T, dir, cfg string) []string {
			os.Chmod(filepath.Join(dir, "n1-key.pem"), 0o644)
			return nil
		}, exitUsage, problem{Field: "tls.key_file", Message: "", Severity: sevError}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, cfg := validateDir(t, goodSpec)
			extra := tc.setup(t, dir, cfg)
			v, code := validateJSON(t, append([]string{"--config", cfg}, extra...)...)
			found := false
			for _, p := range v.Problems {
				if p.Field == tc.want.Field && p.Severity == tc.want.Severity && strings.Contains(p.Message, tc.want.Message) {
					found = true
				}
			}
			if code != tc.code || v.OK != (tc.code == exitOK) || !found {
				t.Fatalf("validate: exit %d, %+v; want exit %d and a problem like %+v", code, v, tc.code, tc.want)
			}
		})
	}
}

// Every problem is listed: a bad spec file and a bad TLS file together.
func TestValidateListsEveryProblem(t *testing.T) {
	dir, cfg := validateDir(t, goodSpec)
	os.Remove(filepath.Join(dir, "ca.pem"))
	p := filepath.Join(dir, "other.yaml")
	write(t, p, "roles:\n  - {name: Web, type: service}\n")
	v, code := validateJSON(t, "--config", cfg, "--spec", p)
	if code != exitUsage || v.OK || len(v.Problems) != 2 || v.Problems[0].Field != "tls" || v.Problems[1].Field != "spec" {
		t.Fatalf("validate: exit %d, %+v; want exit 2 with the tls and the spec problems", code, v)
	}
}

// Every independent problem of the config itself is listed, each with its
// field and fix, with a secret file others may read.
func TestValidateListsEveryConfigProblem(t *testing.T) {
	dir, cfg := validateDir(t, goodSpec)
	b, _ := os.ReadFile(cfg)
	doc := strings.Replace(string(b), `argv: ["true"]`, `argv: []`, 1)
	doc = strings.Replace(doc, "api_addr: 127.0.0.1:7201", "api_addr: 127.0.0.1:70000", 1)
	write(t, cfg, doc+"log_level: loud\n")
	os.Chmod(filepath.Join(dir, "n1-key.pem"), 0o644)
	v, code := validateJSON(t, "--config", cfg)
	want := []problem{
		{Field: "api_addr", Message: "not a number from 1 to 65535"},
		{Field: "checks[0].argv", Message: "is missing; give the program"},
		{Field: "log_level", Message: "use debug, info, warn or error"},
		{Field: "tls.key_file", Message: "chmod 600"},
	}
	ok := code == exitUsage && !v.OK && len(v.Problems) == len(want)
	for i := 0; ok && i < len(want); i++ {
		p := v.Problems[i]
		ok = p.Field == want[i].Field && p.Severity == sevError && strings.HasPrefix(p.Message, cfg+": ") && strings.Contains(p.Message, want[i].Message)
	}
	if !ok {
		t.Fatalf("validate: exit %d, %+v; want exit 2 and the problems %+v", code, v, want)
	}
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"validate", "--config", cfg})
	err := root.Execute()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if exitCode(err) != exitUsage || len(lines) != len(want) || !strings.Contains(err.Error(), "4 error(s)") {
		t.Fatalf("validate: exit %d (%v), printed %q; want exit 2, 4 errors, one line each", exitCode(err), err, out.String())
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "error: "+want[i].Field+": ") {
			t.Errorf("line %d: %q, want it to start with error: %s: ", i, l, want[i].Field)
		}
	}
}

// issue replaces n1's certificate with one valid for validity from now.
func issue(t *testing.T, dir string, validity time.Duration) {
	t.Helper()
	ca, err := tlsid.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Issue(tlsid.Identity{Kind: tlsid.Node, Name: "n1"}, nil, nil, validity)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tlsid.WritePair(dir, "n1", c, k, true); err != nil {
		t.Fatal(err)
	}
}

// The dry run's table: holder now and after, a stopping role marked, its
// changed fields and why nothing holds it after.
func TestPrintSpecPreview(t *testing.T) {
	var out bytes.Buffer
	printSpecPreview(&out, &hmv1.ApplySpecResponse{Node: "n1", Version: 3, DryRun: true, Roles: []*hmv1.SpecRoleChange{
		{Role: "api", Change: "added", HolderAfter: "n2"},
		{Role: "web", Change: "changed", Fields: []string{`requires: ["disk"] -> ["nosuchcheck"]`}, HolderNow: "n1", Stops: true, Why: "no node qualifies"},
	}, Problems: []string{"roles[web].requires[0]: typo"}})
	want := `dry run on n1 (spec version 3); nothing applied
ROLE  CHANGE   HOLDER NOW  HOLDER AFTER
api   added    -           n2
web   changed  n1          - (stops)
  web.requires: ["disk"] -> ["nosuchcheck"]
  web: no holder after: no node qualifies
refused without --force: roles[web].requires[0]: typo
`
	if out.String() != want {
		t.Fatalf("printSpecPreview:\n%s\nwant:\n%s", out.String(), want)
	}
}
