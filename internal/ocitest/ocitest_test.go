package ocitest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestBuildDeterministic(t *testing.T) {
	a, err := BuildImage(OCI, "amd64", "one\n", "two\n")
	if err != nil {
		t.Fatal(err)
	}
	b, err := BuildImage(OCI, "amd64", "one\n", "two\n")
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest || !bytes.Equal(a.Manifest, b.Manifest) {
		t.Errorf("two builds of one image differ: %s and %s", a.Digest, b.Digest)
	}
	if len(a.Layers) != 2 || len(a.Blobs) != 3 {
		t.Errorf("got %d layers and %d blobs, want 2 and 3", len(a.Layers), len(a.Blobs))
	}
	if a.Digest != Digest(a.Manifest) {
		t.Errorf("Digest %s is not the manifest's %s", a.Digest, Digest(a.Manifest))
	}
	d, err := BuildImage(Docker, "amd64", "one\n", "two\n")
	if err != nil {
		t.Fatal(err)
	}
	if d.MediaType != MediaDockerManifest || d.Digest == a.Digest {
		t.Errorf("docker image: media type %s digest %s, want %s and another digest than the OCI one", d.MediaType, d.Digest, MediaDockerManifest)
	}
}

func TestHelloIndex(t *testing.T) {
	idx, err := Hello()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				OS   string `json:"os"`
				Arch string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(idx.Body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.MediaType != MediaOCIIndex || len(doc.Manifests) != 2 {
		t.Fatalf("index %s", idx.Body)
	}
	for i, want := range []string{"amd64", "arm64"} {
		m := doc.Manifests[i]
		if m.Platform.OS != "linux" || m.Platform.Arch != want || m.Digest != idx.Images[i].Digest {
			t.Errorf("entry %d: %+v, want linux/%s %s", i, m, want, idx.Images[i].Digest)
		}
	}
}

// memRegistry is the upload half of the distribution API, in memory: it
// checks every blob's digest and that a manifest's blobs were uploaded
// first.
type memRegistry struct {
	mu        sync.Mutex
	blobs     map[string]bool
	manifests map[string]string // repo/ref -> media type
	uploads   int
}

func (m *memRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/blobs/uploads/"):
		m.uploads++
		w.Header().Set("Location", "/upload/1?state=x")
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/upload/"):
		b, _ := io.ReadAll(r.Body)
		if r.URL.Query().Get("state") != "x" || r.URL.Query().Get("digest") != Digest(b) {
			http.Error(w, "bad digest or lost upload state", http.StatusBadRequest)
			return
		}
		m.blobs[Digest(b)] = true
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodPut && strings.Contains(path, "/manifests/"):
		b, _ := io.ReadAll(r.Body)
		var doc struct {
			Config struct {
				Digest string `json:"digest"`
			} `json:"config"`
			Layers []struct {
				Digest string `json:"digest"`
			} `json:"layers"`
			Manifests []struct {
				Digest string `json:"digest"`
			} `json:"manifests"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		need := []string{}
		if doc.Config.Digest != "" {
			need = append(need, doc.Config.Digest)
		}
		for _, l := range doc.Layers {
			need = append(need, l.Digest)
		}
		for _, d := range need {
			if !m.blobs[d] {
				http.Error(w, "blob unknown: "+d, http.StatusBadRequest)
				return
			}
		}
		repo := path[:strings.Index(path, "/manifests/")]
		for _, e := range doc.Manifests {
			if _, ok := m.manifests[repo+"/"+e.Digest]; !ok {
				http.Error(w, "manifest unknown: "+e.Digest, http.StatusBadRequest)
				return
			}
		}
		m.manifests[strings.Replace(path, "/manifests/", "/", 1)] = r.Header.Get("Content-Type")
		w.WriteHeader(http.StatusCreated)
	default:
		http.NotFound(w, r)
	}
}

func TestPushIndex(t *testing.T) {
	reg := &memRegistry{blobs: map[string]bool{}, manifests: map[string]string{}}
	srv := httptest.NewServer(reg)
	defer srv.Close()
	idx, err := Hello()
	if err != nil {
		t.Fatal(err)
	}
	if err := (Pusher{Base: srv.URL}).PushIndex(t.Context(), "library/hello-world", idx, "latest"); err != nil {
		t.Fatal(err)
	}
	if got := reg.manifests["library/hello-world/latest"]; got != MediaOCIIndex {
		t.Errorf("latest has media type %q, want %q", got, MediaOCIIndex)
	}
	for _, img := range idx.Images {
		if got := reg.manifests["library/hello-world/"+img.Digest]; got != MediaOCIManifest {
			t.Errorf("%s has media type %q, want %q", img.Digest, got, MediaOCIManifest)
		}
	}
	if reg.uploads != 4 { // two configs, two layers
		t.Errorf("%d blob uploads, want 4", reg.uploads)
	}
	// A refused request is an error naming the request, without the query.
	err = (Pusher{Base: srv.URL}).PushManifest(t.Context(), "library/x", "v1", MediaOCIManifest, []byte(`{"layers":[{"digest":"sha256:00"}]}`))
	if err == nil || !strings.Contains(err.Error(), "PUT "+srv.URL+"/v2/library/x/manifests/v1: 400") {
		t.Errorf("push of a manifest with an unknown layer: %v, want a 400 naming the request", err)
	}
}
