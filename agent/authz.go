package agent

import (
	"context"
	"crypto/x509"
	"net/url"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/tlsid"
)

// Authorization by certificate identity (docs/security.md). Every gRPC
// method has a permission; a method missing from the table is refused.
type permission int

const (
	// permRead: any verified identity of the cluster (operators with any
	// role, nodes).
	permRead permission = iota + 1
	// permOperate: operators with operate or admin, nodes.
	permOperate
	// permAdmin: operators with admin, nodes (a node may only join itself;
	// Join checks that).
	permAdmin
	// permMember: node certificates only (agent-to-agent methods; a member
	// may relay an operator's spec change, see checkProposer).
	permMember
)

var methodPermissions = map[string]permission{
	"/harbormaster.v1.Admin/Status":             permRead,
	"/harbormaster.v1.Admin/Members":            permRead,
	"/harbormaster.v1.Admin/GetSpec":            permRead,
	"/harbormaster.v1.Admin/ListRoles":          permRead,
	"/harbormaster.v1.Admin/WatchEvents":        permRead,
	"/harbormaster.v1.Admin/Explain":            permRead,
	"/harbormaster.v1.Admin/Move":               permOperate,
	"/harbormaster.v1.Admin/Drain":              permOperate,
	"/harbormaster.v1.Admin/TransferLeadership": permOperate,
	"/harbormaster.v1.Admin/ApplySpec":          permOperate,
	"/harbormaster.v1.Admin/Join":               permAdmin,
	"/harbormaster.v1.Admin/Remove":             permAdmin,
	"/harbormaster.v1.Admin/RotateLeaseKey":     permAdmin,
	"/harbormaster.v1.Admin/SaveSnapshot":       permAdmin,
	"/harbormaster.v1.Cluster/Propose":          permMember,
	"/harbormaster.v1.Cluster/Leases":           permMember,
	"/grpc.health.v1.Health/Check":              permRead,
	"/grpc.health.v1.Health/Watch":              permRead,
	"/grpc.health.v1.Health/List":               permRead,

	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      permRead,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": permRead,
}

// onBehalfOfKey carries the identity of the operator (or node) a member
// forwards a request for. It is believed only from a node certificate.
const onBehalfOfKey = "x-harbormaster-on-behalf-of"

type callerKey struct{}

// caller is who a request comes from: the verified certificate (peer) and
// the identity the request acts as (effective: the peer, or the identity
// a member forwarded it for).
type caller struct {
	peer      tlsid.Identity
	effective tlsid.Identity
}

// callerOf returns the verified caller of a request; ok is false on an
// insecure agent (no identities).
func callerOf(ctx context.Context) (caller, bool) {
	c, ok := ctx.Value(callerKey{}).(caller)
	return c, ok
}

// identify reads the verified peer identity of a request and the identity
// it acts as.
func (a *Agent) identify(ctx context.Context) (caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return caller{}, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return caller{}, status.Error(codes.Unauthenticated, "not a TLS connection")
	}
	id, err := a.tls.PeerIdentity(ti.State, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return caller{}, status.Error(codes.Unauthenticated, err.Error())
	}
	c := caller{peer: id, effective: id}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(onBehalfOfKey); len(v) > 0 {
		if id.Kind != tlsid.Node {
			return caller{}, status.Errorf(codes.PermissionDenied, "%s may not act on behalf of another identity", id)
		}
		u, err := url.Parse(v[0])
		if err != nil {
			return caller{}, status.Errorf(codes.InvalidArgument, "%s: %v", onBehalfOfKey, err)
		}
		eff, err := tlsid.ParseURI(u)
		if err != nil || eff.Cluster != id.Cluster {
			return caller{}, status.Errorf(codes.PermissionDenied, "%s: %q is not an identity of this cluster", onBehalfOfKey, v[0])
		}
		c.effective = eff
	}
	return c, nil
}

// allowed reports whether id holds perm.
func allowed(id tlsid.Identity, perm permission) bool {
	switch id.Kind {
	case tlsid.Node:
		return true
	case tlsid.Operator:
		switch perm {
		case permRead:
			return id.Role.Includes(tlsid.RoleRead)
		case permOperate:
			return id.Role.Includes(tlsid.RoleOperate)
		case permAdmin:
			return id.Role.Includes(tlsid.RoleAdmin)
		}
	}
	return false
}

// authorize checks a call to method and returns the context carrying its
// caller.
func (a *Agent) authorize(ctx context.Context, method string) (context.Context, error) {
	if err := a.checkClusterID(ctx); err != nil {
		return nil, err
	}
	if perm := methodPermissions[method]; perm == permOperate || perm == permAdmin {
		if err := a.StoreFault(); err != nil {
			return nil, status.Errorf(codes.Unavailable, "this node's Raft store is failing (%v); it refuses changes until it writes again: ask another node", err)
		}
	}
	if a.tls == nil {
		return ctx, nil
	}
	perm, ok := methodPermissions[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "method %s is not open to anyone", method)
	}
	c, err := a.identify(ctx)
	if err != nil {
		return nil, err
	}
	if perm == permMember {
		// The peer must be a member; what it may propose for whom is
		// checked per command (checkProposer).
		if c.peer.Kind != tlsid.Node {
			return nil, status.Errorf(codes.PermissionDenied, "%s is for cluster members only; %s is not one", method, c.peer)
		}
	} else if !allowed(c.effective, perm) || !allowed(c.peer, permRead) {
		return nil, status.Errorf(codes.PermissionDenied, "%s needs the %s role; %s has %s", method, perm, c.effective, roleOf(c.effective))
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

func (p permission) String() string {
	switch p {
	case permRead:
		return "read"
	case permOperate:
		return "operate"
	case permAdmin:
		return "admin"
	case permMember:
		return "member"
	}
	return "unknown"
}

func roleOf(id tlsid.Identity) string {
	if id.Kind == tlsid.Node {
		return "node"
	}
	return string(id.Role)
}

func (a *Agent) unaryAuthz(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

type authzStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s authzStream) Context() context.Context { return s.ctx }

func (a *Agent) streamAuthz(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, authzStream{ServerStream: ss, ctx: ctx})
}

// forwardFor adds the identity a request acts as to ctx's outgoing
// metadata, so the leader authorizes the original caller, not this node.
func forwardFor(ctx context.Context) context.Context {
	c, ok := callerOf(ctx)
	if !ok {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, onBehalfOfKey, c.effective.URI().String())
}

// checkProposer checks that a command forwarded through Cluster.Propose
// may come from its caller: a node proposes only for itself, and operator
// commands carry the forwarded operator as their actor. It returns nil on
// an insecure agent.
func checkProposer(ctx context.Context, cmd fsm.Command) error {
	c, ok := callerOf(ctx)
	if !ok {
		return nil
	}
	// A member may relay another member's proposal (a follower that was
	// asked forwards to the leader): the rules apply to the originator.
	self := c.effective.Name
	deny := func(format string, args ...any) error {
		return status.Errorf(codes.PermissionDenied, "%s from %s: "+format, append([]any{cmd.Type(), c.effective}, args...)...)
	}
	if c.effective.Kind == tlsid.Operator {
		// Forwarded for an operator: spec changes and the events that
		// record operator actions, in the operator's name.
		op := c.effective
		switch x := cmd.(type) {
		case *fsm.ApplySpec:
			if !allowed(op, permOperate) {
				return deny("needs the operate role")
			}
			if x.Actor != op.String() {
				return deny("actor %q is not the caller", x.Actor)
			}
		case *fsm.RecordEvent:
			if x.Event.Actor != op.String() {
				return deny("actor %q is not the caller", x.Event.Actor)
			}
		default:
			return deny("not accepted on behalf of an operator")
		}
		return nil
	}
	node := ""
	switch x := cmd.(type) {
	case *fsm.RegisterNode:
		node = x.Node
	case *fsm.Leave:
		node = x.Node
	case *fsm.Release:
		node = x.Node
	case *fsm.CheckUpdate:
		node = x.Node
	case *fsm.RedisReport:
		node = x.Node
	case *fsm.RecordEvent:
		if x.Event.Actor != self || (x.Event.Node != "" && x.Event.Node != self) {
			return deny("a node records only its own events (actor and node %s)", self)
		}
		return nil
	default:
		return deny("not accepted from a node")
	}
	if node != self {
		return deny("a node proposes this only for itself, not for %s", node)
	}
	return nil
}

// HasPermission reports whether method has an entry in the permission
// table (tests check every method of the services has one).
func HasPermission(method string) bool { _, ok := methodPermissions[method]; return ok }
