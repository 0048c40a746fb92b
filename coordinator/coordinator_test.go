package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/clock/clocktest"
	"github.com/harbormaster/harbormaster/lease"
	"github.com/harbormaster/harbormaster/spec"
)

// fakeRaft is a single-node Raft in memory: Propose encodes the command and
// applies it to a real *fsm.FSM as the next log entry, the way the leader's
// FSM goroutine would, and returns the FSM's answer.
type fakeRaft struct {
	f    *fsm.FSM
	term uint64

	mu        sync.Mutex
	index     uint64
	calls     []string // "barrier", "members", "majority", "propose <type> <role>"
	proposals []fsm.Command
	members   []string
	barrier   func(ctx context.Context) error                 // nil: succeed at once
	intercept func(cmd fsm.Command) (handled bool, err error) // nil: apply every proposal
	frozen    bool                                            // record calls made after the term stopped
	late      []string
}

func newFakeRaft(t *testing.T, cmds ...fsm.Command) *fakeRaft {
	t.Helper()
	r := &fakeRaft{f: fsm.New(), term: 7}
	for _, c := range cmds {
		if err := r.apply(c); err != nil {
			t.Fatalf("apply %s: got error %v, want nil", describe(c), err)
		}
	}
	return r
}

// apply puts cmd through the log without counting it as a proposal of the
// coordinator: it stands for the commands other nodes send.
func (r *fakeRaft) apply(cmd fsm.Command) error {
	b, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index++
	if res, ok := r.f.Apply(&raft.Log{Type: raft.LogCommand, Index: r.index, Data: b}).(error); ok && res != nil {
		return res
	}
	return nil
}

func (r *fakeRaft) record(call string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call)
	if r.frozen {
		r.late = append(r.late, call)
	}
}

func (r *fakeRaft) Barrier(ctx context.Context) error {
	r.record("barrier")
	r.mu.Lock()
	b := r.barrier
	r.mu.Unlock()
	if b != nil {
		return b(ctx)
	}
	return nil
}

func (r *fakeRaft) Propose(ctx context.Context, cmd fsm.Command) (uint64, error) {
	r.record("propose " + cmd.Type().String() + " " + commandRole(cmd))
	r.mu.Lock()
	r.proposals = append(r.proposals, cmd)
	icpt := r.intercept
	r.mu.Unlock()
	if icpt != nil {
		if handled, err := icpt(cmd); handled {
			return 0, err
		}
	}
	if err := r.apply(cmd); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index, nil
}

func (r *fakeRaft) Term() uint64 { return r.term }

func (r *fakeRaft) Members() ([]string, error) {
	r.record("members")
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.members...), nil
}

func (r *fakeRaft) state() *fsm.State {
	st, _ := r.f.State()
	return st
}

func (r *fakeRaft) callList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *fakeRaft) count(call string) int {
	n := 0
	for _, c := range r.callList() {
		if c == call {
			n++
		}
	}
	return n
}

// proposeCalls is the list of calls without the reads (majority, members).
func (r *fakeRaft) proposeCalls() []string {
	var out []string
	for _, c := range r.callList() {
		if c != "majority" && c != "members" {
			out = append(out, c)
		}
	}
	return out
}

func (r *fakeRaft) proposed() []fsm.Command {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fsm.Command(nil), r.proposals...)
}

func (r *fakeRaft) assigns() []*fsm.Assign {
	var out []*fsm.Assign
	for _, p := range r.proposed() {
		if a, ok := p.(*fsm.Assign); ok {
			out = append(out, a)
		}
	}
	return out
}

func (r *fakeRaft) freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frozen = true
}

func (r *fakeRaft) lateCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.late)
}

func (r *fakeRaft) thaw() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frozen = false
	late := r.late
	r.late = nil
	return late
}

// fakeLeases answers Majority with a lease.Majority the test sets, and
// records each call as "majority" in the fake Raft's call list (one per
// reconcile pass).
type fakeLeases struct {
	r *fakeRaft

	mu   sync.Mutex
	maj  lease.Majority
	err  error
	hook func(ctx context.Context) error // called first, outside the lock, when set; its error is returned
}

func newFakeLeases(r *fakeRaft, m lease.Majority) *fakeLeases { return &fakeLeases{r: r, maj: m} }

func (l *fakeLeases) Majority(ctx context.Context) (lease.Majority, error) {
	l.r.record("majority")
	l.mu.Lock()
	hook := l.hook
	l.mu.Unlock()
	if hook != nil {
		if err := hook(ctx); err != nil {
			return lease.Majority{}, err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return lease.Majority{}, l.err
	}
	return l.maj, nil
}

// set replaces the verdicts; a Majority value is never changed in place.
func (l *fakeLeases) set(m lease.Majority) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maj, l.err = m, nil
}

func (l *fakeLeases) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = err
}

func (l *fakeLeases) setHook(h func(ctx context.Context) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hook = h
}

// grantRunning is a grant still running on a voter; grantOver one that
// ended there.
func grantRunning(gen uint64) lease.GrantView {
	return lease.GrantView{Gen: gen, Remaining: time.Second}
}

// grantOver ended an hour ago: longer than any stop timeout.
func grantOver(gen uint64) lease.GrantView {
	return lease.GrantView{Gen: gen, Remaining: -time.Hour}
}

// voterView is one voter's grant table with the given grants.
func voterView(grants map[string]lease.GrantView) lease.View {
	v := lease.View{SinceGuard: time.Hour, Nodes: map[string]lease.GrantView{}}
	for id, g := range grants {
		v.Nodes[id] = g
	}
	return v
}

// threeVoters is the verdict of three voters, of which those in views
// answered.
func threeVoters(views ...lease.View) lease.Majority {
	return lease.Majority{Voters: 3, Views: views}
}

// allRunning is three voters that all see each node running the generation
// given.
func allRunning(gens map[string]uint64) lease.Majority {
	grants := map[string]lease.GrantView{}
	for id, g := range gens {
		grants[id] = grantRunning(g)
	}
	return threeVoters(voterView(grants), voterView(grants), voterView(grants))
}

// checkMajority checks a hand-built Majority says what a test means it to.
func checkMajority(t *testing.T, m lease.Majority, live map[string]uint64, ended map[string]uint64, notEnded map[string]uint64) {
	t.Helper()
	if got := m.Live(); !reflect.DeepEqual(got, live) {
		t.Fatalf("test setup: Majority.Live() = %v, want %v", got, live)
	}
	for id, g := range ended {
		if !m.Ended(id, g) {
			t.Fatalf("test setup: Majority.Ended(%s, %d) = false, want true", id, g)
		}
	}
	for id, g := range notEnded {
		if m.Ended(id, g) {
			t.Fatalf("test setup: Majority.Ended(%s, %d) = true, want false", id, g)
		}
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// syncBuffer is a log sink safe to read while the coordinator writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const waitLimit = 5 * time.Second

// waitFor polls cond until it holds or waitLimit has passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// passes waits until the coordinator has started n more reconcile passes
// (each asks the voters once).
func passes(t *testing.T, r *fakeRaft, n int) {
	t.Helper()
	c0 := r.count("majority")
	waitFor(t, fmt.Sprintf("%d more reconcile passes", n), func() bool { return r.count("majority") >= c0+n })
}

// holds reports whether role is held by node, bound to gen, at epoch in r's
// state.
func holds(r *fakeRaft, role, node string, gen, epoch uint64) func() bool {
	return func() bool {
		a := r.state().Assignment(role)
		return a.Holder == node && a.HolderGen == gen && a.Epoch == epoch
	}
}

// running is a Coordinator.Run in progress.
type running struct {
	notify chan bool
	cancel context.CancelFunc
	done   chan error
}

// start runs c until the test ends. notify is unbuffered, so a send returns
// only once Run has taken the value, and a second send only once Run has
// finished handling the first.
func start(t *testing.T, c *Coordinator) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rn := &running{notify: make(chan bool), cancel: cancel, done: make(chan error, 1)}
	go func() { rn.done <- c.Run(ctx, rn.notify) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-rn.done:
			if err != nil {
				t.Errorf("Run: got %v, want nil after the cancellation", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("Run did not return within %v of the cancellation", waitLimit)
		}
	})
	return rn
}

func (rn *running) send(t *testing.T, v bool) {
	t.Helper()
	select {
	case rn.notify <- v:
	case <-time.After(waitLimit):
		t.Fatalf("Run did not take notify <- %t within %v", v, waitLimit)
	}
}

func newCoordinator(r *fakeRaft, l *fakeLeases, cfg Config) *Coordinator {
	cfg.NodeID = "n1"
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = quietLog()
	}
	return New(cfg, r, r.f.State, l)
}

func TestRunEstablishesLeadershipAndSeeds(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"), reg("n3"))
	r.members = []string{"n1", "n2", "n3"}
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11, "n2": 21, "n3": 31}))
	seed := &spec.Spec{Roles: []spec.Role{role("web", "n2:10", "n1"), role("db")}}
	c := newCoordinator(r, l, Config{Seed: seed, Settle: time.Minute})
	rn := start(t, c)
	rn.send(t, true)

	waitFor(t, "web on n2/21 and db on n1/11", func() bool { return holds(r, "web", "n2", 21, 1)() && holds(r, "db", "n1", 11, 1)() })

	calls := r.callList()
	wantPrefix := []string{"barrier", "propose record-event ", "propose apply-spec ", "members", "majority"}
	if len(calls) < len(wantPrefix) || !reflect.DeepEqual(calls[:len(wantPrefix)], wantPrefix) {
		t.Fatalf("calls: got %q, want them to start with %q", calls, wantPrefix)
	}
	ps := r.proposed()
	ev, ok := ps[0].(*fsm.RecordEvent)
	if !ok {
		t.Fatalf("first proposal: got %s, want the leadership event", describe(ps[0]))
	}
	if ev.Event.Kind != fsm.EventLeadership || ev.Event.Node != "n1" || ev.Event.Actor != "n1" || !strings.Contains(ev.Event.Message, "term 7") {
		t.Errorf("leadership event: got %+v, want kind %s by n1 naming term 7", ev.Event, fsm.EventLeadership)
	}
	as, ok := ps[1].(*fsm.ApplySpec)
	if !ok {
		t.Fatalf("second proposal: got %s, want the seed spec", describe(ps[1]))
	}
	if !as.Seed || as.Actor != "seed:n1" || !reflect.DeepEqual(as.Spec, seed) {
		t.Errorf("seed proposal: got %+v, want Seed with actor seed:n1 and the seed spec", as)
	}

	st := r.state()
	if st.SpecVersion != 1 || !reflect.DeepEqual(st.Spec.RoleNames(), []string{"db", "web"}) {
		t.Errorf("state spec: got version %d roles %v, want 1 [db web]", st.SpecVersion, st.Spec.RoleNames())
	}
	kinds := map[fsm.EventKind]int{}
	for _, e := range st.Events {
		kinds[e.Kind]++
	}
	if kinds[fsm.EventLeadership] != 1 || kinds[fsm.EventSpecApplied] != 1 || kinds[fsm.EventRoleAssigned] != 2 {
		t.Errorf("events: got %v, want 1 leadership, 1 spec-applied, 2 role-assigned", kinds)
	}
	for _, p := range ps[2:] {
		a, ok := p.(*fsm.Assign)
		if !ok {
			t.Errorf("later proposal: got %s, want only assigns", describe(p))
			continue
		}
		if a.Actor != "n1" || a.Time == 0 {
			t.Errorf("%s: got actor %q time %d, want n1 and a time", describe(a), a.Actor, a.Time)
		}
		if want := gen1(a.Node); a.HolderGen != want {
			t.Errorf("%s: got HolderGen %d, want the live generation %d", describe(a), a.HolderGen, want)
		}
	}
	if n := r.count("members"); n == 0 {
		t.Errorf("Members calls: got 0, want the settle check to read the membership")
	}

	// Being told again that we lead starts no second term.
	rn.send(t, true)
	rn.send(t, true)
	if n := r.count("barrier"); n != 1 {
		t.Errorf("barriers after repeated notify <- true: got %d, want 1", n)
	}
	if n := r.count("propose apply-spec "); n != 1 {
		t.Errorf("seed proposals: got %d, want 1", n)
	}
}

func TestRunDoesNotReseedAClusterWithASpec(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"), applySpec(role("old", "n2")))
	r.members = []string{"n1", "n2"}
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11, "n2": 21}))
	c := newCoordinator(r, l, Config{Seed: &spec.Spec{Roles: []spec.Role{role("new")}}, Settle: time.Minute})
	rn := start(t, c)
	rn.send(t, true)

	waitFor(t, "old on n2", holds(r, "old", "n2", 21, 1))
	for _, p := range r.proposed() {
		if p.Type() == fsm.TypeApplySpec {
			t.Errorf("proposals: got %s, want no seed for a cluster with a spec", describe(p))
		}
	}
	st := r.state()
	if st.SpecVersion != 1 || !reflect.DeepEqual(st.Spec.RoleNames(), []string{"old"}) {
		t.Errorf("state spec: got version %d roles %v, want 1 [old]", st.SpecVersion, st.Spec.RoleNames())
	}
	if a := st.Assignment("new"); a.Holder != "" {
		t.Errorf("role new: got holder %q, want none (not in the spec)", a.Holder)
	}
}

func TestRunWithoutSeed(t *testing.T) {
	r := newFakeRaft(t, reg("n1"))
	r.members = []string{"n1"}
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11}))
	c := newCoordinator(r, l, Config{Settle: time.Minute})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "two reconcile passes", func() bool { return r.count("majority") >= 2 && r.count("members") >= 2 })
	ps := r.proposed()
	if len(ps) != 1 || ps[0].Type() != fsm.TypeRecordEvent {
		t.Errorf("proposals: got %q, want only the leadership event", describeAll(ps))
	}
	if v := r.state().SpecVersion; v != 0 {
		t.Errorf("SpecVersion: got %d, want 0 (no seed)", v)
	}
}

func TestRunStopsTermOnLeadershipLoss(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"), reg("n3"),
		applySpec(role("web", "n1:10", "n2:5", "n3"), role("db", "n2:10", "n3")))
	r.members = []string{"n1", "n2", "n3"}
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11, "n2": 21, "n3": 31}))
	c := newCoordinator(r, l, Config{})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "web on n1 and db on n2", func() bool { return holds(r, "web", "n1", 11, 1)() && holds(r, "db", "n2", 21, 1)() })

	// While leading, a change in the state is acted on (a leaving holder
	// would release by itself, and is asked only after leaveGrace).
	if err := r.apply(regWitness("n1")); err != nil {
		t.Fatalf("n1 re-registered as a witness: %v", err)
	}
	waitFor(t, "a release request for web", func() bool { return r.state().Assignment("web").Releasing })

	// Losing leadership stops the term: the second send returns only after
	// Run handled the first, and Run handles it by waiting for the term.
	rn.send(t, false)
	rn.send(t, false)
	r.freeze()
	if err := r.apply(leave("n2")); err != nil {
		t.Fatalf("leave n2: %v", err)
	}
	// The verdicts change too: n1's generation ended (a running term would
	// move web at once); n2's is not live, but a voter that just restarted
	// keeps it from being ended.
	restarted := voterView(map[string]lease.GrantView{"n3": grantRunning(31)})
	restarted.Guarded = true
	changed := threeVoters(voterView(map[string]lease.GrantView{"n2": grantRunning(21), "n3": grantRunning(31)}),
		restarted, voterView(map[string]lease.GrantView{"n3": grantRunning(31)}))
	checkMajority(t, changed, map[string]uint64{"n3": 31}, map[string]uint64{"n1": 11}, map[string]uint64{"n2": 21})
	l.set(changed)
	// Give a wrongly running term many ticks to act on the changes.
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) && r.lateCalls() == 0 {
		time.Sleep(time.Millisecond)
	}
	if late := r.thaw(); len(late) != 0 {
		t.Fatalf("calls after leadership was lost: got %q, want none (no barrier, majority or proposal)", late)
	}
	if r.state().Assignment("db").Releasing {
		t.Fatalf("db: got a release request after leadership was lost, want none")
	}

	// Leading again starts a new term with a new barrier and event, and it
	// acts on what changed meanwhile: web's holder n1 ended, db's holder n2
	// is neither live nor ended, so db stays.
	rn.send(t, true)
	waitFor(t, "web on n3 in the new term", holds(r, "web", "n3", 31, 2))
	passes(t, r, 2)
	if a := r.state().Assignment("db"); a.Holder != "n2" || a.Epoch != 1 || a.Releasing {
		t.Errorf("db in the new term: got %+v, want n2 at epoch 1 (its generation neither live nor ended)", a)
	}
	if n := r.count("barrier"); n != 2 {
		t.Errorf("barriers: got %d, want 2 (one per term)", n)
	}
	if n := r.count("propose record-event "); n != 2 {
		t.Errorf("leadership events: got %d, want 2 (one per term)", n)
	}
}

func TestRunLeadershipLossCancelsAPendingMajority(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), applySpec(role("web")))
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11}))
	entered := make(chan struct{})
	var once sync.Once
	var returned atomic.Bool
	l.setHook(func(ctx context.Context) error {
		once.Do(func() { close(entered) })
		<-ctx.Done() // the voters never answer
		returned.Store(true)
		return ctx.Err()
	})
	c := newCoordinator(r, l, Config{})
	rn := start(t, c)
	rn.send(t, true)
	select {
	case <-entered:
	case <-time.After(waitLimit):
		t.Fatalf("the term did not ask the voters within %v", waitLimit)
	}
	rn.send(t, false)
	rn.send(t, false) // taken only once the first was handled: the term has exited
	if !returned.Load() {
		t.Fatalf("leadership loss: Run went on before the term's Majority call returned")
	}
	if a := r.state().Assignment("web"); a.Holder != "" {
		t.Errorf("web: got holder %q, want none (the voters never answered)", a.Holder)
	}
}

func TestRunReturnsAfterTheTermExits(t *testing.T) {
	r := newFakeRaft(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var exited atomic.Bool
	r.barrier = func(ctx context.Context) error {
		close(entered)
		<-ctx.Done()
		<-release // the term is slow to wind down
		exited.Store(true)
		return ctx.Err()
	}
	c := newCoordinator(r, newFakeLeases(r, lease.Majority{}), Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notify := make(chan bool, 1)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, notify) }()
	notify <- true
	select {
	case <-entered:
	case <-time.After(waitLimit):
		t.Fatalf("the term did not reach its barrier within %v", waitLimit)
	}

	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while the term was still running, want it to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
		if !exited.Load() {
			t.Errorf("Run returned before the term goroutine exited")
		}
	case <-time.After(waitLimit):
		t.Fatalf("Run did not return within %v of the term exiting", waitLimit)
	}
	if n := len(r.proposed()); n != 0 {
		t.Errorf("proposals: got %d, want none (the barrier never succeeded)", n)
	}
	if n := r.count("majority"); n != 0 {
		t.Errorf("Majority calls: got %d, want none (the barrier never succeeded)", n)
	}
}

func TestRunReturnsWhenNotLeading(t *testing.T) {
	r := newFakeRaft(t)
	c := newCoordinator(r, newFakeLeases(r, lease.Majority{}), Config{})
	ctx, cancel := context.WithCancel(context.Background())
	notify := make(chan bool)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, notify) }()
	notify <- false
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("Run did not return within %v of the cancellation", waitLimit)
	}
	if calls := r.callList(); len(calls) != 0 {
		t.Errorf("calls: got %q, want none without leadership", calls)
	}
}

func TestRunReturnsAfterCancelWhileLeading(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), applySpec(role("web")))
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11}))
	c := newCoordinator(r, l, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notify := make(chan bool, 1)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, notify) }()
	notify <- true
	waitFor(t, "web on n1", holds(r, "web", "n1", 11, 1))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("Run did not return within %v of the cancellation", waitLimit)
	}
	// Run returned after the term: nothing calls in any more.
	n := len(r.callList())
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) && len(r.callList()) == n {
		time.Sleep(time.Millisecond)
	}
	if calls := r.callList(); len(calls) != n {
		t.Errorf("calls after Run returned: got %q, want none", calls[n:])
	}
}

func TestRunRetriesAFailedBarrier(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), applySpec(role("web")))
	var fails atomic.Int32
	r.barrier = func(ctx context.Context) error {
		if fails.Add(1) <= 2 {
			return errors.New("barrier timed out")
		}
		return nil
	}
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11}))
	c := newCoordinator(r, l, Config{})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "web on n1", holds(r, "web", "n1", 11, 1))
	calls := r.callList()
	want := []string{"barrier", "barrier", "barrier", "propose record-event "}
	if len(calls) < len(want) || !reflect.DeepEqual(calls[:len(want)], want) {
		t.Errorf("calls: got %q, want them to start with %q", calls, want)
	}
}

func TestRunMovesARoleWhenTheHoldersGenerationEnds(t *testing.T) {
	clock := clocktest.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	r := newFakeRaft(t, reg("n1"), reg("n2"), reg("n3"),
		applySpec(role("web", "n2:10", "n3:5", "n1")), assign("web", "n2", "", 1))
	r.members = []string{"n1", "n2", "n3"}
	others := map[string]lease.GrantView{"n1": grantRunning(11), "n3": grantRunning(31)}
	with := func(id string, g lease.GrantView) lease.View {
		v := voterView(others)
		v.Nodes[id] = g
		return v
	}
	// n2's grant ended on one voter, runs on another, and the third just
	// restarted and may have granted it: n2 is not live, and its
	// generation has not surely ended.
	restarted := voterView(others)
	restarted.Guarded = true
	limbo := threeVoters(with("n2", grantOver(21)), with("n2", grantRunning(21)), restarted)
	checkMajority(t, limbo, map[string]uint64{"n1": 11, "n3": 31}, nil, map[string]uint64{"n2": 21})
	l := newFakeLeases(r, limbo)
	var mu sync.Mutex
	var reported []int // proposals per pass, by OnReconcile
	c := newCoordinator(r, l, Config{Clock: clock, OnReconcile: func(_ time.Duration, n int) {
		mu.Lock()
		reported = append(reported, n)
		mu.Unlock()
	}})
	rn := start(t, c)
	rn.send(t, true)

	passes(t, r, 3)
	if ps := r.proposed(); len(ps) != 1 {
		t.Fatalf("proposals while n2's generation may still run: got %q, want only the leadership event", describeAll(ps))
	}
	if a := r.state().Assignment("web"); a.Holder != "n2" || a.Epoch != 1 {
		t.Fatalf("web while n2's generation may still run: got %+v, want n2 at epoch 1", a)
	}

	// The third voter's guard is over and it never granted n2: two of the
	// three say generation 21 ended.
	clock.Advance(5 * time.Second)
	over := threeVoters(with("n2", grantOver(21)), with("n2", grantRunning(21)), voterView(others))
	checkMajority(t, over, map[string]uint64{"n1": 11, "n3": 31}, map[string]uint64{"n2": 21}, nil)
	l.set(over)
	waitFor(t, "web on n3 at epoch 2", holds(r, "web", "n3", 31, 2))
	// Detected: the first pass that saw the majority verdict (the clock
	// stands still, so it is the same instant as the decision).
	want := &fsm.Assign{Role: "web", Node: "n3", PrevHolder: "n2", HolderGen: 31, Epoch: 2,
		Reason: "lease of n2 (generation 21) ended", Actor: "n1", Time: clock.Now().UnixMilli(), Detected: clock.Now().UnixMilli(), Cause: fsm.CauseLease}
	passes(t, r, 2)
	if moves := r.assigns(); len(moves) != 1 || !reflect.DeepEqual(moves[0], want) {
		t.Fatalf("assigns: got %+v, want exactly %+v", moves, want)
	}
	// OnReconcile saw every pass, and the one move as one proposal.
	mu.Lock()
	defer mu.Unlock()
	if slices.Index(reported, 1) < 0 || len(reported) < 5 {
		t.Fatalf("OnReconcile reports %v: want at least 5 passes, one of them proposing 1 command", reported)
	}
}

func TestRunRebindsAHolderThatStartedANewGeneration(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"),
		applySpec(role("web", "n2:10", "n1")), assign("web", "n2", "", 1))
	// n2 lapsed and renews at generation 22; the grants of 21 still run on
	// every voter.
	renewed := func(superseded time.Duration) lease.GrantView {
		return lease.GrantView{Gen: 22, Remaining: time.Second, SupersededRemaining: superseded}
	}
	view := func(n2 lease.GrantView) lease.View {
		return voterView(map[string]lease.GrantView{"n1": grantRunning(11), "n2": n2})
	}
	waiting := threeVoters(view(renewed(time.Millisecond)), view(renewed(time.Millisecond)), view(renewed(-time.Millisecond)))
	checkMajority(t, waiting, map[string]uint64{"n1": 11, "n2": 22}, nil, map[string]uint64{"n2": 21})
	l := newFakeLeases(r, waiting)
	c := newCoordinator(r, l, Config{})
	rn := start(t, c)
	rn.send(t, true)

	passes(t, r, 3)
	if ps := r.proposed(); len(ps) != 1 {
		t.Fatalf("proposals while generation 21 may still run: got %q, want only the leadership event", describeAll(ps))
	}

	done := threeVoters(view(renewed(time.Millisecond)), view(renewed(-time.Hour)), view(renewed(-time.Hour)))
	checkMajority(t, done, map[string]uint64{"n1": 11, "n2": 22}, map[string]uint64{"n2": 21}, nil)
	l.set(done)
	waitFor(t, "web on n2 at generation 22, epoch 2", holds(r, "web", "n2", 22, 2))
	passes(t, r, 2)
	moves := r.assigns()
	if len(moves) != 1 || moves[0].PrevHolder != "n2" || moves[0].Node != "n2" || moves[0].HolderGen != 22 {
		t.Fatalf("assigns: got %q, want exactly one, n2 -> n2 at generation 22", describeAll(r.proposed()[1:]))
	}
}

func TestRunMajorityErrorIsLoggedAndRetried(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"), applySpec(role("web", "n2")))
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11, "n2": 21}))
	l.fail(errors.New("voters unreachable"))
	var logs syncBuffer
	c := newCoordinator(r, l, Config{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	rn := start(t, c)
	rn.send(t, true)

	passes(t, r, 3)
	if ps := r.proposed(); len(ps) != 1 || ps[0].Type() != fsm.TypeRecordEvent {
		t.Fatalf("proposals while the voters cannot be asked: got %q, want only the leadership event", describeAll(ps))
	}
	waitFor(t, "the failure in the log", func() bool {
		s := logs.String()
		return strings.Contains(s, "reconcile failed") && strings.Contains(s, "voters unreachable")
	})

	l.set(allRunning(map[string]uint64{"n1": 11, "n2": 21}))
	waitFor(t, "web on n2 once the voters answer", holds(r, "web", "n2", 21, 1))
}

func TestRunSettlesBeforePlacing(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"), applySpec(role("web", "n3:10", "n1", "n2")))
	r.members = []string{"n1", "n2", "n3"} // n3 has not registered yet
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11, "n2": 21, "n3": 31}))
	c := newCoordinator(r, l, Config{Settle: time.Minute})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "three reconcile passes", func() bool { return r.count("members") >= 3 })
	if a := r.state().Assignment("web"); a.Holder != "" {
		t.Fatalf("web while n3 is unregistered: got holder %q, want none yet", a.Holder)
	}
	if err := r.apply(reg("n3")); err != nil {
		t.Fatalf("register n3: %v", err)
	}
	waitFor(t, "web on n3", holds(r, "web", "n3", 31, 1))
}

func TestRunSkipsRejectedCommands(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"), applySpec(role("a"), role("b")))
	var rejected atomic.Int32
	r.intercept = func(cmd fsm.Command) (bool, error) {
		if a, ok := cmd.(*fsm.Assign); ok && a.Role == "a" && rejected.Add(1) == 1 {
			return true, fmt.Errorf("propose: %w", &fsm.RejectedError{Command: "assign", Reason: "stale"})
		}
		return false, nil
	}
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11, "n2": 21}))
	c := newCoordinator(r, l, Config{})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "a and b placed", func() bool {
		st := r.state()
		return st.Assignment("a").Holder != "" && st.Assignment("b").Holder != ""
	})
	calls := r.proposeCalls()
	want := []string{"barrier", "propose record-event ", "propose assign a", "propose assign b"}
	if len(calls) < len(want) || !reflect.DeepEqual(calls[:len(want)], want) {
		t.Errorf("calls: got %q, want them to start with %q (b proposed after a's rejection)", calls, want)
	}
	// The first pass planned a on n1 and b on n2 and only b applied; the
	// next pass gives a to n1, the node with fewer roles.
	if a, b := r.state().Assignment("a"), r.state().Assignment("b"); a.Holder != "n1" || a.HolderGen != 11 || b.Holder != "n2" || b.HolderGen != 21 {
		t.Errorf("holders: got a=%q/%d b=%q/%d, want a=n1/11 b=n2/21", a.Holder, a.HolderGen, b.Holder, b.HolderGen)
	}
}

func TestRunReactsToStateChangesBetweenTicks(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), applySpec(role("web", "n2")))
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11, "n2": 21}))
	// The tick never comes during the test: only the state's change channel
	// can wake the term.
	c := newCoordinator(r, l, Config{Interval: time.Hour})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "the leadership event and a first pass", func() bool {
		return r.count("propose record-event ") == 1 && r.count("majority") >= 1
	})
	if err := r.apply(reg("n2")); err != nil {
		t.Fatalf("register n2: %v", err)
	}
	waitFor(t, "web on n2", holds(r, "web", "n2", 21, 1))
}

// A new leader has no lease timers to restart: it asks the voters, and
// holders they see running keep their roles across leader changes, however
// much time passes on the leader's clock.
func TestRunLeaderChangeKeepsLiveHolders(t *testing.T) {
	clock := clocktest.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	r := newFakeRaft(t, reg("n1"), reg("n2"),
		applySpec(role("web", "n1:10", "n2")), assign("web", "n2", "", 1))
	r.members = []string{"n1", "n2"}
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11, "n2": 21}))
	c := newCoordinator(r, l, Config{Settle: time.Second, Clock: clock})
	rn := start(t, c)
	for term := 0; term < 3; term++ {
		rn.send(t, true)
		passes(t, r, 3)
		clock.Advance(time.Hour)
		passes(t, r, 2)
		rn.send(t, false)
	}
	if a := r.state().Assignment("web"); a.Holder != "n2" || a.HolderGen != 21 || a.Epoch != 1 {
		t.Fatalf("web after three terms: got %+v, want n2 at generation 21, epoch 1", a)
	}
	for _, p := range r.proposed() {
		if p.Type() != fsm.TypeRecordEvent {
			t.Errorf("proposals: got %s, want only leadership events", describe(p))
		}
	}
	if n := r.count("propose record-event "); n != 3 {
		t.Errorf("leadership events: got %d, want 3", n)
	}
}

// operations.md: a removed node's roles move when its lease ends (it might
// still be running), not at once.
func TestRunRemovedHolderKeepsItsRoleUntilItsGenerationEnds(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"),
		applySpec(role("web", "n2:10", "n1")), assign("web", "n2", "", 1))
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11, "n2": 21}))
	c := newCoordinator(r, l, Config{})
	rn := start(t, c)
	rn.send(t, true)
	passes(t, r, 2)

	if err := r.apply(&fsm.RemoveNode{Node: "n2", Actor: "op", Time: t0}); err != nil {
		t.Fatalf("remove n2: %v", err)
	}
	// n2 is asked to let go, in case it still runs, but keeps web.
	waitFor(t, "a release request for web", func() bool { return r.state().Assignment("web").Releasing })
	passes(t, r, 2)
	if a := r.state().Assignment("web"); a.Holder != "n2" || a.Epoch != 1 || !a.Releasing {
		t.Fatalf("web after removing its holder: got %+v, want n2 at epoch 1, asked to release, while its lease runs", a)
	}
	// n2 stops renewing: first its grants are not live but not ended
	// either (one voter did not answer), then a majority says they ended.
	grants := func(n2 lease.GrantView) lease.View {
		return voterView(map[string]lease.GrantView{"n1": grantRunning(11), "n2": n2})
	}
	limbo := threeVoters(grants(grantOver(21)), grants(grantRunning(21)))
	checkMajority(t, limbo, map[string]uint64{"n1": 11}, nil, map[string]uint64{"n2": 21})
	l.set(limbo)
	passes(t, r, 3)
	if a := r.state().Assignment("web"); a.Holder != "n2" || a.Epoch != 1 {
		t.Fatalf("web while n2's generation may run: got %+v, want n2 at epoch 1", a)
	}
	over := threeVoters(grants(grantOver(21)), grants(grantRunning(21)), grants(grantOver(21)))
	checkMajority(t, over, map[string]uint64{"n1": 11}, map[string]uint64{"n2": 21}, nil)
	l.set(over)
	waitFor(t, "web on n1 at epoch 2", holds(r, "web", "n1", 11, 2))
}

func TestRunReleasesARemovedRoleOnceItsHoldersGenerationEnded(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), reg("n2"),
		applySpec(role("web"), role("db", "n1")), assign("web", "n2", "", 1), assign("db", "n1", "", 1), applySpec(role("db", "n1")))
	// n2 is gone: not live, and the voters do not say it ended yet.
	limbo := threeVoters(voterView(map[string]lease.GrantView{"n1": grantRunning(11), "n2": grantRunning(21)}),
		voterView(map[string]lease.GrantView{"n1": grantRunning(11)}))
	checkMajority(t, limbo, map[string]uint64{"n1": 11}, nil, map[string]uint64{"n2": 21})
	l := newFakeLeases(r, limbo)
	c := newCoordinator(r, l, Config{})
	rn := start(t, c)
	rn.send(t, true)
	passes(t, r, 3)
	if ps := r.proposed(); len(ps) != 1 {
		t.Fatalf("proposals while n2 may still act: got %q, want only the leadership event", describeAll(ps))
	}
	over := threeVoters(voterView(map[string]lease.GrantView{"n1": grantRunning(11), "n2": grantRunning(21)}),
		voterView(map[string]lease.GrantView{"n1": grantRunning(11)}), voterView(map[string]lease.GrantView{"n1": grantRunning(11)}))
	checkMajority(t, over, map[string]uint64{"n1": 11}, map[string]uint64{"n2": 21}, nil)
	l.set(over)
	waitFor(t, "web released", func() bool { a := r.state().Assignment("web"); return a.Holder == "" && a.Epoch == 1 })
	var rel *fsm.Release
	for _, p := range r.proposed() {
		if x, ok := p.(*fsm.Release); ok {
			rel = x
		}
	}
	if rel == nil || rel.Node != "n2" || rel.Role != "web" || rel.Epoch != 1 {
		t.Fatalf("release: got %+v, want web released for n2 at epoch 1", rel)
	}
}

func TestLeaderInstallsTheFirstLeaseKey(t *testing.T) {
	r := newFakeRaft(t, reg("n1"))
	r.members = []string{"n1"}
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11}))
	var fail atomic.Bool
	fail.Store(true)
	newKey := func() (fsm.Secret, error) {
		if fail.Swap(false) {
			return nil, errors.New("entropy unavailable")
		}
		return fsm.Secret(bytes.Repeat([]byte{7}, fsm.LeaseKeySize)), nil
	}
	c := newCoordinator(r, l, Config{Settle: time.Minute, NewLeaseKey: newKey})
	rn := start(t, c)
	rn.send(t, true)
	// The first attempt fails; a reconcile pass tries again.
	waitFor(t, "a lease key", func() bool { return r.state().LeaseKey != nil })
	if k := r.state().LeaseKey; k.ID != 1 || !bytes.Equal(k.Secret, bytes.Repeat([]byte{7}, fsm.LeaseKeySize)) {
		t.Fatalf("lease key: id %d", k.ID)
	}
	waitFor(t, "two more reconcile passes", func() bool { return r.count("majority") >= 3 })
	if n := r.count("propose lease-key "); n != 1 {
		t.Fatalf("lease-key proposals: %d, want 1 (none once a key is committed)", n)
	}
}

func TestLeaderKeepsAnExistingLeaseKey(t *testing.T) {
	r := newFakeRaft(t, reg("n1"), &fsm.SetLeaseKey{ID: 1, Secret: bytes.Repeat([]byte{1}, fsm.LeaseKeySize)})
	r.members = []string{"n1"}
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11}))
	c := newCoordinator(r, l, Config{Settle: time.Minute,
		NewLeaseKey: func() (fsm.Secret, error) { return fsm.Secret(bytes.Repeat([]byte{2}, fsm.LeaseKeySize)), nil }})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "two reconcile passes", func() bool { return r.count("majority") >= 2 })
	if n := r.count("propose lease-key "); n != 0 {
		t.Fatalf("lease-key proposals: %d, want none", n)
	}
}

// TestLeaderSetsTheClusterIDOnce: a leader finding no cluster id proposes
// one, and none once it is committed; an existing id is kept.
func TestLeaderSetsTheClusterIDOnce(t *testing.T) {
	r := newFakeRaft(t, reg("n1"))
	r.members = []string{"n1"}
	l := newFakeLeases(r, allRunning(map[string]uint64{"n1": 11}))
	id := "00112233445566778899aabbccddeeff"
	c := newCoordinator(r, l, Config{Settle: time.Minute, NewClusterID: func() (string, error) { return id, nil }})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "the cluster id", func() bool { return r.state().ClusterID == id })
	waitFor(t, "two more reconcile passes", func() bool { return r.count("majority") >= 3 })
	if n := r.count("propose cluster-id "); n != 1 {
		t.Fatalf("cluster-id proposals: %d, want 1", n)
	}

	kept := newFakeRaft(t, reg("n1"), &fsm.SetClusterID{ID: id})
	kept.members = []string{"n1"}
	c2 := newCoordinator(kept, newFakeLeases(kept, allRunning(map[string]uint64{"n1": 11})), Config{Settle: time.Minute,
		NewClusterID: func() (string, error) { return "ffeeddccbbaa99887766554433221100", nil }})
	rn2 := start(t, c2)
	rn2.send(t, true)
	waitFor(t, "two reconcile passes", func() bool { return kept.count("majority") >= 2 })
	if n := kept.count("propose cluster-id "); n != 0 || kept.state().ClusterID != id {
		t.Fatalf("cluster-id proposals %d, id %s; want none and %s kept", n, kept.state().ClusterID, id)
	}
}
