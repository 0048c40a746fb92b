package scenario

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/fsm"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// The pure parts of hostile-lan; the scenario itself runs in
// TestHostileLAN.

// TestRaftFrameIsAppendEntries feeds the forged frame to a real raft
// network transport on loopback: it must arrive as an AppendEntries with
// the forged entry (what a Raft port without TLS accepts), and the
// transport's answer must read back as one.
func TestRaftFrameIsAppendEntries(t *testing.T) {
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trans.Close() })
	data := []byte("forged")
	frame, err := raftFrame(7, 41, "n3", "198.18.0.13:7101", data)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", string(trans.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	var rpc raft.RPC
	select {
	case rpc = <-trans.Consumer():
	case <-time.After(10 * time.Second):
		t.Fatal("the transport did not take the frame as an RPC")
	}
	req, ok := rpc.Command.(*raft.AppendEntriesRequest)
	if !ok {
		t.Fatalf("got %T, want *raft.AppendEntriesRequest", rpc.Command)
	}
	if req.Term != 7 || req.PrevLogEntry != 41 || req.LeaderCommitIndex != 42 || string(req.Addr) != "198.18.0.13:7101" ||
		len(req.Entries) != 1 || req.Entries[0].Index != 42 || req.Entries[0].Type != raft.LogCommand || string(req.Entries[0].Data) != "forged" {
		t.Fatalf("decoded %+v", req)
	}
	rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, rpcErr, ok := raftAnswer(conn)
	if !ok || resp.Term != 7 || !resp.Success || rpcErr != "" {
		t.Fatalf("answer %+v %q %v", resp, rpcErr, ok)
	}
}

// TestRaftAnswerRejectsTLSAlert: what a TLS listener sends back to plain
// text (an alert record) is not a Raft answer.
func TestRaftAnswerRejectsTLSAlert(t *testing.T) {
	for _, b := range [][]byte{{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28}, nil, {0xa0}} {
		if _, _, ok := raftAnswer(strings.NewReader(string(b))); ok {
			t.Errorf("%x read as a Raft answer", b)
		}
	}
}

func udpPacket(src [4]byte, dport uint16, payload []byte, ihl int) []byte {
	b := make([]byte, ihl+8+len(payload))
	b[0] = 0x40 | byte(ihl/4)
	b[9] = 17
	copy(b[12:16], src[:])
	binary.BigEndian.PutUint16(b[ihl+2:], dport)
	binary.BigEndian.PutUint16(b[ihl+4:], uint16(8+len(payload)))
	copy(b[ihl+8:], payload)
	return b
}

func TestParseUDP(t *testing.T) {
	for _, ihl := range []int{20, 24} {
		p := udpPacket([4]byte{198, 18, 0, 11}, 7201, []byte("HMLS-payload"), ihl)
		src, port, payload, ok := parseUDP(append(p, 0, 0)) // trailing bytes beyond the UDP length are not payload
		if !ok || src != netip.MustParseAddr("198.18.0.11") || port != 7201 || string(payload) != "HMLS-payload" {
			t.Errorf("ihl %d: got %v %d %q %v", ihl, src, port, payload, ok)
		}
	}
	good := udpPacket([4]byte{198, 18, 0, 11}, 7201, []byte("x"), 20)
	tcp := slices.Clone(good)
	tcp[9] = 6
	short := slices.Clone(good)
	binary.BigEndian.PutUint16(short[24:], 200) // UDP length beyond the packet
	for name, b := range map[string][]byte{"tcp": tcp, "udp length": short, "truncated": good[:25], "ipv6": append([]byte{0x60}, good[1:]...)} {
		if _, _, _, ok := parseUDP(b); ok {
			t.Errorf("%s: parsed", name)
		}
	}
}

// TestAPICallsCoverEveryMethod: every method of both services is
// attacked, the forged commands for Propose are valid commands (so the
// leader would apply them if the call got in).
func TestAPICallsCoverEveryMethod(t *testing.T) {
	calls, err := apiCalls(apiTargets{holder: "n1", other: "n2", epoch: 3, gen: 99, attackerAddr: netip.MustParseAddr("198.18.0.102")})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, c := range calls {
		seen[c.method]++
		if p, ok := c.req.(*hmv1.ProposeRequest); ok {
			if _, err := fsm.Decode(p.Command); err != nil {
				t.Errorf("forged command does not decode: %v", err)
			}
		}
	}
	n := 0
	for _, sd := range []struct {
		name    string
		methods []string
	}{{hmv1.Admin_ServiceDesc.ServiceName, descNames(true)}, {hmv1.Cluster_ServiceDesc.ServiceName, descNames(false)}} {
		for _, m := range sd.methods {
			n++
			if seen["/"+sd.name+"/"+m] == 0 {
				t.Errorf("%s/%s is not attacked", sd.name, m)
			}
		}
	}
	if n < 14 || seen["/harbormaster.v1.Cluster/Propose"] != 3 {
		t.Errorf("%d methods, %d Propose calls", n, seen["/harbormaster.v1.Cluster/Propose"])
	}
}

func descNames(admin bool) []string {
	sd := hmv1.Cluster_ServiceDesc
	if admin {
		sd = hmv1.Admin_ServiceDesc
	}
	var out []string
	for _, m := range sd.Methods {
		out = append(out, m.MethodName)
	}
	for _, s := range sd.Streams {
		out = append(out, s.StreamName)
	}
	return out
}

func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{status.Error(codes.InvalidArgument, "id"), false},
		{status.Error(codes.FailedPrecondition, "x"), false},
		{errors.New("not a status"), false},
		{status.Error(codes.Unavailable, "tls: certificate required"), true},
		{status.Error(codes.Unauthenticated, "x"), true},
		{status.Error(codes.PermissionDenied, "x"), true},
	} {
		if got := refused(c.err); got != c.want {
			t.Errorf("refused(%v) = %v", c.err, got)
		}
	}
}

func TestHostileJudge(t *testing.T) {
	h := &hostile{c: &Cluster{nodes: []lab.Node{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}, Timing: config.Profiles["lan"]},
		forged: map[uint64]bool{43: true}}
	base := func() hostileSnap {
		s := hostileSnap{leader: "n2", term: 5, specVersion: 1, roles: map[string]string{VIPRole: "n1@3"},
			members: []string{"n1 voter", "n2 voter", "n3 voter"}, ownGen: map[string]uint64{"n1": 42, "n2": 50, "n3": 60},
			grants: map[string][]*hmv1.LeaseGrant{}}
		for _, g := range []string{"n1", "n2", "n3"} {
			s.grants[g] = []*hmv1.LeaseGrant{{Node: "n1", Gen: 42, RemainingUs: 400_000}, {Node: "n2", Gen: 50, RemainingUs: 500_000}}
		}
		return s
	}
	t0 := time.Now()
	steady := []lab.Sample{{At: t0, Holders: []string{"n1"}}, {At: t0.Add(10 * time.Millisecond), Holders: []string{"n1"}}}
	if got := h.judge(base(), base(), steady, []string{"n1"}); len(got) != 0 {
		t.Fatalf("no change judged as %v", got)
	}
	for name, c := range map[string]struct {
		mod     func(s *hostileSnap)
		samples []lab.Sample
		want    string
	}{
		"role":    {mod: func(s *hostileSnap) { s.roles[VIPRole] = "n2@4" }, want: `role registry-vip changed from "n1@3" to "n2@4"`},
		"epoch":   {mod: func(s *hostileSnap) { s.roles[VIPRole] = "n1@4" }, want: "role registry-vip changed"},
		"leader":  {mod: func(s *hostileSnap) { s.leader = "n3" }, want: "raft leader n2 (term 5) became n3"},
		"term":    {mod: func(s *hostileSnap) { s.term = 6 }, want: "became n2 (term 6)"},
		"spec":    {mod: func(s *hostileSnap) { s.specVersion = 2 }, want: "spec version 1 became 2"},
		"members": {mod: func(s *hostileSnap) { s.members = append(s.members, "evil1 voter") }, want: "raft configuration"},
		"actor": {mod: func(s *hostileSnap) {
			s.events = []*hmv1.Event{{Seq: 9, Kind: "operator", Actor: "node:n1"}, {Seq: 10, Kind: "operator", Actor: "api@198.18.0.102:4000"}}
		}, want: `event 10 (operator ) by "api@198.18.0.102:4000"`},
		"gen max":  {mod: func(s *hostileSnap) { s.grants["n2"][0].Gen = math.MaxUint64 }, want: "n2's grant table holds n1 at the forged generation 18446744073709551615"},
		"gen next": {mod: func(s *hostileSnap) { s.grants["n3"][0].Gen = 43 }, want: "n3's grant table holds n1 at the forged generation 43"},
		"own gen":  {mod: func(s *hostileSnap) { s.ownGen["n1"] = 43 }, want: "n1's own lease is at the forged generation 43"},
		"ttl":      {mod: func(s *hostileSnap) { s.grants["n1"][0].RemainingUs = 600_000_000 }, want: "n1 grants n1 for 10m0s more"},
		"names": {mod: func(s *hostileSnap) {
			s.grants["n1"] = append(s.grants["n1"], &hmv1.LeaseGrant{Node: "forged-00001", Gen: 1, RemainingUs: 1})
		}, want: "n1's grant table holds 1 nodes that are not members"},
		"kernel": {samples: append(slices.Clone(steady), lab.Sample{At: t0.Add(20 * time.Millisecond)}), want: "the VIP's holders went from [n1] to []"},
	} {
		after := base()
		if c.mod != nil {
			c.mod(&after)
		}
		samples := steady
		if c.samples != nil {
			samples = c.samples
		}
		got := h.judge(base(), after, samples, []string{"n1"})
		if len(got) != 1 || !strings.Contains(got[0], c.want) {
			t.Errorf("%s: judged %q, want one issue with %q", name, got, c.want)
		}
		// Evidence already there before the phase is not blamed on it.
		if got := h.judge(after, after, steady, []string{"n1"}); len(got) != 0 && name != "kernel" && name != "actor" { // events are those since the last look
			t.Errorf("%s: unchanged evidence judged again: %v", name, got)
		}
	}
}
