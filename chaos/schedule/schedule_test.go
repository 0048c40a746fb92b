package schedule

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"
)

func params(nodes int) Params {
	return Params{Nodes: nodes, Duration: 30 * time.Second, Roles: []string{"registry-vip", "notary", "clair"}}
}

func TestDrawIsDeterministic(t *testing.T) {
	for seed := int64(1); seed <= 50; seed++ {
		a, err := Draw(seed, params(5))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Draw(seed, params(5))
		if !slices.Equal(a, b) {
			t.Fatalf("seed %d: two draws differ:\n%v\n%v", seed, a, b)
		}
	}
	a, _ := Draw(1, params(5))
	b, _ := Draw(2, params(5))
	if slices.Equal(a, b) {
		t.Fatalf("seeds 1 and 2 drew the same schedule: %v", a)
	}
}

// TestDrawKeepsItsBounds checks, over many seeds, that every schedule stays
// in its span, never has more faults active than the bound, never two
// partitions at once, never a solitary fault beside another, and that
// faults do overlap and every kind is drawn.
func TestDrawKeepsItsBounds(t *testing.T) {
	seen := map[Kind]int{}
	overlapping := 0
	for _, nodes := range []int{3, 5, 7} {
		for seed := int64(0); seed < 300; seed++ {
			p := params(nodes)
			if seed%2 == 1 {
				p = redisParams(nodes)
			}
			s, err := Draw(seed, p)
			if err != nil {
				t.Fatal(err)
			}
			if len(s) == 0 {
				t.Fatalf("seed %d: empty schedule", seed)
			}
			for i, f := range s {
				seen[f.Kind]++
				if f.ID != i {
					t.Errorf("seed %d: fault %d has ID %d", seed, i, f.ID)
				}
				if f.At < 0 || f.End() > p.Duration || f.For <= 0 {
					t.Errorf("seed %d: %v outside [0, %s]", seed, f, p.Duration)
				}
				if i > 0 && f.At < s[i-1].At {
					t.Errorf("seed %d: not sorted at %d", seed, i)
				}
			}
			// The peak of active faults, checked at every start.
			for _, f := range s {
				active := 0
				var kinds []Kind
				for _, g := range s {
					if g.At <= f.At && f.At < g.End() {
						active++
						kinds = append(kinds, g.Kind)
					}
				}
				if active > maxActive(nodes) {
					t.Errorf("seed %d nodes %d: %d faults active at %s: %v", seed, nodes, active, f.At, kinds)
				}
				if active > 1 {
					overlapping++
					if f.Solitary() {
						t.Errorf("seed %d: solitary %v overlaps %v", seed, f, kinds)
					}
				}
				n := 0
				for _, k := range kinds {
					if k == Partition {
						n++
					}
				}
				if n > 1 {
					t.Errorf("seed %d: two partitions at %s", seed, f.At)
				}
			}
		}
	}
	for _, k := range AllKinds() {
		if seen[k] == 0 {
			t.Errorf("kind %s never drawn in 900 schedules", k)
		}
	}
	if overlapping == 0 {
		t.Errorf("no two faults ever overlapped")
	}
}

func TestDrawRestrictsKinds(t *testing.T) {
	p := params(3)
	p.Kinds = []Kind{Partition, CPU}
	for seed := int64(0); seed < 50; seed++ {
		s, err := Draw(seed, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range s {
			if f.Kind != Partition && f.Kind != CPU {
				t.Fatalf("seed %d: drew %v outside %v", seed, f, p.Kinds)
			}
		}
	}
	if _, err := ParseKinds("crash,bogus"); err == nil {
		t.Fatalf("ParseKinds accepted an unknown kind")
	}
	if _, err := Draw(1, Params{Nodes: 4, Duration: time.Minute, Roles: []string{"r"}}); err == nil {
		t.Fatalf("Draw accepted 4 nodes")
	}
}

func world() World {
	return World{
		Nodes:   []string{"n1", "n2", "n3", "n4", "n5"},
		Leader:  "n2",
		Holders: map[string]string{"registry-vip": "n4", "notary": "n1"},
		Busy:    map[string]bool{},
		Client:  "c1",
	}
}

func TestResolvePicks(t *testing.T) {
	w := world()
	cases := []struct {
		f    Fault
		want []string
	}{
		{Fault{Kind: Crash, Pick: PickHolder, Role: "registry-vip"}, []string{"n4"}},
		{Fault{Kind: KillAgent, Pick: PickLeader, Role: "registry-vip"}, []string{"n2"}},
		{Fault{Kind: Restart, Pick: PickHolder, Role: "notary"}, []string{"n1"}},
		{Fault{Kind: Partition, Shape: ShapeHolder, Role: "registry-vip"}, []string{"n4"}},
		{Fault{Kind: Partition, Shape: ShapeLeader, Role: "registry-vip"}, []string{"n2"}},
	}
	for _, c := range cases {
		r, err := Resolve(c.f, w)
		if err != nil {
			t.Fatalf("%v: %v", c.f, err)
		}
		if !slices.Equal(r.Targets, c.want) {
			t.Errorf("%v: targets %v, want %v", c.f, r.Targets, c.want)
		}
	}
	// A follower is neither the leader nor the holder.
	for d := uint64(0); d < 20; d++ {
		r, err := Resolve(Fault{Kind: PauseAgent, Pick: PickFollower, Role: "registry-vip", Draw: d}, w)
		if err != nil {
			t.Fatal(err)
		}
		if n := r.Targets[0]; n == "n2" || n == "n4" {
			t.Fatalf("follower pick chose %s (leader n2, holder n4)", n)
		}
	}
	// A busy holder is not picked again; with every node busy, an error.
	w.Busy["n4"] = true
	r, err := Resolve(Fault{Kind: Crash, Pick: PickHolder, Role: "registry-vip"}, w)
	if err != nil || r.Targets[0] == "n4" {
		t.Fatalf("busy holder: got %v, %v", r.Targets, err)
	}
	for _, n := range w.Nodes {
		w.Busy[n] = true
	}
	if _, err := Resolve(Fault{Kind: Crash, Pick: PickAny}, w); err == nil {
		t.Fatalf("every node busy: no error")
	}
	// Network faults still apply to busy nodes.
	if _, err := Resolve(Fault{Kind: Partition, Shape: ShapeHolder, Role: "registry-vip"}, w); err != nil {
		t.Fatalf("partition with busy nodes: %v", err)
	}
}

func TestResolvePartitions(t *testing.T) {
	w := world()
	for d := uint64(0); d < 50; d++ {
		for _, shape := range []string{ShapeMinority, ShapeClientMinority, ShapeBridge} {
			r, err := Resolve(Fault{Kind: Partition, Shape: shape, Draw: d}, w)
			if err != nil {
				t.Fatal(err)
			}
			a, b := r.Sides[0], r.Sides[1]
			all := append(slices.Clone(a), b...)
			if r.Bridge != "" {
				all = append(all, r.Bridge)
			}
			slices.Sort(all)
			want := []string{"c1", "n1", "n2", "n3", "n4", "n5"}
			if !slices.Equal(all, want) {
				t.Fatalf("%s draw %d: sides %v %v bridge %q cover %v, want %v", shape, d, a, b, r.Bridge, all, want)
			}
			nodesIn := func(s []string) int {
				return len(slices.DeleteFunc(slices.Clone(s), func(n string) bool { return n == "c1" }))
			}
			switch shape {
			case ShapeMinority, ShapeClientMinority:
				if nodesIn(a) >= nodesIn(b) || nodesIn(a) == 0 {
					t.Fatalf("%s: minority %v, majority %v", shape, a, b)
				}
				if (shape == ShapeClientMinority) != slices.Contains(a, "c1") {
					t.Fatalf("%s: client on the wrong side: %v | %v", shape, a, b)
				}
			case ShapeBridge:
				if r.Bridge == "" || slices.Contains(a, r.Bridge) || slices.Contains(b, r.Bridge) {
					t.Fatalf("bridge %q in a side: %v | %v", r.Bridge, a, b)
				}
			}
		}
	}
}

func TestRollingRestartRestartsTheLeaderLast(t *testing.T) {
	r, err := Resolve(Fault{Kind: RollingRestart}, world())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Targets) != 5 || r.Targets[4] != "n2" {
		t.Fatalf("rolling restart order %v, want every node with the leader n2 last", r.Targets)
	}
}

func redisParams(nodes int) Params {
	p := params(nodes)
	p.Roles = append(p.Roles, "redis")
	p.RedisRole = "redis"
	return p
}

// TestRedisKindsOnlyWithRedis checks that kill-redis and pause-redis are
// drawn only with a Redis role, then target that role, and that asking for
// them without one is an error naming the flag.
func TestRedisKindsOnlyWithRedis(t *testing.T) {
	with := map[Kind]int{}
	for seed := int64(0); seed < 200; seed++ {
		s, err := Draw(seed, params(3))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range s {
			if redisKind(f.Kind) {
				t.Fatalf("seed %d: drew %v without a Redis role", seed, f)
			}
		}
		s, err = Draw(seed, redisParams(3))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range s {
			with[f.Kind]++
			if redisKind(f.Kind) && (f.Role != "redis" || f.Pick == "") {
				t.Fatalf("seed %d: %v does not pick by the Redis role", seed, f)
			}
		}
	}
	if with[KillRedis] == 0 || with[PauseRedis] == 0 {
		t.Fatalf("with a Redis role, kill-redis drawn %d times, pause-redis %d", with[KillRedis], with[PauseRedis])
	}
	p := params(3)
	p.Kinds = []Kind{KillRedis}
	if _, err := Draw(1, p); err == nil {
		t.Fatalf("kill-redis without a Redis role: no error")
	}
	p = redisParams(3)
	p.RedisRole = "bogus"
	if _, err := Draw(1, p); err == nil {
		t.Fatalf("a Redis role outside the roles: no error")
	}
	p = redisParams(3)
	p.Kinds = []Kind{KillRedis, PauseRedis}
	s, err := Draw(7, p)
	if err != nil || len(s) == 0 {
		t.Fatalf("only Redis kinds: %v, %v", s, err)
	}
	a, _ := Draw(7, p)
	if !slices.Equal(a, s) {
		t.Fatalf("two draws with Redis differ:\n%v\n%v", a, s)
	}
	w := world()
	w.Holders["redis"] = "n3"
	r, err := Resolve(Fault{Kind: KillRedis, Pick: PickHolder, Role: "redis"}, w)
	if err != nil || !slices.Equal(r.Targets, []string{"n3"}) {
		t.Fatalf("kill-redis of the Redis master: %v, %v; want n3", r.Targets, err)
	}
}

// TestDrawWithoutRedisIsUnchanged pins the schedules drawn without a Redis
// role (seeds 0..99 on 3, 5 and 7 nodes) to those drawn before the Redis
// kinds existed: a seed of an older run still replays the same faults.
func TestDrawWithoutRedisIsUnchanged(t *testing.T) {
	h := sha256.New()
	for _, n := range []int{3, 5, 7} {
		for seed := int64(0); seed < 100; seed++ {
			s, err := Draw(seed, params(n))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(h, "%v\n", s)
		}
	}
	const want = "e693c4b462e89cce0a87c88a4e40a9fb26e15dbb538f12b02a1243a7ea432b57"
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != want {
		t.Fatalf("the schedules without Redis changed: fingerprint %s, want %s", got, want)
	}
}
