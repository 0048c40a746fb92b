// Package acttest is a fake act.Node for the actuators' unit tests: the
// test sets the state and the authority, and reads what the actuator
// proposed, recorded, fenced and nudged.
package acttest

import (
	"context"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/fsm"
)

// Node is a fake act.Node. The zero value is not usable; use New.
type Node struct {
	id string

	mu        sync.Mutex
	st        *fsm.State
	changed   chan struct{}
	auth      act.Authority
	proposed  []fsm.Command
	events    []fsm.Event
	fences    []string
	nudges    int
	proposeFn func(fsm.Command) error
}

// New returns a fake node with id and an empty state.
func New(id string) *Node {
	return &Node{id: id, st: fsm.NewState(), changed: make(chan struct{})}
}

// SetState replaces the state and signals the change.
func (n *Node) SetState(st *fsm.State) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.st = st
	close(n.changed)
	n.changed = make(chan struct{})
}

// SetAuthority sets what Authority returns: Node is filled in, and Now is
// the wall clock unless a.Now is set (a frozen clock).
func (n *Node) SetAuthority(a act.Authority) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.auth = a
}

// OnPropose makes Propose return f's error (nil: accepted).
func (n *Node) OnPropose(f func(fsm.Command) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.proposeFn = f
}

// ID implements act.Node.
func (n *Node) ID() string { return n.id }

// State implements act.Node.
func (n *Node) State() (*fsm.State, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st, n.changed
}

// Authority implements act.Node: the authority set last, taken now.
func (n *Node) Authority() act.Authority {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.auth
	a.Node = n.id
	if a.Now.IsZero() { // a test that sets Now freezes the node's clock
		a.Now = time.Now()
	}
	return a
}

// Propose implements act.Node: it records cmd.
func (n *Node) Propose(_ context.Context, cmd fsm.Command) (uint64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.proposed = append(n.proposed, cmd)
	if n.proposeFn != nil {
		if err := n.proposeFn(cmd); err != nil {
			return 0, err
		}
	}
	return uint64(len(n.proposed)), nil
}

// Record implements act.Node.
func (n *Node) Record(e fsm.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, e)
}

// Fence implements act.Node: it records the reason.
func (n *Node) Fence(reason string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fences = append(n.fences, reason)
}

// Nudge implements act.Node: it counts.
func (n *Node) Nudge() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nudges++
}

// Proposed returns the commands proposed so far.
func (n *Node) Proposed() []fsm.Command {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]fsm.Command(nil), n.proposed...)
}

// Events returns the events recorded so far.
func (n *Node) Events() []fsm.Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]fsm.Event(nil), n.events...)
}

// Fences returns the reasons of the fences so far.
func (n *Node) Fences() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.fences...)
}

// Nudges returns how many times Nudge was called.
func (n *Node) Nudges() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nudges
}
