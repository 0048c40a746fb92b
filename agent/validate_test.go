package agent

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/fsm"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

func TestValidateRequests(t *testing.T) {
	mustEncode := func(c fsm.Command) []byte {
		b, err := fsm.Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	leave := mustEncode(&fsm.Leave{Node: "n1", Reason: "stop", Time: 1})
	assign := mustEncode(&fsm.Assign{Role: "web", Node: "n1", Epoch: 1, Time: 1})
	invalidLeave := append([]byte{leave[0], leave[1]}, `{"node":"N1","reason":"","time":0}`...)
	queries := func(nodes ...string) *hmv1.LeasesRequest {
		r := &hmv1.LeasesRequest{}
		for _, n := range nodes {
			r.Queries = append(r.Queries, &hmv1.LeaseQuery{Node: n, Gen: 7})
		}
		return r
	}
	tooMany := queries(strings.Split(strings.Repeat("n1,", maxLeaseQueries+1), ",")[:maxLeaseQueries+1]...)
	zeroGen := &hmv1.LeasesRequest{Queries: []*hmv1.LeaseQuery{{Node: "n1", Gen: 0}}}
	specDoc := "roles:\n  - name: web\n    type: service\n"

	tests := []struct {
		name string
		err  error
		code codes.Code // codes.OK: accepted
		msg  string     // the start of the error's message
	}{
		{"join", validateJoin(&hmv1.JoinRequest{Id: "n4", RaftAddress: "10.0.0.4:7000", Voter: true}), codes.OK, ""},
		{"join by host name", validateJoin(&hmv1.JoinRequest{Id: "n4", RaftAddress: "n4.lab:7000"}), codes.OK, ""},
		{"join: bad id", validateJoin(&hmv1.JoinRequest{Id: "N4", RaftAddress: "10.0.0.4:7000"}), codes.InvalidArgument, `id: "N4" is not a valid node id`},
		{"join: no raft address", validateJoin(&hmv1.JoinRequest{Id: "n4"}), codes.InvalidArgument, "raft_address: is empty"},
		{"join: raft address without a port", validateJoin(&hmv1.JoinRequest{Id: "n4", RaftAddress: "10.0.0.4"}), codes.InvalidArgument,
			`raft_address: "10.0.0.4" is not host:port`},
		{"join: raft address on port 0", validateJoin(&hmv1.JoinRequest{Id: "n4", RaftAddress: "10.0.0.4:0"}), codes.InvalidArgument,
			`raft_address: port "0" in "10.0.0.4:0" is not a number from 1 to 65535`},
		{"join: unspecified raft address", validateJoin(&hmv1.JoinRequest{Id: "n4", RaftAddress: "0.0.0.0:7000"}), codes.InvalidArgument,
			`raft_address: "0.0.0.0:7000" is not an address one can connect to`},
		{"join: raft address without a host", validateJoin(&hmv1.JoinRequest{Id: "n4", RaftAddress: ":7000"}), codes.InvalidArgument,
			`raft_address: ":7000" has no host`},
		{"join: raft address host not a name", validateJoin(&hmv1.JoinRequest{Id: "n4", RaftAddress: "n_4:7000"}), codes.InvalidArgument,
			`raft_address: host "n_4" in "n_4:7000" is neither an IP address nor a valid host name`},

		{"remove", validateRemove(&hmv1.RemoveRequest{Id: "n2"}), codes.OK, ""},
		{"remove: bad id", validateRemove(&hmv1.RemoveRequest{Id: "-n2"}), codes.InvalidArgument, `id: "-n2" is not a valid node id`},

		{"transfer to any voter", validateTransferLeadership(&hmv1.TransferLeadershipRequest{}), codes.OK, ""},
		{"transfer to n2", validateTransferLeadership(&hmv1.TransferLeadershipRequest{Target: "n2"}), codes.OK, ""},
		{"transfer: bad target", validateTransferLeadership(&hmv1.TransferLeadershipRequest{Target: "n2 "}), codes.InvalidArgument,
			`target: "n2 " is not a valid node id`},

		{"move", validateMove(&hmv1.MoveRequest{Role: "web", Node: "n2", Actor: "cli:alice"}), codes.OK, ""},
		{"move without an actor", validateMove(&hmv1.MoveRequest{Role: "web", Node: "n2"}), codes.OK, ""},
		{"move: bad role", validateMove(&hmv1.MoveRequest{Role: "Web", Node: "n2"}), codes.InvalidArgument, `role: "Web" is not a valid role name`},
		{"move: bad node", validateMove(&hmv1.MoveRequest{Role: "web", Node: ""}), codes.InvalidArgument, `node: "" is not a valid node id`},
		{"move: actor with an escape sequence", validateMove(&hmv1.MoveRequest{Role: "web", Node: "n2", Actor: "cli:\x1b[2Jalice"}),
			codes.InvalidArgument, `actor: "cli:\x1b[2Jalice" holds the control character U+001B`},
		{"move: actor with a line break", validateMove(&hmv1.MoveRequest{Role: "web", Node: "n2", Actor: "a\nb"}),
			codes.InvalidArgument, `actor: "a\nb" holds the control character U+000A`},
		{"move: actor not UTF-8", validateMove(&hmv1.MoveRequest{Role: "web", Node: "n2", Actor: "cli:\xff"}),
			codes.InvalidArgument, "actor: is not valid UTF-8"},
		{"move: actor too long", validateMove(&hmv1.MoveRequest{Role: "web", Node: "n2", Actor: strings.Repeat("a", maxActor+1)}),
			codes.InvalidArgument, "actor: is 129 bytes; at most 128"},
		{"move: longest actor", validateMove(&hmv1.MoveRequest{Role: "web", Node: "n2", Actor: strings.Repeat("ä", maxActor/2)}), codes.OK, ""},

		{"drain", validateDrain(&hmv1.DrainRequest{Node: "n2", Drained: true, Actor: "cli:bob"}), codes.OK, ""},
		{"drain: bad node", validateDrain(&hmv1.DrainRequest{Node: "n2.lab"}), codes.InvalidArgument, `node: "n2.lab" is not a valid node id`},
		{"drain: bad actor", validateDrain(&hmv1.DrainRequest{Node: "n2", Actor: "\x00"}), codes.InvalidArgument, "actor: "},

		{"explain", validateExplain(&hmv1.ExplainRequest{Role: "redis-vip"}), codes.OK, ""},
		{"explain: bad role", validateExplain(&hmv1.ExplainRequest{Role: strings.Repeat("r", 64)}), codes.InvalidArgument, "role: "},

		{"propose leave", errOf(checkProposal(leave)), codes.OK, ""},
		{"propose: too large", errOf(checkProposal(make([]byte, fsm.MaxCommandSize+1))), codes.InvalidArgument,
			"command: 524289 bytes exceeds the 524288-byte limit"},
		{"propose: not a command", errOf(checkProposal([]byte{1})), codes.InvalidArgument, "command: decode: command shorter than its 2-byte header"},
		{"propose: unknown version", errOf(checkProposal([]byte{9, 2, '{', '}'})), codes.InvalidArgument,
			"command: command leave version 2: this agent reads version 1 only"},
		{"propose: unknown ignorable type", errOf(checkProposal([]byte{0xb9, 1, '{', '}'})), codes.InvalidArgument,
			"command: type 57 is unknown to this agent, which proposes only commands it can check; upgrade it"},
		{"propose: invalid command", errOf(checkProposal(invalidLeave)), codes.InvalidArgument, `node: "N1" is not a valid node id`},
		{"propose: placement", errOf(checkProposal(assign)), codes.PermissionDenied, "command: assign is not accepted from other nodes"},

		{"leases", errOf(leaseQueries(queries("n1", "n2"))), codes.OK, ""},
		{"leases: none", errOf(leaseQueries(queries())), codes.OK, ""},
		{"leases: bad node", errOf(leaseQueries(queries("n1", "N2"))), codes.InvalidArgument, `queries[1]: "N2"/7 is not a node id and a generation`},
		{"leases: generation 0", errOf(leaseQueries(zeroGen)), codes.InvalidArgument, `queries[0]: "n1"/0 is not a node id and a generation`},
		{"leases: too many", errOf(leaseQueries(tooMany)), codes.InvalidArgument, "queries: 4097 queries; at most 4096"},

		{"apply spec", errOf(parseSpecRequest(&hmv1.ApplySpecRequest{Document: specDoc, Actor: "cli:alice"})), codes.OK, ""},
		{"apply spec: invalid spec", errOf(parseSpecRequest(&hmv1.ApplySpecRequest{Document: "roles:\n  - name: Web\n"})), codes.InvalidArgument,
			"roles[0].name: "},
		{"apply spec: bad actor", errOf(parseSpecRequest(&hmv1.ApplySpecRequest{Document: specDoc, Actor: "\t"})), codes.InvalidArgument,
			"actor: "},
		{"apply spec: document too large", errOf(parseSpecRequest(&hmv1.ApplySpecRequest{Document: specDoc + strings.Repeat("#", maxSpecDocument)})),
			codes.InvalidArgument, "document: is 524327 bytes; at most 524288"},
	}
	for _, tc := range tests {
		st, _ := status.FromError(tc.err)
		if st.Code() != tc.code || !strings.HasPrefix(st.Message(), tc.msg) {
			t.Errorf("%s: got %v, want code %v and a message starting %q", tc.name, tc.err, tc.code, tc.msg)
		}
	}
}

func errOf[T any](_ T, err error) error { return err }

// FuzzAPIRequests feeds arbitrary fields to the checks of the admin and
// cluster requests. None panics; a refusal is InvalidArgument (or
// PermissionDenied for a command type other nodes may not propose) with a
// message naming a field; what is accepted holds what the handlers rely
// on: node ids and role names are DNS labels, a Raft address is a host and
// a port other nodes can dial, an actor is short printable text, a spec is
// valid, a proposal is a valid command of a forwardable type, and the
// commands the handlers build from an accepted request validate.
func FuzzAPIRequests(f *testing.F) {
	f.Add("n4", "10.0.0.4:7000", []byte("cli:alice"), uint64(1), true)
	f.Add("web", "n2", []byte("roles:\n  - name: web\n    type: service\n    candidates: [{node: n1, priority: 2}]\n"), uint64(0), false)
	f.Add("redis-vip", "[fd00::4]:7000", []byte("\x09\x01{\"node\":\"n1\",\"reason\":\"stop\",\"time\":1}"), uint64(3), false)
	f.Add("n1,n2,n3", "n4.lab:65535", []byte("\x0c\x01{\"node\":\"n2\",\"role\":\"master\",\"offset\":4711,\"time\":7}"), uint64(7), true)
	f.Add("N4", "0.0.0.0:7000", []byte("cli:\x1b[2J"), uint64(0), false)
	f.Add("", ":7000", []byte("\x05\x01{\"role\":\"web\",\"node\":\"n1\",\"epoch\":1,\"time\":1}"), uint64(0), false)
	f.Fuzz(func(t *testing.T, a, b string, raw []byte, n uint64, flag bool) {
		// Join: a as the id, b as the Raft address.
		if err := checkRefusal(t, "join", validateJoin(&hmv1.JoinRequest{Id: a, RaftAddress: b, Voter: flag})); err == nil {
			wantLabel(t, "join id", a)
			wantDialable(t, "join raft_address", b)
		}
		if err := checkRefusal(t, "remove", validateRemove(&hmv1.RemoveRequest{Id: a})); err == nil {
			wantLabel(t, "remove id", a)
			wantCommand(t, &fsm.RemoveNode{Node: a, Actor: "api", Time: 1})
		}
		if err := checkRefusal(t, "transfer", validateTransferLeadership(&hmv1.TransferLeadershipRequest{Target: a})); err == nil && a != "" {
			wantLabel(t, "transfer target", a)
		}
		// Move and Drain: the raw bytes as the actor.
		if err := checkRefusal(t, "move", validateMove(&hmv1.MoveRequest{Role: a, Node: b, Actor: string(raw)})); err == nil {
			wantLabel(t, "move role", a)
			wantLabel(t, "move node", b)
			wantActor(t, string(raw))
			wantCommand(t, &fsm.RequestRelease{Role: a, Epoch: n | 1, Target: b, Actor: string(raw), Time: 1,
				Reason: "moved by an operator to " + b})
		}
		if err := checkRefusal(t, "drain", validateDrain(&hmv1.DrainRequest{Node: a, Drained: flag, Actor: string(raw)})); err == nil {
			wantLabel(t, "drain node", a)
			wantActor(t, string(raw))
			wantCommand(t, &fsm.SetDrain{Node: a, Drained: flag, Actor: string(raw), Time: 1})
		}
		if err := checkRefusal(t, "explain", validateExplain(&hmv1.ExplainRequest{Role: b})); err == nil {
			wantLabel(t, "explain role", b)
		}
		// ApplySpec: the raw bytes as the document, a as the actor.
		sp, err := parseSpecRequest(&hmv1.ApplySpecRequest{Document: string(raw), ExpectedVersion: n, Actor: a})
		if checkRefusal(t, "apply spec", err) == nil {
			wantActor(t, a)
			if sp == nil || sp.Validate() != nil || len(raw) > maxSpecDocument {
				t.Fatalf("apply spec of %q accepted %+v (validation %v)", raw, sp, sp.Validate())
			}
			if _, err := fsm.Encode(&fsm.ApplySpec{Spec: sp, ExpectedVersion: n, Actor: a, Time: 1}); err != nil &&
				!strings.Contains(err.Error(), "command limit") {
				t.Fatalf("an accepted spec does not encode as a command: %v", err)
			}
		}
		// Propose: the raw bytes as the command.
		cmd, err := checkProposal(raw)
		if checkRefusal(t, "propose", err) == nil {
			if len(raw) > fsm.MaxCommandSize || cmd.Validate() != nil {
				t.Fatalf("propose of %q accepted %#v (validation %v)", raw, cmd, cmd.Validate())
			}
			switch cmd.(type) {
			case *fsm.RegisterNode, *fsm.Leave, *fsm.Release, *fsm.RecordEvent, *fsm.ApplySpec, *fsm.CheckUpdate, *fsm.RedisReport:
			default:
				t.Fatalf("propose accepted a %s from another node", cmd.Type())
			}
		}
		// Leases: the comma-separated words of a as nodes, at generations
		// from n.
		req := &hmv1.LeasesRequest{}
		for i, node := range strings.Split(a, ",") {
			req.Queries = append(req.Queries, &hmv1.LeaseQuery{Node: node, Gen: n + uint64(i)})
		}
		qs, err := leaseQueries(req)
		if checkRefusal(t, "leases", err) == nil {
			if len(qs) != len(req.Queries) || len(qs) > maxLeaseQueries {
				t.Fatalf("leases: %d queries accepted as %d", len(req.Queries), len(qs))
			}
			for _, q := range qs {
				wantLabel(t, "leases node", q.Node)
				if q.Gen == 0 {
					t.Fatalf("leases: accepted generation 0")
				}
			}
		}
	})
}

// checkRefusal checks that err is nil or a refusal: InvalidArgument (or
// PermissionDenied) with a message that names a field ("field: ..."). It
// returns err.
func checkRefusal(t *testing.T, what string, err error) error {
	t.Helper()
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok || (st.Code() != codes.InvalidArgument && st.Code() != codes.PermissionDenied) {
		t.Fatalf("%s: got %v, want an InvalidArgument or PermissionDenied status", what, err)
	}
	if field, _, ok := strings.Cut(st.Message(), ": "); !ok || field == "" {
		t.Fatalf("%s: message %q names no field", what, st.Message())
	}
	return err
}

// wantLabel fails unless s is a DNS label of lower-case letters, digits
// and inner hyphens (checked here by hand, not with spec.ValidName).
func wantLabel(t *testing.T, what, s string) {
	t.Helper()
	ok := len(s) >= 1 && len(s) <= 63 && s[0] != '-' && s[len(s)-1] != '-'
	for _, c := range []byte(s) {
		ok = ok && (c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-')
	}
	if !ok {
		t.Fatalf("%s: accepted %q, not a DNS label", what, s)
	}
}

// wantDialable fails unless addr is a host (an IP other than the
// unspecified one, or a host name) and a port from 1 to 65535.
func wantDialable(t *testing.T, what, addr string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	p, perr := strconv.Atoi(port)
	ip := net.ParseIP(host)
	if err != nil || perr != nil || p < 1 || p > 65535 || host == "" || (ip != nil && ip.IsUnspecified()) ||
		(ip == nil && strings.ContainsAny(host, " /:%_")) {
		t.Fatalf("%s: accepted %q, not a host:port other nodes can dial", what, addr)
	}
}

// wantActor fails unless actor is short printable UTF-8 text.
func wantActor(t *testing.T, actor string) {
	t.Helper()
	if len(actor) > maxActor || !utf8.ValidString(actor) || strings.IndexFunc(actor, unicode.IsControl) >= 0 {
		t.Fatalf("accepted actor %q", actor)
	}
}

// wantCommand fails unless the command a handler builds from an accepted
// request validates and encodes.
func wantCommand(t *testing.T, c fsm.Command) {
	t.Helper()
	if _, err := fsm.Encode(c); err != nil {
		t.Fatalf("the command for an accepted request does not encode: %v", err)
	}
}
