package sentinel

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMaxConnections(t *testing.T) {
	s, addr := startServer(t, Config{MaxConnections: 3}, fixture(), nil)
	var clients []*client
	for range 3 {
		c := dial(t, addr)
		if got := c.do("PING"); got != "+PONG\r\n" {
			t.Fatalf("PING: got %q", got)
		}
		clients = append(clients, c)
	}
	extra := dial(t, addr)
	if got, want := extra.reply(), "-ERR max number of clients reached\r\n"; got != want {
		t.Fatalf("connection over the limit: got %q, want %q", got, want)
	}
	extra.expectClosed()
	for i, c := range clients {
		if got := c.do("PING"); got != "+PONG\r\n" {
			t.Fatalf("client %d after the refusal: PING got %q", i, got)
		}
	}
	// A closed connection frees its place.
	clients[0].nc.Close()
	waitFor(t, 5*time.Second, "the server to forget the closed client", func() bool { return s.numClients() == 2 })
	if got := dial(t, addr).do("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING after a place freed: got %q", got)
	}
}

func TestConfigLimits(t *testing.T) {
	for _, cfg := range []Config{{MaxConnections: -1}, {IdleTimeout: -time.Second}} {
		cfg.RunID = testRunID
		if _, err := New(cfg, fixture(), nil); err == nil {
			t.Errorf("New(%+v) accepted a negative limit", cfg)
		}
	}
	s, err := New(Config{RunID: testRunID}, fixture(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.MaxConnections != DefaultMaxConnections || s.cfg.IdleTimeout != DefaultIdleTimeout {
		t.Errorf("defaults: max connections %d, idle timeout %s; want %d, %s", s.cfg.MaxConnections, s.cfg.IdleTimeout, DefaultMaxConnections, DefaultIdleTimeout)
	}
}

// TestIdleTimeout: a connection that sends nothing, or only part of a
// request, is closed after the idle timeout; a subscribed one is not.
func TestIdleTimeout(t *testing.T) {
	_, addr := startServer(t, Config{IdleTimeout: 300 * time.Millisecond}, fixture(), nil)
	sub := dial(t, addr)
	sub.do("SUBSCRIBE", "+switch-master")

	idle := dial(t, addr)
	if got := idle.do("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING: got %q", got)
	}
	partial := dial(t, addr)
	partial.sendRaw("*2\r\n$4\r\nPING\r\n$5\r\nhe")
	idle.expectClosed()
	partial.expectClosed()

	// The subscriber has been silent since before idle's PING, longer than
	// the timeout: it is still served.
	if got, want := sub.do("PING"), "*2\r\n$4\r\npong\r\n$0\r\n\r\n"; got != want {
		t.Fatalf("subscriber after the idle timeout: PING got %q, want %q", got, want)
	}
	// Unsubscribed, it is an ordinary connection again.
	sub.do("UNSUBSCRIBE")
	sub.expectClosed()
}

func TestSubscriptionLimits(t *testing.T) {
	_, addr := startServer(t, Config{}, fixture(), nil)
	for _, tc := range []struct{ cmd, unsub, what string }{
		{"SUBSCRIBE", "UNSUBSCRIBE", "channels"},
		{"PSUBSCRIBE", "PUNSUBSCRIBE", "patterns"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			c := dial(t, addr)
			limit := maxChannels
			if tc.cmd == "PSUBSCRIBE" {
				limit = maxPatterns
			}
			args := []string{tc.cmd}
			for i := range limit {
				args = append(args, fmt.Sprintf("+chan-%d*", i))
			}
			c.doN(limit, args...)
			// Subscribing again to one it has is no growth.
			if got := c.do(tc.cmd, "+chan-0*"); !strings.HasSuffix(got, fmt.Sprintf(":%d\r\n", limit)) {
				t.Fatalf("%s of a name held: got %q", tc.cmd, got)
			}
			want := fmt.Sprintf("-ERR too many %s on one connection: at most %d; unsubscribe some first\r\n", tc.what, limit)
			if got := c.do(tc.cmd, "+chan-0*", "one-more"); got != want {
				t.Fatalf("%s over the limit: got %q, want %q", tc.cmd, got, want)
			}
			// Refused whole: one-more was not added, and the connection
			// serves on.
			if got, want := c.do(tc.unsub, "one-more"), fmt.Sprintf(":%d\r\n", limit); !strings.HasSuffix(got, want) {
				t.Fatalf("%s one-more: got %q, want the count %s", tc.unsub, got, want)
			}
			c.do(tc.unsub, "+chan-1*")
			if got := c.do(tc.cmd, "one-more"); !strings.HasSuffix(got, fmt.Sprintf(":%d\r\n", limit)) {
				t.Fatalf("%s after an unsubscribe: got %q", tc.cmd, got)
			}

			long := strings.Repeat("x", maxSubscriptionName+1)
			want = fmt.Sprintf("-ERR a name of %d bytes is too long; subscribe to names of at most %d bytes\r\n", len(long), maxSubscriptionName)
			if got := c.do(tc.cmd, long); got != want {
				t.Fatalf("%s of a long name: got %q, want %q", tc.cmd, got, want)
			}
			if got, want := c.do("PING"), "*2\r\n$4\r\npong\r\n$0\r\n\r\n"; got != want {
				t.Fatalf("PING after the refusals: got %q, want %q", got, want)
			}
		})
	}
}

// TestPublishMatchesWithoutLocks blocks the pattern matcher inside a
// publish and, meanwhile, has other clients read the tracked masters
// (trackMu) and the subscriber change its subscriptions (its conn's mu):
// both are answered, so no lock they need is held across the match.
func TestPublishMatchesWithoutLocks(t *testing.T) {
	src := fixture()
	s, addr := startServer(t, Config{}, src, nil)
	sub := dial(t, addr)
	sub.do("PSUBSCRIBE", "+switch-*")

	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var first sync.Once
	s.match = func(p, ch string) bool {
		first.Do(func() {
			close(entered)
			<-release
		})
		return globMatch(p, ch)
	}
	src.update("mymaster", func(m *Master) { m.Addr = Addr{"127.0.0.1", 16380} })
	published := make(chan struct{})
	go func() {
		defer close(published)
		s.Changed()
	}()
	<-entered

	if got := dial(t, addr).do("SENTINEL", "master", "mymaster"); !strings.Contains(got, "127.0.0.1") {
		t.Fatalf("SENTINEL master during a match: got %q", got)
	}
	if got, want := sub.do("PSUBSCRIBE", "other*"), "*3\r\n$10\r\npsubscribe\r\n$6\r\nother*\r\n:2\r\n"; got != want {
		t.Fatalf("PSUBSCRIBE during a match: got %q, want %q", got, want)
	}
	once.Do(func() { close(release) })
	<-published
	payload := "mymaster 127.0.0.1 16379 127.0.0.1 16380"
	want := fmt.Sprintf("*4\r\n$8\r\npmessage\r\n$9\r\n+switch-*\r\n$14\r\n+switch-master\r\n$%d\r\n%s\r\n", len(payload), payload)
	if got := sub.reply(); got != want {
		t.Fatalf("the message after the match: got %q, want %q", got, want)
	}
}
