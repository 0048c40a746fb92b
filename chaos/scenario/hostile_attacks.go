package scenario

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/fsm"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// The attacker's tools. Every connection and datagram leaves from the
// attacker's namespace after lab.GuardHere on it and its target.

// dialAttacker opens a TCP connection from the attacker's namespace.
func (h *hostile) dialAttacker(ctx context.Context, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	var conn net.Conn
	err = h.c.Lab.InNamespace(attacker, func() error {
		if err := lab.GuardHere(ap.Addr()); err != nil {
			h.noteGuard(err)
			return err
		}
		d := net.Dialer{Timeout: attackCallTimeout}
		var err error
		conn, err = d.DialContext(ctx, "tcp4", addr)
		return err
	})
	return conn, err
}

// apiCall is one call the attacker makes: a method of the services with a
// request crafted to do harm if it were accepted.
type apiCall struct {
	method string // full method name
	stream bool
	req    proto.Message
}

// apiTargets are the values the crafted requests aim at.
type apiTargets struct {
	holder, other string // the VIP's holder and another node
	epoch, gen    uint64 // the VIP's epoch, the holder's lease generation
	attackerAddr  netip.Addr
}

// apiCalls lists a call per request of every method of the Admin and
// Cluster services (read from their service descriptions, so a method
// added later is attacked too, with an empty request if none is crafted
// for it here).
func apiCalls(t apiTargets) ([]apiCall, error) {
	crafted, err := craftedRequests(t)
	if err != nil {
		return nil, err
	}
	var out []apiCall
	for _, sd := range []grpc.ServiceDesc{hmv1.Admin_ServiceDesc, hmv1.Cluster_ServiceDesc} {
		add := func(name string, stream bool) {
			full := "/" + sd.ServiceName + "/" + name
			reqs := crafted[full]
			if len(reqs) == 0 {
				reqs = []proto.Message{&emptypb.Empty{}}
			}
			for _, r := range reqs {
				out = append(out, apiCall{method: full, stream: stream, req: r})
			}
		}
		for _, m := range sd.Methods {
			add(m.MethodName, false)
		}
		for _, s := range sd.Streams {
			add(s.StreamName, true)
		}
	}
	return out, nil
}

// craftedRequests are the harmful requests, by full method name.
func craftedRequests(t apiTargets) (map[string][]proto.Message, error) {
	now := time.Now().UnixMilli()
	var cmds [][]byte
	for _, c := range []fsm.Command{
		&fsm.Release{Role: VIPRole, Node: t.holder, Epoch: t.epoch, Reason: "forged by hostile-lan", Time: now},
		&fsm.Leave{Node: t.holder, Reason: "forged by hostile-lan", Time: now},
		&fsm.Assign{Role: VIPRole, Node: t.other, PrevHolder: t.holder, HolderGen: 1, Epoch: t.epoch + 1, Reason: "forged by hostile-lan",
			Actor: t.other, Time: now},
	} {
		b, err := fsm.Encode(c)
		if err != nil {
			return nil, fmt.Errorf("forge %T: %w", c, err)
		}
		cmds = append(cmds, b)
	}
	evil := func(port int) string { return netip.AddrPortFrom(t.attackerAddr, uint16(port)).String() }
	const admin, cluster = "/harbormaster.v1.Admin/", "/harbormaster.v1.Cluster/"
	out := map[string][]proto.Message{
		admin + "Status":  {&hmv1.StatusRequest{}},
		admin + "Members": {&hmv1.MembersRequest{}},
		admin + "Join": {&hmv1.JoinRequest{Id: "evil1", RaftAddress: evil(raftPort), ApiAddress: evil(apiPort), Voter: true},
			&hmv1.JoinRequest{Id: "evil2", RaftAddress: evil(raftPort + 1), ApiAddress: evil(apiPort + 1), Voter: true}},
		admin + "Remove":             {&hmv1.RemoveRequest{Id: t.other}},
		admin + "TransferLeadership": {&hmv1.TransferLeadershipRequest{Target: t.other}},
		admin + "GetSpec":            {&hmv1.GetSpecRequest{}},
		admin + "ApplySpec": {&hmv1.ApplySpecRequest{Actor: "attacker",
			Document: fmt.Sprintf("roles:\n  - {name: %s, type: vip, address: %s/24}\n", VIPRole, t.attackerAddr)}},
		admin + "ListRoles":   {&hmv1.ListRolesRequest{}},
		admin + "Move":        {&hmv1.MoveRequest{Role: VIPRole, Node: t.other, Actor: "attacker"}},
		admin + "Drain":       {&hmv1.DrainRequest{Node: t.holder, Drained: true, Actor: "attacker"}},
		admin + "WatchEvents": {&hmv1.WatchEventsRequest{Since: 0}},
		admin + "Explain":     {&hmv1.ExplainRequest{Role: VIPRole}},
		cluster + "Leases":    {&hmv1.LeasesRequest{Queries: []*hmv1.LeaseQuery{{Node: t.holder, Gen: max(t.gen, 1)}}}},
	}
	for _, b := range cmds {
		out[cluster+"Propose"] = append(out[cluster+"Propose"], &hmv1.ProposeRequest{Command: b})
	}
	return out, nil
}

// refused reports whether a call's error shows the caller was turned
// away before any handler ran: the connection or handshake failed
// (Unavailable), or authentication or authorization refused it. Any other
// outcome, OK or an error from a handler (InvalidArgument, ...), means
// the request got in. A timeout is counted as refused: nothing answered.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Unauthenticated, codes.PermissionDenied, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// apiWith attacks every API method on every node with credentials creds
// (nil: plain text), each call on a connection of its own so that every
// attempt reaches the node.
func (h *hostile) apiWith(tc *tls.Config) func(ctx context.Context, kind string) (int, error) {
	return func(ctx context.Context, kind string) (int, error) {
		t := apiTargets{attackerAddr: h.attackerIP()}
		t.holder, t.epoch = h.holder()
		t.other = h.c.others(t.holder)[0]
		t.gen = h.last.ownGen[t.holder]
		calls, err := apiCalls(t)
		if err != nil {
			return 0, err
		}
		creds := insecure.NewCredentials()
		if tc != nil {
			creds = credentials.NewTLS(tc.Clone())
		}
		var (
			mu       sync.Mutex
			wg       sync.WaitGroup
			accepted []string
			timeouts int
			example  error
		)
		for _, n := range h.c.Nodes() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, call := range calls {
					err := h.callOnce(ctx, apiAddr(n), creds, call)
					mu.Lock()
					if !refused(err) {
						accepted = append(accepted, fmt.Sprintf("%s on %s: %s (%v)", call.method, n.Name, status.Code(err), err))
					} else if status.Code(err) == codes.DeadlineExceeded {
						timeouts++
					} else if example == nil {
						example = err
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		h.tr.attack(kind, len(calls)*len(h.c.Nodes()))
		if len(accepted) > 0 {
			h.tr.violate("accepted: %s: %d calls got past authentication: %s", kind, len(accepted), examples(accepted))
		}
		if timeouts > 0 {
			h.tr.note("%s: %d calls timed out (counted as refused)", kind, timeouts)
		}
		if example != nil {
			h.tr.note("%s: refused, e.g. %v", kind, example)
		}
		return len(accepted), nil
	}
}

func (h *hostile) attackerIP() netip.Addr {
	a, _ := h.c.Lab.Host(attacker)
	return a.IP
}

// callOnce makes one call on a fresh connection; nil for a stream that
// ended cleanly.
func (h *hostile) callOnce(ctx context.Context, addr string, creds credentials.TransportCredentials, call apiCall) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithContextDialer(h.dialAttacker))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, attackCallTimeout)
	defer cancel()
	if !call.stream {
		return conn.Invoke(ctx, call.method, call.req, &emptypb.Empty{})
	}
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, call.method)
	if err != nil {
		return err
	}
	if err := st.SendMsg(call.req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_ = st.CloseSend()
	if err := st.RecvMsg(&emptypb.Empty{}); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// raftFrame is what hashicorp/raft's network transport reads as an
// AppendEntries RPC from the leader: the rpc type byte 0, then the
// request in msgpack, here carrying one log entry with data at index
// prev+1 of term, and a commit index that commits it.
func raftFrame(term, prev uint64, leaderID, leaderAddr string, data []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(0) // rpcAppendEntries
	enc := codec.NewEncoder(&buf, &codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}})
	req := &raft.AppendEntriesRequest{
		RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(leaderID), Addr: []byte(leaderAddr)},
		Term:         term,
		Leader:       []byte(leaderAddr),
		PrevLogEntry: prev, PrevLogTerm: term,
		Entries:           []*raft.Log{{Index: prev + 1, Term: term, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}},
		LeaderCommitIndex: prev + 1,
	}
	if err := enc.Encode(req); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// raftAnswer reads a raft transport's answer to an AppendEntries: the
// error string, then the response. ok is false when r does not carry one.
func raftAnswer(r io.Reader) (resp raft.AppendEntriesResponse, rpcErr string, ok bool) {
	dec := codec.NewDecoder(bufio.NewReader(r), &codec.MsgpackHandle{})
	if err := dec.Decode(&rpcErr); err != nil {
		return resp, "", false
	}
	if err := dec.Decode(&resp); err != nil || resp.Term == 0 {
		return resp, rpcErr, false
	}
	return resp, rpcErr, true
}

// raftWith sends every node's Raft port an AppendEntries from the leader
// carrying a forged assignment of the VIP to another node, in plain text
// (tc nil) or over TLS with tc. Accepted: the node answered it.
func (h *hostile) raftWith(tc *tls.Config) func(ctx context.Context, kind string) (int, error) {
	return func(ctx context.Context, kind string) (int, error) {
		holder, epoch := h.holder()
		assign, err := fsm.Encode(&fsm.Assign{Role: VIPRole, Node: h.c.others(holder)[0], PrevHolder: holder, HolderGen: 1,
			Epoch: epoch + 1, Reason: "forged by hostile-lan", Actor: h.last.leader, Time: time.Now().UnixMilli()})
		if err != nil {
			return 0, err
		}
		var accepted []string
		for _, n := range h.c.Nodes() {
			st, err := h.c.Status(ctx, n.Name)
			if err != nil {
				return 0, fmt.Errorf("status of %s: %w", n.Name, err)
			}
			frame, err := raftFrame(st.Term, st.CommitIndex, h.last.leader, raftAddr(h.c.Node(h.last.leader)), assign)
			if err != nil {
				return 0, err
			}
			h.tr.attack(kind, 1)
			if what, ok := h.raftOnce(ctx, raftAddr(n), tc, frame); ok {
				accepted = append(accepted, n.Name+" "+what)
			}
		}
		if len(accepted) > 0 {
			h.tr.violate("accepted: %s: a forged AppendEntries was answered by %s", kind, examples(accepted))
		}
		return len(accepted), nil
	}
}

// raftOnce delivers one frame and reports whether a Raft answer came back.
func (h *hostile) raftOnce(ctx context.Context, addr string, tc *tls.Config, frame []byte) (string, bool) {
	conn, err := h.dialAttacker(ctx, addr)
	if err != nil {
		return "", false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(attackCallTimeout))
	if tc != nil {
		t := tls.Client(conn, tc.Clone())
		if err := t.Handshake(); err != nil {
			return "", false
		}
		conn = t
	}
	if _, err := conn.Write(frame); err != nil {
		return "", false
	}
	resp, rpcErr, ok := raftAnswer(conn)
	if !ok {
		return "", false
	}
	return fmt.Sprintf("(term %d, success %v, error %q)", resp.Term, resp.Success, rpcErr), true
}

// floodPort opens floodConns idle TCP connections to port, spread over the
// nodes, and holds them for floodHold while the observer keeps calling
// Status on every node, on its open connections and on fresh ones.
// Accepted: every observer call that failed meanwhile.
func (h *hostile) floodPort(port int) func(ctx context.Context, kind string) (int, error) {
	return func(ctx context.Context, kind string) (int, error) {
		nodes := h.c.Nodes()
		var conns []net.Conn
		dialFailures := 0
		err := h.c.Lab.InNamespace(attacker, func() error {
			if err := lab.GuardHere(h.nodeIPs()...); err != nil {
				h.noteGuard(err)
				return err
			}
			d := net.Dialer{Timeout: 500 * time.Millisecond}
			for i := 0; i < floodConns; i++ {
				n := nodes[i%len(nodes)]
				c, err := d.DialContext(ctx, "tcp4", netip.AddrPortFrom(n.IP, uint16(port)).String())
				if err != nil {
					dialFailures++
					continue
				}
				conns = append(conns, c)
			}
			return nil
		})
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		if err != nil {
			return 0, err
		}
		h.tr.attack(kind, floodConns)
		obs := h.observeDuring(ctx, floodHold)
		open := stillOpen(conns)
		h.tr.figure(kind+"_connected", float64(len(conns)))
		h.tr.figure(kind+"_open_after_hold", float64(open))
		h.tr.figure(kind+"_observer_calls", float64(obs.calls))
		h.tr.figure(kind+"_observer_failures", float64(len(obs.failures)))
		h.tr.figure(kind+"_observer_max_ms", msf(obs.slowest))
		if dialFailures > 0 {
			h.tr.note("%s: %d of %d connects failed", kind, dialFailures, floodConns)
		}
		accepted := len(obs.failures)
		if accepted > 0 {
			h.tr.violate("accepted: %s: %d of the observer's %d calls failed during the flood: %s", kind, accepted, obs.calls, examples(obs.failures))
		}
		if open > 0 {
			h.tr.violate("accepted: %s: %d idle connections still open after %s (the agents drop unhandshaked ones after 5 s)", kind, open, floodHold)
			accepted++
		}
		return accepted, nil
	}
}

// observation is what the observer saw during a flood.
type observation struct {
	calls    int
	failures []string
	slowest  time.Duration
}

// observeDuring calls Status on every node every 100 ms for d: on the
// observer's open connections, and every third round on fresh ones (a
// new client must get in too).
func (h *hostile) observeDuring(ctx context.Context, d time.Duration) observation {
	var o observation
	deadline := time.Now().Add(d)
	for round := 0; time.Now().Before(deadline) && ctx.Err() == nil; round++ {
		for _, n := range h.c.Nodes() {
			start := time.Now()
			var err error
			if round%3 == 2 {
				err = h.freshStatus(ctx, n.Name)
			} else {
				_, err = h.c.Status(ctx, n.Name)
			}
			o.calls++
			o.slowest = max(o.slowest, time.Since(start))
			if err != nil && ctx.Err() == nil {
				o.failures = append(o.failures, fmt.Sprintf("%s %s: %v", stamp(start), n.Name, err))
			}
		}
		_ = Sleep(ctx, 100*time.Millisecond)
	}
	return o
}

// freshStatus calls Status on a new connection of the observer's (the
// lab's admin certificate, from c1).
func (h *hostile) freshStatus(ctx context.Context, node string) error {
	creds, err := h.creds("admin")
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(apiAddr(h.c.Node(node)), grpc.WithTransportCredentials(creds), grpc.WithContextDialer(h.c.dial))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = hmv1.NewAdminClient(conn).Status(ctx, &hmv1.StatusRequest{})
	return err
}

// stillOpen counts the connections the peer has not closed: a read that
// does not end before a short shared deadline.
func stillOpen(conns []net.Conn) int {
	deadline := time.Now().Add(200 * time.Millisecond)
	open := 0
	buf := make([]byte, 1)
	for _, c := range conns {
		_ = c.SetReadDeadline(deadline)
		_, err := c.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	return open
}

// leaseAttack is the attacker's UDP socket for lease datagrams: it sends
// to every node's API port and counts the replies, and those granting a
// renewal, per kind of attack (the kind current when they arrive).
type leaseAttack struct {
	conn    *net.UDPConn
	targets []netip.AddrPort
	mu      sync.Mutex
	kind    string
	replies map[string]int
	granted map[string]int
	done    chan struct{}
}

func (h *hostile) openLease() (*leaseAttack, error) {
	la := &leaseAttack{replies: map[string]int{}, granted: map[string]int{}, done: make(chan struct{})}
	for _, n := range h.c.Nodes() {
		la.targets = append(la.targets, netip.AddrPortFrom(n.IP, apiPort))
	}
	err := h.c.Lab.InNamespace(attacker, func() error {
		if err := lab.GuardHere(h.nodeIPs()...); err != nil {
			h.noteGuard(err)
			return err
		}
		var err error
		la.conn, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attacker's lease socket: %w", err)
	}
	_ = la.conn.SetReadBuffer(4 << 20)
	go la.read()
	return la, nil
}

func (la *leaseAttack) read() {
	defer close(la.done)
	buf := make([]byte, 2048)
	for {
		n, _, err := la.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		g := leaseGranted(buf[:n])
		la.mu.Lock()
		la.replies[la.kind]++
		if g {
			la.granted[la.kind]++
		}
		la.mu.Unlock()
	}
}

func (la *leaseAttack) close() {
	_ = la.conn.Close()
	<-la.done
}

// send sends every datagram to every node as kind, paced, and returns how
// many it sent.
func (la *leaseAttack) send(kind string, dgrams [][]byte) int {
	la.mu.Lock()
	la.kind = kind
	la.mu.Unlock()
	sent := 0
	for _, d := range dgrams {
		for _, t := range la.targets {
			if _, err := la.conn.WriteToUDPAddrPort(d, t); err == nil {
				sent++
			}
			if sent%300 == 299 {
				time.Sleep(2 * time.Millisecond) // leave the two cores to the agents
			}
		}
	}
	return sent
}

func (la *leaseAttack) counts(kind string) (replies, granted int) {
	la.mu.Lock()
	defer la.mu.Unlock()
	return la.replies[kind], la.granted[kind]
}

// leasePhases captures real renewals of the holder and replays them, then
// forges renewals: a huge TTL, the holder's generation + 1, many made-up
// nodes, and generation 2^64-1 (last: on an agent that accepts it, the
// holder can never renew again).
func (h *hostile) leasePhases(ctx context.Context) error {
	la, err := h.openLease()
	if err != nil {
		return err
	}
	defer la.close()
	holder, _ := h.holder()
	capNode := h.c.others(holder)[0]
	captured, err := h.capture(capNode, h.c.Node(holder).IP, 500*time.Millisecond)
	if err != nil {
		return fmt.Errorf("capture on %s: %w", capNode, err)
	}
	h.tr.figure("lease_captured", float64(len(captured)))
	if len(captured) == 0 {
		h.tr.violate("lease-replay: captured no datagram from %s on %s in 500ms: the replays prove nothing", holder, capNode)
	}
	nonce := func() uint64 { return rand.Uint64() }
	forge := func(node string, gen uint64, ttl uint32) ([][]byte, error) {
		b, err := forgeRenewal(nonce(), node, gen, ttl)
		return [][]byte{b}, err
	}
	sendJudged := func(kind, what string, build func() ([][]byte, error)) func(ctx context.Context, kind string) (int, error) {
		return func(ctx context.Context, _ string) (int, error) {
			dg, err := build()
			if err != nil {
				return 0, err
			}
			h.tr.attack(kind, la.send(kind, dg))
			if err := Sleep(ctx, 400*time.Millisecond); err != nil {
				return 0, err
			}
			replies, granted := la.counts(kind)
			h.tr.figure(kind+"_replies", float64(replies))
			if granted > 0 {
				h.tr.violate("accepted: %s: %d %s granted (replies to the attacker)", kind, granted, what)
			}
			return granted, nil
		}
	}
	// The holder's generation as it is now (it may have started a new
	// one after an earlier phase).
	gen := func() uint64 { return max(h.last.ownGen[holder], 1) }
	steps := []struct {
		kind, what string
		build      func() ([][]byte, error)
	}{
		{"lease-replay-now", "replayed renewals", func() ([][]byte, error) { return captured, nil }},
		{"lease-ttl", "renewals of the holder with a TTL of 10 min or 49 days", func() ([][]byte, error) {
			a, err := forgeRenewal(nonce(), holder, gen(), 600_000)
			if err != nil {
				return nil, err
			}
			b, err := forgeRenewal(nonce(), holder, gen(), math.MaxUint32)
			return [][]byte{a, b}, err
		}},
		{"lease-replay-later", "renewals replayed seconds later", func() ([][]byte, error) { return captured, nil }},
		{"lease-gen-next", "renewals of the holder at its generation + 1", func() ([][]byte, error) {
			h.forged[gen()+1] = true
			return forge(holder, gen()+1, uint32(h.c.Timing.Lease.Milliseconds()))
		}},
		{"lease-names", "renewals of made-up nodes", func() ([][]byte, error) {
			out := make([][]byte, 0, forgedNames)
			for i := 0; i < forgedNames; i++ {
				b, err := forgeRenewal(nonce(), fmt.Sprintf("forged-%05d", i), 1, 600_000)
				if err != nil {
					return nil, err
				}
				out = append(out, b)
			}
			return out, nil
		}},
		{"lease-gen-max", "renewals of the holder at generation 2^64-1", func() ([][]byte, error) {
			return forge(holder, math.MaxUint64, uint32(h.c.Timing.Lease.Milliseconds()))
		}},
	}
	for _, s := range steps {
		if err := h.phase(ctx, s.kind, sendJudged(s.kind, s.what, s.build)); err != nil {
			return err
		}
	}
	return nil
}

// capture reads, on a raw socket in node's namespace, the UDP datagrams
// from src to the API port for d, and returns up to 64 distinct payloads
// (the holder's renewals to node and its replies to node's renewals).
func (h *hostile) capture(node string, src netip.Addr, d time.Duration) ([][]byte, error) {
	var out [][]byte
	err := h.c.Lab.InNamespace(node, func() error {
		if err := lab.GuardHere(src); err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		seen := map[string]bool{}
		buf := make([]byte, 65536)
		for deadline := time.Now().Add(d); time.Now().Before(deadline) && len(out) < 64; {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				return fmt.Errorf("raw socket: %w", err)
			}
			from, port, payload, ok := parseUDP(buf[:n])
			if ok && from == src && port == apiPort && !seen[string(payload)] {
				seen[string(payload)] = true
				out = append(out, bytes.Clone(payload))
			}
		}
		return nil
	})
	return out, err
}

// parseUDP reads an IPv4 packet as a raw socket returns it: the source
// address, the UDP destination port and the payload.
func parseUDP(b []byte) (src netip.Addr, dport uint16, payload []byte, ok bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_UDP {
		return src, 0, nil, false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl+8 {
		return src, 0, nil, false
	}
	udp := b[ihl:]
	l := int(binary.BigEndian.Uint16(udp[4:6]))
	if l < 8 || l > len(udp) {
		return src, 0, nil, false
	}
	src = netip.AddrFrom4([4]byte(b[12:16]))
	return src, binary.BigEndian.Uint16(udp[2:4]), udp[8:l], true
}
