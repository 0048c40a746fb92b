// Package fsm is harbormaster's replicated state machine: the typed, versioned
// commands that go through the Raft log, the immutable State they produce, and
// snapshot/restore.
//
// The package is pure: no clocks, no randomness, no I/O, no goroutines. Every
// time in a command is stamped by its proposer, so applying the same log gives
// the same State on every node.
package fsm

import (
	"sort"

	"github.com/harbormaster/harbormaster/spec"
)

// Bounds of the event log kept in the state: at most MaxEvents events and
// MaxEventBytes of their text (EventSize); older events are dropped first,
// and the newest is always kept. Snapshots carry the same bounds.
const (
	MaxEvents     = 1024
	MaxEventBytes = 1 << 20
)

// State is the replicated state after applying a prefix of the log. A *State
// is immutable once published: Apply returns a new value and shares the parts
// it did not change. Readers may keep a *State as long as they like.
type State struct {
	// Index is the Raft index of the last command applied.
	Index uint64 `json:"index"`
	// SpecVersion counts spec changes; 0 means no spec was ever applied.
	SpecVersion uint64     `json:"spec_version"`
	Spec        *spec.Spec `json:"spec"`
	// Nodes are the agents that registered, by id.
	Nodes map[string]*Node `json:"nodes"`
	// Checks holds each node's check results, by node then check name.
	Checks map[string]map[string]CheckResult `json:"checks"`
	// Redis holds each node's last report of its Redis, by node.
	Redis map[string]RedisState `json:"redis,omitempty"`
	// Assignments holds, by role name, who holds each role and at which
	// epoch. A record outlives its role in the spec so that epochs never
	// repeat if the role comes back.
	Assignments map[string]*Assignment `json:"assignments"`
	// Events is the bounded event log, oldest first.
	Events []Event `json:"events,omitempty"`
	// EventSeq is the sequence number (log index) of the last event recorded.
	EventSeq uint64 `json:"event_seq"`
	// LeaseKey is the cluster key lease datagrams are MAC'd with (nil
	// until the first leader installs one) and PrevLeaseKey the one it
	// replaced, still accepted from senders that have not applied the
	// rotation yet. Never shown by any API: only the log and snapshots
	// hold them.
	LeaseKey     *LeaseKey `json:"lease_key,omitempty"`
	PrevLeaseKey *LeaseKey `json:"prev_lease_key,omitempty"`
	// ClusterID names this cluster's history ("" until the first leader
	// sets it; SetClusterID).
	ClusterID string `json:"cluster_id,omitempty"`
}

// LeaseKey is one cluster lease key.
type LeaseKey struct {
	ID     uint32 `json:"id"`
	Secret Secret `json:"secret"`
}

// LeaseKeyByID returns the secret of the current or previous lease key
// with this id, nil if the state holds neither.
func (s *State) LeaseKeyByID(id uint32) []byte {
	for _, k := range []*LeaseKey{s.LeaseKey, s.PrevLeaseKey} {
		if k != nil && k.ID == id {
			return k.Secret
		}
	}
	return nil
}

// Node is an agent's registration and its node lease counter.
type Node struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	// Voter is the node's intent (the Raft configuration is the truth).
	Voter bool `json:"voter"`
	// Witness nodes vote but never hold roles.
	Witness bool `json:"witness"`
	// VIP nodes have an interface for virtual IPs; only they get vip roles.
	VIP bool `json:"vip,omitempty"`
	// MAC is the hardware address of the node's vip_interface.
	MAC string `json:"mac,omitempty"`
	// LeaseTTLMillis is the node lease length the node runs with.
	LeaseTTLMillis int64 `json:"lease_ttl_ms"`
	// LeaseSeq increases with every committed lease renewal. Observers time
	// the lease by their own clock from the moment they see it increase.
	LeaseSeq uint64 `json:"lease_seq"`
	// Registered is when the node last registered (unix ms, proposer's clock).
	Registered int64 `json:"registered"`
	// Drained nodes are never given a role (reserved for the drain command).
	Drained bool `json:"drained,omitempty"`
	// Leaving is set by a graceful shutdown and cleared by the next
	// registration; a leaving node is given no role.
	Leaving bool `json:"leaving,omitempty"`
	// Services are the service roles the node has an actuator for (see
	// RegisterNode.Services).
	Services []string `json:"services,omitempty"`
	// Redis is the node's Redis announce address ("" when none).
	Redis string `json:"redis,omitempty"`
	// Sentinel is the node's Sentinel-compatible listener ("" when none).
	Sentinel string `json:"sentinel,omitempty"`
}

// RedisState is a node's last report of its Redis (RedisReport). Since is
// when the role, master or link last changed.
type RedisState struct {
	Role   string `json:"role,omitempty"`
	Master string `json:"master,omitempty"`
	LinkUp bool   `json:"link_up,omitempty"`
	Offset int64  `json:"offset"`
	ReplID string `json:"repl_id,omitempty"`
	RunID  string `json:"run_id,omitempty"`
	Error  string `json:"error,omitempty"`
	Time   int64  `json:"time"`
	Since  int64  `json:"since"`
	// ReplID2 and Offset2: see RedisReport.
	ReplID2 string `json:"repl_id2,omitempty"`
	Offset2 int64  `json:"offset2,omitempty"`
	// Replicas (a master's), with Since kept per replica while its InSync
	// does not change.
	Replicas []ReplicaState `json:"replicas,omitempty"`
	Settings *RedisSettings `json:"settings,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
	Loading  bool           `json:"loading,omitempty"`
	Keys     *int64         `json:"keys,omitempty"`
}

// RunsService reports whether the node has an actuator for the service
// role (it lists the role under services in its config).
func (n *Node) RunsService(role string) bool {
	for _, s := range n.Services {
		if s == role {
			return true
		}
	}
	return false
}

// CheckResult is the last known state of one health check on one node.
// Only transitions are recorded, so the state is the current verdict and
// Since the time of the last transition.
type CheckResult struct {
	// Known is false until the node reported a first verdict since it
	// registered; an unknown check is not passing.
	Known   bool   `json:"known"`
	Passing bool   `json:"passing"`
	Since   int64  `json:"since"`
	Error   string `json:"error,omitempty"`
	Output  string `json:"output,omitempty"`
}

// CheckPassing reports whether node's check has a known, passing verdict.
func (s *State) CheckPassing(node, check string) bool {
	r, ok := s.Checks[node][check]
	return ok && r.Known && r.Passing
}

// Assignment says which node holds a role.
type Assignment struct {
	Role string `json:"role"`
	// Holder is the node id, or "" while the role is unassigned.
	Holder string `json:"holder,omitempty"`
	// HolderGen is the holder's lease generation the role is bound to.
	HolderGen uint64 `json:"holder_gen,omitempty"`
	// Epoch is the role's fencing token: it increases on every change of
	// holder and never repeats.
	Epoch uint64 `json:"epoch"`
	// Since is when the current holder was assigned or the role released
	// (unix ms, proposer's clock).
	Since int64 `json:"since"`
	// Releasing is set when the coordinator asked the holder to let go; the
	// holder answers with a Release command once it has stopped acting.
	Releasing bool `json:"releasing,omitempty"`
	// MoveTo is the node an operator moves the role to; cleared by the next
	// assignment.
	MoveTo string `json:"move_to,omitempty"`
	// AfterRelease is set on an assignment that followed a committed
	// release: the previous holder had stopped acting before, so the new
	// holder need not probe for it.
	AfterRelease bool `json:"after_release,omitempty"`
	// Detected is the assigning command's Detected (see fsm.Assign).
	Detected int64 `json:"detected,omitempty"`
	// Cause is the assigning command's Cause: why the holder got the role.
	Cause Cause `json:"cause,omitempty"`
	// ReleaseCause is why the holder was asked to let go (while Releasing)
	// or why the last holder let go (on a vacant role): the cause of the
	// next assignment.
	ReleaseCause Cause `json:"release_cause,omitempty"`
	// GraceMillis is the role's stop grace when it was assigned (a
	// service's stop timeout; 0 for markers, VIPs, Redis): how long after
	// this holder's lease surely ended the role may go elsewhere. Kept so
	// that a later spec change cannot shorten the wait of a holder that
	// still runs with the old timeout.
	GraceMillis int64 `json:"grace_ms,omitempty"`
	// LostBy is the last node that stopped holding the role (moved away,
	// released, lease ended) and LostAt when (unix ms, proposer's clock):
	// the hold-down's memory.
	LostBy string `json:"lost_by,omitempty"`
	LostAt int64  `json:"lost_at,omitempty"`
	// History (redis-master roles) is the replication position of the
	// role's last master; it outlives its holder (see RedisHistory).
	History *RedisHistory `json:"history,omitempty"`
	// Unsynced (redis-master roles) says why the role stays vacant (see
	// RedisHold) and UnsyncedSince since when; cleared by the next
	// assignment.
	Unsynced      string `json:"unsynced,omitempty"`
	UnsyncedSince int64  `json:"unsynced_since,omitempty"`
	// AcceptDataLoss is set with MoveTo by a move that accepts losing what
	// the role's history has beyond the target's Redis.
	AcceptDataLoss bool `json:"accept_data_loss,omitempty"`
	// DataLoss is set on an assignment that promoted a node outside the
	// role's history (Assign.DataLoss): the new holder starts a new one.
	DataLoss bool `json:"data_loss,omitempty"`
}

// Event is one entry of the audit trail: a role change, a membership change,
// an operator action.
type Event struct {
	Seq     uint64    `json:"seq"`
	Index   uint64    `json:"index"`
	Time    int64     `json:"time"` // unix ms, proposer's clock
	Kind    EventKind `json:"kind"`
	Node    string    `json:"node,omitempty"`
	Actor   string    `json:"actor,omitempty"`
	Role    string    `json:"role,omitempty"`
	Old     string    `json:"old,omitempty"`
	New     string    `json:"new,omitempty"`
	Epoch   uint64    `json:"epoch,omitempty"`
	Message string    `json:"message,omitempty"`
}

// eventOverhead is what EventSize counts for an event besides its text:
// its numbers and string headers.
const eventOverhead = 128

// EventSize is the memory an event takes in the log, roughly: its text
// fields and a fixed overhead. MaxEventBytes bounds the sum.
func EventSize(e Event) int {
	return eventOverhead + len(e.Kind) + len(e.Node) + len(e.Actor) + len(e.Role) + len(e.Old) + len(e.New) + len(e.Message)
}

// EventKind names what an Event records. Its JSON form is the plain string.
type EventKind string

// Event kinds.
const (
	EventNodeRegistered   EventKind = "node-registered"
	EventNodeRemoved      EventKind = "node-removed"
	EventNodeLeaving      EventKind = "node-leaving"
	EventNodeStarted      EventKind = "node-started"
	EventNodeDrained      EventKind = "node-drained"
	EventFailover         EventKind = "failover"
	EventVIPConflict      EventKind = "vip-conflict"
	EventSpecApplied      EventKind = "spec-applied"
	EventRoleAssigned     EventKind = "role-assigned"
	EventReleaseRequested EventKind = "release-requested"
	EventRoleReleased     EventKind = "role-released"
	EventMember           EventKind = "member"
	EventLeadership       EventKind = "leadership"
	EventOperator         EventKind = "operator"
	EventCheck            EventKind = "check"
	EventService          EventKind = "service"
	EventRedis            EventKind = "redis"
	EventLeaseKey         EventKind = "lease-key"
	EventRedisUnsynced    EventKind = "redis-unsynced"
	EventRedisDataLoss    EventKind = "redis-data-loss"
	EventRedisConfig      EventKind = "redis-config"
	EventClusterID        EventKind = "cluster-id"
	// EventQuorum records a loss of quorum that has ended, written by the
	// node that lived through it once it has quorum again.
	EventQuorum         EventKind = "quorum"
	EventConfigReloaded EventKind = "config-reloaded"
	// EventTiming records a node's timing warning raised ("ok" -> "slow":
	// its lease renewals use too much of its lease for its profile) or
	// cleared.
	EventTiming EventKind = "timing"
)

// NewState returns the empty state every node starts from.
func NewState() *State {
	return &State{
		Spec:        &spec.Spec{},
		Nodes:       map[string]*Node{},
		Checks:      map[string]map[string]CheckResult{},
		Assignments: map[string]*Assignment{},
	}
}

// NodeIDs returns the registered node ids, sorted.
func (s *State) NodeIDs() []string {
	ids := make([]string, 0, len(s.Nodes))
	for id := range s.Nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Assignment returns the assignment of a role; an unknown role yields a zero
// assignment with that name.
func (s *State) Assignment(role string) Assignment {
	if a, ok := s.Assignments[role]; ok {
		return *a
	}
	return Assignment{Role: role}
}

// HeldBy returns the roles node holds, sorted.
func (s *State) HeldBy(node string) []Assignment {
	var out []Assignment
	for _, a := range s.Assignments {
		if a.Holder == node {
			out = append(out, *a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Role < out[j].Role })
	return out
}

// EventsSince returns the events with Seq > seq, oldest first.
func (s *State) EventsSince(seq uint64) []Event {
	i := sort.Search(len(s.Events), func(i int) bool { return s.Events[i].Seq > seq })
	return s.Events[i:]
}

// shallow copies the struct so a command can replace the parts it changes.
func (s *State) shallow() *State {
	c := *s
	return &c
}

func (s *State) setNode(n *Node) {
	m := make(map[string]*Node, len(s.Nodes)+1)
	for k, v := range s.Nodes {
		m[k] = v
	}
	m[n.ID] = n
	s.Nodes = m
}

func (s *State) deleteNode(id string) {
	m := make(map[string]*Node, len(s.Nodes))
	for k, v := range s.Nodes {
		if k != id {
			m[k] = v
		}
	}
	s.Nodes = m
	if _, ok := s.Redis[id]; ok {
		s.setRedis(id, nil)
	}
	if _, ok := s.Checks[id]; ok {
		c := make(map[string]map[string]CheckResult, len(s.Checks))
		for k, v := range s.Checks {
			if k != id {
				c[k] = v
			}
		}
		s.Checks = c
	}
}

func (s *State) setChecks(node string, checks map[string]CheckResult) {
	m := make(map[string]map[string]CheckResult, len(s.Checks)+1)
	for k, v := range s.Checks {
		m[k] = v
	}
	if checks == nil {
		delete(m, node)
	} else {
		m[node] = checks
	}
	s.Checks = m
}

func (s *State) setRedis(node string, r *RedisState) {
	m := make(map[string]RedisState, len(s.Redis)+1)
	for k, v := range s.Redis {
		m[k] = v
	}
	if r == nil {
		delete(m, node)
	} else {
		m[node] = *r
	}
	if len(m) == 0 {
		m = nil // the shape a snapshot restores to
	}
	s.Redis = m
}

func (s *State) setAssignment(a *Assignment) {
	m := make(map[string]*Assignment, len(s.Assignments)+1)
	for k, v := range s.Assignments {
		m[k] = v
	}
	m[a.Role] = a
	s.Assignments = m
}

// addEvent appends an event. An event's sequence number is the log index of
// the command that made it (a command makes at most one event), so nodes
// that skip an ignorable command they do not know still number every other
// event alike.
func (s *State) addEvent(index uint64, e Event) {
	s.EventSeq = index
	e.Seq = index
	e.Index = index
	keep := s.Events
	if len(keep) >= MaxEvents {
		keep = keep[len(keep)-MaxEvents+1:]
	}
	total, i := EventSize(e), len(keep)
	for ; i > 0 && total+EventSize(keep[i-1]) <= MaxEventBytes; i-- {
		total += EventSize(keep[i-1])
	}
	keep = keep[i:]
	ev := make([]Event, 0, len(keep)+1)
	ev = append(ev, keep...)
	s.Events = append(ev, e)
}
