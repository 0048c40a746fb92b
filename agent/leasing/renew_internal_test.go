package leasing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/fsm"

	"github.com/harbormaster/harbormaster/internal/clock/clocktest"
)

// The watchdog's sign of life is measured on the monotonic clock: wall
// steps neither age the last renewal pass (a live agent restarted by
// systemd) nor make it young (a wedged agent that keeps pinging).
func TestSinceRenewIgnoresWallSteps(t *testing.T) {
	clk := clocktest.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	n := &Node{clock: clk}
	clk.Advance(time.Minute)
	n.markRenew()
	clk.StepWall(time.Hour)
	if got := n.SinceRenew(); got != 0 {
		t.Fatalf("after a wall step of +1h: SinceRenew() = %v, want 0", got)
	}
	clk.Advance(3 * time.Second)
	clk.StepWall(-2 * time.Hour)
	if got := n.SinceRenew(); got != 3*time.Second {
		t.Fatalf("3s on, after a wall step of -2h: SinceRenew() = %v, want 3s", got)
	}
}

// A majority's grants extend the lease at once: a round does not hold the
// lease back until a member that does not answer (cut off) times out.
// Here the round's time is an hour, n2 grants and n3 never answers; the
// lease must be valid, and the actuators woken, while the round still
// waits for n3.
func TestRoundExtendsOnMajorityBeforeStragglers(t *testing.T) {
	st := fsm.NewState()
	st.Nodes = map[string]*fsm.Node{}
	for _, id := range []string{"n1", "n2", "n3"} {
		st.Nodes[id] = &fsm.Node{ID: id, LeaseTTLMillis: 500}
	}
	st.LeaseKey = &fsm.LeaseKey{ID: 1, Secret: fsm.Secret(bytes.Repeat([]byte{1}, fsm.LeaseKeySize))}
	listen := func() net.PacketConn {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, c2, c3 := listen(), listen(), listen() // nobody reads c3: n3 never answers
	ms := []Member{{ID: "n1", Voter: true, APIAddr: c1.LocalAddr().String()}, {ID: "n2", Voter: true, APIAddr: c2.LocalAddr().String()},
		{ID: "n3", Voter: true, APIAddr: c3.LocalAddr().String()}}
	log := slog.New(slog.DiscardHandler)
	members := func() ([]Member, error) { return ms, nil }
	n2 := New(Config{Self: "n2", Lease: 500 * time.Millisecond, Renew: 100 * time.Millisecond, State: func() *fsm.State { return st },
		Members: members, Boot: 1, Log: log}, c2)
	go func() { _ = n2.Serve() }()
	t.Cleanup(n2.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	validEarly := make(chan bool, 1)
	var n1 *Node
	n1 = New(Config{Self: "n1", Lease: 500 * time.Millisecond, Renew: time.Hour, State: func() *fsm.State { return st },
		Members: members, Boot: 1, Log: log,
		OnRenew: func() {
			_, valid, _ := n1.Lease(time.Now())
			select {
			case validEarly <- valid:
			default:
			}
			cancel() // end the round: n3 would keep it waiting for an hour
		}}, c1)
	go func() { _ = n1.Serve() }()
	t.Cleanup(n1.Close)

	guard := time.AfterFunc(30*time.Second, cancel)
	defer guard.Stop()
	_, granted, voters := n1.round(ctx, ms, time.Now())
	select {
	case v := <-validEarly:
		if !v {
			t.Fatal("woken during the round, but the lease is not valid")
		}
	default:
		t.Fatal("the round ended (30 s guard) without extending the lease on the majority of n1 and n2")
	}
	if granted != 2 || voters != 3 {
		t.Fatalf("granted %d of %d voters, want 2 of 3", granted, voters)
	}
}

// A renewal's age runs from the previous majority round's send to this
// round's majority grant; a round in which no other member answered (cut
// off) starts the count afresh, so an outage is not reported as an age.
func TestRoundReportsAge(t *testing.T) {
	st := fsm.NewState()
	st.Nodes = map[string]*fsm.Node{}
	for _, id := range []string{"n1", "n2", "n3"} {
		st.Nodes[id] = &fsm.Node{ID: id, LeaseTTLMillis: 500}
	}
	st.LeaseKey = &fsm.LeaseKey{ID: 1, Secret: fsm.Secret(bytes.Repeat([]byte{1}, fsm.LeaseKeySize))}
	listen := func() net.PacketConn {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, c2 := listen(), listen()
	// n3 has no address yet: not asked, but it counts as a voter.
	ms := []Member{{ID: "n1", Voter: true, APIAddr: c1.LocalAddr().String()}, {ID: "n2", Voter: true, APIAddr: c2.LocalAddr().String()},
		{ID: "n3", Voter: true}}
	log := slog.New(slog.DiscardHandler)
	members := func() ([]Member, error) { return ms, nil }
	n2 := New(Config{Self: "n2", Lease: 500 * time.Millisecond, Renew: 100 * time.Millisecond, State: func() *fsm.State { return st },
		Members: members, Boot: 1, Log: log}, c2)
	go func() { _ = n2.Serve() }()
	t.Cleanup(n2.Close)
	var cut atomic.Bool
	var ages []time.Duration
	n1 := New(Config{Self: "n1", Lease: 500 * time.Millisecond, Renew: 100 * time.Millisecond, State: func() *fsm.State { return st },
		Members: members, Boot: 1, Log: log, OnRenew: func() {},
		OnAge:  func(d time.Duration) { ages = append(ages, d) },
		Filter: func(from, to string) bool { return cut.Load() }}, c1)
	go func() { _ = n1.Serve() }()
	t.Cleanup(n1.Close)

	ctx := context.Background()
	first := time.Now()
	if _, g, _ := n1.round(ctx, ms, first); g != 2 {
		t.Fatalf("round 1: %d grants, want 2", g)
	}
	if len(ages) != 0 {
		t.Fatalf("first round reported ages %v", ages)
	}
	second := time.Now()
	if _, g, _ := n1.round(ctx, ms, second); g != 2 {
		t.Fatalf("round 2: %d grants, want 2", g)
	}
	if len(ages) != 1 || ages[0] < second.Sub(first) || ages[0] > time.Since(first) {
		t.Fatalf("round 2: ages %v, want one between %s and %s", ages, second.Sub(first), time.Since(first))
	}
	cut.Store(true)
	if _, g, _ := n1.round(ctx, ms, time.Now()); g != 1 {
		t.Fatalf("cut-off round: %d grants, want only its own", g)
	}
	cut.Store(false)
	if _, g, _ := n1.round(ctx, ms, time.Now()); g != 2 {
		t.Fatalf("round after the cut: %d grants, want 2", g)
	}
	if len(ages) != 1 {
		t.Fatalf("the round after a cut-off one reported an age: %v", ages)
	}
}

// A voter is redialed once its answers have failed for a lease, and then at
// most once a lease while they keep failing; an answer starts over.
func TestRedialDueAfterALeaseOfFailures(t *testing.T) {
	v := viewErrors{log: slog.New(slog.DiscardHandler), count: map[string]uint64{}, failing: map[string]bool{},
		since: map[string]time.Time{}, redialed: map[string]time.Time{}}
	const lease = 500 * time.Millisecond
	now := time.Now()
	if due, _ := v.redialDue("n2", now.Add(time.Hour), lease); due {
		t.Fatal("redial due for a voter that never failed")
	}
	v.failed("n2", errors.New("deadline"))
	first := v.since["n2"]
	for _, c := range []struct {
		after       time.Duration
		due, isFrst bool
	}{{100 * time.Millisecond, false, false}, {lease, true, true}, {lease + 100*time.Millisecond, false, false}, {2 * lease, true, false}} {
		if due, isFirst := v.redialDue("n2", first.Add(c.after), lease); due != c.due || isFirst != c.isFrst {
			t.Fatalf("%v after the first failure: redial due %t (first %t), want %t (%t)", c.after, due, isFirst, c.due, c.isFrst)
		}
	}
	v.ok("n2")
	v.failed("n2", errors.New("deadline"))
	v.since["n2"] = first.Add(10 * lease) // the new run starts after the redials above
	if due, _ := v.redialDue("n2", v.since["n2"].Add(lease/2), lease); due {
		t.Fatal("redial due half a lease into a new run of failures")
	}
	if due, first := v.redialDue("n2", v.since["n2"].Add(lease), lease); !due || !first {
		t.Fatalf("a lease into a new run of failures: redial due %t, first %t; want both", due, first)
	}
}

// Only a call that got no answer is a reason to dial again; a refusal is
// an answer.
func TestTransportFailure(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.Unavailable, "connection refused"), true},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), true},
		{status.Error(codes.PermissionDenied, "only the leader asks"), false},
		{errors.New("the voter has not registered its API address"), false},
	} {
		if got := transportFailure(c.err); got != c.want {
			t.Errorf("transportFailure(%v) = %t, want %t", c.err, got, c.want)
		}
	}
}
