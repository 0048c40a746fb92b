// Package tlsid is the cluster's identity layer: who a certificate says its
// holder is, the certificates that say it (a cluster CA, node and operator
// certificates), and the TLS configurations every channel uses (Raft, the
// gRPC API, agent-to-agent calls, metrics, the Sentinel listener).
//
// An identity lives in a certificate's URI SAN, signed by the cluster's CA:
//
//	harbormaster://<cluster>/node/<node-id>
//	harbormaster://<cluster>/operator/<role>/<name>
//
// Node certificates also carry the DNS name node.<node-id>.<cluster> (as
// Consul's server.<dc>.consul), so standard TLS clients can verify a node.
// A certificate of another cluster is refused even when the same CA signed
// it.
package tlsid

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Scheme is the URI scheme of identities.
const Scheme = "harbormaster"

// Kind is what a certificate's holder is.
type Kind string

// Kinds.
const (
	Node     Kind = "node"
	Operator Kind = "operator"
)

// Role is an operator's permission level. Each role includes the ones
// before it: read < operate < admin.
type Role string

// Roles.
const (
	RoleRead    Role = "read"
	RoleOperate Role = "operate"
	RoleAdmin   Role = "admin"
)

// Roles lists the operator roles, weakest first.
var Roles = []Role{RoleRead, RoleOperate, RoleAdmin}

func (r Role) rank() int {
	for i, x := range Roles {
		if x == r {
			return i + 1
		}
	}
	return 0
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// Includes reports whether r grants what need requires.
func (r Role) Includes(need Role) bool { return r.rank() > 0 && r.rank() >= need.rank() }

// Identity is the verified holder of a certificate.
type Identity struct {
	Cluster string
	Kind    Kind
	// Name is the node id (Kind Node) or the operator's name.
	Name string
	// Role is set for operators.
	Role Role
}

// String is the actor written into events: "node:n1", "operator:alice".
func (id Identity) String() string {
	if id.Kind == "" {
		return "unauthenticated"
	}
	return string(id.Kind) + ":" + id.Name
}

// URI is the identity's URI SAN.
func (id Identity) URI() *url.URL {
	p := "/" + string(id.Kind) + "/"
	if id.Kind == Operator {
		p += string(id.Role) + "/"
	}
	return &url.URL{Scheme: Scheme, Host: id.Cluster, Path: p + id.Name}
}

// NodeDNS is the DNS name of node id in cluster.
func NodeDNS(cluster, id string) string { return "node." + id + "." + cluster }

// label is a DNS label: node ids, operator names and cluster names.
var label = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidName reports whether s may name a cluster, node or operator: a DNS
// label (1-63 lower-case letters, digits, inner hyphens).
func ValidName(s string) bool { return label.MatchString(s) }

// Validate checks an identity's fields.
func (id Identity) Validate() error {
	if !ValidName(id.Cluster) {
		return fmt.Errorf("cluster %q: not a DNS label (1-63 lower-case letters, digits, inner hyphens)", id.Cluster)
	}
	if !ValidName(id.Name) {
		return fmt.Errorf("name %q: not a DNS label (1-63 lower-case letters, digits, inner hyphens)", id.Name)
	}
	switch id.Kind {
	case Node:
		if id.Role != "" {
			return errors.New("a node identity has no role")
		}
	case Operator:
		if !id.Role.Valid() {
			return fmt.Errorf("role %q: want read, operate or admin", id.Role)
		}
	default:
		return fmt.Errorf("kind %q: want node or operator", id.Kind)
	}
	return nil
}

// ErrNoIdentity says a certificate carries no harbormaster identity.
var ErrNoIdentity = errors.New("the certificate carries no harbormaster identity (URI SAN harbormaster://...)")

// Parse reads the identity from a certificate's URI SANs. It does not
// verify the certificate: callers verify the chain first.
func Parse(c *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range c.URIs {
		if u.Scheme != Scheme {
			continue
		}
		id, err := parseURI(u)
		if err != nil {
			return Identity{}, err
		}
		found = append(found, id)
	}
	switch len(found) {
	case 0:
		return Identity{}, ErrNoIdentity
	case 1:
		return found[0], nil
	}
	return Identity{}, errors.New("the certificate carries more than one harbormaster identity")
}

// ParseURI reads an identity from its URI form.
func ParseURI(u *url.URL) (Identity, error) {
	if u.Scheme != Scheme {
		return Identity{}, fmt.Errorf("identity %s: scheme is not %s", u, Scheme)
	}
	return parseURI(u)
}

func parseURI(u *url.URL) (Identity, error) {
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return Identity{}, fmt.Errorf("identity %s: unexpected user, port, query or fragment", u)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	id := Identity{Cluster: u.Host}
	switch {
	case len(parts) == 2 && parts[0] == string(Node):
		id.Kind, id.Name = Node, parts[1]
	case len(parts) == 3 && parts[0] == string(Operator):
		id.Kind, id.Role, id.Name = Operator, Role(parts[1]), parts[2]
	default:
		return Identity{}, fmt.Errorf("identity %s: want harbormaster://CLUSTER/node/ID or harbormaster://CLUSTER/operator/ROLE/NAME", u)
	}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("identity %s: %w", u, err)
	}
	return id, nil
}

// caURI names the cluster in the CA certificate.
func caURI(cluster string) *url.URL { return &url.URL{Scheme: Scheme, Host: cluster, Path: "/ca"} }

// ClusterOfCA reads the cluster name from a CA certificate made by CreateCA.
func ClusterOfCA(c *x509.Certificate) (string, error) {
	for _, u := range c.URIs {
		if u.Scheme == Scheme && u.Path == "/ca" && ValidName(u.Host) {
			return u.Host, nil
		}
	}
	return "", errors.New("the CA certificate names no cluster (URI SAN harbormaster://CLUSTER/ca); create it with harbormaster tls ca create")
}
