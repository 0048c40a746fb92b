package tlsid

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeHolder issues id from ca and writes ca.pem, name.pem, name-key.pem.
func writeHolder(t *testing.T, dir string, ca *CA, id Identity) Files {
	t.Helper()
	var ips []net.IP
	if id.Kind == Node {
		ips = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	cp, kp, err := ca.Issue(id, nil, ips, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := WritePair(dir, id.Name, cp, kp, true)
	if err != nil {
		t.Fatal(err)
	}
	caf := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caf, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return Files{CA: caf, Cert: cf, Key: kf}
}

func newCA(t *testing.T, cluster string) *CA {
	t.Helper()
	ca, _, err := NewCA(cluster, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestParseIdentity(t *testing.T) {
	for _, tc := range []struct {
		uri  string
		want Identity
		err  string
	}{
		{"harbormaster://prod/node/n1", Identity{Cluster: "prod", Kind: Node, Name: "n1"}, ""},
		{"harbormaster://prod/operator/admin/alice", Identity{Cluster: "prod", Kind: Operator, Role: RoleAdmin, Name: "alice"}, ""},
		{"harbormaster://prod/operator/root/alice", Identity{}, "role"},
		{"harbormaster://prod/node/N1", Identity{}, "name"},
		{"harbormaster://prod/node/n1/x", Identity{}, "want harbormaster"},
		{"harbormaster://prod:1/node/n1", Identity{}, "unexpected"},
		{"harbormaster://pr_od/node/n1", Identity{}, "cluster"},
	} {
		u, _ := url.Parse(tc.uri)
		got, err := Parse(&x509.Certificate{URIs: []*url.URL{u}})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want one containing %q", tc.uri, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.uri, got, err, tc.want)
		}
		if got.URI().String() != tc.uri {
			t.Errorf("%s: URI() = %s", tc.uri, got.URI())
		}
	}
	if _, err := Parse(&x509.Certificate{}); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("no URI: %v", err)
	}
	a, _ := url.Parse("harbormaster://prod/node/n1")
	b, _ := url.Parse("harbormaster://prod/node/n2")
	if _, err := Parse(&x509.Certificate{URIs: []*url.URL{a, b}}); err == nil {
		t.Error("two identities accepted")
	}
}

func TestRoleIncludes(t *testing.T) {
	if !RoleAdmin.Includes(RoleOperate) || !RoleOperate.Includes(RoleRead) || RoleRead.Includes(RoleOperate) ||
		RoleOperate.Includes(RoleAdmin) || Role("root").Includes(RoleRead) {
		t.Error("role order wrong")
	}
}

// handshake runs a TLS handshake between a server and a client config and
// returns the client's and the server's errors.
func handshake(t *testing.T, srv, cli *tls.Config) (cerr, serr error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan error, 1)
	go func() {
		a, err := lis.Accept()
		if err != nil {
			done <- err
			return
		}
		_ = a.SetDeadline(time.Now().Add(5 * time.Second))
		s := tls.Server(a, srv)
		err = s.Handshake()
		if err == nil {
			// TLS 1.3: the client finishes before the server verified its
			// certificate; read once so a refusal reaches the client.
			_, _ = s.Write([]byte{1})
		}
		_ = s.Close()
		done <- err
	}()
	b, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = b.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(b, cli)
	cerr = c.Handshake()
	if cerr == nil {
		_, cerr = c.Read(make([]byte, 1))
	}
	_ = c.Close()
	return cerr, <-done
}

func TestHandshakes(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "prod")
	n1 := writeHolder(t, filepath.Join(dir, "n1"), ca, Identity{Kind: Node, Name: "n1"})
	n2 := writeHolder(t, filepath.Join(dir, "n2"), ca, Identity{Kind: Node, Name: "n2"})
	op := writeHolder(t, filepath.Join(dir, "op"), ca, Identity{Kind: Operator, Name: "alice", Role: RoleRead})
	// Same cluster name, another CA: an impostor's cluster.
	fake := writeHolder(t, filepath.Join(dir, "fake"), newCA(t, "prod"), Identity{Kind: Node, Name: "n3"})
	// Another cluster whose CA the node also trusts (a shared trust bundle).
	other := newCA(t, "staging")
	oth := writeHolder(t, filepath.Join(dir, "oth"), other, Identity{Kind: Node, Name: "n3"})

	s1, err := Load(n1, func(id Identity) error {
		if id.Kind != Node || id.Name != "n1" {
			return errors.New("want node n1")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s1.Self().String() != "node:n1" || s1.Cluster() != "prod" {
		t.Fatalf("self %s cluster %s", s1.Self(), s1.Cluster())
	}
	load := func(f Files) *Store {
		s, err := Load(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s2, sop, sfake := load(n2), load(op), load(fake)

	if cerr, serr := handshake(t, s1.ServerConfig(AnyNode), s2.ClientConfig(AnyIdentity)); cerr != nil || serr != nil {
		t.Fatalf("node to node: client %v, server %v", cerr, serr)
	}
	if _, serr := handshake(t, s1.ServerConfig(AnyNode), sop.ClientConfig(AnyIdentity)); serr == nil {
		t.Error("an operator certificate was accepted where only nodes are")
	}
	if _, serr := handshake(t, s1.ServerConfig(AnyIdentity), sop.ClientConfig(AnyIdentity)); serr != nil {
		t.Errorf("operator refused by a server accepting any identity: %v", serr)
	}
	if _, serr := handshake(t, s1.ServerConfig(AnyIdentity), sfake.ClientConfig(AnyIdentity)); serr == nil {
		t.Error("a certificate from another CA was accepted")
	}
	if cerr, _ := handshake(t, sfake.ServerConfig(AnyIdentity), s2.ClientConfig(AnyIdentity)); cerr == nil {
		t.Error("the client accepted a server from another CA")
	}
	// A client without a certificate.
	if _, serr := handshake(t, s1.ServerConfig(AnyIdentity), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}); serr == nil {
		t.Error("a client without a certificate was accepted")
	}

	// Trust both CAs: a staging certificate is still refused by prod.
	both := filepath.Join(dir, "both.pem")
	if err := os.WriteFile(both, append(append([]byte{}, ca.CertPEM...), other.CertPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(Files{CA: both, Cert: n1.Cert, Key: n1.Key}, nil); err == nil {
		t.Error("a CA file with two clusters' CAs was accepted")
	}
	soth := load(oth)
	raw := [][]byte{}
	blk, _ := pem.Decode(mustRead(t, oth.Cert))
	raw = append(raw, blk.Bytes)
	m := *s1.cur.Load()
	m.roots = m.roots.Clone()
	m.roots.AddCert(other.Cert)
	if _, err := m.verify(raw, x509.ExtKeyUsageClientAuth); !errors.Is(err, ErrOtherCluster) {
		t.Errorf("another cluster's certificate: %v, want ErrOtherCluster", err)
	}
	_ = soth
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "prod")
	f := writeHolder(t, dir, ca, Identity{Kind: Node, Name: "n1"})
	want := func(id Identity) error {
		if id.Name != "n1" {
			return errors.New("want n1")
		}
		return nil
	}
	s, err := Load(f, want)
	if err != nil {
		t.Fatal(err)
	}
	before := s.cur.Load().leaf.SerialNumber
	// A renewed certificate is picked up.
	writeHolder(t, dir, ca, Identity{Kind: Node, Name: "n1"})
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.cur.Load().leaf.SerialNumber.Cmp(before) == 0 {
		t.Error("reload kept the old certificate")
	}
	// A certificate for another node is refused and the loaded one stays.
	kept := s.cur.Load()
	cp, kp, _ := ca.Issue(Identity{Kind: Node, Name: "n2"}, nil, nil, time.Hour)
	if _, _, err := WritePair(dir, "n1", cp, kp, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Error("reload accepted another node's certificate")
	}
	if s.cur.Load() != kept {
		t.Error("a failed reload replaced the loaded certificate")
	}
	if st, err := os.Stat(f.Key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
}

func TestIssueRefusesOtherCluster(t *testing.T) {
	ca := newCA(t, "prod")
	if _, _, err := ca.Issue(Identity{Cluster: "staging", Kind: Node, Name: "n1"}, nil, nil, time.Hour); err == nil {
		t.Error("issued a certificate of another cluster")
	}
	if _, _, err := ca.Issue(Identity{Kind: Operator, Name: "bob", Role: "root"}, nil, nil, time.Hour); err == nil {
		t.Error("issued an operator certificate with an unknown role")
	}
}

// peerState is the connection state of a peer that presented the
// certificate in f.
func peerState(t *testing.T, f Files) tls.ConnectionState {
	t.Helper()
	b, _ := pem.Decode(mustRead(t, f.Cert))
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
}

// A peer's chain is verified once and then served from the cache, only
// while each certificate of it is valid and only with the CA it was
// verified with.
func TestPeerIdentityIsCachedOnlyWhileValid(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "prod")
	s, err := Load(writeHolder(t, dir, ca, Identity{Kind: Node, Name: "n1"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	peer := peerState(t, writeHolder(t, t.TempDir(), ca, Identity{Kind: Node, Name: "n2"}))
	leaf := peer.PeerCertificates[0]
	now := time.Now()
	s.now = func() time.Time { return now }

	id, err := s.PeerIdentity(peer, x509.ExtKeyUsageClientAuth)
	if err != nil || id.Name != "n2" {
		t.Fatalf("PeerIdentity = %v, %v; want node n2", id, err)
	}
	// The second call is the cache's: mark the entry to see it served.
	m := s.cur.Load()
	key := chainKey([][]byte{leaf.Raw}, x509.ExtKeyUsageClientAuth)
	m.verified.mu.Lock()
	v, ok := m.verified.m[key]
	if !ok {
		m.verified.mu.Unlock()
		t.Fatal("a verified chain was not kept")
	}
	if !v.until.Equal(leaf.NotAfter) || !v.from.Equal(leaf.NotBefore) {
		t.Errorf("kept window %v..%v; want the leaf's %v..%v (the CA's is wider)", v.from, v.until, leaf.NotBefore, leaf.NotAfter)
	}
	v.id.Name = "cached"
	m.verified.m[key] = v
	m.verified.mu.Unlock()
	if id, _ := s.PeerIdentity(peer, x509.ExtKeyUsageClientAuth); id.Name != "cached" {
		t.Errorf("second call verified again (got %v)", id)
	}
	// Another key usage is another entry.
	if id, err := s.PeerIdentity(peer, x509.ExtKeyUsageServerAuth); err != nil || id.Name != "n2" {
		t.Errorf("server-auth PeerIdentity = %v, %v; want n2 verified afresh", id, err)
	}

	// Past the leaf's NotAfter, or before its NotBefore, the chain is
	// verified again, and fails.
	for _, at := range []time.Time{leaf.NotAfter.Add(time.Second), leaf.NotBefore.Add(-time.Second)} {
		now = at
		if id, err := s.PeerIdentity(peer, x509.ExtKeyUsageClientAuth); err == nil {
			t.Errorf("at %v (leaf valid %v..%v): PeerIdentity = %v, want an error", at, leaf.NotBefore, leaf.NotAfter, id)
		}
	}
	now = time.Now()

	// After a reload to another cluster's CA the cached chain is refused.
	other := newCA(t, "other")
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	writeHolder(t, dir, other, Identity{Kind: Node, Name: "n1"})
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if id, err := s.PeerIdentity(peer, x509.ExtKeyUsageClientAuth); err == nil {
		t.Errorf("after the CA changed: PeerIdentity = %v, want an error", id)
	}
	// Failures are not kept: the refused chain left no entry.
	m = s.cur.Load()
	m.verified.mu.Lock()
	n := len(m.verified.m)
	m.verified.mu.Unlock()
	if n != 0 {
		t.Errorf("the new CA's cache holds %d entries after a refusal, want 0", n)
	}
}
