package coordinator

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// t0 is the proposer time stamped in test commands (unix ms).
const t0 int64 = 1_700_000_000_000

// tb is the part of testing.TB the helpers use; *rapid.T has it too.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// mustApply applies cmds in order from st, at indexes st.Index+1, ..., and
// fails the test on any error.
func mustApply(t tb, st *fsm.State, cmds ...fsm.Command) *fsm.State {
	t.Helper()
	for _, c := range cmds {
		next, err := fsm.Apply(st, st.Index+1, c)
		if err != nil {
			t.Fatalf("Apply(%s): got error %v, want nil", describe(c), err)
		}
		st = next
	}
	return st
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// reg registers a regular node with a 1s lease.
func reg(id string) *fsm.RegisterNode {
	return &fsm.RegisterNode{Node: id, RaftAddr: id + ":7000", APIAddr: id + ":7001", Voter: true, LeaseTTLMillis: 1000, Time: t0}
}

// regWitness registers a witness node.
func regWitness(id string) *fsm.RegisterNode {
	r := reg(id)
	r.Witness = true
	return r
}

func leave(id string) *fsm.Leave { return &fsm.Leave{Node: id, Reason: "test", Time: t0} }

// role is a marker service role (held in the state, no actuator needed);
// cands are "node:priority" or "node".
func role(name string, cands ...string) spec.Role {
	r := spec.Role{Name: name, Type: spec.TypeService, Marker: true}
	for _, c := range cands {
		node, prio, ok := strings.Cut(c, ":")
		cd := spec.Candidate{Node: node}
		if ok {
			p, err := strconv.Atoi(prio)
			if err != nil {
				panic(fmt.Sprintf("bad candidate %q", c))
			}
			cd.Priority = p
		}
		r.Candidates = append(r.Candidates, cd)
	}
	return r
}

func applySpec(roles ...spec.Role) *fsm.ApplySpec {
	return &fsm.ApplySpec{Spec: &spec.Spec{Roles: roles}, Actor: "operator", Time: t0}
}

// gen1 is node id's first lease generation in these tests: 10 times the
// node's number plus one ("n1" -> 11, "n3" -> 31); gen2 is the generation it
// starts after a lapse (12, 32). Distinct per node, so that a mix-up of
// nodes' generations shows.
func gen1(id string) uint64 {
	n, err := strconv.Atoi(strings.TrimPrefix(id, "n"))
	if err != nil || !strings.HasPrefix(id, "n") {
		panic(fmt.Sprintf("gen1: node id %q is not nN", id))
	}
	return uint64(n)*10 + 1
}

func gen2(id string) uint64 { return gen1(id) + 1 }

// assign gives r to node, bound to node's first generation gen1(node).
func assign(r, node, prev string, epoch uint64) *fsm.Assign {
	return assignGen(r, node, prev, gen1(node), epoch)
}

// assignGen gives r to node, bound to generation gen.
func assignGen(r, node, prev string, gen, epoch uint64) *fsm.Assign {
	return &fsm.Assign{Role: r, Node: node, PrevHolder: prev, HolderGen: gen, Epoch: epoch, Reason: "test", Actor: "test", Time: t0}
}

// liveOn returns a Live map in which each node runs its first generation.
func liveOn(ids ...string) map[string]uint64 {
	m := map[string]uint64{}
	for _, id := range ids {
		m[id] = gen1(id)
	}
	return m
}

// endedUpTo returns an Input.Ended that says every grant to each node at a
// generation up to and including gen1(node) has ended, and nothing else.
func endedUpTo(ids ...string) func(string, uint64, time.Duration) bool {
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	return func(node string, gen uint64, _ time.Duration) bool { return set[node] && gen <= gen1(node) }
}

// describe renders the deciding fields of a command for comparisons:
// "assign web n2 gen=21 prev=n1 epoch=2", "request-release web epoch=1",
// "release web n1 epoch=1".
func describe(c fsm.Command) string {
	switch x := c.(type) {
	case *fsm.Assign:
		return fmt.Sprintf("assign %s %s gen=%d prev=%s epoch=%d", x.Role, x.Node, x.HolderGen, x.PrevHolder, x.Epoch)
	case *fsm.RequestRelease:
		return fmt.Sprintf("request-release %s epoch=%d", x.Role, x.Epoch)
	case *fsm.Release:
		return fmt.Sprintf("release %s %s epoch=%d", x.Role, x.Node, x.Epoch)
	default:
		return fmt.Sprintf("%s %+v", c.Type(), c)
	}
}

func describeAll(cs []fsm.Command) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, describe(c))
	}
	return out
}

// snapshotBytes renders st in the snapshot format, to check it is unchanged.
func snapshotBytes(t tb, st *fsm.State) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := fsm.WriteSnapshot(&b, st); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	return b.Bytes()
}

// drain returns a copy of st in which the nodes are drained. No command sets
// Drained yet (it is reserved for the drain command), so tests set it by hand
// on a copy, leaving st untouched.
func drain(st *fsm.State, ids ...string) *fsm.State {
	c := *st
	c.Nodes = make(map[string]*fsm.Node, len(st.Nodes))
	for k, v := range st.Nodes {
		c.Nodes[k] = v
	}
	for _, id := range ids {
		n := *st.Nodes[id]
		n.Drained = true
		c.Nodes[id] = &n
	}
	return &c
}

// commandRole is the role a Plan command is about ("" for other commands).
func commandRole(c fsm.Command) string {
	switch x := c.(type) {
	case *fsm.Assign:
		return x.Role
	case *fsm.RequestRelease:
		return x.Role
	case *fsm.Release:
		return x.Role
	}
	return ""
}
