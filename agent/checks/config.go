package checks

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/internal/childenv"
	"github.com/harbormaster/harbormaster/internal/conf"
	"github.com/harbormaster/harbormaster/internal/hostport"

	"github.com/harbormaster/harbormaster/spec"
)

// Check types, the values of Config.Type.
const (
	TypeRegistryPull = "registry-pull"
	TypeHTTP         = "http"
	TypeHTTPS        = "https"
	TypeTCP          = "tcp"
	TypeRedis        = "redis"
	TypeExec         = "exec"
)

// Defaults filled by Normalize.
const (
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = 5 * time.Second
	DefaultStatus   = "200-399"
	DefaultMethod   = "GET"
)

// Bounds Validate enforces: MinInterval and MaxInterval for the interval
// (the timeout is at most the interval), MaxCount for rise and fall. A
// role waits up to fall (rise) intervals to follow its check, so both are
// bounded.
const (
	MinInterval = 10 * time.Millisecond
	MaxInterval = time.Hour
	MaxCount    = 100
)

const typeList = "registry-pull, http, https, tcp, redis or exec"

// Config is one check in a node's config file:
//
//	checks:
//	  - name: registry
//	    type: registry-pull
//	    registry: https://127.0.0.1:5000
//	    image: library/hello-world:latest
//	    credentials_file: /etc/harbormaster/pull-credentials
//	    ca_file: /etc/harbormaster/harbor-ca.pem
//	    interval: 30s
//	    timeout: 20s
//	    fall: 2
//	  - name: core
//	    type: http
//	    url: http://127.0.0.1:8080/api/v2.0/ping
//	  - name: redis
//	    type: redis
//	    address: 127.0.0.1:6379
//	    password_file: /etc/harbormaster/redis-password
//	    role: master
//
// Fields of other types than Type must be left out.
type Config struct {
	// Name identifies the check in role specs (requires) and status: a DNS
	// label, unique per node.
	Name string `yaml:"name"`
	// Type is registry-pull, http, https, tcp, redis or exec.
	Type string `yaml:"type"`
	// Interval is the time between probes (default 10s, at least 10ms).
	Interval conf.Duration `yaml:"interval,omitempty"`
	// Timeout bounds a probe (default 5s, or the interval when shorter);
	// it must be positive and at most the interval.
	Timeout conf.Duration `yaml:"timeout,omitempty"`
	// Fall is the number of consecutive failures that make the check
	// failing (default 1).
	Fall int `yaml:"fall,omitempty"`
	// Rise is the number of consecutive successes that make the check
	// passing (default 1).
	Rise int `yaml:"rise,omitempty"`

	// Registry is the registry's base URL, http:// or https:// without a
	// path (registry-pull).
	Registry string `yaml:"registry,omitempty"`
	// Image is the repository to pull with a tag or a digest:
	// library/hello-world:latest, library/hello-world@sha256:...; the tag
	// defaults to latest (registry-pull).
	Image string `yaml:"image,omitempty"`
	// Platform is the os/arch[/variant] picked from an image index
	// (registry-pull; default linux/<the agent's architecture>, without a
	// variant, which accepts the first entry of any variant: set it on arm).
	Platform string `yaml:"platform,omitempty"`
	// CredentialsFile is an absolute path to a file holding
	// "username:password" on its first line, used for the registry's Basic
	// or token authentication (registry-pull). Without it the pull is
	// anonymous. A secret file: mode 0600 or 0400, owned by the agent's
	// user or root (internal/secretfile).
	CredentialsFile string `yaml:"credentials_file,omitempty"`
	// CAFile is an absolute path to a PEM bundle of CA certificates trusted
	// in addition to the system's (registry-pull, https).
	CAFile string `yaml:"ca_file,omitempty"`
	// TokenRealms lists the token services a Bearer challenge may send the
	// pull to besides the default ones (registry-pull): an https realm on
	// the registry's host (any port), or a realm of the registry URL's own
	// scheme, host and port. An entry is a URL with a path (that realm
	// exactly) or without one (any realm of that scheme, host and port).
	// Any other realm fails the check and is sent nothing, credentials
	// included.
	TokenRealms []string `yaml:"token_realms,omitempty"`

	// URL is the URL to request; its scheme is the check's type (http,
	// https).
	URL string `yaml:"url,omitempty"`
	// Method is HEAD, GET (default), POST or OPTIONS (http, https).
	Method string `yaml:"method,omitempty"`
	// Status is the expected status: a range "200-399" (default) or one
	// code "204" (http, https).
	Status string `yaml:"status,omitempty"`
	// BodyContains, when set, must occur in the first MiB of the response
	// body (http, https).
	BodyContains string `yaml:"body_contains,omitempty"`

	// Address is the host:port to connect to (tcp, redis).
	Address string `yaml:"address,omitempty"`

	// PasswordFile is an absolute path to a file whose first line is the
	// AUTH password (redis). A line "username password" (a space between
	// them) authenticates an ACL user; a password containing spaces is
	// written "default <password>", default being the user requirepass
	// sets. A secret file, as CredentialsFile.
	PasswordFile string `yaml:"password_file,omitempty"`
	// Role, when set, is the replication role the server must have: master
	// or replica ("slave" is accepted as a synonym of replica) (redis).
	Role string `yaml:"role,omitempty"`

	// Argv is the program and its arguments, run without a shell (exec).
	// A bare program name is looked up in the program's PATH (Env). It runs
	// in / with stdin from /dev/null, in a process group of its own that is
	// killed when it exits or times out. It passes by exiting 0. The first
	// line of its output (sanitized, at most 200 bytes) is what leaves the
	// node; the rest stays in the agent's debug log.
	Argv []string `yaml:"argv,omitempty"`
	// Shell runs Argv's single element as a /bin/sh -c command line (exec).
	Shell bool `yaml:"shell,omitempty"`
	// Env is the program's environment besides PATH (default
	// internal/childenv.DefaultPath): entries NAME=value, or NAME to pass
	// the agent's own value through (exec). The agent's environment is not
	// passed otherwise.
	Env []string `yaml:"env,omitempty"`
}

func fieldErr(field, format string, args ...any) error { return conf.Errorf(field, format, args...) }

// Normalize fills the defaults in place: interval, timeout, fall, rise, and
// per type the method and status (http, https), the platform and the tag
// (registry-pull). It is idempotent.
func (c *Config) Normalize() {
	if c.Interval == 0 {
		c.Interval = conf.Duration(DefaultInterval)
	}
	if c.Timeout == 0 {
		c.Timeout = min(conf.Duration(DefaultTimeout), c.Interval)
	}
	if c.Fall == 0 {
		c.Fall = 1
	}
	if c.Rise == 0 {
		c.Rise = 1
	}
	switch c.Type {
	case TypeHTTP, TypeHTTPS:
		if c.Method == "" {
			c.Method = DefaultMethod
		}
		if c.Status == "" {
			c.Status = DefaultStatus
		}
	case TypeRegistryPull:
		if c.Platform == "" {
			c.Platform = "linux/" + runtime.GOARCH
		}
		if ref, err := parseImage(c.Image); err == nil && ref.tag == "" && ref.digest == "" {
			c.Image += ":latest"
		}
	}
}

// typeFields says which types use each type-specific field; Validate
// rejects a field set on a check of another type.
var typeFields = []struct {
	name  string
	isSet func(*Config) bool
	types []string
}{
	{"registry", func(c *Config) bool { return c.Registry != "" }, []string{TypeRegistryPull}},
	{"image", func(c *Config) bool { return c.Image != "" }, []string{TypeRegistryPull}},
	{"platform", func(c *Config) bool { return c.Platform != "" }, []string{TypeRegistryPull}},
	{"credentials_file", func(c *Config) bool { return c.CredentialsFile != "" }, []string{TypeRegistryPull}},
	{"ca_file", func(c *Config) bool { return c.CAFile != "" }, []string{TypeRegistryPull, TypeHTTPS}},
	{"token_realms", func(c *Config) bool { return len(c.TokenRealms) > 0 }, []string{TypeRegistryPull}},
	{"url", func(c *Config) bool { return c.URL != "" }, []string{TypeHTTP, TypeHTTPS}},
	{"method", func(c *Config) bool { return c.Method != "" }, []string{TypeHTTP, TypeHTTPS}},
	{"status", func(c *Config) bool { return c.Status != "" }, []string{TypeHTTP, TypeHTTPS}},
	{"body_contains", func(c *Config) bool { return c.BodyContains != "" }, []string{TypeHTTP, TypeHTTPS}},
	{"address", func(c *Config) bool { return c.Address != "" }, []string{TypeTCP, TypeRedis}},
	{"password_file", func(c *Config) bool { return c.PasswordFile != "" }, []string{TypeRedis}},
	{"role", func(c *Config) bool { return c.Role != "" }, []string{TypeRedis}},
	{"argv", func(c *Config) bool { return len(c.Argv) > 0 }, []string{TypeExec}},
	{"shell", func(c *Config) bool { return c.Shell }, []string{TypeExec}},
	{"env", func(c *Config) bool { return len(c.Env) > 0 }, []string{TypeExec}},
}

// Validate checks one config after Normalize and returns the first problem
// as a *conf.FieldError. field is the config's path in the file, e.g.
// "checks[2]"; every error names a field under it. Validate does no I/O:
// files are only required to be absolute paths (the probe reads them, so
// they may be rotated). It does not modify c.
func (c *Config) Validate(field string) error {
	sub := func(name string) string {
		if field == "" {
			return name
		}
		return field + "." + name
	}
	if c.Name == "" {
		return fieldErr(sub("name"), "is missing; name the check, e.g. name: registry")
	}
	if !spec.ValidName(c.Name) {
		return fieldErr(sub("name"), "%q is not valid; use 1-63 lower-case letters, digits and inner hyphens, e.g. registry-pull", c.Name)
	}
	switch c.Type {
	case TypeRegistryPull, TypeHTTP, TypeHTTPS, TypeTCP, TypeRedis, TypeExec:
	case "":
		return fieldErr(sub("type"), "is missing; use %s", typeList)
	default:
		return fieldErr(sub("type"), "%q is not a check type; use %s", c.Type, typeList)
	}
	if time.Duration(c.Interval) < MinInterval {
		return fieldErr(sub("interval"), "%s is too short; use at least %s, e.g. interval: 10s", c.Interval, MinInterval)
	}
	if err := conf.AtMost(sub("interval"), time.Duration(c.Interval), MaxInterval, "a role follows its check only at each probe"); err != nil {
		return err
	}
	if c.Timeout <= 0 {
		return fieldErr(sub("timeout"), "%s is not positive; give the time a probe may take, e.g. timeout: 5s", c.Timeout)
	}
	if c.Timeout > c.Interval {
		return fieldErr(sub("timeout"), "%s is longer than the interval (%s); a probe must end before the next is due: lower timeout or raise interval", c.Timeout, c.Interval)
	}
	if c.Fall < 1 {
		return fieldErr(sub("fall"), "is %d; give the number of consecutive failures that make the check fail, 1 or more", c.Fall)
	}
	if c.Rise < 1 {
		return fieldErr(sub("rise"), "is %d; give the number of consecutive successes that make the check pass, 1 or more", c.Rise)
	}
	if c.Fall > MaxCount {
		return fieldErr(sub("fall"), "is %d; use at most %d: a failing check goes unnoticed for fall intervals", c.Fall, MaxCount)
	}
	if c.Rise > MaxCount {
		return fieldErr(sub("rise"), "is %d; use at most %d: a recovered check goes unnoticed for rise intervals", c.Rise, MaxCount)
	}
	for _, f := range typeFields {
		if f.isSet(c) && !slices.Contains(f.types, c.Type) {
			return fieldErr(sub(f.name), "is not used by %s checks (only by %s); remove it", c.Type, strings.Join(f.types, " and "))
		}
	}
	for _, f := range []struct{ name, path string }{
		{"credentials_file", c.CredentialsFile}, {"ca_file", c.CAFile}, {"password_file", c.PasswordFile},
	} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return fieldErr(sub(f.name), "%q is a relative path, which would depend on the agent's working directory; give an absolute path", f.path)
		}
	}
	switch c.Type {
	case TypeRegistryPull:
		return c.validateRegistry(sub)
	case TypeHTTP, TypeHTTPS:
		return c.validateHTTP(sub)
	case TypeTCP:
		return checkAddr(sub("address"), c.Address)
	case TypeRedis:
		if err := checkAddr(sub("address"), c.Address); err != nil {
			return err
		}
		switch c.Role {
		case "", "master", "replica", "slave":
		default:
			return fieldErr(sub("role"), "%q is not a replication role; use master or replica, or leave it out to accept both", c.Role)
		}
	case TypeExec:
		return c.validateExec(sub)
	}
	return nil
}

func (c *Config) validateRegistry(sub func(string) string) error {
	if c.Registry == "" {
		return fieldErr(sub("registry"), "is missing; give the registry's base URL, e.g. registry: https://127.0.0.1:5000")
	}
	u, err := url.Parse(c.Registry)
	switch {
	case !strings.HasPrefix(c.Registry, "http://") && !strings.HasPrefix(c.Registry, "https://"):
		return fieldErr(sub("registry"), "%q does not start with http:// or https://; write it like https://127.0.0.1:5000", c.Registry)
	case err != nil:
		return fieldErr(sub("registry"), "%q is not a URL (%v); write it like https://127.0.0.1:5000", c.Registry, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fieldErr(sub("registry"), "%q does not start with http:// or https://; write it like https://127.0.0.1:5000", c.Registry)
	case u.Host == "":
		return fieldErr(sub("registry"), "%q has no host; write it like https://127.0.0.1:5000", c.Registry)
	case u.User != nil:
		return fieldErr(sub("registry"), "has credentials in it; remove them and put username:password in credentials_file")
	case strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "":
		return fieldErr(sub("registry"), "%q has a path or query; give the base URL only (the check adds /v2/...), e.g. https://127.0.0.1:5000", c.Registry)
	}
	if c.CAFile != "" && u.Scheme == "http" {
		return fieldErr(sub("ca_file"), "is set but the registry is reached over http://; remove ca_file or use an https:// registry URL")
	}
	for i, r := range c.TokenRealms {
		if _, err := parseRealmEntry(r); err != nil {
			return fieldErr(sub(fmt.Sprintf("token_realms[%d]", i)), "%v", err)
		}
	}
	if c.Image == "" {
		return fieldErr(sub("image"), "is missing; give the repository to pull with its tag, e.g. image: library/hello-world:latest")
	}
	if _, err := parseImage(c.Image); err != nil {
		return fieldErr(sub("image"), "%v", err)
	}
	if _, err := parsePlatform(c.Platform); err != nil {
		return fieldErr(sub("platform"), "%v", err)
	}
	return nil
}

func (c *Config) validateHTTP(sub func(string) string) error {
	if c.URL == "" {
		return fieldErr(sub("url"), "is missing; give the URL to request, e.g. url: %s://127.0.0.1:8080/api/v2.0/ping", c.Type)
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		return fieldErr(sub("url"), "%q is not a URL (%v)", c.URL, err)
	case u.Scheme != c.Type:
		return fieldErr(sub("url"), "%q is not an %s:// URL, as the check's type %s requires; fix the URL or set type: %s", c.URL, c.Type, c.Type, otherScheme(u.Scheme, c.Type))
	case u.Host == "":
		return fieldErr(sub("url"), "%q has no host", c.URL)
	case u.User != nil:
		return fieldErr(sub("url"), "has credentials in it; health check URLs must not need any")
	}
	switch c.Method {
	case "HEAD", "GET", "POST", "OPTIONS":
	default:
		return fieldErr(sub("method"), "%q is not allowed; use HEAD, GET, POST or OPTIONS (upper-case)", c.Method)
	}
	if _, err := parseStatus(c.Status); err != nil {
		return fieldErr(sub("status"), "%v", err)
	}
	if c.BodyContains != "" && c.Method == "HEAD" {
		return fieldErr(sub("body_contains"), "cannot be checked on HEAD responses, which have no body; use method: GET or remove body_contains")
	}
	return nil
}

func otherScheme(scheme, typ string) string {
	if scheme == TypeHTTP || scheme == TypeHTTPS {
		return scheme
	}
	return typ
}

func (c *Config) validateExec(sub func(string) string) error {
	if len(c.Argv) == 0 {
		return fieldErr(sub("argv"), "is missing; give the program and its arguments as a list, e.g. argv: [/usr/local/bin/check-harbor, --quick]")
	}
	if c.Shell && len(c.Argv) != 1 {
		return fieldErr(sub("argv"), "has %d elements, but shell: true runs exactly one command line; write it as one string, e.g. argv: [\"pgrep -x harbor_core >/dev/null\"]", len(c.Argv))
	}
	prog := c.Argv[0]
	switch {
	case strings.TrimSpace(prog) == "":
		return fieldErr(sub("argv[0]"), "is empty; give the program, e.g. /usr/local/bin/check-harbor")
	case !c.Shell && strings.ContainsRune(prog, '/') && !strings.HasPrefix(prog, "/"):
		return fieldErr(sub("argv[0]"), "%q is a relative path, which would depend on the agent's working directory; give an absolute path, or a bare program name looked up in PATH", prog)
	}
	for i, a := range c.Argv {
		if strings.ContainsRune(a, 0) {
			return fieldErr(sub(fmt.Sprintf("argv[%d]", i)), "contains a NUL byte, which cannot be passed to a program; remove it")
		}
	}
	return childenv.Validate(sub("env"), c.Env)
}

// ValidateAll validates the checks of one node, as the list "checks" of its
// config file: each check (after Normalize) and the uniqueness of names.
// It returns the first of Problems.
func ValidateAll(cs []Config) error {
	if ps := Problems(cs); len(ps) > 0 {
		return ps[0]
	}
	return nil
}

// Problems lists the problems of the checks of one node, in list order: the
// first problem of each check (a check's own fields are checked in order and
// stop at the first), and each name already used by an earlier valid check.
func Problems(cs []Config) []error {
	var out []error
	names := make(map[string]int, len(cs))
	for i := range cs {
		field := fmt.Sprintf("checks[%d]", i)
		if err := cs[i].Validate(field); err != nil {
			out = append(out, err)
			continue
		}
		if j, dup := names[cs[i].Name]; dup {
			out = append(out, fieldErr(field+".name", "%q is also the name of checks[%d]; give each check its own name", cs[i].Name, j))
			continue
		}
		names[cs[i].Name] = i
	}
	return out
}

// checkAddr validates a dialable host:port.
func checkAddr(field, addr string) error {
	if msg := hostport.Check(addr, "127.0.0.1:6379"); msg != "" {
		return fieldErr(field, "%s", msg)
	}
	return nil
}

// statusRange is an inclusive range of HTTP status codes.
type statusRange struct{ lo, hi int }

func (r statusRange) contains(code int) bool { return code >= r.lo && code <= r.hi }

func (r statusRange) String() string {
	if r.lo == r.hi {
		return strconv.Itoa(r.lo)
	}
	return fmt.Sprintf("%d-%d", r.lo, r.hi)
}

func parseStatus(s string) (statusRange, error) {
	code := func(v string) (int, bool) {
		n, err := strconv.Atoi(v)
		return n, err == nil && n >= 100 && n <= 599 && len(v) == 3
	}
	loS, hiS, isRange := strings.Cut(s, "-")
	if !isRange {
		hiS = loS
	}
	lo, ok1 := code(loS)
	hi, ok2 := code(hiS)
	if !ok1 || !ok2 {
		return statusRange{}, fmt.Errorf("%q is not a status code or range of codes from 100 to 599; write it like \"200-399\" or \"204\"", s)
	}
	if lo > hi {
		return statusRange{}, fmt.Errorf("%q is an empty range; put the lower code first, e.g. \"200-399\"", s)
	}
	return statusRange{lo, hi}, nil
}

// imageRef is a parsed Config.Image.
type imageRef struct {
	repo   string
	tag    string // "" when digest is set without a tag
	digest string // "" unless pulled by digest
}

// ref is what the manifest is fetched by: the digest if any, else the tag.
func (r imageRef) ref() string {
	if r.digest != "" {
		return r.digest
	}
	return r.tag
}

// String names the image in messages: repo:tag or repo@digest.
func (r imageRef) String() string {
	if r.digest != "" {
		return r.repo + "@" + r.digest
	}
	return r.repo + ":" + r.tag
}

// The grammar of github.com/distribution/reference, for a path without a
// domain.
var (
	repoRE   = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// parseImage parses repository[:tag][@sha256:hex]. A tag is optional (the
// caller defaults it).
func parseImage(s string) (imageRef, error) {
	var r imageRef
	rest := s
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		r.digest = rest[i+1:]
		rest = rest[:i]
		if !digestRE.MatchString(r.digest) {
			return imageRef{}, fmt.Errorf("%q has digest %q; write it like repository@sha256:<64 lower-case hex digits>", s, r.digest)
		}
	}
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		r.tag = rest[i+1:]
		rest = rest[:i]
		if !tagRE.MatchString(r.tag) {
			return imageRef{}, fmt.Errorf("%q has tag %q; a tag is 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", s, r.tag)
		}
	}
	r.repo = rest
	if len(rest) > 255 || !repoRE.MatchString(rest) {
		return imageRef{}, fmt.Errorf("%q is not a repository path; write it like library/hello-world:latest (lower-case, without the registry host, which goes in registry)", s)
	}
	return r, nil
}

// platform is an os/arch[/variant] of an image index entry.
type platform struct{ os, arch, variant string }

func (p platform) String() string {
	if p.variant == "" {
		return p.os + "/" + p.arch
	}
	return p.os + "/" + p.arch + "/" + p.variant
}

var platformPartRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

func parsePlatform(s string) (platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return platform{}, fmt.Errorf("%q is not os/arch[/variant]; write it like linux/amd64 or linux/arm64/v8", s)
	}
	for _, p := range parts {
		if !platformPartRE.MatchString(p) {
			return platform{}, fmt.Errorf("%q is not os/arch[/variant]; write it like linux/amd64 or linux/arm64/v8 (lower-case)", s)
		}
	}
	p := platform{os: parts[0], arch: parts[1]}
	if len(parts) == 3 {
		p.variant = parts[2]
	}
	return p, nil
}

// matches reports whether an index entry of platform e satisfies p. A
// variant left out of p accepts any variant; arm64's variant v8 is its
// default, so linux/arm64 and linux/arm64/v8 are the same.
func (p platform) matches(e platform) bool {
	if p.os != e.os || p.arch != e.arch {
		return false
	}
	if p.variant == "" {
		return true
	}
	norm := func(v string) string {
		if p.arch == "arm64" && v == "" {
			return "v8"
		}
		return v
	}
	return norm(p.variant) == norm(e.variant)
}
