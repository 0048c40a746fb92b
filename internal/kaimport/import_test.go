package kaimport

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestParseErrors: input that is not a keepalived.conf is refused naming
// the file and line.
func TestParseErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{"vrrp_script s {\n  script \"/bin/true\n}\n", "k.conf:2: unterminated quoted string"},
		{"vrrp_instance VI_1 {\n  state MASTER\n", "k.conf:1: this block's \"{\" is never closed"},
		{"global_defs {\n}\n}\n", "k.conf:3: \"}\" closes no block"},
		{"include /etc/keepalived/conf.d/*.conf\n", "k.conf:1: include is not followed"},
		{"vrrp_instance VI_1 {\n  priority 100\n}\n", "k.conf:1: vrrp_instance VI_1 has no virtual_router_id"},
		{"vrrp_instance VI_1 {\n  virtual_router_id 1\n  priority 300\n}\n", "k.conf:3: priority \"300\" is not a whole number from 1 to 255"},
		{"vrrp_instance VI_1 {\n  virtual_router_id 1\n  virtual_ipaddress {\n    10.0.0.300/24\n  }\n}\n", "k.conf:4: virtual_ipaddress entry \"10.0.0.300/24\" is not an address"},
		{"vrrp_script s {\n  interval 2\n}\n", "k.conf:1: vrrp_script s has no script line"},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "k.conf")
		if err := os.WriteFile(path, []byte(c.src), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Import([]string{path}, Options{})
		var pe *ParseError
		if !errors.As(err, &pe) || pe.File != path || !strings.HasPrefix(err.Error(), filepath.Dir(path)+"/"+c.want) {
			t.Errorf("%q: got %v, want a *ParseError %q", c.src, err, c.want)
		}
	}
}

// TestInputErrors: a value the translation needs and cannot find is an
// *InputError naming the flag that gives it.
func TestInputErrors(t *testing.T) {
	conf := func(name, body string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	inst := func(src string) string {
		return "vrrp_instance V {\n virtual_router_id 5\n interface eth0\n" + src + " virtual_ipaddress {\n  10.0.0.100/24\n }\n}\n"
	}
	a := conf("a.conf", inst(" unicast_src_ip 10.0.0.1\n"))
	b := conf("b.conf", inst(" unicast_src_ip 10.0.0.2\n"))
	c := conf("c.conf", inst(""))
	cases := []struct {
		paths []string
		opt   Options
		want  string
	}{
		{[]string{a, b, c}, Options{}, "give --addr c=IP"},
		{[]string{a, b}, Options{}, "--witness ID=IP"},
		{[]string{a, b, c}, Options{NodeIDs: []string{"n1", "n2"}}, "--node-ids names 2 nodes for 3 files"},
		{[]string{a, b, c}, Options{NodeIDs: []string{"n1", "n1", "n3"}, Addrs: map[string]netip.Addr{"n3": netip.MustParseAddr("10.0.0.3")}}, "both give node id n1"},
		{[]string{a, b, c}, Options{Addrs: map[string]netip.Addr{"c": netip.MustParseAddr("10.0.0.1")}}, "both have address 10.0.0.1"},
		{[]string{a, conf("e.conf", "global_defs {\n}\n")}, Options{WitnessID: "w", WitnessAddr: netip.MustParseAddr("10.0.0.9")}, "has no vrrp_instance"},
	}
	for _, k := range cases {
		_, err := Import(k.paths, k.opt)
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), k.want) {
			t.Errorf("%v %+v: got %v, want an *InputError with %q", k.paths, k.opt, err, k.want)
		}
	}
}

// TestTranslateCheck: which check each kind of script becomes.
func TestTranslateCheck(t *testing.T) {
	cases := []struct{ cmd, want string }{
		{"/usr/bin/docker pull 10.0.10.11/library/hello-world:latest", "type=registry-pull registry=https://10.0.10.11 image=library/hello-world:latest"},
		{"docker pull --quiet localhost:5000/probe", "type=registry-pull registry=http://localhost:5000 image=probe"},
		{"docker pull busybox", `type=exec argv=[docker, pull, busybox]`},
		{"curl -fsS https://10.0.10.11/api/v2.0/ping", "type=https url=https://10.0.10.11/api/v2.0/ping"},
		{"wget -q -O /dev/null http://127.0.0.1:8080/", "type=http url=http://127.0.0.1:8080/"},
		{"</dev/tcp/127.0.0.1/6379", "type=tcp address=127.0.0.1:6379"},
		{"killall -0 haproxy", `type=exec argv=[killall, "-0", haproxy]`},
		{"/bin/sh -c 'pidof nginx || exit 1'", `type=exec argv=["pidof nginx || exit 1"] shell=true`},
		{"pidof nginx || exit 1", `type=exec argv=["pidof nginx || exit 1"] shell=true`},
		{"[[ -f /run/ok ]]", `type=exec argv=[/bin/bash, "-c", "[[ -f /run/ok ]]"]`},
	}
	for _, c := range cases {
		s := &script{Name: "s", Command: c.cmd, At: &node{File: "k.conf", Line: 1}, Interval: 2 * time.Second}
		got := translateCheck(s, "s", &linter{})
		var kv []string
		for _, f := range got.Fields {
			if f[0] != "interval" {
				kv = append(kv, f[0]+"="+f[1])
			}
		}
		if strings.Join(kv, " ") != c.want {
			t.Errorf("%q: %s, want %s", c.cmd, strings.Join(kv, " "), c.want)
		}
	}
}

// TestParseLayouts: blocks on one line, a "{" alone on the next line,
// comments (# and !) outside quotes only.
func TestParseLayouts(t *testing.T) {
	src := "vrrp_script chk   # a comment\n{\n  script \"/bin/grep -q '#!x' /f\" ! another\n}\n" +
		"vrrp_instance V { virtual_router_id 7\n  virtual_ipaddress { 10.0.0.5/24 }\n  track_script { chk }\n}\n"
	nodes, err := parse("k.conf", src)
	if err != nil {
		t.Fatal(err)
	}
	lint := &linter{}
	kf, err := readModel("k.conf", nodes, lint)
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.Scripts) != 1 || kf.Scripts[0].Command != "/bin/grep -q '#!x' /f" || kf.Scripts[0].CmdLine != 3 {
		t.Errorf("scripts: %+v", kf.Scripts)
	}
	if len(kf.Instances) != 1 || kf.Instances[0].VRID != 7 || len(kf.Instances[0].VIPs) != 1 || kf.Instances[0].VIPs[0].Line != 6 ||
		len(kf.Instances[0].Tracks) != 1 || kf.Instances[0].Tracks[0].Name != "chk" {
		t.Errorf("instances: %+v", kf.Instances)
	}
	if len(lint.out) != 0 {
		t.Errorf("findings: %v", lint.out)
	}
}

// TestRedirectionScripts: keepalived runs a script starting with "</"
// through /bin/sh (system()), so an openable-file probe works anywhere,
// while a /dev/tcp probe needs bash: dash (Debian's /bin/sh) fails it.
func TestRedirectionScripts(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		warn bool
	}{
		{"</dev/tcp/127.0.0.1/6379", true},
		{"</dev/udp/127.0.0.1/53", true},
		{"</etc/harbor/ready", false},
	} {
		var l linter
		lintCommand(&script{Name: "chk", Command: c.cmd, At: &node{File: "k.conf", Line: 3}, CmdLine: 4}, "", &l)
		if got := len(l.sorted()) > 0; got != c.warn {
			t.Errorf("script %q: warned %v (%v), want %v", c.cmd, got, l.sorted(), c.warn)
		}
	}
}
