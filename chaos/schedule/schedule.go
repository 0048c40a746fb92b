// Package schedule draws the chaos runs' schedules: overlapping faults,
// each with a start and a length, from a seed. It is pure: the same seed and
// parameters give the same schedule on any machine, so a run replays from
// its seed.
//
// A fault names its targets symbolically (the holder of a role, the Raft
// leader, a node picked by a number drawn with the schedule): Resolve turns
// them into node names against what the observers see when the fault
// starts. A replayed run injects the same faults at the same times into
// whatever cluster it runs against.
package schedule

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The kinds of faults. Process faults (crash .. rolling-restart, wipe-data,
// leader-crash-move, kill-redis, pause-redis) hold their nodes exclusively: no two of them overlap on
// one node. Network faults (partition, one-way, loss) compose: the lab
// installs the union of those active. At most one partition is active at a
// time.
const (
	// Crash powers a node off (switch port down, every process killed);
	// its end powers it on and restarts its programs.
	Crash Kind = "crash"
	// KillAgent SIGKILLs a node's agent; its end starts it again.
	KillAgent Kind = "kill-agent"
	// PauseAgent SIGSTOPs a node's agent; its end SIGCONTs it.
	PauseAgent Kind = "pause-agent"
	// Restart stops a node's agent gracefully (SIGTERM); its end starts it.
	Restart Kind = "restart"
	// RollingRestart restarts every agent gracefully, one after the
	// other, the Raft leader last.
	RollingRestart Kind = "rolling-restart"
	// WipeData kills a node's agent, deletes its data dir and starts it
	// again (it rejoins from the others). Never overlaps another fault:
	// a wiped voter has forgotten its vote (docs/operations.md).
	WipeData Kind = "wipe-data"
	// LeaderCrashMove asks for a planned move of a role and crashes the
	// Raft leader right after; its end restores the leader's node.
	LeaderCrashMove Kind = "leader-crash-move"
	// Partition cuts the nodes (and the client) into two sides; Shape
	// says how.
	Partition Kind = "partition"
	// OneWay drops every frame from one node to every other node.
	OneWay Kind = "one-way"
	// Loss drops Percent % of the frames in and out of some nodes.
	Loss Kind = "loss"
	// CPU runs Workers busy processes in some nodes' namespaces.
	CPU Kind = "cpu"
	// KillRedis SIGKILLs a node's redis-server; its end starts it again
	// (empty and fenced, as after a crash). Drawn only with a Redis role
	// (Params.RedisRole), whose holder it picks.
	KillRedis Kind = "kill-redis"
	// PauseRedis SIGSTOPs a node's redis-server; its end SIGCONTs it.
	// Drawn only with a Redis role, like KillRedis.
	PauseRedis Kind = "pause-redis"
)

// Partition shapes.
const (
	// ShapeHolder cuts a role's holder from every other node; the client
	// still reaches everyone.
	ShapeHolder = "holder"
	// ShapeLeader cuts the Raft leader from every other node.
	ShapeLeader = "leader"
	// ShapeMinority cuts a random minority from the majority; the client
	// stays with the majority.
	ShapeMinority = "minority"
	// ShapeClientMinority is ShapeMinority with the client on the
	// minority's side.
	ShapeClientMinority = "client-minority"
	// ShapeBridge cuts the nodes into two sides that cannot talk, and one
	// node, the bridge, that talks to both.
	ShapeBridge = "bridge"
)

// Pick names whom a fault hits.
type Pick string

const (
	// PickHolder is the holder of the fault's Role (any node if vacant).
	PickHolder Pick = "holder"
	// PickLeader is the Raft leader (any node if none).
	PickLeader Pick = "leader"
	// PickFollower is a node that is neither the leader nor the holder of
	// the fault's Role, when there is one.
	PickFollower Pick = "follower"
	// PickAny is any node.
	PickAny Pick = "any"
)

// Fault is one fault of a schedule.
type Fault struct {
	// ID is the fault's index in the schedule.
	ID   int  `json:"id"`
	Kind Kind `json:"kind"`
	// At is when the fault starts, from the start of the run; For how
	// long it lasts (for a fault that is one action, like wipe-data, the
	// time the runner waits before the next fault may touch the node).
	At  time.Duration `json:"at"`
	For time.Duration `json:"for"`
	// Pick and Role say whom it hits; Count how many nodes (loss, cpu).
	Pick  Pick   `json:"pick,omitempty"`
	Role  string `json:"role,omitempty"`
	Count int    `json:"count,omitempty"`
	// Shape is a partition's shape.
	Shape string `json:"shape,omitempty"`
	// Percent is the loss; Workers the busy processes per node (cpu).
	Percent int `json:"percent,omitempty"`
	Workers int `json:"workers,omitempty"`
	// Draw is a number drawn with the schedule that Resolve uses for every
	// choice it makes when the fault starts.
	Draw uint64 `json:"draw"`
}

// End is when the fault ends.
func (f Fault) End() time.Duration { return f.At + f.For }

// Network reports whether the fault is a network fault (composable).
func (f Fault) Network() bool {
	return f.Kind == Partition || f.Kind == OneWay || f.Kind == Loss
}

// Solitary reports whether the fault must not overlap any other.
func (f Fault) Solitary() bool { return f.Kind == WipeData || f.Kind == RollingRestart }

func (f Fault) String() string {
	s := fmt.Sprintf("#%d %s at %s for %s", f.ID, f.Kind, f.At, f.For)
	switch {
	case f.Kind == Partition:
		s += " shape " + f.Shape
	case f.Kind == Loss:
		s += fmt.Sprintf(" %d%% on %d", f.Percent, f.Count)
	case f.Kind == CPU:
		s += fmt.Sprintf(" %d workers on %d", f.Workers, f.Count)
	case f.Pick != "":
		s += " " + string(f.Pick)
	}
	if f.Role != "" {
		s += " of " + f.Role
	}
	return s
}

// Params are a schedule's parameters.
type Params struct {
	// Nodes is the number of voters (3, 5 or 7).
	Nodes int
	// Duration is the span in which faults start and end; the runner adds
	// a quiet tail after it.
	Duration time.Duration
	// Roles are the roles a fault may target.
	Roles []string
	// Kinds, when set, restricts the draw to these kinds.
	Kinds []Kind
	// RedisRole, when set, is the redis-master role (one of Roles): the
	// Redis faults (kill-redis, pause-redis) are drawn, and they target
	// its holder or other nodes. Without it they are never drawn, and a
	// schedule is the one drawn before they existed.
	RedisRole string
}

// Kinds lists every kind with its weight in a draw.
var weights = []struct {
	kind Kind
	w    int
}{
	{Crash, 4}, {KillAgent, 3}, {PauseAgent, 3}, {Restart, 2}, {RollingRestart, 1},
	{WipeData, 1}, {LeaderCrashMove, 2}, {Partition, 6}, {OneWay, 2}, {Loss, 2}, {CPU, 3},
	// Last, so that a draw without them consumes the same numbers.
	{KillRedis, 3}, {PauseRedis, 2},
}

// redisKind reports whether k needs a Redis role.
func redisKind(k Kind) bool { return k == KillRedis || k == PauseRedis }

// AllKinds returns every kind, in a fixed order.
func AllKinds() []Kind {
	out := make([]Kind, len(weights))
	for i, w := range weights {
		out[i] = w.kind
	}
	return out
}

// ParseKinds parses a comma-separated list of kinds.
func ParseKinds(s string) ([]Kind, error) {
	var out []Kind
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(AllKinds(), Kind(p)) {
			return nil, fmt.Errorf("unknown fault kind %q (kinds: %s)", p, kindList())
		}
		out = append(out, Kind(p))
	}
	return out, nil
}

func kindList() string {
	var s []string
	for _, k := range AllKinds() {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}

// Validate checks the parameters.
func (p Params) Validate() error {
	if p.Nodes != 3 && p.Nodes != 5 && p.Nodes != 7 {
		return fmt.Errorf("nodes: %d is not 3, 5 or 7", p.Nodes)
	}
	if p.Duration < 5*time.Second {
		return fmt.Errorf("duration: %s is too short for a schedule (at least 5s)", p.Duration)
	}
	if len(p.Roles) == 0 {
		return fmt.Errorf("roles: none to target")
	}
	if p.RedisRole != "" && !slices.Contains(p.Roles, p.RedisRole) {
		return fmt.Errorf("redis role: %q is not one of the roles %v", p.RedisRole, p.Roles)
	}
	if p.RedisRole == "" {
		for _, k := range p.Kinds {
			if redisKind(k) {
				return fmt.Errorf("kinds: %s needs a Redis role (harbormaster-lab chaos --redis)", k)
			}
		}
	}
	return nil
}

// Concurrency bounds: how many faults may be active at once.
func maxActive(nodes int) int {
	if nodes == 3 {
		return 2
	}
	return 3
}

// Draw draws the schedule of one run. Faults start in [0, Duration - 1s)
// and end by Duration; lengths are 1 to 6 s; up to maxActive overlap; a
// process fault never overlaps another on a node it might hit, which the
// schedule cannot know, so process faults of the same node-picking kind are
// kept apart by resolving them against busy nodes (see Resolve). The
// schedule is sorted by start.
func Draw(seed int64, p Params) ([]Fault, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	var kinds []struct {
		kind Kind
		w    int
	}
	for _, w := range weights {
		if (len(p.Kinds) == 0 || slices.Contains(p.Kinds, w.kind)) && (p.RedisRole != "" || !redisKind(w.kind)) {
			kinds = append(kinds, w)
		}
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("kinds: none left to draw from")
	}
	total := 0
	for _, w := range kinds {
		total += w.w
	}
	pick := func() Kind {
		n := r.IntN(total)
		for _, w := range kinds {
			if n < w.w {
				return w.kind
			}
			n -= w.w
		}
		panic("unreachable")
	}
	var out []Fault
	t := time.Duration(r.Int64N(int64(time.Second)))
	for t < p.Duration-time.Second {
		f := Fault{Kind: pick(), At: t}
		f.For = time.Second + time.Duration(r.Int64N(int64(5*time.Second)))
		if f.End() > p.Duration {
			f.For = p.Duration - f.At
		}
		fill(&f, r, p)
		if f.End() <= p.Duration && fits(out, f, maxActive(p.Nodes)) {
			f.ID = len(out)
			out = append(out, f)
		}
		// The next start: usually soon after, so faults overlap.
		t += 300*time.Millisecond + time.Duration(r.Int64N(int64(3*time.Second)))
	}
	return out, nil
}

// fill draws a fault's parameters for its kind.
func fill(f *Fault, r *rand.Rand, p Params) {
	f.Draw = r.Uint64()
	f.Role = p.Roles[r.IntN(len(p.Roles))]
	picks := []Pick{PickHolder, PickHolder, PickLeader, PickFollower, PickAny}
	switch f.Kind {
	case Crash, KillAgent, PauseAgent, Restart, WipeData:
		f.Pick = picks[r.IntN(len(picks))]
	case KillRedis, PauseRedis:
		f.Pick = picks[r.IntN(len(picks))]
		f.Role = p.RedisRole
	case LeaderCrashMove:
		f.Pick = PickLeader
	case RollingRestart:
		f.Role = ""
		// Each restart waits until its node is ready again: give it time.
		f.For = time.Duration(p.Nodes) * 2 * time.Second
	case Partition:
		shapes := []string{ShapeHolder, ShapeHolder, ShapeLeader, ShapeMinority, ShapeClientMinority, ShapeBridge}
		f.Shape = shapes[r.IntN(len(shapes))]
	case OneWay:
		f.Pick = picks[r.IntN(len(picks))]
	case Loss:
		f.Count = 1 + r.IntN(p.Nodes)
		f.Percent = 5 + 5*r.IntN(6) // 5..30 %
		f.Role = ""
	case CPU:
		f.Count = 1 + r.IntN(p.Nodes)
		f.Workers = 1 + r.IntN(2)
		f.Role = ""
	}
	if f.Kind == WipeData {
		// The wiped node must rejoin from a stable cluster.
		f.For = 4 * time.Second
	}
}

// fits reports whether f may join the schedule: at most max active at any
// time, at most one partition at a time, and solitary faults alone.
func fits(sched []Fault, f Fault, max int) bool {
	overlap := 0
	for _, g := range sched {
		if g.At >= f.End() || f.At >= g.End() {
			continue
		}
		if f.Solitary() || g.Solitary() {
			return false
		}
		if f.Kind == Partition && g.Kind == Partition {
			return false
		}
		overlap++
	}
	// Overlap counted against every fault overlapping f, a bound on the
	// peak (the peak may be lower).
	return overlap < max
}

// World is what the observers see when a fault starts: the nodes, the
// leader, each role's holder, and the nodes a process fault holds now.
type World struct {
	Nodes   []string
	Leader  string
	Holders map[string]string
	// Busy are nodes that an active process fault holds (crashed, killed,
	// paused, restarting): a new process fault does not pick them.
	Busy map[string]bool
	// Client is the observers' client host (partitions place it).
	Client string
}

// Resolved is a fault applied to a World: the nodes it hits, and for a
// partition its two sides (the client in one of them) and the bridge.
type Resolved struct {
	Targets []string
	// Sides and Bridge (partition): hosts on different sides cannot talk;
	// the bridge talks to both.
	Sides  [2][]string
	Bridge string
	// MoveTo (leader-crash-move) is where the role is moved.
	MoveTo string
}

// Resolve turns f's symbolic targets into hosts of w. It returns an error
// when the fault cannot apply (every candidate node busy): the runner
// skips it and says so.
func Resolve(f Fault, w World) (Resolved, error) {
	r := rand.New(rand.NewPCG(f.Draw, uint64(f.ID)))
	free := func(n string) bool { return !w.Busy[n] }
	one := func(p Pick) (string, error) {
		var cand []string
		switch p {
		case PickHolder:
			if h := w.Holders[f.Role]; h != "" && !strings.Contains(h, "+") {
				cand = []string{h}
			}
		case PickLeader:
			if w.Leader != "" {
				cand = []string{w.Leader}
			}
		case PickFollower:
			for _, n := range w.Nodes {
				if n != w.Leader && n != w.Holders[f.Role] {
					cand = append(cand, n)
				}
			}
		}
		cand = slices.DeleteFunc(slices.Clone(cand), func(n string) bool { return !free(n) })
		if len(cand) == 0 {
			// The wanted node is busy or unknown: any free node.
			cand = slices.DeleteFunc(slices.Clone(w.Nodes), func(n string) bool { return !free(n) })
		}
		if len(cand) == 0 {
			return "", fmt.Errorf("%s: every candidate node is busy with another fault", f)
		}
		return cand[r.IntN(len(cand))], nil
	}
	var res Resolved
	switch f.Kind {
	case Crash, KillAgent, PauseAgent, Restart, WipeData, LeaderCrashMove, KillRedis, PauseRedis:
		n, err := one(f.Pick)
		if err != nil {
			return res, err
		}
		res.Targets = []string{n}
		if f.Kind == LeaderCrashMove {
			var to []string
			for _, m := range w.Nodes {
				if m != w.Holders[f.Role] && m != n && free(m) {
					to = append(to, m)
				}
			}
			if len(to) == 0 {
				return res, fmt.Errorf("%s: no node to move %s to", f, f.Role)
			}
			res.MoveTo = to[r.IntN(len(to))]
		}
	case RollingRestart:
		for _, n := range w.Nodes {
			if !free(n) {
				return res, fmt.Errorf("%s: node %s is busy with another fault", f, n)
			}
		}
		// The leader last, as an operator would.
		order := slices.Clone(w.Nodes)
		sort.SliceStable(order, func(i, j int) bool { return order[j] == w.Leader && order[i] != w.Leader })
		res.Targets = order
	case OneWay:
		n, err := oneNetwork(f, w, r)
		if err != nil {
			return res, err
		}
		res.Targets = []string{n}
	case Loss, CPU:
		res.Targets = sample(r, w.Nodes, f.Count)
	case Partition:
		return partition(f, w, r)
	default:
		return res, fmt.Errorf("%s: unknown kind", f)
	}
	return res, nil
}

// oneNetwork picks the node of a network fault (busy nodes allowed: a
// network fault composes with process faults).
func oneNetwork(f Fault, w World, r *rand.Rand) (string, error) {
	switch f.Pick {
	case PickHolder:
		if h := w.Holders[f.Role]; h != "" && !strings.Contains(h, "+") {
			return h, nil
		}
	case PickLeader:
		if w.Leader != "" {
			return w.Leader, nil
		}
	}
	if len(w.Nodes) == 0 {
		return "", fmt.Errorf("%s: no nodes", f)
	}
	return w.Nodes[r.IntN(len(w.Nodes))], nil
}

func partition(f Fault, w World, r *rand.Rand) (Resolved, error) {
	var res Resolved
	nodes := slices.Clone(w.Nodes)
	minority := func(k int) (small, big []string) {
		small = sample(r, nodes, k)
		for _, n := range nodes {
			if !slices.Contains(small, n) {
				big = append(big, n)
			}
		}
		return small, big
	}
	var small, big []string
	switch f.Shape {
	case ShapeHolder, ShapeLeader:
		pick := PickHolder
		if f.Shape == ShapeLeader {
			pick = PickLeader
		}
		n, err := oneNetwork(Fault{ID: f.ID, Kind: f.Kind, Pick: pick, Role: f.Role}, w, r)
		if err != nil {
			return res, err
		}
		small = []string{n}
		for _, m := range nodes {
			if m != n {
				big = append(big, m)
			}
		}
		// The client reaches everyone: it is on neither side.
		res.Sides = [2][]string{small, big}
		res.Targets = small
		return res, nil
	case ShapeMinority, ShapeClientMinority:
		small, big = minority(1 + r.IntN((len(nodes)-1)/2))
		if f.Shape == ShapeClientMinority {
			small = append(small, w.Client)
		} else {
			big = append(big, w.Client)
		}
	case ShapeBridge:
		res.Bridge = nodes[r.IntN(len(nodes))]
		rest := slices.DeleteFunc(nodes, func(n string) bool { return n == res.Bridge })
		// Split the others in two halves around the bridge.
		k := len(rest) / 2
		a := sample(r, rest, k)
		for _, n := range rest {
			if !slices.Contains(a, n) {
				big = append(big, n)
			}
		}
		small = a
		big = append(big, w.Client)
	default:
		return res, fmt.Errorf("%s: unknown partition shape %q", f, f.Shape)
	}
	res.Sides = [2][]string{small, big}
	res.Targets = slices.DeleteFunc(slices.Clone(small), func(n string) bool { return n == w.Client })
	return res, nil
}

// sample returns k distinct elements of s, in s's order.
func sample(r *rand.Rand, s []string, k int) []string {
	if k >= len(s) {
		return slices.Clone(s)
	}
	idx := r.Perm(len(s))[:k]
	slices.Sort(idx)
	out := make([]string, k)
	for i, j := range idx {
		out[i] = s[j]
	}
	return out
}
