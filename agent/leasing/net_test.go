package leasing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/lease"
)

func key(b byte) fsm.Secret { return fsm.Secret(bytes.Repeat([]byte{b}, fsm.LeaseKeySize)) }

// rig is a granter's leaseNet ("n1", serving on loopback) and a peer
// socket that plays the other members, honest or not.
type rig struct {
	t       *testing.T
	ln      *leaseNet
	st      atomic.Pointer[fsm.State]
	mu      sync.Mutex
	members []Member
	peer    net.PacketConn
	nonce   uint64
	probes  uint64
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, members: []Member{{ID: "n1", Voter: true}, {ID: "n2", Voter: true}, {ID: "n3", Voter: true}}}
	st := fsm.NewState()
	st.Nodes = map[string]*fsm.Node{}
	for _, id := range []string{"n1", "n2", "n3"} {
		st.Nodes[id] = &fsm.Node{ID: id, LeaseTTLMillis: 500}
	}
	st.LeaseKey = &fsm.LeaseKey{ID: 1, Secret: key(1)}
	r.st.Store(st)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.peer, err = net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Self: "n1", State: r.st.Load, Members: r.memberList, Boot: 1,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r.ln = newLeaseNet(conn, cfg, lease.NewGrants(time.Now().Add(-time.Hour), Margin, 0))
	done := make(chan error, 1)
	go func() { done <- r.ln.serve() }()
	t.Cleanup(func() {
		r.ln.close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		r.peer.Close()
	})
	return r
}

func (r *rig) memberList() ([]Member, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Member(nil), r.members...), nil
}

// rotate installs key id with secret b, keeping the current one as the
// previous (fsm.SetLeaseKey).
func (r *rig) rotate(id uint32, b byte) {
	st := *r.st.Load()
	st.PrevLeaseKey, st.LeaseKey = st.LeaseKey, &fsm.LeaseKey{ID: id, Secret: key(b)}
	r.st.Store(&st)
}

// req builds a renewal of node at a fresh nonce; seq 0 takes the next one.
func (r *rig) req(node string, seq, gen uint64, ttlMs uint32) lease.Request {
	r.nonce++
	if gen == 0 {
		gen = uint64(time.Now().UnixNano())
	}
	return lease.Request{KeyID: 1, Nonce: r.nonce, Seq: seq, Node: node, To: "n1", Gen: gen, TTLMs: ttlMs}
}

func (r *rig) seal(q lease.Request, k []byte) []byte {
	b, err := lease.MarshalRequest(q, k)
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

func (r *rig) send(b []byte) {
	if _, err := r.peer.WriteTo(b, r.ln.conn.LocalAddr()); err != nil {
		r.t.Fatal(err)
	}
}

// probe sends an honest renewal of n3 after whatever was sent before and
// returns the nonces of the other replies that came before the probe's:
// the granter serves its socket in order, so the probe's reply means every
// earlier datagram was handled.
func (r *rig) probe() (replied []uint64) {
	r.t.Helper()
	r.probes++
	q := r.req("n3", r.probes, 0, 500)
	q.KeyID = r.st.Load().LeaseKey.ID
	r.send(r.seal(q, r.st.Load().LeaseKey.Secret))
	buf := make([]byte, lease.MaxDatagram)
	_ = r.peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, _, err := r.peer.ReadFrom(buf)
		if err != nil {
			r.t.Fatalf("no answer to the probe: %v", err)
		}
		m, err := lease.Unmarshal(buf[:n], r.st.Load().LeaseKeyByID)
		if err != nil {
			r.t.Fatalf("reply does not verify: %v", err)
		}
		rep := m.(*lease.Reply)
		if rep.Nonce == q.Nonce {
			return replied
		}
		replied = append(replied, rep.Nonce)
	}
}

// refused sends b and checks that it got no reply, left no table entry
// for node (when it had none) and was counted as reason.
func (r *rig) refused(what string, b []byte, node, reason string) {
	r.t.Helper()
	_, had := r.ln.grants.Snapshot(time.Now()).Nodes[node]
	before := r.ln.dropCounts()[reason]
	r.send(b)
	if got := r.probe(); len(got) != 0 {
		r.t.Errorf("%s: answered (nonces %v)", what, got)
	}
	if gv, has := r.ln.grants.Snapshot(time.Now()).Nodes[node]; has && !had {
		r.t.Errorf("%s: table entry for %s: %+v", what, node, gv)
	}
	if got := r.ln.dropCounts()[reason]; got != before+1 {
		r.t.Errorf("%s: %s drops %d, want %d (all drops %v)", what, reason, got, before+1, r.ln.dropCounts())
	}
}

func (r *rig) granted(what string, b []byte) {
	r.t.Helper()
	r.send(b)
	if got := r.probe(); len(got) != 1 {
		r.t.Errorf("%s: %d replies, want 1", what, len(got))
	}
}

func TestForgedAndWrongKeyRefused(t *testing.T) {
	r := newRig(t)
	r.refused("forged MAC", r.seal(r.req("n2", 1, 0, 500), key(0)), "n2", DropBadMAC)
	q := r.req("n2", 2, 0, 500)
	q.KeyID = 7
	r.refused("unknown key id", r.seal(q, key(1)), "n2", DropUnknownKey)
	r.granted("honest", r.seal(r.req("n2", 3, 0, 500), key(1)))
}

// TestDatagramsCounted: every datagram read is counted as received,
// dropped or not; only the replies written are counted as sent.
func TestDatagramsCounted(t *testing.T) {
	r := newRig(t)
	r.granted("honest", r.seal(r.req("n2", 1, 0, 500), key(1)))                       // two in (request, probe), two replies out
	r.refused("forged MAC", r.seal(r.req("n2", 2, 0, 500), key(0)), "n2", DropBadMAC) // two in, one reply out
	n := Node{net: r.ln}
	if sent, received := n.Datagrams(); sent != 3 || received != 4 {
		t.Fatalf("datagrams sent %d, received %d; want 3 and 4", sent, received)
	}
}

func TestOldKeyAcceptedWithinGraceOnly(t *testing.T) {
	r := newRig(t)
	r.rotate(2, 2)
	r.granted("previous key during the grace", r.seal(r.req("n2", 1, 0, 500), key(1)))
	q := r.req("n2", 2, 0, 500)
	q.KeyID = 2
	r.granted("current key", r.seal(q, key(2)))
	r.rotate(3, 3)
	r.refused("key 1 two rotations later", r.seal(r.req("n2", 3, 0, 500), key(1)), "n2", DropUnknownKey)
}

func TestReplayRefused(t *testing.T) {
	r := newRig(t)
	b := r.seal(r.req("n2", 100, 0, 500), key(1))
	r.granted("first", b)
	r.refused("the same datagram again", b, "n2", DropReplay)
	r.refused("an older sequence number", r.seal(r.req("n2", 99-lease.WindowSize, 0, 500), key(1)), "n2", DropReplay)
	r.granted("a late one within the window", r.seal(r.req("n2", 99, 0, 500), key(1)))
	// After a restart the boot counter puts the sender above.
	r.granted("next boot", r.seal(r.req("n2", 2<<seqBootShift|1, 0, 500), key(1)))
	r.refused("previous boot", r.seal(r.req("n2", 1<<seqBootShift|100, 0, 500), key(1)), "n2", DropReplay)
}

// TestMisdirectedRefused: a renewal n2 addressed to n3, captured and
// replayed to n1 (whose window has not seen its sequence number), is
// refused: the receiver is MAC'd into the request.
func TestMisdirectedRefused(t *testing.T) {
	r := newRig(t)
	q := r.req("n2", 50, 0, 500)
	q.To = "n3"
	r.refused("a renewal addressed to n3", r.seal(q, key(1)), "n2", DropMisdirected)
	r.granted("the next one, addressed to n1", r.seal(r.req("n2", 51, 0, 500), key(1)))
}

func TestNonMemberRefusedWithoutTableGrowth(t *testing.T) {
	r := newRig(t)
	// An insider with the key (a removed node, a stolen key) sends
	// renewals in made-up names: none is granted or remembered.
	for i := 0; i < 200; i++ {
		r.send(r.seal(r.req(fmt.Sprintf("made-up-%d", i), uint64(i+1), 0, 500), key(1)))
	}
	if got := r.probe(); len(got) != 0 {
		t.Fatalf("made-up names answered: %d", len(got))
	}
	if n := r.ln.grants.Len(); n != 1 { // the probes' n3
		t.Fatalf("grant table holds %d nodes after 200 made-up names, want 1", n)
	}
	if d := r.ln.dropCounts()[DropNonMember]; d != 200 {
		t.Fatalf("non-member drops %d, want 200", d)
	}
	r.granted("n2 while a member", r.seal(r.req("n2", 1, 0, 500), key(1)))
	r.mu.Lock()
	r.members = []Member{r.members[0], r.members[2]} // n2 leaves
	r.mu.Unlock()
	r.refused("a node that left", r.seal(r.req("n2", 2, 0, 500), key(1)), "n2", DropNonMember)
	ms, _ := r.memberList()
	r.ln.retain(ms)
	r.ln.mu.Lock()
	_, kept := r.ln.windows[windowKey{"n2", 1}]
	r.ln.mu.Unlock()
	if kept {
		t.Fatal("the replay window of a node that left was kept")
	}
}

func TestTTLAndGenerationBounds(t *testing.T) {
	r := newRig(t)
	// n2 registered 500 ms: a request for more is refused, not granted
	// for 10 minutes (a dead holder's roles would stay on it).
	r.refused("ttl above the registered lease", r.seal(r.req("n2", 1, 0, 501), key(1)), "n2", DropTTL)
	r.refused("ttl 0", r.seal(r.req("n2", 2, 0, 0), key(1)), "n2", DropTTL)
	st := *r.st.Load()
	st.Nodes = map[string]*fsm.Node{"n2": {ID: "n2", LeaseTTLMillis: 3_600_000}, "n3": st.Nodes["n3"]}
	r.st.Store(&st)
	r.refused("ttl above 10 min, registered an hour", r.seal(r.req("n2", 3, 0, 600_001), key(1)), "n2", DropTTL)
	r.refused("generation 2^64-1", r.seal(r.req("n2", 4, 1<<64-1, 500), key(1)), "n2", DropGeneration)
	r.granted("10 min", r.seal(r.req("n2", 5, 0, 600_000), key(1)))
	if rem := r.ln.grants.Snapshot(time.Now()).Nodes["n2"].Remaining; rem > lease.MaxTTL+lease.MaxTTL/10 {
		t.Fatalf("granted %s", rem)
	}
}

// A reply counts only from the member the request went to, for the nonce
// it carried: another member (or anyone replaying a reply) cannot answer
// for a voter.
func TestReplyFromWrongSenderRefused(t *testing.T) {
	r := newRig(t)
	// n1 renews with "n2", whose address is the peer socket.
	m := Member{ID: "n2", Voter: true, APIAddr: r.peer.LocalAddr().String()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		rep *lease.Reply
		err error
	}
	got := make(chan result, 1)
	go func() {
		rep, err := r.ln.renew(ctx, m, 42, 500*time.Millisecond, time.Hour)
		got <- result{rep, err}
	}()
	buf := make([]byte, lease.MaxDatagram)
	_ = r.peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := r.peer.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := lease.Unmarshal(buf[:n], r.st.Load().LeaseKeyByID)
	if err != nil {
		t.Fatal(err)
	}
	q := msg.(*lease.Request)
	if q.Node != "n1" || q.Seq>>seqBootShift != 1 {
		t.Fatalf("request %+v: want node n1, boot 1", q)
	}
	reply := func(granter string, nonce uint64) {
		b, err := lease.MarshalReply(lease.Reply{KeyID: q.KeyID, Nonce: nonce, Granter: granter, Verdict: lease.Granted, Gen: 42}, key(1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.peer.WriteTo(b, from); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(reason string, want uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for r.ln.dropCounts()[reason] != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s drops: %v, want %d", reason, r.ln.dropCounts(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	reply("n3", q.Nonce) // a member that was not asked
	wait(DropWrongPeer, 1)
	reply("n2", q.Nonce+1) // the right member, another nonce
	wait(DropUnexpected, 1)
	select {
	case res := <-got:
		t.Fatalf("renewal returned on a wrong reply: %+v %v", res.rep, res.err)
	default:
	}
	reply("n2", q.Nonce)
	res := <-got
	if res.err != nil || res.rep.Granter != "n2" || res.rep.Verdict != lease.Granted {
		t.Fatalf("renewal: %+v, %v", res.rep, res.err)
	}
}

func TestNoKeyNoRenewal(t *testing.T) {
	r := newRig(t)
	st := *r.st.Load()
	st.LeaseKey = nil
	r.st.Store(&st)
	_, err := r.ln.renew(context.Background(), Member{ID: "n2", APIAddr: r.peer.LocalAddr().String()}, 1, time.Second, time.Second)
	if !errors.Is(err, errNoKey) {
		t.Fatalf("renewal without a key: %v, want errNoKey", err)
	}
	b, _ := lease.MarshalRequest(r.req("n2", 1, 0, 500), key(1))
	before := r.ln.dropCounts()[DropUnknownKey]
	r.send(b)
	deadline := time.Now().Add(10 * time.Second)
	for r.ln.dropCounts()[DropUnknownKey] == before {
		if time.Now().After(deadline) {
			t.Fatal("a node without a key did not refuse a request")
		}
		time.Sleep(time.Millisecond)
	}
	if r.ln.grants.Len() != 0 {
		t.Fatal("a node without a key granted")
	}
}

func TestMajorityCountsFailedViews(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st := fsm.NewState()
	n := New(Config{Self: "n1", Lease: 500 * time.Millisecond, Renew: 100 * time.Millisecond, State: func() *fsm.State { return st },
		Members: func() ([]Member, error) {
			return []Member{{ID: "n1", Voter: true}, {ID: "n2", Voter: true, APIAddr: "n2:1"}, {ID: "n3", Voter: true}}, nil
		},
		Conn: func(addr string) (*grpc.ClientConn, error) { return nil, fmt.Errorf("dial %s: refused", addr) },
		Log:  slog.New(slog.NewTextHandler(io.Discard, nil))}, conn)
	for i := 0; i < 2; i++ {
		m, err := n.Majority(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if m.Voters != 3 || len(m.Views) != 1 {
			t.Fatalf("majority: %d voters, %d views; want 3 and only the own view", m.Voters, len(m.Views))
		}
	}
	// The second round does not wait for the voters that failed the first
	// (majorityRound): their failures may be counted just after it returns.
	deadline := time.Now().Add(5 * time.Second)
	for got := n.ViewErrors(); got["n2"] != 2 || got["n3"] != 2 || len(got) != 2; got = n.ViewErrors() {
		if time.Now().After(deadline) {
			t.Fatalf("view errors %v, want n2 and n3 counted twice", got)
		}
		time.Sleep(time.Millisecond)
	}
}

// Without a lease key a node neither renews nor grants, even its own lease
// in a one-voter cluster (where its own grant is a majority); once the key
// is committed it holds its lease.
func TestRenewLoopWaitsForTheKey(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var st atomic.Pointer[fsm.State]
	st.Store(fsm.NewState())
	rounds := make(chan struct{}, 100)
	n := New(Config{Self: "n1", Lease: 50 * time.Millisecond, Renew: 5 * time.Millisecond, State: st.Load,
		Members: func() ([]Member, error) { return []Member{{ID: "n1", Voter: true}}, nil },
		Fenced:  func() bool { return false },
		OnRenew: func() {
			select {
			case rounds <- struct{}{}:
			default:
			}
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, conn)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.RenewLoop(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for i := 0; i < 3; i++ {
		<-rounds
	}
	if _, valid, _ := n.Lease(time.Now()); valid || n.Grants().Len() != 0 {
		t.Fatalf("without a key: lease valid %t, %d grants; want neither", valid, n.Grants().Len())
	}
	withKey := *st.Load()
	withKey.LeaseKey = &fsm.LeaseKey{ID: 1, Secret: key(1)}
	st.Store(&withKey)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, valid, _ := n.Lease(time.Now()); valid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no lease after the key was committed")
		}
		<-rounds
	}
}

// TestWireTTL: a lease goes on the wire as uint32 milliseconds only when a
// voter would grant it as asked; nothing wraps (1193h2m47.7965s once went
// out as 500 ms).
func TestWireTTL(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want uint32
		ok   bool
	}{
		{500 * time.Millisecond, 500, true},
		{time.Millisecond, 1, true},
		{MaxTTL, uint32(MaxTTL / time.Millisecond), true},
		{MaxTTL + time.Millisecond, 0, false},
		{1193*time.Hour + 2*time.Minute + 47796500*time.Microsecond, 0, false},
		{0, 0, false},
		{-time.Second, 0, false},
		{time.Microsecond, 0, false},
	} {
		got, err := wireTTL(tc.ttl)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("wireTTL(%s) = %d, %v; want %d, ok %v", tc.ttl, got, err, tc.want, tc.ok)
		}
	}
}
