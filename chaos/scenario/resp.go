package scenario

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/harbormaster/harbormaster/internal/resp"
)

// maxReplyArray bounds the elements of an array reply: LRANGE of the
// writer's list returns one per write, a thousand a second for as long as
// a run lasts.
const maxReplyArray = 1 << 24

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
// an int64, nil, or a []any; an error reply is returned as the error, a
// *resp.Error.
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
	if _, err := c.conn.Write(resp.AppendCommand(nil, args...)); err != nil {
		c.Close()
		return nil, err
	}
	v, err := resp.ReadReply(c.r, resp.Limits{MaxArray: maxReplyArray})
	if err != nil {
		c.Close()
		return nil, err
	}
	if re, ok := v.(*resp.Error); ok {
		return nil, re
	}
	return v, nil
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
