package tlsid

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CA is a cluster's certificate authority: what signs node and operator
// certificates.
type CA struct {
	Cluster string
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA makes a CA for cluster, valid for validity.
func NewCA(cluster string, validity time.Duration) (*CA, []byte, error) {
	if !ValidName(cluster) {
		return nil, nil, fmt.Errorf("cluster %q: not a DNS label (1-63 lower-case letters, digits, inner hyphens)", cluster)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "harbormaster CA " + cluster, Organization: []string{"harbormaster"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{caURI(cluster)},
	}
	key, der, keyPEM, err := create(tmpl, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return &CA{Cluster: cluster, Cert: cert, Key: key, CertPEM: pemCert(der)}, keyPEM, nil
}

// LoadCA reads a CA certificate and its key.
func LoadCA(certFile, keyFile string) (*CA, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(cb)
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("%s: want exactly one PEM certificate: %v", certFile, err)
	}
	cluster, err := ClusterOfCA(certs[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || !ek.PublicKey.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("%s: not the key of %s", keyFile, certFile)
	}
	return &CA{Cluster: cluster, Cert: certs[0], Key: ek, CertPEM: cb}, nil
}

// Issue signs a certificate for id (its cluster must be the CA's). Node
// certificates are for servers and clients; they carry node.<id>.<cluster>
// plus the extra DNS names and IPs given. Operator certificates are client
// certificates only.
func (ca *CA) Issue(id Identity, dnsNames []string, ips []net.IP, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if id.Cluster == "" {
		id.Cluster = ca.Cluster
	}
	if id.Cluster != ca.Cluster {
		return nil, nil, fmt.Errorf("identity of cluster %s cannot be signed by the CA of cluster %s", id.Cluster, ca.Cluster)
	}
	if err := id.Validate(); err != nil {
		return nil, nil, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: id.String(), Organization: []string{"harbormaster " + id.Cluster}},
		NotBefore:   now.Add(-5 * time.Minute),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{id.URI()},
	}
	if id.Kind == Node {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.DNSNames = append([]string{NodeDNS(id.Cluster, id.Name)}, dnsNames...)
		tmpl.IPAddresses = ips
	} else if len(dnsNames)+len(ips) > 0 {
		return nil, nil, errors.New("operator certificates carry no DNS names or IP addresses")
	}
	_, der, keyPEM, err := create(tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	return pemCert(der), keyPEM, nil
}

// create makes a P-256 key and a certificate for it from tmpl (given a
// random serial), signed by parent with parentKey, or self-signed when
// parent is nil.
func create(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (key *ecdsa.PrivateKey, der, keyPEM []byte, err error) {
	if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, nil, nil, err
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return nil, nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	if der, err = x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey); err != nil {
		return nil, nil, nil, err
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, nil, err
	}
	return key, der, keyPEM, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

// WritePair writes name.pem (0644) and name-key.pem (0600) into dir. It
// refuses to overwrite either unless force is set.
func WritePair(dir, name string, certPEM, keyPEM []byte, force bool) (certFile, keyFile string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+"-key.pem")
	if !force {
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Stat(f); err == nil {
				return "", "", fmt.Errorf("%s exists; remove it first or pass --force", f)
			}
		}
	}
	if err := writeFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeFile(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// writeFile replaces path atomically with the given mode.
func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// WriteCluster writes a whole cluster's files into dir, for labs and
// tests: ca.pem and ca-key.pem of cluster, a node certificate per entry of
// nodes (with those IPs) and an operator certificate named after each role
// ("read", "operate", "admin").
func WriteCluster(dir, cluster string, nodes map[string][]net.IP, roles ...Role) error {
	ca, keyPEM, err := NewCA(cluster, 30*24*time.Hour)
	if err != nil {
		return err
	}
	if _, _, err := WritePair(dir, "ca", ca.CertPEM, keyPEM, true); err != nil {
		return err
	}
	for id, ips := range nodes {
		c, k, err := ca.Issue(Identity{Kind: Node, Name: id}, []string{"localhost"}, ips, 30*24*time.Hour)
		if err != nil {
			return err
		}
		if _, _, err := WritePair(dir, id, c, k, true); err != nil {
			return err
		}
	}
	for _, r := range roles {
		c, k, err := ca.Issue(Identity{Kind: Operator, Name: string(r), Role: r}, nil, nil, 30*24*time.Hour)
		if err != nil {
			return err
		}
		if _, _, err := WritePair(dir, string(r), c, k, true); err != nil {
			return err
		}
	}
	return nil
}

// FilesIn names the files WriteCluster wrote for name in dir.
func FilesIn(dir, name string) Files {
	return Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")}
}
