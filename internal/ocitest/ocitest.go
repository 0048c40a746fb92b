// Package ocitest builds tiny container images in memory and pushes them to a
// registry with the OCI distribution API, for the tests of the
// registry-pull check (agent/checks) and the lab's registry scenarios
// (chaos/scenario). It is not test-only code (it has no testing import), so
// a lab helper process can push with it, but nothing in the product uses it.
//
// An Image is a config blob and one gzip'd tar layer per file, with its
// manifest; an Index lists images by platform. Both are deterministic: the
// same arguments give the same bytes and digests. A Pusher uploads blobs
// monolithically (POST then PUT with the digest) and PUTs manifests, which
// is what distribution (docker-registry), Harbor and zot all accept.
package ocitest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Media types of manifests, indexes, configs and layers.
const (
	MediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaOCIConfig      = "application/vnd.oci.image.config.v1+json"
	MediaOCILayer       = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaDockerConfig   = "application/vnd.docker.container.image.v1+json"
	MediaDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Format selects the media types of an Image or Index.
type Format int

const (
	// OCI is the OCI image spec: image manifest and image index.
	OCI Format = iota
	// Docker is Docker's image manifest v2 schema 2 and manifest list.
	Docker
)

func (f Format) String() string {
	if f == Docker {
		return "docker"
	}
	return "oci"
}

// Image is a tiny image for linux/Arch. Its fields are filled by BuildImage
// and must not be modified (the digests would no longer match).
type Image struct {
	Arch string
	// Config is the config blob; Layers the gzip'd tar layers, in order.
	Config []byte
	Layers [][]byte
	// Blobs maps every blob's digest to its content: config and layers.
	Blobs map[string][]byte
	// Manifest is the image manifest, of media type MediaType, whose
	// digest is Digest.
	Manifest  []byte
	MediaType string
	Digest    string
	// Size is the size of the config and the layers together (what a pull
	// downloads besides the manifest).
	Size int64
}

// Index is an image index (OCI) or manifest list (Docker).
type Index struct {
	Body      []byte
	MediaType string
	Digest    string
	// Images are the images it lists, in order.
	Images []Image
}

// Digest returns the sha256 digest of b, "sha256:<hex>".
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// layer returns a gzip'd tar holding one regular file, and the digest of
// the uncompressed tar (the layer's diff_id). Header times are zero, so
// the bytes depend on name and content only.
func layer(name, content string) (gz []byte, diffID string, err error) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		return nil, "", err
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		return nil, "", err
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	if _, err := zw.Write(tb.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gb.Bytes(), Digest(tb.Bytes()), nil
}

// BuildImage builds an image for linux/arch with one layer per element of
// files, layer i holding the file "file<i>" with that content (at least
// one). The config's command is /file0.
func BuildImage(format Format, arch string, files ...string) (Image, error) {
	if len(files) == 0 {
		return Image{}, fmt.Errorf("ocitest: an image needs at least one layer")
	}
	img := Image{Arch: arch, Blobs: map[string][]byte{}}
	configType, layerType := MediaOCIConfig, MediaOCILayer
	img.MediaType = MediaOCIManifest
	if format == Docker {
		configType, layerType = MediaDockerConfig, MediaDockerLayer
		img.MediaType = MediaDockerManifest
	}
	var diffIDs []string
	var layerDescs []map[string]any
	for i, content := range files {
		gz, diffID, err := layer(fmt.Sprintf("file%d", i), content)
		if err != nil {
			return Image{}, fmt.Errorf("ocitest: layer %d: %w", i, err)
		}
		img.Layers = append(img.Layers, gz)
		img.Blobs[Digest(gz)] = gz
		img.Size += int64(len(gz))
		diffIDs = append(diffIDs, diffID)
		layerDescs = append(layerDescs, map[string]any{"mediaType": layerType, "digest": Digest(gz), "size": len(gz)})
	}
	cfg, err := json.Marshal(map[string]any{
		"architecture": arch, "os": "linux",
		"config": map[string]any{"Cmd": []string{"/file0"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return Image{}, fmt.Errorf("ocitest: config: %w", err)
	}
	img.Config = cfg
	img.Blobs[Digest(cfg)] = cfg
	img.Size += int64(len(cfg))
	img.Manifest, err = json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     img.MediaType,
		"config":        map[string]any{"mediaType": configType, "digest": Digest(cfg), "size": len(cfg)},
		"layers":        layerDescs,
	})
	if err != nil {
		return Image{}, fmt.Errorf("ocitest: manifest: %w", err)
	}
	img.Digest = Digest(img.Manifest)
	return img, nil
}

// BuildIndex returns the index of images, each listed with its platform
// linux/<Arch>.
func BuildIndex(format Format, imgs ...Image) (Index, error) {
	idx := Index{MediaType: MediaOCIIndex, Images: imgs}
	if format == Docker {
		idx.MediaType = MediaDockerList
	}
	ms := []map[string]any{}
	for _, img := range imgs {
		ms = append(ms, map[string]any{
			"mediaType": img.MediaType, "digest": img.Digest, "size": len(img.Manifest),
			"platform": map[string]any{"os": "linux", "architecture": img.Arch},
		})
	}
	body, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": idx.MediaType, "manifests": ms})
	if err != nil {
		return Index{}, fmt.Errorf("ocitest: index: %w", err)
	}
	idx.Body, idx.Digest = body, Digest(body)
	return idx, nil
}

// Hello returns the lab's stand-in for library/hello-world: an OCI index of
// two single-layer images, linux/amd64 and linux/arm64.
func Hello() (Index, error) {
	var imgs []Image
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := BuildImage(OCI, arch, "hello from harbormaster's lab ("+arch+")\n")
		if err != nil {
			return Index{}, err
		}
		imgs = append(imgs, img)
	}
	return BuildIndex(OCI, imgs...)
}

// Pusher pushes to one registry with the OCI distribution API, anonymously.
// It is safe for concurrent use.
type Pusher struct {
	// Base is the registry's base URL, such as http://198.18.0.11:5000.
	Base string
	// Client is the HTTP client (default: one that never uses a proxy).
	Client *http.Client
}

// noProxy is the default client: a test or lab registry is reached
// directly, whatever HTTP_PROXY says.
var noProxy = &http.Client{Transport: &http.Transport{Proxy: nil}}

func (p Pusher) client() *http.Client {
	if p.Client != nil {
		return p.Client
	}
	return noProxy
}

// Ping asks GET /v2/ and returns nil on 200 OK (an anonymous registry that
// serves).
func (p Pusher) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Base+"/v2/", nil)
	if err != nil {
		return fmt.Errorf("ocitest: %w", err)
	}
	resp, err := p.client().Do(req)
	if err != nil {
		return fmt.Errorf("ocitest: GET /v2/: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ocitest: GET /v2/: %s, want 200", resp.Status)
	}
	return nil
}

// PushBlob uploads blob to repo with a monolithic upload: POST
// /v2/<repo>/blobs/uploads/ (202 and a Location), then PUT the content to
// the Location with ?digest= (201).
func (p Pusher) PushBlob(ctx context.Context, repo string, blob []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.Base+"/v2/"+repo+"/blobs/uploads/", nil)
	if err != nil {
		return fmt.Errorf("ocitest: %w", err)
	}
	resp, err := p.client().Do(req)
	if err != nil {
		return fmt.Errorf("ocitest: start upload to %s: %w", repo, err)
	}
	msg := readMsg(resp)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("ocitest: start upload to %s: %s (%s), want 202", repo, resp.Status, msg)
	}
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("ocitest: upload location %q: %w", resp.Header.Get("Location"), err)
	}
	q := loc.Query()
	q.Set("digest", Digest(blob))
	loc.RawQuery = q.Encode()
	return p.put(ctx, loc.String(), "application/octet-stream", blob)
}

// PushManifest PUTs a manifest or index under ref, a tag or its digest.
func (p Pusher) PushManifest(ctx context.Context, repo, ref, mediaType string, body []byte) error {
	return p.put(ctx, p.Base+"/v2/"+repo+"/manifests/"+ref, mediaType, body)
}

// PushImage pushes the image's blobs, then its manifest by digest and
// under each tag.
func (p Pusher) PushImage(ctx context.Context, repo string, img Image, tags ...string) error {
	for _, b := range img.Blobs {
		if err := p.PushBlob(ctx, repo, b); err != nil {
			return err
		}
	}
	for _, ref := range append([]string{img.Digest}, tags...) {
		if err := p.PushManifest(ctx, repo, ref, img.MediaType, img.Manifest); err != nil {
			return err
		}
	}
	return nil
}

// PushIndex pushes every image of the index (by digest), then the index
// by digest and under each tag.
func (p Pusher) PushIndex(ctx context.Context, repo string, idx Index, tags ...string) error {
	for _, img := range idx.Images {
		if err := p.PushImage(ctx, repo, img); err != nil {
			return err
		}
	}
	for _, ref := range append([]string{idx.Digest}, tags...) {
		if err := p.PushManifest(ctx, repo, ref, idx.MediaType, idx.Body); err != nil {
			return err
		}
	}
	return nil
}

func (p Pusher) put(ctx context.Context, u, contentType string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("ocitest: %w", err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := p.client().Do(req)
	if err != nil {
		return fmt.Errorf("ocitest: PUT %s: %w", redactQuery(u), err)
	}
	msg := readMsg(resp)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("ocitest: PUT %s: %s (%s), want 201", redactQuery(u), resp.Status, msg)
	}
	return nil
}

// readMsg reads and closes a response body, returning its start trimmed.
func readMsg(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return strings.TrimSpace(string(b))
}

// redactQuery drops the query (upload state, digest) from URLs in messages.
func redactQuery(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	p.RawQuery = ""
	return p.String()
}
