package coordinator

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// regWith registers a node that runs the named checks and has actuators
// for the named services (nil: none declared).
func regWith(id string, checks, services []string) *fsm.RegisterNode {
	r := reg(id)
	r.Checks, r.Services = checks, services
	return r
}

func check(node, name string, passing bool) *fsm.CheckUpdate {
	c := &fsm.CheckUpdate{Node: node, Check: name, Passing: passing, Time: t0}
	if !passing {
		c.Error = "probe failed"
	}
	return c
}

func withRequires(r spec.Role, checks ...string) spec.Role { r.Requires = checks; return r }
func withFollow(r spec.Role, f string) spec.Role           { r.Follow = f; return r }
func withAvoid(r spec.Role, o ...string) spec.Role         { r.Avoid = o; return r }
func withHoldDown(r spec.Role, d string) spec.Role         { r.HoldDown = spec.Dur(d); return r }
func withPreempt(r spec.Role) spec.Role                    { r.Preempt = true; return r }

// service is a service role run by actuators (not a marker).
func service(name string, cands ...string) spec.Role {
	r := role(name, cands...)
	r.Marker = false
	return r
}

// release releases role r held by node at epoch, at time at.
func releaseAt(r, node string, epoch uint64, at int64) *fsm.Release {
	return &fsm.Release{Role: r, Node: node, Epoch: epoch, Reason: "test", Time: at}
}

func TestPlanPolicy(t *testing.T) {
	pull := []string{"pull"}
	checked := []fsm.Command{regWith("n1", pull, nil), regWith("n2", pull, nil), regWith("n3", pull, nil)}
	with := func(base []fsm.Command, more ...fsm.Command) []fsm.Command {
		return append(append([]fsm.Command(nil), base...), more...)
	}
	all := []string{"n1", "n2", "n3"}
	tests := []planCase{
		// requires
		{
			name: "no node has a verdict yet: nothing is placed",
			cmds: with(checked, applySpec(withRequires(role("reg", "n1:10", "n2", "n3"), "pull"))),
			live: all,
		},
		{
			name: "the best node fails its required check: the next passing one is chosen",
			cmds: with(checked, applySpec(withRequires(role("reg", "n1:10", "n2:5", "n3"), "pull")),
				check("n1", "pull", false), check("n2", "pull", true), check("n3", "pull", true)),
			live: all,
			want: []string{"assign reg n2 gen=21 prev= epoch=1"},
		},
		{
			name: "a node that does not run the required check never qualifies",
			cmds: with([]fsm.Command{reg("n1"), regWith("n2", pull, nil)},
				applySpec(withRequires(role("reg", "n1:10", "n2"), "pull")), check("n2", "pull", true)),
			live: []string{"n1", "n2"},
			want: []string{"assign reg n2 gen=21 prev= epoch=1"},
		},
		{
			name: "a holder whose required check fails is asked to release",
			cmds: with(checked, applySpec(withRequires(role("reg", "n1:10", "n2"), "pull")),
				check("n1", "pull", true), check("n2", "pull", true), assign("reg", "n1", "", 1), check("n1", "pull", false)),
			live: all,
			want: []string{"request-release reg epoch=1"},
		},
		{
			name: "a holder whose unrequired check fails keeps the role",
			cmds: with(checked, applySpec(role("reg", "n1:10", "n2")),
				assign("reg", "n1", "", 1), check("n1", "pull", false)),
			live: all,
		},
		// service actuators
		{
			name: "a service goes only to a node with its actuator",
			cmds: []fsm.Command{regWith("n1", nil, []string{"clair"}), regWith("n2", nil, []string{"notary", "clair"}),
				applySpec(service("notary", "n1:10", "n2"))},
			live: []string{"n1", "n2"},
			want: []string{"assign notary n2 gen=21 prev= epoch=1"},
		},
		// follow
		{
			name: "a follower goes to the followed role's holder, whatever its priority",
			cmds: with(checked, applySpec(role("redis", "n1", "n2", "n3"), withFollow(role("redis-ip", "n1:10", "n2", "n3"), "redis")),
				assign("redis", "n3", "", 1)),
			live: all,
			want: []string{"assign redis-ip n3 gen=31 prev= epoch=1"},
		},
		{
			name: "a follower of an unassigned role waits",
			cmds: with(checked, applySpec(role("redis", "n1"), withFollow(role("redis-ip"), "redis"))),
			live: []string{"n2", "n3"},
		},
		{
			name: "a follower is released as soon as the followed role is",
			cmds: with(checked, applySpec(role("redis"), withFollow(role("redis-ip"), "redis")),
				assign("redis", "n1", "", 1), assign("redis-ip", "n1", "", 1),
				&fsm.RequestRelease{Role: "redis", Epoch: 1, Target: "n2", Reason: "move", Actor: "op", Time: t0}),
			live: all,
			want: []string{"request-release redis-ip epoch=1"},
		},
		{
			name: "a follower left behind by a move is asked to release",
			cmds: with(checked, applySpec(role("redis"), withFollow(role("redis-ip"), "redis")),
				assign("redis", "n2", "", 1), assign("redis-ip", "n1", "", 1)),
			live: all,
			want: []string{"request-release redis-ip epoch=1"},
		},
		// avoid
		{
			name: "avoid ranks above priority",
			cmds: with(checked, applySpec(role("notary", "n1:10", "n2"), withAvoid(role("clair", "n1:10", "n2:5"), "notary")),
				assign("notary", "n1", "", 1)),
			live: all,
			want: []string{"assign clair n2 gen=21 prev= epoch=1"},
		},
		{
			name: "avoid yields when every eligible node holds the avoided role",
			cmds: with(checked, applySpec(role("notary", "n1"), withAvoid(role("clair", "n1"), "notary")),
				assign("notary", "n1", "", 1)),
			live: all,
			want: []string{"assign clair n1 gen=11 prev= epoch=1"},
		},
		{
			name: "avoid never moves a holder by itself",
			cmds: with(checked, applySpec(role("notary"), withAvoid(role("clair"), "notary")),
				assign("notary", "n1", "", 1), assign("clair", "n1", "", 1)),
			live: all,
		},
		// hold-down
		{
			name: "the node that just lost the role is passed over during the hold-down",
			cmds: with(checked, applySpec(withHoldDown(role("web", "n1:10", "n2:5", "n3"), "1m")),
				assign("web", "n1", "", 1), releaseAt("web", "n1", 1, planNow-1000)),
			live: all,
			want: []string{"assign web n2 gen=21 prev= epoch=2"},
		},
		{
			name: "a held-down node is still chosen when no other node qualifies",
			cmds: with(checked, applySpec(withHoldDown(role("web", "n1:10", "n2:5"), "1m")),
				assign("web", "n1", "", 1), releaseAt("web", "n1", 1, planNow-1000)),
			live: []string{"n1", "n3"},
			want: []string{"assign web n1 gen=11 prev= epoch=2"},
		},
		{
			name: "after the hold-down the node ranks normally again",
			cmds: with(checked, applySpec(withHoldDown(role("web", "n1:10", "n2:5", "n3"), "1m")),
				assign("web", "n1", "", 1), releaseAt("web", "n1", 1, planNow-60_000)),
			live: all,
			want: []string{"assign web n1 gen=11 prev= epoch=2"},
		},
		{
			name: "no preempt back to a held-down node",
			cmds: with(checked, applySpec(withHoldDown(withPreempt(role("web", "n1:10", "n2:5")), "1m")),
				assign("web", "n1", "", 1), releaseAt("web", "n1", 1, planNow-1000), assign("web", "n2", "", 2)),
			live: all,
		},
		{
			name: "preempt back once the hold-down is over",
			cmds: with(checked, applySpec(withHoldDown(withPreempt(role("web", "n1:10", "n2:5")), "1m")),
				assign("web", "n1", "", 1), releaseAt("web", "n1", 1, planNow-61_000), assign("web", "n2", "", 2)),
			live: all,
			want: []string{"request-release web epoch=2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := mustApply(t, fsm.NewState(), tc.cmds...)
			got := describeAll(Plan(tc.input(st)))
			if len(got) != len(tc.want) || (len(got) > 0 && !reflect.DeepEqual(got, tc.want)) {
				t.Fatalf("Plan: got %q, want %q", got, tc.want)
			}
			// Whatever Plan proposes applies cleanly (the fsm's own guards
			// agree with the policy).
			next := mustApply(t, st, Plan(tc.input(st))...)
			_ = next
		})
	}
}

func TestPlanServiceStopGrace(t *testing.T) {
	quick := service("quick", "n1:10", "n2")
	quick.StopTimeout = spec.Dur("2s")
	svcs := []string{"web", "quick", "marker"}
	st := mustApply(t, fsm.NewState(), regWith("n1", nil, svcs), regWith("n2", nil, svcs), reg("n3"),
		applySpec(service("web", "n1:10", "n2"), quick, role("marker", "n3", "n2")),
		assign("web", "n1", "", 1), assign("quick", "n1", "", 1), assign("marker", "n3", "", 1))
	endedAgo := func(ago time.Duration) func(string, uint64, time.Duration) bool {
		return func(node string, gen uint64, grace time.Duration) bool {
			return (node == "n1" || node == "n3") && gen <= gen1(node) && ago >= grace
		}
	}
	for _, tc := range []struct {
		ago  time.Duration
		want []string
	}{
		// A marker role runs nothing: it moves at once.
		{0, []string{"assign marker n2 gen=21 prev=n3 epoch=2"}},
		{time.Second, []string{"assign marker n2 gen=21 prev=n3 epoch=2"}},
		{2 * time.Second, []string{"assign marker n2 gen=21 prev=n3 epoch=2", "assign quick n2 gen=21 prev=n1 epoch=2"}},
		{spec.DefaultStopTimeout, []string{"assign marker n2 gen=21 prev=n3 epoch=2", "assign quick n2 gen=21 prev=n1 epoch=2", "assign web n2 gen=21 prev=n1 epoch=2"}},
	} {
		got := describeAll(Plan(Input{State: st, Live: liveOn("n2"), Ended: endedAgo(tc.ago), Now: planNow, Actor: planActor}))
		if len(got) != len(tc.want) || (len(got) > 0 && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("lease ended %v ago: Plan got %q, want %q", tc.ago, got, tc.want)
		}
	}
	// A VIP role does not wait: its fence is the kernel's, within the lease.
	v := spec.Role{Name: "ip", Type: spec.TypeVIP, Address: spec.MustParsePrefix("198.18.0.200/24")}
	if g := v.StopGrace(); g != 0 {
		t.Fatalf("vip StopGrace = %v, want 0", g)
	}
}

func TestExplain(t *testing.T) {
	st := mustApply(t, fsm.NewState(),
		regWith("n1", []string{"pull"}, nil), regWith("n2", []string{"pull"}, nil), regWith("n3", nil, nil), regWitness("w1"),
		applySpec(withRequires(role("reg", "n1:10", "n2:5", "n3", "w1"), "pull"), role("notary")),
		check("n1", "pull", false), check("n2", "pull", true), assign("notary", "n2", "", 1))
	in := Input{State: st, Live: liveOn("n1", "n2", "n3"), Now: planNow, Actor: planActor}
	in.Live["w1"] = 91
	ex, err := Explain(in, "reg")
	if err != nil {
		t.Fatalf("Explain: %v", err)
	}
	if ex.Chosen != "n2" || !strings.HasPrefix(ex.Decision, "assign to n2") {
		t.Fatalf("Explain: chosen %q decision %q, want n2 and an assignment", ex.Chosen, ex.Decision)
	}
	byNode := map[string]Candidacy{}
	for _, c := range ex.Nodes {
		byNode[c.Node] = c
	}
	want := map[string]struct {
		eligible bool
		rank     int
		reason   string
	}{
		"n1": {false, 0, "required check pull is failing: probe failed"},
		"n2": {true, 1, ""},
		"n3": {false, 0, "required check pull is not run on this node"},
		"w1": {false, 0, "witness: holds no roles"},
	}
	if len(byNode) != len(want) {
		t.Fatalf("Explain nodes: got %+v, want %d nodes", ex.Nodes, len(want))
	}
	for id, w := range want {
		c := byNode[id]
		if c.Eligible != w.eligible || c.Rank != w.rank {
			t.Errorf("%s: eligible %v rank %d, want %v %d (%+v)", id, c.Eligible, c.Rank, w.eligible, w.rank, c)
		}
		if w.reason != "" && !contains(c.Reasons, w.reason) {
			t.Errorf("%s: reasons %q, want %q among them", id, c.Reasons, w.reason)
		}
		if w.eligible && len(c.Reasons) != 0 {
			t.Errorf("%s: eligible with reasons %q", id, c.Reasons)
		}
	}
	if byNode["n2"].Priority != 5 || byNode["n2"].RolesHeld != 1 || !byNode["n1"].Candidate {
		t.Errorf("Explain details: %+v", ex.Nodes)
	}

	// A held, live role stays; a non-live node says so.
	in.Live = liveOn("n2", "n3")
	ex, err = Explain(in, "notary")
	if err != nil || ex.Decision != "stays on n2" || ex.Assignment.Holder != "n2" {
		t.Fatalf("Explain(notary): %+v, %v; want it to stay on n2", ex, err)
	}
	if c := findCandidacy(ex.Nodes, "n1"); c.Eligible || !contains(c.Reasons, "lease not live") {
		t.Errorf("n1 not live: %+v", c)
	}
	if !findCandidacy(ex.Nodes, "n2").Holder {
		t.Errorf("n2 not marked holder: %+v", ex.Nodes)
	}

	if _, err := Explain(in, "nope"); err == nil {
		t.Fatal("Explain(unknown role): nil error")
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func findCandidacy(cs []Candidacy, node string) Candidacy {
	for _, c := range cs {
		if c.Node == node {
			return c
		}
	}
	return Candidacy{}
}

func TestPlanMoveTargetHonouredAfterTheLeaseEnds(t *testing.T) {
	// The holder was asked to move the role to n3 but never released (its
	// stop failed); once its lease has ended the role still goes to n3, not
	// to the best-ranked n2.
	st := mustApply(t, fsm.NewState(), reg("n1"), reg("n2"), reg("n3"),
		applySpec(role("web", "n1:10", "n2:5", "n3")), assign("web", "n1", "", 1),
		&fsm.RequestRelease{Role: "web", Epoch: 1, Target: "n3", Reason: "move", Actor: "op", Time: t0})
	got := describeAll(Plan(Input{State: st, Live: liveOn("n2", "n3"), Ended: endedUpTo("n1"), Now: planNow, Actor: planActor}))
	if want := []string{"assign web n3 gen=31 prev=n1 epoch=2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Plan: got %q, want %q", got, want)
	}
}

func regRedis(id string) *fsm.RegisterNode {
	r := reg(id)
	r.Redis = id + ":6379"
	return r
}

func redisAt(node, role string, offset int64) *fsm.RedisReport {
	r := &fsm.RedisReport{Node: node, Role: role, Offset: offset, Time: t0}
	if role == fsm.RedisReplica {
		r.Master = "n1:6379"
	}
	return r
}

func TestPlanRedisMaster(t *testing.T) {
	redis := spec.Role{Name: "redis", Type: spec.TypeRedisMaster, Candidates: []spec.Candidate{{Node: "n1", Priority: 1}, {Node: "n2", Priority: 10}, {Node: "n3", Priority: 5}, {Node: "n4"}}}
	base := []fsm.Command{regRedis("n1"), regRedis("n2"), regRedis("n3"), reg("n4"), applySpec(redis)}
	with := func(more ...fsm.Command) []fsm.Command { return append(append([]fsm.Command(nil), base...), more...) }
	tests := []planCase{
		{
			name: "no report yet: nothing is promoted",
			cmds: with(),
			live: []string{"n1", "n2", "n3", "n4"},
		},
		{
			name: "the highest offset wins over priority",
			cmds: with(redisAt("n1", fsm.RedisMaster, 500), redisAt("n2", fsm.RedisReplica, 400), redisAt("n3", fsm.RedisReplica, 499)),
			live: []string{"n1", "n2", "n3", "n4"},
			want: []string{"assign redis n1 gen=11 prev= epoch=1"},
		},
		{
			name: "the master's lease ended: the most caught-up replica, not the priority one",
			cmds: with(redisAt("n1", fsm.RedisMaster, 500), redisAt("n2", fsm.RedisReplica, 400), redisAt("n3", fsm.RedisReplica, 499),
				assign("redis", "n1", "", 1)),
			live:  []string{"n2", "n3", "n4"},
			ended: []string{"n1"},
			want:  []string{"assign redis n3 gen=31 prev=n1 epoch=2"},
		},
		{
			name: "equal offsets: priority decides",
			cmds: with(redisAt("n1", fsm.RedisMaster, 500), redisAt("n2", fsm.RedisReplica, 500), redisAt("n3", fsm.RedisReplica, 500),
				assign("redis", "n1", "", 1)),
			live:  []string{"n2", "n3"},
			ended: []string{"n1"},
			want:  []string{"assign redis n2 gen=21 prev=n1 epoch=2"},
		},
		{
			name: "a replica whose offset cannot be read is never promoted",
			cmds: with(redisAt("n1", fsm.RedisMaster, 500), &fsm.RedisReport{Node: "n2", Offset: -1, Error: "connection refused", Time: t0},
				redisAt("n3", fsm.RedisReplica, -1), assign("redis", "n1", "", 1)),
			live:  []string{"n2", "n3", "n4"},
			ended: []string{"n1"},
		},
		{
			name: "offsets compare within the lost master's history: a stale ex-master's higher offset does not win",
			cmds: with(
				&fsm.RedisReport{Node: "n1", Role: fsm.RedisMaster, Offset: 995, ReplID: "h2", Time: t0},
				&fsm.RedisReport{Node: "n2", Role: fsm.RedisReplica, Master: "n1:6379", Offset: 1000, ReplID: "h1", Time: t0},
				&fsm.RedisReport{Node: "n3", Role: fsm.RedisReplica, Master: "n1:6379", Offset: 990, ReplID: "h2", Time: t0},
				assign("redis", "n1", "", 1)),
			live:  []string{"n2", "n3"},
			ended: []string{"n1"},
			want:  []string{"assign redis n3 gen=31 prev=n1 epoch=2"},
		},
		{
			name: "data ranks above hold-down",
			cmds: append(with(redisAt("n1", fsm.RedisMaster, 500), redisAt("n2", fsm.RedisReplica, 499), redisAt("n3", fsm.RedisReplica, 400)),
				applySpec(spec.Role{Name: "redis", Type: spec.TypeRedisMaster, HoldDown: spec.Dur("1h")}),
				assign("redis", "n2", "", 1), releaseAt("redis", "n2", 1, planNow-1000)),
			live: []string{"n2", "n3"},
			want: []string{"assign redis n2 gen=21 prev= epoch=2"},
		},
		{
			name: "a live master stays even when a replica reports more",
			cmds: with(redisAt("n1", fsm.RedisMaster, 500), redisAt("n2", fsm.RedisReplica, 900), assign("redis", "n1", "", 1)),
			live: []string{"n1", "n2", "n3"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := mustApply(t, fsm.NewState(), tc.cmds...)
			got := describeAll(Plan(tc.input(st)))
			if len(got) != len(tc.want) || (len(got) > 0 && !reflect.DeepEqual(got, tc.want)) {
				t.Fatalf("Plan: got %q, want %q", got, tc.want)
			}
			mustApply(t, st, Plan(tc.input(st))...)
		})
	}
}
