package coordinator

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// Kinds of RoleChange.
const (
	RoleAdded     = "added"
	RoleRemoved   = "removed"
	RoleChanged   = "changed"
	RoleUnchanged = "unchanged"
)

// RoleChange is what a new spec does to one role: its fields that differ
// and its holder now and after the placement policy has run on the new
// spec (`spec apply --dry-run`).
type RoleChange struct {
	Role string
	// Change is RoleAdded, RoleRemoved, RoleChanged or RoleUnchanged.
	Change string
	// Fields lists the fields that differ, as "field: old -> new" (JSON
	// values), sorted by field.
	Fields      []string
	HolderNow   string
	HolderAfter string
	// Stops is set when the role has a holder now and none after: what
	// runs for it stops (a removed role, or no node qualifies any more).
	Stops bool
	// Why says why no node holds it after ("" when one does).
	Why string
}

// SpecProblem is a reason to refuse a new spec unless forced: the role,
// the field and what is wrong, with the fix.
type SpecProblem struct {
	Role    string
	Field   string
	Message string
}

func (p SpecProblem) String() string {
	if p.Field == "" {
		return fmt.Sprintf("roles[%s]: %s", p.Role, p.Message)
	}
	return fmt.Sprintf("roles[%s].%s: %s", p.Role, p.Field, p.Message)
}

// PreviewSpec runs the placement policy on in with next in place of the
// spec, without proposing anything, and returns per role (in name order;
// roles of both specs) what changes. It is pure, like Plan.
//
// The holder after is found by settling: a holder that is live and still
// eligible keeps its role; any other role goes to the best live eligible
// node, in rounds until nothing changes (a role that follows another sees
// the other's holder after). Liveness is the presence of a node in
// in.Live; hold-downs and a leader's settling are ignored.
func PreviewSpec(in Input, next *spec.Spec) []RoleChange {
	if next == nil {
		next = &spec.Spec{}
	}
	cur := in.State.Spec
	if cur == nil {
		cur = &spec.Spec{}
	}
	after, why := settle(in, next)
	names := map[string]bool{}
	for _, n := range cur.RoleNames() {
		names[n] = true
	}
	for _, n := range next.RoleNames() {
		names[n] = true
	}
	var out []RoleChange
	for _, name := range sortedNames(names) {
		old, inOld := cur.Role(name)
		nw, inNew := next.Role(name)
		c := RoleChange{Role: name, HolderNow: in.State.Assignment(name).Holder, HolderAfter: after[name]}
		switch {
		case !inOld:
			c.Change = RoleAdded
		case !inNew:
			c.Change = RoleRemoved
			c.Why = "removed from the spec"
		default:
			c.Fields = roleFieldDiff(old, nw)
			c.Change = RoleUnchanged
			if len(c.Fields) > 0 {
				c.Change = RoleChanged
			}
		}
		if inNew && c.HolderAfter == "" {
			c.Why = why[name]
		}
		c.Stops = c.HolderNow != "" && c.HolderAfter == ""
		out = append(out, c)
	}
	return out
}

// settle places every role of next on a copy of in.State carrying next:
// it returns the holder of each role after, and why a role has none.
func settle(in Input, next *spec.Spec) (map[string]string, map[string]string) {
	st := *in.State
	st.Spec = next
	st.Assignments = make(map[string]*fsm.Assignment, len(in.State.Assignments))
	for k, a := range in.State.Assignments {
		c := *a
		st.Assignments[k] = &c
	}
	for name, a := range st.Assignments {
		if _, ok := next.Role(name); !ok {
			a.Holder = ""
		}
	}
	roles := append([]spec.Role(nil), next.Roles...)
	sort.Slice(roles, func(i, j int) bool { return roles[i].Name < roles[j].Name })
	sim := in
	sim.State = &st
	why := map[string]string{}
	for round := 0; round <= len(roles); round++ {
		changed := false
		for _, r := range roles {
			a := st.Assignments[r.Name]
			if a == nil {
				a = &fsm.Assignment{Role: r.Name}
				st.Assignments[r.Name] = a
			}
			if _, live := in.Live[a.Holder]; a.Holder != "" && live && eligible(&st, r, a.Holder) {
				continue
			}
			load := map[string]int{}
			for _, x := range st.Assignments {
				if x.Holder != "" && x != a {
					load[x.Holder]++
				}
			}
			x := *a
			x.LostBy = "" // hold-downs ignored: they delay, they do not stop
			best := pick(sim, r, x, load)
			if best != a.Holder {
				a.Holder = best
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	after := map[string]string{}
	for _, r := range roles {
		after[r.Name] = st.Assignments[r.Name].Holder
		if after[r.Name] == "" {
			why[r.Name] = noHolderWhy(sim, r)
		}
	}
	return after, why
}

// noHolderWhy words why no node qualifies for r: each registered node's
// first disqualification.
func noHolderWhy(in Input, r spec.Role) string {
	var parts []string
	for _, id := range in.State.NodeIDs() {
		why := disqualify(in.State, r, id)
		if _, live := in.Live[id]; !live {
			why = append(why, "lease not live")
		}
		if len(why) > 0 {
			parts = append(parts, id+": "+why[0])
		}
	}
	if len(parts) == 0 {
		return "no node is registered"
	}
	return "no node qualifies (" + strings.Join(parts, "; ") + ")"
}

// CheckSpec lists what makes next unsafe to apply on st: a role requiring
// a check that no registered node runs (the role could never be placed;
// usually a typo), and a role held now that no registered node would
// qualify for under next (its holder stops and nothing takes over).
// Liveness is not looked at: a node that is down now may come back.
// Roles removed from next are not problems: removing one is what stops it.
// Follow and avoid naming no role are refused by spec.Parse already.
func CheckSpec(st *fsm.State, next *spec.Spec) []SpecProblem {
	if next == nil {
		return nil
	}
	defined := map[string]bool{}
	for _, m := range st.Checks {
		for name := range m {
			defined[name] = true
		}
	}
	var out []SpecProblem
	roles := append([]spec.Role(nil), next.Roles...)
	sort.Slice(roles, func(i, j int) bool { return roles[i].Name < roles[j].Name })
	for _, r := range roles {
		for k, c := range r.Requires {
			if !defined[c] {
				out = append(out, SpecProblem{Role: r.Name, Field: fmt.Sprintf("requires[%d]", k),
					Message: fmt.Sprintf("check %q is not defined by any registered node (checks they run: %s); fix the name or add the check to the nodes' configs", c, orNone(sortedNames(defined)))})
			}
		}
	}
	all := map[string]uint64{}
	for id := range st.Nodes {
		all[id] = 0
	}
	in := Input{State: st, Live: all}
	// A role that would stop under the current spec as well (its checks
	// fail everywhere now) does not stop because of next.
	now, _ := settle(in, st.Spec)
	for _, c := range PreviewSpec(in, next) {
		if c.Stops && c.Change != RoleRemoved && now[c.Role] != "" {
			out = append(out, SpecProblem{Role: c.Role, Field: "", Message: fmt.Sprintf("is held by %s now and would have no eligible node: %s", c.HolderNow, c.Why)})
		}
	}
	return out
}

// roleFieldDiff lists the fields of a role that differ between a and b,
// as "field: old -> new" with JSON values, sorted by field.
func roleFieldDiff(a, b spec.Role) []string {
	ma, mb := roleFields(a), roleFields(b)
	keys := map[string]bool{}
	for k := range ma {
		keys[k] = true
	}
	for k := range mb {
		keys[k] = true
	}
	var out []string
	for _, k := range sortedNames(keys) {
		x, y := ma[k], mb[k]
		if x == y {
			continue
		}
		if x == "" {
			x = "(unset)"
		}
		if y == "" {
			y = "(unset)"
		}
		out = append(out, k+": "+x+" -> "+y)
	}
	return out
}

// roleFields renders each set field of r as compact JSON.
func roleFields(r spec.Role) map[string]string {
	b, err := json.Marshal(r)
	if err != nil {
		return map[string]string{"role": err.Error()}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return map[string]string{"role": err.Error()}
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
