package redisctl

import (
	"bufio"
	"context"
	"errors"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/resp"
)

// fakeServer accepts connections on 127.0.0.1 and reads RESP commands;
// reply returns the bytes to send for one command, nil to stay silent.
type fakeServer struct {
	addr  string
	conns atomic.Int32
}

func startFake(t *testing.T, reply func(req []string) []byte) *fakeServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{addr: l.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := bufio.NewReader(c)
				for {
					req, err := readRequest(r)
					if err != nil {
						return
					}
					if b := reply(req); b != nil {
						c.Write(b)
					}
				}
			}()
		}
	}()
	return f
}

// readRequest reads one RESP array of bulk strings.
func readRequest(r *bufio.Reader) ([]string, error) {
	return resp.ReadCommand(r, resp.CommandLimits{MaxArgs: 1024, MaxBulk: 1 << 20, MaxInline: 1 << 10, MaxRequest: 1 << 20})
}

func TestCallsEndWithContext(t *testing.T) {
	f := startFake(t, func([]string) []byte { return nil }) // never answers
	c := newClient(t, Config{Address: f.addr})

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Replication(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "INFO replication on "+f.addr) {
		t.Fatalf("Replication on a silent server: %v, want a deadline error naming INFO replication and %s", err, f.addr)
	}
	// Ended by ctx's deadline, not by the client's own fallback (which
	// would also report ctx's error, ctx having ended by then).
	if d := time.Since(start); d < 200*time.Millisecond || d >= DefaultTimeout {
		t.Fatalf("Replication returned after %s, want after ctx's 200 ms deadline and before the %s fallback", d, DefaultTimeout)
	}

	// Cancellation without a deadline interrupts a read in progress.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	err = c.PauseWrites(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("PauseWrites cancelled: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d >= DefaultTimeout {
		t.Fatalf("PauseWrites returned after %s, the %s fallback: the cancellation at 100 ms did not interrupt it", d, DefaultTimeout)
	}
	// An interrupted connection is not reused: each call dialled anew.
	if n := f.conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (one per interrupted call)", n)
	}
	// A context that already ended fails at once.
	_, err = c.Replication(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Replication with an ended context: %v, want context.Canceled", err)
	}
}

func TestConnectErrors(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens
	c := newClient(t, Config{Address: addr})
	err := c.Promote(ctxT(t, 2*time.Second), "redis", 1)
	if err == nil || !strings.Contains(err.Error(), "on "+addr+": connect: ") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Promote with nothing listening: %v, want a connect error naming %s", err, addr)
	}
	c.Close()
	if _, err := c.Replication(ctxT(t, time.Second)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replication after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	garbage := startFake(t, func([]string) []byte { return []byte("HTTP/1.1 400 Bad Request\r\n\r\n") })
	c = newClient(t, Config{Address: garbage.addr})
	if _, err := c.Replication(ctxT(t, 2*time.Second)); err == nil || !strings.Contains(err.Error(), "is it a Redis server?") {
		t.Fatalf("Replication on an HTTP server: %v, want a protocol error", err)
	}
}

func TestReplyTypes(t *testing.T) {
	replies := map[string]string{
		"simple": "+OK\r\n",
		"error":  "-READONLY You can't write against a read only replica.\r\n",
		"int":    ":-42\r\n",
		"bulk":   "$5\r\na\r\nbc\r\n",
		"empty":  "$0\r\n\r\n",
		"null":   "$-1\r\n",
		"array":  "*3\r\n$21\r\nmin-replicas-to-write\r\n:7\r\n*-1\r\n",
	}
	f := startFake(t, func(req []string) []byte { return []byte(replies[req[0]]) })
	c := newClient(t, Config{Address: f.addr})
	names := []string{"simple", "error", "int", "bulk", "empty", "null", "array"}
	var cmds [][]string
	for _, n := range names {
		cmds = append(cmds, []string{n})
	}
	got, err := c.exec(ctxT(t, 2*time.Second), "test", cmds...)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"OK", &resp.Error{Msg: "READONLY You can't write against a read only replica."}, int64(-42), "a\r\nbc", "", nil,
		[]any{"min-replicas-to-write", int64(7), nil}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replies:\n got %#v\nwant %#v", got, want)
	}
	if re := got[1].(*resp.Error); re.Prefix() != "READONLY" {
		t.Fatalf("Prefix() = %q, want READONLY", re.Prefix())
	}
	// An error reply leaves the connection usable: one connection served all.
	if _, err := c.do(ctxT(t, 2*time.Second), "error"); err == nil || !strings.Contains(err.Error(), "error on "+f.addr+": READONLY") {
		t.Fatalf("do(error): %v, want the reply as an error naming the command and address", err)
	}
	if _, err := c.do(ctxT(t, 2*time.Second), "simple"); err != nil {
		t.Fatal(err)
	}
	if n := f.conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestBadReplies(t *testing.T) {
	for name, reply := range map[string]string{
		"bulk too long":   "$99999999999\r\n",
		"bulk no CRLF":    "$2\r\nabcd\r\n",
		"negative length": "$-2\r\n",
		"bad int":         ":x\r\n",
		"array too long":  "*100000\r\n",
		"empty line":      "\r\n",
		"unknown type":    "%1\r\n",
		"truncated bulk":  "$10\r\nabc",
		"no line end":     "+OK",
	} {
		t.Run(name, func(t *testing.T) {
			f := startFake(t, func([]string) []byte { return []byte(reply) })
			c := newClient(t, Config{Address: f.addr})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if _, err := c.do(ctx, "PING"); err == nil {
				t.Fatalf("reply %q accepted", reply)
			}
		})
	}
}
