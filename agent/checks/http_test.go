package checks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// webServer answers the http check tests and records the methods it saw.
type webServer struct {
	mu      sync.Mutex
	methods []string
}

func (s *webServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.methods = append(s.methods, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	switch r.URL.Path {
	case "/ok":
		w.Write([]byte("all good: pong\n"))
	case "/fail":
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("boom\n  second line"))
	case "/nocontent":
		w.WriteHeader(http.StatusNoContent)
	case "/redirect":
		http.Redirect(w, r, "/ok", http.StatusFound)
	case "/slow":
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	case "/big":
		chunk := strings.Repeat("x", 64<<10)
		for range 20 { // 1.25 MiB, the marker after the first MiB
			w.Write([]byte(chunk))
		}
		w.Write([]byte("MARKER"))
	default:
		http.NotFound(w, r)
	}
}

func (s *webServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.methods...)
}

func httpCheck(url string, f func(*Config)) Config {
	typ := TypeHTTP
	if strings.HasPrefix(url, "https:") {
		typ = TypeHTTPS
	}
	c := Config{Name: "web", Type: typ, URL: url, Timeout: conf.Duration(2 * time.Second)}
	if f != nil {
		f(&c)
	}
	return c
}

func TestHTTPProbe(t *testing.T) {
	ws := &webServer{}
	srv := httptest.NewServer(ws)
	defer srv.Close()
	tests := []struct {
		name    string
		path    string
		set     func(*Config)
		wantErr string // "" passes; "|" separates required parts
		wantOut string
		seen    string // the request the server must have seen last
	}{
		{"200 passes", "/ok", nil, "", "HTTP 200 in ", "GET /ok"},
		{"500 fails with the body's start", "/fail", nil, "HTTP 500, want 200-399: boom second line", "HTTP 500", "GET /fail"},
		{"500 in an explicit range passes", "/fail", func(c *Config) { c.Status = "500-599" }, "", "HTTP 500", "GET /fail"},
		{"single code 204 passes", "/nocontent", func(c *Config) { c.Status = "204" }, "", "HTTP 204", "GET /nocontent"},
		{"single code 204 refuses 200", "/ok", func(c *Config) { c.Status = "204" }, "HTTP 200, want 204", "", "GET /ok"},
		{"404 fails", "/nowhere", nil, "HTTP 404, want 200-399", "", "GET /nowhere"},
		{"body substring present", "/ok", func(c *Config) { c.BodyContains = "pong" }, "", "HTTP 200", "GET /ok"},
		{"body substring absent", "/ok", func(c *Config) { c.BodyContains = "nope" }, `HTTP 200 but the body (15 bytes) does not contain "nope"`, "", "GET /ok"},
		{"body substring beyond the first MiB", "/big", func(c *Config) { c.BodyContains = "MARKER" }, `first MiB of the body (1048576 bytes) does not contain "MARKER"`, "", "GET /big"},
		{"redirect not followed, 302 in range", "/redirect", nil, "", "HTTP 302", "GET /redirect"},
		{"redirect not followed, 302 out of range", "/redirect", func(c *Config) { c.Status = "200" }, "HTTP 302, want 200 (redirect to /ok, not followed)", "", "GET /redirect"},
		{"HEAD", "/ok", func(c *Config) { c.Method = "HEAD" }, "", "HTTP 200", "HEAD /ok"},
		{"POST", "/ok", func(c *Config) { c.Method = "POST" }, "", "HTTP 200", "POST /ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runProbe(t, httpCheck(srv.URL+tc.path, tc.set))
			checkResult(t, r, tc.wantErr, tc.wantOut)
			if seen := ws.seen(); len(seen) == 0 || seen[len(seen)-1] != tc.seen {
				t.Errorf("server saw %v, want the last request to be %q (redirects are not followed)", seen, tc.seen)
			}
		})
	}
}

func TestHTTPProbeTimeout(t *testing.T) {
	srv := httptest.NewServer(&webServer{})
	defer srv.Close()
	r := runProbe(t, httpCheck(srv.URL+"/slow", func(c *Config) { c.Timeout = conf.Duration(200 * time.Millisecond) }))
	// The error proves the check's timeout ended the probe (runProbe's
	// safety net would have canceled it instead).
	checkResult(t, r, "GET "+srv.URL+"/slow: timed out after 200ms", "")
	if r.elapsed < 200*time.Millisecond {
		t.Errorf("Probe took %s, want at least the 200ms timeout", r.elapsed)
	}
}

// newTLSServer starts an httptest TLS server that does not log the
// handshake errors the tests provoke.
func newTLSServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	return srv
}

// otherCA returns the PEM of a self-signed CA that signed nothing of ours.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "other test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// writeCA writes the certificate of a TLS test server as a PEM file.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return writeFile(t, t.TempDir(), "ca.pem", string(block))
}

func TestHTTPSProbe(t *testing.T) {
	srv := newTLSServer(&webServer{})
	defer srv.Close()
	dir := t.TempDir()
	tests := []struct {
		name    string
		caFile  string
		wantErr string
	}{
		{"own CA passes", writeCA(t, srv), ""},
		{"system CAs only fail", "", "certificate signed by unknown authority"},
		{"another CA fails", writeFile(t, dir, "other.pem", otherCA(t)), "certificate signed by unknown authority"},
		{"missing CA file fails", dir + "/nope.pem", "ca_file: open " + dir + "/nope.pem: no such file or directory"},
		{"CA file without PEM fails", writeFile(t, dir, "junk.pem", "not a certificate\n"), "ca_file " + dir + "/junk.pem: no PEM certificate in it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runProbe(t, httpCheck(srv.URL+"/ok", func(c *Config) { c.CAFile = tc.caFile }))
			wantOut := ""
			if tc.wantErr == "" {
				wantOut = "HTTP 200"
			}
			checkResult(t, r, tc.wantErr, wantOut)
		})
	}
}

func TestTCPProbe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()
	closed := "127.0.0.1:" + strconv.Itoa(freePort(t))

	r := runProbe(t, Config{Name: "t", Type: TypeTCP, Address: l.Addr().String()})
	checkResult(t, r, "", "connected to "+l.Addr().String()+" in ")
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Errorf("the listener accepted no connection")
	}

	r = runProbe(t, Config{Name: "t", Type: TypeTCP, Address: closed})
	checkResult(t, r, "dial "+closed+": |connection refused", "")
}
