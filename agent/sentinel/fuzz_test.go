package sentinel

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// memConn is a net.Conn that reads a fixed input and discards what is
// written.
type memConn struct {
	r   *bytes.Reader
	out int
}

func (m *memConn) Read(b []byte) (int, error)       { return m.r.Read(b) }
func (m *memConn) Write(b []byte) (int, error)      { m.out += len(b); return len(b), nil }
func (m *memConn) Close() error                     { return nil }
func (m *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 26379} }
func (m *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzSentinelCommand runs a connection on arbitrary input, as the network
// would deliver it: reading requests (multibulk or inline), dispatching
// them and writing the replies must never panic, and the connection must
// end when the input does, its output bounded.
func FuzzSentinelCommand(f *testing.F) {
	for _, seed := range []string{
		encodeCommand("PING"),
		encodeCommand("SENTINEL", "get-master-addr-by-name", "mymaster"),
		encodeCommand("SENTINEL", "master", "mymaster") + encodeCommand("SENTINEL", "replicas", "other"),
		encodeCommand("HELLO", "3", "SETNAME", "x") + encodeCommand("SENTINEL", "masters"),
		encodeCommand("PSUBSCRIBE", "+switch-*", "[a-") + encodeCommand("PING", "x") + encodeCommand("PUNSUBSCRIBE"),
		encodeCommand("SUBSCRIBE", "a", "b") + encodeCommand("UNSUBSCRIBE", "a") + encodeCommand("RESET"),
		encodeCommand("CLIENT", "SETNAME", "n") + encodeCommand("CLIENT", "GETNAME") + encodeCommand("INFO"),
		encodeCommand("AUTH", "default", "x") + encodeCommand("ROLE") + encodeCommand("QUIT"),
		"PING hello\r\nSENTINEL myid\r\n",
		"*2\r\n$4\r\nPING\r\n$-1\r\n",
		"*1\r\n$99999999999\r\n",
		"*-1\r\n*0\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := newServer(Config{RunID: testRunID, Announce: fixtureAnnounce}, fixture(), nil, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		nc := &memConn{r: bytes.NewReader(in)}
		c := newConn(s, nc, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.serve()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the connection still runs 10 s after its %d bytes of input ended", len(in))
		}
		// Every reply is bounded; a request has at most maxArgs arguments.
		if limit := (len(in) + 1) * 64 << 10; nc.out > limit {
			t.Fatalf("%d bytes of input made %d bytes of output", len(in), nc.out)
		}
		s.Close()
	})
}
