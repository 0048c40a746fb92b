package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/lease"
	"github.com/harbormaster/harbormaster/spec"
)

// The stamps Plan puts on the commands of these tests.
const (
	planNow   int64 = t0 + 5000
	planActor       = "n9"
)

// planCase is one row of TestPlan. Nodes in live run their first
// generation gen1, nodes in renewed run gen2 (they lapsed and started over),
// and for nodes in ended a majority of voters say every grant up to gen1
// has ended (Ended is nil when ended is empty: nothing ever ends).
type planCase struct {
	name     string
	cmds     []fsm.Command // applied to fsm.NewState()
	drained  []string      // then set by hand
	live     []string
	renewed  []string
	ended    []string
	settling bool
	elapsed  *Elapsed // the leader's timers (nil: measured from the stamps)
	want     []string // describe() of Plan's output
}

func (tc planCase) input(st *fsm.State) Input {
	live := liveOn(tc.live...)
	for _, id := range tc.renewed {
		live[id] = gen2(id)
	}
	in := Input{State: st, Live: live, Now: planNow, Actor: planActor, Settling: tc.settling, Elapsed: tc.elapsed}
	if len(tc.ended) > 0 {
		in.Ended = endedUpTo(tc.ended...)
	}
	return in
}

func TestPlan(t *testing.T) {
	three := []fsm.Command{reg("n1"), reg("n2"), reg("n3")}
	with := func(base []fsm.Command, more ...fsm.Command) []fsm.Command {
		return append(append([]fsm.Command(nil), base...), more...)
	}
	tests := []planCase{
		// Placement of unassigned roles.
		{
			name: "unassigned role goes to the highest priority live candidate",
			cmds: with(three, applySpec(role("web", "n1:5", "n2:1", "n3:10"))),
			live: []string{"n1", "n2", "n3"},
			want: []string{"assign web n3 gen=31 prev= epoch=1"},
		},
		{
			name:    "unassigned role is bound to the generation the node runs",
			cmds:    with(three, applySpec(role("web", "n1:5", "n2:1", "n3:10"))),
			live:    []string{"n2", "n3"},
			renewed: []string{"n1"},
			want:    []string{"assign web n3 gen=31 prev= epoch=1"},
		},
		{
			name:    "unassigned role on a renewed node: its new generation",
			cmds:    with(three, applySpec(role("web", "n1:5", "n2:1", "n3"))),
			live:    []string{"n2", "n3"},
			renewed: []string{"n1"},
			want:    []string{"assign web n1 gen=12 prev= epoch=1"},
		},
		{
			name: "the best candidate is not live: the next one",
			cmds: with(three, applySpec(role("web", "n1:5", "n2:1", "n3:10"))),
			live: []string{"n1", "n2"},
			want: []string{"assign web n1 gen=11 prev= epoch=1"},
		},
		{
			name: "negative priorities rank below the default",
			cmds: with(three, applySpec(role("web", "n1:-1", "n2", "n3:-5"))),
			live: []string{"n1", "n2", "n3"},
			want: []string{"assign web n2 gen=21 prev= epoch=1"},
		},
		{
			name: "equal priority: lowest id",
			cmds: with(three, applySpec(role("web", "n3:5", "n2:5", "n1:1"))),
			live: []string{"n1", "n2", "n3"},
			want: []string{"assign web n2 gen=21 prev= epoch=1"},
		},
		{
			name: "two roles spread across two nodes in one plan",
			cmds: with(three[:2], applySpec(role("a"), role("b"))),
			live: []string{"n1", "n2"},
			want: []string{"assign a n1 gen=11 prev= epoch=1", "assign b n2 gen=21 prev= epoch=1"},
		},
		{
			name: "fewest roles held wins before lowest id",
			cmds: with(three[:2], applySpec(role("a"), role("b"), role("c")), assign("c", "n1", "", 1)),
			live: []string{"n1", "n2"},
			want: []string{"assign a n2 gen=21 prev= epoch=1", "assign b n1 gen=11 prev= epoch=1"},
		},
		{
			name: "priority wins over load",
			cmds: with(three[:2], applySpec(role("a", "n1:10", "n2"), role("b")), assign("b", "n1", "", 1)),
			live: []string{"n1", "n2"},
			want: []string{"assign a n1 gen=11 prev= epoch=1"},
		},
		{
			name: "roles held outside the spec count as load",
			cmds: with(three[:2], applySpec(role("a"), role("old")), assign("old", "n1", "", 1), applySpec(role("a"))),
			live: []string{"n1", "n2"},
			want: []string{"assign a n2 gen=21 prev= epoch=1", "request-release old epoch=1"},
		},
		{
			name:    "roles of a holder that waits for its old generation count as load",
			cmds:    with(three[:2], applySpec(role("a"), role("b", "n1", "n2")), assign("a", "n1", "", 1)),
			live:    []string{"n2"},
			renewed: []string{"n1"},
			want:    []string{"assign b n2 gen=21 prev= epoch=1"}, // n1 would win on its id
		},
		{
			name: "a role comes back at the next epoch",
			cmds: with(three[:2], applySpec(role("a")), assign("a", "n1", "", 1),
				&fsm.Release{Role: "a", Node: "n1", Epoch: 1, Time: t0}, applySpec(), applySpec(role("a"))),
			live: []string{"n1", "n2"},
			want: []string{"assign a n1 gen=11 prev= epoch=2"},
		},
		// Holders that stay.
		{
			name: "holder live on the assignment's generation and eligible: no command",
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
		{
			name:  "live on the assignment's generation wins over an ended verdict",
			cmds:  with(three, applySpec(role("web", "n1:1", "n2:10")), assign("web", "n1", "", 1)),
			live:  []string{"n1", "n2", "n3"},
			ended: []string{"n1"},
			want:  nil,
		},
		// Holders that run another generation (they lapsed and started
		// over): S4 holds the role until the old generation surely ended.
		{
			name:    "holder live on a newer generation, old one not ended: wait",
			cmds:    with(three, applySpec(role("web", "n1:10", "n2:5", "n3")), assign("web", "n1", "", 1)),
			live:    []string{"n2", "n3"},
			renewed: []string{"n1"},
			want:    nil,
		},
		{
			name:    "holder's old generation ended, holder still the best: same node, new generation",
			cmds:    with(three, applySpec(role("web", "n1:10", "n2:5", "n3")), assign("web", "n1", "", 1)),
			live:    []string{"n2", "n3"},
			renewed: []string{"n1"},
			ended:   []string{"n1"},
			want:    []string{"assign web n1 gen=12 prev=n1 epoch=2"},
		},
		{
			name:    "holder's old generation ended, another node is better: moves",
			cmds:    with(three, applySpec(role("web", "n1:1", "n2:5", "n3")), assign("web", "n1", "", 1)),
			live:    []string{"n2", "n3"},
			renewed: []string{"n1"},
			ended:   []string{"n1"},
			want:    []string{"assign web n2 gen=21 prev=n1 epoch=2"},
		},
		{
			name:    "an assignment of an older generation ended: rebound to the current one",
			cmds:    with(three, applySpec(role("web", "n1:10", "n2")), assignGen("web", "n1", "", 7, 1)),
			live:    []string{"n2"},
			renewed: []string{"n1"},
			ended:   []string{"n1"},
			want:    []string{"assign web n1 gen=12 prev=n1 epoch=2"},
		},
		{
			name:    "renewed holder no longer eligible, old generation not ended: wait, no release request",
			cmds:    with(three, applySpec(role("web")), assign("web", "n1", "", 1), leave("n1")),
			live:    []string{"n2"},
			renewed: []string{"n1"},
			want:    nil,
		},
		{
			name:    "renewed holder no longer eligible, old generation ended: moves",
			cmds:    with(three, applySpec(role("web")), assign("web", "n1", "", 1), leave("n1")),
			live:    []string{"n2"},
			renewed: []string{"n1"},
			ended:   []string{"n1"},
			want:    []string{"assign web n2 gen=21 prev=n1 epoch=2"},
		},
		{
			name: "an ended holder's load is not counted for its own role",
			cmds: with(three[:2], applySpec(role("a"), role("b")), assign("a", "n1", "", 1), assign("b", "n1", "", 1)),
			// n1 held 2: a goes to n2 (0 < 1), then b back to n1 (0 < 1).
			live:    []string{"n2"},
			renewed: []string{"n1"},
			ended:   []string{"n1"},
			want:    []string{"assign a n2 gen=21 prev=n1 epoch=2", "assign b n1 gen=12 prev=n1 epoch=2"},
		},
		{
			name: "an ended holder that nobody can replace keeps its load",
			cmds: with(three, applySpec(role("a", "n2"), role("b", "n1", "n2"), role("c", "n1")),
				assign("a", "n2", "", 1), assign("c", "n1", "", 1),
				applySpec(role("a", "n3"), role("b", "n1", "n2"), role("c", "n1"))),
			// a stays with n2 (n3 is not live), so n1 and n2 both hold one
			// role when b is placed: lowest id.
			live:    []string{"n1"},
			renewed: []string{"n2"},
			ended:   []string{"n2"},
			want:    []string{"assign b n1 gen=11 prev= epoch=1"},
		},
		// Holders whose lease is not live.
		{
			name: "holder not live and not ended: nothing moves (S4)",
			cmds: with(three, applySpec(role("web", "n1:10", "n2:5", "n3")), assign("web", "n1", "", 1)),
			live: []string{"n2", "n3"},
			want: nil,
		},
		{
			name:  "holder not live and ended: moves to the best live node at the next epoch",
			cmds:  with(three, applySpec(role("web", "n1:10", "n2:5", "n3")), assign("web", "n1", "", 1)),
			live:  []string{"n2", "n3"},
			ended: []string{"n1"},
			want:  []string{"assign web n2 gen=21 prev=n1 epoch=2"},
		},
		{
			name:  "another node's ended verdict does not move the role",
			cmds:  with(three, applySpec(role("web", "n1:10", "n2:5", "n3")), assign("web", "n1", "", 1)),
			live:  []string{"n2"},
			ended: []string{"n3"},
			want:  nil,
		},
		{
			name:  "holder ended at a later epoch",
			cmds:  with(three, applySpec(role("web")), assign("web", "n1", "", 1), assign("web", "n2", "n1", 2)),
			live:  []string{"n1", "n3"},
			ended: []string{"n2"},
			want:  []string{"assign web n1 gen=11 prev=n2 epoch=3"},
		},
		{
			name: "holder ended while asked to release: moves",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1),
				&fsm.RequestRelease{Role: "web", Epoch: 1, Actor: "op", Time: t0}),
			live:  []string{"n2"},
			ended: []string{"n1"},
			want:  []string{"assign web n2 gen=21 prev=n1 epoch=2"},
		},
		{
			name: "holder not live and not ended while asked to release: nothing",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1),
				&fsm.RequestRelease{Role: "web", Epoch: 1, Actor: "op", Time: t0}),
			live: []string{"n2"},
			want: nil,
		},
		{
			name:  "holder removed from the node table and ended: moves",
			cmds:  with(three, applySpec(role("web")), assign("web", "n1", "", 1), &fsm.RemoveNode{Node: "n1", Actor: "op", Time: t0}),
			live:  []string{"n2", "n3"},
			ended: []string{"n1"},
			want:  []string{"assign web n2 gen=21 prev=n1 epoch=2"},
		},
		{
			name: "holder removed from the node table, not live, not ended: nothing",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1), &fsm.RemoveNode{Node: "n1", Actor: "op", Time: t0}),
			live: []string{"n2", "n3"},
			want: nil,
		},
		{
			name: "the ended holder's load does not count against others",
			cmds: with(three[:2], applySpec(role("a"), role("b")), assign("a", "n1", "", 1), assign("b", "n1", "", 1),
				reg("n3")),
			live:  []string{"n2", "n3"},
			ended: []string{"n1"},
			want:  []string{"assign a n2 gen=21 prev=n1 epoch=2", "assign b n3 gen=31 prev=n1 epoch=2"},
		},
		// No candidate.
		{
			name: "no live candidate for an unassigned role: no command",
			cmds: with(three, applySpec(role("web", "n1", "n2"))),
			live: []string{"n3"},
			want: nil,
		},
		{
			name:  "no live candidate for an ended holder: no command",
			cmds:  with(three, applySpec(role("web", "n1", "n2")), assign("web", "n1", "", 1)),
			live:  []string{"n3"},
			ended: []string{"n1"},
			want:  nil,
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
			want: []string{"assign web n2 gen=21 prev= epoch=1"},
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
			want: []string{"assign web n1 gen=11 prev= epoch=1"},
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
			want:    []string{"assign web n5 gen=51 prev= epoch=1"},
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
			want: []string{"assign web n2 gen=21 prev= epoch=2"},
		},
		{
			name: "live holder leaving: request release",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1), leave("n1")),
			live: []string{"n1", "n2", "n3"},
			want: []string{"request-release web epoch=1"},
		},
		{
			name:    "live holder leaving for less than leaveGrace: it releases by itself, no request",
			cmds:    with(three, applySpec(role("web")), assign("web", "n1", "", 1), leave("n1")),
			live:    []string{"n1", "n2", "n3"},
			elapsed: &Elapsed{Leaving: map[string]time.Duration{"n1": leaveGrace - time.Millisecond}},
			want:    nil,
		},
		{
			name:    "live holder leaving for leaveGrace: request release",
			cmds:    with(three, applySpec(role("web")), assign("web", "n1", "", 1), leave("n1")),
			live:    []string{"n1", "n2", "n3"},
			elapsed: &Elapsed{Leaving: map[string]time.Duration{"n1": leaveGrace}},
			want:    []string{"request-release web epoch=1"},
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
		{
			name: "live holder removed from the node table: request release",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1), &fsm.RemoveNode{Node: "n1", Actor: "op", Time: t0}),
			live: []string{"n1", "n2", "n3"},
			want: []string{"request-release web epoch=1"},
		},
		// Roles removed from the spec.
		{
			name: "role removed from the spec, holder live on its generation: request release",
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
			name:  "role removed from the spec, holder's generation ended: release naming the holder",
			cmds:  with(three, applySpec(role("web"), role("db")), assign("web", "n1", "", 1), assign("web", "n3", "n1", 2), assign("db", "n2", "", 1), applySpec(role("db"))),
			live:  []string{"n1", "n2"},
			ended: []string{"n3"},
			want:  []string{"release web n3 epoch=2"},
		},
		{
			name: "role removed from the spec, holder neither live nor ended: nothing",
			cmds: with(three, applySpec(role("web"), role("db")), assign("web", "n1", "", 1), assign("web", "n3", "n1", 2), assign("db", "n2", "", 1), applySpec(role("db"))),
			live: []string{"n1", "n2"},
			want: nil,
		},
		{
			name:    "role removed from the spec, holder renewed, old generation not ended: nothing",
			cmds:    with(three, applySpec(role("web")), assign("web", "n1", "", 1), applySpec()),
			live:    []string{"n2"},
			renewed: []string{"n1"},
			want:    nil,
		},
		{
			name:    "role removed from the spec, holder renewed, old generation ended: release",
			cmds:    with(three, applySpec(role("web")), assign("web", "n1", "", 1), applySpec()),
			live:    []string{"n2"},
			renewed: []string{"n1"},
			ended:   []string{"n1"},
			want:    []string{"release web n1 epoch=1"},
		},
		{
			name:  "role removed from the spec, holder removed too and ended: release",
			cmds:  with(three, applySpec(role("web")), assign("web", "n1", "", 1), applySpec(), &fsm.RemoveNode{Node: "n1", Actor: "op", Time: t0}),
			live:  []string{"n2", "n3"},
			ended: []string{"n1"},
			want:  []string{"release web n1 epoch=1"},
		},
		{
			name: "unassigned role removed from the spec: nothing",
			cmds: with(three, applySpec(role("web")), assign("web", "n1", "", 1), &fsm.Release{Role: "web", Node: "n1", Epoch: 1, Time: t0}, applySpec()),
			live: []string{"n1", "n2", "n3"},
			want: nil,
		},
		// Settling.
		{
			name:     "settling holds unassigned roles but moves roles off ended holders",
			cmds:     with(three, applySpec(role("a"), role("b"), role("c")), assign("b", "n1", "", 1)),
			live:     []string{"n2", "n3"},
			ended:    []string{"n1"},
			settling: true,
			want:     []string{"assign b n2 gen=21 prev=n1 epoch=2"},
		},
		{
			name:     "settling rebinds a renewed holder",
			cmds:     with(three, applySpec(role("a", "n1:5", "n2")), assign("a", "n1", "", 1)),
			live:     []string{"n2"},
			renewed:  []string{"n1"},
			ended:    []string{"n1"},
			settling: true,
			want:     []string{"assign a n1 gen=12 prev=n1 epoch=2"},
		},
		{
			name:     "settling still asks ineligible holders to release and releases removed roles",
			cmds:     with(three, applySpec(role("a"), role("b"), role("c")), assign("a", "n1", "", 1), assign("c", "n2", "", 1), leave("n1"), applySpec(role("a"), role("b"))),
			live:     []string{"n1", "n3"},
			ended:    []string{"n2"},
			settling: true,
			want:     []string{"request-release a epoch=1", "release c n2 epoch=1"},
		},
		// Order.
		{
			name: "roles in name order, then removed roles in name order",
			cmds: with(three[:2], applySpec(role("beta"), role("gamma"), role("zeta"), role("alpha")),
				assign("gamma", "n1", "", 1), assign("beta", "n1", "", 1), applySpec(role("zeta"), role("alpha"))),
			live:  []string{"n2"},
			ended: []string{"n1"},
			want:  []string{"assign alpha n2 gen=21 prev= epoch=1", "assign zeta n2 gen=21 prev= epoch=1", "release beta n1 epoch=1", "release gamma n1 epoch=1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := mustApply(t, fsm.NewState(), tc.cmds...)
			if len(tc.drained) > 0 {
				st = drain(st, tc.drained...)
			}
			before := snapshotBytes(t, st)
			in := tc.input(st)
			got := Plan(in)
			if g := describeAll(got); len(g) != len(tc.want) || (len(g) > 0 && !reflect.DeepEqual(g, tc.want)) {
				t.Fatalf("Plan: got %q, want %q", g, tc.want)
			}
			if after := snapshotBytes(t, st); !bytes.Equal(before, after) {
				t.Errorf("Plan modified its input state:\nbefore %s\nafter  %s", before, after)
			}
			checkStamps(t, got)
			checkGens(t, got, in.Live)
			// Every command applies, in order, to the state planned from.
			next := st
			for _, c := range got {
				n, err := fsm.Apply(next, next.Index+1, c)
				if err != nil {
					t.Fatalf("Apply(%s) after Plan: got error %v, want nil", describe(c), err)
				}
				next = n
			}
			// With the same verdicts, the applied state needs nothing more.
			in.State = next
			if again := Plan(in); len(again) != 0 {
				t.Errorf("Plan after applying its commands: got %q, want nothing", describeAll(again))
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

// checkGens checks that every Assign binds the role to the generation its
// node runs.
func checkGens(t *testing.T, cmds []fsm.Command, live map[string]uint64) {
	t.Helper()
	for _, c := range cmds {
		if a, ok := c.(*fsm.Assign); ok {
			if gen, ok := live[a.Node]; !ok || a.HolderGen != gen {
				t.Errorf("%s: got HolderGen %d, want Live[%s] = %d (live %t)", describe(a), a.HolderGen, a.Node, gen, ok)
			}
		}
	}
}

func TestPlanMoveOffEndedHolder(t *testing.T) {
	st := mustApply(t, fsm.NewState(), reg("n1"), reg("n2"), reg("n3"),
		applySpec(role("web", "n1:10", "n2:5", "n3:5")), assign("web", "n1", "", 1))
	var asked []string
	ended := func(node string, gen uint64, _ time.Duration) bool {
		asked = append(asked, fmt.Sprintf("%s/%d", node, gen))
		return node == "n1" && gen == 11
	}
	got := Plan(Input{State: st, Live: map[string]uint64{"n2": 27, "n3": 31}, Ended: ended, Now: planNow, Actor: planActor})
	if want := []string{"n1/11"}; !reflect.DeepEqual(asked, want) {
		t.Errorf("Ended calls: got %q, want %q (the holder at the assignment's generation)", asked, want)
	}
	if len(got) != 1 {
		t.Fatalf("Plan: got %q, want one assign", describeAll(got))
	}
	a, ok := got[0].(*fsm.Assign)
	if !ok {
		t.Fatalf("Plan: got %s, want an assign", describe(got[0]))
	}
	want := &fsm.Assign{Role: "web", Node: "n2", PrevHolder: "n1", HolderGen: 27, Epoch: 2,
		Reason: "lease of n1 (generation 11) ended", Actor: planActor, Time: planNow, Cause: fsm.CauseLease}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("Plan: got %+v, want %+v", a, want)
	}
	next, err := fsm.Apply(st, st.Index+1, a)
	if err != nil {
		t.Fatalf("Apply(%s): got error %v, want nil", describe(a), err)
	}
	if as := next.Assignment("web"); as.Holder != "n2" || as.HolderGen != 27 || as.Epoch != 2 || as.Since != planNow || as.Releasing {
		t.Errorf("assignment after apply: got %+v, want holder n2 gen 27 epoch 2 since %d", as, planNow)
	}
	ev := next.Events[len(next.Events)-1]
	if ev.Kind != fsm.EventRoleAssigned || ev.Old != "n1" || ev.New != "n2" || ev.Actor != planActor || !strings.Contains(ev.Message, "ended") {
		t.Errorf("event after apply: got %+v, want role-assigned n1 -> n2 by %s saying the lease ended", ev, planActor)
	}
	// Applied a second time, the same decision is stale and refused.
	_, err = fsm.Apply(next, next.Index+1, a)
	var rej *fsm.RejectedError
	if !errors.As(err, &rej) {
		t.Errorf("Apply(%s) twice: got %v, want a *fsm.RejectedError", describe(a), err)
	}
}

func TestPlanRebindsTheSameNodeAtItsNewGeneration(t *testing.T) {
	st := mustApply(t, fsm.NewState(), reg("n1"), reg("n2"),
		applySpec(role("web", "n1:10", "n2")), assign("web", "n1", "", 1))
	live := map[string]uint64{"n1": 500, "n2": 21}

	// While the majority does not say generation 11 ended, n1 may still be
	// acting on it: nothing.
	if got := Plan(Input{State: st, Live: live, Ended: func(string, uint64, time.Duration) bool { return false }, Now: planNow, Actor: planActor}); len(got) != 0 {
		t.Fatalf("Plan before generation 11 ended: got %q, want nothing", describeAll(got))
	}
	ended := func(node string, gen uint64, _ time.Duration) bool { return node == "n1" && gen == 11 }
	got := Plan(Input{State: st, Live: live, Ended: ended, Now: planNow, Actor: planActor})
	want := []fsm.Command{&fsm.Assign{Role: "web", Node: "n1", PrevHolder: "n1", HolderGen: 500, Epoch: 2,
		Reason: "lease of n1 (generation 11) ended", Actor: planActor, Time: planNow, Cause: fsm.CauseLease}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Plan:\ngot  %q\nwant %q", describeAll(got), describeAll(want))
	}
	next, err := fsm.Apply(st, st.Index+1, got[0])
	if err != nil {
		t.Fatalf("Apply(%s): got error %v, want nil (a new generation may be assigned to the same holder)", describe(got[0]), err)
	}
	if a := next.Assignment("web"); a.Holder != "n1" || a.HolderGen != 500 || a.Epoch != 2 {
		t.Errorf("assignment after apply: got %+v, want n1 at generation 500, epoch 2", a)
	}
	if again := Plan(Input{State: next, Live: live, Ended: ended, Now: planNow, Actor: planActor}); len(again) != 0 {
		t.Errorf("Plan after the rebind: got %q, want nothing", describeAll(again))
	}
	// The same generation again is refused by the fsm.
	same := &fsm.Assign{Role: "web", Node: "n1", PrevHolder: "n1", HolderGen: 500, Epoch: 3, Reason: "test", Actor: "test", Time: t0}
	_, err = fsm.Apply(next, next.Index+1, same)
	var rej *fsm.RejectedError
	if !errors.As(err, &rej) {
		t.Errorf("Apply(%s) at the holder's current generation: got %v, want a *fsm.RejectedError", describe(same), err)
	}
}

func TestPlanStampsAndReasons(t *testing.T) {
	st := mustApply(t, fsm.NewState(), reg("n1"), reg("n2"),
		applySpec(role("a"), role("b"), role("c"), role("d")),
		assign("b", "n1", "", 1), assign("c", "n1", "", 1), assign("d", "n2", "", 1), leave("n2"),
		applySpec(role("a"), role("b"), role("d")))
	// a: n1 is not live and n2 is leaving, so nobody can take it; b: its
	// holder n1 ended and nobody can take it either; d: its live holder n2
	// is leaving; c: removed from the spec, holder n1 ended.
	got := Plan(Input{State: st, Live: liveOn("n2"), Ended: endedUpTo("n1"), Now: planNow, Actor: planActor})
	want := []fsm.Command{
		&fsm.RequestRelease{Role: "d", Epoch: 1, Reason: "node n2 is no longer eligible", Actor: planActor, Time: planNow, Cause: fsm.CauseShutdown},
		&fsm.Release{Role: "c", Node: "n1", Epoch: 1, Reason: "role removed from the spec; holder lease ended", Time: planNow, Cause: fsm.CauseSpec},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Plan:\ngot  %+v\nwant %+v", got, want)
	}
	st2 := mustApply(t, fsm.NewState(), reg("n1"), applySpec(role("a"), role("b")), assign("b", "n1", "", 1), applySpec(role("a")))
	got = Plan(Input{State: st2, Live: liveOn("n1"), Now: planNow, Actor: planActor})
	want = []fsm.Command{
		&fsm.Assign{Role: "a", Node: "n1", HolderGen: 11, Epoch: 1, Reason: "role unassigned", Actor: planActor, Time: planNow, Cause: fsm.CauseFirst},
		&fsm.RequestRelease{Role: "b", Epoch: 1, Reason: "role removed from the spec", Actor: planActor, Time: planNow, Cause: fsm.CauseSpec},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Plan:\ngot  %+v\nwant %+v", got, want)
	}
}

// TestPlanWithMajorityVerdicts feeds Plan the verdicts of real
// lease.Majority values, the way the coordinator does.
func TestPlanWithMajorityVerdicts(t *testing.T) {
	web := role("web", "n1:10", "n2:5", "n3")
	web.StopTimeout = spec.Dur("1ms") // the grace is tested in TestPlanServiceStopGrace
	st := mustApply(t, fsm.NewState(), reg("n1"), reg("n2"), reg("n3"),
		applySpec(web), assign("web", "n1", "", 1))
	run := func(gen uint64) lease.GrantView { return lease.GrantView{Gen: gen, Remaining: time.Second} }
	over := func(gen uint64) lease.GrantView { return lease.GrantView{Gen: gen, Remaining: -time.Millisecond} }
	others := func(v lease.View) lease.View {
		v.Nodes["n2"] = run(21)
		v.Nodes["n3"] = run(31)
		return v
	}
	view := func(n1 *lease.GrantView) lease.View {
		v := lease.View{SinceGuard: time.Hour, Nodes: map[string]lease.GrantView{}}
		if n1 != nil {
			v.Nodes["n1"] = *n1
		}
		return others(v)
	}
	guarded := func(v lease.View) lease.View { v.Guarded = true; return v }
	gone, up := over(11), run(11)
	tests := []struct {
		name  string
		views []lease.View
		want  []string
	}{
		{"every voter sees n1 running", []lease.View{view(&up), view(&up), view(&up)}, nil},
		{"a majority sees n1 running", []lease.View{view(&gone), view(&up), view(&up)}, nil},
		{"one voter says ended, one did not answer", []lease.View{view(&gone), view(&up)}, nil},
		{"one voter says ended, one is guarded after a restart", []lease.View{view(&gone), view(&up), guarded(view(nil))}, nil},
		{"two voters say ended", []lease.View{view(&gone), view(&up), view(nil)}, []string{"assign web n2 gen=21 prev=n1 epoch=2"}},
		{"n1 renewed at a new generation, the old grant still runs on a majority",
			[]lease.View{
				view(&lease.GrantView{Gen: 12, Remaining: time.Second, SupersededRemaining: time.Millisecond}),
				view(&lease.GrantView{Gen: 12, Remaining: time.Second, SupersededRemaining: time.Millisecond}),
				view(&lease.GrantView{Gen: 12, Remaining: time.Second, SupersededRemaining: -time.Millisecond}),
			}, nil},
		{"n1 renewed at a new generation, the old grant ended on a majority",
			[]lease.View{
				view(&lease.GrantView{Gen: 12, Remaining: time.Second, SupersededRemaining: time.Millisecond}),
				view(&lease.GrantView{Gen: 12, Remaining: time.Second, SupersededRemaining: -time.Millisecond}),
				view(&lease.GrantView{Gen: 12, Remaining: time.Second, SupersededRemaining: -time.Hour}),
			}, []string{"assign web n1 gen=12 prev=n1 epoch=2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := lease.Majority{Voters: 3, Views: tc.views}
			got := Plan(Input{State: st, Live: m.Live(), Ended: m.EndedFor, Now: planNow, Actor: planActor})
			if g := describeAll(got); len(g) != len(tc.want) || (len(g) > 0 && !reflect.DeepEqual(g, tc.want)) {
				t.Fatalf("Plan (live %v): got %q, want %q", m.Live(), g, tc.want)
			}
			mustApply(t, st, got...)
		})
	}
}

// richState is a state with every situation Plan handles at once.
func richState(t tb) *fsm.State {
	t.Helper()
	return mustApply(t, fsm.NewState(),
		reg("n1"), reg("n2"), reg("n3"), regWitness("n4"), reg("n5"),
		applySpec(role("a"), role("b", "n1:3", "n2:3", "n3"), role("c", "n2", "n5"), role("d"), role("e"), role("gone"), role("gone2"), role("h", "n3")),
		assign("a", "n1", "", 1),
		assign("b", "n2", "", 1),
		assign("gone", "n3", "", 1),
		assign("gone2", "n2", "", 1),
		assign("e", "n5", "", 1),
		assign("h", "n3", "", 1),
		leave("n5"),
		applySpec(role("a"), role("b", "n1:3", "n2:3", "n3"), role("c", "n2", "n5"), role("d"), role("e"), role("f", "n4", "n3:2"), role("h", "n3")),
	)
}

// verdicts are lease verdicts to plan with: live nodes and their
// generations, and the nodes whose generations up to gen1 ended (nil: Ended
// is nil).
type verdicts struct {
	name     string
	live     map[string]uint64
	endedFor []string
}

func (v verdicts) ended() func(string, uint64, time.Duration) bool {
	if v.endedFor == nil {
		return nil
	}
	return endedUpTo(v.endedFor...)
}

// richVerdicts are the verdicts the rich state is planned with.
var richVerdicts = []verdicts{
	{"n2 ended", liveOn("n1", "n3", "n4", "n5"), []string{"n2"}},
	{"n2 silent", liveOn("n1", "n3", "n4", "n5"), nil},
	{"n1 and n5 ended, n3 renewed", map[string]uint64{"n2": 21, "n3": 32}, []string{"n1", "n3", "n5"}},
	{"n3 renewed, not ended", map[string]uint64{"n1": 11, "n2": 21, "n3": 32, "n4": 41, "n5": 51}, nil},
	{"all live", liveOn("n1", "n2", "n3", "n4", "n5"), nil},
	{"nothing live, all ended", map[string]uint64{}, []string{"n1", "n2", "n3", "n4", "n5"}},
	{"nothing live, nothing ended", map[string]uint64{}, nil},
}

func TestPlanDeterministic(t *testing.T) {
	st := richState(t)
	for _, v := range richVerdicts {
		for _, settling := range []bool{false, true} {
			in := Input{State: st, Live: v.live, Ended: v.ended(), Now: planNow, Actor: planActor, Settling: settling}
			first := Plan(in)
			for i := 0; i < 20; i++ {
				if got := Plan(in); !reflect.DeepEqual(got, first) {
					t.Fatalf("Plan run %d (%s, settling %t): got %q, want %q as in the first run", i, v.name, settling, describeAll(got), describeAll(first))
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
				t.Fatalf("Plan on a copy (%s, settling %t): got %q, want %q", v.name, settling, describeAll(got), describeAll(first))
			}
		}
	}
}

func TestPlanRichState(t *testing.T) {
	st := richState(t)
	// Loads before planning: n1 1 (a), n2 2 (b, gone2), n3 2 (gone, h), n5 1 (e).
	tests := []struct {
		name  string
		live  map[string]uint64
		ended func(string, uint64, time.Duration) bool
		want  []string
	}{
		{
			name:  "n2 ended",
			live:  liveOn("n1", "n3", "n4", "n5"),
			ended: endedUpTo("n2"),
			want: []string{
				// a: n1 is live and eligible: it stays.
				"assign b n1 gen=11 prev=n2 epoch=2", // n2 ended; n1 has priority 3, n3 only 0
				// c: n2 is not live and n5 is leaving: nobody can take it.
				"assign d n1 gen=11 prev= epoch=1", // n1 2 roles, n3 2: lowest id; n4 witness; n5 leaving
				"request-release e epoch=1",        // its live holder n5 is leaving
				"assign f n3 gen=31 prev= epoch=1", // n4 is a witness
				// h: n3 is live and eligible: it stays.
				"request-release gone epoch=1", // removed from the spec, holder n3 live
				"release gone2 n2 epoch=1",     // removed from the spec, holder n2 ended
			},
		},
		{
			name: "n2 neither live nor ended",
			live: liveOn("n1", "n3", "n4", "n5"),
			want: []string{
				// b and gone2 wait for n2's verdict, and n2 keeps their load.
				"assign d n1 gen=11 prev= epoch=1",
				"request-release e epoch=1",
				"assign f n3 gen=31 prev= epoch=1",
				"request-release gone epoch=1",
			},
		},
		{
			name:  "n3 renewed, its old generation ended; n1 and n5 ended",
			live:  map[string]uint64{"n2": 21, "n3": 32},
			ended: endedUpTo("n1", "n3", "n5"),
			want: []string{
				"assign a n2 gen=21 prev=n1 epoch=2", // n2 and n3 hold 2 each: lowest id
				// b: n2 is live on its generation and eligible: it stays.
				"assign c n2 gen=21 prev= epoch=1",   // n5 is leaving
				"assign d n3 gen=32 prev= epoch=1",   // n2 holds 4, n3 2
				"assign e n3 gen=32 prev=n5 epoch=2", // n5's generation ended; n3 holds 3, n2 4
				"assign f n3 gen=32 prev= epoch=1",   // n4 is a witness and not live
				"assign h n3 gen=32 prev=n3 epoch=2", // n3's old generation ended: rebound
				"release gone n3 epoch=1",            // n3's generation 31 ended
				"request-release gone2 epoch=1",      // n2 is live on generation 21
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan(Input{State: st, Live: tc.live, Ended: tc.ended, Now: planNow, Actor: planActor})
			if g := describeAll(got); !reflect.DeepEqual(g, tc.want) {
				t.Fatalf("Plan:\ngot  %q\nwant %q", g, tc.want)
			}
			mustApply(t, st, got...)
		})
	}
}

// TestPlanFixpoint checks that applying Plan's output and planning again
// with the same verdicts settles: no move when nothing changed.
func TestPlanFixpoint(t *testing.T) {
	for _, v := range richVerdicts {
		for _, settling := range []bool{false, true} {
			st := richState(t)
			rounds := 0
			for {
				cmds := Plan(Input{State: st, Live: v.live, Ended: v.ended(), Now: planNow, Actor: planActor, Settling: settling})
				if len(cmds) == 0 {
					break
				}
				rounds++
				if rounds > 3 {
					t.Fatalf("%s settling %t: still planning %q after 3 rounds", v.name, settling, describeAll(cmds))
				}
				st = mustApply(t, st, cmds...)
			}
			// Planning again and again changes nothing.
			for i := 0; i < 3; i++ {
				if cmds := Plan(Input{State: st, Live: v.live, Ended: v.ended(), Now: planNow + int64(i), Actor: planActor, Settling: settling}); len(cmds) != 0 {
					t.Fatalf("%s settling %t: at the fixpoint got %q, want nothing", v.name, settling, describeAll(cmds))
				}
			}
		}
	}
}

func TestPlanEmptyState(t *testing.T) {
	if got := Plan(Input{State: fsm.NewState(), Live: liveOn("n1")}); len(got) != 0 {
		t.Errorf("Plan(empty state): got %q, want nothing", describeAll(got))
	}
	st := mustApply(t, fsm.NewState(), reg("n1"), applySpec(role("web")))
	if got := Plan(Input{State: st, Live: nil}); len(got) != 0 {
		t.Errorf("Plan(nil live): got %q, want nothing", describeAll(got))
	}
	st = mustApply(t, st, assign("web", "n1", "", 1))
	if got := Plan(Input{State: st, Live: nil, Ended: nil}); len(got) != 0 {
		t.Errorf("Plan(nil live, nil ended) with a holder: got %q, want nothing (nil Ended never ends)", describeAll(got))
	}
}
