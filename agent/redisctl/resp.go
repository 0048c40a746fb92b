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
)

// Limits on what a reply may hold: INFO is a few KiB, CONFIG GET a few
// pairs. A peer that sends more is not the Redis we talk to.
const (
	maxBulk  = 4 << 20
	maxArray = 1024
	maxDepth = 4
)

// ReplyError is an error reply from Redis, e.g. "READONLY You can't write
// against a read only replica." or "WRONGPASS invalid username-password
// pair or user is disabled.". The connection stays usable after it.
type ReplyError struct {
	Msg string // the reply without its leading '-'
}

func (e *ReplyError) Error() string { return e.Msg }

// Prefix returns the error code, the reply's first word: READONLY,
// NOREPLICAS, WRONGPASS, NOAUTH, ERR ...
func (e *ReplyError) Prefix() string {
	code, _, _ := strings.Cut(e.Msg, " ")
	return code
}

// conn is one connection speaking RESP2: commands go out as arrays of bulk
// strings, replies come back as string (simple or bulk), int64, nil (null
// bulk or array), []any or *ReplyError.
type conn struct {
	nc     net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	broken bool // an exchange failed or was interrupted: close, don't reuse
}

func newConn(nc net.Conn) *conn {
	return &conn{nc: nc, r: bufio.NewReaderSize(nc, 16<<10), w: bufio.NewWriterSize(nc, 4<<10)}
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
	for _, args := range cmds {
		writeCommand(c.w, args)
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	replies = make([]any, len(cmds))
	for i := range cmds {
		if replies[i], err = c.readReply(0); err != nil {
			return nil, err
		}
	}
	return replies, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func writeCommand(w *bufio.Writer, args []string) {
	w.WriteByte('*')
	w.WriteString(strconv.Itoa(len(args)))
	w.WriteString("\r\n")
	for _, a := range args {
		w.WriteByte('$')
		w.WriteString(strconv.Itoa(len(a)))
		w.WriteString("\r\n")
		w.WriteString(a)
		w.WriteString("\r\n")
	}
}

func (c *conn) readReply(depth int) (any, error) {
	line, err := c.line()
	if err != nil {
		return nil, err
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return &ReplyError{Msg: line[1:]}, nil
	case ':':
		n, err := strconv.ParseInt(line[1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad integer reply %q", clip(line, 32))
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < -1 || n > maxBulk {
			return nil, fmt.Errorf("bad bulk length in %q", clip(line, 32))
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, eofErr(err)
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, errors.New("bulk reply not terminated by CRLF")
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < -1 || n > maxArray || depth >= maxDepth {
			return nil, fmt.Errorf("bad array reply %q", clip(line, 32))
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = c.readReply(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply %q; is it a Redis server?", clip(line, 32))
}

// line reads one CRLF-terminated line without its line end.
func (c *conn) line() (string, error) {
	b, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errors.New("reply line too long; is it a Redis server?")
	}
	if err != nil {
		return "", eofErr(err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", errors.New("empty reply line; is it a Redis server?")
	}
	return s, nil
}

func eofErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("connection closed by the server")
	}
	return err
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Reply conversions. Each returns an error naming what was expected when
// the reply is an error reply or of another type.

func asError(v any) error {
	if re, ok := v.(*ReplyError); ok {
		return re
	}
	return nil
}

func asString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case *ReplyError:
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
