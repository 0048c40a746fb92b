package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/conf"
)

const validDoc = `
roles:
  - name: notary
    type: service
    candidates:
      - node: n1
        priority: 10
      - node: n2
        priority: 5
      - node: n3
  - name: web
    type: service
`

func validSpec() *Spec {
	return &Spec{Roles: []Role{
		{Name: "notary", Type: TypeService, Candidates: []Candidate{
			{Node: "n1", Priority: 10}, {Node: "n2", Priority: 5}, {Node: "n3"},
		}},
		{Name: "web", Type: TypeService},
	}}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want *Spec
	}{
		{"yaml", validDoc, validSpec()},
		{"json", `{"roles":[{"name":"notary","type":"service","candidates":[{"node":"n1","priority":10},{"node":"n2","priority":5},{"node":"n3"}]},{"name":"web","type":"service"}]}`, validSpec()},
		{"empty document", "", &Spec{}},
		{"whitespace only", "\n  \n", &Spec{}},
		{"comment only", "# nothing yet\n", &Spec{}},
		{"empty role list", "roles: []\n", &Spec{}},
		{"null role list", "roles:\n", &Spec{}},
		{"empty candidate list", "roles:\n  - name: web\n    type: service\n    candidates: []\n",
			&Spec{Roles: []Role{{Name: "web", Type: TypeService}}}},
		{"max length name", "roles:\n  - name: " + strings.Repeat("a", 63) + "\n    type: service\n",
			&Spec{Roles: []Role{{Name: strings.Repeat("a", 63), Type: TypeService}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: got error %v, want nil", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse:\n got %#v\nwant %#v", got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate of parsed spec: got %v, want nil", err)
			}
		})
	}
}

func TestParseUnknownField(t *testing.T) {
	tests := []struct {
		name, doc, field string
	}{
		{"top level", "roles: []\nrolez: []\n", "rolez"},
		{"in role", "roles:\n  - name: web\n    type: service\n    colour: red\n", "colour"},
		{"in candidate", "roles:\n  - name: web\n    type: service\n    candidates:\n      - node: n1\n        weight: 3\n", "weight"},
		{"json", `{"roles":[{"name":"web","type":"service","replicas":2}]}`, "replicas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse: got spec %#v and nil error, want an error naming %q", got, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Parse: got error %q, want it to name the field %q", err, tt.field)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	for _, doc := range []string{"roles: [", "roles: 3\n", "roles:\n  - name: [a\n", "- just\n- a list\n"} {
		if got, err := Parse([]byte(doc)); err == nil {
			t.Errorf("Parse(%q): got %#v, nil error; want an error", doc, got)
		}
	}
}

func TestFieldErrors(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		field string
	}{
		{"empty name", "roles:\n  - type: service\n", "roles[0].name"},
		{"empty name second role", "roles:\n  - name: a\n    type: service\n  - name: \"\"\n    type: service\n", "roles[1].name"},
		{"invalid name upper case", "roles:\n  - name: Web\n    type: service\n", "roles[0].name"},
		{"invalid name leading hyphen", "roles:\n  - name: a\n    type: service\n  - name: -web\n    type: service\n", "roles[1].name"},
		{"invalid name trailing hyphen", "roles:\n  - name: web-\n    type: service\n", "roles[0].name"},
		{"invalid name underscore", "roles:\n  - name: my_web\n    type: service\n", "roles[0].name"},
		{"invalid name too long", "roles:\n  - name: " + strings.Repeat("a", 64) + "\n    type: service\n", "roles[0].name"},
		{"duplicate name", "roles:\n  - name: web\n    type: service\n  - name: web\n    type: service\n", "roles[1].name"},
		{"duplicate name later", "roles:\n  - name: a\n    type: service\n  - name: b\n    type: service\n  - name: a\n    type: service\n", "roles[2].name"},
		{"empty type", "roles:\n  - name: web\n", "roles[0].type"},
		{"unknown type", "roles:\n  - name: a\n    type: service\n  - name: web\n    type: daemon\n", "roles[1].type"},
		{"vip without address", "roles:\n  - name: ip\n    type: vip\n", "roles[0].address"},
		{"vip address without prefix", "roles:\n  - {name: ip, type: vip, address: 198.18.0.200}\n", "roles[0].address"},
		{"vip address loopback", "roles:\n  - {name: ip, type: vip, address: 127.0.0.2/8}\n", "roles[0].address"},
		{"vip address twice", "roles:\n  - {name: a, type: vip, address: 198.18.0.200/24}\n  - {name: b, type: vip, address: 198.18.0.200/24}\n", "roles[1].address"},
		{"address on a service", "roles:\n  - {name: a, type: service, address: 198.18.0.200/24}\n", "roles[0].address"},
		{"two redis-master roles", "roles:\n  - {name: cache, type: redis-master}\n  - {name: jobs, type: redis-master}\n", "roles[1].type"},
		{"address on a redis-master", "roles:\n  - {name: cache, type: redis-master, address: 198.18.0.201/24}\n", "roles[0].address"},
		{"bad master_name", "roles:\n  - {name: cache, type: redis-master, master_name: \"my master\"}\n", "roles[0].master_name"},
		{"unsynced_promotion word", "roles:\n  - {name: cache, type: redis-master, unsynced_promotion: always}\n", "roles[0].unsynced_promotion"},
		{"unsynced_promotion bad duration", "roles:\n  - {name: cache, type: redis-master, unsynced_promotion: after soon}\n", "roles[0].unsynced_promotion"},
		{"unsynced_promotion zero", "roles:\n  - {name: cache, type: redis-master, unsynced_promotion: after 0s}\n", "roles[0].unsynced_promotion"},
		{"unsynced_promotion too long", "roles:\n  - {name: cache, type: redis-master, unsynced_promotion: after 25h}\n", "roles[0].unsynced_promotion"},
		{"unsynced_promotion on a vip", "roles:\n  - {name: ip, type: vip, address: 198.18.0.201/24, unsynced_promotion: never}\n", "roles[0].unsynced_promotion"},
		{"min_synced_replicas negative", "roles:\n  - {name: cache, type: redis-master, min_synced_replicas: -1}\n", "roles[0].min_synced_replicas"},
		{"min_synced_replicas too many", "roles:\n  - {name: cache, type: redis-master, min_synced_replicas: 65}\n", "roles[0].min_synced_replicas"},
		{"min_synced_replicas on a service", "roles:\n  - {name: a, type: service, min_synced_replicas: 1}\n", "roles[0].min_synced_replicas"},
		{"master_name on a vip", "roles:\n  - {name: ip, type: vip, address: 198.18.0.201/24, master_name: x}\n", "roles[0].master_name"},
		{"empty candidate node", "roles:\n  - name: web\n    type: service\n    candidates:\n      - priority: 3\n", "roles[0].candidates[0].node"},
		{"invalid candidate node", "roles:\n  - name: a\n    type: service\n  - name: web\n    type: service\n    candidates:\n      - node: N1\n", "roles[1].candidates[0].node"},
		{"invalid second candidate node", "roles:\n  - name: web\n    type: service\n    candidates:\n      - node: n1\n      - node: n_2\n", "roles[0].candidates[1].node"},
		{"duplicate candidate", "roles:\n  - name: web\n    type: service\n    candidates:\n      - node: n1\n      - node: n2\n      - node: n1\n        priority: 4\n", "roles[0].candidates[2].node"},
		{"bad required check name", "roles:\n  - {name: ip, type: vip, address: 198.18.0.200/24, requires: [Pull]}\n", "roles[0].requires[0]"},
		{"duplicate required check", "roles:\n  - {name: ip, type: vip, address: 198.18.0.200/24, requires: [pull, http, pull]}\n", "roles[0].requires[2]"},
		{"follow unknown role", "roles:\n  - {name: ip, type: vip, address: 198.18.0.200/24, follow: redis}\n", "roles[0].follow"},
		{"follow itself", "roles:\n  - {name: ip, type: vip, address: 198.18.0.200/24, follow: ip}\n", "roles[0].follow"},
		{"follow cycle", "roles:\n  - {name: a, type: service, follow: b}\n  - {name: b, type: service, follow: c}\n  - {name: c, type: service, follow: a}\n", "roles[0].follow"},
		{"follow and avoid the same role", "roles:\n  - {name: a, type: service}\n  - {name: b, type: service, follow: a, avoid: [a]}\n", "roles[1].follow"},
		{"avoid unknown role", "roles:\n  - {name: a, type: service, avoid: [notary]}\n", "roles[0].avoid[0]"},
		{"avoid itself", "roles:\n  - {name: a, type: service, avoid: [a]}\n", "roles[0].avoid[0]"},
		{"avoid twice", "roles:\n  - {name: a, type: service}\n  - {name: b, type: service, avoid: [a, a]}\n", "roles[1].avoid[1]"},
		{"hold_down not a duration", "roles:\n  - {name: a, type: service, hold_down: long}\n", "roles[0].hold_down"},
		{"hold_down negative", "roles:\n  - {name: a, type: service, hold_down: -1s}\n", "roles[0].hold_down"},
		{"stop_timeout on a vip", "roles:\n  - {name: ip, type: vip, address: 198.18.0.200/24, stop_timeout: 5s}\n", "roles[0].stop_timeout"},
		{"marker on a vip", "roles:\n  - {name: ip, type: vip, address: 198.18.0.200/24, marker: true}\n", "roles[0].marker"},
		{"marker with stop_timeout", "roles:\n  - {name: a, type: service, marker: true, stop_timeout: 5s}\n", "roles[0].stop_timeout"},
		{"stop_timeout zero", "roles:\n  - {name: a, type: service, stop_timeout: 0s}\n", "roles[0].stop_timeout"},
		{"stop_timeout not a duration", "roles:\n  - {name: a, type: service, stop_timeout: 5}\n", "roles[0].stop_timeout"},
		{"vip prefix length 0", "roles:\n  - {name: ip, type: vip, address: \"198.18.0.200/0\"}\n", "roles[0].address"},
		{"vip ipv4 prefix shorter than /8", "roles:\n  - {name: ip, type: vip, address: \"10.1.2.3/7\"}\n", "roles[0].address"},
		{"vip ipv6 prefix shorter than /16", "roles:\n  - {name: ip, type: vip, address: \"fd00::200/15\"}\n", "roles[0].address"},
		{"vip ipv6 /0", "roles:\n  - {name: ip, type: vip, address: \"fd00::200/0\"}\n", "roles[0].address"},
		{"vip network address", "roles:\n  - {name: ip, type: vip, address: \"198.18.0.0/24\"}\n", "roles[0].address"},
		{"vip broadcast address", "roles:\n  - {name: ip, type: vip, address: \"198.18.0.255/24\"}\n", "roles[0].address"},
		{"vip network address /30", "roles:\n  - {name: ip, type: vip, address: \"198.18.0.4/30\"}\n", "roles[0].address"},
		{"vip broadcast address /30", "roles:\n  - {name: ip, type: vip, address: \"198.18.0.7/30\"}\n", "roles[0].address"},
		{"vip ipv6 subnet-router anycast", "roles:\n  - {name: ip, type: vip, address: \"fd00::/64\"}\n", "roles[0].address"},
		{"vip limited broadcast", "roles:\n  - {name: ip, type: vip, address: \"255.255.255.255/32\"}\n", "roles[0].address"},
		{"vip this-network address", "roles:\n  - {name: ip, type: vip, address: \"0.1.2.3/24\"}\n", "roles[0].address"},
		{"vip unspecified", "roles:\n  - {name: ip, type: vip, address: \"0.0.0.0/24\"}\n", "roles[0].address"},
		{"vip multicast", "roles:\n  - {name: ip, type: vip, address: \"224.0.0.18/24\"}\n", "roles[0].address"},
		{"vip ipv4 link-local", "roles:\n  - {name: ip, type: vip, address: \"169.254.1.1/16\"}\n", "roles[0].address"},
		{"vip ipv6 link-local", "roles:\n  - {name: ip, type: vip, address: \"fe80::1/64\"}\n", "roles[0].address"},
		{"vip ipv6 loopback", "roles:\n  - {name: ip, type: vip, address: \"::1/128\"}\n", "roles[0].address"},
		{"vip ipv4-mapped ipv6", "roles:\n  - {name: ip, type: vip, address: \"::ffff:198.18.0.200/120\"}\n", "roles[0].address"},
		{"stop_timeout over 10m", "roles:\n  - {name: a, type: service, stop_timeout: 10m1s}\n", "roles[0].stop_timeout"},
		{"hold_down over 1h", "roles:\n  - {name: a, type: service, hold_down: 61m}\n", "roles[0].hold_down"},
		{"preempt_delay over 1h", "roles:\n  - {name: a, type: service, preempt: true, preempt_delay: 1193h2m47.7965s}\n", "roles[0].preempt_delay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse: got %#v, nil error; want a conf.FieldError at %q", got, tt.field)
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Parse: got error %T %q, want *conf.FieldError", err, err)
			}
			if fe.Field != tt.field {
				t.Fatalf("conf.FieldError.Field: got %q, want %q (error %q)", fe.Field, tt.field, err)
			}
			if strings.TrimSpace(fe.Msg) == "" {
				t.Fatalf("conf.FieldError.Msg: got empty message for %q", fe.Field)
			}
			if want := fe.Field + ": " + fe.Msg; err.Error() != want {
				t.Fatalf("Error(): got %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestValidateStruct(t *testing.T) {
	var zero Spec
	if err := zero.Validate(); err != nil {
		t.Fatalf("zero Spec Validate: got %v, want nil", err)
	}
	if err := validSpec().Validate(); err != nil {
		t.Fatalf("valid Spec Validate: got %v, want nil", err)
	}
	// The first problem is reported, in document order.
	s := &Spec{Roles: []Role{
		{Name: "ok", Type: TypeService},
		{Name: "bad", Type: TypeService, Candidates: []Candidate{{Node: "n1"}, {Node: "n1"}}},
		{Name: "", Type: ""},
	}}
	var fe *conf.FieldError
	if err := s.Validate(); !errors.As(err, &fe) || fe.Field != "roles[1].candidates[1].node" {
		t.Fatalf("Validate: got %v, want conf.FieldError at roles[1].candidates[1].node", err)
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a", true}, {"0", true}, {"n1", true}, {"web-1", true}, {"a-b-c", true},
		{strings.Repeat("x", 63), true}, {strings.Repeat("x", 64), false},
		{"", false}, {"-a", false}, {"a-", false}, {"A", false}, {"a.b", false}, {"a b", false}, {"a_b", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.in); got != tt.want {
			t.Errorf("ValidName(%q): got %t, want %t", tt.in, got, tt.want)
		}
	}
}

func TestRoleLookup(t *testing.T) {
	s := validSpec()
	r, ok := s.Role("web")
	if !ok || r.Name != "web" {
		t.Fatalf("Role(web): got %#v, %t; want web, true", r, ok)
	}
	if r, ok := s.Role("db"); ok || !reflect.DeepEqual(r, Role{}) {
		t.Fatalf("Role(db): got %#v, %t; want zero, false", r, ok)
	}
	var nilSpec *Spec
	if r, ok := nilSpec.Role("web"); ok || !reflect.DeepEqual(r, Role{}) {
		t.Fatalf("nil Spec Role(web): got %#v, %t; want zero, false", r, ok)
	}
}

func TestRoleCandidate(t *testing.T) {
	open := Role{Name: "web", Type: TypeService}
	listed := validSpec().Roles[0] // n1:10, n2:5, n3:0
	tests := []struct {
		name     string
		role     Role
		node     string
		wantPrio int
		wantOK   bool
	}{
		{"empty list admits n1", open, "n1", 0, true},
		{"empty list admits any node", open, "zz-9", 0, true},
		{"empty non-nil list admits all", Role{Name: "x", Type: TypeService, Candidates: []Candidate{}}, "n7", 0, true},
		{"listed with priority", listed, "n1", 10, true},
		{"listed lower priority", listed, "n2", 5, true},
		{"listed default priority", listed, "n3", 0, true},
		{"not listed", listed, "n4", 0, false},
		{"negative priority", Role{Candidates: []Candidate{{Node: "n1", Priority: -2}}}, "n1", -2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prio, ok := tt.role.Candidate(tt.node)
			if prio != tt.wantPrio || ok != tt.wantOK {
				t.Fatalf("Candidate(%q): got (%d, %t), want (%d, %t)", tt.node, prio, ok, tt.wantPrio, tt.wantOK)
			}
		})
	}
}

func TestCloneIsDeep(t *testing.T) {
	orig := validSpec()
	want := validSpec()
	c := orig.Clone()
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("Clone: got %#v, want %#v", c, orig)
	}
	c.Roles[0].Name = "changed"
	c.Roles[0].Candidates[0].Node = "n9"
	c.Roles[0].Candidates[1].Priority = 99
	c.Roles[0].Candidates = append(c.Roles[0].Candidates, Candidate{Node: "n8"})
	c.Roles[1].Candidates = append(c.Roles[1].Candidates, Candidate{Node: "n7"})
	c.Roles = append(c.Roles, Role{Name: "extra", Type: TypeService})
	if !reflect.DeepEqual(orig, want) {
		t.Fatalf("mutating the clone changed the original:\n got %#v\nwant %#v", orig, want)
	}

	// And the other way round: the clone does not see later changes to the
	// original.
	c2 := orig.Clone()
	orig.Roles[0].Candidates[0].Priority = -1
	if got := c2.Roles[0].Candidates[0].Priority; got != 10 {
		t.Fatalf("clone saw a change to the original: priority got %d, want 10", got)
	}
}

func TestCloneEmpty(t *testing.T) {
	var nilSpec *Spec
	for name, s := range map[string]*Spec{"nil": nilSpec, "zero": {}, "empty roles": {Roles: []Role{}}} {
		if got := s.Clone(); !reflect.DeepEqual(got, &Spec{}) {
			t.Errorf("Clone(%s): got %#v, want %#v", name, got, &Spec{})
		}
	}
	s := &Spec{Roles: []Role{{Name: "a", Type: TypeService, Candidates: []Candidate{}}}}
	if got := s.Clone().Roles[0].Candidates; got != nil {
		t.Errorf("Clone of empty candidates: got %#v, want nil", got)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		spec *Spec
	}{
		{"valid", validSpec()},
		{"empty", &Spec{}},
		{"single open role", &Spec{Roles: []Role{{Name: "web", Type: TypeService}}}},
		{"negative and zero priorities", &Spec{Roles: []Role{{Name: "db", Type: TypeService, Candidates: []Candidate{{Node: "n2", Priority: -3}, {Node: "n1"}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := tt.spec.YAML()
			got, err := Parse(doc)
			if err != nil {
				t.Fatalf("Parse(YAML()): got error %v for document\n%s", err, doc)
			}
			if !reflect.DeepEqual(got, tt.spec) {
				t.Fatalf("Parse(YAML()):\n got %#v\nwant %#v\ndocument:\n%s", got, tt.spec, doc)
			}
			if again := got.YAML(); string(again) != string(doc) {
				t.Fatalf("YAML() not stable:\n got %s\nwant %s", again, doc)
			}
		})
	}
	var nilSpec *Spec
	if got, want := string(nilSpec.YAML()), "roles: []\n"; got != want {
		t.Fatalf("nil Spec YAML(): got %q, want %q", got, want)
	}
}

func TestRoleNamesAndString(t *testing.T) {
	s := &Spec{Roles: []Role{{Name: "web", Type: TypeService}, {Name: "cache", Type: TypeService}, {Name: "db", Type: TypeService}}}
	if got, want := s.RoleNames(), []string{"cache", "db", "web"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("RoleNames: got %v, want %v", got, want)
	}
	if got, want := s.Roles[0].Name, "web"; got != want {
		t.Fatalf("RoleNames reordered the spec: Roles[0] got %q, want %q", got, want)
	}
	if got, want := s.String(), "roles=[cache,db,web]"; got != want {
		t.Fatalf("String: got %q, want %q", got, want)
	}
	var nilSpec *Spec
	if got := nilSpec.RoleNames(); got != nil {
		t.Fatalf("nil RoleNames: got %v, want nil", got)
	}
	if got, want := nilSpec.String(), "roles=[]"; got != want {
		t.Fatalf("nil String: got %q, want %q", got, want)
	}
	if got, want := (&Spec{}).String(), "roles=[]"; got != want {
		t.Fatalf("empty String: got %q, want %q", got, want)
	}
}

func TestParseRejectsSecondDocument(t *testing.T) {
	_, err := Parse([]byte("roles: [{name: a, type: service}]\n---\nroles: [{name: b, type: service}]\n"))
	if err == nil || !strings.Contains(err.Error(), "more than one YAML document") {
		t.Fatalf("Parse of two documents: err = %v, want a 'more than one YAML document' error", err)
	}
}

func TestPreemptFields(t *testing.T) {
	s, err := Parse([]byte("roles:\n  - {name: a, type: service, preempt: true, preempt_delay: 30s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Roles[0]; !r.Preempt || r.PreemptAfter() != 30*time.Second {
		t.Fatalf("preempt fields: %+v", r)
	}
	for doc, field := range map[string]string{
		"roles:\n  - {name: a, type: service, preempt: true, preempt_delay: soon}\n": "roles[0].preempt_delay",
		"roles:\n  - {name: a, type: service, preempt_delay: 5s}\n":                  "roles[0].preempt_delay",
	} {
		_, err := Parse([]byte(doc))
		var fe *conf.FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("Parse(%q): err %v, want a conf.FieldError on %s", doc, err, field)
		}
	}
}

func TestPlacementFields(t *testing.T) {
	doc := `roles:
  - {name: notary, type: service, stop_timeout: 20s}
  - {name: clair, type: service, avoid: [notary], hold_down: 1m}
  - {name: registry, type: vip, address: 198.18.0.200/24, requires: [registry-pull, http]}
  - {name: redis-ip, type: vip, address: 198.18.0.201/24, follow: registry}
`
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Spec{Roles: []Role{
		{Name: "notary", Type: TypeService, StopTimeout: Dur("20s")},
		{Name: "clair", Type: TypeService, Avoid: []string{"notary"}, HoldDown: Dur("1m")},
		{Name: "registry", Type: TypeVIP, Address: MustParsePrefix("198.18.0.200/24"), Requires: []string{"registry-pull", "http"}},
		{Name: "redis-ip", Type: TypeVIP, Address: MustParsePrefix("198.18.0.201/24"), Follow: "registry"},
	}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("Parse: got %#v\nwant %#v", s, want)
	}
	back, err := Parse(s.YAML())
	if err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("YAML round trip: got %#v, %v; want %#v", back, err, s)
	}
	for _, tc := range []struct {
		role            string
		grace, holdDown time.Duration
	}{
		{"notary", 20 * time.Second, 0},
		{"clair", DefaultStopTimeout, time.Minute},
		{"registry", 0, 0},
	} {
		r, _ := s.Role(tc.role)
		if got := r.StopGrace(); got != tc.grace {
			t.Errorf("%s.StopGrace() = %v, want %v", tc.role, got, tc.grace)
		}
		if got := r.HoldDownFor(); got != tc.holdDown {
			t.Errorf("%s.HoldDownFor() = %v, want %v", tc.role, got, tc.holdDown)
		}
	}
	c := s.Clone()
	c.Roles[1].Avoid[0] = "x"
	c.Roles[2].Requires[0] = "y"
	if s.Roles[1].Avoid[0] != "notary" || s.Roles[2].Requires[0] != "registry-pull" {
		t.Fatalf("Clone shares Avoid/Requires with the original")
	}
}

func TestRedisMasterRole(t *testing.T) {
	s, err := Parse([]byte("roles:\n  - {name: redis, type: redis-master, master_name: mymaster}\n  - {name: redis-ip, type: vip, address: 198.18.0.201/24, follow: redis}\n  - {name: cache, type: redis-master}\n"))
	if err == nil {
		t.Fatalf("two redis-master roles parsed: %+v", s)
	}
	s, err = Parse([]byte("roles:\n  - {name: redis, type: redis-master, master_name: mymaster}\n  - {name: redis-ip, type: vip, address: 198.18.0.201/24, follow: redis}\n"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	r, _ := s.Role("redis")
	if r.SentinelName() != "mymaster" || r.StopGrace() != 0 {
		t.Fatalf("redis role: sentinel name %q grace %v, want mymaster and 0", r.SentinelName(), r.StopGrace())
	}
	if m := (Role{Name: "tag", Type: TypeService, Marker: true}); m.StopGrace() != 0 {
		t.Fatalf("marker StopGrace = %v, want 0", m.StopGrace())
	}
	if r2 := (Role{Name: "jobs", Type: TypeRedisMaster}); r2.SentinelName() != "jobs" {
		t.Fatalf("SentinelName default = %q, want the role name", r2.SentinelName())
	}
}

// TestVIPAddressParsedOnce: a vip address is a netip value from decoding
// on, so a non-canonical IPv6 spelling is the same address as the canonical
// one (it used to validate and then never match an address string), JSON
// and YAML carry the canonical text, and text that does not parse is
// reported by Validate under the field's name.
func TestVIPAddressParsedOnce(t *testing.T) {
	s, err := Parse([]byte("roles:\n  - {name: ip, type: vip, address: \"fd00:0:0::200/64\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Roles[0].Address, MustParsePrefix("fd00::200/64"); got != want {
		t.Fatalf("address: got %v, want %v", got, want)
	}
	b, err := json.Marshal(s)
	if err != nil || !strings.Contains(string(b), `"address":"fd00::200/64"`) {
		t.Fatalf("JSON: got %s, %v; want the canonical address", b, err)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(&back, s) {
		t.Fatalf("JSON round trip: got %+v, %v; want %+v", back, err, s)
	}
	noAddr, err := json.Marshal(Role{Name: "web", Type: TypeService})
	if err != nil || strings.Contains(string(noAddr), "address") {
		t.Fatalf("a role without address marshals to %s, %v; want no address field", noAddr, err)
	}
	if y := s.YAML(); !strings.Contains(string(y), "address: fd00::200/64") {
		t.Fatalf("YAML: got %s; want the canonical address", y)
	}
	var bad Spec
	if err := json.Unmarshal([]byte(`{"roles":[{"name":"ip","type":"vip","address":"fd00::x/64"}]}`), &bad); err != nil {
		t.Fatal(err)
	}
	var fe *conf.FieldError
	if err := bad.Validate(); !errors.As(err, &fe) || fe.Field != "roles[0].address" || !strings.Contains(fe.Msg, `"fd00::x/64"`) {
		t.Fatalf("Validate: got %v, want a field error on roles[0].address quoting the text", err)
	}
}

// TestDurationsParsedOnceKeptAsWritten: a role's durations are parsed once
// when the spec is decoded, render exactly as written (YAML and JSON, so a
// spec in the Raft log encodes as before they were typed), and text that
// does not parse, arriving by JSON, is reported by Validate under the
// field's name.
func TestDurationsParsedOnceKeptAsWritten(t *testing.T) {
	s, err := Parse([]byte("roles:\n  - {name: web, type: service, preempt: true, preempt_delay: 1m, hold_down: 90s, stop_timeout: 1m30s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Roles[0]
	if r.PreemptAfter() != time.Minute || r.HoldDownFor() != 90*time.Second || r.StopGrace() != 90*time.Second {
		t.Fatalf("durations: got %v %v %v, want 1m 90s 90s", r.PreemptAfter(), r.HoldDownFor(), r.StopGrace())
	}
	b, err := json.Marshal(s)
	if err != nil || !strings.Contains(string(b), `"preempt_delay":"1m","hold_down":"90s","stop_timeout":"1m30s"`) {
		t.Fatalf("JSON: got %s, %v; want the durations as written", b, err)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(&back, s) {
		t.Fatalf("JSON round trip: got %+v, %v; want %+v", back, err, s)
	}
	if y := string(s.YAML()); !strings.Contains(y, "preempt_delay: 1m\n") || !strings.Contains(y, "hold_down: 90s\n") {
		t.Fatalf("YAML: got %s; want the durations as written", y)
	}
	if b, _ := json.Marshal(Role{Name: "web", Type: TypeService}); strings.Contains(string(b), "hold_down") {
		t.Fatalf("a role without durations marshals to %s; want none", b)
	}
	var bad Spec
	if err := json.Unmarshal([]byte(`{"roles":[{"name":"web","type":"service","hold_down":"soon"}]}`), &bad); err != nil {
		t.Fatal(err)
	}
	var fe *conf.FieldError
	if err := bad.Validate(); !errors.As(err, &fe) || fe.Field != "roles[0].hold_down" || !strings.Contains(fe.Msg, `"soon"`) {
		t.Fatalf("Validate: got %v, want a field error on roles[0].hold_down quoting the text", err)
	}
}

// TestVIPAddressAccepted: host addresses of sane subnets pass, including
// the ends of /31 and /32 (/127, /128) subnets, where every address is a
// host.
func TestVIPAddressAccepted(t *testing.T) {
	for _, a := range []string{
		"198.18.0.200/24", "198.18.0.1/24", "198.18.0.254/24", "10.0.0.1/8", "198.18.0.4/31", "198.18.0.5/31", "198.18.0.0/32",
		"198.18.0.255/32", "fd00::200/64", "fd00::1/64", "fd00::ffff:ffff:ffff:ffff/64", "fd00::/127", "fd00::/128", "2001:db8::5/16",
	} {
		if _, err := Parse([]byte("roles:\n  - {name: ip, type: vip, address: \"" + a + "\"}\n")); err != nil {
			t.Errorf("vip address %s: %v", a, err)
		}
	}
}

// TestVIPAddressErrorsSayTheFix: the refusals name a host address to use.
func TestVIPAddressErrorsSayTheFix(t *testing.T) {
	for addr, want := range map[string]string{
		"198.18.0.0/24":   "198.18.0.0 is the network address of 198.18.0.0/24, not a host's; use a host address of the subnet, e.g. 198.18.0.1/24",
		"198.18.0.255/24": "198.18.0.255 is the broadcast address of 198.18.0.0/24, not a host's; use a host address of the subnet, e.g. 198.18.0.254/24",
		"198.18.0.200/0":  "198.18.0.200/0 has prefix length 0; give the prefix length of the nodes' subnet, e.g. /24 or /64",
		"10.1.2.3/7":      "10.1.2.3/7 has a /7 prefix; use the prefix length of the nodes' subnet, at least /8",
	} {
		_, err := Parse([]byte("roles:\n  - {name: ip, type: vip, address: \"" + addr + "\"}\n"))
		if err == nil || err.Error() != "roles[0].address: "+want {
			t.Errorf("vip address %s: got %v, want %q", addr, err, want)
		}
	}
}

// TestDurationCaps: each role duration is accepted at its cap.
func TestDurationCaps(t *testing.T) {
	doc := "roles:\n  - {name: a, type: service, stop_timeout: 10m, hold_down: 1h, preempt: true, preempt_delay: 1h}\n"
	s, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("durations at their caps: %v", err)
	}
	if r := s.Roles[0]; r.StopGrace() != MaxStopTimeout || r.HoldDownFor() != MaxHoldDown || r.PreemptAfter() != MaxPreemptDelay {
		t.Fatalf("got stop %s, hold-down %s, preempt delay %s", r.StopGrace(), r.HoldDownFor(), r.PreemptAfter())
	}
}

func TestParseRefusesLargeDocument(t *testing.T) {
	doc := "roles: []\n# " + strings.Repeat("x", MaxSize) + "\n"
	_, err := Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("over the %d-byte (256 KiB) limit", MaxSize)) {
		t.Fatalf("Parse of %d bytes: got %v, want the size limit", len(doc), err)
	}
	if _, err := Parse([]byte("roles: []\n# " + strings.Repeat("x", MaxSize-20) + "\n")); err != nil {
		t.Fatalf("Parse just under the limit: %v", err)
	}
}

func TestUnsyncedPromotion(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "never": 0, "after 30s": 30 * time.Second, " after 2m ": 2 * time.Minute} {
		got, err := ParseUnsyncedPromotion(in)
		if err != nil || got != want {
			t.Errorf("ParseUnsyncedPromotion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	s, err := Parse([]byte("roles:\n  - {name: cache, type: redis-master, unsynced_promotion: after 10s, min_synced_replicas: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Roles[0]; r.UnsyncedAfter() != 10*time.Second || r.MinSyncedReplicas != 1 {
		t.Fatalf("role: %+v", r)
	}
}
