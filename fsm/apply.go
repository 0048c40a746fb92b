package fsm

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/harbormaster/harbormaster/spec"
)

// RejectedError is a domain rejection: the command was well formed but does
// not fit the state (stale epoch, unknown role, failed compare-and-set). The
// state is unchanged. Proposers turn it into an error for their caller.
type RejectedError struct {
	Command string
	Reason  string
}

func (e *RejectedError) Error() string { return e.Command + " rejected: " + e.Reason }

func reject(c Command, format string, args ...any) error {
	return &RejectedError{Command: c.Type().String(), Reason: fmt.Sprintf(format, args...)}
}

// Apply returns the state after applying cmd at the given log index. It never
// modifies st. On a rejection it returns st itself (with Index advanced) and
// a *RejectedError. Apply is deterministic: it reads no clock, and it runs
// no check that a newer build could answer differently (command validation,
// such as which role types exist, happens before a command is proposed).
func Apply(st *State, index uint64, cmd Command) (*State, error) {
	next := st.shallow()
	next.Index = index
	if err := validateForApply(cmd); err != nil {
		return next, reject(cmd, "%v", err)
	}
	var err error
	switch c := cmd.(type) {
	case *RegisterNode:
		err = applyRegisterNode(next, index, c)
	case *RemoveNode:
		err = applyRemoveNode(next, index, c)
	case *RenewLease:
		err = applyRenewLease(next, c)
	case *ApplySpec:
		err = applyApplySpec(next, index, c)
	case *Assign:
		err = applyAssign(next, index, c)
	case *RequestRelease:
		err = applyRequestRelease(next, index, c)
	case *Release:
		err = applyRelease(next, index, c)
	case *Leave:
		err = applyLeave(next, index, c)
	case *SetDrain:
		err = applySetDrain(next, index, c)
	case *CheckUpdate:
		err = applyCheckUpdate(next, index, c)
	case *RedisReport:
		err = applyRedisReport(next, index, c)
	case *SetLeaseKey:
		err = applySetLeaseKey(next, index, c)
	case *SetClusterID:
		err = applySetClusterID(next, index, c)
	case *RedisHold:
		err = applyRedisHold(next, index, c)
	case *RecordEvent:
		next.addEvent(index, c.Event)
	default:
		err = reject(cmd, "no apply function for this command")
	}
	if err != nil {
		// Nothing of a rejected command is kept but the index.
		keep := st.shallow()
		keep.Index = index
		return keep, err
	}
	return next, nil
}

// validateForApply is the part of a command's validation that every build
// answers alike: the structure of the command. What a newer build may accept
// differently (the spec's role types and fields, an event's size bounds) is
// checked only at the edge, before proposing.
func validateForApply(cmd Command) error {
	switch c := cmd.(type) {
	case *ApplySpec:
		if c.Spec == nil {
			return badField("spec", "is missing")
		}
		return nil
	case *RecordEvent:
		return c.validateStructure()
	case *Release:
		return c.validateStructure()
	case *Leave:
		return checkNode("node", c.Node)
	}
	return cmd.Validate()
}

func applyRegisterNode(s *State, index uint64, c *RegisterNode) error {
	old, known := s.Nodes[c.Node]
	n := &Node{
		ID: c.Node, RaftAddr: c.RaftAddr, APIAddr: c.APIAddr, Voter: c.Voter, Witness: c.Witness, VIP: c.VIP, MAC: c.MAC,
		LeaseTTLMillis: c.LeaseTTLMillis, Registered: c.Time, Services: append([]string(nil), c.Services...),
		Redis: c.Redis, Sentinel: c.Sentinel,
	}
	if len(n.Services) == 0 {
		n.Services = nil
	}
	if known {
		n.LeaseSeq = old.LeaseSeq
		n.Drained = old.Drained
	}
	s.setNode(n)
	var checks map[string]CheckResult
	if len(c.Checks) > 0 {
		checks = make(map[string]CheckResult, len(c.Checks))
		for _, name := range c.Checks {
			checks[name] = CheckResult{Since: c.Time}
			if prev, ok := s.Checks[c.Node][name]; ok && c.KeepChecks {
				checks[name] = prev
			}
		}
	}
	if checks != nil || s.Checks[c.Node] != nil {
		s.setChecks(c.Node, checks)
	}
	if _, ok := s.Redis[c.Node]; ok {
		s.setRedis(c.Node, nil) // a restarted agent reports its Redis afresh
	}
	desc := fmt.Sprintf("raft=%s api=%s voter=%t witness=%t", c.RaftAddr, c.APIAddr, c.Voter, c.Witness)
	if c.VIP {
		desc += " vip=true"
	}
	if !known {
		s.addEvent(index, Event{Time: c.Time, Kind: EventNodeRegistered, Node: c.Node, Actor: c.Node, New: desc})
		return nil
	}
	oldDesc := fmt.Sprintf("raft=%s api=%s voter=%t witness=%t", old.RaftAddr, old.APIAddr, old.Voter, old.Witness)
	if old.VIP {
		oldDesc += " vip=true"
	}
	if oldDesc != desc {
		s.addEvent(index, Event{Time: c.Time, Kind: EventNodeRegistered, Node: c.Node, Actor: c.Node, Old: oldDesc, New: desc})
	}
	return nil
}

func applyLeave(s *State, index uint64, c *Leave) error {
	n, ok := s.Nodes[c.Node]
	if !ok {
		return reject(c, "node %q is not registered", c.Node)
	}
	if n.Leaving {
		return nil
	}
	nn := *n
	nn.Leaving = true
	s.setNode(&nn)
	s.addEvent(index, Event{Time: c.Time, Kind: EventNodeLeaving, Node: c.Node, Actor: c.Node, Message: c.Reason})
	return nil
}

func applySetDrain(s *State, index uint64, c *SetDrain) error {
	n, ok := s.Nodes[c.Node]
	if !ok {
		return reject(c, "node %q is not registered", c.Node)
	}
	if n.Drained == c.Drained {
		return nil
	}
	nn := *n
	nn.Drained = c.Drained
	s.setNode(&nn)
	s.addEvent(index, Event{Time: c.Time, Kind: EventNodeDrained, Node: c.Node, Actor: c.Actor,
		Old: strconv.FormatBool(n.Drained), New: strconv.FormatBool(c.Drained)})
	return nil
}

func applyRemoveNode(s *State, index uint64, c *RemoveNode) error {
	if _, ok := s.Nodes[c.Node]; !ok {
		return reject(c, "node %q is not registered", c.Node)
	}
	s.deleteNode(c.Node)
	s.addEvent(index, Event{Time: c.Time, Kind: EventNodeRemoved, Node: c.Node, Actor: c.Actor})
	return nil
}

func applyRenewLease(s *State, c *RenewLease) error {
	n, ok := s.Nodes[c.Node]
	if !ok {
		return reject(c, "node %q is not registered", c.Node)
	}
	if c.Seq <= n.LeaseSeq {
		return reject(c, "stale renewal %d for node %q (have %d)", c.Seq, c.Node, n.LeaseSeq)
	}
	nn := *n
	nn.LeaseSeq = c.Seq
	s.setNode(&nn)
	return nil
}

func applyApplySpec(s *State, index uint64, c *ApplySpec) error {
	if c.Seed && s.SpecVersion != 0 {
		return reject(c, "the cluster already has a spec (version %d); the seed is not applied", s.SpecVersion)
	}
	if c.ExpectedVersion != 0 && c.ExpectedVersion != s.SpecVersion {
		return reject(c, "spec is at version %d, not the expected %d; fetch it again and retry", s.SpecVersion, c.ExpectedVersion)
	}
	old := s.SpecVersion
	s.Spec = c.Spec.Clone()
	s.SpecVersion++
	s.addEvent(index, Event{Time: c.Time, Kind: EventSpecApplied, Actor: c.Actor,
		Old: strconv.FormatUint(old, 10), New: strconv.FormatUint(s.SpecVersion, 10), Message: s.Spec.String()})
	return nil
}

func applyAssign(s *State, index uint64, c *Assign) error {
	r, ok := s.Spec.Role(c.Role)
	if !ok {
		return reject(c, "role %q is not in the spec", c.Role)
	}
	n, ok := s.Nodes[c.Node]
	if !ok {
		return reject(c, "node %q is not registered", c.Node)
	}
	if n.Witness {
		return reject(c, "node %q is a witness and holds no roles", c.Node)
	}
	if n.Leaving {
		return reject(c, "node %q is shutting down", c.Node)
	}
	if n.Drained {
		return reject(c, "node %q is drained", c.Node)
	}
	if _, ok := r.Candidate(c.Node); !ok {
		return reject(c, "node %q is not a candidate for role %q", c.Node, c.Role)
	}
	if r.Type == spec.TypeVIP && !n.VIP {
		return reject(c, "node %q has no vip_interface for role %q", c.Node, c.Role)
	}
	if r.Type == spec.TypeService && !r.Marker && !n.RunsService(c.Role) {
		return reject(c, "node %q has no actuator for service role %q", c.Node, c.Role)
	}
	if r.Type == spec.TypeRedisMaster {
		if n.Redis == "" {
			return reject(c, "node %q has no redis endpoint for role %q", c.Node, c.Role)
		}
		if rs, ok := s.Redis[c.Node]; !ok || rs.Role == "" || rs.Offset < 0 {
			return reject(c, "node %q has not reported a readable replication offset; it is not promoted", c.Node)
		}
		h := s.Assignment(c.Role).History
		if synced, _ := s.RedisSynced(h, c.Node); !synced && c.DataLoss == "" {
			return reject(c, "node %q's Redis has not synced with %s's (replication id %s): promoting it loses acknowledged writes; "+
				"it needs data_loss (unsynced_promotion, or move --accept-data-loss)", c.Node, h.Node, ShortReplID(h.ReplID))
		}
	}
	for _, chk := range r.Requires {
		if !s.CheckPassing(c.Node, chk) {
			return reject(c, "check %q is not passing on node %q (role %q requires it)", chk, c.Node, c.Role)
		}
	}
	cur := s.Assignment(c.Role)
	if cur.Holder != c.PrevHolder {
		return reject(c, "role %q is held by %q, not %q", c.Role, cur.Holder, c.PrevHolder)
	}
	if c.Epoch != cur.Epoch+1 {
		return reject(c, "epoch %d for role %q must be %d", c.Epoch, c.Role, cur.Epoch+1)
	}
	if cur.Holder == c.Node && cur.HolderGen == c.HolderGen {
		return reject(c, "node %q already holds role %q at lease generation %d", c.Node, c.Role, c.HolderGen)
	}
	lostBy, lostAt := cur.LostBy, cur.LostAt
	if cur.Holder != "" && cur.Holder != c.Node {
		lostBy, lostAt = cur.Holder, c.Time
	}
	s.setAssignment(&Assignment{Role: c.Role, Holder: c.Node, HolderGen: c.HolderGen, Epoch: c.Epoch, Since: c.Time,
		AfterRelease: cur.Holder == "" && cur.Epoch > 0, Detected: c.Detected, Cause: c.Cause, LostBy: lostBy, LostAt: lostAt,
		GraceMillis: r.StopGrace().Milliseconds(), History: cur.History, DataLoss: c.DataLoss != ""})
	s.addEvent(index, Event{Time: c.Time, Kind: EventRoleAssigned, Node: c.Node, Actor: c.Actor, Role: c.Role,
		Old: cur.Holder, New: c.Node, Epoch: c.Epoch, Message: c.Reason})
	if c.DataLoss != "" {
		msg := c.DataLoss
		if h := cur.History; h != nil {
			_, behind := s.RedisSynced(h, c.Node)
			msg = fmt.Sprintf("%s promoted without the data of %s's Redis (replication id %s, at least %d bytes of its stream up to offset %d): %s",
				c.Node, h.Node, ShortReplID(h.ReplID), behind, h.Offset, c.DataLoss)
		}
		s.addEvent(index, Event{Time: c.Time, Kind: EventRedisDataLoss, Node: c.Node, Actor: c.Actor, Role: c.Role,
			Old: cur.Holder, New: c.Node, Epoch: c.Epoch, Message: msg})
	}
	return nil
}

func applyRequestRelease(s *State, index uint64, c *RequestRelease) error {
	cur, ok := s.Assignments[c.Role]
	if ok && cur.Holder == "" && c.Target != "" && c.AcceptDataLoss && cur.Epoch == c.Epoch {
		// A vacant redis-master role: only the target and the acceptance.
		a := *cur
		a.MoveTo, a.AcceptDataLoss = c.Target, true
		s.setAssignment(&a)
		s.addEvent(index, Event{Time: c.Time, Kind: EventOperator, Actor: c.Actor, Role: c.Role, New: c.Target,
			Epoch: cur.Epoch, Message: c.Reason})
		return nil
	}
	if !ok || cur.Holder == "" {
		return reject(c, "role %q has no holder", c.Role)
	}
	if cur.Epoch != c.Epoch {
		return reject(c, "role %q is at epoch %d, not %d", c.Role, cur.Epoch, c.Epoch)
	}
	if cur.Releasing && (c.Target == "" || c.Target == cur.MoveTo) && (!c.AcceptDataLoss || cur.AcceptDataLoss) {
		return nil // already asked (a plain request keeps an operator's move target)
	}
	a := *cur
	a.Releasing = true
	a.MoveTo = c.Target
	a.AcceptDataLoss = c.Target != "" && c.AcceptDataLoss
	a.ReleaseCause = c.Cause
	s.setAssignment(&a)
	s.addEvent(index, Event{Time: c.Time, Kind: EventReleaseRequested, Node: cur.Holder, Actor: c.Actor, Role: c.Role,
		Old: cur.Holder, Epoch: cur.Epoch, Message: c.Reason})
	return nil
}

func applyRelease(s *State, index uint64, c *Release) error {
	cur, ok := s.Assignments[c.Role]
	if !ok || cur.Holder != c.Node {
		return reject(c, "node %q does not hold role %q", c.Node, c.Role)
	}
	if cur.Epoch != c.Epoch {
		return reject(c, "role %q is at epoch %d, not %d", c.Role, cur.Epoch, c.Epoch)
	}
	why := c.Cause
	if cur.Releasing && cur.ReleaseCause != "" {
		why = cur.ReleaseCause // asked to let go: the request says why
	}
	s.setAssignment(&Assignment{Role: c.Role, Epoch: cur.Epoch, Since: c.Time, MoveTo: cur.MoveTo,
		LostBy: c.Node, LostAt: c.Time, History: cur.History, AcceptDataLoss: cur.AcceptDataLoss, ReleaseCause: why})
	s.addEvent(index, Event{Time: c.Time, Kind: EventRoleReleased, Node: c.Node, Actor: c.Node, Role: c.Role,
		Old: c.Node, Epoch: cur.Epoch, Message: c.Reason})
	return nil
}

func applyCheckUpdate(s *State, index uint64, c *CheckUpdate) error {
	if _, ok := s.Nodes[c.Node]; !ok {
		return reject(c, "node %q is not registered", c.Node)
	}
	cur, ok := s.Checks[c.Node][c.Check]
	if !ok {
		return reject(c, "node %q did not register a check named %q", c.Node, c.Check)
	}
	next := CheckResult{Known: true, Passing: c.Passing, Since: c.Time, Error: c.Error, Output: c.Output}
	if cur.Known && cur.Passing == c.Passing {
		next.Since = cur.Since // not a transition: refresh the texts only
	}
	m := make(map[string]CheckResult, len(s.Checks[c.Node]))
	for k, v := range s.Checks[c.Node] {
		m[k] = v
	}
	m[c.Check] = next
	s.setChecks(c.Node, m)
	if cur.Known && cur.Passing == c.Passing {
		return nil
	}
	word := func(r CheckResult) string {
		switch {
		case !r.Known:
			return "unknown"
		case r.Passing:
			return "passing"
		}
		return "failing"
	}
	msg := c.Check + " " + word(next)
	if c.Error != "" {
		msg += ": " + c.Error
	}
	s.addEvent(index, Event{Time: c.Time, Kind: EventCheck, Node: c.Node, Actor: c.Node, Old: word(cur), New: word(next), Message: msg})
	return nil
}

func applyRedisReport(s *State, index uint64, c *RedisReport) error {
	n, ok := s.Nodes[c.Node]
	if !ok {
		return reject(c, "node %q is not registered", c.Node)
	}
	if n.Redis == "" {
		return reject(c, "node %q registered no redis endpoint", c.Node)
	}
	cur, had := s.Redis[c.Node]
	next := RedisState{Role: c.Role, Master: c.Master, LinkUp: c.LinkUp, Offset: c.Offset, ReplID: c.ReplID, RunID: c.RunID,
		Error: c.Error, Time: c.Time, Since: c.Time, ReplID2: c.ReplID2, Offset2: c.Offset2,
		Replicas: mergeReplicas(cur.Replicas, c.Replicas, c.Time), Settings: c.Settings, Warnings: c.Warnings,
		Loading: c.Loading, Keys: c.Keys}
	if c.Settings == nil && c.Error == "" && cur.RunID == c.RunID {
		next.Settings, next.Warnings = cur.Settings, cur.Warnings // read once per Redis run; reports omit them
	}
	changed := !had || cur.Role != c.Role || cur.Master != c.Master || cur.LinkUp != c.LinkUp || cur.RunID != c.RunID ||
		(cur.Error == "") != (c.Error == "") || cur.ReplID != c.ReplID || cur.Loading != c.Loading
	if !changed {
		next.Since = cur.Since
	}
	s.setRedis(c.Node, &next)
	s.updateHistory(c)
	replicaEvents(s, index, c, cur.Replicas, next.Replicas)
	if !slices.Equal(cur.Warnings, next.Warnings) && len(next.Warnings) > 0 {
		s.addEvent(index, Event{Time: c.Time, Kind: EventRedisConfig, Node: c.Node, Actor: c.Node,
			Message: fmt.Sprintf("%d redis-config warning(s): %s", len(next.Warnings), strings.Join(next.Warnings, "; "))})
	}
	if !changed {
		return nil
	}
	describe := func(r RedisState, ok bool) string {
		switch {
		case !ok:
			return "unknown"
		case r.Error != "":
			return "unreadable"
		case r.Role == RedisReplica && r.LinkUp:
			return "replica of " + r.Master
		case r.Role == RedisReplica:
			return "replica of " + r.Master + " (link down)"
		}
		return r.Role
	}
	msg := fmt.Sprintf("offset %d", c.Offset)
	if c.Error != "" {
		msg = c.Error
	}
	s.addEvent(index, Event{Time: c.Time, Kind: EventRedis, Node: c.Node, Actor: c.Node,
		Old: describe(cur, had), New: describe(next, true), Message: msg})
	return nil
}

// mergeReplicas carries each replica's Since over from the previous report
// while its InSync is unchanged.
func mergeReplicas(prev, next []ReplicaState, now int64) []ReplicaState {
	if len(next) == 0 {
		return nil
	}
	out := make([]ReplicaState, len(next))
	for i, r := range next {
		r.Since = now
		for _, p := range prev {
			if p.Addr == r.Addr && p.InSync == r.InSync && p.Since != 0 {
				r.Since = p.Since
			}
		}
		out[i] = r
	}
	return out
}

// replicaEvents records a replica entering or leaving sync with the master
// that reports it (leaving it also by disconnecting: Redis lists only
// connected replicas).
func replicaEvents(s *State, index uint64, c *RedisReport, prev, next []ReplicaState) {
	for _, p := range prev {
		if !p.InSync || c.Role != RedisMaster {
			continue
		}
		gone := true
		for _, r := range next {
			gone = gone && r.Addr != p.Addr
		}
		if gone {
			who := p.Addr
			if p.Node != "" {
				who = p.Node + " (" + p.Addr + ")"
			}
			s.addEvent(index, Event{Time: c.Time, Kind: EventRedis, Node: c.Node, Actor: c.Node, Old: "in sync", New: "out of sync",
				Message: fmt.Sprintf("replica %s out of sync (disconnected)", who)})
		}
	}
	for _, r := range next {
		was, known := false, false
		for _, p := range prev {
			if p.Addr == r.Addr {
				was, known = p.InSync, true
			}
		}
		if r.InSync == was && (known || !r.InSync) {
			continue
		}
		who := r.Addr
		if r.Node != "" {
			who = r.Node + " (" + r.Addr + ")"
		}
		word := map[bool]string{true: "in sync", false: "out of sync"}
		s.addEvent(index, Event{Time: c.Time, Kind: EventRedis, Node: c.Node, Actor: c.Node, Old: word[was], New: word[r.InSync],
			Message: fmt.Sprintf("replica %s %s (%s, %d bytes and %d ms behind)", who, word[r.InSync], r.State, r.LagBytes, r.LagMillis)})
	}
}

func applyRedisHold(s *State, index uint64, c *RedisHold) error {
	r, ok := s.Spec.Role(c.Role)
	if !ok || r.Type != spec.TypeRedisMaster {
		return reject(c, "role %q is not a redis-master role of the spec", c.Role)
	}
	cur := s.Assignment(c.Role)
	if cur.Epoch != c.Epoch {
		return reject(c, "role %q is at epoch %d, not %d", c.Role, cur.Epoch, c.Epoch)
	}
	if cur.Unsynced == c.Reason {
		return nil
	}
	a := cur
	if a.Unsynced == "" {
		a.UnsyncedSince = c.Time
	}
	a.Unsynced = c.Reason
	s.setAssignment(&a)
	s.addEvent(index, Event{Time: c.Time, Kind: EventRedisUnsynced, Actor: c.Actor, Role: c.Role, Old: cur.Holder,
		Epoch: cur.Epoch, Message: c.Reason})
	return nil
}

func applySetClusterID(s *State, index uint64, c *SetClusterID) error {
	if s.ClusterID != "" {
		return reject(c, "the cluster id is %s already; it never changes", s.ClusterID)
	}
	s.ClusterID = c.ID
	s.addEvent(index, Event{Time: c.Time, Kind: EventClusterID, Actor: c.Actor, New: c.ID, Message: "cluster id set"})
	return nil
}

func applySetLeaseKey(s *State, index uint64, c *SetLeaseKey) error {
	var cur uint32
	if s.LeaseKey != nil {
		cur = s.LeaseKey.ID
	}
	if c.ID != cur+1 {
		return reject(c, "lease key %d is not the successor of the current key %d", c.ID, cur)
	}
	s.PrevLeaseKey = s.LeaseKey
	s.LeaseKey = &LeaseKey{ID: c.ID, Secret: append(Secret(nil), c.Secret...)}
	msg := fmt.Sprintf("lease key %d in use", c.ID)
	if cur > 0 {
		msg += fmt.Sprintf("; key %d accepted until the next rotation", cur)
	}
	s.addEvent(index, Event{Time: c.Time, Kind: EventLeaseKey, Actor: c.Actor, Old: strconv.FormatUint(uint64(cur), 10),
		New: strconv.FormatUint(uint64(c.ID), 10), Message: msg})
	return nil
}
