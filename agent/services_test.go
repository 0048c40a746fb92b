package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/checks"
	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/conf"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// fakeServices stands in for the service actuators of every node of a
// cluster: it keeps which node runs each service and flags any instant at
// which two nodes run the same one (S1 for services).
type fakeServices struct {
	mu      sync.Mutex
	running map[string]map[string]uint64    // role -> node -> epoch
	started map[string]map[string]time.Time // role -> node -> last start
	log     []string
	dual    []string
	// hangStop makes Stop on that node block until its context ends (the
	// service keeps running, as with a hung stop hook).
	hangStop map[string]bool
}

func newFakeServices() *fakeServices {
	return &fakeServices{running: map[string]map[string]uint64{}, started: map[string]map[string]time.Time{}, hangStop: map[string]bool{}}
}

func (f *fakeServices) actuatorFor(node string) func(string, service.Config) (service.Actuator, error) {
	return func(role string, sc service.Config) (service.Actuator, error) {
		entry := strings.Join(sc.Stop, " ")
		if sc.Mode == service.ModeSystemd {
			entry = sc.Unit
		}
		return &fakeActuator{f: f, node: node, entry: entry}, nil
	}
}

type fakeActuator struct {
	f    *fakeServices
	node string
	// entry is the stop argv of the services entry it was built from (the
	// unit in systemd mode).
	entry string
}

func (a *fakeActuator) Start(_ context.Context, env service.Env) error {
	f := a.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running[env.Role] == nil {
		f.running[env.Role] = map[string]uint64{}
	}
	for other, epoch := range f.running[env.Role] {
		if other != a.node {
			f.dual = append(f.dual, fmt.Sprintf("%s started on %s at epoch %d while %s runs it at epoch %d", env.Role, a.node, env.Epoch, other, epoch))
		}
	}
	f.running[env.Role][a.node] = env.Epoch
	if f.started[env.Role] == nil {
		f.started[env.Role] = map[string]time.Time{}
	}
	f.started[env.Role][a.node] = time.Now()
	f.log = append(f.log, fmt.Sprintf("start %s %s %d", env.Role, a.node, env.Epoch))
	return nil
}

func (a *fakeActuator) Stop(ctx context.Context, env service.Env) error {
	f := a.f
	f.mu.Lock()
	hang := f.hangStop[a.node]
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return fmt.Errorf("stop hook timed out: %w", service.ErrTimeout)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.running[env.Role], a.node)
	f.log = append(f.log, fmt.Sprintf("stop %s %s by %s", env.Role, a.node, a.entry))
	return nil
}

func (a *fakeActuator) Status(context.Context, service.Env) (bool, error) {
	return false, service.ErrNoStatus
}

// waitAllAlive waits until a majority of voters sees every node's lease
// running (what the leader's coordinator places roles by).
func waitAllAlive(c *cluster) {
	c.waitFor("every node live for a majority", 5*time.Second, func() bool {
		l := c.leader()
		if l == nil {
			return false
		}
		m, err := l.agent.Majority(context.Background())
		return err == nil && len(m.Live()) == len(c.nodes)
	})
}

// stopsBy returns the entries (fakeActuator.entry) that stopped role on
// node, in order.
func (f *fakeServices) stopsBy(role, node string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.log {
		if e, ok := strings.CutPrefix(l, "stop "+role+" "+node+" by "); ok {
			out = append(out, e)
		}
	}
	return out
}

// logged returns a copy of the log of starts and stops.
func (f *fakeServices) logged() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

// startedAt returns when node last started role (zero if never).
func (f *fakeServices) startedAt(role, node string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started[role][node]
}

// runners returns the nodes running role now.
func (f *fakeServices) runners(role string) map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]uint64{}
	for n, e := range f.running[role] {
		out[n] = e
	}
	return out
}

func (f *fakeServices) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.dual) > 0 {
		t.Fatalf("two nodes ran one service: %q (log %q)", f.dual, f.log)
	}
}

func onlyRunner(f *fakeServices, role, node string, epoch uint64) func() bool {
	return func() bool {
		r := f.runners(role)
		return len(r) == 1 && r[node] == epoch
	}
}

func TestServiceRunsOnTheHolderOnlyAndFailsOverAfterTheGrace(t *testing.T) {
	f := newFakeServices()
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: notary, type: service, stop_timeout: 1s}\n",
		services: []string{"notary"}, fake: f})
	var holder string
	var epoch uint64
	c.waitFor("notary placed and started", 5*time.Second, func() bool {
		a := c.nodes[0].agent.State().Assignment("notary")
		holder, epoch = a.Holder, a.Epoch
		return holder != "" && onlyRunner(f, "notary", holder, epoch)()
	})

	// Cut the holder off: it stops its service when its lease ends; the
	// others start it only after the lease surely ended plus stop_timeout.
	cut := time.Now()
	c.isolate(holder)
	until := leaseEnd(c, c.node(holder))
	c.waitFor("the isolated holder stopped notary", 10*time.Second, func() bool { _, ok := f.runners("notary")[holder]; return !ok })
	stoppedAfter := time.Since(cut)
	var next string
	c.waitFor("notary running elsewhere", 10*time.Second, func() bool {
		r := f.runners("notary")
		for n := range r {
			next = n
		}
		return len(r) == 1 && next != holder
	})
	f.check(t)
	started := f.startedAt("notary", next)
	t.Logf("holder %s lease ended %v after the cut, stopped by %v; %s started it %v after the lease end",
		holder, until.Sub(cut), stoppedAfter, next, started.Sub(until))
	// Not before: the lease end the holder recorded is no later than the
	// voters' view of it, which the grace counts from.
	if grace := until.Add(time.Second); started.Before(grace) {
		t.Fatalf("notary started on %s at %s, before the holder's lease end %s plus the 1s stop_timeout grace",
			next, started.Format("15:04:05.000"), until.Format("15:04:05.000"))
	}
	if st := c.node(next).agent.State().Assignment("notary"); st.Epoch <= epoch || st.Holder != next {
		t.Fatalf("assignment after failover: %+v, want %s at an epoch above %d", st, next, epoch)
	}
}

func TestServiceMoveStopsBeforeTheNewStart(t *testing.T) {
	f := newFakeServices()
	// A stop_timeout far beyond the test: a move that waited for it
	// would not finish within the liveness wait below.
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: notary, type: service, stop_timeout: 10m}\n", services: []string{"notary"}, fake: f})
	c.waitFor("notary started", 5*time.Second, func() bool { return len(f.runners("notary")) == 1 })
	waitAllAlive(c)
	holder := c.nodes[0].agent.State().Assignment("notary").Holder
	target := c.others(holder)[0]
	if _, err := c.admin(c.nodes[0]).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "notary", Node: target, Actor: "test"}); err != nil {
		t.Fatalf("Move: %v", err)
	}
	c.waitFor("notary on the target, without waiting for the 10m stop_timeout", 10*time.Second, func() bool {
		a := c.nodes[0].agent.State().Assignment("notary")
		return a.Holder == target && onlyRunner(f, "notary", target, a.Epoch)()
	})
	f.check(t)
}

func TestServiceStopThatHangsFencesTheNode(t *testing.T) {
	f := newFakeServices()
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: notary, type: service, stop_timeout: 500ms}\n",
		services: []string{"notary"}, fake: f})
	c.waitFor("notary started", 5*time.Second, func() bool { return len(f.runners("notary")) == 1 })
	waitAllAlive(c)
	as := c.nodes[0].agent.State().Assignment("notary")
	f.mu.Lock()
	f.hangStop[as.Holder] = true
	f.mu.Unlock()
	target := c.others(as.Holder)[0]
	if _, err := c.admin(c.nodes[0]).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "notary", Node: target, Actor: "test"}); err != nil {
		t.Fatalf("Move: %v", err)
	}
	// The stop hangs: no release is committed; the node lets its lease
	// lapse and the role moves after the lease and the stop timeout.
	c.waitFor("notary reassigned", 10*time.Second, func() bool {
		return c.nodes[0].agent.State().Assignment("notary").Holder != as.Holder
	})
	st := c.nodes[0].agent.State()
	var released, timedOut, fenced bool
	for _, e := range st.Events {
		switch {
		case e.Kind == fsm.EventRoleReleased && e.Role == "notary" && e.Epoch == as.Epoch:
			released = true
		case e.Kind == fsm.EventService && e.Role == "notary" && e.Node == as.Holder && contains(e.Message, "stop timed out"):
			timedOut = true
		case e.Kind == fsm.EventService && e.Node == as.Holder && contains(e.Message, "fences itself"):
			fenced = true
		}
	}
	if released || !timedOut || !fenced {
		t.Fatalf("events: released %v (want false), stop timed out %v, fenced %v (want true): %+v", released, timedOut, fenced, st.Events)
	}
	if a := st.Assignment("notary"); a.Epoch <= as.Epoch || a.Holder != target {
		t.Fatalf("notary after the fence: %+v, want %s (the move's target) at an epoch above %d", a, target, as.Epoch)
	}
}

func TestRequiredCheckMovesTheRole(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: web, type: service, marker: true, requires: [healthy]}\n",
		checks: []checks.Config{{Name: "healthy", Type: "exec", Argv: []string{"test", "-e", filepath.Join(dir, "{node}")},
			Interval: conf.Duration(100 * time.Millisecond), Timeout: conf.Duration(100 * time.Millisecond), Fall: 2, Rise: 1}}})
	c.waitFor("web placed on a passing node", 5*time.Second, func() bool {
		st := c.nodes[0].agent.State()
		h := st.Assignment("web").Holder
		return h != "" && st.CheckPassing(h, "healthy")
	})
	holder := c.nodes[0].agent.State().Assignment("web").Holder
	if err := os.Remove(filepath.Join(dir, holder)); err != nil {
		t.Fatal(err)
	}
	c.waitFor("web moved off the failing node", 5*time.Second, func() bool {
		st := c.nodes[0].agent.State()
		h := st.Assignment("web").Holder
		return h != "" && h != holder && !st.Checks[holder]["healthy"].Passing && st.Checks[holder]["healthy"].Known
	})
	// The transition is an event, and the status API shows the check.
	ms, err := c.admin(c.nodes[0]).Members(ctxT(t, 5*time.Second), &hmv1.MembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range ms.Members {
		for _, ch := range m.Checks {
			if m.Id == holder && ch.Name == "healthy" && ch.State == "failing" && ch.Error != "" {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("Members: no failing healthy check with an error on %s: %v", holder, ms.Members)
	}
	ex, err := c.admin(c.nodes[0]).Explain(ctxT(t, 5*time.Second), &hmv1.ExplainRequest{Role: "web"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ex.Nodes {
		if n.Node == holder && (n.Eligible || len(n.Reasons) == 0 || !contains(n.Reasons[0], "healthy is failing")) {
			t.Fatalf("Explain for the failing node: %+v", n)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// A reloaded services entry of a held role keeps the role where it is (same
// holder, same epoch, the service not restarted) and applies at the next
// stop: a new stop hook stops the running instance; a new mode or unit
// does not (the entry that started the instance stops it).
func TestReloadServiceEntryAppliesAtTheNextStop(t *testing.T) {
	f := newFakeServices()
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: notary, type: service, stop_timeout: 1s}\n",
		services: []string{"notary"}, fake: f})
	var as fsm.Assignment
	c.waitFor("notary placed and started", 5*time.Second, func() bool {
		as = c.nodes[0].agent.State().Assignment("notary")
		return as.Holder != "" && onlyRunner(f, "notary", as.Holder, as.Epoch)()
	})
	waitAllAlive(c)
	nd := c.node(as.Holder)
	started := f.startedAt("notary", as.Holder)
	stopsBefore := len(f.stopsBy("notary", as.Holder)) // the stop at start-up (unsure whether it ran)
	reload := func(sc service.Config) config.Changes {
		t.Helper()
		next := *nd.cfg
		next.Services = map[string]service.Config{"notary": sc}
		ch, err := nd.agent.Reload(&next)
		if err != nil {
			t.Fatalf("Reload: %v", err)
		}
		nd.cfg = &next
		return ch
	}
	ch := reload(service.Config{Start: []string{"true"}, Stop: []string{"/bin/notary-stop", "v2"}})
	if !slices.Equal(ch.Services, []string{"notary"}) || !contains(ch.String(), "services ~notary (applies at the next start/stop)") {
		t.Fatalf("Reload = %+v (%q), want services ~notary applied at the next start/stop", ch, ch.String())
	}
	c.waitFor("the config-reloaded event", 5*time.Second, func() bool {
		for _, e := range nd.agent.State().Events {
			if e.Kind == fsm.EventConfigReloaded && e.Node == as.Holder && contains(e.Message, "services ~notary (applies at the next start/stop)") {
				return true
			}
		}
		return false
	})
	time.Sleep(300 * time.Millisecond) // room for a wrong restart or move
	if a := c.nodes[0].agent.State().Assignment("notary"); a.Holder != as.Holder || a.Epoch != as.Epoch {
		t.Fatalf("notary after the reload: %+v, want %s at epoch %d still", a, as.Holder, as.Epoch)
	}
	if !onlyRunner(f, "notary", as.Holder, as.Epoch)() || !f.startedAt("notary", as.Holder).Equal(started) || len(f.stopsBy("notary", as.Holder)) != stopsBefore {
		t.Fatalf("the reload restarted notary on %s (log %q)", as.Holder, f.logged())
	}
	// A new mode for the next instance: the running one is still stopped
	// by the (reloaded) hooks that run it.
	reload(service.Config{Mode: service.ModeSystemd, Unit: "notary.service"})

	target := c.others(as.Holder)[0]
	if _, err := c.admin(c.nodes[0]).Move(ctxT(t, 5*time.Second), &hmv1.MoveRequest{Role: "notary", Node: target, Actor: "test"}); err != nil {
		t.Fatalf("Move: %v", err)
	}
	c.waitFor("notary moved", 10*time.Second, func() bool {
		a := c.nodes[0].agent.State().Assignment("notary")
		return a.Holder == target && onlyRunner(f, "notary", target, a.Epoch)()
	})
	if got := f.stopsBy("notary", as.Holder)[stopsBefore:]; !slices.Equal(got, []string{"/bin/notary-stop v2"}) {
		t.Fatalf("notary on %s was stopped by %q, want the reloaded stop hook [/bin/notary-stop v2] once (log %q)", as.Holder, got, f.logged())
	}
	f.check(t)
}
