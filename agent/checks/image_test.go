package checks

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// testImage is a tiny image built in memory: a config and gzip'd tar
// layers, and the manifest pointing at them.
type testImage struct {
	arch      string
	config    []byte
	layers    [][]byte
	blobs     map[string][]byte // digest -> content, config and layers
	manifest  []byte
	mediaType string
	digest    string
	size      int64 // of config and layers together
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tarGz returns a gzip'd tar holding one file, and the digest of the tar
// (the layer's diff_id).
func tarGz(t *testing.T, name, content string) (gz []byte, diffID string) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	zw.Write(tb.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return gb.Bytes(), digestOf(tb.Bytes())
}

// buildImage builds an image for linux/arch with one layer per file
// content. oci selects OCI media types, else Docker v2 schema 2.
func buildImage(t *testing.T, oci bool, arch string, files ...string) testImage {
	t.Helper()
	img := testImage{arch: arch, blobs: map[string][]byte{}}
	configType, layerType := "application/vnd.docker.container.image.v1+json", "application/vnd.docker.image.rootfs.diff.tar.gzip"
	img.mediaType = mediaDockerManifest
	if oci {
		configType, layerType = "application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip"
		img.mediaType = mediaOCIManifest
	}
	var diffIDs []string
	var layerDescs []map[string]any
	for i, content := range files {
		gz, diffID := tarGz(t, "file"+string(rune('0'+i)), content)
		img.layers = append(img.layers, gz)
		img.blobs[digestOf(gz)] = gz
		img.size += int64(len(gz))
		diffIDs = append(diffIDs, diffID)
		layerDescs = append(layerDescs, map[string]any{"mediaType": layerType, "digest": digestOf(gz), "size": len(gz)})
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": arch, "os": "linux",
		"config": map[string]any{"Cmd": []string{"/file0"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		t.Fatal(err)
	}
	img.config = cfg
	img.blobs[digestOf(cfg)] = cfg
	img.size += int64(len(cfg))
	img.manifest, err = json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     img.mediaType,
		"config":        map[string]any{"mediaType": configType, "digest": digestOf(cfg), "size": len(cfg)},
		"layers":        layerDescs,
	})
	if err != nil {
		t.Fatal(err)
	}
	img.digest = digestOf(img.manifest)
	return img
}

// buildIndex returns an index (OCI, or a Docker manifest list) of images,
// its media type and digest.
func buildIndex(t *testing.T, oci bool, imgs ...testImage) (body []byte, mediaType, digest string) {
	t.Helper()
	mediaType = mediaDockerList
	if oci {
		mediaType = mediaOCIIndex
	}
	var ms []map[string]any
	for _, img := range imgs {
		ms = append(ms, map[string]any{
			"mediaType": img.mediaType, "digest": img.digest, "size": len(img.manifest),
			"platform": map[string]any{"os": "linux", "architecture": img.arch},
		})
	}
	body, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaType, "manifests": ms})
	if err != nil {
		t.Fatal(err)
	}
	return body, mediaType, digestOf(body)
}

// pushBlob uploads a blob to a registry with a monolithic upload.
func pushBlob(t *testing.T, base, repo string, blob []byte) {
	t.Helper()
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatalf("start upload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload to %s: got %s, want 202", repo, resp.Status)
	}
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("upload location %q: %v", resp.Header.Get("Location"), err)
	}
	q := loc.Query()
	q.Set("digest", digestOf(blob))
	loc.RawQuery = q.Encode()
	put(t, loc.String(), "application/octet-stream", blob)
}

// pushManifest puts a manifest under ref (a tag or its digest).
func pushManifest(t *testing.T, base, repo, ref, mediaType string, body []byte) {
	t.Helper()
	put(t, base+"/v2/"+repo+"/manifests/"+ref, mediaType, body)
}

// pushImage pushes an image's blobs and its manifest by digest and under
// each tag.
func pushImage(t *testing.T, base, repo string, img testImage, tags ...string) {
	t.Helper()
	for _, b := range img.blobs {
		pushBlob(t, base, repo, b)
	}
	for _, ref := range append([]string{img.digest}, tags...) {
		pushManifest(t, base, repo, ref, img.mediaType, img.manifest)
	}
}

func put(t *testing.T, u, contentType string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		var msg bytes.Buffer
		msg.ReadFrom(resp.Body)
		t.Fatalf("PUT %s: got %s (%s), want 201", redactQuery(u), resp.Status, strings.TrimSpace(msg.String()))
	}
}

func redactQuery(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	p.RawQuery = ""
	return p.String()
}
