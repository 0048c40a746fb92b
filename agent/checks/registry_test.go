package checks

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/labtest"
	"github.com/harbormaster/harbormaster/internal/conf"
)

// startRegistry runs Debian's docker-registry (distribution v2) with
// filesystem storage under a temporary root until the test ends. It returns
// the base URL and the storage root.
func startRegistry(t *testing.T) (base, root string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "storage")
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
`, root, addr)
	cmd := exec.Command("docker-registry", "serve", writeFile(t, dir, "config.yml", cfg))
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("docker-registry log:\n%s", log.String())
		}
	})
	base = "http://" + addr
	waitFor(t, 10*time.Second, "docker-registry to answer GET /v2/", func() bool {
		resp, err := http.Get(base + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base, root
}

func pullCheck(registry, image, platform string) Config {
	return Config{Name: "pull", Type: TypeRegistryPull, Registry: registry, Image: image, Platform: platform, Timeout: conf.Duration(5 * time.Second)}
}

func TestRegistryPull(t *testing.T) {
	labtest.RequireBin(t, "docker-registry")
	base, root := startRegistry(t)

	hello := buildImage(t, false, "amd64", "hello from layer one\n", "and layer two\n")
	pushImage(t, base, "library/hello", hello, "latest", "v1")
	amd := buildImage(t, true, "amd64", "amd64 binary\n")
	arm := buildImage(t, true, "arm64", "arm64 binary\n")
	pushImage(t, base, "library/multi", amd)
	pushImage(t, base, "library/multi", arm)
	index := buildIndex(t, true, amd, arm)
	pushManifest(t, base, "library/multi", "latest", index.MediaType, index.Body)
	indexDigest := index.Digest
	list := buildIndex(t, false, amd, arm)
	pushManifest(t, base, "library/multi", "list", list.MediaType, list.Body)
	listDigest := list.Digest

	helloOut := fmt.Sprintf("pulled library/hello:latest %s (3 blobs, %d bytes) in ", hello.Digest, hello.Size)
	tests := []struct {
		name     string
		image    string
		platform string
		wantErr  string
		wantOut  string
	}{
		{"tag", "library/hello:latest", "", "", helloOut},
		{"tag defaults to latest", "library/hello", "", "", helloOut},
		{"another tag", "library/hello:v1", "", "", "pulled library/hello:v1 " + hello.Digest},
		{"digest", "library/hello@" + hello.Digest, "", "", fmt.Sprintf("pulled library/hello@%s (3 blobs, %d bytes)", hello.Digest, hello.Size)},
		{"OCI index picks arm64", "library/multi:latest", "linux/arm64", "",
			fmt.Sprintf("pulled library/multi:latest %s -> linux/arm64 %s (2 blobs, %d bytes)", indexDigest, arm.Digest, arm.Size)},
		{"OCI index picks amd64", "library/multi:latest", "linux/amd64", "",
			fmt.Sprintf("pulled library/multi:latest %s -> linux/amd64 %s (2 blobs, %d bytes)", indexDigest, amd.Digest, amd.Size)},
		{"Docker manifest list picks arm64", "library/multi:list", "linux/arm64", "",
			fmt.Sprintf("pulled library/multi:list %s -> linux/arm64 %s", listDigest, arm.Digest)},
		{"index by digest", "library/multi@" + indexDigest, "linux/arm64/v8", "", "-> linux/arm64 " + arm.Digest},
		{"platform not in the index", "library/multi:latest", "linux/s390x", "manifest library/multi:latest: no manifest for platform linux/s390x in index (has linux/amd64, linux/arm64)", ""},
		{"missing tag", "library/hello:nosuch", "", "manifest library/hello:nosuch: 404 MANIFEST_UNKNOWN", ""},
		{"missing repository", "nosuch/repo:latest", "", "manifest nosuch/repo:latest: 404 MANIFEST_UNKNOWN", ""},
		{"missing digest", "library/hello@" + testDigest, "", "manifest library/hello@" + testDigest + ": 404 MANIFEST_UNKNOWN", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runProbe(t, pullCheck(base, tc.image, tc.platform))
			checkResult(t, r, tc.wantErr, tc.wantOut)
		})
	}

	t.Run("corrupt layer", func(t *testing.T) {
		img := buildImage(t, false, "amd64", "a layer no other image has\n")
		pushImage(t, base, "library/corrupt", img, "latest")
		layer := digestOf(img.Layers[0])
		r := runProbe(t, pullCheck(base, "library/corrupt", ""))
		checkResult(t, r, "", "pulled library/corrupt:latest") // intact first

		hex := strings.TrimPrefix(layer, "sha256:")
		data := filepath.Join(root, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data")
		orig, err := os.ReadFile(data)
		if err != nil {
			t.Fatalf("the layer's data in the registry's storage: %v", err)
		}
		bad := bytes.Clone(orig)
		bad[len(bad)/2] ^= 0xff // same size, other content
		if err := os.WriteFile(data, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		r = runProbe(t, pullCheck(base, "library/corrupt", ""))
		checkResult(t, r, "blob "+layer+": digest mismatch (content hashes to "+digestOf(bad)+")", "")

		if err := os.WriteFile(data, append(orig, "tail"...), 0o644); err != nil {
			t.Fatal(err)
		}
		r = runProbe(t, pullCheck(base, "library/corrupt", ""))
		checkResult(t, r, "blob "+layer+": longer than the "+strconv.Itoa(len(orig))+" bytes of its descriptor", "")
	})

	t.Run("corrupt manifest", func(t *testing.T) {
		img := buildImage(t, false, "amd64", "another unique layer\n")
		pushImage(t, base, "library/badmanifest", img, "latest")
		hex := strings.TrimPrefix(img.Digest, "sha256:")
		data := filepath.Join(root, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data")
		// Same JSON, one more space: still a valid manifest, another digest.
		bad := bytes.Replace(img.Manifest, []byte(`{"config"`), []byte(`{ "config"`), 1)
		if bytes.Equal(bad, img.Manifest) {
			t.Fatalf("manifest %s: the test's edit changed nothing", img.Manifest)
		}
		if err := os.WriteFile(data, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		r := runProbe(t, pullCheck(base, "library/badmanifest@"+img.Digest, ""))
		checkResult(t, r, "manifest library/badmanifest@"+img.Digest+": digest mismatch (content hashes to "+digestOf(bad)+")", "")
		r = runProbe(t, pullCheck(base, "library/badmanifest:latest", ""))
		checkResult(t, r, "manifest library/badmanifest:latest: digest mismatch (Docker-Content-Digest is "+img.Digest+", content hashes to "+digestOf(bad)+")", "")
	})
}
