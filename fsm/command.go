package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/harbormaster/harbormaster/internal/conf"
	"github.com/harbormaster/harbormaster/spec"
)

// CommandType identifies a command in the log. The enum is append-only: a
// value, once released, keeps its meaning forever.
type CommandType uint8

// IgnoreUnknownFlag is set on the type byte of commands that an older agent,
// which does not know the type, may skip without diverging (Consul's habit
// for rolling upgrades). Commands without it stop an agent that does not know
// them.
const IgnoreUnknownFlag CommandType = 0x80

// Command types.
const (
	TypeRegisterNode   CommandType = 1
	TypeRemoveNode     CommandType = 2
	TypeRenewLease     CommandType = 3
	TypeApplySpec      CommandType = 4
	TypeAssign         CommandType = 5
	TypeRequestRelease CommandType = 6
	TypeRelease        CommandType = 7
	TypeRecordEvent    CommandType = 8
	TypeLeave          CommandType = 9
	TypeSetDrain       CommandType = 10
	TypeCheckUpdate    CommandType = 11
	TypeRedisReport    CommandType = 12
	TypeSetLeaseKey    CommandType = 13
	TypeSetClusterID   CommandType = 14
	TypeRedisHold      CommandType = 15
)

// MaxCommandSize bounds an encoded command; Propose refuses larger ones.
const MaxCommandSize = 512 << 10

// Command is one typed change to the State. Implementations are plain values.
type Command interface {
	// Type is the command's log type.
	Type() CommandType
	// Validate checks the command on its own, without the state: it is the
	// edge check run before a command is proposed.
	Validate() error
}

type cmdInfo struct {
	name      string
	version   uint8 // the version this build writes and the only one it reads
	ignorable bool
	new       func() Command
}

var registry = map[CommandType]cmdInfo{
	TypeRegisterNode:   {"register-node", 1, false, func() Command { return &RegisterNode{} }},
	TypeRemoveNode:     {"remove-node", 1, false, func() Command { return &RemoveNode{} }},
	TypeRenewLease:     {"renew-lease", 1, false, func() Command { return &RenewLease{} }},
	TypeApplySpec:      {"apply-spec", 1, false, func() Command { return &ApplySpec{} }},
	TypeAssign:         {"assign", 1, false, func() Command { return &Assign{} }},
	TypeRequestRelease: {"request-release", 1, false, func() Command { return &RequestRelease{} }},
	TypeRelease:        {"release", 1, false, func() Command { return &Release{} }},
	TypeRecordEvent:    {"record-event", 1, true, func() Command { return &RecordEvent{} }},
	TypeLeave:          {"leave", 1, false, func() Command { return &Leave{} }},
	TypeSetDrain:       {"set-drain", 1, false, func() Command { return &SetDrain{} }},
	TypeCheckUpdate:    {"check-update", 1, false, func() Command { return &CheckUpdate{} }},
	TypeRedisReport:    {"redis-report", 1, false, func() Command { return &RedisReport{} }},
	TypeSetLeaseKey:    {"lease-key", 1, false, func() Command { return &SetLeaseKey{} }},
	TypeSetClusterID:   {"cluster-id", 1, false, func() Command { return &SetClusterID{} }},
	TypeRedisHold:      {"redis-hold", 1, false, func() Command { return &RedisHold{} }},
}

func (t CommandType) String() string {
	if i, ok := registry[t&^IgnoreUnknownFlag]; ok {
		return i.name
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// RegisterNode records an agent's identity and addresses. Agents send it at
// every start; it is idempotent.
type RegisterNode struct {
	Node           string `json:"node"`
	RaftAddr       string `json:"raft_addr"`
	APIAddr        string `json:"api_addr"`
	Voter          bool   `json:"voter"`
	Witness        bool   `json:"witness"`
	LeaseTTLMillis int64  `json:"lease_ttl_ms"`
	Time           int64  `json:"time"`
	// VIP says the node has an interface for virtual IPs (vip_interface).
	VIP bool `json:"vip,omitempty"`
	// MAC is that interface's hardware address: the one that should answer
	// for a VIP this node holds.
	MAC string `json:"mac,omitempty"`
	// Checks names the health checks the node runs. Registration resets
	// their results to unknown: a restarted agent reports them afresh.
	Checks []string `json:"checks,omitempty"`
	// KeepChecks keeps the results of the checks named before and now (a
	// config reload, whose unchanged checks keep running); only the new
	// names start unknown. Builds before it refuse the field: reload a
	// change of checks once every member runs a build that has it.
	KeepChecks bool `json:"keep_checks,omitempty"`
	// Services names the service roles the node has an actuator for; only
	// those (and marker roles) may be given to it.
	Services []string `json:"services,omitempty"`
	// Redis is the announce address (host:port) of the node's Redis, ""
	// when the node has none; only nodes with one hold redis-master roles.
	Redis string `json:"redis,omitempty"`
	// Sentinel is the announce address of the node's Sentinel-compatible
	// listener ("" when it runs none), for SENTINEL sentinels answers.
	Sentinel string `json:"sentinel,omitempty"`
}

// RemoveNode forgets a node's registration and check results. Role
// assignments stay until the coordinator moves them (the node may still be
// running until its lease is gone).
type RemoveNode struct {
	Node  string `json:"node"`
	Actor string `json:"actor"`
	Time  int64  `json:"time"`
}

// RenewLease renews a node's lease through the log. Deprecated: node
// leases are quorum leases renewed with the voters directly
// (docs/design-quorum-lease.md); the type stays so that logs written by
// earlier builds replay. Seq must exceed the stored one.
type RenewLease struct {
	Node string `json:"node"`
	Seq  uint64 `json:"seq"`
}

// ApplySpec replaces the spec. ExpectedVersion, when non-zero, makes it a
// compare-and-set against State.SpecVersion. Seed applies the spec only if
// none was ever applied (the bootstrap seed from a node's spec_file).
type ApplySpec struct {
	Spec            *spec.Spec `json:"spec"`
	ExpectedVersion uint64     `json:"expected_version,omitempty"`
	Seed            bool       `json:"seed,omitempty"`
	Actor           string     `json:"actor"`
	Time            int64      `json:"time"`
}

// Assign gives a role to a node. It is a compare-and-set: PrevHolder and
// Epoch-1 must match the current assignment, so a decision taken on a stale
// view never applies. Assigning a role to its current holder is allowed only
// with a new lease generation (the holder's lease lapsed and it started over).
type Assign struct {
	Role       string `json:"role"`
	Node       string `json:"node"`
	PrevHolder string `json:"prev_holder,omitempty"`
	// HolderGen is the lease generation of Node the role is bound to: the
	// node acts for the role only while its lease of this generation is
	// valid (docs/design-quorum-lease.md). 0 for assignments written before
	// quorum leases.
	HolderGen uint64 `json:"holder_gen,omitempty"`
	Epoch     uint64 `json:"epoch"`
	Reason    string `json:"reason"`
	Actor     string `json:"actor"`
	Time      int64  `json:"time"`
	// Detected is when the coordinator first saw the reason for this
	// assignment (the old holder's lease ended, its release, the role
	// appearing), unix ms on its clock: the start of the failover's phases.
	Detected int64 `json:"detected,omitempty"`
	// DataLoss, on a redis-master role, says why Node may be promoted
	// although its Redis has not synced with the role's history (see
	// UnsyncedPromotion): the fsm refuses such an assignment without it,
	// and records it as a redis-data-loss event.
	DataLoss string `json:"data_loss,omitempty"`
	// Cause is why the role changed holder (see Cause); empty in commands
	// written before causes.
	Cause Cause `json:"cause,omitempty"`
}

// RequestRelease asks the holder of a role (at Epoch) to let it go. Target,
// when set, is where an operator moves it (`harbormaster move`): the
// coordinator gives the role to Target once released, if it is eligible.
type RequestRelease struct {
	Role   string `json:"role"`
	Epoch  uint64 `json:"epoch"`
	Target string `json:"target,omitempty"`
	// AcceptDataLoss (with Target, redis-master roles) lets the role go to
	// Target although its Redis has not synced with the role's history
	// (`harbormaster move --accept-data-loss`). On a role without a holder
	// it only sets the move target.
	AcceptDataLoss bool   `json:"accept_data_loss,omitempty"`
	Reason         string `json:"reason"`
	Actor          string `json:"actor"`
	Time           int64  `json:"time"`
	// Cause is why the holder is asked to let go (see Cause).
	Cause Cause `json:"cause,omitempty"`
}

// Release is sent by the holder once it has stopped acting for the role.
type Release struct {
	Role   string `json:"role"`
	Node   string `json:"node"`
	Epoch  uint64 `json:"epoch"`
	Reason string `json:"reason"`
	Time   int64  `json:"time"`
	// Cause is why the holder lets go (see Cause): the request's cause, or
	// shutdown on a graceful stop.
	Cause Cause `json:"cause,omitempty"`
}

// RecordEvent appends an operator or membership event that has no other
// command of its own (leadership transfer, Raft membership changes).
type RecordEvent struct {
	Event Event `json:"event"`
}

// Leave marks a node as shutting down: it stays a member but is given no
// role until it registers again (at its next start). Sent before the node
// releases its roles on a graceful stop, so they are not given back to it.
type Leave struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
	Time   int64  `json:"time"`
}

func (*Leave) Type() CommandType    { return TypeLeave }
func (*SetDrain) Type() CommandType { return TypeSetDrain }

// SetDrain drains a node (it is given no role, and the roles it holds are
// released and placed elsewhere) or undrains it.
type SetDrain struct {
	Node    string `json:"node"`
	Drained bool   `json:"drained"`
	Actor   string `json:"actor"`
	Time    int64  `json:"time"`
}

// Validate implements Command.
func (c *SetDrain) Validate() error { return checkNode("node", c.Node) }

// Bounds of a check result's texts in the state.
const (
	MaxCheckError  = 512
	MaxCheckOutput = 1024
)

// CheckUpdate records a transition of one of a node's health checks. Agents
// send it only when a check changes state (keepalived's fall/rise already
// applied), never per probe.
type CheckUpdate struct {
	Node    string `json:"node"`
	Check   string `json:"check"`
	Passing bool   `json:"passing"`
	// Error is the last probe error, Output its last output (bounded).
	Error  string `json:"error,omitempty"`
	Output string `json:"output,omitempty"`
	// Time is when the agent saw the transition (unix ms, its clock).
	Time int64 `json:"time"`
}

// Validate implements Command.
func (c *CheckUpdate) Validate() error {
	if err := checkNode("node", c.Node); err != nil {
		return err
	}
	if !spec.ValidName(c.Check) {
		return badField("check", fmt.Sprintf("%q is not a valid check name (1-63 lower-case letters, digits, inner hyphens)", c.Check))
	}
	if len(c.Error) > MaxCheckError {
		return badField("error", fmt.Sprintf("is %d bytes; at most %d (truncate it)", len(c.Error), MaxCheckError))
	}
	if len(c.Output) > MaxCheckOutput {
		return badField("output", fmt.Sprintf("is %d bytes; at most %d (truncate it)", len(c.Output), MaxCheckOutput))
	}
	return nil
}

func (*CheckUpdate) Type() CommandType { return TypeCheckUpdate }

// Redis replication roles as reported.
const (
	RedisMaster  = "master"
	RedisReplica = "replica"
)

// RedisReport is a node's view of its own Redis: its replication role, the
// master it follows, and the replication offset it has processed. Agents
// send it when the role, master, link or run id change, and while the
// offset moves at most once a second.
type RedisReport struct {
	Node string `json:"node"`
	// Role is master or replica; "" with Error set when the agent cannot
	// read its Redis (it is down).
	Role string `json:"role,omitempty"`
	// Master is the host:port a replica follows.
	Master string `json:"master,omitempty"`
	LinkUp bool   `json:"link_up,omitempty"`
	// Offset is master_repl_offset (master) or slave_repl_offset
	// (replica); -1 when unknown.
	Offset int64  `json:"offset"`
	ReplID string `json:"repl_id,omitempty"`
	RunID  string `json:"run_id,omitempty"`
	Error  string `json:"error,omitempty"`
	Time   int64  `json:"time"`
	// ReplID2 and Offset2 are master_replid2 and second_repl_offset: the
	// history this Redis continues (a promoted replica's old master's, or
	// its own before a restart from RDB) up to Offset2-1; "" and 0 when none.
	ReplID2 string `json:"repl_id2,omitempty"`
	Offset2 int64  `json:"offset2,omitempty"`
	// Replicas (masters) are its replicas as it sees them.
	Replicas []ReplicaState `json:"replicas,omitempty"`
	// Settings are the replication settings read at the agent's start and
	// after every restart of the Redis; Warnings what in them puts
	// acknowledged writes at risk, each with its fix.
	Settings *RedisSettings `json:"settings,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
	// Loading is set while the Redis reads its RDB or AOF; Keys counts
	// its keys (nil when unknown): a restarted Redis with keys came back
	// with data of its own.
	Loading bool   `json:"loading,omitempty"`
	Keys    *int64 `json:"keys,omitempty"`
}

// RedisHold keeps a redis-master role vacant: no live candidate has synced
// with the role's history (the lost master's data) and the spec's
// unsynced_promotion does not allow promoting one yet. It records why
// (an event redis-unsynced) once per vacancy.
type RedisHold struct {
	Role   string `json:"role"`
	Epoch  uint64 `json:"epoch"`
	Reason string `json:"reason"`
	Actor  string `json:"actor"`
	Time   int64  `json:"time"`
}

// Validate implements Command.
func (c *RedisHold) Validate() error {
	if err := checkRole("role", c.Role); err != nil {
		return err
	}
	if c.Reason == "" {
		return badField("reason", "is empty; say why the role stays vacant")
	}
	if len(c.Reason) > MaxCheckOutput {
		return badField("reason", fmt.Sprintf("is %d bytes; at most %d", len(c.Reason), MaxCheckOutput))
	}
	return nil
}

func (*RedisHold) Type() CommandType { return TypeRedisHold }

// validateRedisExtras checks a report's replicas, settings and warnings.
func (c *RedisReport) validateRedisExtras() error {
	if c.Offset2 < 0 {
		return badField("offset2", "must be 0 (none) or more")
	}
	if len(c.ReplID2) > maxRedisText {
		return badField("repl_id2", fmt.Sprintf("is %d bytes; at most %d", len(c.ReplID2), maxRedisText))
	}
	if c.Role != RedisMaster && len(c.Replicas) > 0 {
		return badField("replicas", "is set on a report that is not a master's")
	}
	if len(c.Replicas) > MaxRedisReplicas {
		return badField("replicas", fmt.Sprintf("has %d entries; at most %d", len(c.Replicas), MaxRedisReplicas))
	}
	for i, r := range c.Replicas {
		f := fmt.Sprintf("replicas[%d]", i)
		if r.Node != "" {
			if err := checkNode(f+".node", r.Node); err != nil {
				return err
			}
		}
		if r.Addr == "" || len(r.Addr) > maxRedisText || len(r.State) > maxRedisText {
			return badField(f, "needs an addr, and addr and state of at most 256 bytes")
		}
		if r.LagBytes < 0 || r.LagMillis < 0 {
			return badField(f, "lag_bytes and lag_ms must be 0 or more")
		}
	}
	if len(c.Warnings) > MaxRedisWarnings {
		return badField("warnings", fmt.Sprintf("has %d entries; at most %d", len(c.Warnings), MaxRedisWarnings))
	}
	for i, w := range c.Warnings {
		if w == "" || len(w) > maxRedisText*2 {
			return badField(fmt.Sprintf("warnings[%d]", i), "must be 1 to 512 bytes")
		}
	}
	if c.Settings != nil && len(c.Settings.Save) > maxRedisText {
		return badField("settings.save", fmt.Sprintf("is %d bytes; at most %d", len(c.Settings.Save), maxRedisText))
	}
	return nil
}

// Validate implements Command.
func (c *RedisReport) Validate() error {
	if err := c.validateRedisExtras(); err != nil {
		return err
	}
	if err := checkNode("node", c.Node); err != nil {
		return err
	}
	switch c.Role {
	case RedisMaster, RedisReplica:
		if c.Error != "" {
			return badField("error", "is set with a role; a report is either a role or an error")
		}
	case "":
		if c.Error == "" {
			return badField("role", "is empty; set master or replica, or error when the Redis cannot be read")
		}
	default:
		return badField("role", fmt.Sprintf("%q is not master or replica", c.Role))
	}
	if c.Role == RedisReplica && c.Master == "" {
		return badField("master", "is empty for a replica; set the host:port it follows")
	}
	if c.Offset < -1 {
		return badField("offset", "must be -1 (unknown) or more")
	}
	if len(c.Error) > MaxCheckError {
		return badField("error", fmt.Sprintf("is %d bytes; at most %d (truncate it)", len(c.Error), MaxCheckError))
	}
	return nil
}

// LeaseKeySize is the length of a lease key's secret.
const LeaseKeySize = 32

// Secret is key material. It is encoded in the log and in snapshots
// (base64) and nowhere else: formatted or logged it prints as [redacted].
type Secret []byte

func (Secret) String() string   { return "[redacted]" }
func (Secret) GoString() string { return "fsm.Secret([redacted])" }

// LogValue keeps the secret out of slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// SetLeaseKey installs a new cluster lease key, the HMAC key of lease
// datagrams (lease/wire.go); the key it replaces stays accepted until the
// next one. Only the leader proposes it (never accepted from other nodes):
// the first when it finds the state without one, the next ones when an
// operator rotates. ID must be the current key's id + 1 (1 for the first),
// so a rotation decided on a stale view never applies.
type SetLeaseKey struct {
	ID     uint32 `json:"id"`
	Secret Secret `json:"secret"`
	Actor  string `json:"actor"`
	Time   int64  `json:"time"`
}

// Validate implements Command.
func (c *SetLeaseKey) Validate() error {
	if c.ID == 0 {
		return badField("id", "must be positive")
	}
	if len(c.Secret) != LeaseKeySize {
		return badField("secret", fmt.Sprintf("is %d bytes; a lease key is %d random bytes", len(c.Secret), LeaseKeySize))
	}
	return nil
}

// SetClusterID names the cluster's history once: a random id the first
// leader proposes (never accepted from other nodes), stored by every node in
// its data dir and exchanged when Raft connections open, so that a node of
// another history (a wiped node that bootstrapped anew, a restored backup)
// cannot talk to this one. It never changes once set.
type SetClusterID struct {
	ID    string `json:"id"`
	Actor string `json:"actor"`
	Time  int64  `json:"time"`
}

// ValidClusterID reports whether id is a cluster id: 32 lower-case hex
// digits (16 random bytes).
func ValidClusterID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Validate implements Command.
func (c *SetClusterID) Validate() error {
	if !ValidClusterID(c.ID) {
		return badField("id", fmt.Sprintf("%q is not 32 lower-case hex digits", c.ID))
	}
	return nil
}

func (*SetClusterID) Type() CommandType   { return TypeSetClusterID }
func (*SetLeaseKey) Type() CommandType    { return TypeSetLeaseKey }
func (*RedisReport) Type() CommandType    { return TypeRedisReport }
func (*RegisterNode) Type() CommandType   { return TypeRegisterNode }
func (*RemoveNode) Type() CommandType     { return TypeRemoveNode }
func (*RenewLease) Type() CommandType     { return TypeRenewLease }
func (*ApplySpec) Type() CommandType      { return TypeApplySpec }
func (*Assign) Type() CommandType         { return TypeAssign }
func (*RequestRelease) Type() CommandType { return TypeRequestRelease }
func (*Release) Type() CommandType        { return TypeRelease }
func (*RecordEvent) Type() CommandType    { return TypeRecordEvent }

func badField(field, msg string) error { return &conf.FieldError{Field: field, Msg: msg} }

func checkNode(field, id string) error {
	if !spec.ValidName(id) {
		return badField(field, fmt.Sprintf("%q is not a valid node id (1-63 lower-case letters, digits, inner hyphens)", id))
	}
	return nil
}

func checkRole(field, name string) error {
	if !spec.ValidName(name) {
		return badField(field, fmt.Sprintf("%q is not a valid role name (1-63 lower-case letters, digits, inner hyphens)", name))
	}
	return nil
}

// Validate implements Command.
func (c *RegisterNode) Validate() error {
	if err := checkNode("node", c.Node); err != nil {
		return err
	}
	if c.RaftAddr == "" {
		return badField("raft_addr", "is empty")
	}
	if c.APIAddr == "" {
		return badField("api_addr", "is empty")
	}
	if c.LeaseTTLMillis <= 0 {
		return badField("lease_ttl_ms", "must be positive")
	}
	if err := uniqueNames("checks", "check", c.Checks); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"redis", c.Redis}, {"sentinel", c.Sentinel}} {
		if f.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.v); err != nil {
			return badField(f.name, fmt.Sprintf("%q is not host:port", f.v))
		}
	}
	return uniqueNames("services", "role", c.Services)
}

func uniqueNames(field, what string, names []string) error {
	seen := map[string]bool{}
	for i, n := range names {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !spec.ValidName(n) {
			return badField(f, fmt.Sprintf("%q is not a valid %s name (1-63 lower-case letters, digits, inner hyphens)", n, what))
		}
		if seen[n] {
			return badField(f, fmt.Sprintf("%q is listed twice", n))
		}
		seen[n] = true
	}
	return nil
}

// Validate implements Command.
func (c *Leave) Validate() error {
	if err := checkNode("node", c.Node); err != nil {
		return err
	}
	return checkText("reason", c.Reason, MaxEventMessage)
}

// Validate implements Command.
func (c *RemoveNode) Validate() error { return checkNode("node", c.Node) }

// Validate implements Command.
func (c *RenewLease) Validate() error {
	if err := checkNode("node", c.Node); err != nil {
		return err
	}
	if c.Seq == 0 {
		return badField("seq", "must be positive")
	}
	return nil
}

// Validate implements Command.
func (c *ApplySpec) Validate() error {
	if c.Spec == nil {
		return badField("spec", "is missing")
	}
	if err := checkText("actor", c.Actor, MaxEventName); err != nil {
		return err
	}
	return c.Spec.Validate()
}

// checkText bounds a free-text field that ends up in an event. Validate
// checks it where a command is proposed; Apply does not (see RecordEvent).
func checkText(field, s string, max int) error {
	if len(s) > max {
		return badField(field, fmt.Sprintf("is %d bytes; at most %d (truncate it)", len(s), max))
	}
	return nil
}

// Validate implements Command.
func (c *Assign) Validate() error {
	if err := checkRole("role", c.Role); err != nil {
		return err
	}
	if err := checkNode("node", c.Node); err != nil {
		return err
	}
	if c.Epoch == 0 {
		return badField("epoch", "must be positive")
	}
	return checkCause("cause", c.Cause)
}

// Validate implements Command.
func (c *RequestRelease) Validate() error {
	if err := checkRole("role", c.Role); err != nil {
		return err
	}
	if c.Target != "" {
		if err := checkNode("target", c.Target); err != nil {
			return err
		}
	}
	if c.Epoch == 0 {
		return badField("epoch", "must be positive")
	}
	return checkCause("cause", c.Cause)
}

// Validate implements Command.
func (c *Release) Validate() error {
	if err := c.validateStructure(); err != nil {
		return err
	}
	if err := checkCause("cause", c.Cause); err != nil {
		return err
	}
	return checkText("reason", c.Reason, MaxEventMessage)
}

// validateStructure is the part of Validate that Apply runs.
func (c *Release) validateStructure() error {
	if err := checkRole("role", c.Role); err != nil {
		return err
	}
	if err := checkNode("node", c.Node); err != nil {
		return err
	}
	if c.Epoch == 0 {
		return badField("epoch", "must be positive")
	}
	return nil
}

// Bounds of an event's text fields, which RecordEvent.Validate enforces
// and Event.Bounded cuts to.
const (
	MaxEventName    = 256     // kind, node, actor, role
	MaxEventText    = 1 << 10 // old, new
	MaxEventMessage = 4 << 10 // message
)

// Validate implements Command. The size bounds are checked where the
// command is proposed (Encode, the API's Propose), not when it is applied:
// a log written by an older build may hold longer events, and every build
// must apply them alike (the event log's byte bound keeps them in check).
func (c *RecordEvent) Validate() error {
	if err := c.validateStructure(); err != nil {
		return err
	}
	e := c.Event
	for _, f := range []struct {
		name, val string
		max       int
	}{
		{"event.kind", string(e.Kind), MaxEventName}, {"event.node", e.Node, MaxEventName},
		{"event.actor", e.Actor, MaxEventName}, {"event.role", e.Role, MaxEventName},
		{"event.old", e.Old, MaxEventText}, {"event.new", e.New, MaxEventText},
		{"event.message", e.Message, MaxEventMessage},
	} {
		if err := checkText(f.name, f.val, f.max); err != nil {
			return err
		}
	}
	return nil
}

// validateStructure is the part of Validate that Apply runs.
func (c *RecordEvent) validateStructure() error {
	if c.Event.Kind == "" {
		return badField("event.kind", "is empty")
	}
	return nil
}

// Bounded returns e with every text field cut to the bound
// RecordEvent.Validate enforces, on a UTF-8 boundary.
func (e Event) Bounded() Event {
	e.Kind = EventKind(Truncate(string(e.Kind), MaxEventName))
	e.Node = Truncate(e.Node, MaxEventName)
	e.Actor = Truncate(e.Actor, MaxEventName)
	e.Role = Truncate(e.Role, MaxEventName)
	e.Old = Truncate(e.Old, MaxEventText)
	e.New = Truncate(e.New, MaxEventText)
	e.Message = Truncate(e.Message, MaxEventMessage)
	return e
}

// Encode renders a command for the log: one type byte (with
// IgnoreUnknownFlag where the type allows), one version byte, then the JSON
// payload. It validates the command first and refuses oversized ones.
func Encode(c Command) ([]byte, error) {
	info, ok := registry[c.Type()]
	if !ok {
		return nil, fmt.Errorf("encode: unknown command type %d", c.Type())
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", info.name, err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", info.name, err)
	}
	t := c.Type()
	if info.ignorable {
		t |= IgnoreUnknownFlag
	}
	if len(payload)+2 > MaxCommandSize {
		return nil, fmt.Errorf("encode %s: %d bytes exceeds the %d-byte command limit", info.name, len(payload)+2, MaxCommandSize)
	}
	return append([]byte{byte(t), info.version}, payload...), nil
}

// ErrUnknownIgnorable is returned by Decode for a command type this build does
// not know but that carries IgnoreUnknownFlag: skip it.
var ErrUnknownIgnorable = errors.New("unknown command type marked ignorable")

// UnknownCommandError is returned by Decode for a command this build cannot
// read: an unknown type without IgnoreUnknownFlag, or an unknown version.
type UnknownCommandError struct {
	Type    CommandType
	Version uint8
	Reason  string
}

func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("command %s version %d: %s", e.Type, e.Version, e.Reason)
}

// Decode parses a command written by Encode. The payload is decoded strictly:
// an unknown field is an error, so a command is never half understood.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return nil, errors.New("decode: command shorter than its 2-byte header")
	}
	t, v := CommandType(b[0]), b[1]
	info, ok := registry[t&^IgnoreUnknownFlag]
	if !ok {
		if t&IgnoreUnknownFlag != 0 {
			return nil, ErrUnknownIgnorable
		}
		return nil, &UnknownCommandError{Type: t, Version: v, Reason: "unknown command type; upgrade this agent"}
	}
	if t&IgnoreUnknownFlag != 0 && !info.ignorable {
		return nil, &UnknownCommandError{Type: t &^ IgnoreUnknownFlag, Version: v, Reason: "the ignore-if-unknown flag is set on a type that may not be skipped"}
	}
	if v != info.version {
		return nil, &UnknownCommandError{Type: t &^ IgnoreUnknownFlag, Version: v,
			Reason: fmt.Sprintf("this agent reads version %d only; upgrade it", info.version)}
	}
	c := info.new()
	dec := json.NewDecoder(bytes.NewReader(b[2:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("decode %s: %w", info.name, err)
	}
	// dec.More() would miss a stray '}' or ']': only the end of input may
	// follow the payload.
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("decode %s: trailing data after the payload", info.name)
	}
	return c, nil
}

// Truncate cuts s to at most n bytes, on a UTF-8 boundary: for the errors
// and outputs commands carry, which Validate bounds (MaxCheckError,
// MaxCheckOutput).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
