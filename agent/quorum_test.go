package agent_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// get answers path on nd's metrics handler: the status code and body.
func get(nd *tnode, path string) (int, string) {
	rec := httptest.NewRecorder()
	nd.agent.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// TestQuorumLossExplained: a node cut off from the others is not ready
// (/readyz 503 saying why) while the majority side stays ready; after an
// failover's time its status says no quorum and since when, and its
// metrics say so; once healed it records one quorum event saying when
// quorum was lost and regained. /healthz stays 200 throughout: a cut-off
// node is alive, restarting it would not help.
func TestQuorumLossExplained(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	for _, nd := range c.nodes {
		c.waitFor(nd.id+" ready on /readyz", 20*time.Second, func() bool { code, _ := get(nd, "/readyz"); return code == http.StatusOK })
	}
	// A follower is cut: the majority side keeps its leader.
	var cut *tnode
	c.waitFor("a leader", 20*time.Second, func() bool { return c.leader() != nil })
	for _, nd := range c.nodes {
		if nd != c.leader() {
			cut = nd
		}
	}
	isolatedAt := time.Now()
	c.isolate(cut.id)
	var body string
	c.waitFor(cut.id+" not ready on /readyz", 20*time.Second, func() bool {
		var code int
		code, body = get(cut, "/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "no leader known") && !strings.Contains(body, "quorum lease not held") {
		t.Errorf("/readyz of the isolated node: %q, want the reason (no leader / lease)", body)
	}
	var st *hmv1.StatusResponse
	c.waitFor(cut.id+"'s status to say no quorum", 20*time.Second, func() bool {
		var err error
		st, err = c.admin(cut).Status(ctxT(t, 2*time.Second), &hmv1.StatusRequest{})
		return err == nil && st.NoQuorum
	})
	since := time.UnixMilli(st.NoQuorumSinceMs)
	if since.Before(isolatedAt.Add(-time.Second)) || since.After(time.Now()) {
		t.Errorf("no_quorum_since %s, want after the cut at %s", since, isolatedAt)
	}
	if code, body := get(cut, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no quorum since") {
		t.Errorf("/readyz of the isolated node once quorum is lost: %d %q, want 503 with since when", code, body)
	}
	if _, body := get(cut, "/metrics"); !strings.Contains(body, "harbormaster_quorum{node=\""+cut.id+"\"} 0") {
		t.Errorf("metrics of the isolated node lack harbormaster_quorum 0")
	}
	if code, body := get(cut, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz of the isolated node: %d %q, want 200 (alive, store writable)", code, body)
	}
	for _, nd := range c.nodes {
		if nd == cut {
			continue
		}
		// The majority side is ready, after an election if the cut node led.
		c.waitFor("/readyz 200 on "+nd.id+" on the majority side", 20*time.Second, func() bool {
			code, body := get(nd, "/readyz")
			return code == http.StatusOK && strings.Contains(body, "leader")
		})
		s, err := c.admin(nd).Status(ctxT(t, 2*time.Second), &hmv1.StatusRequest{})
		if err != nil || s.NoQuorum {
			t.Errorf("status of %s on the majority side: no_quorum %v, err %v", nd.id, s.GetNoQuorum(), err)
		}
		if _, body := get(nd, "/metrics"); !strings.Contains(body, "harbormaster_quorum{node=\""+nd.id+"\"} 1") {
			t.Errorf("metrics of %s lack harbormaster_quorum 1", nd.id)
		}
	}

	c.heal()
	var ev fsm.Event
	c.waitFor("a quorum event from "+cut.id, 10*time.Second, func() bool {
		for _, e := range c.nodes[0].agent.State().Events {
			if e.Kind == fsm.EventQuorum && e.Node == cut.id {
				ev = e
				return true
			}
		}
		return false
	})
	if !strings.Contains(ev.Message, "lost at "+since.UTC().Format("2006-01-02T15:04:05")) || !strings.Contains(ev.Message, "regained at") {
		t.Errorf("quorum event %q: want lost at %s and the regain", ev.Message, since.UTC().Format(time.RFC3339Nano))
	}
	c.waitFor(cut.id+" ready again", 20*time.Second, func() bool { code, _ := get(cut, "/readyz"); return code == http.StatusOK })
	s, err := c.admin(cut).Status(ctxT(t, 2*time.Second), &hmv1.StatusRequest{})
	if err != nil || s.NoQuorum || s.NoQuorumSinceMs != 0 {
		t.Errorf("status of %s after heal: no_quorum %v since %d, err %v", cut.id, s.GetNoQuorum(), s.GetNoQuorumSinceMs(), err)
	}
	n := 0
	for _, e := range c.nodes[0].agent.State().Events {
		if e.Kind == fsm.EventQuorum {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d quorum events, want 1 (one loss, by the isolated node)", n)
	}
}

// TestHealthzStoreProbe: /healthz answers 503 naming the data dir when the
// probe cannot write there (a directory in place of the probe file: chmod
// does not stop root), and 200 on a node whose data dir is writable.
func TestHealthzStoreProbe(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	bad := c.nodes[1]
	if err := os.Mkdir(filepath.Join(bad.cfg.DataDir, "healthz-probe"), 0o700); err != nil {
		t.Fatal(err)
	}
	if code, body := get(bad, "/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "data_dir not writable") {
		t.Errorf("/healthz with an unwritable probe file: %d %q, want 503 data_dir not writable", code, body)
	}
	if code, body := get(c.nodes[0], "/healthz"); code != http.StatusOK || !strings.HasPrefix(body, "ok") {
		t.Errorf("/healthz of a healthy node: %d %q, want 200 ok", code, body)
	}
}
