package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/checks"
	"github.com/harbormaster/harbormaster/internal/conf"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// TestCheckOutputNotReplicated: of an exec check's output only the
// sanitized first line reaches the replicated state and the status API;
// the rest (a secret here) stays on the node.
func TestCheckOutputNotReplicated(t *testing.T) {
	script := `printf 'db check: \033[31mdown\033[0m\nDB_PASSWORD=hunter2\n'; exit 2`
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: web, type: service, marker: true}\n",
		checks: []checks.Config{{Name: "db", Type: "exec", Argv: []string{script}, Shell: true,
			Interval: conf.Duration(100 * time.Millisecond), Timeout: conf.Duration(100 * time.Millisecond)}}})
	const wantErr, wantOut = "exit status 2: db check: ?[31mdown?[0m", "db check: ?[31mdown?[0m"
	c.waitFor("every node's failing db check in the state", 10*time.Second, func() bool {
		st := c.nodes[0].agent.State()
		for _, nd := range c.nodes {
			if r, ok := st.Checks[nd.id]["db"]; !ok || !r.Known || r.Passing {
				return false
			}
		}
		return true
	})
	st := c.nodes[0].agent.State()
	for _, nd := range c.nodes {
		r := st.Checks[nd.id]["db"]
		if r.Error != wantErr || r.Output != wantOut {
			t.Errorf("%s: replicated error %q output %q, want %q and %q", nd.id, r.Error, r.Output, wantErr, wantOut)
		}
	}
	ms, err := c.admin(c.nodes[1]).Members(ctxT(t, 5*time.Second), &hmv1.MembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms.Members {
		for _, ch := range m.Checks {
			if strings.Contains(ch.Output+ch.Error, "hunter2") || strings.ContainsRune(ch.Output+ch.Error, 0x1b) {
				t.Errorf("Members: %s's check %s shows %q / %q", m.Id, ch.Name, ch.Error, ch.Output)
			}
		}
	}
}
