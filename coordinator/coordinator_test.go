package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/harbormaster/harbormaster/fsm"
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
	calls     []string // "barrier", "members", "propose <type> <role>"
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

func (r *fakeRaft) proposed() []fsm.Command {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fsm.Command(nil), r.proposals...)
}

func (r *fakeRaft) freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frozen = true
}

func (r *fakeRaft) thaw() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frozen = false
	late := r.late
	r.late = nil
	return late
}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// regTTL registers a node with the given lease.
func regTTL(id string, ttl time.Duration) *fsm.RegisterNode {
	r := reg(id)
	r.LeaseTTLMillis = ttl.Milliseconds()
	return r
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitFor polls cond until it holds or two seconds have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// holds reports whether role is held by node at epoch in r's state.
func holds(r *fakeRaft, role, node string, epoch uint64) func() bool {
	return func() bool {
		a := r.state().Assignment(role)
		return a.Holder == node && a.Epoch == epoch
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
		case <-rn.done:
		case <-time.After(2 * time.Second):
			t.Errorf("Run did not return within 2s of the cancellation")
		}
	})
	return rn
}

func (rn *running) send(t *testing.T, v bool) {
	t.Helper()
	select {
	case rn.notify <- v:
	case <-time.After(2 * time.Second):
		t.Fatalf("Run did not take notify <- %t within 2s", v)
	}
}

func newCoordinator(r *fakeRaft, cfg Config) *Coordinator {
	return newCoordinatorWith(r, cfg, NewLiveness(0.1))
}

func newCoordinatorWith(r *fakeRaft, cfg Config, live *Liveness) *Coordinator {
	cfg.NodeID = "n1"
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Millisecond
	}
	cfg.Log = quietLog()
	return New(cfg, r, r.f.State, live)
}

func TestRunEstablishesLeadershipAndSeeds(t *testing.T) {
	r := newFakeRaft(t, regTTL("n1", time.Minute), regTTL("n2", time.Minute), regTTL("n3", time.Minute))
	r.members = []string{"n1", "n2", "n3"}
	seed := &spec.Spec{Roles: []spec.Role{role("web", "n2:10", "n1"), role("db")}}
	c := newCoordinator(r, Config{Seed: seed, Settle: time.Minute})
	rn := start(t, c)
	rn.send(t, true)

	waitFor(t, "web on n2 and db on n1", func() bool { return holds(r, "web", "n2", 1)() && holds(r, "db", "n1", 1)() })

	calls := r.callList()
	wantPrefix := []string{"barrier", "propose record-event ", "propose apply-spec "}
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
	kinds := map[string]int{}
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
}

func TestRunDoesNotReseedAClusterWithASpec(t *testing.T) {
	r := newFakeRaft(t, regTTL("n1", time.Minute), regTTL("n2", time.Minute),
		applySpec(role("old", "n2")))
	r.members = []string{"n1", "n2"}
	c := newCoordinator(r, Config{Seed: &spec.Spec{Roles: []spec.Role{role("new")}}, Settle: time.Minute})
	rn := start(t, c)
	rn.send(t, true)

	waitFor(t, "old on n2", holds(r, "old", "n2", 1))
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
	r := newFakeRaft(t, regTTL("n1", time.Minute))
	r.members = []string{"n1"}
	c := newCoordinator(r, Config{Settle: time.Minute})
	rn := start(t, c)
	rn.send(t, true)
	// Every reconcile pass reads the membership while settling may apply.
	waitFor(t, "two reconcile passes", func() bool { return r.count("members") >= 2 })
	ps := r.proposed()
	if len(ps) != 1 || ps[0].Type() != fsm.TypeRecordEvent {
		t.Errorf("proposals: got %q, want only the leadership event", describeAll(ps))
	}
	if v := r.state().SpecVersion; v != 0 {
		t.Errorf("SpecVersion: got %d, want 0 (no seed)", v)
	}
}

func TestRunStopsTermOnLeadershipLoss(t *testing.T) {
	r := newFakeRaft(t, regTTL("n1", time.Minute), regTTL("n2", time.Minute), regTTL("n3", time.Minute),
		applySpec(role("web", "n1:10", "n2:5", "n3"), role("db", "n2:10", "n3")))
	r.members = []string{"n1", "n2", "n3"}
	c := newCoordinator(r, Config{})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "web on n1 and db on n2", func() bool { return holds(r, "web", "n1", 1)() && holds(r, "db", "n2", 1)() })

	// While leading, a change in the state is acted on.
	if err := r.apply(leave("n1")); err != nil {
		t.Fatalf("leave n1: %v", err)
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
	// Give a wrongly running term many ticks to act on the change.
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		late := len(r.late)
		r.mu.Unlock()
		if late > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if late := r.thaw(); len(late) != 0 {
		t.Fatalf("calls after leadership was lost: got %q, want none", late)
	}
	if r.state().Assignment("db").Releasing {
		t.Fatalf("db: got a release request after leadership was lost, want none")
	}

	// Leading again starts a new term with a new barrier and event.
	rn.send(t, true)
	waitFor(t, "a release request for db in the new term", func() bool { return r.state().Assignment("db").Releasing })
	if n := r.count("barrier"); n != 2 {
		t.Errorf("barriers: got %d, want 2 (one per term)", n)
	}
	if n := r.count("propose record-event "); n != 2 {
		t.Errorf("leadership events: got %d, want 2 (one per term)", n)
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
	c := newCoordinator(r, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notify := make(chan bool, 1)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, notify) }()
	notify <- true
	select {
	case <-entered:
	case <-time.After(2 * time.Second):
		t.Fatalf("the term did not reach its barrier within 2s")
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
	case <-time.After(2 * time.Second):
		t.Fatalf("Run did not return within 2s of the term exiting")
	}
	if n := len(r.proposed()); n != 0 {
		t.Errorf("proposals: got %d, want none (the barrier never succeeded)", n)
	}
}

func TestRunReturnsWhenNotLeading(t *testing.T) {
	r := newFakeRaft(t)
	c := newCoordinator(r, Config{})
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
	case <-time.After(2 * time.Second):
		t.Fatalf("Run did not return within 2s of the cancellation")
	}
	if calls := r.callList(); len(calls) != 0 {
		t.Errorf("calls: got %q, want none without leadership", calls)
	}
}

func TestRunRetriesAFailedBarrier(t *testing.T) {
	r := newFakeRaft(t, regTTL("n1", time.Minute), applySpec(role("web")))
	var fails atomic.Int32
	r.barrier = func(ctx context.Context) error {
		if fails.Add(1) <= 2 {
			return errors.New("barrier timed out")
		}
		return nil
	}
	c := newCoordinator(r, Config{})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "web on n1", holds(r, "web", "n1", 1))
	calls := r.callList()
	want := []string{"barrier", "barrier", "barrier", "propose record-event "}
	if len(calls) < len(want) || !reflect.DeepEqual(calls[:len(want)], want) {
		t.Errorf("calls: got %q, want them to start with %q", calls, want)
	}
}

func TestRunMovesARoleOffAnExpiredHolder(t *testing.T) {
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := newFakeRaft(t, regTTL("n1", time.Minute), regTTL("n2", time.Second), regTTL("n3", time.Minute),
		applySpec(role("web", "n2:10", "n3:5", "n1")), assign("web", "n2", "", 1))
	r.members = []string{"n1", "n2", "n3"}
	// As a follower, this node saw n2's last renewal long ago (say it was
	// cut off from the log for a while): by that old timestamp n2's lease is
	// over. Taking office resets every lease, so n2 keeps web for now.
	live := NewLiveness(0.1)
	live.Observe(r.state(), clock.Now().Add(-10*time.Second))
	// Settle is short but the clock stands still until advanced: every pass
	// before that reads the membership, which counts the passes.
	c := newCoordinatorWith(r, Config{Settle: time.Millisecond, Now: clock.Now}, live)
	rn := start(t, c)
	rn.send(t, true)

	// The new leader gives n2 a full lease from the moment it took office.
	waitFor(t, "three reconcile passes", func() bool { return r.count("members") >= 3 })
	if ps := r.proposed(); len(ps) != 1 {
		t.Fatalf("proposals while n2's lease runs: got %q, want only the leadership event", describeAll(ps))
	}

	clock.Advance(5 * time.Second) // n2's 1s lease (+10%) is over; n1's and n3's minute is not
	waitFor(t, "web on n3 at epoch 2", holds(r, "web", "n3", 2))
	var moves []*fsm.Assign
	for _, p := range r.proposed() {
		if a, ok := p.(*fsm.Assign); ok {
			moves = append(moves, a)
		}
	}
	want := &fsm.Assign{Role: "web", Node: "n3", PrevHolder: "n2", Epoch: 2, Reason: "lease of n2 expired", Actor: "n1",
		Time: clock.Now().UnixMilli()}
	if len(moves) != 1 || !reflect.DeepEqual(moves[0], want) {
		t.Fatalf("assigns: got %+v, want exactly %+v", moves, want)
	}
}

func TestRunSettlesBeforePlacing(t *testing.T) {
	r := newFakeRaft(t, regTTL("n1", time.Minute), regTTL("n2", time.Minute), applySpec(role("web", "n3:10", "n1", "n2")))
	r.members = []string{"n1", "n2", "n3"} // n3 has not registered yet
	c := newCoordinator(r, Config{Settle: time.Minute})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "three reconcile passes", func() bool { return r.count("members") >= 3 })
	if a := r.state().Assignment("web"); a.Holder != "" {
		t.Fatalf("web while n3 is unregistered: got holder %q, want none yet", a.Holder)
	}
	if err := r.apply(regTTL("n3", time.Minute)); err != nil {
		t.Fatalf("register n3: %v", err)
	}
	waitFor(t, "web on n3", holds(r, "web", "n3", 1))
}

func TestRunSkipsRejectedCommands(t *testing.T) {
	r := newFakeRaft(t, regTTL("n1", time.Minute), regTTL("n2", time.Minute), applySpec(role("a"), role("b")))
	var rejected atomic.Int32
	r.intercept = func(cmd fsm.Command) (bool, error) {
		if a, ok := cmd.(*fsm.Assign); ok && a.Role == "a" && rejected.Add(1) == 1 {
			return true, fmt.Errorf("propose: %w", &fsm.RejectedError{Command: "assign", Reason: "stale"})
		}
		return false, nil
	}
	c := newCoordinator(r, Config{})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "a and b placed", func() bool {
		st := r.state()
		return st.Assignment("a").Holder != "" && st.Assignment("b").Holder != ""
	})
	calls := r.callList()
	want := []string{"barrier", "propose record-event ", "propose assign a", "propose assign b"}
	if len(calls) < len(want) || !reflect.DeepEqual(calls[:len(want)], want) {
		t.Errorf("calls: got %q, want them to start with %q (b proposed after a's rejection)", calls, want)
	}
	// The first pass planned a on n1 and b on n2 and only b applied; the
	// next pass gives a to n1, the node with fewer roles.
	if a, b := r.state().Assignment("a"), r.state().Assignment("b"); a.Holder != "n1" || b.Holder != "n2" {
		t.Errorf("holders: got a=%q b=%q, want a=n1 b=n2", a.Holder, b.Holder)
	}
}

func TestRunReactsToStateChangesBetweenTicks(t *testing.T) {
	r := newFakeRaft(t, regTTL("n1", time.Minute), applySpec(role("web", "n2")))
	// The tick never comes during the test: only the state's change channel
	// can wake the term.
	c := newCoordinator(r, Config{Interval: time.Hour})
	rn := start(t, c)
	rn.send(t, true)
	waitFor(t, "the leadership event", func() bool { return r.count("propose record-event ") == 1 })
	if err := r.apply(regTTL("n2", time.Minute)); err != nil {
		t.Fatalf("register n2: %v", err)
	}
	waitFor(t, "web on n2", holds(r, "web", "n2", 1))
}

func TestRunRenewalsKeepTheHolder(t *testing.T) {
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := newFakeRaft(t, regTTL("n1", time.Hour), regTTL("n2", time.Second),
		applySpec(role("web", "n2:10", "n1")), assign("web", "n2", "", 1))
	r.members = []string{"n1", "n2"}
	// Settle outlasts the test, so every pass reads the membership and the
	// passes can be counted; every member is registered, so nothing waits.
	c := newCoordinator(r, Config{Settle: 2 * time.Hour, Now: clock.Now})
	rn := start(t, c)
	rn.send(t, true)
	passes := func(n int) {
		t.Helper()
		c0 := r.count("members")
		waitFor(t, fmt.Sprintf("%d more reconcile passes", n), func() bool { return r.count("members") >= c0+n })
	}
	passes(2)

	// n2 renews every 900ms, within its 1.1s lease, for three periods: at
	// the end, 2.7s after taking office, it still holds web.
	for seq := uint64(1); seq <= 3; seq++ {
		clock.Advance(900 * time.Millisecond)
		if err := r.apply(&fsm.RenewLease{Node: "n2", Seq: seq}); err != nil {
			t.Fatalf("renew n2: %v", err)
		}
		passes(2) // at least one whole pass saw the renewal
	}
	if a := r.state().Assignment("web"); a.Holder != "n2" || a.Epoch != 1 {
		t.Fatalf("web while n2 renews: got %+v, want n2 at epoch 1", a)
	}
	// Then n2 stops renewing.
	clock.Advance(1100 * time.Millisecond)
	waitFor(t, "web on n1 at epoch 2", holds(r, "web", "n1", 2))
}

// operations.md: a removed node's roles move when its lease runs out (it
// might still be running), not at once.
func TestRunRemovedHolderKeepsItsRoleForItsLease(t *testing.T) {
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := newFakeRaft(t, regTTL("n1", time.Hour), regTTL("n2", time.Second),
		applySpec(role("web", "n2:10", "n1")), assign("web", "n2", "", 1))
	r.members = []string{"n1", "n2"}
	c := newCoordinator(r, Config{Settle: 2 * time.Hour, Now: clock.Now})
	rn := start(t, c)
	rn.send(t, true)
	passes := func(n int) {
		t.Helper()
		c0 := r.count("members")
		waitFor(t, fmt.Sprintf("%d more reconcile passes", n), func() bool { return r.count("members") >= c0+n })
	}
	passes(2)

	clock.Advance(500 * time.Millisecond)
	if err := r.apply(&fsm.RemoveNode{Node: "n2", Actor: "op", Time: t0}); err != nil {
		t.Fatalf("remove n2: %v", err)
	}
	passes(2)
	// n2 is asked to let go, in case it still runs, but keeps web.
	if a := r.state().Assignment("web"); a.Holder != "n2" || a.Epoch != 1 || !a.Releasing {
		t.Fatalf("web 0.5s after removing its holder: got %+v, want n2 at epoch 1, asked to release, until its lease runs out", a)
	}
	clock.Advance(700 * time.Millisecond) // 1.2s since taking office: n2's 1.1s lease is over
	waitFor(t, "web on n1 at epoch 2", holds(r, "web", "n1", 2))
}
