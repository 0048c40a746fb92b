package agent

import (
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
	s := newTLSStream(lis, nil, n1.ServerConfig(tlsid.AnyNode), n1.ClientConfig(tlsid.AnyNode))
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

	peer := &tlsStream{server: n2.ServerConfig(tlsid.AnyNode), client: n2.ClientConfig(tlsid.AnyNode)}
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
		p := &tlsStream{client: st.ClientConfig(tlsid.AnyIdentity)}
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
