package checks

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/harbormaster/harbormaster/internal/conf"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{
			"exec gets the common defaults only",
			Config{Name: "a", Type: TypeExec, Argv: []string{"true"}},
			Config{Name: "a", Type: TypeExec, Argv: []string{"true"}, Interval: conf.Duration(10 * time.Second), Timeout: conf.Duration(5 * time.Second), Fall: 1, Rise: 1},
		},
		{
			"http gets method and status",
			Config{Name: "a", Type: TypeHTTP, URL: "http://x/"},
			Config{Name: "a", Type: TypeHTTP, URL: "http://x/", Interval: conf.Duration(10 * time.Second), Timeout: conf.Duration(5 * time.Second), Fall: 1, Rise: 1, Method: "GET", Status: "200-399"},
		},
		{
			"https gets method and status",
			Config{Name: "a", Type: TypeHTTPS, URL: "https://x/", Method: "HEAD", Status: "204"},
			Config{Name: "a", Type: TypeHTTPS, URL: "https://x/", Interval: conf.Duration(10 * time.Second), Timeout: conf.Duration(5 * time.Second), Fall: 1, Rise: 1, Method: "HEAD", Status: "204"},
		},
		{
			"registry-pull gets platform and tag",
			Config{Name: "a", Type: TypeRegistryPull, Registry: "http://r", Image: "library/x"},
			Config{Name: "a", Type: TypeRegistryPull, Registry: "http://r", Image: "library/x:latest", Platform: "linux/" + runtime.GOARCH, Interval: conf.Duration(10 * time.Second), Timeout: conf.Duration(5 * time.Second), Fall: 1, Rise: 1},
		},
		{
			"registry-pull keeps a tag and a platform",
			Config{Name: "a", Type: TypeRegistryPull, Registry: "http://r", Image: "library/x:1.0", Platform: "linux/arm64"},
			Config{Name: "a", Type: TypeRegistryPull, Registry: "http://r", Image: "library/x:1.0", Platform: "linux/arm64", Interval: conf.Duration(10 * time.Second), Timeout: conf.Duration(5 * time.Second), Fall: 1, Rise: 1},
		},
		{
			"registry-pull by digest gets no tag",
			Config{Name: "a", Type: TypeRegistryPull, Registry: "http://r", Image: "library/x@" + testDigest},
			Config{Name: "a", Type: TypeRegistryPull, Registry: "http://r", Image: "library/x@" + testDigest, Platform: "linux/" + runtime.GOARCH, Interval: conf.Duration(10 * time.Second), Timeout: conf.Duration(5 * time.Second), Fall: 1, Rise: 1},
		},
		{
			"timeout defaults to a shorter interval",
			Config{Name: "a", Type: TypeTCP, Address: "127.0.0.1:1", Interval: conf.Duration(2 * time.Second)},
			Config{Name: "a", Type: TypeTCP, Address: "127.0.0.1:1", Interval: conf.Duration(2 * time.Second), Timeout: conf.Duration(2 * time.Second), Fall: 1, Rise: 1},
		},
		{
			"explicit values are kept",
			Config{Name: "a", Type: TypeTCP, Address: "127.0.0.1:1", Interval: conf.Duration(time.Minute), Timeout: conf.Duration(20 * time.Second), Fall: 3, Rise: 2},
			Config{Name: "a", Type: TypeTCP, Address: "127.0.0.1:1", Interval: conf.Duration(time.Minute), Timeout: conf.Duration(20 * time.Second), Fall: 3, Rise: 2},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			got.Normalize()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Normalize:\n got %+v\nwant %+v", got, tc.want)
			}
			again := got
			again.Normalize()
			if !reflect.DeepEqual(again, got) {
				t.Errorf("Normalize twice:\n got %+v\nwant %+v (idempotent)", again, got)
			}
		})
	}
}

// validConfigs has one valid, normalized config per type; the Validate
// tests change one thing in them.
func validConfig(typ string) Config {
	c := Config{Name: "c1", Type: typ}
	switch typ {
	case TypeRegistryPull:
		c.Registry, c.Image = "https://127.0.0.1:5000", "library/hello-world:latest"
	case TypeHTTP:
		c.URL = "http://127.0.0.1:8080/ping"
	case TypeHTTPS:
		c.URL = "https://127.0.0.1:8443/ping"
	case TypeTCP, TypeRedis:
		c.Address = "127.0.0.1:6379"
	case TypeExec:
		c.Argv = []string{"/usr/local/bin/check", "--quick"}
	}
	c.Normalize()
	return c
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"registry-pull", validConfig(TypeRegistryPull)},
		{"registry-pull over http", with(validConfig(TypeRegistryPull), func(c *Config) { c.Registry = "http://harbor.example.com" })},
		{"registry-pull with trailing slash", with(validConfig(TypeRegistryPull), func(c *Config) { c.Registry = "https://harbor.example.com:443/" })},
		{"registry-pull by digest", with(validConfig(TypeRegistryPull), func(c *Config) { c.Image = "library/x@" + testDigest })},
		{"registry-pull tag and digest", with(validConfig(TypeRegistryPull), func(c *Config) { c.Image = "library/x:1@" + testDigest })},
		{"registry-pull files and variant", with(validConfig(TypeRegistryPull), func(c *Config) {
			c.CredentialsFile, c.CAFile, c.Platform = "/etc/hm/creds", "/etc/hm/ca.pem", "linux/arm64/v8"
		})},
		{"http", validConfig(TypeHTTP)},
		{"http single status and body", with(validConfig(TypeHTTP), func(c *Config) { c.Status, c.BodyContains, c.Method = "204", "ok", "POST" })},
		{"https with ca_file", with(validConfig(TypeHTTPS), func(c *Config) { c.CAFile = "/etc/hm/ca.pem" })},
		{"tcp with host name", with(validConfig(TypeTCP), func(c *Config) { c.Address = "redis.internal:6379" })},
		{"tcp ipv6", with(validConfig(TypeTCP), func(c *Config) { c.Address = "[::1]:6379" })},
		{"redis role slave", with(validConfig(TypeRedis), func(c *Config) { c.Role, c.PasswordFile = "slave", "/etc/hm/redis" })},
		{"redis role replica", with(validConfig(TypeRedis), func(c *Config) { c.Role = "replica" })},
		{"exec bare program", with(validConfig(TypeExec), func(c *Config) { c.Argv = []string{"pgrep", "-x", "redis"} })},
		{"exec shell", with(validConfig(TypeExec), func(c *Config) { c.Argv, c.Shell = []string{"pgrep -x redis >/dev/null"}, true })},
		{"interval, rise and fall at their caps", with(validConfig(TypeExec), func(c *Config) {
			c.Interval, c.Timeout, c.Rise, c.Fall = conf.Duration(MaxInterval), conf.Duration(MaxInterval), MaxCount, MaxCount
		})},
		{"timeout equal to interval", with(validConfig(TypeExec), func(c *Config) { c.Interval, c.Timeout = conf.Duration(time.Second), conf.Duration(time.Second) })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateAll([]Config{tc.cfg}); err != nil {
				t.Errorf("ValidateAll(%+v): got %v, want nil", tc.cfg, err)
			}
			if _, err := NewProber(tc.cfg); err != nil {
				t.Errorf("NewProber(%+v): got %v, want nil", tc.cfg, err)
			}
		})
	}
}

func with(c Config, f func(*Config)) Config {
	f(&c)
	return c
}

// TestValidateErrors has one row per validation error: the configs, the
// exact field path of the *conf.FieldError and substrings of its message.
func TestValidateErrors(t *testing.T) {
	reg := func(f func(*Config)) []Config { return []Config{with(validConfig(TypeRegistryPull), f)} }
	web := func(typ string, f func(*Config)) []Config { return []Config{with(validConfig(typ), f)} }
	tests := []struct {
		name  string
		cfgs  []Config
		field string
		msg   []string
	}{
		{"missing name", web(TypeExec, func(c *Config) { c.Name = "" }), "checks[0].name", []string{"is missing", "name: registry"}},
		{"upper-case name", web(TypeExec, func(c *Config) { c.Name = "Reg1" }), "checks[0].name", []string{`"Reg1" is not valid`, "lower-case"}},
		{"name with underscore", web(TypeExec, func(c *Config) { c.Name = "reg_1" }), "checks[0].name", []string{`"reg_1" is not valid`}},
		{"name too long", web(TypeExec, func(c *Config) { c.Name = strings.Repeat("a", 64) }), "checks[0].name", []string{"1-63"}},
		{"duplicate name", []Config{validConfig(TypeExec), validConfig(TypeTCP), validConfig(TypeHTTP)}, "checks[1].name", []string{`"c1" is also the name of checks[0]`, "its own name"}},
		{"missing type", web(TypeExec, func(c *Config) { c.Type = "" }), "checks[0].type", []string{"is missing", "registry-pull, http, https, tcp, redis or exec"}},
		{"unknown type", web(TypeExec, func(c *Config) { c.Type = "ping" }), "checks[0].type", []string{`"ping" is not a check type`, "registry-pull"}},
		{"interval too short", web(TypeExec, func(c *Config) {
			c.Interval, c.Timeout = conf.Duration(time.Millisecond), conf.Duration(time.Millisecond)
		}), "checks[0].interval", []string{"1ms is too short", "at least 10ms"}},
		{"timeout longer than interval", web(TypeExec, func(c *Config) { c.Interval, c.Timeout = conf.Duration(5*time.Second), conf.Duration(6*time.Second) }), "checks[0].timeout", []string{"6s is longer than the interval (5s)", "lower timeout or raise interval"}},
		{"negative timeout", web(TypeExec, func(c *Config) { c.Timeout = conf.Duration(-time.Second) }), "checks[0].timeout", []string{"-1s is not positive"}},
		{"zero timeout (not normalized)", web(TypeExec, func(c *Config) { c.Timeout = 0 }), "checks[0].timeout", []string{"0s is not positive"}},
		{"fall 0 (not normalized)", web(TypeExec, func(c *Config) { c.Fall = 0 }), "checks[0].fall", []string{"is 0", "1 or more"}},
		{"negative fall", web(TypeExec, func(c *Config) { c.Fall = -2 }), "checks[0].fall", []string{"is -2"}},
		{"fall over the cap", web(TypeExec, func(c *Config) { c.Fall = MaxCount + 1 }), "checks[0].fall", []string{"is 101", "at most 100"}},
		{"rise over the cap", web(TypeExec, func(c *Config) { c.Rise = MaxCount + 1 }), "checks[0].rise", []string{"is 101", "at most 100"}},
		{"interval over the cap", web(TypeExec, func(c *Config) { c.Interval = conf.Duration(MaxInterval + time.Second) }), "checks[0].interval", []string{"1h0m1s is too long", "at most 1h0m0s"}},
		{"rise 0 (not normalized)", web(TypeExec, func(c *Config) { c.Rise = 0 }), "checks[0].rise", []string{"is 0", "1 or more"}},
		{"url on a tcp check", web(TypeTCP, func(c *Config) { c.URL = "http://x/" }), "checks[0].url", []string{"not used by tcp checks", "only by http and https", "remove it"}},
		{"argv on an http check", web(TypeHTTP, func(c *Config) { c.Argv = []string{"true"} }), "checks[0].argv", []string{"not used by http checks", "only by exec"}},
		{"shell on a redis check", web(TypeRedis, func(c *Config) { c.Shell = true }), "checks[0].shell", []string{"not used by redis checks"}},
		{"ca_file on an http check", web(TypeHTTP, func(c *Config) { c.CAFile = "/ca.pem" }), "checks[0].ca_file", []string{"not used by http checks", "registry-pull and https"}},
		{"address on an exec check", web(TypeExec, func(c *Config) { c.Address = "127.0.0.1:1" }), "checks[0].address", []string{"not used by exec checks", "tcp and redis"}},
		{"image on an https check", web(TypeHTTPS, func(c *Config) { c.Image = "x" }), "checks[0].image", []string{"not used by https checks"}},
		{"role on a tcp check", web(TypeTCP, func(c *Config) { c.Role = "master" }), "checks[0].role", []string{"not used by tcp checks"}},
		{"password_file on a tcp check", web(TypeTCP, func(c *Config) { c.PasswordFile = "/p" }), "checks[0].password_file", []string{"not used by tcp checks"}},
		{"method on a tcp check", web(TypeTCP, func(c *Config) { c.Method = "GET" }), "checks[0].method", []string{"not used by tcp checks"}},
		{"missing url", web(TypeHTTP, func(c *Config) { c.URL = "" }), "checks[0].url", []string{"is missing", "url: http://"}},
		{"http url on an https check", web(TypeHTTPS, func(c *Config) { c.URL = "http://127.0.0.1/" }), "checks[0].url", []string{"not an https:// URL", "set type: http"}},
		{"https url on an http check", web(TypeHTTP, func(c *Config) { c.URL = "https://127.0.0.1/" }), "checks[0].url", []string{"not an http:// URL", "set type: https"}},
		{"url without host", web(TypeHTTP, func(c *Config) { c.URL = "http:///ping" }), "checks[0].url", []string{"has no host"}},
		{"url with credentials", web(TypeHTTP, func(c *Config) { c.URL = "http://u:p@127.0.0.1/" }), "checks[0].url", []string{"credentials"}},
		{"unparsable url", web(TypeHTTP, func(c *Config) { c.URL = "http://[::1/" }), "checks[0].url", []string{"not a URL"}},
		{"method not allowed", web(TypeHTTP, func(c *Config) { c.Method = "DELETE" }), "checks[0].method", []string{`"DELETE" is not allowed`, "HEAD, GET, POST or OPTIONS"}},
		{"lower-case method", web(TypeHTTP, func(c *Config) { c.Method = "get" }), "checks[0].method", []string{"upper-case"}},
		{"status range without end", web(TypeHTTP, func(c *Config) { c.Status = "200-" }), "checks[0].status", []string{`"200-" is not a status code`, `"200-399"`}},
		{"status out of range", web(TypeHTTP, func(c *Config) { c.Status = "600" }), "checks[0].status", []string{`"600" is not a status code`}},
		{"status words", web(TypeHTTP, func(c *Config) { c.Status = "ok" }), "checks[0].status", []string{`"ok" is not a status code`}},
		{"status range reversed", web(TypeHTTPS, func(c *Config) { c.Status = "399-200" }), "checks[0].status", []string{"empty range", "lower code first"}},
		{"body_contains on HEAD", web(TypeHTTP, func(c *Config) { c.Method, c.BodyContains = "HEAD", "ok" }), "checks[0].body_contains", []string{"HEAD responses, which have no body"}},
		{"relative ca_file", web(TypeHTTPS, func(c *Config) { c.CAFile = "ca.pem" }), "checks[0].ca_file", []string{`"ca.pem" is a relative path`, "absolute path"}},
		{"tcp missing address", web(TypeTCP, func(c *Config) { c.Address = "" }), "checks[0].address", []string{"is missing", "host:port"}},
		{"tcp address without port", web(TypeTCP, func(c *Config) { c.Address = "127.0.0.1" }), "checks[0].address", []string{"not host:port"}},
		{"tcp port 0", web(TypeTCP, func(c *Config) { c.Address = "127.0.0.1:0" }), "checks[0].address", []string{`port "0"`, "1 to 65535"}},
		{"tcp without host", web(TypeTCP, func(c *Config) { c.Address = ":80" }), "checks[0].address", []string{"has no host"}},
		{"tcp wildcard address", web(TypeTCP, func(c *Config) { c.Address = "0.0.0.0:80" }), "checks[0].address", []string{"not an address one can connect to"}},
		{"tcp bad host name", web(TypeTCP, func(c *Config) { c.Address = "bad_host:80" }), "checks[0].address", []string{`host "bad_host"`}},
		{"redis missing address", web(TypeRedis, func(c *Config) { c.Address = "" }), "checks[0].address", []string{"is missing"}},
		{"redis unknown role", web(TypeRedis, func(c *Config) { c.Role = "leader" }), "checks[0].role", []string{`"leader" is not a replication role`, "master or replica"}},
		{"redis relative password_file", web(TypeRedis, func(c *Config) { c.PasswordFile = "./pw" }), "checks[0].password_file", []string{"relative path"}},
		{"exec empty argv", web(TypeExec, func(c *Config) { c.Argv = nil }), "checks[0].argv", []string{"is missing", "argv: ["}},
		{"exec shell with 2 argv", web(TypeExec, func(c *Config) { c.Argv, c.Shell = []string{"pgrep", "redis"}, true }), "checks[0].argv", []string{"has 2 elements", "exactly one command line"}},
		{"exec empty program", web(TypeExec, func(c *Config) { c.Argv = []string{" ", "x"} }), "checks[0].argv[0]", []string{"is empty"}},
		{"exec relative program", web(TypeExec, func(c *Config) { c.Argv = []string{"bin/check"} }), "checks[0].argv[0]", []string{`"bin/check" is a relative path`}},
		{"exec NUL in an argument", web(TypeExec, func(c *Config) { c.Argv = []string{"/bin/check", "a\x00b"} }), "checks[0].argv[1]", []string{"NUL byte"}},
		{"exec env bad name", web(TypeExec, func(c *Config) { c.Env = []string{"LANG", "MY-VAR=1"} }), "checks[0].env[1]", []string{`"MY-VAR" is not a variable name`}},
		{"exec env reserved name", web(TypeExec, func(c *Config) { c.Env = []string{"HARBORMASTER_NODE=n9"} }), "checks[0].env[0]", []string{"set by the agent itself"}},
		{"exec env twice", web(TypeExec, func(c *Config) { c.Env = []string{"TZ=UTC", "TZ"} }), "checks[0].env[1]", []string{"TZ is also set by checks[0].env[0]"}},
		{"env on an http check", web(TypeHTTP, func(c *Config) { c.Env = []string{"TZ=UTC"} }), "checks[0].env", []string{"not used by http checks", "only by exec"}},
		{"token realm not a URL", reg(func(c *Config) { c.TokenRealms = []string{"https://h/t", "harbor.example.com"} }), "checks[0].token_realms[1]", []string{"not an http:// or https:// URL"}},
		{"token realm with credentials", reg(func(c *Config) { c.TokenRealms = []string{"https://u:p@h/t"} }), "checks[0].token_realms[0]", []string{"credentials"}},
		{"token realm with a query", reg(func(c *Config) { c.TokenRealms = []string{"https://h/t?service=x"} }), "checks[0].token_realms[0]", []string{"query"}},
		{"token realm without host", reg(func(c *Config) { c.TokenRealms = []string{"https:///t"} }), "checks[0].token_realms[0]", []string{"no host"}},
		{"token realms on an http check", web(TypeHTTP, func(c *Config) { c.TokenRealms = []string{"https://h"} }), "checks[0].token_realms", []string{"only by registry-pull"}},
		{"registry missing", reg(func(c *Config) { c.Registry = "" }), "checks[0].registry", []string{"is missing", "https://127.0.0.1:5000"}},
		{"registry ftp", reg(func(c *Config) { c.Registry = "ftp://127.0.0.1" }), "checks[0].registry", []string{"http:// or https://"}},
		{"registry without scheme", reg(func(c *Config) { c.Registry = "127.0.0.1:5000" }), "checks[0].registry", []string{"http:// or https://"}},
		{"registry with path", reg(func(c *Config) { c.Registry = "https://127.0.0.1:5000/v2/" }), "checks[0].registry", []string{"has a path", "base URL only"}},
		{"registry with credentials", reg(func(c *Config) { c.Registry = "https://u:p@127.0.0.1" }), "checks[0].registry", []string{"credentials_file"}},
		{"registry without image", reg(func(c *Config) { c.Image = "" }), "checks[0].image", []string{"is missing", "library/hello-world:latest"}},
		{"image upper-case", reg(func(c *Config) { c.Image = "Library/X:1" }), "checks[0].image", []string{"not a repository path", "lower-case"}},
		{"image with registry host", reg(func(c *Config) { c.Image = "harbor.example.com:443/library/x:1" }), "checks[0].image", []string{"without the registry host"}},
		{"image bad tag", reg(func(c *Config) { c.Image = "library/x:-1" }), "checks[0].image", []string{`tag "-1"`}},
		{"image bad digest", reg(func(c *Config) { c.Image = "library/x@sha256:abc" }), "checks[0].image", []string{`digest "sha256:abc"`, "64 lower-case hex"}},
		{"image sha512 digest", reg(func(c *Config) { c.Image = "library/x@sha512:" + strings.Repeat("a", 128) }), "checks[0].image", []string{"sha256:"}},
		{"platform without arch", reg(func(c *Config) { c.Platform = "linux" }), "checks[0].platform", []string{"not os/arch[/variant]", "linux/amd64"}},
		{"platform upper-case", reg(func(c *Config) { c.Platform = "Linux/AMD64" }), "checks[0].platform", []string{"not os/arch[/variant]"}},
		{"relative credentials_file", reg(func(c *Config) { c.CredentialsFile = "creds" }), "checks[0].credentials_file", []string{"relative path"}},
		{"relative registry ca_file", reg(func(c *Config) { c.CAFile = "ca.pem" }), "checks[0].ca_file", []string{"relative path"}},
		{"ca_file with an http registry", reg(func(c *Config) { c.Registry, c.CAFile = "http://127.0.0.1:5000", "/ca.pem" }), "checks[0].ca_file", []string{"over http://"}},
		{"second check is checked", []Config{validConfig(TypeExec), with(validConfig(TypeTCP), func(c *Config) { c.Name, c.Address = "c2", "" })}, "checks[1].address", []string{"is missing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateAll(tc.cfgs)
			var fe *conf.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ValidateAll(%+v): got %v (%T), want a *conf.FieldError on %s", tc.cfgs, err, err, tc.field)
			}
			if fe.Field != tc.field {
				t.Errorf("ValidateAll: got Field %q (Msg %q), want %q", fe.Field, fe.Msg, tc.field)
			}
			for _, m := range tc.msg {
				if !strings.Contains(fe.Msg, m) {
					t.Errorf("ValidateAll: got Msg %q, want it to contain %q", fe.Msg, m)
				}
			}
			if want := tc.field + ": " + fe.Msg; err.Error() != want {
				t.Errorf("Error(): got %q, want %q", err.Error(), want)
			}
			// NewRunner normalizes: the zero values of "not normalized"
			// rows become defaults.
			normalized := strings.Contains(tc.name, "(not normalized)")
			_, err = NewRunner(tc.cfgs, nil)
			switch {
			case normalized && err != nil:
				t.Errorf("NewRunner: got %v, want nil (Normalize fills the zero value)", err)
			case !normalized && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Errorf("NewRunner: got %v, want the *conf.FieldError on %s", err, tc.field)
			}
		})
	}
}

// TestProblemsListsEachCheck: Problems lists the first problem of every
// check and every duplicate name, in list order; ValidateAll returns the
// first of them.
func TestProblemsListsEachCheck(t *testing.T) {
	cs := []Config{
		validConfig(TypeExec),
		with(validConfig(TypeTCP), func(c *Config) { c.Name, c.Fall = "c2", -2 }),
		with(validConfig(TypeHTTP), func(c *Config) { c.Name = "" }),
		validConfig(TypeExec), // c1 again
	}
	want := []string{"checks[1].fall", "checks[2].name", "checks[3].name"}
	ps := Problems(cs)
	var got []string
	for _, err := range ps {
		var fe *conf.FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("Problems: %T %v, want *conf.FieldError", err, err)
		}
		got = append(got, fe.Field)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Problems fields: got %v (%v), want %v", got, ps, want)
	}
	if err := ValidateAll(cs); err == nil || err.Error() != ps[0].Error() {
		t.Fatalf("ValidateAll: got %v, want the first problem %v", err, ps[0])
	}
	if ps := Problems([]Config{validConfig(TypeExec)}); ps != nil {
		t.Fatalf("Problems(valid): got %v, want nil", ps)
	}
}

// TestValidateFieldPrefix checks that Validate reports fields under the
// prefix it is given, and bare names without one.
func TestValidateFieldPrefix(t *testing.T) {
	c := with(validConfig(TypeExec), func(c *Config) { c.Timeout = conf.Duration(time.Hour) })
	for prefix, want := range map[string]string{"": "timeout", "node.checks[4]": "node.checks[4].timeout"} {
		var fe *conf.FieldError
		if err := c.Validate(prefix); !errors.As(err, &fe) || fe.Field != want {
			t.Errorf("Validate(%q): got %v, want a *conf.FieldError on %s", prefix, err, want)
		}
	}
	if _, err := NewProber(c); err == nil || !strings.HasPrefix(err.Error(), "timeout: ") {
		t.Errorf("NewProber: got %v, want the *conf.FieldError on timeout", err)
	}
}

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		doc     string
		want    time.Duration
		wantErr string
	}{
		{"interval: 10s", 10 * time.Second, ""},
		{"interval: 250ms", 250 * time.Millisecond, ""},
		{`interval: "1m30s"`, 90 * time.Second, ""},
		{"interval: soon", 0, `line 1: "soon" is not a duration; write it like "250ms" or "10s"`},
		{"interval: 10", 0, `line 1: "10" is not a duration; write it like "250ms" or "10s"`},
		{"name: a\ninterval: [1s]", 0, `line 2: want a duration string such as "250ms" or "10s"`},
	}
	for _, tc := range tests {
		t.Run(tc.doc, func(t *testing.T) {
			var c Config
			err := yaml.Unmarshal([]byte(tc.doc), &c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Unmarshal(%q): got %v, want an error containing %q", tc.doc, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%q): %v", tc.doc, err)
			}
			if time.Duration(c.Interval) != tc.want {
				t.Errorf("Unmarshal(%q): got interval %s, want %s", tc.doc, time.Duration(c.Interval), tc.want)
			}
		})
	}
}

// TestConfigYAML decodes a checks list strictly, as a node config does, and
// encodes it back.
func TestConfigYAML(t *testing.T) {
	doc := `
- name: registry
  type: registry-pull
  registry: https://127.0.0.1:5000
  image: library/hello-world:latest
  platform: linux/arm64
  credentials_file: /etc/hm/creds
  ca_file: /etc/hm/ca.pem
  interval: 30s
  timeout: 20s
  fall: 2
  rise: 3
- name: core
  type: http
  url: http://127.0.0.1:8080/ping
  method: HEAD
  status: "200"
  body_contains: pong
- name: redis
  type: redis
  address: 127.0.0.1:6379
  password_file: /etc/hm/redis
  role: master
- name: script
  type: exec
  argv: ["pgrep -x core"]
  shell: true
  env: [TZ=UTC, LANG]
`
	want := []Config{
		{Name: "registry", Type: TypeRegistryPull, Registry: "https://127.0.0.1:5000", Image: "library/hello-world:latest", Platform: "linux/arm64",
			CredentialsFile: "/etc/hm/creds", CAFile: "/etc/hm/ca.pem", Interval: conf.Duration(30 * time.Second), Timeout: conf.Duration(20 * time.Second), Fall: 2, Rise: 3},
		{Name: "core", Type: TypeHTTP, URL: "http://127.0.0.1:8080/ping", Method: "HEAD", Status: "200", BodyContains: "pong"},
		{Name: "redis", Type: TypeRedis, Address: "127.0.0.1:6379", PasswordFile: "/etc/hm/redis", Role: "master"},
		{Name: "script", Type: TypeExec, Argv: []string{"pgrep -x core"}, Shell: true, Env: []string{"TZ=UTC", "LANG"}},
	}
	var got []Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode:\n got %+v\nwant %+v", got, want)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(got); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if !strings.Contains(buf.String(), "interval: 30s") {
		t.Errorf("Encode: got\n%s\nwant interval written as a duration string (interval: 30s)", buf.String())
	}
	var back []Config
	if err := yaml.Unmarshal(buf.Bytes(), &back); err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("round trip: got %+v (err %v), want %+v", back, err, want)
	}
	var unknown []Config
	dec = yaml.NewDecoder(strings.NewReader("- name: x\n  type: tcp\n  adress: 127.0.0.1:1\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&unknown); err == nil || !strings.Contains(err.Error(), "adress") {
		t.Errorf("Decode with a misspelt field: got %v, want an error naming adress", err)
	}
}

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		in     string
		scheme string
		params map[string]string
	}{
		{`Bearer realm="https://h/service/token",service="harbor-registry",scope="repository:library/x:pull"`, "bearer",
			map[string]string{"realm": "https://h/service/token", "service": "harbor-registry", "scope": "repository:library/x:pull"}},
		{`Basic realm="Harbor"`, "basic", map[string]string{"realm": "Harbor"}},
		{`bearer realm=https://h/t, service=reg`, "bearer", map[string]string{"realm": "https://h/t", "service": "reg"}},
		{`Bearer realm="a\"b",scope="x y"`, "bearer", map[string]string{"realm": `a"b`, "scope": "x y"}},
		{`Negotiate`, "negotiate", map[string]string{}},
	}
	for _, tc := range tests {
		got := parseChallenge(tc.in)
		if got.scheme != tc.scheme || !reflect.DeepEqual(got.params, tc.params) {
			t.Errorf("parseChallenge(%q): got %q %v, want %q %v", tc.in, got.scheme, got.params, tc.scheme, tc.params)
		}
	}
}

func TestPlatformMatches(t *testing.T) {
	tests := []struct {
		want, entry string
		match       bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64", "linux/arm64", false},
		{"linux/amd64", "windows/amd64", false},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64/v8", "linux/arm64", true},
		{"linux/arm/v7", "linux/arm/v6", false},
		{"linux/arm/v7", "linux/arm/v7", true},
	}
	for _, tc := range tests {
		w, err1 := parsePlatform(tc.want)
		e, err2 := parsePlatform(tc.entry)
		if err1 != nil || err2 != nil {
			t.Fatalf("parsePlatform(%q, %q): %v %v", tc.want, tc.entry, err1, err2)
		}
		if got := w.matches(e); got != tc.match {
			t.Errorf("%s matches %s: got %t, want %t", tc.want, tc.entry, got, tc.match)
		}
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", 600) // 1200 bytes
	if got := clipHead(long, 512); len(got) > 512 || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "éé") {
		t.Errorf("clipHead: got %d bytes %q…, want at most 512 bytes of whole runes ending in …", len(got), got[:8])
	}
	if got := clipTail(long+"end", 100); len(got) > 100 || !strings.HasSuffix(got, "éend") || !strings.HasPrefix(got, "…é") {
		t.Errorf("clipTail: got %d bytes %q, want at most 100 bytes of whole runes starting with …", len(got), got)
	}
	if got := clipHead("a\xffb", 10); got != "a\uFFFDb" {
		t.Errorf("clipHead(invalid UTF-8): got %q, want %q", got, "a\uFFFDb")
	}
	if got := clipHead("short", 10); got != "short" {
		t.Errorf("clipHead(short): got %q, want it unchanged", got)
	}
}
