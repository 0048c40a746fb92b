package checks

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// fakeRegistry serves one image from memory under library/hello:latest,
// with the authentication of its mode.
type fakeRegistry struct {
	img  testImage
	mode string // "none", "bearer", "bearer-access-token", "basic"
	user string
	pass string

	// Faults.
	redirectBlobs bool   // blobs answer 307 to /storage/<digest>
	wrongHeader   bool   // a wrong Docker-Content-Digest on manifests
	blobExtra     string // appended to every blob
	realm         string // the Bearer challenge's realm; default http://<the request's host>/token

	mu          sync.Mutex
	tokenReqs   []string // "user scope service" of each token request
	tokenAuths  []string // Authorization headers of token requests
	sawAuthHdrs []string // Authorization headers of registry requests
	storageHits int      // blob requests redirected to /storage/
}

const fakeToken = "tok-123"

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/token":
		f.serveToken(w, r)
		return
	case strings.HasPrefix(r.URL.Path, "/storage/"):
		// Redirected blob storage: no registry authentication.
		f.mu.Lock()
		f.storageHits++
		f.mu.Unlock()
		f.serveBlob(w, strings.TrimPrefix(r.URL.Path, "/storage/"))
		return
	}
	f.mu.Lock()
	f.sawAuthHdrs = append(f.sawAuthHdrs, r.Header.Get("Authorization"))
	f.mu.Unlock()
	if !f.authorized(r) {
		switch f.mode {
		case "bearer", "bearer-access-token":
			realm := f.realm
			if realm == "" {
				realm = "http://" + r.Host + "/token"
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s",service="fake-registry",scope="repository:library/hello:pull"`, realm))
		case "basic":
			w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
		}
		writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/library/hello/")
	switch {
	case !ok:
		writeRegistryError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
	case strings.HasPrefix(rest, "manifests/"):
		ref := strings.TrimPrefix(rest, "manifests/")
		if ref != "latest" && ref != f.img.Digest {
			writeRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		w.Header().Set("Content-Type", f.img.MediaType)
		dg := f.img.Digest
		if f.wrongHeader {
			dg = testDigest
		}
		w.Header().Set("Docker-Content-Digest", dg)
		w.Write(f.img.Manifest)
	case strings.HasPrefix(rest, "blobs/"):
		dg := strings.TrimPrefix(rest, "blobs/")
		if f.redirectBlobs {
			http.Redirect(w, r, "/storage/"+dg, http.StatusTemporaryRedirect)
			return
		}
		f.serveBlob(w, dg)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeRegistry) serveBlob(w http.ResponseWriter, dg string) {
	b, ok := f.img.Blobs[dg]
	if !ok {
		writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(b)
	w.Write([]byte(f.blobExtra))
}

func (f *fakeRegistry) authorized(r *http.Request) bool {
	switch f.mode {
	case "bearer", "bearer-access-token":
		return r.Header.Get("Authorization") == "Bearer "+fakeToken
	case "basic":
		u, p, ok := r.BasicAuth()
		return ok && u == f.user && p == f.pass
	}
	return true
}

func (f *fakeRegistry) serveToken(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	f.mu.Lock()
	f.tokenReqs = append(f.tokenReqs, fmt.Sprintf("%s %s %s", u, r.URL.Query().Get("scope"), r.URL.Query().Get("service")))
	f.tokenAuths = append(f.tokenAuths, r.Header.Get("Authorization"))
	f.mu.Unlock()
	if !ok || u != f.user || p != f.pass {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		http.Error(w, "bad credentials", http.StatusUnauthorized)
		return
	}
	field := "token"
	if f.mode == "bearer-access-token" {
		field = "access_token"
	}
	json.NewEncoder(w).Encode(map[string]any{field: fakeToken, "expires_in": 300})
}

func writeRegistryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

func TestRegistryPullAuth(t *testing.T) {
	img := buildImage(t, false, "amd64", "fake layer\n")
	dir := t.TempDir()
	right := writeFile(t, dir, "right", "robot$pull:p4ss:with:colons\n")
	wrong := writeFile(t, dir, "wrong", "robot$pull:nope")
	malformed := writeFile(t, dir, "malformed", "just-a-password\n")
	loose := writeFileMode(t, dir, "loose", "robot$pull:p4ss:with:colons\n", 0o640)
	tests := []struct {
		name      string
		reg       *fakeRegistry
		creds     string
		wantErr   string
		tokenReqs []string // "" skips the check
	}{
		{"anonymous, no auth", &fakeRegistry{mode: "none"}, "", "", nil},
		{"bearer with the right credentials", &fakeRegistry{mode: "bearer"}, right, "",
			[]string{"robot$pull repository:library/hello:pull fake-registry"}},
		{"bearer token as access_token", &fakeRegistry{mode: "bearer-access-token"}, right, "", nil},
		{"bearer with wrong credentials", &fakeRegistry{mode: "bearer"}, wrong,
			"manifest library/hello:latest: auth: 401 from token realm http://127.0.0.1:|/token; the credentials were refused", nil},
		{"bearer anonymous refused", &fakeRegistry{mode: "bearer"}, "",
			"auth: 401 from token realm|anonymous access refused, set credentials_file", []string{" repository:library/hello:pull fake-registry"}},
		{"basic with the right credentials", &fakeRegistry{mode: "basic"}, right, "", nil},
		{"basic with wrong credentials", &fakeRegistry{mode: "basic"}, wrong,
			"manifest library/hello:latest: 401 UNAUTHORIZED (authentication required) after authenticating; check credentials_file", nil},
		{"basic without credentials", &fakeRegistry{mode: "basic"}, "",
			"manifest library/hello:latest: auth: the registry asks for Basic credentials; set credentials_file", nil},
		{"credentials file missing", &fakeRegistry{mode: "bearer"}, dir + "/missing",
			"credentials_file: " + dir + "/missing does not exist; create it (mode 0600) or fix the path", nil},
		{"credentials file the group may read", &fakeRegistry{mode: "basic"}, loose,
			"credentials_file: " + loose + " has mode 0640, others may read or change it; a secret file must be mode 0600 or 0400: run chmod 600 " + loose, nil},
		{"credentials file without a colon", &fakeRegistry{mode: "basic"}, malformed,
			"credentials_file " + malformed + ": want username:password on the first line", nil},
		{"blob redirect followed", &fakeRegistry{mode: "bearer", redirectBlobs: true}, right, "", nil},
		{"wrong Docker-Content-Digest", &fakeRegistry{mode: "none", wrongHeader: true}, "",
			"manifest library/hello:latest: digest mismatch (Docker-Content-Digest is " + testDigest + ", content hashes to " + img.Digest + ")", nil},
		{"blob longer than its descriptor", &fakeRegistry{mode: "none", blobExtra: "x"}, "",
			"blob " + digestOf(img.Config) + ": longer than the", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fr := tc.reg
			fr.img, fr.user, fr.pass = img, "robot$pull", "p4ss:with:colons"
			srv := httptest.NewServer(fr)
			defer srv.Close()
			c := pullCheck(srv.URL, "library/hello:latest", "linux/amd64")
			c.CredentialsFile = tc.creds
			r := runProbe(t, c)
			wantOut := ""
			if tc.wantErr == "" {
				wantOut = fmt.Sprintf("pulled library/hello:latest %s (2 blobs, %d bytes)", img.Digest, img.Size)
			}
			checkResult(t, r, tc.wantErr, wantOut)
			fr.mu.Lock()
			defer fr.mu.Unlock()
			if fr.redirectBlobs && tc.wantErr == "" && fr.storageHits != len(img.Blobs) {
				t.Errorf("got %d blob requests at the redirect target, want %d", fr.storageHits, len(img.Blobs))
			}
			if tc.tokenReqs != nil && strings.Join(fr.tokenReqs, "\n") != strings.Join(tc.tokenReqs, "\n") {
				t.Errorf("token requests: got %q, want %q", fr.tokenReqs, tc.tokenReqs)
			}
			if tc.wantErr == "" && strings.HasPrefix(fr.mode, "bearer") {
				// One challenge, then the token on every request.
				if n := len(fr.tokenReqs); n != 1 {
					t.Errorf("got %d token requests, want 1 per pull", n)
				}
				for i, h := range fr.sawAuthHdrs[1:] {
					if h != "Bearer "+fakeToken {
						t.Errorf("registry request %d: Authorization %q, want the token", i+1, h)
					}
				}
			}
		})
	}
}

// TestRegistryTokenRealm: the credentials go only to a token realm that is
// https on the registry's host, on the registry's own origin, or listed in
// token_realms; any other realm fails the check and receives nothing.
func TestRegistryTokenRealm(t *testing.T) {
	img := buildImage(t, false, "amd64", "realm layer\n")
	creds := writeFile(t, t.TempDir(), "creds", "robot$pull:p4ss\n")
	// A token service of its own, on a port other than the registry's.
	tokens := &fakeRegistry{img: img, mode: "none", user: "robot$pull", pass: "p4ss"}
	tokenSrv := httptest.NewServer(tokens)
	defer tokenSrv.Close()
	tokenPort := strings.TrimPrefix(tokenSrv.URL, "http://127.0.0.1:")
	otherHost := "http://localhost:" + tokenPort // the same server under another host name
	tlsTokens := &fakeRegistry{img: img, mode: "none", user: "robot$pull", pass: "p4ss"}
	tlsTokenSrv := newTLSServer(tlsTokens)
	defer tlsTokenSrv.Close()

	tests := []struct {
		name    string
		tls     bool // the registry is https (trusting the token server's CA too)
		realm   string
		listed  []string
		wantErr string // "" passes
		sent    *fakeRegistry
	}{
		{"another host over http refused", false, otherHost + "/token", nil,
			"manifest library/hello:latest: auth: token realm not allowed: the registry sends the pull to " + otherHost + "/token, which is neither https on the registry's host (127.0.0.1)|list it under token_realms", tokens},
		{"http on the registry's host, another port, refused", false, tokenSrv.URL + "/token", nil, "token realm not allowed", tokens},
		{"another host listed by origin", false, otherHost + "/token", []string{otherHost}, "", tokens},
		{"another host listed exactly", false, otherHost + "/token", []string{"https://elsewhere.example", otherHost + "/token"}, "", tokens},
		{"another path than the listed one refused", false, otherHost + "/token", []string{otherHost + "/service/token"}, "token realm not allowed", tokens},
		{"listed with another scheme refused", false, otherHost + "/token", []string{"https://localhost:" + tokenPort}, "token realm not allowed", tokens},
		{"https on the registry's host, another port", true, tlsTokenSrv.URL + "/token", nil, "", tlsTokens},
		{"https registry, http realm on its host refused", true, tokenSrv.URL + "/token", nil, "token realm not allowed", tokens},
		{"https registry, https realm on another host refused", true, strings.Replace(tlsTokenSrv.URL, "127.0.0.1", "localhost", 1) + "/token", nil, "token realm not allowed", tlsTokens},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range []*fakeRegistry{tokens, tlsTokens} {
				f.mu.Lock()
				f.tokenReqs, f.tokenAuths = nil, nil
				f.mu.Unlock()
			}
			reg := &fakeRegistry{img: img, mode: "bearer", realm: tc.realm}
			var srv *httptest.Server
			if tc.tls {
				srv = newTLSServer(reg)
			} else {
				srv = httptest.NewServer(reg)
			}
			defer srv.Close()
			c := pullCheck(srv.URL, "library/hello:latest", "linux/amd64")
			c.CredentialsFile = creds
			c.TokenRealms = tc.listed
			if tc.tls {
				c.CAFile = writeCA(t, srv) // httptest's TLS servers share one certificate
			}
			r := runProbe(t, c)
			checkResult(t, r, tc.wantErr, "")
			tc.sent.mu.Lock()
			defer tc.sent.mu.Unlock()
			if tc.wantErr != "" && len(tc.sent.tokenAuths) != 0 {
				t.Errorf("the refused realm received %d requests (Authorization %q), want none", len(tc.sent.tokenAuths), tc.sent.tokenAuths)
			}
			want := "Basic " + base64.StdEncoding.EncodeToString([]byte("robot$pull:p4ss"))
			if tc.wantErr == "" && (len(tc.sent.tokenAuths) != 1 || tc.sent.tokenAuths[0] != want) {
				t.Errorf("the allowed realm received Authorization %q, want the credentials once", tc.sent.tokenAuths)
			}
		})
	}
}

func TestRegistryPullTLS(t *testing.T) {
	img := buildImage(t, true, "amd64", "tls layer\n")
	srv := newTLSServer(&fakeRegistry{img: img, mode: "none"})
	defer srv.Close()
	ca := writeCA(t, srv)
	tests := []struct {
		name    string
		caFile  string
		wantErr string
	}{
		{"with the CA", ca, ""},
		{"without the CA", "", "manifest library/hello:latest: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := pullCheck(srv.URL, "library/hello:latest", "linux/amd64")
			c.CAFile = tc.caFile
			r := runProbe(t, c)
			wantOut := ""
			if tc.wantErr == "" {
				wantOut = "pulled library/hello:latest " + img.Digest
			}
			checkResult(t, r, tc.wantErr, wantOut)
		})
	}
}

// TestRegistryPullTimeout pulls from a registry whose blob never ends.
func TestRegistryPullTimeout(t *testing.T) {
	img := buildImage(t, false, "amd64", "slow layer\n")
	fr := &fakeRegistry{img: img, mode: "none"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			w.Header().Set("Content-Length", "1000000")
			w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		fr.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := pullCheck(srv.URL, "library/hello:latest", "linux/amd64")
	c.Timeout = conf.Duration(300 * time.Millisecond)
	r := runProbe(t, c)
	// The error proves the check's timeout ended the probe (runProbe's
	// safety net would have canceled it instead).
	checkResult(t, r, "blob "+digestOf(img.Config)+": after 7 of "+fmt.Sprint(len(img.Config))+" bytes: timed out after 300ms", "")
}

func TestBasicAuthHeader(t *testing.T) {
	// The credentials' password keeps its colons: only the first separates.
	c, err := readCredentials(writeFile(t, t.TempDir(), "c", "user:pa:ss\r\nignored second line\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.user != "user" || c.pass != "pa:ss" {
		t.Errorf("readCredentials: got %q %q, want %q %q", c.user, c.pass, "user", "pa:ss")
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:pa:ss"))
	rc := &registryClient{creds: c}
	if err := rc.authenticate(t.Context(), []string{`Basic realm="x"`}); err != nil || rc.auth != want {
		t.Errorf("authenticate(Basic): got %q, %v, want %q", rc.auth, err, want)
	}
}
