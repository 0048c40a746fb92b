package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

var (
	propNodes = []string{"n1", "n2", "n3", "n4", "n5"}
	propRoles = []string{"r1", "r2", "r3", "r4", "r5"}
)

// propMaxGen bounds the lease generations of the property test: small, so
// that assignments, live generations and ended verdicts often meet.
const propMaxGen = 3

// genSpec draws 1-5 service roles with random candidate lists (empty means
// anyone) and priorities over n1..n5.
func genSpec(t *rapid.T, label string) *spec.Spec {
	n := rapid.IntRange(1, len(propRoles)).Draw(t, label+"_nroles")
	names := rapid.Permutation(propRoles).Draw(t, label+"_roles")[:n]
	s := &spec.Spec{}
	for i, name := range names {
		r := spec.Role{Name: name, Type: spec.TypeService, Marker: rapid.IntRange(0, 2).Draw(t, label+"_actuated") > 0}
		if !rapid.Bool().Draw(t, label+"_anyone") {
			k := rapid.IntRange(1, len(propNodes)).Draw(t, label+"_ncands")
			for _, c := range rapid.Permutation(propNodes).Draw(t, label+"_cands")[:k] {
				r.Candidates = append(r.Candidates, spec.Candidate{Node: c, Priority: rapid.IntRange(-2, 3).Draw(t, label+"_prio")})
			}
		}
		// Placement policy: required checks, hold-down, and references to
		// earlier roles only (no follow cycles; never follow and avoid
		// the same role).
		switch rapid.IntRange(0, 3).Draw(t, label+"_requires") {
		case 0:
			r.Requires = []string{"c1"}
		case 1:
			r.Requires = []string{"c1", "c2"}
		}
		if rapid.IntRange(0, 3).Draw(t, label+"_holddown") == 0 {
			r.HoldDown = spec.Dur("1m")
		}
		if i > 0 {
			switch rapid.IntRange(0, 4).Draw(t, label+"_ref") {
			case 0:
				r.Follow = names[rapid.IntRange(0, i-1).Draw(t, label+"_follow")]
			case 1:
				r.Avoid = []string{names[rapid.IntRange(0, i-1).Draw(t, label+"_avoid")]}
			}
		}
		s.Roles = append(s.Roles, r)
	}
	return s
}

// genRegister draws a registration of id: sometimes a witness, running a
// random subset of the checks c1, c2, with actuators for all services
// (nil) or for some.
func genRegister(t *rapid.T, id string) *fsm.RegisterNode {
	r := reg(id)
	r.Witness = rapid.IntRange(0, 5).Draw(t, "witness") == 0
	r.Checks = rapid.SampledFrom([][]string{nil, {"c1"}, {"c1", "c2"}, {"c2"}}).Draw(t, "checks")
	if rapid.IntRange(0, 3).Draw(t, "declares_services") == 0 {
		k := rapid.IntRange(1, len(propRoles)).Draw(t, "nservices")
		r.Services = rapid.Permutation(propRoles).Draw(t, "services")[:k]
	}
	return r
}

// applyAny applies cmd, keeping the state a rejection leaves (only the
// index moves); any other error fails.
func applyAny(t *rapid.T, st *fsm.State, cmd fsm.Command) *fsm.State {
	next, err := fsm.Apply(st, st.Index+1, cmd)
	var rej *fsm.RejectedError
	if err != nil && !errors.As(err, &rej) {
		t.Fatalf("Apply(%s): got %v, want nil or a *fsm.RejectedError", describe(cmd), err)
	}
	return next
}

// genState builds a realistic state by applying a random history of real
// commands: registrations (some witnesses), specs, assignments at random
// generations (0 stands for assignments written before quorum leases;
// re-assignments of a holder at another generation included), release
// requests, releases, leaves and removals. Some nodes are then drained.
func genState(t *rapid.T) *fsm.State {
	st := fsm.NewState()
	for _, id := range propNodes {
		if rapid.IntRange(0, 5).Draw(t, "unregistered") == 0 {
			continue
		}
		st = applyAny(t, st, genRegister(t, id))
		for _, c := range []string{"c1", "c2"} {
			if rapid.IntRange(0, 3).Draw(t, "first_verdict") > 0 {
				st = applyAny(t, st, check(id, c, rapid.IntRange(0, 3).Draw(t, "passing") > 0))
			}
		}
	}
	st = applyAny(t, st, applySpec(genSpec(t, "spec0").Roles...))
	steps := rapid.IntRange(0, 30).Draw(t, "steps")
	for i := 0; i < steps; i++ {
		node := rapid.SampledFrom(propNodes).Draw(t, "node")
		roleName := rapid.SampledFrom(propRoles).Draw(t, "role")
		cur := st.Assignment(roleName)
		var cmd fsm.Command
		switch k := rapid.IntRange(0, 11).Draw(t, "kind"); {
		case k < 4:
			if len(st.Spec.Roles) > 0 {
				roleName = rapid.SampledFrom(st.Spec.Roles).Draw(t, "spec_role").Name
				cur = st.Assignment(roleName)
			}
			if cur.Holder != "" && rapid.IntRange(0, 3).Draw(t, "same_holder") == 0 {
				node = cur.Holder
			}
			gen := rapid.Uint64Range(0, propMaxGen).Draw(t, "gen")
			cmd = assignGen(roleName, node, cur.Holder, gen, cur.Epoch+1)
		case k == 4:
			cmd = &fsm.RequestRelease{Role: roleName, Epoch: max(cur.Epoch, 1), Reason: "history", Actor: "test", Time: t0}
		case k == 5:
			cmd = &fsm.Release{Role: roleName, Node: orElse(cur.Holder, node), Epoch: max(cur.Epoch, 1), Reason: "history", Time: t0}
		case k == 6:
			cmd = leave(node)
		case k == 7:
			cmd = genRegister(t, node)
		case k >= 10:
			cmd = check(node, rapid.SampledFrom([]string{"c1", "c2"}).Draw(t, "check"), rapid.Bool().Draw(t, "passing"))
		case k == 9 && rapid.IntRange(0, 2).Draw(t, "hold_down_release") == 0:
			// A release stamped just now, so hold-downs are often running.
			cmd = &fsm.Release{Role: roleName, Node: orElse(cur.Holder, node), Epoch: max(cur.Epoch, 1), Reason: "history", Time: planNow - 1000}
		case k == 8:
			cmd = &fsm.RemoveNode{Node: node, Actor: "test", Time: t0}
		default:
			cmd = applySpec(genSpec(t, "spec").Roles...)
		}
		st = applyAny(t, st, cmd)
	}
	// Often drop some roles from the spec, so that removed roles with
	// holders are common.
	if n := len(st.Spec.Roles); n > 0 && rapid.IntRange(0, 2).Draw(t, "shrink_spec") == 0 {
		keep := rapid.IntRange(0, n-1).Draw(t, "keep_roles")
		st = applyAny(t, st, applySpec(rapid.Permutation(st.Spec.Roles).Draw(t, "kept_roles")[:keep]...))
	}
	var drained []string
	for _, id := range st.NodeIDs() {
		if rapid.IntRange(0, 5).Draw(t, "drained") == 0 {
			drained = append(drained, id)
		}
	}
	if len(drained) > 0 {
		st = drain(st, drained...)
	}
	return st
}

// orElse returns a unless it is empty, else b.
func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// genVerdicts draws the voters' verdicts: the generation each node runs
// (or none), and for each node the generations up to which its grants have
// ended. A generation a node is live on is never ended (two majorities
// intersect). The Ended function is nil now and then.
func genVerdicts(t *rapid.T) (map[string]uint64, func(string, uint64, time.Duration) bool) {
	live := map[string]uint64{}
	upTo := map[string]int{}
	for _, id := range propNodes {
		if g := rapid.IntRange(0, propMaxGen).Draw(t, "live_gen"); g > 0 {
			live[id] = uint64(g)
		}
		upTo[id] = rapid.IntRange(-1, propMaxGen).Draw(t, "ended_up_to")
	}
	if rapid.IntRange(0, 5).Draw(t, "nil_ended") == 0 {
		return live, nil
	}
	return live, func(node string, gen uint64, _ time.Duration) bool {
		if g, ok := live[node]; ok && g == gen {
			return false
		}
		return int(gen) <= upTo[node]
	}
}

// expectedKind is the kind of command Plan must return for a role, from
// the rules in Plan's doc comment ("" for none). canPlace tells whether any
// live eligible node exists for the role.
func expectedKind(st *fsm.State, r spec.Role, inSpec bool, a fsm.Assignment, live map[string]uint64, ended func(string, uint64, time.Duration) bool, settling bool) string {
	gen, isLive := live[a.Holder]
	onGen := a.Holder != "" && isLive && gen == a.HolderGen
	hasEnded := a.Holder != "" && !onGen && ended != nil && ended(a.Holder, a.HolderGen, 0)
	if !inSpec {
		switch {
		case a.Holder == "":
			return ""
		case onGen && !a.Releasing:
			return "request-release"
		case hasEnded:
			return "release"
		}
		return ""
	}
	canPlace := false
	for _, id := range st.NodeIDs() {
		if _, ok := live[id]; ok && eligible(st, r, id) {
			canPlace = true
		}
	}
	switch {
	case onGen && eligible(st, r, a.Holder):
		return ""
	case onGen && !a.Releasing:
		return "request-release"
	case onGen:
		return ""
	case a.Holder != "" && !hasEnded:
		return "" // the holder may still act: wait (S4)
	case a.Holder == "" && settling:
		return ""
	case canPlace:
		return "assign"
	}
	return ""
}

func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		live, endedFn := genVerdicts(t)
		settling := rapid.Bool().Draw(t, "settling")
		held := map[string]bool{} // "node/gen" of every assignment
		for _, a := range st.Assignments {
			if a.Holder != "" {
				held[fmt.Sprintf("%s/%d", a.Holder, a.HolderGen)] = true
			}
		}
		var asked []string
		in := Input{State: st, Live: live, Now: planNow, Actor: planActor, Settling: settling}
		if endedFn != nil {
			in.Ended = func(node string, gen uint64, _ time.Duration) bool {
				asked = append(asked, fmt.Sprintf("%s/%d", node, gen))
				return endedFn(node, gen, 0)
			}
		}
		before := snapshotBytes(t, st)

		cmds := Plan(in)

		if after := snapshotBytes(t, st); !bytes.Equal(before, after) {
			t.Fatalf("Plan modified its input state")
		}
		for _, q := range asked {
			if !held[q] {
				t.Fatalf("Plan asked Ended(%s), want only an assignment's holder and generation (%v)", q, sortedKeys(held))
			}
		}

		// Determinism: the same input, a copy of the verdicts (another map
		// iteration order) and the state rebuilt from its snapshot all
		// plan the same.
		if again := Plan(in); !reflect.DeepEqual(again, cmds) {
			t.Fatalf("Plan is not deterministic: got %q then %q", describeAll(cmds), describeAll(again))
		}
		in2 := in
		in2.Live = map[string]uint64{}
		for _, id := range sortedKeys(live) {
			in2.Live[id] = live[id]
		}
		var b bytes.Buffer
		if err := fsm.WriteSnapshot(&b, st); err != nil {
			t.Fatalf("WriteSnapshot: %v", err)
		}
		cp, err := fsm.ReadSnapshot(&b)
		if err != nil {
			t.Fatalf("ReadSnapshot: %v", err)
		}
		in2.State = cp
		if again := Plan(in2); !reflect.DeepEqual(again, cmds) {
			t.Fatalf("Plan on copies of its input: got %q, want %q", describeAll(again), describeAll(cmds))
		}

		perRole := map[string]fsm.Command{}
		for _, c := range cmds {
			r := commandRole(c)
			if r == "" {
				t.Fatalf("Plan returned %s, want only assign, request-release and release", describe(c))
			}
			if prev, dup := perRole[r]; dup {
				t.Fatalf("Plan returned %s and %s for role %s in %q, want at most one command per role", describe(prev), describe(c), r, describeAll(cmds))
			}
			perRole[r] = c
			a := st.Assignment(r)
			rs, inSpec := st.Spec.Role(r)
			switch x := c.(type) {
			case *fsm.Assign:
				n, registered := st.Nodes[x.Node]
				_, cand := rs.Candidate(x.Node)
				gen, isLive := live[x.Node]
				switch {
				case !isLive:
					t.Fatalf("%s: node is absent from Live %v", describe(c), live)
				case x.HolderGen != gen:
					t.Fatalf("%s: got HolderGen %d, want Live[%s] = %d", describe(c), x.HolderGen, x.Node, gen)
				case !registered:
					t.Fatalf("%s: node is not registered", describe(c))
				case n.Witness || n.Leaving || n.Drained:
					t.Fatalf("%s: node is witness=%t leaving=%t drained=%t", describe(c), n.Witness, n.Leaving, n.Drained)
				case !inSpec || !cand:
					t.Fatalf("%s: role in spec %t, node a candidate %t", describe(c), inSpec, cand)
				case x.PrevHolder != a.Holder || x.Epoch != a.Epoch+1:
					t.Fatalf("%s: want prev=%s epoch=%d from the assignment %+v", describe(c), a.Holder, a.Epoch+1, a)
				case a.Holder != "" && live[a.Holder] == a.HolderGen && hasKey(live, a.Holder):
					t.Fatalf("%s: the holder %s is live on generation %d; a live holder is asked to release, never replaced", describe(c), a.Holder, a.HolderGen)
				case a.Holder != "" && (in.Ended == nil || !endedFn(a.Holder, a.HolderGen, 0)):
					t.Fatalf("%s: the holder %s's generation %d has not ended (S4)", describe(c), a.Holder, a.HolderGen)
				case a.Holder == "" && settling:
					t.Fatalf("%s: an unassigned role was placed while settling", describe(c))
				}
				// The policy: every required check passing, the service's
				// actuator present, on the followed role's holder.
				for _, chk := range rs.Requires {
					if !st.CheckPassing(x.Node, chk) {
						t.Fatalf("%s: required check %s is not passing there (%+v)", describe(c), chk, st.Checks[x.Node])
					}
				}
				if !rs.Marker && !n.RunsService(r) {
					t.Fatalf("%s: node has no actuator for the service (%v)", describe(c), n.Services)
				}
				if f := rs.Follow; f != "" && (st.Assignment(f).Holder != x.Node || st.Assignment(f).Releasing) {
					t.Fatalf("%s: role follows %s, held by %q", describe(c), f, st.Assignment(f).Holder)
				}
				// The rank: no live eligible node beats the chosen one on
				// hold-down, then avoided roles, then priority.
				p, _ := rs.Candidate(x.Node)
				hd, av := heldDown(in, rs, a, x.Node), len(avoidedHeld(st, rs, x.Node))
				for _, id := range st.NodeIDs() {
					if !hasKey(live, id) || !eligible(st, rs, id) {
						continue
					}
					q, _ := rs.Candidate(id)
					hd2, av2 := heldDown(in, rs, a, id), len(avoidedHeld(st, rs, id))
					switch {
					case hd && !hd2:
						t.Fatalf("%s: chosen node is held down, %s is not", describe(c), id)
					case hd == hd2 && av2 < av:
						t.Fatalf("%s: %s holds fewer avoided roles (%d < %d)", describe(c), id, av2, av)
					case hd == hd2 && av2 == av && q > p:
						t.Fatalf("%s: live eligible %s has priority %d > %d", describe(c), id, q, p)
					}
				}
			case *fsm.RequestRelease:
				gen, isLive := live[a.Holder]
				if a.Holder == "" || !isLive || gen != a.HolderGen || a.Releasing || x.Epoch != a.Epoch {
					t.Fatalf("%s: assignment %+v live %t on %d, want a holder live on its generation, not yet asked", describe(c), a, isLive, gen)
				}
				if inSpec && eligible(st, rs, a.Holder) {
					t.Fatalf("%s: holder %s is still eligible", describe(c), a.Holder)
				}
			case *fsm.Release:
				gen, isLive := live[a.Holder]
				if inSpec || x.Node != a.Holder || x.Epoch != a.Epoch || (isLive && gen == a.HolderGen) || endedFn == nil || !endedFn(a.Holder, a.HolderGen, 0) {
					t.Fatalf("%s: role in spec %t, assignment %+v live %t on %d; want a removed role whose holder's generation ended", describe(c), inSpec, a, isLive, gen)
				}
			}
		}

		// Each role gets the kind of command the rules call for.
		names := map[string]bool{}
		for _, r := range st.Spec.Roles {
			names[r.Name] = true
		}
		for name := range st.Assignments {
			names[name] = true
		}
		for _, name := range sortedKeys(names) {
			rs, inSpec := st.Spec.Role(name)
			a := st.Assignment(name)
			want := expectedKind(st, rs, inSpec, a, live, endedFn, settling)
			if f, ok := perRole[rs.Follow]; inSpec && ok && f.Type().String() == "assign" {
				want = "" // it follows a role this plan moves: the next plan
			}
			got := ""
			if c, ok := perRole[name]; ok {
				got = c.Type().String()
			}
			if got != want {
				t.Fatalf("role %s (in spec %t, assignment %+v, live %v, settling %t): got command %q, want %q (all: %q)",
					name, inSpec, a, live, settling, got, want, describeAll(cmds))
			}
		}

		// Every command applies, in order, to the input state.
		next := st
		for _, c := range cmds {
			n, err := fsm.Apply(next, next.Index+1, c)
			if err != nil {
				t.Fatalf("Apply(%s) in %q: got error %v, want nil", describe(c), describeAll(cmds), err)
			}
			next = n
		}

		// Plan and apply again until nothing is left to do.
		cur := st
		for round := 0; ; round++ {
			cs := Plan(Input{State: cur, Live: live, Ended: endedFn, Now: planNow + int64(round), Actor: planActor, Settling: settling})
			if len(cs) == 0 {
				break
			}
			if round == 3 {
				t.Fatalf("no fixpoint after 3 rounds: still planning %q", describeAll(cs))
			}
			for _, c := range cs {
				n, err := fsm.Apply(cur, cur.Index+1, c)
				if err != nil {
					t.Fatalf("round %d: Apply(%s): got error %v, want nil", round, describe(c), err)
				}
				cur = n
			}
		}
	})
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// TestPlanPropertiesCoverage checks that the property test's generators
// reach the interesting cases: without them, a green run would prove little.
// It draws batches of examples until every case was seen (a few batches at
// most in practice).
func TestPlanPropertiesCoverage(t *testing.T) {
	cases := []string{"assign unassigned", "assign same node, new generation", "assign other node",
		"request-release", "release", "holder on another generation, waiting", "holder neither live nor ended, waiting"}
	seen := map[string]int{}
	missing := func() []string {
		var out []string
		for _, k := range cases {
			if seen[k] == 0 {
				out = append(out, k)
			}
		}
		return out
	}
	for batch := 0; batch < 20 && len(missing()) > 0; batch++ {
		rapid.Check(t, func(t *rapid.T) {
			st := genState(t)
			live, ended := genVerdicts(t)
			for _, c := range Plan(Input{State: st, Live: live, Ended: ended, Now: planNow, Actor: planActor}) {
				switch x := c.(type) {
				case *fsm.Assign:
					switch {
					case x.PrevHolder == "":
						seen["assign unassigned"]++
					case x.PrevHolder == x.Node:
						seen["assign same node, new generation"]++
					default:
						seen["assign other node"]++
					}
				default:
					seen[c.Type().String()]++
				}
			}
			for _, a := range st.Assignments {
				if a.Holder == "" || (ended != nil && ended(a.Holder, a.HolderGen, 0)) {
					continue
				}
				switch g, ok := live[a.Holder]; {
				case ok && g != a.HolderGen:
					seen["holder on another generation, waiting"]++
				case !ok:
					seen["holder neither live nor ended, waiting"]++
				}
			}
		})
	}
	if m := missing(); len(m) > 0 {
		t.Errorf("property generators: cases %q never reached in 20 batches (seen %v)", m, seen)
	}
}
