package redisctl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/labtest"
	"github.com/harbormaster/harbormaster/internal/resp"
)

func TestAuth(t *testing.T) {
	const pass = "s3cret pass" // with a space, as requirepass allows
	a := startRedis(t, "--requirepass", pass, "--masterauth", pass)
	b := startRedis(t, "--requirepass", pass, "--masterauth", pass)
	dir := t.TempDir()
	right := writeFile(t, dir, "right", "default "+pass+"\n")
	wrong := writeFile(t, dir, "wrong", "default nope\n")
	ctx := ctxT(t, 10*time.Second)

	c := newClient(t, Config{Address: a.addr, PasswordFile: right})
	if r, err := c.Replication(ctx); err != nil || r.Role != "master" {
		t.Fatalf("Replication with the password: %+v, %v", r, err)
	}
	// An ACL user with just the permissions the package doc lists can
	// do everything: on b, demote it to a replica of a and back.
	must(t, newClient(t, Config{Address: b.addr, PasswordFile: right}),
		append([]string{"ACL", "SETUSER", "hm", "on", ">hm pass"}, strings.Fields(ACLRules)...)...)
	hm := newClient(t, Config{Address: b.addr, PasswordFile: writeFile(t, dir, "acl", "hm hm pass\n")})
	if err := hm.Follow(ctx, a.addr); err != nil {
		t.Fatal(err)
	}
	if err := hm.WaitCaughtUp(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := hm.Promote(ctx, "redis-master", 1); err != nil {
		t.Fatal(err)
	}
	if err := hm.PauseWrites(ctx); err != nil {
		t.Fatal(err)
	}
	if err := hm.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := hm.do(ctx, "SET", "not-ours", "1"); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("hm writing a key outside harbormaster:*: %v, want NOPERM", err)
	}
	if r := repl(t, hm); r.Role != "master" || r.Paused {
		t.Fatalf("b after the ACL user's calls: %+v, want an unfenced master", r)
	}

	c = newClient(t, Config{Address: a.addr, PasswordFile: wrong})
	_, err := c.Replication(ctx)
	var re *resp.Error
	if !errors.As(err, &re) || re.Prefix() != "WRONGPASS" || !strings.Contains(err.Error(), "INFO replication on "+a.addr+": AUTH: WRONGPASS") {
		t.Fatalf("Replication with a wrong password: %v, want a WRONGPASS reply naming AUTH and %s", err, a.addr)
	}
	c = newClient(t, Config{Address: a.addr})
	if err := c.PauseWrites(ctx); !errors.As(err, &re) || re.Prefix() != "NOAUTH" {
		t.Fatalf("PauseWrites without a password: %v, want NOAUTH", err)
	}
	c = newClient(t, Config{Address: a.addr, PasswordFile: dir + "/missing"})
	if err := c.Promote(ctx, "redis-master", 1); err == nil || !strings.Contains(err.Error(), "password_file: "+dir+"/missing does not exist") {
		t.Fatalf("Promote with a missing password file: %v, want the open error", err)
	}

	// Remote: another node's Redis with this node's credentials, used to
	// demote it.
	cfg := Config{Address: a.addr, PasswordFile: right}
	ac := newClient(t, cfg)
	if err := ac.Promote(ctx, "redis-master", 7); err != nil {
		t.Fatal(err)
	}
	rem, err := Remote(cfg, b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	if rem.Addr() != b.addr {
		t.Fatalf("Remote's address %s, want %s", rem.Addr(), b.addr)
	}
	if err := rem.Follow(ctx, a.addr); err != nil {
		t.Fatal(err)
	}
	waitLinked(t, rem)
	waitValue(t, rem, EpochKey("redis-master"), "7")
}

func TestTLS(t *testing.T) {
	labtest.RequireBin(t, "redis-server")
	dir := t.TempDir()
	caCert, caKey := newCA(t, "test CA")
	writePEM(t, dir, "ca.pem", "CERTIFICATE", caCert.Raw)
	other, _ := newCA(t, "other CA")
	writePEM(t, dir, "other.pem", "CERTIFICATE", other.Raw)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, dir, "server.pem", "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, dir, "server.key", "EC PRIVATE KEY", kder)

	port := freePort(t)
	s := runRedis(t, port, []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", dir + "/server.pem", "--tls-key-file", dir + "/server.key", "--tls-ca-cert-file", dir + "/ca.pem",
		"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", t.TempDir()})
	ctx := ctxT(t, 10*time.Second)

	c := newClient(t, Config{Address: s.addr, CAFile: dir + "/ca.pem"})
	if r, err := c.Replication(ctx); err != nil || r.Role != "master" {
		t.Fatalf("Replication over TLS: %+v, %v", r, err)
	}
	c = newClient(t, Config{Address: s.addr, CAFile: dir + "/other.pem"})
	if _, err := c.Replication(ctx); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("Replication with the wrong CA: %v, want a TLS handshake error", err)
	}
	c = newClient(t, Config{Address: s.addr, CAFile: dir + "/server.key"})
	if _, err := c.Replication(ctx); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("Replication with a CA file holding no certificate: %v", err)
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) {
	t.Helper()
	writeFile(t, dir, name, string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
}
