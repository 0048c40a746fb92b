package redisctl

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

	"github.com/harbormaster/harbormaster/internal/resp"
)

// Limits on what a reply may hold: INFO is a few KiB, CONFIG GET a few
// pairs. A peer that sends more is not the Redis we talk to.
const (
	maxBulk  = 4 << 20
	maxArray = 1024
	maxDepth = 4
)

// conn is one connection speaking RESP2: commands go out as arrays of bulk
// strings, replies come back as string (simple or bulk), int64, nil (null
// bulk or array), []any or *resp.Error.
type conn struct {
	nc     net.Conn
	r      *bufio.Reader
	wbuf   []byte // the commands of one exchange, kept for reuse
	broken bool   // an exchange failed or was interrupted: close, don't reuse
}

func newConn(nc net.Conn) *conn {
	return &conn{nc: nc, r: bufio.NewReaderSize(nc, 16<<10)}
}

// roundTrip sends cmds in one write and reads one reply per command. The
// deadline is ctx's, or fallback from now when ctx has none; ctx's
// cancellation interrupts a read or write in progress. An error returned
// is an I/O or protocol failure (error replies are values in the result);
// when ctx ended, it wraps ctx.Err(). After an error, or when ctx ended
// during the exchange, the connection is marked broken: not to be reused.
func (c *conn) roundTrip(ctx context.Context, fallback time.Duration, cmds ...[]string) (replies []any, err error) {
	dl, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		dl = time.Now().Add(fallback)
	}
	if err := c.nc.SetDeadline(dl); err != nil {
		c.broken = true
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			// The interrupt ran or is running: it may still set a past
			// deadline, so the connection must not be used again.
			c.broken = true
		}
		if err == nil {
			return
		}
		c.broken = true
		switch {
		case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		case hasDeadline && isTimeout(err) && !time.Now().Before(dl):
			// The connection's deadline, ctx's, fired before ctx's timer.
			err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
		case !hasDeadline && isTimeout(err):
			err = fmt.Errorf("no reply within %s: %w", fallback, err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.wbuf = c.wbuf[:0]
	for _, args := range cmds {
		c.wbuf = resp.AppendCommand(c.wbuf, args...)
	}
	if _, err := c.nc.Write(c.wbuf); err != nil {
		return nil, err
	}
	replies = make([]any, len(cmds))
	for i := range cmds {
		if replies[i], err = resp.ReadReply(c.r, resp.Limits{MaxBulk: maxBulk, MaxArray: maxArray, MaxDepth: maxDepth}); err != nil {
			return nil, eofErr(err)
		}
	}
	return replies, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func eofErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("connection closed by the server")
	}
	return err
}

// clip shortens s to n bytes for an error message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Reply conversions. Each returns an error naming what was expected when
// the reply is an error reply or of another type.

func asError(v any) error {
	if re, ok := v.(*resp.Error); ok {
		return re
	}
	return nil
}

func asString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case *resp.Error:
		return "", v
	}
	return "", fmt.Errorf("unexpected reply %T, want a string", v)
}

// asOK accepts a simple string reply starting with OK ("OK", or "OK
// Already connected to specified master").
func asOK(v any) error {
	s, err := asString(v)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(s, "OK") {
		return fmt.Errorf("unexpected reply %q, want OK", clip(s, 64))
	}
	return nil
}

// asConfigInt reads the value of a CONFIG GET reply for one parameter:
// [name, value].
func asConfigInt(v any, name string) (int64, error) {
	if err := asError(v); err != nil {
		return 0, err
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return 0, fmt.Errorf("unexpected CONFIG GET %s reply %v; is the parameter known?", name, v)
	}
	s, err := asString(arr[1])
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("CONFIG GET %s: %q is not an integer", name, s)
	}
	return n, nil
}
