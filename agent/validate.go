package agent

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/hostport"
	"github.com/harbormaster/harbormaster/lease"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
	"github.com/harbormaster/harbormaster/spec"
)

// The request checks of the admin and cluster services: pure functions of
// a request, run by the handlers before anything else, so that what enters
// the log or the Raft configuration from the network has been checked at
// the edge. Each returns nil or an InvalidArgument status naming the field
// and what to write instead (a refused command type is PermissionDenied).

// Bounds of request fields.
const (
	// maxActor bounds the actor an operator names ("cli:alice"); it is
	// stored in the log with every event.
	maxActor = 128
	// maxSpecDocument bounds an ApplySpec document before it is parsed;
	// a spec that large could not be proposed anyway (fsm.MaxCommandSize).
	maxSpecDocument = fsm.MaxCommandSize
	// maxLeaseQueries bounds the queries of one Leases request.
	maxLeaseQueries = 4096
)

func invalid(field, format string, args ...any) error {
	return status.Error(codes.InvalidArgument, field+": "+fmt.Sprintf(format, args...))
}

// checkNodeID checks a node id field: a DNS label, as node_id in the node
// config.
func checkNodeID(field, id string) error {
	if !spec.ValidName(id) {
		return invalid(field, "%q is not a valid node id (1-63 lower-case letters, digits, inner hyphens)", id)
	}
	return nil
}

// checkRoleName checks a role name field, as the spec's role names.
func checkRoleName(field, name string) error {
	if !spec.ValidName(name) {
		return invalid(field, "%q is not a valid role name (1-63 lower-case letters, digits, inner hyphens)", name)
	}
	return nil
}

// checkActor checks the actor an operator's request names; "" lets the
// handler name the caller's address instead. The actor is shown by
// `harbormaster events`, so it is printable text: no control characters
// (a terminal would act on escape sequences), valid UTF-8, bounded.
func checkActor(actor string) error {
	if len(actor) > maxActor {
		return invalid("actor", "is %d bytes; at most %d (such as cli:alice)", len(actor), maxActor)
	}
	if !utf8.ValidString(actor) {
		return invalid("actor", "is not valid UTF-8; name the operator in text (such as cli:alice)")
	}
	for _, r := range actor {
		if unicode.IsControl(r) {
			return invalid("actor", "%q holds the control character %U; name the operator in printable text (such as cli:alice)", actor, r)
		}
	}
	return nil
}

// validateJoin checks a Join request: the new member's id and the Raft
// address the other voters will dial.
func validateJoin(req *hmv1.JoinRequest) error {
	if err := checkNodeID("id", req.Id); err != nil {
		return err
	}
	if req.RaftAddress == "" {
		return invalid("raft_address", "is empty; give the joining node's raft_addr")
	}
	if msg := hostport.Check(req.RaftAddress, "10.0.0.2:7000"); msg != "" {
		return invalid("raft_address", "%s (the joining node's raft_addr)", msg)
	}
	return nil
}

// validateRemove checks a Remove request.
func validateRemove(req *hmv1.RemoveRequest) error { return checkNodeID("id", req.Id) }

// validateTransferLeadership checks a TransferLeadership request: no
// target (any voter) or a node id.
func validateTransferLeadership(req *hmv1.TransferLeadershipRequest) error {
	if req.Target == "" {
		return nil
	}
	return checkNodeID("target", req.Target)
}

// validateMove checks a Move request.
func validateMove(req *hmv1.MoveRequest) error {
	if err := checkRoleName("role", req.Role); err != nil {
		return err
	}
	if err := checkNodeID("node", req.Node); err != nil {
		return err
	}
	return checkActor(req.Actor)
}

// validateDrain checks a Drain request.
func validateDrain(req *hmv1.DrainRequest) error {
	if err := checkNodeID("node", req.Node); err != nil {
		return err
	}
	return checkActor(req.Actor)
}

// validateExplain checks an Explain request.
func validateExplain(req *hmv1.ExplainRequest) error { return checkRoleName("role", req.Role) }

// parseSpecRequest checks an ApplySpec request and parses its document
// (strictly, and validated: spec.Parse).
func parseSpecRequest(req *hmv1.ApplySpecRequest) (*spec.Spec, error) {
	if err := checkActor(req.Actor); err != nil {
		return nil, err
	}
	if len(req.Document) > maxSpecDocument {
		return nil, invalid("document", "is %d bytes; at most %d", len(req.Document), maxSpecDocument)
	}
	sp, err := spec.Parse([]byte(req.Document))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return sp, nil
}

// checkProposal decodes and checks a command another node forwards to the
// leader (Propose): within fsm.MaxCommandSize, of a known type and version,
// strictly decoded, valid, and of a type agents forward (a node's own
// registration, leave and releases, events, check and Redis reports, spec
// changes). Placement (assign, request-release) is the leader's own and is
// refused with PermissionDenied. Whether a registering node is a member
// is the handler's to check.
func checkProposal(b []byte) (fsm.Command, error) {
	if len(b) > fsm.MaxCommandSize {
		return nil, invalid("command", "%d bytes exceeds the %d-byte limit", len(b), fsm.MaxCommandSize)
	}
	cmd, err := fsm.Decode(b)
	if errors.Is(err, fsm.ErrUnknownIgnorable) {
		return nil, invalid("command", "type %d is unknown to this agent, which proposes only commands it can check; upgrade it", b[0]&^byte(fsm.IgnoreUnknownFlag))
	}
	if err != nil {
		return nil, invalid("command", "%v", err)
	}
	if err := cmd.Validate(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	switch cmd.(type) {
	case *fsm.RegisterNode, *fsm.Leave, *fsm.Release, *fsm.RecordEvent, *fsm.ApplySpec, *fsm.CheckUpdate, *fsm.RedisReport:
		return cmd, nil
	}
	return nil, status.Errorf(codes.PermissionDenied, "command: %s is not accepted from other nodes; the leader proposes placement itself", cmd.Type())
}

// leaseQueries checks a Leases request and returns its queries.
func leaseQueries(req *hmv1.LeasesRequest) ([]lease.Query, error) {
	if len(req.Queries) > maxLeaseQueries {
		return nil, invalid("queries", "%d queries; at most %d", len(req.Queries), maxLeaseQueries)
	}
	qs := make([]lease.Query, 0, len(req.Queries))
	for i, q := range req.Queries {
		if !spec.ValidName(q.Node) || q.Gen == 0 {
			return nil, invalid(fmt.Sprintf("queries[%d]", i), "%q/%d is not a node id and a generation", q.Node, q.Gen)
		}
		qs = append(qs, lease.Query{Node: q.Node, Gen: q.Gen})
	}
	return qs, nil
}
