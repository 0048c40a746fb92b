package coordinator

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
)

// The stamps Plan puts on the commands of these tests.
const (
	planNow   int64 = t0 + 5000
	planActor       = "n9"
)

func TestPlan(t *testing.T) {
	three := []fsm.Command{reg("n1"), reg("n2"), reg("n3")}
	with := func(base []fsm.Command, more ...fsm.Command) []fsm.Command {
		return append(append([]fsm.Command(nil), base...), more...)
	}
	tests := []struct {
		name     string
		cmds     []fsm.Command // applied to fsm.NewState()
		drained  []string      // then set by hand
		live     []string
		settling bool
		want     []string // describe() of Plan's output
	}{
		// Placement of unassigned roles.
		{
			name: "unassigned role goes to the highest priority live candidate",
			cmds: with(three, applySpec(role("web", "n1:5", "n2:1", "n3:10"))),
			live: []string{"n1", "n2", "n3"},
			want: []string{"assign web n3 prev= epoch=1"},
		},
		{
			name: "the best candidate is not live: the next one",
			cmds: with(three, applySpec(role("web", "n1:5", "n2:1", "n3:10"))),
			live: []string{"n1", "n2"},
			want: []string{"assign web n1 prev= epoch=1"},
		},
		{
			name: "negative priorities rank below the default",
			cmds: with(three, applySpec(role("web", "n1:-1", "n2", "n3:-5"))),
			live: []string{"n1", "n2", "n3"},
			want: []string{"assign web n2 prev= epoch=1"},
		},
		{
			name: "equal priority: lowest id",
			cmds: with(three, applySpec(role("web", "n3:5", "n2:5", "n1:1"))),
			live: []string{"n1", "n2", "n3"},
			want: []string{"assign web n2 prev= epoch=1"},
		},
		{
			name: "two roles spread across two nodes in one plan",
			cmds: with(three[:2], applySpec(role("a"), role("b"))),
			live: []string{"n1", "n2"},
			want: []string{"assign a n1 prev= epoch=1", "assign b n2 prev= epoch=1"},
		},
		{
			name: "fewest roles held wins before lowest id",
			cmds: with(three[:2], applySpec(role("a"), role("b"), role("c")), assign("c", "n1", "", 1)),
			live: []string{"n1", "n2"},
			want: []string{"assign a n2 prev= epoch=1", "assign b n1 prev= epoch=1"},
		},
		{
			name: "priority wins over load",
			cmds: with(three[:2], applySpec(role("a", "n1:10", "n2"), role("b")), assign("b", "n1", "", 1)),
			live: []string{"n1", "n2"},
			want: []string{"assign a n1 prev= epoch=1"},
		},
		{
			name: "roles held outside the spec count as load",
			cmds: with(three[:2], applySpec(role("a"), role("old")), assign("old", "n1", "", 1), applySpec(role("a"))),
			live: []string{"n1", "n2"},
			want: []string{"assign a n2 prev= epoch=1", "request-release old epoch=1"},
		},
		{
			name: "a role comes back at the next epoch",
			cmds: with(three[:2], applySpec(role("a")), assign("a", "n1", "", 1),
				&fsm.Release{Role: "a", Node: "n1", Epoch: 1, Time: t0}, applySpec(), applySpec(role("a"))),
			live: []string{"n1", "n2"},
			want: []string{"assign a n1 prev= epoch=2"},
		},
		// Holders that stay.
		{
			name: "live eligible holder: no command",
			cmds: with(three, applySpec(role("web")), assign("web", "n2", "", 1)),
			live: []string{"n1", "n2", "n3"},
			want: nil,
		},
		{
			name: "live holder stays although a better candidate is live",
			cmds: with(three, applySpec(role("web", "n1:1", "n2:10")), assign("web", "n1", "", 1)),
			live: []string{"n1", "n2", "n3"},
			want: nil,
		},
		// Holders whose lease ran out.
		{
			name: "holder not live: moves to another live node at the next epoch",
			cmds: with(three, applySpec(role("web", "n1:10", "n2:5", "n3")), assign("web", "n1", "", 1)),
			live: []string{"n2", "n3"},
			want: []string{"assign web n2 prev=n1 epoch=2"},
		},
		{
			name: "holder not live at a later epoch",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1), assign("web", "n2", "n1", 2)),
			live: []string{"n1", "n3"},
			want: []string{"assign web n1 prev=n2 epoch=3"},
		},
		{
			name: "holder not live while asked to release: moves",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1),
				&fsm.RequestRelease{Role: "web", Epoch: 1, Actor: "op", Time: t0}),
			live: []string{"n2"},
			want: []string{"assign web n2 prev=n1 epoch=2"},
		},
		{
			name: "holder removed from the node table: moves",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1), &fsm.RemoveNode{Node: "n1", Actor: "op", Time: t0}),
			live: []string{"n2", "n3"},
			want: []string{"assign web n2 prev=n1 epoch=2"},
		},
		{
			name: "the expired holder's load does not count against others",
			cmds: with(three[:2], applySpec(role("a"), role("b")), assign("a", "n1", "", 1), assign("b", "n1", "", 1),
				reg("n3")),
			live: []string{"n2", "n3"},
			want: []string{"assign a n2 prev=n1 epoch=2", "assign b n3 prev=n1 epoch=2"},
		},
		// No candidate.
		{
			name: "no live candidate for an unassigned role: no command",
			cmds: with(three, applySpec(role("web", "n1", "n2"))),
			live: []string{"n3"},
			want: nil,
		},
		{
			name: "no live candidate for an expired holder: no command",
			cmds: with(three, applySpec(role("web", "n1", "n2")), assign("web", "n1", "", 1)),
			live: []string{"n3"},
			want: nil,
		},
		{
			name: "nothing live at all",
			cmds: with(three, applySpec(role("web"))),
			live: nil,
			want: nil,
		},
		// Ineligible nodes are never chosen: each row has one live
		// ineligible node n1 and, as a control, n2 which is not live.
		{
			name: "witness never chosen",
			cmds: []fsm.Command{regWitness("n1"), reg("n2"), applySpec(role("web"))},
			live: []string{"n1"},
			want: nil,
		},
		{
			name: "witness skipped for the next node",
			cmds: []fsm.Command{regWitness("n1"), reg("n2"), applySpec(role("web"))},
			live: []string{"n1", "n2"},
			want: []string{"assign web n2 prev= epoch=1"},
		},
		{
			name: "leaving node never chosen",
			cmds: []fsm.Command{reg("n1"), reg("n2"), applySpec(role("web")), leave("n1")},
			live: []string{"n1"},
			want: nil,
		},
		{
			name: "leaving node chosen again once it registers again",
			cmds: []fsm.Command{reg("n1"), reg("n2"), applySpec(role("web")), leave("n1"), reg("n1")},
			live: []string{"n1"},
			want: []string{"assign web n1 prev= epoch=1"},
		},
		{
			name:    "drained node never chosen",
			cmds:    []fsm.Command{reg("n1"), reg("n2"), applySpec(role("web"))},
			drained: []string{"n1"},
			live:    []string{"n1"},
			want:    nil,
		},
		{
			name: "non-candidate never chosen",
			cmds: []fsm.Command{reg("n1"), reg("n2"), applySpec(role("web", "n2"))},
			live: []string{"n1"},
			want: nil,
		},
		{
			name: "unregistered candidate never chosen",
			cmds: []fsm.Command{reg("n1"), applySpec(role("web", "n5"))},
			live: []string{"n1", "n5"},
			want: nil,
		},
		{
			name:    "every kind of ineligible node at once",
			cmds:    []fsm.Command{regWitness("n1"), reg("n2"), reg("n3"), reg("n4"), reg("n5"), applySpec(role("web", "n1:9", "n2:9", "n3:9", "n5")), leave("n2")},
			drained: []string{"n3"},
			live:    []string{"n1", "n2", "n3", "n4", "n5"},
			want:    []string{"assign web n5 prev= epoch=1"},
		},
		// Live holders that are no longer eligible.
		{
			name: "live holder no longer a candidate: request release",
			cmds: with(three, applySpec(role("web", "n1", "n2")), assign("web", "n1", "", 1), applySpec(role("web", "n2"))),
			live: []string{"n1", "n2", "n3"},
			want: []string{"request-release web epoch=1"},
		},
		{
			name: "release already requested: nothing further",
			cmds: with(three, applySpec(role("web", "n1", "n2")), assign("web", "n1", "", 1), applySpec(role("web", "n2")),
				&fsm.RequestRelease{Role: "web", Epoch: 1, Actor: planActor, Time: t0}),
			live: []string{"n1", "n2", "n3"},
			want: nil,
		},
		{
			name: "once the holder released, the role moves",
			cmds: with(three, applySpec(role("web", "n1", "n2")), assign("web", "n1", "", 1), applySpec(role("web", "n2")),
				&fsm.RequestRelease{Role: "web", Epoch: 1, Actor: planActor, Time: t0},
				&fsm.Release{Role: "web", Node: "n1", Epoch: 1, Time: t0}),
			live: []string{"n1", "n2", "n3"},
			want: []string{"assign web n2 prev= epoch=2"},
		},
		{
			name: "live holder leaving: request release",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1), leave("n1")),
			live: []string{"n1", "n2", "n3"},
			want: []string{"request-release web epoch=1"},
		},
		{
			name: "live holder re-registered as a witness: request release",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1), regWitness("n1")),
			live: []string{"n1", "n2", "n3"},
			want: []string{"request-release web epoch=1"},
		},
		{
			name:    "live holder drained: request release",
			cmds:    with(three, applySpec(role("web")), assign("web", "n1", "", 1)),
			drained: []string{"n1"},
			live:    []string{"n1", "n2", "n3"},
			want:    []string{"request-release web epoch=1"},
		},
		// Roles removed from the spec.
		{
			name: "role removed from the spec, live holder: request release",
			cmds: with(three, applySpec(role("web"), role("db")), assign("web", "n1", "", 1), assign("db", "n2", "", 1), applySpec(role("db"))),
			live: []string{"n1", "n2", "n3"},
			want: []string{"request-release web epoch=1"},
		},
		{
			name: "role removed from the spec, release requested: nothing further",
			cmds: with(three, applySpec(role("web"), role("db")), assign("web", "n1", "", 1), assign("db", "n2", "", 1), applySpec(role("db")),
				&fsm.RequestRelease{Role: "web", Epoch: 1, Actor: planActor, Time: t0}),
			live: []string{"n1", "n2", "n3"},
			want: nil,
		},
		{
			name: "role removed from the spec, holder not live: release naming the holder",
			cmds: with(three, applySpec(role("web"), role("db")), assign("web", "n1", "", 1), assign("web", "n3", "n1", 2), assign("db", "n2", "", 1), applySpec(role("db"))),
			live: []string{"n1", "n2"},
			want: []string{"release web n3 epoch=2"},
		},
		{
			name: "role removed from the spec, holder removed too: release",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1), applySpec(), &fsm.RemoveNode{Node: "n1", Actor: "op", Time: t0}),
			live: []string{"n2", "n3"},
			want: []string{"release web n1 epoch=1"},
		},
		{
			name: "unassigned role removed from the spec: nothing",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1), &fsm.Release{Role: "web", Node: "n1", Epoch: 1, Time: t0}, applySpec()),
			live: []string{"n1", "n2", "n3"},
			want: nil,
		},
		// Settling.
		{
			name:     "settling holds unassigned roles but moves roles off expired holders",
			cmds:     with(three, applySpec(role("a"), role("b"), role("c")), assign("b", "n1", "", 1)),
			live:     []string{"n2", "n3"},
			settling: true,
			want:     []string{"assign b n2 prev=n1 epoch=2"},
		},
		{
			name:     "settling still asks ineligible holders to release and releases removed roles",
			cmds:     with(three, applySpec(role("a"), role("b"), role("c")), assign("a", "n1", "", 1), assign("c", "n2", "", 1), leave("n1"), applySpec(role("a"), role("b"))),
			live:     []string{"n1", "n3"},
			settling: true,
			want:     []string{"request-release a epoch=1", "release c n2 epoch=1"},
		},
		// Order.
		{
			name: "roles in name order, then removed roles in name order",
			cmds: with(three[:2], applySpec(role("beta"), role("gamma"), role("zeta"), role("alpha")),
				assign("gamma", "n1", "", 1), assign("beta", "n1", "", 1), applySpec(role("zeta"), role("alpha"))),
			live: []string{"n2"},
			want: []string{"assign alpha n2 prev= epoch=1", "assign zeta n2 prev= epoch=1", "release beta n1 epoch=1", "release gamma n1 epoch=1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := mustApply(t, fsm.NewState(), tc.cmds...)
			if len(tc.drained) > 0 {
				st = drain(st, tc.drained...)
			}
			before := snapshotBytes(t, st)
			in := Input{State: st, Live: liveSet(tc.live...), Now: planNow, Actor: planActor, Settling: tc.settling}
			got := Plan(in)
			if g := describeAll(got); len(g) != len(tc.want) || (len(g) > 0 && !reflect.DeepEqual(g, tc.want)) {
				t.Fatalf("Plan: got %q, want %q", g, tc.want)
			}
			if after := snapshotBytes(t, st); !bytes.Equal(before, after) {
				t.Errorf("Plan modified its input state:\nbefore %s\nafter  %s", before, after)
			}
			checkStamps(t, got)
			// Every command applies, in order, to the state planned from.
			next := st
			for _, c := range got {
				n, err := fsm.Apply(next, next.Index+1, c)
				if err != nil {
					t.Fatalf("Apply(%s) after Plan: got error %v, want nil", describe(c), err)
				}
				next = n
			}
		})
	}
}

// checkStamps checks the proposer's time and actor on every command.
func checkStamps(t *testing.T, cmds []fsm.Command) {
	t.Helper()
	for _, c := range cmds {
		var actor string
		var when int64
		var reason string
		switch x := c.(type) {
		case *fsm.Assign:
			actor, when, reason = x.Actor, x.Time, x.Reason
		case *fsm.RequestRelease:
			actor, when, reason = x.Actor, x.Time, x.Reason
		case *fsm.Release:
			actor, when, reason = planActor, x.Time, x.Reason // Release names the holder, not an actor
		default:
			t.Errorf("Plan returned %s, want only assign, request-release and release", describe(c))
			continue
		}
		if actor != planActor || when != planNow {
			t.Errorf("%s: got actor %q time %d, want %q %d", describe(c), actor, when, planActor, planNow)
		}
		if reason == "" {
			t.Errorf("%s: got an empty reason, want one for the event log", describe(c))
		}
	}
}

func TestPlanMoveOffExpiredHolder(t *testing.T) {
	st := mustApply(t, fsm.NewState(), reg("n1"), reg("n2"), reg("n3"),
		applySpec(role("web", "n1:10", "n2:5", "n3:5")), assign("web", "n1", "", 1))
	got := Plan(Input{State: st, Live: liveSet("n2", "n3"), Now: planNow, Actor: planActor})
	if len(got) != 1 {
		t.Fatalf("Plan: got %q, want one assign", describeAll(got))
	}
	a, ok := got[0].(*fsm.Assign)
	if !ok {
		t.Fatalf("Plan: got %s, want an assign", describe(got[0]))
	}
	want := &fsm.Assign{Role: "web", Node: "n2", PrevHolder: "n1", Epoch: 2, Reason: "lease of n1 expired", Actor: planActor, Time: planNow}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("Plan: got %+v, want %+v", a, want)
	}
	next, err := fsm.Apply(st, st.Index+1, a)
	if err != nil {
		t.Fatalf("Apply(%s): got error %v, want nil", describe(a), err)
	}
	if as := next.Assignment("web"); as.Holder != "n2" || as.Epoch != 2 || as.Since != planNow || as.Releasing {
		t.Errorf("assignment after apply: got %+v, want holder n2 epoch 2 since %d", as, planNow)
	}
	ev := next.Events[len(next.Events)-1]
	if ev.Kind != fsm.EventRoleAssigned || ev.Old != "n1" || ev.New != "n2" || ev.Actor != planActor || !strings.Contains(ev.Message, "expired") {
		t.Errorf("event after apply: got %+v, want role-assigned n1 -> n2 by %s saying the lease expired", ev, planActor)
	}
	// Applied a second time, the same decision is stale and refused.
	_, err = fsm.Apply(next, next.Index+1, a)
	var rej *fsm.RejectedError
	if !errors.As(err, &rej) {
		t.Errorf("Apply(%s) twice: got %v, want a *fsm.RejectedError", describe(a), err)
	}
}

func TestPlanStampsAndReasons(t *testing.T) {
	st := mustApply(t, fsm.NewState(), reg("n1"), reg("n2"),
		applySpec(role("a"), role("b"), role("c"), role("d")),
		assign("b", "n1", "", 1), assign("c", "n1", "", 1), assign("d", "n2", "", 1), leave("n2"),
		applySpec(role("a"), role("b"), role("d")))
	// a: n1 is not live and n2 is leaving, so nobody can take it; b: its
	// holder n1 expired and nobody can take it either; d: its live holder
	// n2 is leaving; c: removed from the spec, holder n1 expired.
	got := Plan(Input{State: st, Live: liveSet("n2"), Now: planNow, Actor: planActor})
	want := []fsm.Command{
		&fsm.RequestRelease{Role: "d", Epoch: 1, Reason: "node n2 is no longer eligible", Actor: planActor, Time: planNow},
		&fsm.Release{Role: "c", Node: "n1", Epoch: 1, Reason: "role removed from the spec; holder lease expired", Time: planNow},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Plan:\ngot  %+v\nwant %+v", got, want)
	}
	st2 := mustApply(t, fsm.NewState(), reg("n1"), applySpec(role("a"), role("b")), assign("b", "n1", "", 1), applySpec(role("a")))
	got = Plan(Input{State: st2, Live: liveSet("n1"), Now: planNow, Actor: planActor})
	want = []fsm.Command{
		&fsm.Assign{Role: "a", Node: "n1", Epoch: 1, Reason: "role unassigned", Actor: planActor, Time: planNow},
		&fsm.RequestRelease{Role: "b", Epoch: 1, Reason: "role removed from the spec", Actor: planActor, Time: planNow},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Plan:\ngot  %+v\nwant %+v", got, want)
	}
}

// richState is a state with every situation Plan handles at once.
func richState(t tb) *fsm.State {
	t.Helper()
	return mustApply(t, fsm.NewState(),
		reg("n1"), reg("n2"), reg("n3"), regWitness("n4"), reg("n5"),
		applySpec(role("a"), role("b", "n1:3", "n2:3", "n3"), role("c", "n2", "n5"), role("d"), role("e"), role("gone"), role("gone2")),
		assign("a", "n1", "", 1),
		assign("b", "n2", "", 1),
		assign("gone", "n3", "", 1),
		assign("gone2", "n2", "", 1),
		assign("e", "n5", "", 1),
		leave("n5"),
		applySpec(role("a"), role("b", "n1:3", "n2:3", "n3"), role("c", "n2", "n5"), role("d"), role("e"), role("f", "n4", "n3:2")),
	)
}

func TestPlanDeterministic(t *testing.T) {
	st := richState(t)
	for _, live := range []map[string]bool{liveSet("n1", "n3", "n4", "n5"), liveSet("n2", "n3"), liveSet()} {
		for _, settling := range []bool{false, true} {
			in := Input{State: st, Live: live, Now: planNow, Actor: planActor, Settling: settling}
			first := Plan(in)
			for i := 0; i < 20; i++ {
				if got := Plan(in); !reflect.DeepEqual(got, first) {
					t.Fatalf("Plan run %d (live %v settling %t): got %q, want %q as in the first run", i, live, settling, describeAll(got), describeAll(first))
				}
			}
			// The same state rebuilt from its snapshot (fresh maps, another
			// iteration order) plans the same.
			var b bytes.Buffer
			if err := fsm.WriteSnapshot(&b, st); err != nil {
				t.Fatalf("WriteSnapshot: %v", err)
			}
			cp, err := fsm.ReadSnapshot(&b)
			if err != nil {
				t.Fatalf("ReadSnapshot: %v", err)
			}
			in.State = cp
			if got := Plan(in); !reflect.DeepEqual(got, first) {
				t.Fatalf("Plan on a copy (live %v settling %t): got %q, want %q", live, settling, describeAll(got), describeAll(first))
			}
		}
	}
}

func TestPlanRichState(t *testing.T) {
	st := richState(t)
	got := Plan(Input{State: st, Live: liveSet("n1", "n3", "n4", "n5"), Now: planNow, Actor: planActor})
	// Loads before planning: n1 1 (a), n2 2 (b, gone2), n3 1 (gone), n5 1 (e).
	want := []string{
		// a: n1 is live and eligible: it stays.
		"assign b n1 prev=n2 epoch=2", // n2 expired; n1 has priority 3, n3 only 0
		// c: n2 is not live and n5 is leaving: nobody can take it.
		"assign d n3 prev= epoch=1",    // n1 now holds 2 roles, n3 1; n4 witness; n5 leaving
		"request-release e epoch=1",    // its live holder n5 is leaving
		"assign f n3 prev= epoch=1",    // n4 is a witness
		"request-release gone epoch=1", // removed from the spec, holder n3 live
		"release gone2 n2 epoch=1",     // removed from the spec, holder n2 expired
	}
	if g := describeAll(got); !reflect.DeepEqual(g, want) {
		t.Fatalf("Plan:\ngot  %q\nwant %q", g, want)
	}
}

// TestPlanFixpoint checks that applying Plan's output and planning again
// with the same liveness settles: no move when nothing changed.
func TestPlanFixpoint(t *testing.T) {
	lives := []map[string]bool{liveSet("n1", "n3", "n4", "n5"), liveSet("n2", "n3"), liveSet("n1", "n2", "n3", "n4", "n5"), liveSet()}
	for _, live := range lives {
		for _, settling := range []bool{false, true} {
			st := richState(t)
			rounds := 0
			for {
				cmds := Plan(Input{State: st, Live: live, Now: planNow, Actor: planActor, Settling: settling})
				if len(cmds) == 0 {
					break
				}
				rounds++
				if rounds > 3 {
					t.Fatalf("live %v settling %t: still planning %q after 3 rounds", live, settling, describeAll(cmds))
				}
				st = mustApply(t, st, cmds...)
			}
			// Planning again and again changes nothing.
			for i := 0; i < 3; i++ {
				if cmds := Plan(Input{State: st, Live: live, Now: planNow + int64(i), Actor: planActor, Settling: settling}); len(cmds) != 0 {
					t.Fatalf("live %v settling %t: at the fixpoint got %q, want nothing", live, settling, describeAll(cmds))
				}
			}
		}
	}
}

func TestPlanEmptyState(t *testing.T) {
	if got := Plan(Input{State: fsm.NewState(), Live: liveSet("n1")}); len(got) != 0 {
		t.Errorf("Plan(empty state): got %q, want nothing", describeAll(got))
	}
	st := mustApply(t, fsm.NewState(), reg("n1"), applySpec(role("web")))
	if got := Plan(Input{State: st, Live: nil}); len(got) != 0 {
		t.Errorf("Plan(nil live): got %q, want nothing", describeAll(got))
	}
}

// --- property test ---

var (
	propNodes = []string{"n1", "n2", "n3", "n4", "n5"}
	propRoles = []string{"r1", "r2", "r3", "r4", "r5"}
)

// genSpec draws 1-5 service roles with random candidate lists (empty means
// anyone) and priorities over n1..n5.
func genSpec(t *rapid.T, label string) *spec.Spec {
	n := rapid.IntRange(1, len(propRoles)).Draw(t, label+"_nroles")
	names := rapid.Permutation(propRoles).Draw(t, label+"_roles")[:n]
	s := &spec.Spec{}
	for _, name := range names {
		r := spec.Role{Name: name, Type: spec.TypeService}
		if !rapid.Bool().Draw(t, label+"_anyone") {
			k := rapid.IntRange(1, len(propNodes)).Draw(t, label+"_ncands")
			for _, c := range rapid.Permutation(propNodes).Draw(t, label+"_cands")[:k] {
				r.Candidates = append(r.Candidates, spec.Candidate{Node: c, Priority: rapid.IntRange(-2, 3).Draw(t, label+"_prio")})
			}
		}
		s.Roles = append(s.Roles, r)
	}
	return s
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
// commands: registrations (some witnesses), specs, assignments, release
// requests, releases, leaves and removals. Some nodes are then drained.
func genState(t *rapid.T) *fsm.State {
	st := fsm.NewState()
	for _, id := range propNodes {
		if rapid.IntRange(0, 5).Draw(t, "unregistered") == 0 {
			continue
		}
		r := reg(id)
		r.Witness = rapid.IntRange(0, 5).Draw(t, "witness") == 0
		st = applyAny(t, st, r)
	}
	st = applyAny(t, st, applySpec(genSpec(t, "spec0").Roles...))
	steps := rapid.IntRange(0, 20).Draw(t, "steps")
	for i := 0; i < steps; i++ {
		node := rapid.SampledFrom(propNodes).Draw(t, "node")
		roleName := rapid.SampledFrom(propRoles).Draw(t, "role")
		cur := st.Assignment(roleName)
		var cmd fsm.Command
		switch k := rapid.IntRange(0, 9).Draw(t, "kind"); {
		case k < 4:
			if len(st.Spec.Roles) > 0 {
				roleName = rapid.SampledFrom(st.Spec.Roles).Draw(t, "spec_role").Name
				cur = st.Assignment(roleName)
			}
			cmd = &fsm.Assign{Role: roleName, Node: node, PrevHolder: cur.Holder, Epoch: cur.Epoch + 1, Reason: "history", Actor: "test", Time: t0}
		case k == 4:
			cmd = &fsm.RequestRelease{Role: roleName, Epoch: max(cur.Epoch, 1), Reason: "history", Actor: "test", Time: t0}
		case k == 5:
			cmd = &fsm.Release{Role: roleName, Node: orElse(cur.Holder, node), Epoch: max(cur.Epoch, 1), Reason: "history", Time: t0}
		case k == 6:
			cmd = leave(node)
		case k == 7:
			r := reg(node)
			r.Witness = rapid.IntRange(0, 5).Draw(t, "rewitness") == 0
			cmd = r
		case k == 8:
			cmd = &fsm.RemoveNode{Node: node, Actor: "test", Time: t0}
		default:
			cmd = applySpec(genSpec(t, "spec").Roles...)
		}
		st = applyAny(t, st, cmd)
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

func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		live := map[string]bool{}
		for _, id := range propNodes {
			if rapid.Bool().Draw(t, "live") {
				live[id] = true
			}
		}
		settling := rapid.Bool().Draw(t, "settling")
		in := Input{State: st, Live: live, Now: planNow, Actor: planActor, Settling: settling}
		before := snapshotBytes(t, st)

		cmds := Plan(in)

		if after := snapshotBytes(t, st); !bytes.Equal(before, after) {
			t.Fatalf("Plan modified its input state")
		}
		if again := Plan(in); !reflect.DeepEqual(again, cmds) {
			t.Fatalf("Plan is not deterministic: got %q then %q", describeAll(cmds), describeAll(again))
		}

		perRole := map[string]int{}
		for _, c := range cmds {
			r := commandRole(c)
			if r == "" {
				t.Fatalf("Plan returned %s, want only assign, request-release and release", describe(c))
			}
			perRole[r]++
			if perRole[r] > 1 {
				t.Fatalf("Plan returned %d commands for role %s in %q, want at most one", perRole[r], r, describeAll(cmds))
			}
			a := st.Assignment(r)
			rs, inSpec := st.Spec.Role(r)
			switch x := c.(type) {
			case *fsm.Assign:
				n, registered := st.Nodes[x.Node]
				_, cand := rs.Candidate(x.Node)
				switch {
				case !live[x.Node]:
					t.Fatalf("%s: node is not live (%v)", describe(c), live)
				case !registered:
					t.Fatalf("%s: node is not registered", describe(c))
				case n.Witness || n.Leaving || n.Drained:
					t.Fatalf("%s: node is witness=%t leaving=%t drained=%t", describe(c), n.Witness, n.Leaving, n.Drained)
				case !inSpec || !cand:
					t.Fatalf("%s: role in spec %t, node a candidate %t", describe(c), inSpec, cand)
				case a.Holder != "" && live[a.Holder]:
					t.Fatalf("%s: the holder %s is live; a live holder is asked to release, never replaced", describe(c), a.Holder)
				case a.Holder == "" && settling:
					t.Fatalf("%s: an unassigned role was placed while settling", describe(c))
				}
			case *fsm.RequestRelease:
				if a.Holder == "" || !live[a.Holder] || a.Releasing {
					t.Fatalf("%s: holder %q live %t releasing %t, want a live holder not yet asked", describe(c), a.Holder, live[a.Holder], a.Releasing)
				}
				if inSpec && eligible(st, rs, a.Holder) {
					t.Fatalf("%s: holder %s is still eligible", describe(c), a.Holder)
				}
			case *fsm.Release:
				if inSpec || x.Node != a.Holder || live[a.Holder] {
					t.Fatalf("%s: role in spec %t, holder %q live %t; want a removed role's expired holder", describe(c), inSpec, a.Holder, live[a.Holder])
				}
			}
		}

		// Roles that need no command get none, and roles that can be placed
		// are placed.
		for _, r := range st.Spec.Roles {
			a := st.Assignment(r.Name)
			holderOK := a.Holder != "" && live[a.Holder] && eligible(st, r, a.Holder)
			if holderOK && perRole[r.Name] != 0 {
				t.Fatalf("role %s: live eligible holder %s got a command in %q", r.Name, a.Holder, describeAll(cmds))
			}
			needs := (a.Holder == "" && !settling) || (a.Holder != "" && !live[a.Holder])
			canPlace := false
			for _, id := range st.NodeIDs() {
				if live[id] && eligible(st, r, id) {
					canPlace = true
				}
			}
			if needs && canPlace && perRole[r.Name] == 0 {
				t.Fatalf("role %s (holder %q) can be placed but got no command in %q", r.Name, a.Holder, describeAll(cmds))
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
			cs := Plan(Input{State: cur, Live: live, Now: planNow + int64(round), Actor: planActor, Settling: settling})
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
