package tlsid

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Files names a holder's PEM files: the cluster CA, its certificate and key.
type Files struct {
	CA   string
	Cert string
	Key  string
}

// material is one loaded set of files.
type material struct {
	cert    tls.Certificate
	leaf    *x509.Certificate
	roots   *x509.CertPool
	self    Identity
	cluster string

	// verified remembers the chains this material verified, so a peer's
	// every request (the leader polls each voter twice a second) is not
	// parsed and signature-checked again. It belongs to the material: a
	// Reload starts with none.
	verified verifiedCache
}

// verifiedCache maps a presented chain and key usage to the identity it
// verified as and the time window in which that verification holds: the
// latest NotBefore and earliest NotAfter of the chain it verified through,
// root included. Verify's outcome for the same chain and roots depends only
// on the time, and it holds throughout that window. Failures are not kept.
type verifiedCache struct {
	mu sync.Mutex
	m  map[string]verifiedChain
}

type verifiedChain struct {
	id          Identity
	from, until time.Time
}

// maxVerified bounds the cache; a full cache is emptied (the holders that
// reach one agent are its peers and a few operators).
const maxVerified = 256

func chainKey(raw [][]byte, usage x509.ExtKeyUsage) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", usage)
	for _, r := range raw {
		fmt.Fprintf(&b, "/%d:", len(r))
		b.Write(r)
	}
	return b.String()
}

// verifyCached is verify with the cache, at now.
func (m *material) verifyCached(raw [][]byte, usage x509.ExtKeyUsage, now time.Time) (Identity, error) {
	key := chainKey(raw, usage)
	m.verified.mu.Lock()
	v, ok := m.verified.m[key]
	m.verified.mu.Unlock()
	if ok && !now.Before(v.from) && !now.After(v.until) {
		return v.id, nil
	}
	id, chain, err := m.verifyAt(raw, usage, now)
	if err != nil {
		return Identity{}, err
	}
	v = verifiedChain{id: id, from: chain[0].NotBefore, until: chain[0].NotAfter}
	for _, c := range chain[1:] {
		if c.NotBefore.After(v.from) {
			v.from = c.NotBefore
		}
		if c.NotAfter.Before(v.until) {
			v.until = c.NotAfter
		}
	}
	m.verified.mu.Lock()
	if m.verified.m == nil || len(m.verified.m) >= maxVerified {
		m.verified.m = make(map[string]verifiedChain)
	}
	m.verified.m[key] = v
	m.verified.mu.Unlock()
	return id, nil
}

// Store holds a holder's loaded certificate and CA, and hands out TLS
// configurations that always use the latest loaded ones: Reload swaps them
// for connections made afterwards, without a restart.
type Store struct {
	files Files
	want  func(Identity) error
	cur   atomic.Pointer[material]
	now   func() time.Time // tests; nil is time.Now
}

// Load reads files. want, if not nil, checks the identity the certificate
// carries (an agent wants node.<its node_id>).
func Load(files Files, want func(Identity) error) (*Store, error) {
	s := &Store{files: files, want: want}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again; on any error the loaded ones stay.
func (s *Store) Reload() error {
	m, err := load(s.files)
	if err != nil {
		return err
	}
	if s.want != nil {
		if err := s.want(m.self); err != nil {
			return fmt.Errorf("%s: %w", s.files.Cert, err)
		}
	}
	s.cur.Store(m)
	return nil
}

// Self is the identity of the loaded certificate.
func (s *Store) Self() Identity { return s.cur.Load().self }

// Cluster is the cluster the CA names.
func (s *Store) Cluster() string { return s.cur.Load().cluster }

// NotAfter is when the loaded certificate expires.
func (s *Store) NotAfter() time.Time { return s.cur.Load().leaf.NotAfter }

func load(f Files) (*material, error) {
	cab, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	cas, err := parseCerts(cab)
	if err != nil {
		return nil, fmt.Errorf("ca_file %s: %w", f.CA, err)
	}
	roots := x509.NewCertPool()
	cluster := ""
	for _, c := range cas {
		cl, err := ClusterOfCA(c)
		if err != nil {
			return nil, fmt.Errorf("ca_file %s: %w", f.CA, err)
		}
		if cluster != "" && cl != cluster {
			return nil, fmt.Errorf("ca_file %s: holds CAs of two clusters (%s, %s)", f.CA, cluster, cl)
		}
		cluster = cl
		roots.AddCert(c)
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("cert_file %s / key_file %s: %w", f.Cert, f.Key, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("cert_file %s: %w", f.Cert, err)
	}
	pair.Leaf = leaf
	m := &material{cert: pair, leaf: leaf, roots: roots, cluster: cluster}
	id, err := m.verify(pair.Certificate, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, fmt.Errorf("cert_file %s: %w", f.Cert, err)
	}
	m.self = id
	return m, nil
}

// ErrOtherCluster says a certificate is of another cluster.
var ErrOtherCluster = errors.New("the certificate belongs to another cluster")

// verify checks a peer's chain against the CA and returns its identity,
// which must be of this cluster.
func (m *material) verify(raw [][]byte, usage x509.ExtKeyUsage) (Identity, error) {
	id, _, err := m.verifyAt(raw, usage, time.Now())
	return id, err
}

// verifyAt is verify at now; it also returns the chain the leaf verified
// through (leaf first, root last).
func (m *material) verifyAt(raw [][]byte, usage x509.ExtKeyUsage, now time.Time) (Identity, []*x509.Certificate, error) {
	if len(raw) == 0 {
		return Identity{}, nil, errors.New("no certificate presented")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return Identity{}, nil, err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: m.roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: now})
	if err != nil {
		return Identity{}, nil, fmt.Errorf("certificate not signed by this cluster's CA or not valid now: %w", err)
	}
	id, err := Parse(certs[0])
	if err != nil {
		return Identity{}, nil, err
	}
	if id.Cluster != m.cluster {
		return Identity{}, nil, fmt.Errorf("%w: %s is of cluster %s, this is %s", ErrOtherCluster, id, id.Cluster, m.cluster)
	}
	return id, chains[0], nil
}

// PeerIdentity verifies the peer of an established connection, against
// the loaded CA at the time of the call (a connection outlives a
// certificate's expiry and a CA's reload). A chain verified before with
// this CA is not checked again while every certificate of it is valid.
func (s *Store) PeerIdentity(cs tls.ConnectionState, usage x509.ExtKeyUsage) (Identity, error) {
	raw := make([][]byte, len(cs.PeerCertificates))
	for i, c := range cs.PeerCertificates {
		raw[i] = c.Raw
	}
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	return s.cur.Load().verifyCached(raw, usage, now)
}

// AnyNode accepts any node of the cluster.
func AnyNode(id Identity) error {
	if id.Kind != Node {
		return fmt.Errorf("%s is not a node certificate", id)
	}
	return nil
}

// AnyIdentity accepts any verified holder of the cluster.
func AnyIdentity(Identity) error { return nil }

// ServerConfig is the configuration of a listener that requires a client
// certificate of this cluster accepted by allow (TLS 1.3).
func (s *Store) ServerConfig(allow func(Identity) error) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &s.cur.Load().cert, nil },
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := s.PeerIdentity(cs, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return err
			}
			return allow(id)
		},
	}
}

// ServerConfigNoClientAuth serves this holder's certificate to clients that
// present none (the Sentinel listener's Redis clients).
func (s *Store) ServerConfigNoClientAuth() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12, // Redis clients: TLS 1.2 at least
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &s.cur.Load().cert, nil },
	}
}

// ClientConfig dials a server that must be a node of this cluster accepted
// by allow, presenting this holder's certificate.
func (s *Store) ClientConfig(allow func(Identity) error) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain and identity are verified in VerifyConnection against
		// the latest loaded CA: peers are dialled by address, and what
		// matters is the identity in the certificate, not a host name.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &s.cur.Load().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := s.PeerIdentity(cs, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if id.Kind != Node {
				return fmt.Errorf("server %s is not a node", id)
			}
			return allow(id)
		},
	}
}
