package agent_test

import (
	"strings"
	"testing"

	"github.com/harbormaster/harbormaster/internal/version"
)

func TestBuildInfoMetric(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{})
	bi := version.Get()
	want := `harbormaster_build_info{commit="` + bi.Commit + `",goversion="` + bi.GoVersion + `",node="n1",version="` + bi.Version + `"} 1`
	if _, body := get(c.nodes[0], "/metrics"); !strings.Contains(body, want) {
		t.Fatalf("metrics lack %s:\n%s", want, grepLines(body, "build_info"))
	}
}
