package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// RedisConn is the observers' Redis client: one connection, dialed on
// demand through a lab dialer, one command at a time, each bounded by a
// timeout, the connection dropped after any error that is not Redis's own
// answer. It has no retries, no pool and no dial back-off (go-redis's pool
// stops dialing for a second after a few refused dials, which would hide
// the first second of a failover from the writer). Not safe for
// concurrent use.
type RedisConn struct {
	addr    string
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout time.Duration
	conn    net.Conn
	r       *bufio.Reader
}

// RedisError is an error reply of Redis (NOREPLICAS, READONLY, ...).
type RedisError string

func (e RedisError) Error() string { return string(e) }

// Kind returns the error's first word.
func (e RedisError) Kind() string { k, _, _ := strings.Cut(string(e), " "); return k }

// NewRedisConn returns a client of addr whose connections spawn opens
// (see LabDialer), timeout bounding each dial and each command.
func NewRedisConn(addr string, spawn Spawner, timeout time.Duration) *RedisConn {
	return &RedisConn{addr: addr, dial: LabDialer(spawn), timeout: timeout}
}

// Close drops the connection.
func (c *RedisConn) Close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.r = nil, nil
	}
}

// Do sends one command and returns its reply: a string (simple or bulk),
// an int64, nil, or a []any; an error reply is a RedisError.
func (c *RedisConn) Do(ctx context.Context, args ...string) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.conn == nil {
		conn, err := c.dial(ctx, "tcp4", c.addr)
		if err != nil {
			return nil, err
		}
		c.conn, c.r = conn, bufio.NewReader(conn)
	}
	dl, _ := ctx.Deadline()
	_ = c.conn.SetDeadline(dl)
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.conn.Write([]byte(b.String())); err != nil {
		c.Close()
		return nil, err
	}
	v, err := readReply(c.r)
	var re RedisError
	if err != nil && !errors.As(err, &re) {
		c.Close()
	}
	return v, err
}

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("resp: bad line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, RedisError(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, 0, n)
		for range n {
			v, err := readReply(r)
			var re RedisError
			if err != nil && !errors.As(err, &re) {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("resp: unknown reply %q", line)
}

// Strings converts an array reply to strings.
func Strings(v any, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("resp: %T is not an array", v)
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out, nil
}
