// Package config loads and validates a node's own configuration file: its
// identity, addresses, data dir, bootstrap peers and timing profile. The
// cluster-wide spec lives in the replicated state; only the path of the spec
// that seeds it at bootstrap is here.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/harbormaster/harbormaster/agent/checks"
	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/internal/conf"
	"github.com/harbormaster/harbormaster/internal/hostport"
	"github.com/harbormaster/harbormaster/internal/secretfile"
	"github.com/harbormaster/harbormaster/internal/yamlstrict"

	"github.com/harbormaster/harbormaster/spec"
)

// Config is one node's configuration.
type Config struct {
	// NodeID names the node: a DNS label, unique in the cluster.
	NodeID string `yaml:"node_id"`
	// RaftAddr is the host:port the Raft transport listens on and other nodes
	// dial; it must be reachable by them (not 0.0.0.0).
	RaftAddr string `yaml:"raft_addr"`
	// APIAddr is the host:port of the gRPC admin API. It may be a wildcard
	// (0.0.0.0:7201) when AdvertiseAPIAddr says how others reach it.
	APIAddr string `yaml:"api_addr"`
	// AdvertiseAPIAddr is the API address other nodes dial (forwarding,
	// lease renewals); default APIAddr. Required when APIAddr is a wildcard.
	AdvertiseAPIAddr string `yaml:"advertise_api_addr,omitempty"`
	// MetricsAddr is the host:port of the Prometheus endpoint; empty disables it.
	MetricsAddr string `yaml:"metrics_addr,omitempty"`
	// DataDir holds the Raft log, stable store and snapshots.
	DataDir string `yaml:"data_dir"`
	// Profile names the timing profile: lan (default), fast or wan.
	Profile string `yaml:"profile,omitempty"`
	// Timing overrides single values of the profile.
	Timing TimingOverrides `yaml:"timing,omitempty"`
	// Voter says whether the node votes (default true). Non-voters must join.
	Voter *bool `yaml:"voter,omitempty"`
	// Witness nodes vote but never hold a role: the third voter of a two-node site.
	Witness bool `yaml:"witness,omitempty"`
	// Bootstrap is the static list of the cluster's initial voters, this node
	// included. Bootstrapping is idempotent: a node that already has state
	// ignores it.
	Bootstrap []Peer `yaml:"bootstrap,omitempty"`
	// Join lists API addresses of existing members this node asks to be
	// added through, at every start, until one accepts.
	Join []string `yaml:"join,omitempty"`
	// SpecFile seeds the cluster spec at bootstrap; relative to the config
	// file. Ignored once the cluster has a spec.
	SpecFile string `yaml:"spec_file,omitempty"`
	// VIPInterface is the interface this node puts virtual IPs on. A node
	// without one is never given a vip role.
	VIPInterface string `yaml:"vip_interface,omitempty"`
	// GARP tunes the announcements of an acquired VIP (keepalived's
	// garp_master_repeat, the interval between them, garp_master_refresh).
	GARP GARPConfig `yaml:"garp,omitempty"`
	// Checks are the pull health checks this node runs on itself
	// (agent/checks; keepalived's vrrp_script semantics). Roles name them
	// under requires in the spec.
	Checks []checks.Config `yaml:"checks,omitempty"`
	// Services says how this node starts and stops each service role it
	// may hold (agent/service), by role name. A node without the entry for
	// a service role is never given it, unless it declares no services at
	// all (then it may hold any service role and runs nothing for it).
	Services map[string]service.Config `yaml:"services,omitempty"`
	// Redis is this node's Redis (agent/redisctl): the agent reports its
	// replication state and makes it master or replica for the spec's
	// redis-master role. A node without it never holds that role.
	Redis *redisctl.Config `yaml:"redis,omitempty"`
	// Sentinel runs the Sentinel-compatible discovery listener
	// (agent/sentinel), so clients configured for Redis Sentinel follow
	// the redis-master role.
	Sentinel *SentinelConfig `yaml:"sentinel,omitempty"`
	// Pprof serves Go's /debug/pprof/ profiles on metrics_addr (off by
	// default: profiles reveal internals; keep metrics_addr private).
	Pprof bool `yaml:"pprof,omitempty"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level,omitempty"`
	// LogFormat is text (key=value lines, the default) or json (one JSON
	// object a line); hashicorp/raft's lines come out in it too.
	LogFormat string `yaml:"log_format,omitempty"`
	// TLS is the node's identity: mutual TLS on the Raft port, the API,
	// lease renewals' keys, metrics off loopback and (optionally) the
	// Sentinel listener (docs/security.md). Required unless Insecure.
	TLS *TLSConfig `yaml:"tls,omitempty"`
	// Insecure runs every channel in plain text, unauthenticated: anyone
	// who reaches the ports controls the cluster. For labs and demos only;
	// the agent warns at every start.
	Insecure bool `yaml:"insecure,omitempty"`

	// Spec is the parsed SpecFile (nil when none), filled by Load.
	Spec *spec.Spec `yaml:"-"`
	// Path is the file the config was loaded from.
	Path string `yaml:"-"`
}

// TLSConfig names the PEM files of the node's identity (internal/tlsid):
// the cluster CA, the node's certificate (harbormaster://CLUSTER/node/ID)
// and its key. Relative paths start at the config file's folder. SIGHUP
// reloads them.
type TLSConfig struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// GARPConfig tunes gratuitous ARP / unsolicited NA announcements.
type GARPConfig struct {
	Repeat   int           `yaml:"repeat,omitempty"`   // announcements per acquisition (default 3)
	Interval conf.Duration `yaml:"interval,omitempty"` // between them (default 100ms)
	Refresh  conf.Duration `yaml:"refresh,omitempty"`  // re-announce period while held (default off)
}

// SentinelConfig is the Sentinel-compatible listener.
type SentinelConfig struct {
	// Addr is the listen host:port (Sentinel's default port is 26379).
	Addr string `yaml:"addr"`
	// Announce is how clients and the other agents reach it (default
	// Addr; required when Addr is a wildcard).
	Announce string `yaml:"announce,omitempty"`
	// PasswordFile makes clients AUTH (first line: the password). A secret
	// file: mode 0600 or 0400, owned by the agent's user or root.
	PasswordFile string `yaml:"password_file,omitempty"`
	// MaxConnections bounds the open client connections (default 1024,
	// at most MaxSentinelConnections); one more is refused at once.
	MaxConnections int `yaml:"max_connections,omitempty"`
	// IdleTimeout closes a connection that sends nothing for that long,
	// unless it is subscribed (default 5m, 1s to 24h).
	IdleTimeout conf.Duration `yaml:"idle_timeout,omitempty"`
	// TLS serves the listener over TLS with the node's certificate (the
	// tls section); clients verify it with the cluster CA and present
	// none (Redis clients' tls options).
	TLS bool `yaml:"tls,omitempty"`
}

// Defaults and bounds of the sentinel section (the defaults are
// agent/sentinel's).
const (
	DefaultSentinelConnections = 1024
	DefaultSentinelIdle        = 5 * time.Minute
	MaxSentinelConnections     = 65536
	MinSentinelIdle            = time.Second
	MaxSentinelIdle            = 24 * time.Hour
)

// Bounds of the garp section.
const (
	MaxGARPInterval = 10 * time.Second
	MaxGARPRefresh  = 24 * time.Hour
)

// MaxSize bounds a config file, and a spec file it names (spec.MaxSize).
const MaxSize = 1 << 20

// AnnounceAddr is the address others use to reach the listener.
func (s *SentinelConfig) AnnounceAddr() string {
	if s.Announce != "" {
		return s.Announce
	}
	return s.Addr
}

// Peer is one initial voter.
type Peer struct {
	ID       string `yaml:"id"`
	RaftAddr string `yaml:"raft_addr"`
}

// TimingOverrides replaces single values of the timing profile.
type TimingOverrides struct {
	Heartbeat   conf.Duration `yaml:"heartbeat,omitempty"`
	Election    conf.Duration `yaml:"election,omitempty"`
	LeaderLease conf.Duration `yaml:"leader_lease,omitempty"`
	Lease       conf.Duration `yaml:"lease,omitempty"`
	Renew       conf.Duration `yaml:"renew,omitempty"`
}

// Error is a configuration problem: it names the field and the fix. The CLI
// exits with code 2 on it.
type Error struct {
	Path  string // config file, may be empty
	Field string
	Msg   string
}

func (e *Error) Error() string {
	p := ""
	if e.Path != "" {
		p = e.Path + ": "
	}
	if e.Field == "" {
		return p + e.Msg
	}
	return p + e.Field + ": " + e.Msg
}

// IsVoter reports whether the node votes.
func (c *Config) IsVoter() bool { return c.Voter == nil || *c.Voter }

// Load reads, decodes strictly, applies defaults and overrides (such as the
// --data-dir flag), validates a config file, then loads and parses its spec
// file. Secret files (SecretFiles) that exist must be mode 0600 or 0400 and
// owned by the agent's user or root. Every failure is an *Error: the first
// of those Check lists.
func Load(path string, overrides ...func(*Config)) (*Config, error) {
	c, ps := Check(path, overrides...)
	if len(ps) > 0 {
		return nil, ps[0]
	}
	return c, nil
}

// Check loads a config file as Load does but lists every independent
// problem, in order: a read or decoding failure alone (decoding cannot go
// on), else each of Problems, each secret file others may read or write,
// and the spec file's failure. Each *Error has Path set. The config is
// returned only when there is no problem.
func Check(path string, overrides ...func(*Config)) (*Config, []*Error) {
	b, err := readFile(path, MaxSize)
	if err != nil {
		return nil, []*Error{{Path: path, Msg: fmt.Sprintf("cannot read the config file: %v", err)}}
	}
	c, derr := decode(b, overrides...)
	if derr != nil {
		derr.Path = path
		return nil, []*Error{derr}
	}
	ps := problems(c.Problems())
	c.Path = path
	if c.TLS != nil {
		for _, f := range []*string{&c.TLS.CAFile, &c.TLS.CertFile, &c.TLS.KeyFile} {
			if *f != "" && !filepath.IsAbs(*f) {
				*f = filepath.Join(filepath.Dir(path), *f)
			}
		}
	}
	for _, f := range c.SecretFiles() {
		if err := secretfile.CheckExisting(f.Field, f.Path); err != nil {
			ps.add(sectionErr(f.Field, err))
		}
	}
	if c.SpecFile != "" {
		ps.add(c.loadSpec())
	}
	if len(ps) > 0 {
		for _, e := range ps {
			e.Path = path
		}
		return nil, ps
	}
	return c, nil
}

// loadSpec reads and parses the spec file into c.Spec, resolving
// c.SpecFile against the config file's folder.
func (c *Config) loadSpec() error {
	sp := c.SpecFile
	if !filepath.IsAbs(sp) {
		sp = filepath.Join(filepath.Dir(c.Path), sp)
	}
	doc, err := readFile(sp, spec.MaxSize)
	if err != nil {
		return fieldErr("spec_file", "cannot read %s: %v; fix the path (relative paths start at the config file's folder)", sp, err)
	}
	s, err := spec.Parse(doc)
	if err != nil {
		return fieldErr("spec_file", "%s: %v", sp, err)
	}
	c.SpecFile = sp
	c.Spec = s
	return nil
}

// SecretFile is a file named in the config that holds a secret.
type SecretFile struct {
	Field string // its field, e.g. checks[0].credentials_file
	Path  string
}

// SecretFiles lists the secret files the config names, in config order:
// the checks' credentials_file and password_file, redis.password_file and
// sentinel.password_file. Load refuses any of them that exists but others
// may read or write (internal/secretfile); their readers check again at
// every read.
func (c *Config) SecretFiles() []SecretFile {
	var out []SecretFile
	add := func(field, path string) {
		if path != "" {
			out = append(out, SecretFile{Field: field, Path: path})
		}
	}
	for i, ch := range c.Checks {
		add(fmt.Sprintf("checks[%d].credentials_file", i), ch.CredentialsFile)
		add(fmt.Sprintf("checks[%d].password_file", i), ch.PasswordFile)
	}
	if c.Redis != nil {
		add("redis.password_file", c.Redis.PasswordFile)
	}
	if c.Sentinel != nil {
		add("sentinel.password_file", c.Sentinel.PasswordFile)
	}
	if c.TLS != nil {
		add("tls.key_file", c.TLS.KeyFile)
	}
	return out
}

// readFile reads the file at path, refusing one over max bytes.
func readFile(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("the file is over %d bytes (%d KiB), the limit; a config or spec is a few KiB", max, max>>10)
	}
	return b, nil
}

// Parse decodes a config document, applies defaults and overrides, and
// validates it (no spec file loading). A document over MaxSize is refused.
func Parse(doc []byte, overrides ...func(*Config)) (*Config, error) {
	c, derr := decode(doc, overrides...)
	if derr != nil {
		return nil, derr
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decode decodes a config document strictly and applies defaults and
// overrides; it does not validate.
func decode(doc []byte, overrides ...func(*Config)) (*Config, *Error) {
	if len(doc) > MaxSize {
		return nil, &Error{Msg: fmt.Sprintf("the config is %d bytes, over the %d-byte (%d KiB) limit; a node config is a few KiB", len(doc), MaxSize, MaxSize>>10)}
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Msg: "the config file is empty; it needs at least node_id, raft_addr, api_addr and data_dir"}
		}
		return nil, &Error{Msg: yamlMsg(err)}
	}
	if yamlstrict.ExtraDocument(dec) {
		return nil, &Error{Msg: "the file holds more than one YAML document (a second ---); keep one"}
	}
	c.applyDefaults()
	for _, o := range overrides {
		o(&c)
	}
	return &c, nil
}

// yamlMsg makes yaml.v3's strict-decoding errors name the fix.
func yamlMsg(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	if strings.Contains(msg, "not found in type") {
		// "line 3: field nodeid not found in type config.Config"
		msg = msg[:strings.Index(msg, " not found in type")]
		return msg + " is not a known field; check its spelling against docs/configuration.md"
	}
	return msg
}

func (c *Config) applyDefaults() {
	if c.Profile == "" {
		c.Profile = "lan"
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	for i := range c.Checks {
		c.Checks[i].Normalize()
	}
	if s := c.Sentinel; s != nil {
		if s.MaxConnections == 0 {
			s.MaxConnections = DefaultSentinelConnections
		}
		if s.IdleTimeout == 0 {
			s.IdleTimeout = conf.Duration(DefaultSentinelIdle)
		}
	}
}

// CheckNames returns the names of the node's checks, in config order.
func (c *Config) CheckNames() []string {
	var out []string
	for _, ch := range c.Checks {
		out = append(out, ch.Name)
	}
	return out
}

// ServiceNames returns the service roles the node has an actuator for, sorted.
func (c *Config) ServiceNames() []string {
	var out []string
	for name := range c.Services {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// problems collects the problems of a config, in the order Validate checks
// them.
type problems []*Error

// add appends err (an *Error, or any error as an *Error without a field);
// it reports whether err was nil.
func (p *problems) add(err error) bool {
	if err == nil {
		return true
	}
	var ce *Error
	if !errors.As(err, &ce) {
		ce = &Error{Msg: err.Error()}
	}
	*p = append(*p, ce)
	return false
}

// redisProblems checks the redis and sentinel sections. raftOK says
// raft_addr is valid (redis.announce is compared with it).
func (c *Config) redisProblems(p *problems, raftOK bool) {
	if c.Redis != nil {
		if err := c.Redis.Validate("redis"); err != nil {
			p.add(sectionErr("redis", err))
		} else if raftOK && redisctl.IsLoopback(c.Redis.AnnounceAddr()) && !redisctl.IsLoopback(c.RaftAddr) {
			p.add(fieldErr("redis.announce", "%s is a loopback address, but the other nodes' Redis replicate from it; set announce to this node's address on the cluster network", c.Redis.AnnounceAddr()))
		}
	}
	s := c.Sentinel
	if s == nil {
		return
	}
	if p.add(checkListen("sentinel.addr", s.Addr)) {
		if s.Announce != "" {
			p.add(checkDialable("sentinel.announce", s.Announce))
		} else if err := checkDialable("sentinel.addr", s.Addr); err != nil {
			p.add(fieldErr("sentinel.addr", "%s listens on every address; set sentinel.announce to the address clients dial", s.Addr))
		}
	} else if s.Announce != "" {
		p.add(checkDialable("sentinel.announce", s.Announce))
	}
	if s.PasswordFile != "" && !filepath.IsAbs(s.PasswordFile) {
		p.add(fieldErr("sentinel.password_file", "%q is relative; give an absolute path", s.PasswordFile))
	}
	// Zero is the default (applyDefaults fills it in; a Config built
	// in code may leave it).
	if s.MaxConnections < 0 || s.MaxConnections > MaxSentinelConnections {
		p.add(fieldErr("sentinel.max_connections", "%d is out of range; use 1 to %d (default 1024)", s.MaxConnections, MaxSentinelConnections))
	}
	if d := time.Duration(s.IdleTimeout); d != 0 && d < MinSentinelIdle {
		p.add(fieldErr("sentinel.idle_timeout", "%s is too short; use at least %s (default 5m)", d, MinSentinelIdle))
	} else {
		p.add(atMost("sentinel.idle_timeout", time.Duration(s.IdleTimeout), MaxSentinelIdle, "idle connections hold places of max_connections"))
	}
	if s.TLS && c.TLS == nil {
		p.add(fieldErr("sentinel.tls", "is true but the node has no tls section; the listener serves the node's certificate, so set tls (or remove sentinel.tls)"))
	}
	if c.Redis == nil {
		p.add(fieldErr("sentinel", "is set without redis; the listener answers for the redis-master role, configure this node's redis too"))
	}
}

// sectionErr turns a config section's error (a *conf.FieldError naming the
// field under it, from agent/checks, agent/service or agent/redisctl) into
// an *Error.
func sectionErr(section string, err error) error {
	var fe *conf.FieldError
	if errors.As(err, &fe) {
		return &Error{Field: fe.Field, Msg: fe.Msg}
	}
	return &Error{Field: section, Msg: err.Error()}
}

// checksAndServicesProblems maps the sub-packages' field errors to *Error:
// every check's, then every service's (by name).
func (c *Config) checksAndServicesProblems(p *problems) {
	for _, err := range checks.Problems(c.Checks) {
		p.add(sectionErr("checks", err))
	}
	for _, name := range c.ServiceNames() {
		if !spec.ValidName(name) {
			p.add(fieldErr("services", "%q is not a role name; use the name of a service role of the spec (1-63 lower-case letters, digits, inner hyphens)", name))
			continue
		}
		sc := c.Services[name]
		if err := sc.Validate("services." + name); err != nil {
			p.add(sectionErr("services."+name, err))
		}
	}
}

// validateTLS requires exactly one of tls and insecure: true.
func (c *Config) validateTLS() error {
	if c.TLS == nil {
		if !c.Insecure {
			return fieldErr("tls", "is missing; give the node's ca_file, cert_file and key_file (harbormaster tls ca create, harbormaster tls cert create --node %s; docs/security.md), or set insecure: true to run without authentication (labs only)", c.NodeID)
		}
		return nil
	}
	if c.Insecure {
		return fieldErr("insecure", "is true while tls is set; remove one of them")
	}
	for _, f := range []struct{ name, v string }{{"tls.ca_file", c.TLS.CAFile}, {"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile}} {
		if f.v == "" {
			return fieldErr(f.name, "is missing; tls needs ca_file, cert_file and key_file")
		}
	}
	return nil
}

func fieldErr(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// atMost is conf.AtMost as an *Error.
func atMost(field string, d, max time.Duration, reason string) error {
	if err := conf.AtMost(field, d, max, reason); err != nil {
		return sectionErr(field, err)
	}
	return nil
}

// Validate checks every field and returns the first problem (the first of
// Problems) as an *Error.
func (c *Config) Validate() error {
	if ps := c.Problems(); len(ps) > 0 {
		return ps[0]
	}
	return nil
}

// Problems checks every field and lists each independent problem, in a
// fixed order (Validate returns the first): node_id, the addresses,
// data_dir, the timing, witness and pprof, each check and service, redis
// and sentinel, vip_interface, garp, log_level, bootstrap and join, tls. A
// check that depends on another field (api_addr differing from raft_addr,
// bootstrap listing this node) runs only when that field is valid, so one
// mistake is reported once; within one field, or one check or service
// entry, only the first problem is. Nil when the config is valid.
func (c *Config) Problems() []*Error {
	var p problems
	idOK := false
	if c.NodeID == "" {
		p.add(fieldErr("node_id", "is missing; name the node, e.g. node_id: n1"))
	} else if !spec.ValidName(c.NodeID) {
		p.add(fieldErr("node_id", "%q is not valid; use 1-63 lower-case letters, digits and inner hyphens, e.g. n1", c.NodeID))
	} else {
		idOK = true
	}
	raftOK := p.add(checkDialable("raft_addr", c.RaftAddr))
	apiOK := p.add(checkListen("api_addr", c.APIAddr))
	if c.AdvertiseAPIAddr != "" {
		p.add(checkDialable("advertise_api_addr", c.AdvertiseAPIAddr))
	} else if apiOK {
		if err := checkDialable("api_addr", c.APIAddr); err != nil {
			var ce *Error
			if errors.As(err, &ce) {
				ce.Msg += "; or keep it and set advertise_api_addr to the address other nodes dial"
			}
			p.add(err)
		}
	}
	metricsOK := c.MetricsAddr != "" && p.add(checkListen("metrics_addr", c.MetricsAddr))
	if raftOK && apiOK && c.APIAddr == c.RaftAddr {
		p.add(fieldErr("api_addr", "is the same as raft_addr (%s); give the API its own port", c.APIAddr))
	}
	if metricsOK && (c.MetricsAddr == c.APIAddr || c.MetricsAddr == c.RaftAddr) {
		p.add(fieldErr("metrics_addr", "%s is already used by raft_addr or api_addr; give metrics its own port", c.MetricsAddr))
	}
	if c.DataDir == "" {
		p.add(fieldErr("data_dir", "is missing; set it in the file or pass --data-dir DIR"))
	}
	_, err := c.TimingProfile()
	p.add(err)
	if c.Witness && !c.IsVoter() {
		p.add(fieldErr("witness", "a witness exists to vote; remove voter: false or witness: true"))
	}
	if c.Pprof && c.MetricsAddr == "" {
		p.add(fieldErr("pprof", "needs metrics_addr, where the profiles are served; set metrics_addr or remove pprof"))
	}
	c.checksAndServicesProblems(&p)
	c.redisProblems(&p, raftOK)
	if c.VIPInterface != "" && !validIfname(c.VIPInterface) {
		p.add(fieldErr("vip_interface", "%q is not an interface name (1-15 characters, no '/', ':' or spaces)", c.VIPInterface))
	}
	if c.GARP.Repeat < 0 || c.GARP.Repeat > 100 {
		p.add(fieldErr("garp.repeat", "%d is out of range; use 1 to 100", c.GARP.Repeat))
	}
	if c.GARP.Interval < 0 || (c.GARP.Interval > 0 && time.Duration(c.GARP.Interval) < time.Millisecond) {
		p.add(fieldErr("garp.interval", "%s is too short; use at least 1ms", time.Duration(c.GARP.Interval)))
	} else {
		p.add(atMost("garp.interval", time.Duration(c.GARP.Interval), MaxGARPInterval, "the announcements of a moved VIP are spread over repeat intervals, while neighbours may still send to the old holder"))
	}
	if c.GARP.Refresh < 0 || (c.GARP.Refresh > 0 && time.Duration(c.GARP.Refresh) < 100*time.Millisecond) {
		p.add(fieldErr("garp.refresh", "%s is too short; use at least 100ms, or leave it out to turn refreshes off", time.Duration(c.GARP.Refresh)))
	} else {
		p.add(atMost("garp.refresh", time.Duration(c.GARP.Refresh), MaxGARPRefresh, "or leave it out to turn refreshes off"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.add(fieldErr("log_level", "%q is not a level; use debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "", "text", "json": // "" before defaults: text
	default:
		p.add(fieldErr("log_format", "%q is not a log format; use text or json", c.LogFormat))
	}
	c.peerProblems(&p, idOK, raftOK)
	for i, a := range c.Join {
		p.add(checkDialable(fmt.Sprintf("join[%d]", i), a))
	}
	p.add(c.validateTLS())
	return p
}

// peerProblems checks bootstrap (and its conflict with join). idOK and
// raftOK say node_id and raft_addr are valid: bootstrap must list this node
// with its raft_addr.
func (c *Config) peerProblems(p *problems, idOK, raftOK bool) {
	if len(c.Bootstrap) > 0 && len(c.Join) > 0 {
		p.add(fieldErr("join", "is set together with bootstrap; list bootstrap on the initial voters only and join on nodes added later"))
		return
	}
	if len(c.Bootstrap) == 0 {
		return
	}
	if !c.IsVoter() {
		p.add(fieldErr("bootstrap", "a non-voter cannot bootstrap the cluster; remove bootstrap and list existing members under join"))
		return
	}
	ids := map[string]int{}
	addrs := map[string]int{}
	self := false
	for i, peer := range c.Bootstrap {
		f := fmt.Sprintf("bootstrap[%d]", i)
		if !spec.ValidName(peer.ID) {
			p.add(fieldErr(f+".id", "%q is not a valid node id; use the node_id of that node's config", peer.ID))
		} else if j, dup := ids[peer.ID]; dup {
			p.add(fieldErr(f+".id", "%q is listed twice (also bootstrap[%d]); list each node once", peer.ID, j))
		} else {
			ids[peer.ID] = i
		}
		addrOK := p.add(checkDialable(f+".raft_addr", peer.RaftAddr))
		if addrOK {
			if j, dup := addrs[peer.RaftAddr]; dup {
				p.add(fieldErr(f+".raft_addr", "%s is also the address of bootstrap[%d]; every node needs its own", peer.RaftAddr, j))
				addrOK = false
			} else {
				addrs[peer.RaftAddr] = i
			}
		}
		if idOK && peer.ID == c.NodeID {
			self = true
			if addrOK && raftOK && peer.RaftAddr != c.RaftAddr {
				p.add(fieldErr(f+".raft_addr", "is %s but this node's raft_addr is %s; make them the same", peer.RaftAddr, c.RaftAddr))
			}
		}
	}
	if idOK && !self {
		p.add(fieldErr("bootstrap", "does not list this node (%s); add {id: %s, raft_addr: %s} or remove bootstrap and use join", c.NodeID, c.NodeID, c.RaftAddr))
	}
	if len(c.Bootstrap)%2 == 0 {
		p.add(fieldErr("bootstrap", "lists %d voters; use an odd number (3, 5 or 7), adding a witness node for a two-node site", len(c.Bootstrap)))
	}
}

// checkListen validates a host:port to listen on: the host may be empty or
// unspecified (0.0.0.0, ::) to listen on every address.
func checkListen(field, addr string) error {
	_, err := checkHostPort(field, addr)
	return err
}

// checkDialable validates a host:port other nodes dial: unlike checkListen
// it refuses an empty or unspecified host.
func checkDialable(field, addr string) error {
	host, err := checkHostPort(field, addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fieldErr(field, "%q has no host; other nodes must be able to dial it, so give the node's address", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fieldErr(field, "%q is not an address other nodes can dial; give the node's own address", addr)
	}
	return nil
}

// checkHostPort validates addr's form and returns its host.
func checkHostPort(field, addr string) (host string, err error) {
	if addr == "" {
		return "", fieldErr(field, "is missing; write host:port, e.g. 127.0.0.1:7101")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fieldErr(field, "%q is not host:port (%v); write it like 127.0.0.1:7101 or [fd00::1]:7101", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fieldErr(field, "port %q in %q is not a number from 1 to 65535", port, addr)
	}
	if host != "" && net.ParseIP(host) == nil && !hostport.ValidHostname(host) {
		return "", fieldErr(field, "host %q in %q is neither an IP address nor a valid host name", host, addr)
	}
	return host, nil
}

func validIfname(n string) bool {
	if len(n) == 0 || len(n) > 15 || n == "." || n == ".." {
		return false
	}
	return !strings.ContainsAny(n, "/: \t\n")
}
