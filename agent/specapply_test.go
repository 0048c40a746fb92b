package agent_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/agent/checks"
	"github.com/harbormaster/harbormaster/internal/conf"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// spec apply refuses what would stop a role by mistake unless forced, and
// --dry-run previews a change without committing it.
func TestApplySpecRefusalsDryRunAndForce(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{spec: "roles:\n  - {name: web, type: service, marker: true, requires: [disk]}\n",
		checks: []checks.Config{{Name: "disk", Type: "exec", Argv: []string{"true"},
			Interval: conf.Duration(100 * time.Millisecond), Timeout: conf.Duration(100 * time.Millisecond)}}})
	c.waitFor("web held", 10*time.Second, func() bool { l := c.leader(); return l != nil && allHeld(l.agent.State()) })
	l := c.leader()
	follower := c.node(c.others(l.id)[0])
	c.waitFor("the follower to see web held", 5*time.Second, func() bool { return allHeld(follower.agent.State()) })
	before := l.agent.State()
	holder := before.Assignment("web").Holder
	admin := c.admin(follower)
	ctx := ctxT(t, 30*time.Second)

	const typo = "roles:\n  - {name: web, type: service, marker: true, requires: [nosuchcheck]}\n  - {name: api, type: service, marker: true}\n"

	// Dry run: the preview, and nothing changes.
	r, err := admin.ApplySpec(ctx, &hmv1.ApplySpecRequest{Document: typo, DryRun: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if !r.DryRun || r.Node != l.id || r.Version != before.SpecVersion || r.Index != 0 {
		t.Fatalf("dry run reply %v, want dry_run from %s at version %d, no index", r, l.id, before.SpecVersion)
	}
	got := map[string]*hmv1.SpecRoleChange{}
	for _, x := range r.Roles {
		got[x.Role] = x
	}
	if w := got["web"]; w == nil || w.Change != "changed" || w.HolderNow != holder || w.HolderAfter != "" || !w.Stops ||
		len(w.Fields) != 1 || w.Fields[0] != `requires: ["disk"] -> ["nosuchcheck"]` || !strings.Contains(w.Why, "required check nosuchcheck is not run on this node") {
		t.Fatalf("dry run web = %v, want changed requires, held by %s now, none after (stops)", w, holder)
	}
	if a := got["api"]; a == nil || a.Change != "added" || a.HolderAfter == "" {
		t.Fatalf("dry run api = %v, want added with a holder after", a)
	}
	if len(r.Stopping) != 1 || r.Stopping[0] != "web" || len(r.Problems) == 0 {
		t.Fatalf("dry run stopping %v problems %v, want [web] and the problems", r.Stopping, r.Problems)
	}
	for _, n := range c.nodes {
		st := n.agent.State()
		if st.SpecVersion != before.SpecVersion || st.Assignment("web").Holder != holder || st.Assignment("api").Holder != "" {
			t.Fatalf("%s after the dry run: spec version %d, web on %q, api on %q; want %d, %s and none",
				n.id, st.SpecVersion, st.Assignment("web").Holder, st.Assignment("api").Holder, before.SpecVersion, holder)
		}
	}

	refused := func(doc string, code codes.Code, want ...string) {
		t.Helper()
		_, err := admin.ApplySpec(ctx, &hmv1.ApplySpecRequest{Document: doc})
		if status.Code(err) != code {
			t.Fatalf("apply %q: %v, want %s", doc, err, code)
		}
		for _, w := range want {
			if !strings.Contains(status.Convert(err).Message(), w) {
				t.Fatalf("apply %q: %v, want it to say %q", doc, err, w)
			}
		}
	}
	// (a) a required check no registered node defines (also (c): web is held).
	refused(typo, codes.FailedPrecondition, `roles[web].requires[0]: check "nosuchcheck" is not defined by any registered node (checks they run: disk)`, "--force")
	// A held role left without any eligible node.
	refused("roles:\n  - {name: web, type: service, marker: true, requires: [disk], candidates: [{node: n9}]}\n",
		codes.FailedPrecondition, "roles[web]: is held by "+holder+" now and would have no eligible node", "not a candidate", "--force")
	// (b) follow and avoid name a role of the spec (spec.Parse).
	refused("roles:\n  - {name: web, type: service, marker: true, requires: [disk], follow: nosuchrole}\n",
		codes.InvalidArgument, `roles[0].follow: "nosuchrole" is not a role of this spec`)
	refused("roles:\n  - {name: web, type: service, marker: true, requires: [disk], avoid: [nosuchrole]}\n",
		codes.InvalidArgument, `roles[0].avoid[0]: "nosuchrole" is not a role of this spec`)
	if v := l.agent.State().SpecVersion; v != before.SpecVersion {
		t.Fatalf("spec version after the refusals = %d, want %d", v, before.SpecVersion)
	}

	// Forced: applied, and the reply says what stops.
	r, err = admin.ApplySpec(ctx, &hmv1.ApplySpecRequest{Document: typo, Force: true})
	if err != nil {
		t.Fatalf("forced apply: %v", err)
	}
	if r.Version != before.SpecVersion+1 || len(r.Stopping) != 1 || r.Stopping[0] != "web" || len(r.Problems) == 0 {
		t.Fatalf("forced apply reply %v, want version %d, stopping [web], the problems", r, before.SpecVersion+1)
	}
	c.waitFor("web released and api placed", 10*time.Second, func() bool {
		st := l.agent.State()
		return st.Assignment("web").Holder == "" && st.Assignment("api").Holder != ""
	})
}
