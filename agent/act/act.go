// Package act is what the actuators of every role type share: the interface
// the agent drives them through (keyed by role type), the narrow view of the
// node they see instead of the agent itself, and the one rule that says
// whether this node may act for a role now (MayAct).
//
// An actuator converges its node to the replicated state: the VIP actuator
// (agent/vipact) holds addresses, the service actuator (agent/serviceact)
// starts and stops the active instance of a service, the Redis actuator
// (agent/redisact) promotes, demotes and fences the node's Redis. Actuators
// never decide who holds a role (the coordinator does); they only act, and
// only while MayAct says so.
package act

import (
	"context"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// Actuator acts for the roles of one type on this node. The agent builds one
// per role type the node can act for and calls it as follows.
type Actuator interface {
	// Type is the role type it acts for.
	Type() spec.RoleType
	// Run converges the node to the state until ctx ends, then undoes what
	// it still holds (removes addresses, stops services it started, fences
	// its Redis). It returns only after every goroutine it started has
	// exited. It is called once.
	Run(ctx context.Context) error
	// Wake asks for a pass now: the node's Authority changed (a lease
	// renewal, gained or lost, the node stopping or fencing itself). It
	// never blocks.
	Wake()
	// Releasable is asked before the node commits the release of role
	// (one of this actuator's type that the node holds): it brings the
	// node in line with what it may do now, waiting at most until ctx ends,
	// and reports whether the node has stopped acting for role so that the
	// release may be committed. When it returns false the actuator is still
	// letting go and calls Node.Nudge once it has.
	Releasable(ctx context.Context, st *fsm.State, role string) bool
	// Quiesce is called once the node is stopping (Authority.Stopping is
	// set): it stops acting for every role and returns when that is done,
	// after the actuator's own bound, or when ctx ends, whichever is first.
	Quiesce(ctx context.Context)
}

// Node is the part of the node an actuator sees. The agent implements it;
// tests use acttest.Node.
type Node interface {
	// ID is the node's id.
	ID() string
	// State returns the current replicated state and a channel closed when
	// it is replaced.
	State() (*fsm.State, <-chan struct{})
	// Authority returns the inputs of MayAct at this instant.
	Authority() Authority
	// Propose puts a command through the log (forwarded to the leader on a
	// follower) and returns its index once applied here.
	Propose(ctx context.Context, cmd fsm.Command) (uint64, error)
	// Record queues an event for the log. It never blocks: a node that
	// cannot commit (cut off, no leader) drops events beyond a bound.
	Record(e fsm.Event)
	// Fence makes the node stop renewing its lease until it has surely
	// lapsed everywhere, so that every role it holds is dropped here at the
	// lease's end (see MayAct) and moved by the coordinator. It is the answer to an undo that cannot be
	// confirmed: never release what may still run.
	Fence(reason string)
	// Nudge tells the node that a role it was asked to release may be
	// releasable now (see Actuator.Releasable). It never blocks.
	Nudge()
}

// Authority is everything MayAct reads, taken at one instant.
type Authority struct {
	// Node is this node's id.
	Node string
	// LeaseGen is the generation of this node's quorum lease, and
	// LeaseValid whether a majority of voters granted it; LeaseUntil is its
	// end by this node's monotonic clock.
	LeaseGen   uint64
	LeaseValid bool
	LeaseUntil time.Time
	// Stopping is set once a graceful stop has begun.
	Stopping bool
	// Now is the instant the authority was taken at (monotonic).
	Now time.Time
}

// MayAct is the safety rule of every actuator (DESIGN.md S3, S4): this node
// may act for the role assigned as as, right now, when all of these hold:
//   - it is the holder at its current lease generation (a role is bound to
//     the generation it was assigned under; a lease that lapsed and was
//     renewed under a new generation does not bring the role back);
//   - the lease is valid and has more than ahead left by this node's clock,
//     so the undo starts ahead of the lease's end (the voters' view of the
//     end is later still, by the lease margin);
//   - the role is not being released and the agent is not stopping.
//
// A self-fence (Node.Fence) needs no term of its own: the fenced node stops
// renewing, so its lease runs out and MayAct turns false ahead of the end,
// as on any lapse; the generation after the fence matches no assignment
// made before it. Every role is dropped at its lease's end, as the
// coordinator, which moves it only after that end, needs.
//
// ahead is the actuator's stop margin: how long its undo may take. An
// actuator with a deadline of its own at the lease's end (the VIP manager
// removes the address FenceGuard before Until, and the kernel removes it by
// its lifetime) passes 0.
func (a Authority) MayAct(as fsm.Assignment, ahead time.Duration) bool {
	return as.Holder != "" && as.Holder == a.Node && as.HolderGen == a.LeaseGen && a.LeaseValid &&
		a.LeaseUntil.Sub(a.Now) > ahead && !as.Releasing && !a.Stopping
}

// Left is how long the lease has left beyond ahead (zero or less when it has
// not): the time until an actuator with that margin must have undone its
// action unless a renewal comes first.
func (a Authority) Left(ahead time.Duration) time.Duration {
	if !a.LeaseValid {
		return 0
	}
	return a.LeaseUntil.Sub(a.Now) - ahead
}

// Poke sends on a wake-up channel of capacity 1 without blocking: a wake-up
// already pending stands for this one.
func Poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
