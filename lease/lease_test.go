package lease

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

var t0 = time.Unix(1_000_000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

const ttl = 500 * time.Millisecond

func TestGrantsRenewRules(t *testing.T) {
	g := NewGrants(at(-10_000), 0.1, 550*time.Millisecond)
	if v, gen := g.renew("n1", 5, ttl, at(0)); v != Granted || gen != 5 {
		t.Fatalf("first renewal: %v %d", v, gen)
	}
	// Extends within the grant: end = 300 + 550.
	if v, _ := g.renew("n1", 5, ttl, at(300)); v != Granted {
		t.Fatalf("renewal within the grant: %v", v)
	}
	if g.Ended("n1", 5, at(849)) {
		t.Fatal("ended 1 ms before 300+550")
	}
	if !g.Ended("n1", 5, at(850)) {
		t.Fatal("not ended at 300+550")
	}
	// No extension across a gap, and the verdict stays stable.
	if v, gen := g.renew("n1", 5, ttl, at(900)); v != Lapsed || gen != 5 {
		t.Fatalf("renewal after a gap: %v %d, want lapsed 5", v, gen)
	}
	if !g.Ended("n1", 5, at(901)) {
		t.Fatal("a lapsed generation came back")
	}
	// Older generations are refused as stale.
	if v, gen := g.renew("n1", 4, ttl, at(910)); v != Stale || gen != 5 {
		t.Fatalf("older generation: %v %d, want stale 5", v, gen)
	}
	// A newer generation supersedes; the older ones end when their last
	// grant ends.
	g.renew("n2", 1, ttl, at(1000)) // ends 1550
	if v, _ := g.renew("n2", 2, ttl, at(1100)); v != Granted {
		t.Fatalf("newer generation: %v", v)
	}
	if g.Ended("n2", 1, at(1549)) {
		t.Fatal("superseded generation ended before its grant")
	}
	if !g.Ended("n2", 1, at(1550)) {
		t.Fatal("superseded generation not ended after its grant")
	}
	if g.Ended("n2", 2, at(1600)) {
		t.Fatal("current generation ended early (1100+550)")
	}
	if !g.Ended("n2", 3, at(1600)) || !g.Ended("n9", 1, at(1600)) {
		t.Fatal("never-granted generation or node not ended")
	}
}

func TestGrantsRestartGuard(t *testing.T) {
	g := NewGrants(at(0), 0.1, 550*time.Millisecond)
	if g.Ended("n1", 7, at(549)) {
		t.Fatal("a restarted table said ended during its guard")
	}
	if !g.Ended("n1", 7, at(550)) {
		t.Fatal("guard did not end")
	}
	if !g.Snapshot(at(100)).Guarded || g.Snapshot(at(600)).Guarded {
		t.Fatal("Snapshot.Guarded wrong")
	}
}

func TestMajority(t *testing.T) {
	mk := func(rem map[string]int) View {
		v := View{Nodes: map[string]GrantView{}}
		for id, ms := range rem {
			v.Nodes[id] = GrantView{Gen: 3, Remaining: time.Duration(ms) * time.Millisecond}
		}
		return v
	}
	m := Majority{Voters: 3, Views: []View{mk(map[string]int{"n1": 0}), mk(map[string]int{"n1": 10})}}
	if m.Ended("n1", 3) {
		t.Fatal("1 of 3 ended is not a majority")
	}
	m.Views = append(m.Views, mk(map[string]int{"n1": -1}))
	if !m.Ended("n1", 3) {
		t.Fatal("2 of 3 ended is a majority")
	}
	// Missing voters count against "ended".
	m = Majority{Voters: 5, Views: []View{mk(map[string]int{}), mk(map[string]int{})}}
	if m.Ended("n1", 3) {
		t.Fatal("2 answers of 5 voters decided")
	}
	// A guarded view never says ended.
	g := mk(map[string]int{})
	g.Guarded = true
	m = Majority{Voters: 3, Views: []View{g, g, mk(map[string]int{})}}
	if m.Ended("n1", 3) {
		t.Fatal("guarded views counted as ended")
	}
	live := Majority{Voters: 3, Views: []View{mk(map[string]int{"n1": 100, "n2": 100}), mk(map[string]int{"n1": 5, "n2": 0}), mk(map[string]int{"n2": 10})}}.Live()
	if live["n1"] != 3 || live["n2"] != 3 || len(live) != 2 {
		t.Fatalf("live = %v", live)
	}
	if live := (Majority{Voters: 3, Views: []View{mk(map[string]int{"n1": 100})}}).Live(); len(live) != 0 {
		t.Fatalf("1 of 3 voters made a node live: %v", live)
	}
}

func TestHolder(t *testing.T) {
	h := NewHolder(ttl)
	gen := h.Begin(at(0), 100)
	if gen != 100 {
		t.Fatalf("first generation %d, want the wall clock 100", gen)
	}
	if _, ok := h.Valid(at(0)); ok {
		t.Fatal("valid before any grant")
	}
	h.Result(gen, at(0), 1, 2, nil)
	if _, ok := h.Valid(at(1)); ok {
		t.Fatal("valid with 1 of 2 needed grants")
	}
	if g := h.Begin(at(100), 200); g != gen {
		t.Fatalf("generation changed without a lapse: %d", g)
	}
	h.Result(gen, at(100), 2, 2, []Refusal{{Lapsed, gen}})
	if g, ok := h.Valid(at(599)); !ok || g != gen {
		t.Fatal("a majority grant sent at 100 must hold until 600, a minority refusal notwithstanding")
	}
	if _, ok := h.Valid(at(600)); ok {
		t.Fatal("valid at sentAt+TTL")
	}
	// A lapse starts a new generation above every earlier one.
	g2 := h.Begin(at(600), 50)
	if g2 <= gen {
		t.Fatalf("new generation %d not above %d", g2, gen)
	}
	// A late result of the old generation is ignored.
	h.Result(gen, at(550), 3, 2, nil)
	if _, ok := h.Valid(at(601)); ok {
		t.Fatal("a result of an abandoned generation made the lease valid")
	}
	// Refusals without a majority end the generation; stale sets a floor.
	h.Result(g2, at(610), 1, 2, []Refusal{{Stale, 10_000}})
	if g3 := h.Begin(at(620), 0); g3 != 10_001 {
		t.Fatalf("after a stale refusal the generation is %d, want 10001", g3)
	}
}

func TestEndedForGrace(t *testing.T) {
	g := NewGrants(at(0), 0.1, 550*time.Millisecond)
	g.renew("n1", 5, ttl, at(1000)) // ends 1550
	g.renew("n2", 1, ttl, at(1000)) // ends 1550, superseded at 1100
	g.renew("n2", 2, ttl, at(1100)) // ends 1650
	grace := 2 * time.Second
	for _, tc := range []struct {
		node string
		gen  uint64
		now  int
		want bool
	}{
		{"n1", 5, 1550, false}, // ended, grace not run
		{"n1", 5, 3549, false},
		{"n1", 5, 3550, true},
		{"n2", 1, 3549, false}, // superseded grant ended at 1550
		{"n2", 1, 3550, true},
		{"n9", 1, 2549, false}, // never granted: counts from the guard's end (550)
		{"n9", 1, 2550, true},
		{"n1", 6, 2550, true}, // a generation this table never granted
		{"n1", 5, 100, false}, // guarded
	} {
		v := g.Snapshot(at(tc.now))
		if got := v.EndedFor(tc.node, tc.gen, grace); got != tc.want {
			t.Errorf("EndedFor(%s, %d, 2s) at %d = %v, want %v", tc.node, tc.gen, tc.now, got, tc.want)
		}
		if v.EndedFor(tc.node, tc.gen, 0) != v.Ended(tc.node, tc.gen) {
			t.Errorf("EndedFor(%s, %d, 0) at %d differs from Ended", tc.node, tc.gen, tc.now)
		}
	}
	// A table restarted recently: n1 renews at generation 9 with it, so
	// generation 5 looks superseded long ago (no recorded end); the grace
	// still counts from the guard's end, not from the zero time.
	r := NewGrants(at(10_000), 0.1, 550*time.Millisecond)
	r.renew("n1", 9, ttl, at(10_600))
	if r.Snapshot(at(10_700)).EndedFor("n1", 5, grace) {
		t.Error("restarted table: superseded generation ended-for-grace 150 ms after its guard")
	}
	if !r.Snapshot(at(12_550)).EndedFor("n1", 5, grace) {
		t.Error("restarted table: superseded generation not ended-for-grace 2 s after its guard")
	}
	// A majority needs two of three views.
	late := g.Snapshot(at(3600))
	early := g.Snapshot(at(2000))
	if (Majority{Voters: 3, Views: []View{late, early, early}}).EndedFor("n1", 5, grace) {
		t.Error("one view of three said ended-for-grace: majority true")
	}
	if !(Majority{Voters: 3, Views: []View{late, late, early}}).EndedFor("n1", 5, grace) {
		t.Error("two views of three said ended-for-grace: majority false")
	}
}

func TestGapExtendedOnlyWhileNoVerdictSawIt(t *testing.T) {
	g := NewGrants(at(-10_000), 0.1, 550*time.Millisecond)
	g.renew("n1", 5, ttl, at(0)) // ends 550
	// Cut off for a while: the grant ran out, but no coordinator looked.
	// The display snapshot does not count as a verdict.
	if v := g.Snapshot(at(700)); !v.Ended("n1", 5) {
		t.Fatal("snapshot: grant not ended at 700")
	}
	if v, gen := g.renew("n1", 5, ttl, at(800)); v != Granted || gen != 5 {
		t.Fatalf("renewal after an unseen gap: %v %d, want granted 5", v, gen)
	}
	if g.Snapshot(at(1300)).Ended("n1", 5) {
		t.Fatal("extended grant ended before 800+550")
	}
	// A verdict view that is not asked about it records nothing.
	if !g.Verdicts(at(1400)).Ended("n1", 5) {
		t.Fatal("verdicts: grant not ended at 1400")
	}
	if v, _ := g.renew("n1", 5, ttl, at(1410)); v != Granted {
		t.Fatalf("renewal after a gap no verdict judged: %v, want granted", v)
	}
	// A verdict view asked about it sees the next gap: the grant is never
	// extended again.
	if !g.Verdicts(at(2000), Query{"n1", 5}).Ended("n1", 5) {
		t.Fatal("verdicts: grant not ended at 1400")
	}
	if v, _ := g.renew("n1", 5, ttl, at(2100)); v != Lapsed {
		t.Fatalf("renewal after a gap a verdict saw: %v, want lapsed", v)
	}
	if !g.Verdicts(at(2200)).Ended("n1", 5) {
		t.Fatal("a reported-ended grant came back")
	}
	// A new generation starts clean.
	if v, _ := g.renew("n1", 6, ttl, at(2300)); v != Granted {
		t.Fatalf("new generation: %v", v)
	}
	g.Snapshot(at(3000))
	if v, _ := g.renew("n1", 6, ttl, at(3000)); v != Granted {
		t.Fatalf("new generation after an unseen gap: %v, want granted", v)
	}
	// A running grant seen by a verdict view is not marked.
	g.Verdicts(at(3100))
	if v, _ := g.renew("n1", 6, ttl, at(3200)); v != Granted {
		t.Fatalf("renewal of a running grant after a verdict: %v", v)
	}
}

func TestVerdictOnAnUnknownGenerationIsFinal(t *testing.T) {
	// A voter that never granted n1's generation 7 (cut off when it
	// started) answers a coordinator's query "ended"; a late renewal of 7
	// must then be refused, or n1 could count this grant after the role
	// moved (a majority said ended).
	g := NewGrants(at(-10_000), 0.1, 550*time.Millisecond)
	if !g.Verdicts(at(0), Query{"n1", 7}).Ended("n1", 7) {
		t.Fatal("never granted: not ended")
	}
	if v, gen := g.renew("n1", 7, ttl, at(10)); v != Lapsed || gen != 7 {
		t.Fatalf("renewal of a generation reported ended: %v %d, want lapsed 7", v, gen)
	}
	if v, _ := g.renew("n1", 8, ttl, at(20)); v != Granted {
		t.Fatalf("next generation: %v, want granted", v)
	}
	// The same for a generation newer than the one the table holds.
	g.renew("n2", 3, ttl, at(0)) // ends 550
	if !g.Verdicts(at(100), Query{"n2", 4}).Ended("n2", 4) {
		t.Fatal("generation 4 never granted: not ended")
	}
	if v, _ := g.renew("n2", 4, ttl, at(200)); v != Lapsed {
		t.Fatalf("renewal of generation 4 after it was reported ended: %v, want lapsed", v)
	}
	// Generation 3's grant is kept as superseded: it still runs to 550.
	if g.Snapshot(at(300)).Ended("n2", 3) {
		t.Fatal("superseded generation 3 ended before its grant")
	}
	// A guarded table answers "not ended" and records nothing.
	r := NewGrants(at(0), 0.1, 550*time.Millisecond)
	if r.Verdicts(at(100), Query{"n3", 5}).Ended("n3", 5) {
		t.Fatal("guarded table said ended")
	}
	if v, _ := r.renew("n3", 5, ttl, at(200)); v != Granted {
		t.Fatalf("renewal after a guarded verdict: %v, want granted", v)
	}
}

func TestMajorityAskedRestrictsEnded(t *testing.T) {
	over := View{SinceGuard: time.Hour, Nodes: map[string]GrantView{"n1": {Gen: 5, Remaining: -time.Second}}}
	m := Majority{Voters: 3, Views: []View{over, over, over}}
	if !m.Ended("n1", 5) || !m.EndedFor("n1", 5, 0) {
		t.Fatal("unrestricted majority: not ended")
	}
	m.Asked = map[Query]bool{{"n2", 1}: true}
	if m.Ended("n1", 5) || m.EndedFor("n1", 5, 0) {
		t.Fatal("a pair the voters were not asked to judge counted as ended")
	}
	m.Asked[Query{"n1", 5}] = true
	if !m.Ended("n1", 5) {
		t.Fatal("an asked pair: not ended")
	}
}

// wall is a receive time whose wall clock is a real date, as on a node (the
// generations a holder starts are its wall clock in nanoseconds).
var wall = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// One forged renewal per voter at generation 2^64-1 used to lock a node out
// for good: every table held that generation, refused the node's real ones
// as stale, and the holder's floor (2^64-1)+1 wrapped to 0. Now the tables
// refuse the generation, and the holder neither wraps nor climbs to it.
func TestMaxGenerationCannotLockANodeOut(t *testing.T) {
	const maxGen = 1<<64 - 1
	g := NewGrants(wall.Add(-time.Hour), 0.1, 550*time.Millisecond)
	if _, _, err := g.Renew("n1", maxGen, ttl, wall); !errors.Is(err, ErrImplausibleGen) {
		t.Fatalf("renewal at 2^64-1: err %v, want ErrImplausibleGen", err)
	}
	if _, _, err := g.Renew("n1", uint64(wall.Add(2*MaxGenAhead).UnixNano()), ttl, wall); !errors.Is(err, ErrImplausibleGen) {
		t.Fatalf("renewal two hours ahead: err %v, want ErrImplausibleGen", err)
	}
	if g.Len() != 0 {
		t.Fatalf("refused renewals made %d table entries", g.Len())
	}
	// A verdict query at 2^64-1 is not recorded either.
	g.Verdicts(wall, Query{"n1", maxGen})
	h := NewHolder(ttl)
	gen := h.Begin(wall, uint64(wall.UnixNano()))
	if v, held, err := g.Renew("n1", gen, ttl, wall); err != nil || v != Granted || held != gen {
		t.Fatalf("the node's real generation after the forgeries: %v %d %v, want granted %d", v, held, err, gen)
	}
	// A stale refusal naming 2^64-1 (a voter that still holds it) is not
	// a floor: the holder's next generation stays near its clock.
	h.Result(gen, wall, 0, 2, []Refusal{{Stale, maxGen}})
	next := h.Begin(wall.Add(time.Millisecond), uint64(wall.UnixNano()))
	if next == 0 || next <= gen || !PlausibleGen(next, wall) {
		t.Fatalf("generation after a refusal at 2^64-1: %d (was %d)", next, gen)
	}
	// And at the top a holder stays there instead of wrapping to 0.
	h2 := &Holder{ttl: ttl, gen: maxGen, newGen: true}
	if got := h2.Begin(wall, 5); got != maxGen {
		t.Fatalf("Begin after 2^64-1: %d, want no wrap", got)
	}
}

func TestRenewTTLBounds(t *testing.T) {
	g := NewGrants(wall.Add(-time.Hour), 0.1, 550*time.Millisecond)
	gen := uint64(wall.UnixNano())
	for _, d := range []time.Duration{0, -time.Second, MaxTTL + time.Millisecond, 11 * time.Minute} {
		if _, _, err := g.Renew("n1", gen, d, wall); !errors.Is(err, ErrTTL) {
			t.Errorf("ttl %s: err %v, want ErrTTL", d, err)
		}
	}
	if v, _, err := g.Renew("n1", gen, MaxTTL, wall); err != nil || v != Granted {
		t.Fatalf("ttl = MaxTTL: %v %v", v, err)
	}
	if rem := g.Snapshot(wall).Nodes["n1"].Remaining; rem > MaxTTL+MaxTTL/10 {
		t.Fatalf("granted %s, more than MaxTTL with the margin", rem)
	}
}

func TestRetainPrunesNonMembersOnceEnded(t *testing.T) {
	g := NewGrants(at(-10_000), 0.1, 550*time.Millisecond)
	g.renew("n1", 5, ttl, at(0)) // ends 550
	g.renew("n2", 5, ttl, at(0))
	g.renew("gone", 5, ttl, at(0))
	g.Verdicts(at(100), Query{"never", 3}) // a recorded query makes an entry
	member := func(id string) bool { return id == "n1" || id == "n2" }
	g.Retain(member, at(100))
	if _, ok := g.Snapshot(at(100)).Nodes["gone"]; !ok {
		t.Fatal("a grant still running was dropped: a coordinator would see it ended early")
	}
	if _, ok := g.Snapshot(at(100)).Nodes["never"]; ok {
		t.Fatal("an ended entry of a non-member was kept")
	}
	g.Retain(member, at(550))
	if ids := SortedIDs(g.Snapshot(at(550))); !reflect.DeepEqual(ids, []string{"n1", "n2"}) {
		t.Fatalf("after the grant ended: table holds %v, want the members", ids)
	}
	// A superseded grant still running keeps the entry too.
	g.renew("gone", 1, ttl, at(1000))
	g.renew("gone", 2, time.Millisecond, at(1001))
	g.Retain(member, at(1100))
	if _, ok := g.Snapshot(at(1100)).Nodes["gone"]; !ok {
		t.Fatal("a running superseded grant was dropped")
	}
}

func TestViewAged(t *testing.T) {
	v := View{Guarded: true, SinceGuard: -50 * time.Millisecond, Nodes: map[string]GrantView{
		"n1": {Gen: 11, Remaining: 400 * time.Millisecond, SupersededRemaining: 100 * time.Millisecond}}}
	got := v.Aged(200 * time.Millisecond)
	want := View{SinceGuard: 150 * time.Millisecond, Nodes: map[string]GrantView{
		"n1": {Gen: 11, Remaining: 200 * time.Millisecond, SupersededRemaining: -100 * time.Millisecond}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Aged(200ms): got %+v, want %+v", got, want)
	}
	if v.Nodes["n1"].Remaining != 400*time.Millisecond {
		t.Fatalf("Aged changed the view it was called on")
	}
	if still := v.Aged(10 * time.Millisecond); !still.Guarded {
		t.Fatalf("Aged(10ms) of a view 50ms before its guard's end: not guarded")
	}
	// Ended only once every grant ran out.
	if got.Ended("n1", 11) || !v.Aged(time.Second).Ended("n1", 11) {
		t.Fatalf("Ended on aged views: got %t after 200ms and %t after 1s, want false, true",
			got.Ended("n1", 11), v.Aged(time.Second).Ended("n1", 11))
	}
}

// EndsIn is exactly when the aged views first say the pair ended: a
// majority of the views, aged by d, say Ended, and aged by a nanosecond
// less they do not. Random views: grants current, superseded and missing,
// guarded tables, and fewer views than a quorum.
func TestMajorityEndsInIsWhenAgedViewsSayEnded(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	ms := func(n int) time.Duration { return time.Duration(rng.IntN(2*n)-n/2) * time.Millisecond }
	aged := func(m Majority, d time.Duration) Majority {
		out := Majority{Voters: m.Voters}
		for _, v := range m.Views {
			out.Views = append(out.Views, v.Aged(d))
		}
		return out
	}
	checked := 0
	for i := range 5000 {
		voters := []int{1, 3, 5, 7}[rng.IntN(4)]
		m := Majority{Voters: voters}
		for range rng.IntN(voters + 1) {
			v := View{SinceGuard: ms(600), Nodes: map[string]GrantView{}}
			v.Guarded = v.SinceGuard < 0
			switch rng.IntN(4) {
			case 0: // no grant to n1
			case 1:
				v.Nodes["n1"] = GrantView{Gen: 5, Remaining: ms(500), SupersededRemaining: ms(500)}
			case 2:
				v.Nodes["n1"] = GrantView{Gen: 6, Remaining: ms(500), SupersededRemaining: ms(500)} // 5 superseded
			case 3:
				v.Nodes["n1"] = GrantView{Gen: 4, Remaining: ms(500)} // 5 never granted here
			}
			m.Views = append(m.Views, v)
		}
		d, ok := m.EndsIn("n1", 5)
		if len(m.Views) < Quorum(voters) {
			if ok {
				t.Fatalf("case %d: %d views of %d voters: EndsIn ok", i, len(m.Views), voters)
			}
			continue
		}
		if !ok {
			t.Fatalf("case %d: %d views of %d voters: EndsIn not ok", i, len(m.Views), voters)
		}
		at := max(d, 0)
		if !aged(m, at).Ended("n1", 5) {
			t.Fatalf("case %d: EndsIn %v, but aged by %v a majority does not say ended: %+v", i, d, at, m)
		}
		if d > 0 && aged(m, d-1).Ended("n1", 5) {
			t.Fatalf("case %d: EndsIn %v, but a majority says ended a nanosecond sooner: %+v", i, d, m)
		}
		if d <= 0 != m.Ended("n1", 5) {
			t.Fatalf("case %d: EndsIn %v, Ended now %t", i, d, m.Ended("n1", 5))
		}
		checked++
	}
	if checked < 2000 {
		t.Fatalf("only %d cases had a quorum of views", checked)
	}
	if _, ok := (Majority{Voters: 3, Views: []View{{}, {}}, Asked: map[Query]bool{}}).EndsIn("n1", 5); ok {
		t.Fatal("EndsIn ok for a pair the views were not asked to judge")
	}
}
