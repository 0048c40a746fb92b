package redisctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/chaos/labtest"
	"github.com/harbormaster/harbormaster/internal/resp"
)

// server is a redis-server process on a free 127.0.0.1 port, in its own
// temporary directory, without persistence, killed when the test ends.
type server struct {
	t    *testing.T
	addr string
	port int
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// startRedis starts a redis-server with the given extra arguments. The
// diskless sync delay is 0 (the default 5 s would make every first sync of
// a replica wait 5 s).
func startRedis(t *testing.T, extra ...string) *server {
	t.Helper()
	labtest.RequireBin(t, "redis-server")
	port := freePort(t)
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--repl-diskless-sync-delay", "0"}, extra...)
	return runRedis(t, port, args)
}

func runRedis(t *testing.T, port int, args []string) *server {
	t.Helper()
	s := &server{t: t, addr: "127.0.0.1:" + strconv.Itoa(port), port: port, log: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command("redis-server", args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("redis-server on %s:\n%s", s.addr, s.log.String())
		}
	})
	waitFor(t, 10*time.Second, "redis-server to listen on "+s.addr, func() bool {
		select {
		case <-s.done:
			t.Fatalf("redis-server on %s exited:\n%s", s.addr, s.log.String())
		default:
		}
		c, err := net.Dial("tcp", s.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return s
}

// kill stops the server with SIGKILL and waits for it to exit.
func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

func (s *server) cfg() Config { return Config{Address: s.addr} }

// client returns a Client for s, closed when the test ends.
func (s *server) client() *Client {
	s.t.Helper()
	return newClient(s.t, s.cfg())
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func freePort(t *testing.T) int { return labtest.FreePort(t) }

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// must runs one command and fails the test on an error.
func must(t *testing.T, c *Client, args ...string) any {
	t.Helper()
	v, err := c.do(ctxT(t, 5*time.Second), args...)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return v
}

// replyCode runs one command and returns the code of its error reply, ""
// when it succeeded; a failure to exchange fails the test.
func replyCode(t *testing.T, c *Client, args ...string) string {
	t.Helper()
	_, err := c.do(ctxT(t, 5*time.Second), args...)
	if err == nil {
		return ""
	}
	var re *resp.Error
	if !errors.As(err, &re) {
		t.Fatalf("%s: %v, want a reply", strings.Join(args, " "), err)
	}
	return re.Prefix()
}

func repl(t *testing.T, c *Client) Replication {
	t.Helper()
	r, err := c.Replication(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Replication: %v", err)
	}
	return r
}

// waitLinked waits until replica's link to its master is up.
func waitLinked(t *testing.T, replica *Client) {
	t.Helper()
	waitFor(t, 10*time.Second, replica.Addr()+" to link to its master", func() bool {
		r, err := replica.Replication(context.Background())
		return err == nil && r.Role == "replica" && r.LinkUp
	})
}

// waitValue waits until GET key on c returns want.
func waitValue(t *testing.T, c *Client, key, want string) {
	t.Helper()
	var got any
	waitFor(t, 10*time.Second, "GET "+key+" = "+want+" on "+c.Addr(), func() bool {
		got, _ = c.do(context.Background(), "GET", key)
		return got == want
	})
}

// pending is a command sent on its own connection whose reply is awaited
// later.
type pending struct {
	done chan struct{}
	v    any
	err  error
	at   time.Time
}

// send issues args on a fresh connection to c in the background.
func send(t *testing.T, c *Client, args ...string) *pending {
	t.Helper()
	cn, err := c.dial(context.Background())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	p := &pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer cn.nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		replies, err := cn.roundTrip(ctx, DefaultTimeout, args)
		p.at = time.Now()
		if err != nil {
			p.err = err
			return
		}
		p.v = replies[0]
	}()
	t.Cleanup(func() { <-p.done })
	return p
}

// answered reports whether the reply came within d.
func (p *pending) answered(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (p *pending) wait(t *testing.T) any {
	t.Helper()
	if !p.answered(10 * time.Second) {
		t.Fatal("no reply within 10 s")
	}
	if p.err != nil {
		t.Fatalf("exchange failed: %v", p.err)
	}
	return p.v
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// blockedClients is INFO clients blocked_clients on c: among them the
// clients whose command CLIENT PAUSE postponed (Redis blocks them until the
// pause ends, then runs their command from scratch).
func blockedClients(t *testing.T, c *Client) int {
	t.Helper()
	n, err := strconv.Atoi(infoField(t, c, "clients", "blocked_clients"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitBlocked waits until n clients of c are blocked: proof that the
// commands a test sent have reached the server and are held, not answered
// late.
func waitBlocked(t *testing.T, c *Client, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d blocked clients on %s", n, c.Addr()), func() bool { return blockedClients(t, c) >= n })
}

// replicated starts a master (promoted for the role "redis" at epoch 1)
// and two replicas linked to it, each with its client.
func replicated(t *testing.T, ctx context.Context) (m, a, b *server, mc, ac, bc *Client) {
	t.Helper()
	m, a, b = startRedis(t), startRedis(t), startRedis(t)
	mc, ac, bc = m.client(), a.client(), b.client()
	if err := mc.Promote(ctx, "redis", 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{ac, bc} {
		if err := c.Follow(ctx, m.addr); err != nil {
			t.Fatal(err)
		}
		waitLinked(t, c)
	}
	return m, a, b, mc, ac, bc
}
