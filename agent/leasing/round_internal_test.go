package leasing

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/harbormaster/harbormaster/fsm"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// voterServer answers Leases with one grant to n9, or, while hang is set,
// not at all until the call's deadline.
type voterServer struct {
	hmv1.UnimplementedClusterServer
	hang  atomic.Bool
	calls atomic.Int64
}

func (s *voterServer) Leases(ctx context.Context, _ *hmv1.LeasesRequest) (*hmv1.LeasesResponse, error) {
	s.calls.Add(1)
	if s.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &hmv1.LeasesResponse{SinceGuardUs: int64(time.Hour / time.Microsecond),
		Grants: []*hmv1.LeaseGrant{{Node: "n9", Gen: 7, RemainingUs: 400_000}}}, nil
}

func serveVoter(t *testing.T) (*voterServer, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vs := &voterServer{}
	s := grpc.NewServer()
	hmv1.RegisterClusterServer(s, vs)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return vs, l.Addr().String()
}

// A voter that stopped answering does not set the pace of the leader's
// lease rounds: the first round it fails waits the renew interval for it,
// the rounds after that return once the voters still answering have (a
// crashed voter's timeout made every round take the whole interval, so a
// crashed holder's lease end was noticed up to two intervals late). It is
// still asked, and once it answers again a round waits for it again. Nor
// do they wait for a voter that missed this node's last renewal.
func TestRoundsDoNotWaitForAFailingVoter(t *testing.T) {
	const renew = 400 * time.Millisecond
	n2, a2 := serveVoter(t)
	_, a3 := serveVoter(t)
	var mu sync.Mutex
	conns := map[string]*grpc.ClientConn{}
	conn := func(addr string) (*grpc.ClientConn, error) {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := conns[addr]; ok {
			return c, nil
		}
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		conns[addr] = c
		t.Cleanup(func() { c.Close() })
		return c, nil
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	st := fsm.NewState()
	n := New(Config{Self: "n1", Lease: time.Second, Renew: renew, State: func() *fsm.State { return st },
		Members: func() ([]Member, error) {
			return []Member{{ID: "n1", Voter: true}, {ID: "n2", Voter: true, APIAddr: a2}, {ID: "n3", Voter: true, APIAddr: a3}}, nil
		},
		Conn: conn, Log: slog.New(slog.DiscardHandler)}, udp)
	round := func(what string, wantViews int, atLeast, under time.Duration) {
		t.Helper()
		began := time.Now()
		m, err := n.Majority(context.Background())
		took := time.Since(began)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(m.Views) != wantViews {
			t.Fatalf("%s: %d views, want %d", what, len(m.Views), wantViews)
		}
		if took < atLeast || took >= under {
			t.Fatalf("%s: the round took %v, want [%v, %v)", what, took, atLeast, under)
		}
		others := 0
		for _, v := range m.Views {
			if gen, ok := v.Live("n9"); ok && gen == 7 && !v.Own {
				others++
			}
		}
		if others != wantViews-1 {
			t.Fatalf("%s: %d of the other voters' views came back, want %d", what, others, wantViews-1)
		}
	}
	round("all answering", 3, 0, renew/2)
	n2.hang.Store(true)
	round("n2 stops answering", 2, renew, 2*renew)
	calls := n2.calls.Load()
	for i := range 3 {
		round("n2 failing, round "+string(rune('1'+i)), 2, 0, renew/2)
	}
	// The three calls to n2 run in the background: wait for them to land.
	for deadline := time.Now().Add(5 * time.Second); n2.calls.Load() < calls+3; {
		if time.Now().After(deadline) {
			t.Fatalf("n2 asked %d times in the three rounds, want 3", n2.calls.Load()-calls)
		}
		time.Sleep(time.Millisecond)
	}
	if got := n2.calls.Load(); got != calls+3 {
		t.Fatalf("n2 asked %d times in the three rounds, want 3", got-calls)
	}
	n2.hang.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for n.views.isFailing("n2") { // the hung calls end; the next answer clears it
		if time.Now().After(deadline) {
			t.Fatal("n2 still failing 5 s after it answers again")
		}
		_, _ = n.Majority(context.Background())
		time.Sleep(10 * time.Millisecond)
	}
	round("n2 answers again", 3, 0, renew/2)

	// A voter that did not answer this node's last lease renewal is not
	// waited for either, though no poll of this node's has failed yet (a
	// leader elected after its predecessor crashed).
	ms, _ := n.cfg.Members()
	n.peers.note(ms, map[string]bool{"n1": true, "n3": true})
	n2.hang.Store(true)
	round("n2 missed the last renewal", 2, 0, renew/2)
}
