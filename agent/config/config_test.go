package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/agent/leasing"
	"github.com/harbormaster/harbormaster/spec"
)

// baseKeys is a valid config document, one top-level key per line, in the
// order they are written. Test documents start from it and change one thing.
var baseKeys = [][2]string{
	{"node_id", "n1"},
	{"raft_addr", "127.0.0.1:7101"},
	{"api_addr", "127.0.0.1:7201"},
	{"metrics_addr", "127.0.0.1:7301"},
	{"data_dir", "/var/lib/harbormaster/n1"},
	{"bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}, {id: n2, raft_addr: 127.0.0.1:7102}, {id: n3, raft_addr: 127.0.0.1:7103}]"},
	{"insecure", "true"},
}

// edit changes one top-level key of the base document.
type edit struct {
	key, val string
	del      bool
}

// set replaces key's value, or appends the key when the base lacks it.
func set(key, val string) edit { return edit{key: key, val: val} }

// del removes key from the document.
func del(key string) edit { return edit{key: key, del: true} }

// doc renders the base document with the edits applied.
func doc(edits ...edit) string {
	type kv struct {
		k, v string
		del  bool
	}
	var lines []kv
	for _, p := range baseKeys {
		lines = append(lines, kv{k: p[0], v: p[1]})
	}
	for _, e := range edits {
		found := false
		for i := range lines {
			if lines[i].k == e.key {
				lines[i].v, lines[i].del = e.val, e.del
				found = true
			}
		}
		if !found && !e.del {
			lines = append(lines, kv{k: e.key, v: e.val})
		}
	}
	var b strings.Builder
	for _, l := range lines {
		if !l.del {
			b.WriteString(l.k + ": " + l.v + "\n")
		}
	}
	return b.String()
}

// asConfigError returns err as a *config.Error or fails the test.
func asConfigError(t *testing.T, err error) *config.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want a *config.Error")
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got error %T %q, want a *config.Error", err, err)
	}
	return ce
}

func TestBaseDocIsValid(t *testing.T) {
	c, err := config.Parse([]byte(doc()))
	if err != nil {
		t.Fatalf("Parse(base): got error %v, want nil", err)
	}
	if c.NodeID != "n1" || c.RaftAddr != "127.0.0.1:7101" || c.APIAddr != "127.0.0.1:7201" || c.MetricsAddr != "127.0.0.1:7301" {
		t.Errorf("Parse(base): got %+v, want the base document's values", c)
	}
	if c.Profile != "lan" {
		t.Errorf("default profile: got %q, want %q", c.Profile, "lan")
	}
	if c.LogLevel != "info" {
		t.Errorf("default log_level: got %q, want %q", c.LogLevel, "info")
	}
	if c.LogFormat != "text" {
		t.Errorf("default log_format: got %q, want %q", c.LogFormat, "text")
	}
	if !c.IsVoter() {
		t.Errorf("IsVoter() with voter unset: got false, want true")
	}
	if len(c.Bootstrap) != 3 {
		t.Errorf("bootstrap: got %d peers, want 3", len(c.Bootstrap))
	}
	tm, err := c.TimingProfile()
	if err != nil {
		t.Fatalf("TimingProfile(): got error %v, want nil", err)
	}
	if tm != config.Profiles["lan"] {
		t.Errorf("TimingProfile(): got %v, want the lan profile %v", tm, config.Profiles["lan"])
	}
}

// TestValidationErrors has one row per validation error: the document, the
// exact Field of the *config.Error and substrings its message must contain
// (the fix, or the offending value).
func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		field string
		msg   []string
	}{
		{"empty file", "", "", []string{"empty", "node_id"}},
		{"only comments", "# nothing here yet\n", "", []string{"empty"}},
		{"unknown field", doc(set("nodeid", "n1")), "", []string{"nodeid", "not a known field", "line 8"}},
		{"unknown nested field", doc(set("timing", "{hartbeat: 250ms}")), "", []string{"hartbeat", "not a known field"}},
		{"unknown field in a bootstrap peer", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101, api: x}]")), "", []string{"api", "not a known field"}},
		{"wrong yaml type", doc(set("join", "127.0.0.1:7201")), "", []string{"cannot unmarshal"}},
		{"missing node_id", doc(del("node_id")), "node_id", []string{"is missing", "node_id: n1"}},
		{"check without a name", doc(set("checks", "[{type: tcp, address: 127.0.0.1:5000}]")), "checks[0].name", nil},
		{"check of an unknown type", doc(set("checks", "[{name: ping, type: icmp}]")), "checks[0].type", []string{"icmp"}},
		{"check timeout above interval", doc(set("checks", "[{name: reg, type: tcp, address: 127.0.0.1:5000, interval: 1s, timeout: 2s}]")), "checks[0].timeout", nil},
		{"two checks of one name", doc(set("checks", "[{name: a, type: tcp, address: 127.0.0.1:1}, {name: a, type: tcp, address: 127.0.0.1:2}]")), "checks[1].name", nil},
		{"check duration not a string", doc(set("checks", "[{name: a, type: tcp, address: 127.0.0.1:1, interval: 10}]")), "", []string{"duration"}},
		{"service hooks without stop", doc(set("services", "{notary: {start: [/usr/bin/true]}}")), "services.notary.stop", nil},
		{"redis without address", doc(set("redis", "{password_file: /etc/hm/redis.pass}")), "redis.address", nil},
		{"redis announce on loopback in a cluster", doc(set("redis", "{address: 127.0.0.1:6379}"), set("raft_addr", "10.0.0.1:7101"), set("bootstrap", "[{id: n1, raft_addr: 10.0.0.1:7101}]")), "redis.announce", []string{"loopback"}},
		{"sentinel without redis", doc(set("sentinel", "{addr: 10.0.0.1:26379}")), "sentinel", []string{"redis"}},
		{"sentinel wildcard without announce", doc(set("redis", "{address: 10.0.0.1:6379}"), set("sentinel", "{addr: 0.0.0.0:26379}")), "sentinel.addr", []string{"announce"}},
		{"sentinel relative password file", doc(set("redis", "{address: 10.0.0.1:6379}"), set("sentinel", "{addr: 10.0.0.1:26379, password_file: pass}")), "sentinel.password_file", nil},
		{"service of an unknown mode", doc(set("services", "{notary: {mode: docker}}")), "services.notary.mode", []string{"docker"}},
		{"service role name invalid", doc(set("services", "{Notary: {start: [/bin/true], stop: [/bin/true]}}")), "services", []string{"Notary"}},
		{"systemd service without unit", doc(set("services", "{clair: {mode: systemd}}")), "services.clair.unit", nil},
		{"upper-case node_id", doc(set("node_id", "N1")), "node_id", []string{`"N1" is not valid`, "lower-case"}},
		{"node_id with a dot", doc(set("node_id", "n1.example")), "node_id", []string{"is not valid"}},
		{"node_id too long", doc(set("node_id", strings.Repeat("a", 64))), "node_id", []string{"is not valid", "1-63"}},
		{"missing raft_addr", doc(del("raft_addr")), "raft_addr", []string{"is missing", "host:port"}},
		{"raft_addr without port", doc(set("raft_addr", "127.0.0.1")), "raft_addr", []string{"not host:port", "127.0.0.1:7101"}},
		{"raft_addr port too large", doc(set("raft_addr", "127.0.0.1:70000")), "raft_addr", []string{`port "70000"`, "from 1 to 65535"}},
		{"raft_addr port zero", doc(set("raft_addr", "127.0.0.1:0")), "raft_addr", []string{`port "0"`, "from 1 to 65535"}},
		{"raft_addr port not a number", doc(set("raft_addr", "127.0.0.1:http")), "raft_addr", []string{`port "http"`, "from 1 to 65535"}},
		{"raft_addr 0.0.0.0", doc(set("raft_addr", "0.0.0.0:7101")), "raft_addr", []string{"0.0.0.0:7101", "other nodes can dial", "node's own address"}},
		{"raft_addr [::]", doc(set("raft_addr", `"[::]:7101"`)), "raft_addr", []string{"other nodes can dial"}},
		{"raft_addr without host", doc(set("raft_addr", `":7101"`)), "raft_addr", []string{"has no host", "give the node's address"}},
		{"raft_addr bad host name", doc(set("raft_addr", "bad_host:7101")), "raft_addr", []string{`host "bad_host"`, "neither an IP address nor a valid host name"}},
		{"missing api_addr", doc(del("api_addr")), "api_addr", []string{"is missing"}},
		{"api_addr port out of range", doc(set("api_addr", "127.0.0.1:65536")), "api_addr", []string{"from 1 to 65535"}},
		{"api_addr wildcard without advertise_api_addr", doc(set("api_addr", "0.0.0.0:7201")), "api_addr", []string{"other nodes can dial", "advertise_api_addr"}},
		{"advertise_api_addr wildcard", doc(set("api_addr", "0.0.0.0:7201"), set("advertise_api_addr", "0.0.0.0:7201")), "advertise_api_addr", []string{"other nodes can dial"}},
		{"bootstrap together with join", doc(set("join", "[127.0.0.1:7202]")), "join", []string{"together with bootstrap", "nodes added later"}},
		{"api_addr same as raft_addr", doc(set("api_addr", "127.0.0.1:7101")), "api_addr", []string{"same as raft_addr", "give the API its own port"}},
		{"metrics_addr not host:port", doc(set("metrics_addr", "7301")), "metrics_addr", []string{"not host:port"}},
		{"metrics_addr same as api_addr", doc(set("metrics_addr", "127.0.0.1:7201")), "metrics_addr", []string{"already used", "give metrics its own port"}},
		{"metrics_addr same as raft_addr", doc(set("metrics_addr", "127.0.0.1:7101")), "metrics_addr", []string{"already used", "give metrics its own port"}},
		{"missing data_dir", doc(del("data_dir")), "data_dir", []string{"is missing", "--data-dir"}},
		{"unknown profile", doc(set("profile", "lan2")), "profile", []string{`"lan2" is not a profile`, "fast, lan, wan"}},
		{"timing override too short", doc(set("timing", "{heartbeat: 1ms}")), "timing.heartbeat", []string{"1ms is too short", "at least 5ms"}},
		{"timing override negative", doc(set("timing", "{lease: -1s}")), "timing.lease", []string{"too short", "at least 5ms"}},
		{"timing.renew too slow for the lease", doc(set("timing", "{renew: 400ms}")), "timing.renew", []string{"fewer than 3 renewals", "lower renew or raise lease"}},
		{"timing.leader_lease above heartbeat", doc(set("timing", "{leader_lease: 300ms}")), "timing.leader_lease", []string{"exceeds the heartbeat", "leader_lease <= heartbeat"}},
		{"timing.election below heartbeat", doc(set("timing", "{election: 100ms}")), "timing.election", []string{"below the heartbeat", "election >= heartbeat"}},
		{"witness with voter false", doc(set("witness", "true"), set("voter", "false")), "witness", []string{"remove voter: false or witness: true"}},
		{"bad log_level", doc(set("log_level", "verbose")), "log_level", []string{`"verbose"`, "debug, info, warn or error"}},
		{"bad log_format", doc(set("log_format", "logfmt")), "log_format", []string{`"logfmt"`, "text or json"}},
		{"bootstrap invalid id", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}, {id: N2, raft_addr: 127.0.0.1:7102}, {id: n3, raft_addr: 127.0.0.1:7103}]")),
			"bootstrap[1].id", []string{`"N2" is not a valid node id`, "node_id of that node's config"}},
		{"bootstrap missing id", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}, {raft_addr: 127.0.0.1:7102}, {id: n3, raft_addr: 127.0.0.1:7103}]")),
			"bootstrap[1].id", []string{"not a valid node id"}},
		{"bootstrap duplicate id", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}, {id: n2, raft_addr: 127.0.0.1:7102}, {id: n2, raft_addr: 127.0.0.1:7103}]")),
			"bootstrap[2].id", []string{`"n2" is listed twice (also bootstrap[1])`, "list each node once"}},
		{"bootstrap duplicate raft_addr", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}, {id: n2, raft_addr: 127.0.0.1:7102}, {id: n3, raft_addr: 127.0.0.1:7102}]")),
			"bootstrap[2].raft_addr", []string{"also the address of bootstrap[1]", "every node needs its own"}},
		{"bootstrap raft_addr not host:port", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}, {id: n2, raft_addr: n2}, {id: n3, raft_addr: 127.0.0.1:7103}]")),
			"bootstrap[1].raft_addr", []string{"not host:port"}},
		{"bootstrap raft_addr 0.0.0.0", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}, {id: n2, raft_addr: 0.0.0.0:7102}, {id: n3, raft_addr: 127.0.0.1:7103}]")),
			"bootstrap[1].raft_addr", []string{"other nodes can dial"}},
		{"bootstrap without this node", doc(set("bootstrap", "[{id: n2, raft_addr: 127.0.0.1:7102}, {id: n3, raft_addr: 127.0.0.1:7103}, {id: n4, raft_addr: 127.0.0.1:7104}]")),
			"bootstrap", []string{"does not list this node (n1)", "{id: n1, raft_addr: 127.0.0.1:7101}"}},
		{"bootstrap self with another raft_addr", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7109}, {id: n2, raft_addr: 127.0.0.1:7102}, {id: n3, raft_addr: 127.0.0.1:7103}]")),
			"bootstrap[0].raft_addr", []string{"is 127.0.0.1:7109 but this node's raft_addr is 127.0.0.1:7101", "make them the same"}},
		{"bootstrap even number of voters", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}, {id: n2, raft_addr: 127.0.0.1:7102}]")),
			"bootstrap", []string{"lists 2 voters", "odd number", "witness"}},
		{"non-voter with bootstrap", doc(set("voter", "false")), "bootstrap", []string{"non-voter cannot bootstrap", "join"}},
		{"join entry not host:port", doc(del("bootstrap"), set("join", `["127.0.0.1:7202", "n2"]`)), "join[1]", []string{`"n2" is not host:port`}},
		{"join entry without host", doc(del("bootstrap"), set("join", `[":7202"]`)), "join[0]", []string{"has no host"}},
		{"duration written as a number", doc(set("timing", "{heartbeat: 250}")), "", []string{`"250" is not a duration`, `write it like "250ms"`, "line 8"}},
		{"duration written as a map", doc(set("timing", "{heartbeat: {ms: 250}}")), "", []string{"want a duration string", `"250ms"`}},
		{"two YAML documents", doc() + "---\nnode_id: n2\n", "", []string{"more than one YAML document", "keep one"}},
		{"duration without unit", doc(set("timing", "{lease: \"2\"}")), "", []string{`"2" is not a duration`}},
		// Durations are bounded for what they do; the lease goes on the
		// wire in uint32 milliseconds, which 1193h2m47.7965s would wrap.
		{"timing.lease that wraps the wire", doc(set("timing", "{lease: 1193h2m47.7965s}")), "timing.lease", []string{"is too long", "at most 10m0s", "voters grant no longer lease"}},
		{"timing.lease over 10m", doc(set("timing", "{lease: 10m1ms}")), "timing.lease", []string{"10m0.001s is too long"}},
		{"timing.heartbeat over 1m", doc(set("timing", "{heartbeat: 61s, election: 61s}")), "timing.heartbeat", []string{"1m1s is too long", "at most 1m0s"}},
		{"timing.election over 1m", doc(set("timing", "{election: 2m}")), "timing.election", []string{"at most 1m0s"}},
		{"timing.leader_lease over 1m", doc(set("timing", "{leader_lease: 2m}")), "timing.leader_lease", []string{"at most 1m0s"}},
		{"timing.renew over 1m", doc(set("timing", "{renew: 2m, lease: 10m}")), "timing.renew", []string{"at most 1m0s"}},
		{"garp.interval over 10s", doc(set("garp", "{interval: 11s}")), "garp.interval", []string{"11s is too long", "at most 10s"}},
		{"garp.refresh over 24h", doc(set("garp", "{refresh: 25h}")), "garp.refresh", []string{"25h0m0s is too long", "at most 24h0m0s"}},
		{"sentinel.max_connections negative", doc(set("redis", "{address: 10.0.0.1:6379}"), set("sentinel", "{addr: 10.0.0.1:26379, max_connections: -1}")), "sentinel.max_connections", []string{"-1 is out of range", "1 to 65536"}},
		{"sentinel.max_connections over the cap", doc(set("redis", "{address: 10.0.0.1:6379}"), set("sentinel", "{addr: 10.0.0.1:26379, max_connections: 65537}")), "sentinel.max_connections", []string{"65537 is out of range"}},
		{"sentinel.idle_timeout too short", doc(set("redis", "{address: 10.0.0.1:6379}"), set("sentinel", "{addr: 10.0.0.1:26379, idle_timeout: 500ms}")), "sentinel.idle_timeout", []string{"500ms is too short", "at least 1s"}},
		{"sentinel.idle_timeout over 24h", doc(set("redis", "{address: 10.0.0.1:6379}"), set("sentinel", "{addr: 10.0.0.1:26379, idle_timeout: 25h}")), "sentinel.idle_timeout", []string{"25h0m0s is too long", "at most 24h0m0s"}},
		{"check interval over 1h", doc(set("checks", "[{name: pull, type: tcp, address: 127.0.0.1:5000, interval: 2h}]")), "checks[0].interval", []string{"2h0m0s is too long", "at most 1h0m0s"}},
		{"config over 1 MiB", doc() + "# " + strings.Repeat("x", config.MaxSize) + "\n", "", []string{"over the 1048576-byte (1024 KiB) limit"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse:\n%s\ngot config %+v and nil error, want an error on %q", tc.doc, c, tc.field)
			}
			if c != nil {
				t.Errorf("Parse: got config %+v with the error, want nil", c)
			}
			ce := asConfigError(t, err)
			if ce.Field != tc.field {
				t.Errorf("Parse:\n%s\ngot Field %q (msg %q), want %q", tc.doc, ce.Field, ce.Msg, tc.field)
			}
			for _, m := range tc.msg {
				if !strings.Contains(ce.Msg, m) {
					t.Errorf("Parse:\n%s\ngot Msg %q, want it to contain %q", tc.doc, ce.Msg, m)
				}
			}
			if ce.Path != "" {
				t.Errorf("Parse: got Path %q, want empty (no file)", ce.Path)
			}
			want := ce.Msg
			if ce.Field != "" {
				want = ce.Field + ": " + ce.Msg
			}
			if got := err.Error(); got != want {
				t.Errorf("Error(): got %q, want %q", got, want)
			}
		})
	}
}

// TestValidVariants lists documents that differ from the base and must still
// be accepted, so that the checks above are not stricter than intended.
func TestValidVariants(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, c *config.Config)
	}{
		{"no metrics_addr", doc(del("metrics_addr")), nil},
		{"durations at their caps", doc(set("timing", "{lease: 10m, renew: 1m, heartbeat: 1m, election: 1m, leader_lease: 1m}"), set("garp", "{interval: 10s, refresh: 24h}")), func(t *testing.T, c *config.Config) {
			if tm, _ := c.TimingProfile(); tm.Lease != config.MaxLease {
				t.Errorf("lease: got %s, want %s", tm.Lease, config.MaxLease)
			}
		}},
		{"sentinel defaults", doc(set("redis", "{address: 10.0.0.1:6379}"), set("sentinel", "{addr: 10.0.0.1:26379}")), func(t *testing.T, c *config.Config) {
			if s := c.Sentinel; s.MaxConnections != 1024 || time.Duration(s.IdleTimeout) != 5*time.Minute {
				t.Errorf("sentinel defaults: max_connections %d, idle_timeout %s; want 1024, 5m", s.MaxConnections, s.IdleTimeout)
			}
		}},
		{"sentinel limits at their caps", doc(set("redis", "{address: 10.0.0.1:6379}"), set("sentinel", "{addr: 10.0.0.1:26379, max_connections: 65536, idle_timeout: 24h}")), nil},
		{"checks and services", doc(set("checks", "[{name: pull, type: registry-pull, registry: http://127.0.0.1:5000, image: library/hello:latest, interval: 10s, fall: 2}, {name: redis, type: redis, address: 127.0.0.1:6379, role: master}]"),
			set("services", "{notary: {start: [/usr/local/bin/notary-ctl, start], stop: [/usr/local/bin/notary-ctl, stop]}, clair: {mode: systemd, unit: clair.service}}")),
			func(t *testing.T, c *config.Config) {
				if got := c.CheckNames(); len(got) != 2 || got[0] != "pull" || got[1] != "redis" {
					t.Errorf("CheckNames(): got %v, want [pull redis]", got)
				}
				if got := c.ServiceNames(); len(got) != 2 || got[0] != "clair" || got[1] != "notary" {
					t.Errorf("ServiceNames(): got %v, want [clair notary]", got)
				}
				if c.Checks[0].Fall != 2 || c.Checks[0].Rise != 1 || time.Duration(c.Checks[0].Timeout) != 5*time.Second {
					t.Errorf("check defaults: got %+v, want fall 2, rise 1, timeout 5s", c.Checks[0])
				}
			}},
		{"leading document marker", "---\n" + doc(), nil},
		{"document end marker", doc() + "...\n", nil},
		{"api_addr on all interfaces, advertised", doc(set("api_addr", "0.0.0.0:7201"), set("advertise_api_addr", "10.0.0.1:7201")), nil},
		{"api_addr without host, advertised", doc(set("api_addr", `":7201"`), set("advertise_api_addr", "n1.example:7201")), nil},
		{"host names", doc(set("raft_addr", "node-1.example.com:7101"), set("bootstrap", "[{id: n1, raft_addr: node-1.example.com:7101}]")), nil},
		{"ipv6", doc(set("raft_addr", `"[fd00::1]:7101"`), set("bootstrap", `[{id: n1, raft_addr: "[fd00::1]:7101"}]`)), nil},
		{"single-node bootstrap", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}]")), nil},
		{"five voters", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}, {id: n2, raft_addr: 127.0.0.1:7102}, {id: n3, raft_addr: 127.0.0.1:7103}, {id: n4, raft_addr: 127.0.0.1:7104}, {id: n5, raft_addr: 127.0.0.1:7105}]")), nil},
		{"non-voter joining", doc(del("bootstrap"), set("voter", "false"), set("join", `["127.0.0.1:7202", "node-2.example.com:7202"]`)), func(t *testing.T, c *config.Config) {
			if c.IsVoter() {
				t.Errorf("IsVoter() with voter: false: got true, want false")
			}
			if len(c.Join) != 2 {
				t.Errorf("join: got %v, want 2 entries", c.Join)
			}
		}},
		{"witness", doc(set("witness", "true")), func(t *testing.T, c *config.Config) {
			if !c.Witness || !c.IsVoter() {
				t.Errorf("witness: got Witness=%t IsVoter=%t, want both true", c.Witness, c.IsVoter())
			}
		}},
		{"explicit voter true", doc(set("voter", "true")), nil},
		{"fast profile", doc(set("profile", "fast")), nil},
		{"wan profile with overrides", doc(set("profile", "wan"), set("timing", "{renew: 500ms, lease: 3s}")), func(t *testing.T, c *config.Config) {
			tm, err := c.TimingProfile()
			if err != nil {
				t.Fatalf("TimingProfile(): got error %v, want nil", err)
			}
			want := config.Profiles["wan"]
			want.Renew, want.Lease = 500*time.Millisecond, 3*time.Second
			if tm != want {
				t.Errorf("TimingProfile(): got %v, want %v", tm, want)
			}
		}},
		{"zero duration keeps the profile value", doc(set("timing", `{heartbeat: "0s"}`)), func(t *testing.T, c *config.Config) {
			tm, err := c.TimingProfile()
			if err != nil {
				t.Fatalf("TimingProfile(): got error %v, want nil", err)
			}
			if tm != config.Profiles["lan"] {
				t.Errorf("TimingProfile(): got %v, want the lan profile %v", tm, config.Profiles["lan"])
			}
		}},
		{"log level debug", doc(set("log_level", "debug")), func(t *testing.T, c *config.Config) {
			if c.LogLevel != "debug" {
				t.Errorf("log_level: got %q, want %q", c.LogLevel, "debug")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tc.doc))
			if err != nil {
				t.Fatalf("Parse:\n%s\ngot error %v, want nil", tc.doc, err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestDataDirOverride(t *testing.T) {
	d := []byte(doc(del("data_dir")))
	if _, err := config.Parse(d); asConfigError(t, err).Field != "data_dir" {
		t.Fatalf("Parse without data_dir: got %v, want a data_dir error", err)
	}
	c, err := config.Parse(d, func(c *config.Config) { c.DataDir = "/tmp/hm-n1" })
	if err != nil {
		t.Fatalf("Parse with the --data-dir override: got error %v, want nil", err)
	}
	if c.DataDir != "/tmp/hm-n1" {
		t.Errorf("DataDir: got %q, want %q", c.DataDir, "/tmp/hm-n1")
	}
	// The override wins over the file's value too.
	c, err = config.Parse([]byte(doc()), func(c *config.Config) { c.DataDir = "/tmp/other" })
	if err != nil {
		t.Fatalf("Parse with override over a set data_dir: got error %v, want nil", err)
	}
	if c.DataDir != "/tmp/other" {
		t.Errorf("DataDir: got %q, want the override %q", c.DataDir, "/tmp/other")
	}
	// Overrides run after the defaults and before validation.
	_, err = config.Parse([]byte(doc()), func(c *config.Config) { c.LogLevel = "loud" })
	if ce := asConfigError(t, err); ce.Field != "log_level" {
		t.Errorf("override to a bad log level: got Field %q, want %q", ce.Field, "log_level")
	}
}

func TestProfilesAreValid(t *testing.T) {
	if len(config.Profiles) == 0 {
		t.Fatalf("Profiles: got none, want at least lan")
	}
	names := config.ProfileNames()
	if len(names) != len(config.Profiles) {
		t.Errorf("ProfileNames(): got %v, want %d names", names, len(config.Profiles))
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("ProfileNames(): got %v, want sorted", names)
		}
	}
	for name, want := range config.Profiles {
		c := &config.Config{Profile: name}
		got, err := c.TimingProfile()
		if err != nil {
			t.Errorf("TimingProfile(%s): got error %v, want nil", name, err)
			continue
		}
		if got != want {
			t.Errorf("TimingProfile(%s): got %v, want %v", name, got, want)
		}
		if got.String() == "" || !strings.Contains(got.String(), "lease="+want.Lease.String()) {
			t.Errorf("Timing.String(%s): got %q, want it to show lease=%s", name, got.String(), want.Lease)
		}
	}
}

// writeFile writes content to dir/name, creating folders, and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return p
}

const validSpec = "roles:\n  - name: web\n    type: service\n  - name: db\n    type: service\n    candidates: [{node: n1, priority: 10}]\n"

func TestLoadMissingConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := config.Load(p)
	ce := asConfigError(t, err)
	if ce.Path != p || ce.Field != "" {
		t.Errorf("Load(missing): got Path %q Field %q, want %q and no field", ce.Path, ce.Field, p)
	}
	if !strings.Contains(ce.Msg, "cannot read the config file") {
		t.Errorf("Load(missing): got Msg %q, want it to say it cannot read the file", ce.Msg)
	}
}

func TestLoadMissingSpecFile(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "n1.yaml", doc(set("spec_file", "spec.yaml")))
	c, err := config.Load(p)
	if c != nil {
		t.Errorf("Load: got config %+v, want nil", c)
	}
	ce := asConfigError(t, err)
	if ce.Field != "spec_file" {
		t.Errorf("Load: got Field %q (msg %q), want %q", ce.Field, ce.Msg, "spec_file")
	}
	wantPath := filepath.Join(dir, "spec.yaml")
	for _, m := range []string{wantPath, "fix the path", "config file's folder"} {
		if !strings.Contains(ce.Msg, m) {
			t.Errorf("Load: got Msg %q, want it to contain %q", ce.Msg, m)
		}
	}
	if !strings.HasPrefix(err.Error(), p+": spec_file: ") {
		t.Errorf("Error(): got %q, want it to start with %q", err.Error(), p+": spec_file: ")
	}
}

func TestLoadInvalidSpecFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "spec.yaml", "roles:\n  - name: web\n    type: cron\n")
	p := writeFile(t, dir, "n1.yaml", doc(set("spec_file", "spec.yaml")))
	_, err := config.Load(p)
	ce := asConfigError(t, err)
	if ce.Field != "spec_file" {
		t.Errorf("Load: got Field %q (msg %q), want %q", ce.Field, ce.Msg, "spec_file")
	}
	for _, m := range []string{filepath.Join(dir, "spec.yaml"), "roles[0].type", `unknown role type "cron"`} {
		if !strings.Contains(ce.Msg, m) {
			t.Errorf("Load: got Msg %q, want it to contain %q", ce.Msg, m)
		}
	}

	// A spec with an unknown field is refused the same way.
	writeFile(t, dir, "spec.yaml", "rolez: []\n")
	_, err = config.Load(p)
	ce = asConfigError(t, err)
	if ce.Field != "spec_file" || !strings.Contains(ce.Msg, "rolez") {
		t.Errorf("Load with unknown spec field: got Field %q Msg %q, want spec_file naming rolez", ce.Field, ce.Msg)
	}
}

func TestLoadResolvesSpecFileRelativeToConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "etc/specs/cluster.yaml", validSpec)
	p := writeFile(t, dir, "etc/n1.yaml", doc(set("spec_file", "specs/cluster.yaml")))
	// The working directory (the package folder) holds no specs/ folder, so
	// only a path resolved against the config file's folder finds it.
	c, err := config.Load(p)
	if err != nil {
		t.Fatalf("Load: got error %v, want nil", err)
	}
	if want := filepath.Join(dir, "etc", "specs", "cluster.yaml"); c.SpecFile != want {
		t.Errorf("SpecFile: got %q, want %q", c.SpecFile, want)
	}
	if c.Path != p {
		t.Errorf("Path: got %q, want %q", c.Path, p)
	}
	if c.Spec == nil || len(c.Spec.Roles) != 2 {
		t.Fatalf("Spec: got %v, want 2 roles", c.Spec)
	}
	if got := c.Spec.RoleNames(); got[0] != "db" || got[1] != "web" {
		t.Errorf("Spec roles: got %v, want [db web]", got)
	}

	// An absolute spec_file is used as is.
	abs := filepath.Join(dir, "etc", "specs", "cluster.yaml")
	p2 := writeFile(t, dir, "other/n1.yaml", doc(set("spec_file", abs)))
	c, err = config.Load(p2)
	if err != nil {
		t.Fatalf("Load(absolute spec_file): got error %v, want nil", err)
	}
	if c.SpecFile != abs || c.Spec == nil || len(c.Spec.Roles) != 2 {
		t.Errorf("Load(absolute spec_file): got SpecFile %q Spec %v, want %q with 2 roles", c.SpecFile, c.Spec, abs)
	}

	// No spec_file: no spec.
	p3 := writeFile(t, dir, "plain/n1.yaml", doc())
	c, err = config.Load(p3)
	if err != nil {
		t.Fatalf("Load(no spec_file): got error %v, want nil", err)
	}
	if c.Spec != nil || c.SpecFile != "" {
		t.Errorf("Load(no spec_file): got SpecFile %q Spec %v, want none", c.SpecFile, c.Spec)
	}
}

func TestLoadAppliesOverrides(t *testing.T) {
	p := writeFile(t, t.TempDir(), "n1.yaml", doc(del("data_dir")))
	_, err := config.Load(p)
	if ce := asConfigError(t, err); ce.Field != "data_dir" || ce.Path != p {
		t.Fatalf("Load without data_dir: got Field %q Path %q, want data_dir and %q", ce.Field, ce.Path, p)
	}
	c, err := config.Load(p, func(c *config.Config) { c.DataDir = "/tmp/hm-n1" })
	if err != nil {
		t.Fatalf("Load with the --data-dir override: got error %v, want nil", err)
	}
	if c.DataDir != "/tmp/hm-n1" {
		t.Errorf("DataDir: got %q, want %q", c.DataDir, "/tmp/hm-n1")
	}
}

func TestLoadErrorStartsWithPath(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, doc, field string
	}{
		{"field error", doc(set("log_level", "verbose")), "log_level"},
		{"yaml error", doc(set("nodeid", "n1")), ""},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.doc)
			_, err := config.Load(p)
			ce := asConfigError(t, err)
			if ce.Path != p {
				t.Errorf("Path: got %q, want %q", ce.Path, p)
			}
			if ce.Field != tc.field {
				t.Errorf("Field: got %q, want %q", ce.Field, tc.field)
			}
			want := p + ": "
			if tc.field != "" {
				want += tc.field + ": "
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Error(): got %q, want it to start with %q", err.Error(), want)
			}
		})
	}
}

func TestLoadLoopbackN1(t *testing.T) {
	p := filepath.Join("..", "..", "testdata", "loopback", "n1.yaml")
	c, err := config.Load(p)
	if err != nil {
		t.Fatalf("Load(%s): got error %v, want nil", p, err)
	}
	if c.NodeID != "n1" || c.RaftAddr != "127.0.0.1:7101" || len(c.Bootstrap) != 3 {
		t.Errorf("Load(%s): got node %q raft %q %d peers, want n1 127.0.0.1:7101 3 peers", p, c.NodeID, c.RaftAddr, len(c.Bootstrap))
	}
	if c.Spec == nil {
		t.Fatalf("Load(%s): got no spec, want the spec_file's", p)
	}
	if got := len(c.Spec.Roles); got != 2 {
		t.Errorf("Load(%s): got %d roles, want 2", p, got)
	}
	if want := filepath.Join("..", "..", "testdata", "loopback", "spec.yaml"); c.SpecFile != want {
		t.Errorf("SpecFile: got %q, want %q", c.SpecFile, want)
	}
	// The other loopback nodes load too.
	for _, n := range []string{"n2", "n3"} {
		p := filepath.Join("..", "..", "testdata", "loopback", n+".yaml")
		c, err := config.Load(p)
		if err != nil {
			t.Errorf("Load(%s): got error %v, want nil", p, err)
			continue
		}
		if c.NodeID != n {
			t.Errorf("Load(%s): got node_id %q, want %q", p, c.NodeID, n)
		}
	}
}

// TestLoadHarbor keeps testdata/harbor (docs/harbor.md) loadable and says
// what it is: the registry VIP requires the registry-pull check that every
// node runs with keepalived's settings; Harbor 2.9+ has no Notary and runs
// Trivy on every node, so no service role; the Redis master role is found
// through each node's Sentinel-compatible listener.
func TestLoadHarbor(t *testing.T) {
	for i, n := range []string{"n1", "n2", "n3"} {
		p := filepath.Join("..", "..", "testdata", "harbor", n+".yaml")
		c, err := config.Load(p)
		if err != nil {
			t.Fatalf("Load(%s): %v", p, err)
		}
		if c.NodeID != n || c.VIPInterface == "" || len(c.Bootstrap) != 3 {
			t.Errorf("%s: node %q vip_interface %q %d peers", p, c.NodeID, c.VIPInterface, len(c.Bootstrap))
		}
		pull := c.Checks[0]
		if pull.Name != "registry-pull" || pull.Type != "registry-pull" || time.Duration(pull.Interval) != 10*time.Second ||
			pull.Fall != 2 || pull.Rise != 1 || pull.Registry != fmt.Sprintf("https://10.0.10.1%d", i+1) {
			t.Errorf("%s: registry-pull check %+v, want interval 10s, fall 2, rise 1 on the node's own registry", p, pull)
		}
		if got := c.ServiceNames(); len(got) != 0 {
			t.Errorf("%s: services %v, want none (Harbor 2.9+: no Notary, Trivy on every node)", p, got)
		}
		if c.Sentinel == nil || c.Sentinel.Addr != fmt.Sprintf("10.0.10.1%d:26379", i+1) {
			t.Errorf("%s: sentinel %+v, want the node's own listener on :26379 (harbor.yml external_redis.host)", p, c.Sentinel)
		}
		if r, ok := c.Spec.Role("redis"); !ok || r.MasterName != "mymaster" {
			t.Errorf("%s: redis role %+v, want master_name mymaster (harbor.yml sentinel_master_set)", p, r)
		}
		vip, ok := c.Spec.Role("registry-vip")
		if !ok || len(vip.Requires) != 1 || vip.Requires[0] != "registry-pull" || vip.Preempt {
			t.Errorf("%s: registry-vip %+v, want requires [registry-pull], no preempt", p, vip)
		}
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  config.Error
		want string
	}{
		{config.Error{Msg: "m"}, "m"},
		{config.Error{Field: "f", Msg: "m"}, "f: m"},
		{config.Error{Path: "p.yaml", Msg: "m"}, "p.yaml: m"},
		{config.Error{Path: "p.yaml", Field: "f", Msg: "m"}, "p.yaml: f: m"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%+v.Error(): got %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestLoadSecretFileModes: every secret file the config names is refused
// at load when others may read or write it, naming the field, the file, its
// mode and the fix; a 0600 file and one not there yet pass.
func TestLoadSecretFileModes(t *testing.T) {
	dir := t.TempDir()
	secret := func(name string, mode os.FileMode) string {
		p := writeFile(t, dir, name, "user:pw\n")
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := secret("good", 0o600)
	missing := filepath.Join(dir, "not-yet")
	// One config per field; %s is the file.
	fields := []struct{ field, edit string }{
		{"checks[1].credentials_file", `[{name: tcp, type: tcp, address: "127.0.0.1:1"}, {name: pull, type: registry-pull, registry: "https://127.0.0.1:5000", image: "library/x:latest", credentials_file: %s}]`},
		{"checks[0].password_file", `[{name: redis, type: redis, address: "127.0.0.1:6379", password_file: %s}]`},
		{"redis.password_file", `{address: "127.0.0.1:6379", password_file: %s}`},
		{"sentinel.password_file", `{addr: "127.0.0.1:26379", password_file: %s}`},
	}
	load := func(field, tmpl, file string) error {
		key := strings.SplitN(field, ".", 2)[0]
		key, _, _ = strings.Cut(key, "[")
		edits := []edit{set(key, fmt.Sprintf(tmpl, file))}
		if key == "sentinel" {
			edits = append(edits, set("redis", `{address: "127.0.0.1:6379"}`))
		}
		p := writeFile(t, dir, "n1.yaml", doc(edits...))
		_, err := config.Load(p)
		return err
	}
	for i, f := range fields {
		for _, ok := range []string{good, missing} {
			if err := load(f.field, f.edit, ok); err != nil {
				t.Errorf("%s: %s: got %v, want it loaded", f.field, ok, err)
			}
		}
		loose := secret(fmt.Sprintf("loose%d", i), 0o644)
		ce := asConfigError(t, load(f.field, f.edit, loose))
		if ce.Field != f.field {
			t.Errorf("%s: got field %q (%s), want %q", f.field, ce.Field, ce.Msg, f.field)
		}
		for _, m := range []string{loose, "mode 0644", "chmod 600 " + loose} {
			if !strings.Contains(ce.Msg, m) {
				t.Errorf("%s: got %q, want it to contain %q", f.field, ce.Msg, m)
			}
		}
	}
}

// TestMaxLeaseIsWhatVotersGrant: a lease the config accepts is one the
// voters grant as asked (agent/leasing refuses to send a longer one).
func TestMaxLeaseIsWhatVotersGrant(t *testing.T) {
	if config.MaxLease != leasing.MaxTTL {
		t.Fatalf("config.MaxLease %s, leasing.MaxTTL %s: keep them equal", config.MaxLease, leasing.MaxTTL)
	}
}

func TestLoadRefusesLargeFiles(t *testing.T) {
	dir := t.TempDir()
	big := writeFile(t, dir, "big.yaml", doc()+"# "+strings.Repeat("x", config.MaxSize)+"\n")
	_, err := config.Load(big)
	ce := asConfigError(t, err)
	if !strings.Contains(ce.Msg, "over 1048576 bytes") || ce.Path != big {
		t.Fatalf("Load of a config over the limit: got %v, want the path and the limit", err)
	}
	bigSpec := writeFile(t, dir, "spec.yaml", validSpec+"# "+strings.Repeat("x", spec.MaxSize)+"\n")
	cfgPath := writeFile(t, dir, "n1.yaml", doc(set("spec_file", bigSpec)))
	_, err = config.Load(cfgPath)
	ce = asConfigError(t, err)
	if ce.Field != "spec_file" || !strings.Contains(ce.Msg, fmt.Sprintf("over %d bytes", spec.MaxSize)) {
		t.Fatalf("Load of a spec over the limit: got %v, want spec_file and the limit", err)
	}
}

// checkFile writes content to a config file and lists its problems with
// config.Check: the field of each, with Path set on each.
func checkFile(t *testing.T, content string) (path string, fields []string, errs []*config.Error) {
	t.Helper()
	path = writeFile(t, t.TempDir(), "n1.yaml", content)
	c, errs := config.Check(path)
	if len(errs) > 0 && c != nil {
		t.Errorf("Check: got a config and problems %v, want no config", errs)
	}
	for _, e := range errs {
		if e.Path != path {
			t.Errorf("Check: problem %v has Path %q, want %q", e, e.Path, path)
		}
		fields = append(fields, e.Field)
	}
	return path, fields, errs
}

// TestCheckListsEveryProblem: independent problems are all listed, in
// Validate's order, and Load and Parse return the first of them.
func TestCheckListsEveryProblem(t *testing.T) {
	content := doc(
		set("node_id", "N1"),
		set("api_addr", "127.0.0.1"),
		del("data_dir"),
		set("checks", `[{name: a, type: tcp, address: "127.0.0.1:1"}, {name: a, type: tcp, address: "127.0.0.1:2"}]`),
		set("garp", "{repeat: 500, interval: 1h}"),
		set("log_level", "loud"),
		set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:7101}, {id: n2, raft_addr: 127.0.0.1:7101}]"),
		del("insecure"),
	)
	path, fields, errs := checkFile(t, content)
	want := []string{"node_id", "api_addr", "data_dir", "checks[1].name", "garp.repeat", "garp.interval", "log_level", "bootstrap[1].raft_addr", "bootstrap", "tls"}
	if strings.Join(fields, " ") != strings.Join(want, " ") {
		t.Fatalf("Check: got fields %v (%v), want %v", fields, errs, want)
	}
	_, err := config.Load(path)
	if ce := asConfigError(t, err); ce.Error() != errs[0].Error() {
		t.Errorf("Load: got %v, want the first problem %v", ce, errs[0])
	}
	_, err = config.Parse([]byte(content))
	if ce := asConfigError(t, err); ce.Field != errs[0].Field || ce.Msg != errs[0].Msg {
		t.Errorf("Parse: got %v, want the first problem %v", ce, errs[0])
	}
}

// TestCheckReportsAMistakeOnce: a check that depends on another field
// does not run when that field is wrong, so the one mistake is one problem.
func TestCheckReportsAMistakeOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		doc   string
		field string
	}{
		// bootstrap[0] is n1 at 127.0.0.1:7101: not compared with a bad raft_addr.
		{"bad raft_addr", doc(set("raft_addr", "127.0.0.1:0")), "raft_addr"},
		// bootstrap is not said to miss a node without a valid id.
		{"bad node_id", doc(set("node_id", "N1")), "node_id"},
		// api_addr and raft_addr are not compared when one is bad.
		{"both addresses missing", doc(del("raft_addr"), del("api_addr")), "raft_addr api_addr"},
		// A bad bootstrap address is not also "not this node's raft_addr".
		{"bad bootstrap address of this node", doc(set("bootstrap", "[{id: n1, raft_addr: 127.0.0.1:x}, {id: n2, raft_addr: 127.0.0.1:7102}, {id: n3, raft_addr: 127.0.0.1:7103}]")), "bootstrap[0].raft_addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fields, errs := checkFile(t, tc.doc)
			if strings.Join(fields, " ") != tc.field {
				t.Fatalf("Check: got fields %v (%v), want %s", fields, errs, tc.field)
			}
		})
	}
}

// TestCheckSecretFilesAndSpecToo: Check goes on past the fields to every
// loose secret file and the spec file.
func TestCheckSecretFilesAndSpecToo(t *testing.T) {
	dir := t.TempDir()
	loose := writeFile(t, dir, "pw", "pw\n")
	writeFile(t, dir, "spec.yaml", "roles: [{name: web, type: nosuchtype}]\n")
	p := writeFile(t, dir, "n1.yaml", doc(set("log_level", "loud"), set("spec_file", "spec.yaml"),
		set("redis", fmt.Sprintf(`{address: "127.0.0.1:6379", password_file: %s}`, loose)),
		set("sentinel", fmt.Sprintf(`{addr: "127.0.0.1:26379", password_file: %s}`, loose))))
	_, errs := config.Check(p)
	var fields []string
	for _, e := range errs {
		fields = append(fields, e.Field)
	}
	want := "log_level redis.password_file sentinel.password_file spec_file"
	if strings.Join(fields, " ") != want {
		t.Fatalf("Check: got fields %v (%v), want %s", fields, errs, want)
	}
	if c, errs := config.Check(writeFile(t, dir, "ok.yaml", doc())); c == nil || errs != nil {
		t.Fatalf("Check(valid): got %v, %v; want the config and no problem", c, errs)
	}
}
