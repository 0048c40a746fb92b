package checks

import (
	"testing"

	"github.com/harbormaster/harbormaster/internal/ocitest"
)

// The tests' images are built and pushed by internal/ocitest; these are
// thin adapters that fail the test on error.

// testImage is a tiny image built in memory (ocitest.Image).
type testImage = ocitest.Image

var digestOf = ocitest.Digest

// buildImage builds an image for linux/arch with one layer per file
// content. oci selects OCI media types, else Docker v2 schema 2.
func buildImage(t *testing.T, oci bool, arch string, files ...string) testImage {
	t.Helper()
	img, err := ocitest.BuildImage(format(oci), arch, files...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// buildIndex returns an index (OCI, or a Docker manifest list) of images.
func buildIndex(t *testing.T, oci bool, imgs ...testImage) ocitest.Index {
	t.Helper()
	idx, err := ocitest.BuildIndex(format(oci), imgs...)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func format(oci bool) ocitest.Format {
	if oci {
		return ocitest.OCI
	}
	return ocitest.Docker
}

// pushManifest puts a manifest under ref (a tag or its digest).
func pushManifest(t *testing.T, base, repo, ref, mediaType string, body []byte) {
	t.Helper()
	if err := (ocitest.Pusher{Base: base}).PushManifest(t.Context(), repo, ref, mediaType, body); err != nil {
		t.Fatal(err)
	}
}

// pushImage pushes an image's blobs and its manifest by digest and under
// each tag.
func pushImage(t *testing.T, base, repo string, img testImage, tags ...string) {
	t.Helper()
	if err := (ocitest.Pusher{Base: base}).PushImage(t.Context(), repo, img, tags...); err != nil {
		t.Fatal(err)
	}
}
