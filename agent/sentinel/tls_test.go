package sentinel

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"testing"
	"time"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// TestTLS: with Config.TLS the listener speaks TLS, and the limits hold
// for TLS connections too.
func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	s, addr := startServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, MaxConnections: 1}, fixture(), nil)

	nc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	t.Cleanup(func() { nc.Close() })
	if got, want := c.do("SENTINEL", "get-master-addr-by-name", "mymaster"), bulks("127.0.0.1", "16379"); got != want {
		t.Fatalf("over TLS: got %q, want %q", got, want)
	}

	extra, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS dial over the limit: %v", err)
	}
	e := &client{t: t, nc: extra, br: bufio.NewReader(extra)}
	t.Cleanup(func() { extra.Close() })
	if got, want := e.reply(), "-ERR max number of clients reached\r\n"; got != want {
		t.Fatalf("TLS connection over the limit: got %q, want %q", got, want)
	}

	// A plain-text client, with a place free, gets no answer.
	nc.Close()
	waitFor(t, 5*time.Second, "the TLS client's place to be free", func() bool { return s.numClients() == 0 })
	plain := dial(t, addr)
	plain.sendRaw(encodeCommand("PING"))
	plain.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := plain.br.ReadString('\n'); err == nil && line == "+PONG\r\n" {
		t.Fatalf("a plain-text PING was answered on the TLS listener")
	}
}
