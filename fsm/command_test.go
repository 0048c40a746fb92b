package fsm

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/harbormaster/harbormaster/internal/conf"
	"github.com/harbormaster/harbormaster/spec"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		cmd      Command
		wantType byte
	}{
		{"register-node", &RegisterNode{Node: "n1", RaftAddr: "10.0.0.1:7000", APIAddr: "10.0.0.1:7001", Voter: true, LeaseTTLMillis: 3000, Time: t0}, 1},
		{"register-node vip", &RegisterNode{Node: "n2", RaftAddr: "10.0.0.2:7000", APIAddr: "10.0.0.2:7001", Voter: true, VIP: true, LeaseTTLMillis: 3000, Time: t0}, 1},
		{"register-node witness", &RegisterNode{Node: "w1", RaftAddr: "[::1]:7000", APIAddr: "[::1]:7001", Witness: true, LeaseTTLMillis: 1, Time: -1}, 1},
		{"remove-node", &RemoveNode{Node: "n2", Actor: "operator", Time: t0}, 2},
		{"remove-node minimal", &RemoveNode{Node: "n2"}, 2},
		{"renew-lease", &RenewLease{Node: "n1", Seq: 1<<64 - 1}, 3},
		{"apply-spec", &ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{
			{Name: "web", Type: spec.TypeService, Candidates: []spec.Candidate{{Node: "n1", Priority: 10}, {Node: "n2", Priority: -1}}},
			{Name: "db", Type: spec.TypeService},
		}}, ExpectedVersion: 7, Actor: "operator", Time: t0}, 4},
		{"apply-spec empty", &ApplySpec{Spec: &spec.Spec{}, Actor: "operator"}, 4},
		{"apply-spec seed", &ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: "web", Type: spec.TypeService}}}, Seed: true, Actor: "n1", Time: t0}, 4},
		{"assign", &Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2, Reason: "n1 failed", Actor: "n3", Time: t0}, 5},
		{"assign first", &Assign{Role: "web", Node: "n1", Epoch: 1}, 5},
		{"assign detected", &Assign{Role: "ip", Node: "n2", PrevHolder: "n1", HolderGen: 7, Epoch: 5, Reason: "n1 lease ended", Actor: "n3", Time: t0 + 300, Detected: t0}, 5},
		{"assign holder generation", &Assign{Role: "web", Node: "n1", PrevHolder: "n1", HolderGen: 1<<64 - 1, Epoch: 4, Reason: "new lease", Actor: "n1", Time: t0}, 5},
		{"request-release", &RequestRelease{Role: "web", Epoch: 3, Reason: "drain", Actor: "operator", Time: t0}, 6},
		{"request-release move", &RequestRelease{Role: "web", Epoch: 3, Target: "n2", Reason: "move", Actor: "operator", Time: t0}, 6},
		{"release", &Release{Role: "web", Node: "n1", Epoch: 3, Reason: "stopped", Time: t0}, 7},
		{"record-event", &RecordEvent{Event: Event{Seq: 9, Index: 8, Time: t0, Kind: EventMember, Node: "n4", Actor: "n1",
			Role: "r", Old: "nonvoter", New: "voter", Epoch: 3, Message: "promoted \u00e9 \"quoted\""}}, 8 | 0x80},
		{"record-event minimal", &RecordEvent{Event: Event{Kind: EventOperator}}, 8 | 0x80},
		{"leave", &Leave{Node: "n1", Reason: "shutting down", Time: t0}, 9},
		{"leave minimal", &Leave{Node: "n1"}, 9},
		{"set-drain", &SetDrain{Node: "n1", Drained: true, Actor: "operator", Time: t0}, 10},
		{"set-drain undrain minimal", &SetDrain{Node: "n1"}, 10},
		{"register-node checks and services", &RegisterNode{Node: "n1", RaftAddr: "a:1", APIAddr: "a:2", LeaseTTLMillis: 500,
			Checks: []string{"registry-pull", "http"}, Services: []string{"notary"}}, 1},
		{"check-update", &CheckUpdate{Node: "n1", Check: "registry-pull", Passing: false, Error: "manifest: 404", Output: "x", Time: t0}, 11},
		{"check-update minimal", &CheckUpdate{Node: "n1", Check: "tcp"}, 11},
		{"redis-report replica", &RedisReport{Node: "n2", Role: RedisReplica, Master: "10.0.0.1:6379", LinkUp: true, Offset: 1 << 40,
			ReplID: "8d9c", RunID: "f00", Time: t0}, 12},
		{"redis-report error", &RedisReport{Node: "n2", Offset: -1, Error: "connection refused", Time: t0}, 12},
		{"redis-report master with replicas and settings", &RedisReport{Node: "n1", Role: RedisMaster, Offset: 900, ReplID: "aa",
			ReplID2: "bb", Offset2: 51, RunID: "cc", Time: t0, Replicas: []ReplicaState{{Node: "n2", Addr: "10.0.0.2:6379",
				State: "online", Offset: 880, LagBytes: 20, LagMillis: 300, InSync: true}},
			Settings: &RedisSettings{DisklessSync: true, SyncDelay: 5, BacklogSize: 1 << 20, Timeout: 60, MaxLag: 10, Save: "3600 1"},
			Warnings: []string{"replica-read-only is no"}}, 12},
		{"redis-hold", &RedisHold{Role: "cache", Epoch: 3, Reason: "no replica synced", Actor: "n1", Time: t0}, 15},
		{"request-release accepting data loss", &RequestRelease{Role: "cache", Epoch: 3, Target: "n2", AcceptDataLoss: true,
			Reason: "moved", Actor: "op", Time: t0}, 6},
		{"assign with data loss", &Assign{Role: "cache", Node: "n2", Epoch: 4, Reason: "r", Actor: "n1", Time: t0,
			DataLoss: "an operator accepted"}, 5},
		{"lease-key", &SetLeaseKey{ID: 2, Secret: testLeaseKey(7), Actor: "operator", Time: t0}, 13},
		{"cluster-id", &SetClusterID{ID: "0123456789abcdef0123456789abcdef", Actor: "n1", Time: t0}, 14},
		{"register-node redis", &RegisterNode{Node: "n1", RaftAddr: "a:1", APIAddr: "a:2", LeaseTTLMillis: 500, Redis: "10.0.0.1:6379", Sentinel: "10.0.0.1:26379"}, 1},
	}
	seen := map[CommandType]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustEncode(t, tt.cmd)
			if b[0] != tt.wantType {
				t.Fatalf("type byte: got %#x, want %#x", b[0], tt.wantType)
			}
			if b[1] != 1 {
				t.Fatalf("version byte: got %d, want 1", b[1])
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(%q): got error %v, want nil", b, err)
			}
			if !reflect.DeepEqual(got, tt.cmd) {
				t.Fatalf("Decode(Encode(c)):\n got %#v\nwant %#v", got, tt.cmd)
			}
			again := mustEncode(t, got)
			if string(again) != string(b) {
				t.Fatalf("re-encode: got %q, want %q", again, b)
			}
		})
		seen[tt.cmd.Type()] = true
	}
	for typ := range registry {
		if !seen[typ] {
			t.Errorf("command type %s (%d) has no round-trip case", typ, typ)
		}
	}
}

func TestSampleCommandsCoverEveryType(t *testing.T) {
	seen := map[CommandType]bool{}
	for _, c := range sampleCommands() {
		seen[c.Type()] = true
	}
	for typ := range registry {
		if !seen[typ] {
			t.Errorf("sampleCommands has no %s command; add one (and regenerate the golden files)", typ)
		}
	}
}

func TestCommandTypeString(t *testing.T) {
	tests := []struct {
		typ  CommandType
		want string
	}{
		{TypeRegisterNode, "register-node"},
		{TypeRemoveNode, "remove-node"},
		{TypeRenewLease, "renew-lease"},
		{TypeApplySpec, "apply-spec"},
		{TypeAssign, "assign"},
		{TypeRequestRelease, "request-release"},
		{TypeRelease, "release"},
		{TypeRecordEvent, "record-event"},
		{TypeRecordEvent | IgnoreUnknownFlag, "record-event"},
		{TypeLeave, "leave"},
		{TypeSetDrain, "set-drain"},
		{TypeSetLeaseKey, "lease-key"},
		{TypeSetClusterID, "cluster-id"},
		{TypeRedisHold, "redis-hold"},
		{0, "type-0"},
		{42, "type-42"},
		{42 | IgnoreUnknownFlag, "type-170"},
	}
	for _, tt := range tests {
		if got := tt.typ.String(); got != tt.want {
			t.Errorf("CommandType(%d).String(): got %q, want %q", uint8(tt.typ), got, tt.want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	renew := `{"node":"n1","seq":1}`
	hdr := func(typ, ver byte, payload string) []byte { return append([]byte{typ, ver}, payload...) }
	tests := []struct {
		name  string
		in    []byte
		check func(t *testing.T, err error)
	}{
		{"nil input", nil, nil},
		{"empty input", []byte{}, nil},
		{"one byte", []byte{byte(TypeRenewLease)}, nil},
		{"header only", hdr(3, 1, ""), nil},
		{"unknown type", hdr(42, 1, renew), wantUnknown(42, 1)},
		{"type zero", hdr(0, 1, renew), wantUnknown(0, 1)},
		{"next unreleased type", hdr(byte(unreleasedType()), 1, renew), wantUnknown(unreleasedType(), 1)},
		{"unknown type unknown version", hdr(0x7f, 9, "{}"), wantUnknown(0x7f, 9)},
		{"unknown ignorable type", hdr(42|0x80, 1, renew), wantIs(ErrUnknownIgnorable)},
		{"unknown ignorable type any version", hdr(0xff, 200, "not even json"), wantIs(ErrUnknownIgnorable)},
		{"unknown version of known type", hdr(byte(TypeAssign), 2, `{"role":"web","node":"n1","epoch":1}`), wantUnknown(TypeAssign, 2)},
		{"version zero", hdr(byte(TypeRenewLease), 0, renew), wantUnknown(TypeRenewLease, 0)},
		{"unknown version of ignorable type", hdr(byte(TypeRecordEvent|IgnoreUnknownFlag), 2, `{"event":{"kind":"x"}}`), wantUnknown(TypeRecordEvent, 2)},
		{"unknown field", hdr(3, 1, `{"node":"n1","seq":1,"ttl":5}`), wantContains("ttl")},
		{"unknown nested field", hdr(4, 1, `{"spec":{"roles":[{"name":"web","type":"service","replicas":2}]},"actor":"a","time":1}`), wantContains("replicas")},
		{"unknown event field", hdr(byte(TypeRecordEvent|IgnoreUnknownFlag), 1, `{"event":{"kind":"x","colour":"red"}}`), wantContains("colour")},
		{"trailing object", hdr(3, 1, renew+`{}`), wantContains("trailing")},
		{"trailing garbage", hdr(3, 1, renew+`x`), wantContains("trailing")},
		{"trailing number", hdr(3, 1, renew+` 1`), wantContains("trailing")},
		{"trailing close brace", hdr(3, 1, renew+`}`), wantContains("trailing")},
		{"trailing close bracket", hdr(3, 1, renew+`]`), wantContains("trailing")},
		{"trailing comma", hdr(3, 1, renew+`,`), wantContains("trailing")},
		{"truncated json", hdr(3, 1, `{"node":"n1","seq":`), nil},
		{"wrong field type", hdr(3, 1, `{"node":"n1","seq":"1"}`), nil},
		{"negative unsigned", hdr(3, 1, `{"node":"n1","seq":-1}`), nil},
		{"not an object", hdr(3, 1, `[1,2]`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.in)
			if err == nil {
				t.Fatalf("Decode(%q): got %#v, nil error; want an error", tt.in, got)
			}
			if got != nil {
				t.Fatalf("Decode(%q): got command %#v alongside error %v, want nil", tt.in, got, err)
			}
			if tt.check != nil {
				tt.check(t, err)
				return
			}
			// A malformed command is neither unknown nor ignorable.
			var ue *UnknownCommandError
			if errors.As(err, &ue) || errors.Is(err, ErrUnknownIgnorable) {
				t.Fatalf("Decode(%q): got %v for a malformed command, want a plain decode error", tt.in, err)
			}
		})
	}
}

// unreleasedType is the lowest command type this build does not know.
func unreleasedType() CommandType {
	for t := CommandType(1); t < IgnoreUnknownFlag; t++ {
		if _, ok := registry[t]; !ok {
			return t
		}
	}
	panic("no free command type")
}

func wantUnknown(typ CommandType, version uint8) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ue *UnknownCommandError
		if !errors.As(err, &ue) {
			t.Fatalf("got error %T %v, want *UnknownCommandError", err, err)
		}
		if ue.Type != typ || ue.Version != version {
			t.Fatalf("UnknownCommandError: got type %d version %d, want type %d version %d", ue.Type, ue.Version, typ, version)
		}
		if ue.Reason == "" {
			t.Fatalf("UnknownCommandError: got empty Reason")
		}
		if errors.Is(err, ErrUnknownIgnorable) {
			t.Fatalf("got ErrUnknownIgnorable for a command that must stop the agent")
		}
	}
}

func wantIs(target error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Fatalf("got error %v, want %v", err, target)
		}
	}
}

func wantContains(s string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("got error %q, want it to contain %q", err, s)
		}
		var ue *UnknownCommandError
		if errors.As(err, &ue) || errors.Is(err, ErrUnknownIgnorable) {
			t.Fatalf("got %v, want a decode error, not an unknown-command error", err)
		}
	}
}

// TestNewFieldsOmittedWhenZero: fields added to a command at the same
// version are left out when zero, so a command that does not use them
// encodes as before they existed and agents that predate them read it.
func TestNewFieldsOmittedWhenZero(t *testing.T) {
	tests := []struct {
		cmd  Command
		want string // payload without the new fields
		with Command
		key  string // the new field's key
	}{
		{&Assign{Role: "web", Node: "n1", Epoch: 1}, `{"role":"web","node":"n1","epoch":1,"reason":"","actor":"","time":0}`,
			&Assign{Role: "web", Node: "n1", HolderGen: 9, Epoch: 1}, `"holder_gen":9`},
		{&Assign{Role: "web", Node: "n1", Epoch: 1}, `{"role":"web","node":"n1","epoch":1,"reason":"","actor":"","time":0}`,
			&Assign{Role: "web", Node: "n1", Epoch: 1, Detected: 5}, `"detected":5`},
		{&RequestRelease{Role: "web", Epoch: 1}, `{"role":"web","epoch":1,"reason":"","actor":"","time":0}`,
			&RequestRelease{Role: "web", Epoch: 1, Target: "n2"}, `"target":"n2"`},
		{&RegisterNode{Node: "n1", RaftAddr: "a:1", APIAddr: "a:2", LeaseTTLMillis: 1},
			`{"node":"n1","raft_addr":"a:1","api_addr":"a:2","voter":false,"witness":false,"lease_ttl_ms":1,"time":0}`,
			&RegisterNode{Node: "n1", RaftAddr: "a:1", APIAddr: "a:2", LeaseTTLMillis: 1, VIP: true}, `"vip":true`},
	}
	for _, tt := range tests {
		if b := mustEncode(t, tt.cmd); string(b[2:]) != tt.want {
			t.Errorf("%s payload: got %s, want %s", tt.cmd.Type(), b[2:], tt.want)
		}
		if b := mustEncode(t, tt.with); !strings.Contains(string(b[2:]), tt.key) {
			t.Errorf("%s payload: got %s, want it to carry %s", tt.with.Type(), b[2:], tt.key)
		}
	}
}

func TestDecodeAllowsTrailingWhitespace(t *testing.T) {
	b := append(mustEncode(t, &RenewLease{Node: "n1", Seq: 2}), " \n\t"...)
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode with trailing whitespace: got error %v, want nil", err)
	}
	if want := (&RenewLease{Node: "n1", Seq: 2}); !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode: got %#v, want %#v", got, want)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	okReg := RegisterNode{Node: "n1", RaftAddr: "a:1", APIAddr: "a:2", LeaseTTLMillis: 1000}
	reg := func(f func(*RegisterNode)) *RegisterNode { c := okReg; f(&c); return &c }
	tests := []struct {
		name  string
		cmd   Command
		field string
	}{
		{"register empty node", reg(func(c *RegisterNode) { c.Node = "" }), "node"},
		{"register invalid node", reg(func(c *RegisterNode) { c.Node = "Node_1" }), "node"},
		{"register empty raft addr", reg(func(c *RegisterNode) { c.RaftAddr = "" }), "raft_addr"},
		{"register empty api addr", reg(func(c *RegisterNode) { c.APIAddr = "" }), "api_addr"},
		{"register zero ttl", reg(func(c *RegisterNode) { c.LeaseTTLMillis = 0 }), "lease_ttl_ms"},
		{"register negative ttl", reg(func(c *RegisterNode) { c.LeaseTTLMillis = -5 }), "lease_ttl_ms"},
		{"register invalid check", reg(func(c *RegisterNode) { c.Checks = []string{"pull", "Pull"} }), "checks[1]"},
		{"register duplicate check", reg(func(c *RegisterNode) { c.Checks = []string{"pull", "pull"} }), "checks[1]"},
		{"register invalid service", reg(func(c *RegisterNode) { c.Services = []string{"no_tary"} }), "services[0]"},
		{"register duplicate service", reg(func(c *RegisterNode) { c.Services = []string{"a", "b", "a"} }), "services[2]"},
		{"check-update invalid node", &CheckUpdate{Node: "N1", Check: "pull"}, "node"},
		{"register redis not host:port", reg(func(c *RegisterNode) { c.Redis = "10.0.0.1" }), "redis"},
		{"register sentinel not host:port", reg(func(c *RegisterNode) { c.Sentinel = "sentinel" }), "sentinel"},
		{"redis-report no role no error", &RedisReport{Node: "n1"}, "role"},
		{"redis-report unknown role", &RedisReport{Node: "n1", Role: "slave"}, "role"},
		{"redis-report role and error", &RedisReport{Node: "n1", Role: RedisMaster, Error: "x"}, "error"},
		{"redis-report replica without master", &RedisReport{Node: "n1", Role: RedisReplica}, "master"},
		{"redis-report offset below -1", &RedisReport{Node: "n1", Role: RedisMaster, Offset: -2}, "offset"},
		{"check-update empty check", &CheckUpdate{Node: "n1"}, "check"},
		{"check-update long error", &CheckUpdate{Node: "n1", Check: "pull", Error: strings.Repeat("e", MaxCheckError+1)}, "error"},
		{"check-update long output", &CheckUpdate{Node: "n1", Check: "pull", Output: strings.Repeat("o", MaxCheckOutput+1)}, "output"},
		{"remove invalid node", &RemoveNode{Node: "-n1"}, "node"},
		{"renew empty node", &RenewLease{Seq: 1}, "node"},
		{"renew zero seq", &RenewLease{Node: "n1"}, "seq"},
		{"apply-spec nil spec", &ApplySpec{Actor: "operator"}, "spec"},
		{"apply-spec invalid spec", &ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: "web", Type: spec.TypeService}, {Name: "cache", Type: "cron"}}}}, "roles[1].type"},
		// Moved from the Apply table: Apply no longer checks the spec itself.
		{"apply-spec unsupported role type", &ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: "x", Type: "cron"}}}}, "roles[0].type"},
		{"apply-spec unknown role type", &ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: "x", Type: "cron"}}}}, "roles[0].type"},
		{"apply-spec duplicate role", &ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: "web", Type: spec.TypeService}, {Name: "web", Type: spec.TypeService}}}}, "roles[1].name"},
		{"apply-spec duplicate candidate", &ApplySpec{Spec: &spec.Spec{Roles: []spec.Role{{Name: "web", Type: spec.TypeService, Candidates: []spec.Candidate{{Node: "n1"}, {Node: "n1"}}}}}}, "roles[0].candidates[1].node"},
		{"assign empty role", &Assign{Node: "n1", Epoch: 1}, "role"},
		{"assign invalid role", &Assign{Role: "Web", Node: "n1", Epoch: 1}, "role"},
		{"assign empty node", &Assign{Role: "web", Epoch: 1}, "node"},
		{"assign zero epoch", &Assign{Role: "web", Node: "n1"}, "epoch"},
		{"request-release empty role", &RequestRelease{Epoch: 1}, "role"},
		{"request-release zero epoch", &RequestRelease{Role: "web"}, "epoch"},
		{"request-release invalid target", &RequestRelease{Role: "web", Epoch: 1, Target: "N2"}, "target"},
		{"release empty role", &Release{Node: "n1", Epoch: 1}, "role"},
		{"release invalid node", &Release{Role: "web", Node: "n 1", Epoch: 1}, "node"},
		{"release zero epoch", &Release{Role: "web", Node: "n1"}, "epoch"},
		{"record-event empty kind", &RecordEvent{Event: Event{Message: "hello"}}, "event.kind"},
		{"record-event long kind", &RecordEvent{Event: Event{Kind: EventKind(strings.Repeat("k", MaxEventName+1))}}, "event.kind"},
		{"record-event long node", &RecordEvent{Event: Event{Kind: EventOperator, Node: strings.Repeat("n", MaxEventName+1)}}, "event.node"},
		{"record-event long actor", &RecordEvent{Event: Event{Kind: EventOperator, Actor: strings.Repeat("a", MaxEventName+1)}}, "event.actor"},
		{"record-event long role", &RecordEvent{Event: Event{Kind: EventOperator, Role: strings.Repeat("r", MaxEventName+1)}}, "event.role"},
		{"record-event long old", &RecordEvent{Event: Event{Kind: EventOperator, Old: strings.Repeat("o", MaxEventText+1)}}, "event.old"},
		{"record-event long new", &RecordEvent{Event: Event{Kind: EventOperator, New: strings.Repeat("n", MaxEventText+1)}}, "event.new"},
		{"record-event long message", &RecordEvent{Event: Event{Kind: EventOperator, Message: strings.Repeat("m", MaxEventMessage+1)}}, "event.message"},
		{"leave empty node", &Leave{Reason: "bye"}, "node"},
		{"leave long reason", &Leave{Node: "n1", Reason: strings.Repeat("r", MaxEventMessage+1)}, "reason"},
		{"release long reason", &Release{Role: "web", Node: "n1", Epoch: 1, Reason: strings.Repeat("r", MaxEventMessage+1)}, "reason"},
		{"apply-spec long actor", &ApplySpec{Spec: &spec.Spec{}, Actor: strings.Repeat("a", MaxEventName+1)}, "actor"},
		{"leave invalid node", &Leave{Node: "n1."}, "node"},
		{"set-drain empty node", &SetDrain{Drained: true}, "node"},
		{"set-drain invalid node", &SetDrain{Node: "n_1", Drained: true}, "node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.cmd)
			if err == nil {
				t.Fatalf("Encode(%#v): got %q, nil error; want an error naming %q", tt.cmd, b, tt.field)
			}
			if b != nil {
				t.Fatalf("Encode: got bytes %q alongside error %v, want nil", b, err)
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Encode: got error %T %v, want one wrapping *conf.FieldError", err, err)
			}
			if fe.Field != tt.field {
				t.Fatalf("FieldError.Field: got %q, want %q (error %v)", fe.Field, tt.field, err)
			}
			if !strings.HasPrefix(err.Error(), tt.cmd.Type().String()+": ") {
				t.Fatalf("Encode error: got %q, want it prefixed with the command name %q", err, tt.cmd.Type())
			}
			if err := tt.cmd.Validate(); err == nil {
				t.Fatalf("Validate: got nil, want the same error Encode gave")
			}
		})
	}
}

// fakeCommand has a type this build does not know.
type fakeCommand struct{}

func (fakeCommand) Type() CommandType { return 99 }
func (fakeCommand) Validate() error   { return nil }

func TestEncodeUnknownType(t *testing.T) {
	if b, err := Encode(fakeCommand{}); err == nil {
		t.Fatalf("Encode(fake type 99): got %q, nil error; want an error", b)
	}
}

func TestEncodeSizeLimit(t *testing.T) {
	// A request-release's reason is a free-text field without a bound of
	// its own: the leader alone proposes the command.
	ev := func(n int) *RequestRelease {
		return &RequestRelease{Role: "web", Epoch: 1, Reason: strings.Repeat("x", n)}
	}
	base := len(mustEncode(t, ev(1))) - 1 // bytes besides the message
	atLimit := ev(MaxCommandSize - base)
	b, err := Encode(atLimit)
	if err != nil {
		t.Fatalf("Encode of exactly MaxCommandSize bytes: got error %v, want nil", err)
	}
	if len(b) != MaxCommandSize {
		t.Fatalf("encoded size: got %d, want %d", len(b), MaxCommandSize)
	}
	if got, err := Decode(b); err != nil || !reflect.DeepEqual(got, atLimit) {
		t.Fatalf("Decode of a MaxCommandSize command: got (%T, %v), want the command back", got, err)
	}

	for _, n := range []int{MaxCommandSize - base + 1, MaxCommandSize, 2 * MaxCommandSize} {
		b, err := Encode(ev(n))
		if err == nil {
			t.Fatalf("Encode of %d bytes: got %d bytes, nil error; want a size error", base+n, len(b))
		}
		if b != nil {
			t.Fatalf("Encode of oversized command: got bytes alongside error %v", err)
		}
		if !strings.Contains(err.Error(), "limit") {
			t.Fatalf("Encode of oversized command: got error %q, want it to mention the limit", err)
		}
	}

	// A big spec is refused the same way.
	big := &spec.Spec{}
	for i := 0; len(big.Roles) < 20000; i++ {
		big.Roles = append(big.Roles, spec.Role{Name: "role-" + strings.Repeat("a", 20) + "-" + strconv.Itoa(i), Type: spec.TypeService})
	}
	if b, err := Encode(&ApplySpec{Spec: big}); err == nil {
		t.Fatalf("Encode of a %d-role spec: got %d bytes, nil error; want a size error", len(big.Roles), len(b))
	}
}

func TestDecodeRejectsIgnoreFlagOnMandatoryType(t *testing.T) {
	b, err := Encode(&RenewLease{Node: "n1", Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	b[0] |= byte(IgnoreUnknownFlag)
	_, err = Decode(b)
	var unk *UnknownCommandError
	if !errors.As(err, &unk) {
		t.Fatalf("Decode of renew-lease with the ignore flag: err = %v, want *UnknownCommandError", err)
	}
}

func TestTruncateKeepsUTF8(t *testing.T) {
	if got := Truncate("héllo", 2); got != "h" {
		t.Fatalf("Truncate(héllo, 2) = %q, want %q (no half rune)", got, "h")
	}
	if got := Truncate("abc", 5); got != "abc" {
		t.Fatalf("Truncate(abc, 5) = %q", got)
	}
}

// TestEventBounded: Bounded cuts every field to what Validate accepts, so a
// bounded event always encodes; an event within the bounds is unchanged.
func TestEventBounded(t *testing.T) {
	long := strings.Repeat("é", MaxEventMessage) // 2 bytes a rune: cuts land mid-rune
	e := Event{Kind: EventKind(long), Node: long, Actor: long, Role: long, Old: long, New: long, Message: long}
	b := e.Bounded()
	if _, err := Encode(&RecordEvent{Event: b}); err != nil {
		t.Fatalf("Encode of a bounded event: %v", err)
	}
	for name, f := range map[string]string{"kind": string(b.Kind), "node": b.Node, "old": b.Old, "message": b.Message} {
		if !utf8.ValidString(f) || len(f) == 0 {
			t.Errorf("bounded %s: %d bytes, valid UTF-8 %v", name, len(f), utf8.ValidString(f))
		}
	}
	if b.Message != Truncate(long, MaxEventMessage) {
		t.Errorf("bounded message: %d bytes, want %d", len(b.Message), len(Truncate(long, MaxEventMessage)))
	}
	small := Event{Kind: EventOperator, Node: "n1", Message: "hello"}
	if small.Bounded() != small {
		t.Errorf("Bounded changed an event within the bounds: %+v", small.Bounded())
	}
}
