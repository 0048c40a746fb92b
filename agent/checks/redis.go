package checks

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

// maxBulk bounds a Redis bulk reply (INFO replication is well under 1 KiB
// plus 200 bytes per replica).
const maxBulk = 1 << 20

// redisProber is a redis check: AUTH when a password file is set, PING
// answered PONG, and the replication role from INFO replication when role
// is set. It speaks RESP2 over plain TCP.
type redisProber struct {
	addr         string
	passwordFile string
	role         string // "", master, replica or slave
	timeout      time.Duration
}

func (p *redisProber) probe(ctx context.Context) (string, error) {
	start := time.Now()
	var auth []string
	if p.passwordFile != "" {
		line, err := readSecretLine("password_file", p.passwordFile)
		if err != nil {
			return "", err
		}
		auth = []string{"AUTH", line}
		if user, pass, ok := strings.Cut(line, " "); ok && user != "" {
			auth = []string{"AUTH", user, pass}
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return "", stageErr(ctx, p.timeout, "dial "+p.addr, unwrapOp(err))
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// Cancellation (the runner stopping) unblocks reads and writes too.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	rc := &respConn{w: conn, r: bufio.NewReader(conn)}

	if auth != nil {
		if _, err := rc.do(auth...); err != nil {
			return "", stageErr(ctx, p.timeout, "AUTH", err)
		}
	}
	pong, err := rc.do("PING")
	if err != nil {
		return "", stageErr(ctx, p.timeout, "PING", err)
	}
	if pong != "PONG" {
		return "", fmt.Errorf("PING: got %q, want PONG", clipHead(pong, 64))
	}
	if p.role == "" {
		return "PONG in " + since(start), nil
	}
	info, err := rc.do("INFO", "replication")
	if err != nil {
		return "", stageErr(ctx, p.timeout, "INFO replication", err)
	}
	role := infoField(info, "role")
	if role == "" {
		return "", fmt.Errorf("INFO replication: no role in the reply")
	}
	out := fmt.Sprintf("PONG in %s, role %s", since(start), role)
	if canonRole(role) != canonRole(p.role) {
		return out, fmt.Errorf("role is %s, want %s", role, p.role)
	}
	return out, nil
}

// canonRole maps the synonyms of a replica to one word.
func canonRole(r string) string {
	if r == "slave" {
		return "replica"
	}
	return r
}

// infoField returns the value of "key:value" in an INFO reply.
func infoField(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), key+":"); ok {
			return v
		}
	}
	return ""
}

// respConn is the smallest RESP2 client: one command, one reply.
type respConn struct {
	w   io.Writer
	r   *bufio.Reader
	buf []byte
}

// do sends a command and returns its reply: a simple string, an integer
// (decimal) or a bulk string (a null bulk string is ""). An error reply is
// returned as a *resp.Error whose text is the server's ("WRONGPASS
// invalid username-password pair ...").
func (c *respConn) do(args ...string) (string, error) {
	c.buf = resp.AppendCommand(c.buf[:0], args...)
	if _, err := c.w.Write(c.buf); err != nil {
		return "", err
	}
	v, err := resp.ReadReply(c.r, resp.Limits{MaxBulk: maxBulk})
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "", errors.New("connection closed by the server")
	}
	if err != nil {
		return "", err
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case nil:
		return "", nil
	case *resp.Error:
		return "", &resp.Error{Msg: clipHead(v.Msg, 256)}
	}
	return "", errors.New("unexpected array reply; is it a Redis server?") // []any, the one type left
}
