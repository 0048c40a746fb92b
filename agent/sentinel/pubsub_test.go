package sentinel

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// message is a RESP2 pub/sub message.
func message(channel, payload string) string {
	return fmt.Sprintf("*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(channel), channel, len(payload), payload)
}

func TestSwitchMaster(t *testing.T) {
	src := fixture()
	s, addr := startServer(t, Config{}, src, nil)

	sub := dial(t, addr)
	if got, want := sub.do("SUBSCRIBE", "+switch-master"), "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"; got != want {
		t.Fatalf("SUBSCRIBE: got %q, want %q", got, want)
	}
	psub := dial(t, addr)
	if got, want := psub.doN(2, "PSUBSCRIBE", "+switch-*", "*"), "*3\r\n$10\r\npsubscribe\r\n$9\r\n+switch-*\r\n:1\r\n*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:2\r\n"; got != want {
		t.Fatalf("PSUBSCRIBE: got %q, want %q", got, want)
	}
	other := dial(t, addr)
	if got, want := other.do("SUBSCRIBE", "+sdown"), "*3\r\n$9\r\nsubscribe\r\n$6\r\n+sdown\r\n:1\r\n"; got != want {
		t.Fatalf("SUBSCRIBE +sdown: got %q, want %q", got, want)
	}

	// Nothing changed: nothing is published.
	s.Changed()
	sub.expectNothing()

	// Changes that are not an address change publish nothing either.
	src.update("mymaster", func(m *Master) { m.Epoch++; m.Replicas = nil })
	src.update("other", func(m *Master) { m.Down = false })
	s.Changed()
	sub.expectNothing()

	src.update("mymaster", func(m *Master) { m.Addr = Addr{"127.0.0.1", 16380}; m.Epoch++ })
	s.Changed()
	payload := "mymaster 127.0.0.1 16379 127.0.0.1 16380"
	if got, want := sub.reply(), message("+switch-master", payload); got != want {
		t.Errorf("subscriber: got %q, want %q", got, want)
	}
	for _, pattern := range []string{"+switch-*", "*"} {
		want := fmt.Sprintf("*4\r\n$8\r\npmessage\r\n$%d\r\n%s\r\n$14\r\n+switch-master\r\n$%d\r\n%s\r\n", len(pattern), pattern, len(payload), payload)
		if got := psub.reply(); got != want {
			t.Errorf("pattern subscriber: got %q, want %q", got, want)
		}
	}
	other.expectNothing()

	// Published once: a second Changed has nothing to say.
	s.Changed()
	sub.expectNothing()

	// The master is lost (no message), then elected elsewhere: the switch
	// is from the last master clients knew.
	src.update("mymaster", func(m *Master) { m.Addr, m.Down = Addr{}, true })
	s.Changed()
	sub.expectNothing()
	src.update("mymaster", func(m *Master) { m.Addr, m.Down = Addr{"::1", 6379}, false })
	s.Changed()
	if got, want := sub.reply(), message("+switch-master", "mymaster 127.0.0.1 16380 ::1 6379"); got != want {
		t.Errorf("after a lost master: got %q, want %q", got, want)
	}

	// A master seen for the first time has no old address to switch from.
	src.mu.Lock()
	src.masters = append(src.masters, Master{Name: "new", Addr: Addr{"127.0.0.1", 7000}})
	src.mu.Unlock()
	s.Changed()
	sub.expectNothing()
	src.update("new", func(m *Master) { m.Addr = Addr{"127.0.0.1", 7001} })
	src.update("other", func(m *Master) { m.Addr = Addr{"127.0.0.1", 7002} })
	s.Changed()
	if got, want := sub.reply(), message("+switch-master", "new 127.0.0.1 7000 127.0.0.1 7001"); got != want {
		t.Errorf("second master: got %q, want %q", got, want)
	}
	sub.expectNothing() // "other" had no address before

	// After UNSUBSCRIBE, nothing more arrives.
	if got, want := sub.do("UNSUBSCRIBE"), "*3\r\n$11\r\nunsubscribe\r\n$14\r\n+switch-master\r\n:0\r\n"; got != want {
		t.Errorf("UNSUBSCRIBE: got %q, want %q", got, want)
	}
	src.update("new", func(m *Master) { m.Addr = Addr{"127.0.0.1", 7003} })
	s.Changed()
	sub.expectNothing()
}

// TestSubscribedMode checks RESP2's subscribed mode, the (P)UNSUBSCRIBE
// replies, and RESP3's push messages, in which other commands are allowed.
func TestSubscribedMode(t *testing.T) {
	src := fixture()
	s, addr := startServer(t, Config{}, src, nil)

	c := dial(t, addr)
	for _, tc := range []struct {
		n    int // replies
		args []string
		want string
	}{
		{1, []string{"UNSUBSCRIBE"}, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"},
		{3, []string{"SUBSCRIBE", "+switch-master", "foo", "foo"}, "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$3\r\nfoo\r\n:2\r\n*3\r\n$9\r\nsubscribe\r\n$3\r\nfoo\r\n:2\r\n"},
		{1, []string{"PING"}, "*2\r\n$4\r\npong\r\n$0\r\n\r\n"},
		{1, []string{"PING", "x"}, "*2\r\n$4\r\npong\r\n$1\r\nx\r\n"},
		{1, []string{"SENTINEL", "myid"}, "-ERR Can't execute 'sentinel|myid': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"},
		{1, []string{"INFO"}, "-ERR Can't execute 'info': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"},
		{1, []string{"NOPE"}, "-ERR unknown command 'NOPE', with args beginning with: \r\n"},
		{1, []string{"PSUBSCRIBE", "*"}, "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:3\r\n"},
		{2, []string{"UNSUBSCRIBE", "foo", "bar"}, "*3\r\n$11\r\nunsubscribe\r\n$3\r\nfoo\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$3\r\nbar\r\n:2\r\n"},
		{1, []string{"UNSUBSCRIBE"}, "*3\r\n$11\r\nunsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"},
		{1, []string{"PUNSUBSCRIBE"}, "*3\r\n$12\r\npunsubscribe\r\n$1\r\n*\r\n:0\r\n"},
		{1, []string{"PING"}, "+PONG\r\n"},
		{1, []string{"SUBSCRIBE", "a"}, "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"},
		{1, []string{"RESET"}, "+RESET\r\n"},
		{1, []string{"SENTINEL", "myid"}, "$40\r\n" + testRunID + "\r\n"},
	} {
		if got := c.doN(tc.n, tc.args...); got != tc.want {
			t.Errorf("%q:\n got %q\nwant %q", tc.args, got, tc.want)
		}
	}

	r3 := dial(t, addr)
	if got := r3.do("HELLO", "3"); got[0] != '%' {
		t.Fatalf("HELLO 3: got %q", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"SUBSCRIBE", "+switch-master"}, ">3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"},
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"SENTINEL", "myid"}, "$40\r\n" + testRunID + "\r\n"},
		{[]string{"PSUBSCRIBE", "+switch-master"}, ">3\r\n$10\r\npsubscribe\r\n$14\r\n+switch-master\r\n:2\r\n"},
	} {
		if got := r3.do(tc.args...); got != tc.want {
			t.Errorf("RESP3 %q:\n got %q\nwant %q", tc.args, got, tc.want)
		}
	}
	src.update("mymaster", func(m *Master) { m.Addr = Addr{"127.0.0.1", 16380} })
	s.Changed()
	payload := "mymaster 127.0.0.1 16379 127.0.0.1 16380"
	for _, want := range []string{
		">3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$40\r\n" + payload + "\r\n",
		">4\r\n$8\r\npmessage\r\n$14\r\n+switch-master\r\n$14\r\n+switch-master\r\n$40\r\n" + payload + "\r\n",
	} {
		if got := r3.reply(); got != want {
			t.Errorf("RESP3 message: got %q, want %q", got, want)
		}
	}
	if got, want := r3.do("UNSUBSCRIBE", "x"), ">3\r\n$11\r\nunsubscribe\r\n$1\r\nx\r\n:2\r\n"; got != want {
		t.Errorf("RESP3 UNSUBSCRIBE: got %q, want %q", got, want)
	}
}

// TestSlowSubscriber checks that Changed does not wait for a subscriber
// that does not read, and that such a subscriber is disconnected once its
// output piles up.
func TestSlowSubscriber(t *testing.T) {
	src := fixture()
	// The messages are too long to log: only warnings are kept.
	warns := &lockedBuffer{}
	s, addr := startServerLog(t, Config{}, src, nil, slog.New(slog.NewTextHandler(warns, &slog.HandlerOptions{Level: slog.LevelWarn})))
	slow := dial(t, addr)
	if got := slow.do("SUBSCRIBE", "+switch-master"); got[0] != '*' {
		t.Fatalf("SUBSCRIBE: got %q", got)
	}
	fast := dial(t, addr)
	if got := fast.do("SUBSCRIBE", "+switch-master"); got[0] != '*' {
		t.Fatalf("SUBSCRIBE: got %q", got)
	}

	// Each switch publishes a message of about 16 KiB (a long master name)
	// that slow never reads; fast reads every one.
	name := fmt.Sprintf("m%016384d", 0)
	src.mu.Lock()
	src.masters = append(src.masters, Master{Name: name, Addr: Addr{"127.0.0.1", 1}})
	src.mu.Unlock()
	s.Changed()
	start := time.Now()
	const switches = 1000 // 16 MiB: more than the kernel buffers and maxPendingOutput
	// A Changed that waited for slow would block once the kernel buffers
	// are full: the switches run aside, under a liveness wait, so that
	// shows as a failure rather than a hung test.
	done := make(chan error, 1)
	go func() {
		for i := range switches {
			src.update(name, func(m *Master) { m.Addr.Port = 2 + i })
			s.Changed()
			// fast.reply, without its t.Fatalf (not for this goroutine).
			fast.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			var b strings.Builder
			if err := readValue(fast.br, &b); err != nil || b.Len() < 16384 {
				done <- fmt.Errorf("switch %d: fast subscriber got %q (err %v)", i, b.String(), err)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%d switches not done after 60s: Changed or the fast subscriber waits for the slow one", switches)
	}
	t.Logf("%d switches took %v", switches, time.Since(start))
	// slow was disconnected: reading drains what was sent, then EOF.
	slow.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var n int
	buf := make([]byte, 64<<10)
	for {
		m, err := slow.br.Read(buf)
		n += m
		if err != nil {
			if n >= switches*16384 {
				t.Errorf("slow subscriber received all %d bytes; want it disconnected first", n)
			}
			break
		}
	}
	waitFor(t, 5*time.Second, "the server to forget the slow subscriber", func() bool { return s.numClients() == 1 })
	// Closed for its pile of unwritten output: the messages were queued
	// for it, not written while Changed waited (which would have closed it
	// only when a write timed out, with nothing piled up).
	if !strings.Contains(warns.String(), "closing a subscriber that does not read its messages") {
		t.Fatalf("the slow subscriber was not closed for its pending output; warnings: %q", warns.String())
	}
}

// lockedBuffer is a strings.Builder safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// staticSource returns the same slices every time, allocating nothing.
type staticSource struct{ masters []Master }

func (s staticSource) Masters() []Master       { return s.masters }
func (s staticSource) Sentinels(string) []Addr { return nil }

func (s staticSource) StepAside() Aside { return AsideNone }

// TestChangedCheap checks that Changed allocates nothing when nothing
// changed: it runs after every state change.
func TestChangedCheap(t *testing.T) {
	src := staticSource{masters: []Master{
		{Name: "mymaster", Addr: Addr{"10.0.0.1", 6379}, Epoch: 3},
		{Name: "other", Down: true},
	}}
	s, _ := startServer(t, Config{}, src, nil)
	if n := testing.AllocsPerRun(100, s.Changed); n != 0 {
		t.Errorf("Changed with nothing changed: %v allocations, want 0", n)
	}
}

// TestConcurrentSwitches switches the master many times while clients ask
// for it, and checks that every subscriber gets every switch, in order.
func TestConcurrentSwitches(t *testing.T) {
	src := fixture()
	s, addr := startServer(t, Config{}, src, nil)
	const switches = 200
	subs := make([]*client, 4)
	for i := range subs {
		subs[i] = dial(t, addr)
		if i%2 == 1 && subs[i].do("HELLO", "3")[0] != '%' {
			t.Fatal("HELLO 3 failed")
		}
		if got := subs[i].do("SUBSCRIBE", "+switch-master"); !strings.Contains(got, "subscribe") {
			t.Fatalf("SUBSCRIBE: got %q", got)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		c := dial(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.send("SENTINEL", "get-master-addr-by-name", "mymaster")
				c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				var b strings.Builder
				if err := readValue(c.br, &b); err != nil || !strings.HasPrefix(b.String(), "*2\r\n$9\r\n127.0.0.1\r\n") {
					t.Errorf("get-master-addr-by-name during switches: %q, %v", b.String(), err)
					return
				}
			}
		}()
	}
	for i := range switches {
		src.update("mymaster", func(m *Master) { m.Addr.Port = 20000 + i })
		s.Changed()
	}
	close(stop)
	wg.Wait()
	for n, sub := range subs {
		for i := range switches {
			old := 16379
			if i > 0 {
				old = 20000 + i - 1
			}
			payload := fmt.Sprintf("mymaster 127.0.0.1 %d 127.0.0.1 %d", old, 20000+i)
			want := message("+switch-master", payload)
			if n%2 == 1 {
				want = ">" + want[1:]
			}
			if got := sub.reply(); got != want {
				t.Fatalf("subscriber %d, switch %d: got %q, want %q", n, i, got, want)
			}
		}
		sub.expectNothing()
	}
}

// TestStepAside: when this node's Redis becomes the master, a subscriber
// still gets the +switch-master, then the listener knows no master until
// it steps back in, so clients ask their other sentinels.
func TestStepAside(t *testing.T) {
	src := fixture()
	s, addr := startServer(t, Config{}, src, nil)
	sub := dial(t, addr)
	if got := sub.do("SUBSCRIBE", "+switch-master"); !strings.Contains(got, "subscribe") {
		t.Fatalf("SUBSCRIBE: got %q", got)
	}
	cli := dial(t, addr)
	if got := cli.do("CLIENT", "SETINFO", "LIB-NAME", "go-redis(,go1.26)"); got != "+OK\r\n" {
		t.Fatalf("CLIENT SETINFO: got %q", got)
	}
	other := dial(t, addr) // redigo with FZambia/sentinel: no LIB-NAME

	// The master moves to this node's Redis.
	src.update("mymaster", func(m *Master) { m.Addr = Addr{"127.0.0.9", 6379}; m.Epoch++ })
	src.setAside(AsideSubscribers)
	s.Changed()
	if got, want := sub.reply(), message("+switch-master", "mymaster 127.0.0.1 16379 127.0.0.9 6379"); got != want {
		t.Fatalf("subscriber: got %q, want %q", got, want)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"SENTINEL", "get-master-addr-by-name", "mymaster"}, "*-1\r\n"},
		{[]string{"SENTINEL", "masters"}, "*0\r\n"},
		{[]string{"SENTINEL", "master", "mymaster"}, "-" + errNoSuchMaster + "\r\n"},
		{[]string{"SENTINEL", "replicas", "mymaster"}, "-" + errNoSuchMaster + "\r\n"},
		{[]string{"SENTINEL", "sentinels", "mymaster"}, "-" + errNoSuchMaster + "\r\n"},
	} {
		if got := cli.do(tc.args...); got != tc.want {
			t.Errorf("stepping aside: %v: got %q, want %q", tc.args, got, tc.want)
		}
	}
	// Only for go-redis, which keeps one subscription: other clients get
	// the master (a null would make FZambia/sentinel skip a live sentinel).
	if got, want := other.do("SENTINEL", "get-master-addr-by-name", "mymaster"), "*2\r\n$9\r\n127.0.0.9\r\n$4\r\n6379\r\n"; got != want {
		t.Errorf("stepping aside, a client without LIB-NAME: got %q, want %q", got, want)
	}
	// Cut off (no quorum lease): nobody is told a master.
	src.setAside(AsideAll)
	if got := other.do("SENTINEL", "get-master-addr-by-name", "mymaster"); got != "*-1\r\n" {
		t.Errorf("stepping aside for all, a client without LIB-NAME: got %q, want a null", got)
	}

	// Another node's Redis is the master again: answered as before.
	src.update("mymaster", func(m *Master) { m.Addr = Addr{"127.0.0.1", 16379}; m.Epoch++ })
	src.setAside(AsideNone)
	s.Changed()
	if got, want := cli.do("SENTINEL", "get-master-addr-by-name", "mymaster"), "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n16379\r\n"; got != want {
		t.Fatalf("after stepping back in: got %q, want %q", got, want)
	}
}
