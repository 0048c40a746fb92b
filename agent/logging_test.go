package agent_test

import (
	"strings"
	"testing"
	"time"
)

// A graceful stop logs no ERROR, on the stopping node or its peers
// (raft's errors about a peer that is stopping are warnings), and raft's
// lines come out in the agent's format with component=raft.
func TestCleanStopLogsNoError(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.waitFor("roles held", 10*time.Second, func() bool { l := c.leader(); return l != nil && allHeld(l.agent.State()) })
	if raft := c.lw.lines("component=raft", "level="); len(raft) == 0 {
		t.Errorf("no raft line in the agent's format with component=raft")
	}
	before := len(c.lw.lines())
	l := c.leader()
	stop := func(nd *tnode) {
		c.stop(nd)
		nd.done <- nil // for the cluster's cleanup, which waits for it again
	}
	stop(l) // the leader: it hands leadership over, its followers lose it
	rest := c.others(l.id)
	c.waitFor("a new leader", 5*time.Second, func() bool { return c.leader(rest...) != nil })
	time.Sleep(time.Second) // the survivors' replication to the stopped node fails meanwhile
	nl := c.leader(rest...)
	for _, id := range rest {
		if id != nl.id {
			stop(c.node(id)) // then a follower
		}
	}
	time.Sleep(time.Second)
	for _, line := range c.lw.lines()[before:] {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("ERROR during graceful stops: %s", line)
		}
	}
}

// log_format is reloaded: after a SIGHUP's Reload the agent's lines,
// raft's among them, are JSON objects.
func TestReloadSwitchesLogFormat(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{logHandler: true})
	nd := c.nodes[0]
	if got := c.lw.lines(`msg="config reloaded"`); len(got) != 0 {
		t.Fatalf("reloaded before the test: %q", got)
	}
	next := *nd.cfg
	next.LogFormat = "json"
	ch, err := nd.agent.Reload(&next)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if ch.LogFormat != "json" || !strings.Contains(ch.String(), "log_format json") {
		t.Fatalf("Reload = %+v (%q), want log_format json", ch, ch.String())
	}
	got := c.lw.lines(`"msg":"config reloaded"`, `"node":"n1"`, `"test":"TestReloadSwitchesLogFormat"`)
	if len(got) != 1 || !strings.HasPrefix(got[0], "{") {
		t.Fatalf("config reloaded lines in JSON: %q, want one JSON object with the logger's attributes", got)
	}
	// Raft's lines too (a snapshot logs at info).
	if err := nd.agent.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	c.waitFor("a raft line in JSON", 2*time.Second, func() bool {
		return len(c.lw.lines(`"component":"raft"`, `"level":"INFO"`, `"node":"n1"`)) > 0
	})
}
