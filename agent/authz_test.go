package agent_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/agent"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/internal/tlsid"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// wantCode fails unless err carries code.
func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Errorf("%s: %v (%s), want %s", what, err, got, code)
	}
}

// TestEveryMethodHasAPermission: a method added to the proto without an
// entry in the permission table would be refused to everyone; this says
// so at once.
func TestEveryMethodHasAPermission(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{hmv1.Admin_ServiceDesc, hmv1.Cluster_ServiceDesc} {
		for _, m := range sd.Methods {
			if !agent.HasPermission("/" + sd.ServiceName + "/" + m.MethodName) {
				t.Errorf("%s/%s has no permission", sd.ServiceName, m.MethodName)
			}
		}
		for _, m := range sd.Streams {
			if !agent.HasPermission("/" + sd.ServiceName + "/" + m.StreamName) {
				t.Errorf("%s/%s has no permission", sd.ServiceName, m.StreamName)
			}
		}
	}
}

// TestAuthorization runs every kind of caller against a TLS cluster: no
// certificate, another cluster's, each operator role, and members
// proposing for others.
func TestAuthorization(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.waitFor("roles held", 10*time.Second, func() bool { l := c.leader(); return l != nil && allHeld(l.agent.State()) })
	l := c.leader()
	f := c.node(c.others(l.id)[0])
	ctx := ctxT(t, 30*time.Second)
	short := func() context.Context {
		x, cancel := context.WithTimeout(ctx, 3*time.Second)
		t.Cleanup(cancel)
		return x
	}

	// 1. No TLS, TLS without a client certificate, another cluster's
	// certificate with the admin role: nothing answers.
	_, err := hmv1.NewAdminClient(c.connAs(l, "")).Status(short(), &hmv1.StatusRequest{})
	wantCode(t, "plain text", err, codes.Unavailable)
	noCert, _ := grpc.NewClient(l.agent.APIAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})))
	defer noCert.Close()
	_, err = hmv1.NewAdminClient(noCert).Status(short(), &hmv1.StatusRequest{})
	wantCode(t, "TLS without a client certificate", err, codes.Unavailable)
	other := t.TempDir()
	if err := tlsid.WriteCluster(other, "test", map[string][]net.IP{"n1": {net.IPv4(127, 0, 0, 1)}}, tlsid.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	ost, err := tlsid.Load(tlsid.FilesIn(other, "admin"), nil)
	if err != nil {
		t.Fatal(err)
	}
	oconn, _ := grpc.NewClient(l.agent.APIAddr(), grpc.WithTransportCredentials(credentials.NewTLS(ost.ClientConfig(tlsid.AnyIdentity))))
	defer oconn.Close()
	_, err = hmv1.NewAdminClient(oconn).Status(short(), &hmv1.StatusRequest{})
	wantCode(t, "another cluster's admin certificate", err, codes.Unavailable)

	// 2. read: reads only.
	read := hmv1.NewAdminClient(c.connAs(f, "read"))
	if _, err := read.Status(short(), &hmv1.StatusRequest{}); err != nil {
		t.Fatalf("read: status: %v", err)
	}
	_, err = read.Drain(short(), &hmv1.DrainRequest{Node: f.id, Drained: true})
	wantCode(t, "read: drain", err, codes.PermissionDenied)
	_, err = read.ApplySpec(short(), &hmv1.ApplySpecRequest{Document: "roles: []\n"})
	wantCode(t, "read: spec apply", err, codes.PermissionDenied)
	_, err = read.TransferLeadership(short(), &hmv1.TransferLeadershipRequest{})
	wantCode(t, "read: transfer-leader", err, codes.PermissionDenied)

	// 3. operate: drains, and the event names the certificate, not the
	// actor the request claims; but no membership changes.
	op := hmv1.NewAdminClient(c.connAs(f, "operate"))
	if _, err := op.Drain(short(), &hmv1.DrainRequest{Node: f.id, Drained: true, Actor: "cli:root"}); err != nil {
		t.Fatalf("operate: drain via follower %s: %v", f.id, err)
	}
	c.waitFor("drain recorded", 5*time.Second, func() bool {
		for _, e := range l.agent.State().Events {
			if e.Kind == fsm.EventNodeDrained && e.Node == f.id {
				return true
			}
		}
		return false
	})
	for _, e := range l.agent.State().Events {
		if e.Kind == fsm.EventNodeDrained && e.Node == f.id && e.Actor != "operator:operate" {
			t.Errorf("drain event actor %q, want operator:operate (the verified identity)", e.Actor)
		}
	}
	if _, err := op.Drain(short(), &hmv1.DrainRequest{Node: f.id, Drained: false}); err != nil {
		t.Fatalf("operate: undrain: %v", err)
	}
	_, err = op.Join(short(), &hmv1.JoinRequest{Id: "n7", RaftAddress: "127.0.0.1:9107", Voter: true})
	wantCode(t, "operate: join", err, codes.PermissionDenied)
	_, err = op.Remove(short(), &hmv1.RemoveRequest{Id: l.id})
	wantCode(t, "operate: remove", err, codes.PermissionDenied)

	// 4. admin passes authorization (removing a node that does not exist
	// is then refused by the handler, on the leader).
	_, err = c.admin(f).Remove(short(), &hmv1.RemoveRequest{Id: "n9"})
	wantCode(t, "admin: remove n9", err, codes.NotFound)
	// A node may join only itself.
	_, err = hmv1.NewAdminClient(c.connAs(l, f.id)).Join(short(), &hmv1.JoinRequest{Id: "n7", RaftAddress: "127.0.0.1:9107", Voter: true})
	wantCode(t, "node joining another", err, codes.PermissionDenied)

	// 5. Cluster methods: members only, each for itself.
	propose := func(who string, cmd fsm.Command) error {
		b, err := fsm.Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		_, err = hmv1.NewClusterClient(c.connAs(l, who)).Propose(short(), &hmv1.ProposeRequest{Command: b})
		return err
	}
	var held *fsm.Assignment
	for _, as := range l.agent.State().Assignments {
		if as.Holder != "" && as.Holder != f.id {
			held = as
		}
	}
	if held == nil {
		t.Fatal("no role held by a node other than the follower")
	}
	now := time.Now().UnixMilli()
	wantCode(t, "a forged release of another node's role", propose(f.id, &fsm.Release{Role: held.Role, Node: held.Holder, Epoch: held.Epoch, Reason: "forged", Time: now}), codes.PermissionDenied)
	wantCode(t, "a leave for another node", propose(f.id, &fsm.Leave{Node: held.Holder, Reason: "forged", Time: now}), codes.PermissionDenied)
	wantCode(t, "a check update for another node", propose(f.id, &fsm.CheckUpdate{Node: held.Holder, Check: "x", Passing: false, Time: now}), codes.PermissionDenied)
	wantCode(t, "an event by another node", propose(f.id, &fsm.RecordEvent{Event: fsm.Event{Kind: fsm.EventNodeStarted, Node: held.Holder, Actor: held.Holder, Time: now}}), codes.PermissionDenied)
	wantCode(t, "an operator on the member-only Propose", propose("admin", &fsm.Leave{Node: f.id, Reason: "x", Time: now}), codes.PermissionDenied)
	wantCode(t, "a node proposing an assignment", propose(f.id, &fsm.Assign{Role: held.Role, Node: f.id, Epoch: held.Epoch + 1, Time: now}), codes.PermissionDenied)
	if err := propose(f.id, &fsm.RecordEvent{Event: fsm.Event{Kind: fsm.EventNodeStarted, Node: f.id, Actor: f.id, Time: now}}); err != nil {
		t.Errorf("a node's own event: %v", err)
	}
	_, err = hmv1.NewClusterClient(c.connAs(l, f.id)).Leases(short(), &hmv1.LeasesRequest{})
	wantCode(t, "leases from a follower", err, codes.PermissionDenied)
	if a := l.agent.State().Assignment(held.Role); a.Holder != held.Holder || a.Epoch != held.Epoch {
		t.Errorf("%s moved to %s epoch %d after refused commands", held.Role, a.Holder, a.Epoch)
	}
}

// TestReloadTLS: a renewed node certificate is served to new connections
// after ReloadTLS (SIGHUP), without a restart; a certificate of another
// node is refused and the loaded one kept.
func TestReloadTLS(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{})
	n := c.nodes[0]
	serial := func() string {
		st, err := tlsid.Load(tlsid.FilesIn(c.tlsDir, "read"), nil)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.Dial("tcp", n.agent.APIAddr(), st.ClientConfig(tlsid.AnyNode))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	ca, err := tlsid.LoadCA(tlsid.FilesIn(c.tlsDir, "ca").CA, tlsid.FilesIn(c.tlsDir, "ca").Key)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(id string) {
		cp, kp, err := ca.Issue(tlsid.Identity{Kind: tlsid.Node, Name: id}, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := tlsid.WritePair(c.tlsDir, n.id, cp, kp, true); err != nil {
			t.Fatal(err)
		}
	}
	issue(n.id)
	if err := n.agent.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	renewed := serial()
	if renewed == before {
		t.Fatal("the renewed certificate is not served after ReloadTLS")
	}
	issue("n2") // the wrong node's certificate in n1's files
	if err := n.agent.ReloadTLS(); err == nil {
		t.Error("ReloadTLS accepted another node's certificate")
	}
	if got := serial(); got != renewed {
		t.Errorf("after a refused reload the agent serves %s, want the loaded %s", got, renewed)
	}
}

// TestSentinelTLS: with sentinel.tls the listener speaks TLS with the
// node's certificate, which a Redis client verifies with the cluster CA;
// plain RESP gets no answer.
func TestSentinelTLS(t *testing.T) {
	addr := freeAddr(t)
	c := newCluster(t, 1, clusterOpts{redis: []string{freeAddr(t)}, sentinel: []string{addr}, sentinelTLS: true})
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(tlsid.FilesIn(c.tlsDir, "ca").CA)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: tlsid.NodeDNS("test", "n1")})
	if err != nil {
		t.Fatalf("TLS to the Sentinel listener, verified with the cluster CA: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING over TLS: %q, %v", line, err)
	}
	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_ = plain.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = plain.Write([]byte("PING\r\n"))
	if line, _ := bufio.NewReader(plain).ReadString('\n'); line == "+PONG\r\n" {
		t.Error("plain RESP answered on a TLS listener")
	}
}

// TestAPIStreamLimit: one connection gets at most 64 concurrent calls
// (5,000 streams on one connection used to be accepted); the 65th waits
// until one ends.
func TestAPIStreamLimit(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{})
	conn := c.connAs(c.nodes[0], "read")
	cl := hmv1.NewAdminClient(conn)
	ctx, cancel := context.WithCancel(ctxT(t, 30*time.Second))
	defer cancel()
	for i := 0; i < 64; i++ {
		s, err := cl.WatchEvents(ctx, &hmv1.WatchEventsRequest{Follow: true})
		if err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
		if _, err := s.Header(); err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
	}
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	if s, err := cl.WatchEvents(short, &hmv1.WatchEventsRequest{Follow: true}); err == nil {
		if _, err := s.Header(); err == nil {
			t.Fatal("a 65th concurrent stream on one connection was served")
		}
	}
}
