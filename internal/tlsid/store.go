package tlsid

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
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
}

// Store holds a holder's loaded certificate and CA, and hands out TLS
// configurations that always use the latest loaded ones: Reload swaps them
// for connections made afterwards, without a restart.
type Store struct {
	files Files
	want  func(Identity) error
	cur   atomic.Pointer[material]
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
	if len(raw) == 0 {
		return Identity{}, errors.New("no certificate presented")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return Identity{}, err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: m.roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return Identity{}, fmt.Errorf("certificate not signed by this cluster's CA or not valid now: %w", err)
	}
	id, err := Parse(certs[0])
	if err != nil {
		return Identity{}, err
	}
	if id.Cluster != m.cluster {
		return Identity{}, fmt.Errorf("%w: %s is of cluster %s, this is %s", ErrOtherCluster, id, id.Cluster, m.cluster)
	}
	return id, nil
}

// PeerIdentity verifies the peer of an established connection.
func (s *Store) PeerIdentity(cs tls.ConnectionState, usage x509.ExtKeyUsage) (Identity, error) {
	raw := make([][]byte, len(cs.PeerCertificates))
	for i, c := range cs.PeerCertificates {
		raw[i] = c.Raw
	}
	return s.cur.Load().verify(raw, usage)
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
