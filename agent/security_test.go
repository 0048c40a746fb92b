package agent

import (
	"net"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/internal/tlsid"
)

// TestLimitListener: connections beyond the per-address bound are closed
// at once, and a closed connection frees its slot.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &limitListener{Listener: raw, max: 10, perIP: 2, byIP: map[string]int{}}
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// closedByServer reports whether the server closed c (read sees EOF).
	closedByServer := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		ne, ok := err.(net.Error)
		return !(ok && ne.Timeout())
	}
	a, b := dial(), dial()
	s1, s2 := <-accepted, <-accepted
	third := dial()
	if !closedByServer(third) {
		t.Error("a third connection from the same address was kept (bound 2)")
	}
	if closedByServer(a) || closedByServer(b) {
		t.Error("the first two connections were closed")
	}
	_ = s1.Close()
	_ = s1.Close() // twice frees one slot only
	fourth := dial()
	s4 := <-accepted
	if closedByServer(fourth) {
		t.Error("a slot freed by a close was not reused")
	}
	l.mu.Lock()
	if l.total != 2 || l.byIP["127.0.0.1"] != 2 {
		t.Errorf("counts total %d by ip %v, want 2", l.total, l.byIP)
	}
	l.mu.Unlock()
	for _, c := range []net.Conn{a, b, third, fourth, s2, s4} {
		_ = c.Close()
	}
}

// TestMetricsTLS: with tls, metrics off loopback are served with mutual
// TLS; on loopback, or on an insecure agent, in plain text.
func TestMetricsTLS(t *testing.T) {
	dir := t.TempDir()
	if err := tlsid.WriteCluster(dir, "test", map[string][]net.IP{"n1": nil}); err != nil {
		t.Fatal(err)
	}
	st, err := tlsid.Load(tlsid.FilesIn(dir, "n1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr   string
		secure bool
		want   bool
	}{
		{"0.0.0.0:7301", true, true},
		{"198.18.0.11:7301", true, true},
		{"[::]:7301", true, true},
		{"127.0.0.1:7301", true, false},
		{"[::1]:7301", true, false},
		{"localhost:7301", true, false},
		{"0.0.0.0:7301", false, false},
	} {
		a := &Agent{cfg: &config.Config{MetricsAddr: tc.addr}}
		if tc.secure {
			a.tls = st
		}
		if got := a.metricsTLS(); got != tc.want {
			t.Errorf("metrics_addr %s, tls %v: metricsTLS %v, want %v", tc.addr, tc.secure, got, tc.want)
		}
	}
}
