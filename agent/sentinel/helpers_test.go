package sentinel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/resp"
)

const testRunID = "0123456789abcdef0123456789abcdef01234567"

// fakeSource is a Source whose answers the test sets.
type fakeSource struct {
	mu        sync.Mutex
	masters   []Master
	sentinels map[string][]Addr
	aside     Aside
}

func (f *fakeSource) Masters() []Master {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.masters)
}

func (f *fakeSource) Sentinels(name string) []Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sentinels[name])
}

func (f *fakeSource) StepAside() Aside {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.aside
}

func (f *fakeSource) setAside(v Aside) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aside = v
}

// update changes the named master with fn.
func (f *fakeSource) update(name string, fn func(*Master)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.masters {
		if f.masters[i].Name == name {
			fn(&f.masters[i])
			return
		}
	}
	panic("no master " + name)
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testLogger logs to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startServer serves src on a free 127.0.0.1 port until the test ends,
// with the clock clk (nil for the real one), and returns the server and its
// address. cfg.RunID defaults to testRunID.
func startServer(t *testing.T, cfg Config, src Source, clk *fakeClock) (*Server, string) {
	t.Helper()
	return startServerLog(t, cfg, src, clk, testLogger(t))
}

// startServerLog is startServer with the logger log.
func startServerLog(t *testing.T, cfg Config, src Source, clk *fakeClock, log *slog.Logger) (*Server, string) {
	t.Helper()
	if cfg.RunID == "" {
		cfg.RunID = testRunID
	}
	now := time.Now
	if clk != nil {
		now = clk.now
	}
	s, err := newServer(cfg, src, log, now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, ln.Addr().String()
}

// writeFile writes content to a new file in a test directory and returns
// its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeFileMode is writeFile with the file's mode set to mode.
func writeFileMode(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := writeFile(t, name, content)
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// client is a raw RESP client that returns replies as the exact bytes
// received.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// send writes one multibulk request.
func (c *client) send(args ...string) {
	c.t.Helper()
	c.sendRaw(encodeCommand(args...))
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// reply reads one complete reply (5 s at most) and returns its bytes.
func (c *client) reply() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	if err := readValue(c.br, &b); err != nil {
		c.t.Fatalf("read reply: %v (read so far %q)", err, b.String())
	}
	return b.String()
}

// do sends a request and returns its reply.
func (c *client) do(args ...string) string {
	c.t.Helper()
	c.send(args...)
	return c.reply()
}

// expectClosed asserts that the server closes the connection, with nothing
// more to read.
func (c *client) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.br)
	if err != nil || len(rest) > 0 {
		c.t.Fatalf("after the last reply: read %q, %v; want the connection closed", rest, err)
	}
}

// expectNothing asserts that nothing was queued for the client: it sends
// PING and the first value back must be its answer. Messages and replies
// share one ordered output queue, and publishing queues at once, so a
// message queued before the PING would arrive first: no sleep, and no
// message that is merely late can slip past.
func (c *client) expectNothing() {
	c.t.Helper()
	got := c.do("PING")
	if strings.Contains(got, "message\r\n") {
		c.t.Fatalf("want nothing before the PING answer, got %q", got)
	}
	if !strings.Contains(strings.ToLower(got), "pong") {
		c.t.Fatalf("PING: got %q, want its answer", got)
	}
}

// readValue copies one RESP2 or RESP3 value from br to b.
func readValue(br *bufio.Reader, b *strings.Builder) error {
	line, err := br.ReadString('\n')
	b.WriteString(line)
	if err != nil {
		return err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return fmt.Errorf("malformed line %q", line)
	}
	n, err := strconv.Atoi(line[1 : len(line)-2])
	switch line[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return nil
	case '$', '=', '!':
		if err != nil {
			return err
		}
		if n < 0 {
			return nil
		}
		buf := make([]byte, n+2)
		_, err := io.ReadFull(br, buf)
		b.Write(buf)
		return err
	case '*', '>', '~', '%', '|':
		if err != nil {
			return err
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for range max(n, 0) {
			if err := readValue(br, b); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown type in %q", line)
}

// encodeCommand is a request as clients send it.
func encodeCommand(args ...string) string { return string(resp.AppendCommand(nil, args...)) }

// bulks is a RESP2 array of bulk strings; it encodes independently of the
// server's writer.
func bulks(ss ...string) string {
	s := fmt.Sprintf("*%d\r\n", len(ss))
	for _, x := range ss {
		s += fmt.Sprintf("$%d\r\n%s\r\n", len(x), x)
	}
	return s
}

// resp3Map is a RESP3 map of bulk strings.
func resp3Map(kv ...string) string {
	s := fmt.Sprintf("%%%d\r\n", len(kv)/2)
	for _, x := range kv {
		s += fmt.Sprintf("$%d\r\n%s\r\n", len(x), x)
	}
	return s
}

// writeFileAt replaces the content of the file at path.
func writeFileAt(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func newListener() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// doN sends a request and returns its n replies (SUBSCRIBE a b has two).
func (c *client) doN(n int, args ...string) string {
	c.t.Helper()
	c.send(args...)
	var s string
	for range n {
		s += c.reply()
	}
	return s
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
