package redisact

import (
	"net"
	"strconv"

	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/fsm"
)

// Kind names one thing the actuator does to a Redis.
type Kind int

// Kinds of Action.
const (
	// Fence stops this node's Redis taking writes (Why says why).
	Fence Kind = iota + 1
	// ReleaseRestarted commits a release of the master role: this node's
	// Redis restarted under it (maybe empty), or does not hold the role's
	// history, and must not be promoted (Why says which).
	ReleaseRestarted
	// DemoteRemote makes the lost master's Redis (Addr) a replica of this
	// node's before this node promotes its own.
	DemoteRemote
	// Promote makes this node's Redis the master at the assignment's epoch.
	Promote
	// Follow makes this node's Redis a replica of Addr.
	Follow
	// PrepareRelease readies a planned switchover of the fenced master:
	// the target (or every replica) catches up before the release.
	PrepareRelease
)

func (k Kind) String() string {
	switch k {
	case Fence:
		return "fence"
	case ReleaseRestarted:
		return "release-restarted"
	case DemoteRemote:
		return "demote-remote"
	case Promote:
		return "promote"
	case Follow:
		return "follow"
	case PrepareRelease:
		return "prepare-release"
	}
	return "unknown"
}

// Action is one step of a pass, in order.
type Action struct {
	Kind Kind
	// Addr is the Redis to follow (Follow) or to demote (DemoteRemote).
	Addr string
	// Why says why a Fence happens (logged).
	Why string
}

// Input is what one pass decides on: the redis-master role's assignment,
// the nodes it names, what this node's Redis reported, and what the
// actuator remembers of its own promotions.
type Input struct {
	// Self is this node's id.
	Self string
	// Assignment is the redis-master role's assignment; Holder and LostBy
	// are the registrations of its holder and of the node that lost it
	// without a release (nil when unknown).
	Assignment fsm.Assignment
	Holder     *fsm.Node
	LostBy     *fsm.Node
	// Repl is this node's Redis's replication state, just read.
	Repl redisctl.Replication
	// MayMaster is act.MayAct for the role with the Redis fence margin.
	MayMaster bool
	// PromotedEpoch is the epoch this node last promoted its Redis at (0
	// after a fence).
	PromotedEpoch uint64
	// RestartedUnder is set when the Redis this node promoted under the
	// current epoch has restarted since (another run id).
	RestartedUnder bool
	// Unfit is set when this node's Redis, as read now, may not be
	// promoted under the assignment: it restarted since the report the
	// assignment was made on (another run id), or that report no longer
	// holds the role's replication history, and the assignment did not
	// accept a data loss.
	Unfit bool
}

// Decide is the Redis actuator's policy for one pass, pure: given what the
// node may do and what its Redis is, which actions bring the Redis in line.
//   - The master's lease holder promotes its Redis unless it is already the
//     unfenced master at this epoch, first demoting the lost master's Redis
//     (its agent may be dead while its Redis runs). A Redis that restarted
//     under the role is fenced and the role given back instead, so that the
//     most caught-up replica is elected.
//   - A Redis that is master while another node holds the role is fenced and
//     made its replica.
//   - A master that may not act (lease ending, releasing, stopping, no
//     holder) is fenced; one being released readies the hand-over.
//   - A holder being released whose Redis is a replica (its promotion
//     never took: the Redis was frozen or slow) is fenced and readies the
//     hand-over too, which for a replica waits for nothing: it acknowledged
//     no write under the role, and the role's replication history, which
//     the release keeps, still names the last master (S10).
//   - A replica follows the holder's Redis.
//
// While the role is being released nobody is followed: the next holder is
// not known yet.
func Decide(in Input) []Action {
	as, repl := in.Assignment, in.Repl
	isMaster := repl.Role == fsm.RedisMaster
	otherHolder := in.Holder != nil && as.Holder != in.Self && in.Holder.Redis != "" && !as.Releasing
	switch {
	case in.MayMaster:
		if in.RestartedUnder {
			return []Action{{Kind: Fence, Why: "Redis restarted under the master role"}, {Kind: ReleaseRestarted, Why: "its Redis restarted under the master role"}}
		}
		if isMaster && !repl.Paused && in.PromotedEpoch == as.Epoch {
			return nil
		}
		if in.Unfit && in.PromotedEpoch != as.Epoch {
			why := "its Redis no longer holds the role's replication history (it restarted, or was never synced)"
			return []Action{{Kind: Fence, Why: why}, {Kind: ReleaseRestarted, Why: why}}
		}
		var out []Action
		if as.LostBy != "" && as.LostBy != in.Self && in.LostBy != nil && in.LostBy.Redis != "" {
			out = append(out, Action{Kind: DemoteRemote, Addr: in.LostBy.Redis})
		}
		return append(out, Action{Kind: Promote})
	case isMaster && otherHolder:
		return []Action{{Kind: Fence, Why: "another node is the master"}, {Kind: Follow, Addr: in.Holder.Redis}}
	case isMaster:
		out := []Action{{Kind: Fence, Why: "not the master's lease holder"}}
		if as.Releasing && as.Holder == in.Self {
			out = append(out, Action{Kind: PrepareRelease})
		}
		return out
	case as.Releasing && as.Holder == in.Self:
		// Without the hand-over the release never commits and the role
		// stays with a replica (chaos seed 101 --redis, a SIGSTOPped
		// Redis). The fence first: a promotion still queued in a frozen
		// Redis may have run by the time it answers; prepareRelease reads
		// the Redis again after the fence and hands a master over as one.
		return []Action{{Kind: Fence, Why: "releasing the master role while its Redis is a replica"}, {Kind: PrepareRelease}}
	case otherHolder && masterOf(repl) != in.Holder.Redis:
		return []Action{{Kind: Follow, Addr: in.Holder.Redis}}
	}
	return nil
}

// masterOf is the host:port a replica follows.
func masterOf(r redisctl.Replication) string {
	if r.MasterHost == "" {
		return ""
	}
	return net.JoinHostPort(r.MasterHost, strconv.Itoa(r.MasterPort))
}
