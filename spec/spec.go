// Package spec defines the cluster-wide specification of roles and placement
// policy: the document an operator writes, seeds at bootstrap and changes with
// `harbormaster spec apply`. It is a leaf package: pure types, strict parsing
// and validation, no I/O beyond the bytes handed to it.
package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/harbormaster/harbormaster/internal/conf"
	"github.com/harbormaster/harbormaster/internal/yamlstrict"
)

// RoleType selects a role's actuator. Its JSON and YAML form is the plain
// string ("vip", "service", "redis-master").
type RoleType string

// Role types.
const (
	TypeService     RoleType = "service"
	TypeVIP         RoleType = "vip"
	TypeRedisMaster RoleType = "redis-master"
)

// Spec is the cluster-wide definition of roles. The zero value is an empty,
// valid spec. A Spec held by the replicated state is never mutated: callers
// that want to change it build a new one.
type Spec struct {
	Roles []Role `yaml:"roles" json:"roles"`
}

// Role is something exactly one node may hold.
type Role struct {
	// Name identifies the role in commands, events and the CLI.
	Name string `yaml:"name" json:"name"`
	// Type selects the actuator: service, vip or redis-master.
	Type RoleType `yaml:"type" json:"type"`
	// Candidates lists the nodes allowed to hold the role, with their
	// priority. Empty means every non-witness node, all at priority 0.
	Candidates []Candidate `yaml:"candidates,omitempty" json:"candidates,omitempty"`
	// Preempt lets a live, eligible candidate of strictly higher priority
	// take the role back from its holder (keepalived's preempt; default
	// off, as "nopreempt"): the move is a planned hand-over.
	Preempt bool `yaml:"preempt,omitempty" json:"preempt,omitempty"`
	// PreemptDelay is how long a holder keeps the role before it may be
	// preempted (a hold-down against flapping), a Go duration string.
	PreemptDelay Duration `yaml:"preempt_delay,omitempty" json:"preempt_delay,omitzero"`
	// Address is a vip role's address with its prefix length
	// ("198.18.0.200/24", "fd00::200/64"). The interface is each node's own
	// (vip_interface in the node config).
	Address Prefix `yaml:"address,omitempty" json:"address,omitzero"`
	// Requires names checks (from the nodes' configs) that must be passing
	// on the holder. A holder whose required check fails is asked to
	// release; a node that does not run a required check never qualifies.
	Requires []string `yaml:"requires,omitempty" json:"requires,omitempty"`
	// Follow names a role this one is colocated with: it may only be held
	// by that role's holder (the Redis VIP follows the Redis master).
	Follow string `yaml:"follow,omitempty" json:"follow,omitempty"`
	// Avoid names roles this one prefers not to share a node with: among
	// the eligible nodes, one holding none of them is chosen when one
	// exists. It ranks above priority; it never moves a holder by itself.
	Avoid []string `yaml:"avoid,omitempty" json:"avoid,omitempty"`
	// HoldDown keeps the node that last lost the role (moved away,
	// released, lease ended) from getting it back for this long, unless no
	// other node qualifies: a damper against flapping between two nodes
	// (Go duration; default 0). Only the last loser is remembered.
	HoldDown Duration `yaml:"hold_down,omitempty" json:"hold_down,omitzero"`
	// Marker makes a service role a marker: held in the replicated state
	// only, no node runs anything for it (other tooling watches the
	// holder through `harbormaster roles` or events); any node may hold
	// it. Without it, a service role goes only to nodes that configure
	// its actuator (services in their config).
	Marker bool `yaml:"marker,omitempty" json:"marker,omitempty"`
	// MasterName is the name a redis-master role answers to in the
	// Sentinel-compatible discovery (clients' master name, Harbor's
	// sentinel_master_set); default the role's name.
	MasterName string `yaml:"master_name,omitempty" json:"master_name,omitempty"`
	// StopTimeout bounds a service role's stop hook. When a holder is lost
	// without a release (crash, partition), the role waits this long after
	// the holder's lease surely ended before another node starts the
	// service: the time the old holder has to stop it (S3, S4). Go
	// duration; default 10s; service roles only.
	StopTimeout Duration `yaml:"stop_timeout,omitempty" json:"stop_timeout,omitzero"`
	// UnsyncedPromotion (redis-master roles) says what happens when the
	// master is lost and no live replica has synced with its data:
	// "never" (default) keeps the role vacant and fenced until the lost
	// master's Redis returns or an operator moves the role with
	// --accept-data-loss; "after DURATION" (e.g. "after 30s") promotes the
	// best replica after that long, recording the loss.
	UnsyncedPromotion string `yaml:"unsynced_promotion,omitempty" json:"unsynced_promotion,omitempty"`
	// MinSyncedReplicas (redis-master roles): the master takes writes only
	// while this many replicas are in sync (Redis's min-replicas-to-write,
	// with min-replicas-max-lag from redis.conf). Default 0.
	MinSyncedReplicas int `yaml:"min_synced_replicas,omitempty" json:"min_synced_replicas,omitempty"`
}

// MaxUnsyncedAfter bounds unsynced_promotion's delay, MaxMinSyncedReplicas
// min_synced_replicas.
const (
	MaxUnsyncedAfter     = 24 * time.Hour
	MaxMinSyncedReplicas = 64
)

// DefaultStopTimeout is a service role's stop timeout when the spec sets none.
const DefaultStopTimeout = 10 * time.Second

// Upper bounds of a role's durations: each is time the role may go without
// its preferred holder, or without any.
const (
	MaxStopTimeout  = 10 * time.Minute
	MaxPreemptDelay = time.Hour
	MaxHoldDown     = time.Hour
)

// Candidate is a node allowed to hold a role. A higher Priority wins; ties go
// to the lower node id so placement is deterministic.
type Candidate struct {
	Node     string `yaml:"node" json:"node"`
	Priority int    `yaml:"priority,omitempty" json:"priority,omitempty"`
}

var (
	nameRE       = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	masterNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// SentinelName is the name a redis-master role answers to in Sentinel
// discovery: master_name, or the role's name.
func (r Role) SentinelName() string {
	if r.MasterName != "" {
		return r.MasterName
	}
	return r.Name
}

// ValidName reports whether s is a valid role or node name: 1 to 63
// characters of lower-case letters, digits and inner hyphens (a DNS label).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// fieldErr is the *conf.FieldError for field.
func fieldErr(field, msg string) error { return &conf.FieldError{Field: field, Msg: msg} }

// MaxSize bounds a spec document. An applied spec travels in one Raft
// command (512 KiB of JSON, fsm.MaxCommandSize); a real one is a few KiB.
const MaxSize = 256 << 10

// Parse decodes a YAML (or JSON) spec document strictly: an unknown field is
// an error naming it. It then validates the spec. A document over MaxSize
// is refused before it is decoded.
func Parse(doc []byte) (*Spec, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("spec: the document is %d bytes, over the %d-byte (%d KiB) limit; a spec is a few KiB", len(doc), MaxSize, MaxSize>>10)
	}
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) { // an empty document is an empty spec
			return &Spec{}, nil
		}
		return nil, fmt.Errorf("spec: %w", err)
	}
	if yamlstrict.ExtraDocument(dec) {
		return nil, errors.New("spec: the file holds more than one YAML document; put every role under one roles: list")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	// Clone normalises empty lists ("roles: []", "candidates: []") to nil so
	// a parsed spec equals the one it was rendered from.
	return s.Clone(), nil
}

// Validate checks the spec on its own (without knowing the cluster's nodes):
// names, types, duplicates. It returns the first problem as a *conf.FieldError.
func (s *Spec) Validate() error {
	seen := map[string]int{}
	addrs := map[netip.Addr]int{}
	redisRole := map[bool]int{}
	for i, r := range s.Roles {
		f := fmt.Sprintf("roles[%d]", i)
		if r.Name == "" {
			return fieldErr(f+".name", "is empty; give every role a name such as \"notary\"")
		}
		if !ValidName(r.Name) {
			return fieldErr(f+".name", fmt.Sprintf("%q is not a valid name; use 1-63 lower-case letters, digits and inner hyphens", r.Name))
		}
		if j, dup := seen[r.Name]; dup {
			return fieldErr(f+".name", fmt.Sprintf("%q is already used by roles[%d]; role names must be unique", r.Name, j))
		}
		seen[r.Name] = i
		switch r.Type {
		case TypeService:
			if !r.Address.IsZero() {
				return fieldErr(f+".address", "is set on a service role; only vip roles have an address")
			}
		case TypeVIP:
			if !r.Address.IsValid() {
				return fieldErr(f+".address", fmt.Sprintf("%q is not an address with a prefix length; write it like 198.18.0.200/24 or fd00::200/64", r.Address))
			}
			p := r.Address.Prefix
			if err := checkVIP(f+".address", p); err != nil {
				return err
			}
			if j, dup := addrs[p.Addr()]; dup {
				return fieldErr(f+".address", fmt.Sprintf("%s is already the address of roles[%d]; every vip needs its own", p.Addr(), j))
			}
			addrs[p.Addr()] = i
		case TypeRedisMaster:
			if !r.Address.IsZero() {
				return fieldErr(f+".address", "is set on a redis-master role; each node's Redis address is in its config (redis.announce); give the clients a vip role that follows this one")
			}
			if j, dup := redisRole[true]; dup {
				return fieldErr(f+".type", fmt.Sprintf("roles[%d] is already the redis-master role; a cluster has one (each node's config names one Redis)", j))
			}
			redisRole[true] = i
			if r.MasterName != "" && !masterNameRE.MatchString(r.MasterName) {
				return fieldErr(f+".master_name", fmt.Sprintf("%q is not a usable master name; use letters, digits, '.', '_' and '-' (like mymaster)", r.MasterName))
			}
		case "":
			return fieldErr(f+".type", fmt.Sprintf("is empty; set it to %q, %q or %q", TypeService, TypeVIP, TypeRedisMaster))
		default:
			return fieldErr(f+".type", fmt.Sprintf("unknown role type %q; use %q, %q or %q", r.Type, TypeService, TypeVIP, TypeRedisMaster))
		}
		if r.MasterName != "" && r.Type != TypeRedisMaster {
			return fieldErr(f+".master_name", "is set on a "+string(r.Type)+" role; only redis-master roles have one")
		}
		if err := validateRedisDurability(f, r); err != nil {
			return err
		}
		if !r.PreemptDelay.IsZero() {
			switch {
			case !r.PreemptDelay.Valid() || r.PreemptDelay.Std() < 0:
				return fieldErr(f+".preempt_delay", fmt.Sprintf("%q is not a duration; write it like \"30s\"", r.PreemptDelay))
			case !r.Preempt:
				return fieldErr(f+".preempt_delay", "is set without preempt: true; set preempt or remove the delay")
			}
			if err := conf.AtMost(f+".preempt_delay", r.PreemptDelay.Std(), MaxPreemptDelay, "the preferred node waits that long to take its role back"); err != nil {
				return err
			}
		}
		if err := validateDuration(f+".hold_down", r.HoldDown); err != nil {
			return err
		}
		if err := conf.AtMost(f+".hold_down", r.HoldDown.Std(), MaxHoldDown, "the last holder waits that long to get the role back"); err != nil {
			return err
		}
		if r.Marker && r.Type != TypeService {
			return fieldErr(f+".marker", "is set on a "+string(r.Type)+" role; only service roles can be markers")
		}
		if r.Marker && !r.StopTimeout.IsZero() {
			return fieldErr(f+".stop_timeout", "is set on a marker role, which runs nothing; remove it or remove marker")
		}
		if !r.StopTimeout.IsZero() {
			if r.Type != TypeService {
				return fieldErr(f+".stop_timeout", "is set on a "+string(r.Type)+" role; only service roles have a stop timeout")
			}
			if err := validateDuration(f+".stop_timeout", r.StopTimeout); err != nil {
				return err
			}
			if r.StopTimeout.Std() <= 0 {
				return fieldErr(f+".stop_timeout", "must be positive; write it like \"10s\"")
			}
			if err := conf.AtMost(f+".stop_timeout", r.StopTimeout.Std(), MaxStopTimeout, "after a holder is lost, the service stays stopped that long"); err != nil {
				return err
			}
		}
		checks := map[string]int{}
		for k, c := range r.Requires {
			cf := fmt.Sprintf("%s.requires[%d]", f, k)
			if !ValidName(c) {
				return fieldErr(cf, fmt.Sprintf("%q is not a valid check name; use the name of a check in the nodes' configs", c))
			}
			if j, dup := checks[c]; dup {
				return fieldErr(cf, fmt.Sprintf("%q is already listed at requires[%d]; list each check once", c, j))
			}
			checks[c] = k
		}
		avoid := map[string]int{}
		for k, o := range r.Avoid {
			af := fmt.Sprintf("%s.avoid[%d]", f, k)
			if o == r.Name {
				return fieldErr(af, "names the role itself; list other roles")
			}
			if j, dup := avoid[o]; dup {
				return fieldErr(af, fmt.Sprintf("%q is already listed at avoid[%d]; list each role once", o, j))
			}
			avoid[o] = k
		}
		if r.Follow == r.Name && r.Follow != "" {
			return fieldErr(f+".follow", "names the role itself; name the role to colocate with")
		}
		if _, both := avoid[r.Follow]; both && r.Follow != "" {
			return fieldErr(f+".follow", fmt.Sprintf("%q is both followed and avoided; keep one", r.Follow))
		}
		nodes := map[string]int{}
		for k, c := range r.Candidates {
			cf := fmt.Sprintf("%s.candidates[%d]", f, k)
			if !ValidName(c.Node) {
				return fieldErr(cf+".node", fmt.Sprintf("%q is not a valid node id; use the node_id of a node's config", c.Node))
			}
			if j, dup := nodes[c.Node]; dup {
				return fieldErr(cf+".node", fmt.Sprintf("%q is already listed at candidates[%d]; list each node once", c.Node, j))
			}
			nodes[c.Node] = k
		}
	}
	return s.validateRefs(seen)
}

// validateRefs checks the references between roles: follow and avoid name
// roles of the spec, and follow chains end (no cycle).
func (s *Spec) validateRefs(index map[string]int) error {
	for i, r := range s.Roles {
		f := fmt.Sprintf("roles[%d]", i)
		if r.Follow != "" {
			if _, ok := index[r.Follow]; !ok {
				return fieldErr(f+".follow", fmt.Sprintf("%q is not a role of this spec; name a role defined under roles", r.Follow))
			}
		}
		for k, o := range r.Avoid {
			if _, ok := index[o]; !ok {
				return fieldErr(fmt.Sprintf("%s.avoid[%d]", f, k), fmt.Sprintf("%q is not a role of this spec; name a role defined under roles", o))
			}
		}
		// Walk the follow chain: it must end within len(roles) steps.
		cur, steps := r, 0
		for cur.Follow != "" {
			if steps++; steps > len(s.Roles) {
				return fieldErr(f+".follow", fmt.Sprintf("follow chain from %q loops; a role cannot (indirectly) follow itself", r.Name))
			}
			cur = s.Roles[index[cur.Follow]]
		}
	}
	return nil
}

func validateDuration(field string, v Duration) error {
	if !v.IsZero() && (!v.Valid() || v.Std() < 0) {
		return fieldErr(field, fmt.Sprintf("%q is not a duration; write it like \"30s\"", v))
	}
	return nil
}

// validateRedisDurability checks unsynced_promotion and min_synced_replicas.
func validateRedisDurability(f string, r Role) error {
	if r.Type != TypeRedisMaster {
		switch {
		case r.UnsyncedPromotion != "":
			return fieldErr(f+".unsynced_promotion", "is set on a "+string(r.Type)+" role; only redis-master roles have one")
		case r.MinSyncedReplicas != 0:
			return fieldErr(f+".min_synced_replicas", "is set on a "+string(r.Type)+" role; only redis-master roles have one")
		}
		return nil
	}
	if _, err := ParseUnsyncedPromotion(r.UnsyncedPromotion); err != nil {
		return fieldErr(f+".unsynced_promotion", err.Error())
	}
	if r.MinSyncedReplicas < 0 || r.MinSyncedReplicas > MaxMinSyncedReplicas {
		return fieldErr(f+".min_synced_replicas", fmt.Sprintf("%d is out of range; use 0 (off) to %d", r.MinSyncedReplicas, MaxMinSyncedReplicas))
	}
	return nil
}

// ParseUnsyncedPromotion parses unsynced_promotion: "" or "never" (0, never
// promote an unsynced replica by itself) or "after DURATION" (the delay,
// positive, at most MaxUnsyncedAfter).
func ParseUnsyncedPromotion(s string) (time.Duration, error) {
	v := strings.TrimSpace(s)
	if v == "" || v == "never" {
		return 0, nil
	}
	rest, ok := strings.CutPrefix(v, "after ")
	if !ok {
		return 0, fmt.Errorf("%q is not never or after DURATION; write never (the default) or e.g. \"after 30s\"", s)
	}
	d, err := time.ParseDuration(strings.TrimSpace(rest))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: %q is not a positive duration; write e.g. \"after 30s\"", s, strings.TrimSpace(rest))
	}
	if d > MaxUnsyncedAfter {
		return 0, fmt.Errorf("%q: at most %s (the role stays without a master that long)", s, MaxUnsyncedAfter)
	}
	return d, nil
}

// UnsyncedAfter returns unsynced_promotion's delay; 0 means never.
func (r Role) UnsyncedAfter() time.Duration {
	d, _ := ParseUnsyncedPromotion(r.UnsyncedPromotion)
	return d
}

// HoldDownFor returns the role's hold-down (0 when unset).
func (r Role) HoldDownFor() time.Duration {
	return max(r.HoldDown.Std(), 0)
}

// StopGrace returns how long a service role waits, after its holder's lease
// surely ended, before another node may start it: the stop timeout. Marker
// roles run nothing; other role types act in the kernel or in Redis within
// the lease: they wait 0.
func (r Role) StopGrace() time.Duration {
	if r.Type != TypeService || r.Marker {
		return 0
	}
	if d := r.StopTimeout.Std(); d > 0 {
		return d
	}
	return DefaultStopTimeout
}

// Role returns the role with the given name, or false.
func (s *Spec) Role(name string) (Role, bool) {
	if s == nil {
		return Role{}, false
	}
	for _, r := range s.Roles {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// PreemptAfter returns the role's preempt delay (0 when unset or invalid;
// Validate rejects invalid ones).
func (r Role) PreemptAfter() time.Duration {
	return max(r.PreemptDelay.Std(), 0)
}

// Candidate reports whether node may hold r and at which priority. An empty
// candidate list admits every node at priority 0.
func (r Role) Candidate(node string) (priority int, ok bool) {
	if len(r.Candidates) == 0 {
		return 0, true
	}
	for _, c := range r.Candidates {
		if c.Node == node {
			return c.Priority, true
		}
	}
	return 0, false
}

// Clone returns a deep copy.
func (s *Spec) Clone() *Spec {
	if s == nil {
		return &Spec{}
	}
	out := &Spec{Roles: make([]Role, len(s.Roles))}
	for i, r := range s.Roles {
		r.Candidates = append([]Candidate(nil), r.Candidates...)
		r.Requires = append([]string(nil), r.Requires...)
		r.Avoid = append([]string(nil), r.Avoid...)
		out.Roles[i] = r
	}
	if len(s.Roles) == 0 {
		out.Roles = nil
	}
	return out
}

// YAML renders the spec as a YAML document, roles sorted as given.
func (s *Spec) YAML() []byte {
	if s == nil || len(s.Roles) == 0 {
		return []byte("roles: []\n")
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	_ = enc.Encode(s)
	return b.Bytes()
}

// RoleNames returns the role names, sorted.
func (s *Spec) RoleNames() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.Roles))
	for _, r := range s.Roles {
		out = append(out, r.Name)
	}
	sort.Strings(out)
	return out
}

// String is a one-line summary for logs and events.
func (s *Spec) String() string {
	if s == nil {
		return "roles=[]"
	}
	return "roles=[" + strings.Join(s.RoleNames(), ",") + "]"
}
