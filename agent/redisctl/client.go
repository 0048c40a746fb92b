package redisctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// DefaultTimeout bounds a call whose ctx has no deadline (connect, and
// each exchange), so that a server that stopped answering (SIGSTOP, a
// black-holed route) never hangs the caller.
const DefaultTimeout = 10 * time.Second

// maxIdle is how many connections a Client keeps open between calls.
const maxIdle = 2

// ErrClosed is returned by the calls of a closed Client.
var ErrClosed = errors.New("redisctl: client closed")

// Client controls one Redis server. It connects lazily, keeps up to two
// idle connections, and is safe for concurrent use. A call is retried only
// when a kept connection turns out closed by the server (every command it
// sends is idempotent), once, on a new connection.
// Every call is bounded by its ctx (or DefaultTimeout when ctx has no
// deadline); errors name the command and the address, e.g.
// "REPLICAOF NO ONE on 127.0.0.1:6379: ...", and wrap *resp.Error for an
// error reply and ctx.Err() when ctx ended.
type Client struct {
	cfg  Config
	addr string // the address dialled: Address, or the announce of Remote

	mu     sync.Mutex
	idle   []*conn
	closed bool
}

// New returns a Client for the node's own Redis at c.Address. It validates
// c (a *conf.FieldError with field paths relative to the redis section) and
// does no I/O: files are read and the server dialled on first use.
func New(c Config) (*Client, error) {
	if err := c.Validate(""); err != nil {
		return nil, err
	}
	return &Client{cfg: c, addr: c.Address}, nil
}

// Remote returns a Client for another node's Redis at announce (its
// AnnounceAddr), with this node's credentials and CA (c.PasswordFile,
// c.CAFile): every node's Redis is expected to accept the same AUTH. It is
// meant for one-off use, demoting a lost master that is still reachable
// (Follow, PauseWrites); Close it after use.
func Remote(c Config, announce string) (*Client, error) {
	c.Address, c.Announce = announce, announce
	if err := c.Validate(""); err != nil {
		return nil, err
	}
	return &Client{cfg: c, addr: announce}, nil
}

// Addr returns the address the client connects to.
func (c *Client) Addr() string { return c.addr }

// Close closes the idle connections; calls in progress finish and close
// theirs. Later calls return ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	c.mu.Unlock()
	for _, cn := range idle {
		cn.nc.Close()
	}
	return nil
}

// get returns an idle connection (reused true) or dials a new one.
func (c *Client) get(ctx context.Context) (cn *conn, reused bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, ErrClosed
	}
	if n := len(c.idle); n > 0 {
		cn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return cn, true, nil
	}
	c.mu.Unlock()
	cn, err = c.dial(ctx)
	return cn, false, err
}

// put returns a connection to the idle list, or closes it.
func (c *Client) put(cn *conn) {
	c.mu.Lock()
	if !cn.broken && !c.closed && len(c.idle) < maxIdle {
		c.idle = append(c.idle, cn)
		cn = nil
	}
	c.mu.Unlock()
	if cn != nil {
		cn.nc.Close()
	}
}

// dial connects, does the TLS handshake when CAFile is set, and AUTH when
// PasswordFile is set (both files read now).
func (c *Client) dial(ctx context.Context) (*conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	var auth []string
	if c.cfg.PasswordFile != "" {
		var err error
		if auth, err = readAuth(c.cfg.PasswordFile); err != nil {
			return nil, err
		}
	}
	var tc *tls.Config
	if c.cfg.CAFile != "" {
		pem, err := os.ReadFile(c.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", c.cfg.CAFile)
		}
		host, _, _ := net.SplitHostPort(c.addr)
		tc = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if tc != nil {
		tlsConn := tls.Client(nc, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tlsConn
	}
	cn := newConn(nc)
	if auth != nil {
		replies, err := cn.roundTrip(ctx, DefaultTimeout, auth)
		if err == nil {
			err = asOK(replies[0])
		}
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return cn, nil
}

// exec runs cmds in one round trip on one connection and returns their
// replies (error replies included, as *resp.Error values). The error, for
// a failure to connect or to exchange, is named by what.
func (c *Client) exec(ctx context.Context, what string, cmds ...[]string) ([]any, error) {
	cn, reused, err := c.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", what, c.addr, err)
	}
	replies, err := cn.roundTrip(ctx, DefaultTimeout, cmds...)
	c.put(cn)
	if err != nil && reused && ctx.Err() == nil && !isTimeout(err) {
		// A kept connection the server closed since (a restart, its
		// timeout setting, CLIENT KILL). Every command this package sends
		// is idempotent: try once more on a new connection.
		if cn, err = c.dial(ctx); err == nil {
			replies, err = cn.roundTrip(ctx, DefaultTimeout, cmds...)
			c.put(cn)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", what, c.addr, err)
	}
	return replies, nil
}

// do runs one command and returns its reply; an error reply is returned as
// an error wrapping *resp.Error.
func (c *Client) do(ctx context.Context, args ...string) (any, error) {
	what := strings.Join(args, " ")
	replies, err := c.exec(ctx, what, args)
	if err != nil {
		return nil, err
	}
	if err := asError(replies[0]); err != nil {
		return nil, fmt.Errorf("%s on %s: %w", what, c.addr, err)
	}
	return replies[0], nil
}

// doOK runs one command that answers OK.
func (c *Client) doOK(ctx context.Context, args ...string) error {
	v, err := c.do(ctx, args...)
	if err != nil {
		return err
	}
	if err := asOK(v); err != nil {
		return fmt.Errorf("%s on %s: %w", strings.Join(args, " "), c.addr, err)
	}
	return nil
}
