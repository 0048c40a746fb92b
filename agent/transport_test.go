package agent

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/harbormaster/harbormaster/internal/tlsid"
)

// TestTLSStream: members connect; a peer that never handshakes does not
// hold up the others; an operator certificate, another cluster's node
// certificate and plain-text Raft frames are refused.
func TestTLSStream(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	lo := []net.IP{net.IPv4(127, 0, 0, 1)}
	if err := tlsid.WriteCluster(dir, "test", map[string][]net.IP{"n1": lo, "n2": lo}, tlsid.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := tlsid.WriteCluster(other, "test", map[string][]net.IP{"n2": lo}); err != nil {
		t.Fatal(err)
	}
	load := func(d, name string) *tlsid.Store {
		st, err := tlsid.Load(tlsid.FilesIn(d, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	n1, n2, admin, impostor := load(dir, "n1"), load(dir, "n2"), load(dir, "admin"), load(other, "n2")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newTLSStream(lis, nil, n1.ServerConfig(tlsid.AnyNode), n1.ClientConfig(tlsid.AnyNode), nil, nil)
	defer s.Close()
	addr := lis.Addr().String()

	// A silent peer and a plain-text Raft frame (rpcAppendEntries, then
	// msgpack) first: neither may block or reach Accept.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = plain.Write([]byte{0, 0x85, 0xa4, 'T', 'e', 'r', 'm', 0x01})
	defer plain.Close()

	peer := &tlsStream{server: n2.ServerConfig(tlsid.AnyNode), client: n2.ClientConfig(tlsid.AnyNode), local: func() hello { return hello{} }, log: func(string, ...any) {}}
	accepted := make(chan error, 1)
	go func() {
		c, err := s.Accept()
		if err == nil {
			_ = c.Close()
		}
		accepted <- err
	}()
	c, err := peer.Dial(raftAddr(addr), 2*time.Second)
	if err != nil {
		t.Fatalf("member n2 could not dial while a silent peer waits: %v", err)
	}
	_ = c.Close()
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the member's connection was not accepted while a silent peer waits")
	}

	for name, st := range map[string]*tlsid.Store{"an operator": admin, "another cluster's n2": impostor} {
		p := &tlsStream{client: st.ClientConfig(tlsid.AnyIdentity), local: func() hello { return hello{} }, log: func(string, ...any) {}}
		go func() {
			c, err := s.Accept()
			if err == nil {
				_ = c.Close()
			}
			accepted <- err
		}()
		if c, err := p.Dial(raftAddr(addr), 2*time.Second); err == nil {
			// TLS 1.3: the client may finish first; the server's refusal
			// shows on the first read.
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("%s: the connection was accepted", name)
			}
			_ = c.Close()
		}
		select {
		case err := <-accepted:
			t.Errorf("%s reached Accept (err %v)", name, err)
		case <-time.After(300 * time.Millisecond):
		}
		// Drain the pending Accept with a member's connection.
		c, err := peer.Dial(raftAddr(addr), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		<-accepted
	}
}

func raftAddr(addr string) raft.ServerAddress { return raft.ServerAddress(addr) }

// TestHelloRefusesAnotherHistory: nodes of two cluster ids refuse each
// other's Raft connections, both ways; a node without an id yet (a wiped
// node being caught up) is let in; a probe says whether the node holds
// state and never reaches Raft.
func TestHelloRefusesAnotherHistory(t *testing.T) {
	const a, b = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newTLSStream(lis, nil, nil, nil, func() hello { return hello{hasState: true, clusterID: a} }, nil)
	defer s.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dialer := func(id string) *tlsStream {
		return &tlsStream{local: func() hello { return hello{clusterID: id} }, log: func(string, ...any) {}}
	}
	addr := lis.Addr().String()
	if _, err := dialer(b).Dial(raft.ServerAddress(addr), time.Second); !errors.Is(err, ErrOtherHistory) {
		t.Errorf("a node of another cluster dialled in: %v, want ErrOtherHistory", err)
	}
	select {
	case <-accepted:
		t.Error("a connection from another history reached Raft")
	case <-time.After(200 * time.Millisecond):
	}
	for _, id := range []string{a, ""} {
		c, err := dialer(id).Dial(raft.ServerAddress(addr), time.Second)
		if err != nil {
			t.Fatalf("cluster id %q: %v", id, err)
		}
		_ = c.Close()
		select {
		case c := <-accepted:
			_ = c.Close()
		case <-time.After(2 * time.Second):
			t.Fatalf("cluster id %q: not accepted", id)
		}
	}
	h, err := dialer("").probe(addr, time.Second)
	if err != nil || !h.hasState || h.clusterID != a {
		t.Errorf("probe: %+v, %v; want state and cluster %s", h, err, a)
	}
	select {
	case <-accepted:
		t.Error("a probe reached Raft")
	case <-time.After(200 * time.Millisecond):
	}
}
