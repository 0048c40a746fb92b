package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/harbormaster/harbormaster/internal/tlsid"
)

// tlsStream is Raft's stream layer: over mutual TLS when it has TLS
// configurations (only nodes of this cluster, tlsid.AnyNode, checked in the
// handshake, may open a Raft connection or answer one), plain TCP on an
// insecure agent. Every connection then opens with a hello (hello.go): both
// sides say which cluster history they belong to, and a connection between
// two histories is refused; a probe connection only asks.
type tlsStream struct {
	lis     net.Listener
	adv     net.Addr
	server  *tls.Config // nil: plain TCP
	client  *tls.Config
	local   func() hello // what this node says in a hello
	log     func(msg string, args ...any)
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	pending chan struct{} // bounds handshakes in progress
	err     error         // the raw listener's error, once it failed
	mu      sync.Mutex
}

// handshakeTimeout bounds a TLS handshake on the Raft and API ports: a
// peer that connects and sends nothing is dropped after it.
const handshakeTimeout = 5 * time.Second

// maxPendingHandshakes bounds the connections that may be mid-handshake on
// the Raft port at once; more are closed at once.
const maxPendingHandshakes = 64

func newTLSStream(lis net.Listener, adv net.Addr, server, client *tls.Config, local func() hello, log func(string, ...any)) *tlsStream {
	if local == nil {
		local = func() hello { return hello{} }
	}
	if log == nil {
		log = func(string, ...any) {}
	}
	s := &tlsStream{lis: lis, adv: adv, server: server, client: client, local: local, log: log,
		conns: make(chan net.Conn), done: make(chan struct{}), pending: make(chan struct{}, maxPendingHandshakes)}
	go s.acceptLoop()
	return s
}

// acceptLoop accepts raw connections and handshakes each in its own
// goroutine, so one peer that never finishes cannot hold up the others.
func (s *tlsStream) acceptLoop() {
	for {
		c, err := s.lis.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			s.Close()
			return
		}
		select {
		case s.pending <- struct{}{}:
		default:
			_ = c.Close()
			continue
		}
		go func() {
			defer func() { <-s.pending }()
			conn := c
			_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
			if s.server != nil {
				tc := tls.Server(c, s.server)
				if err := tc.Handshake(); err != nil {
					_ = c.Close()
					return
				}
				conn = tc
			}
			peer, err := answerHello(conn, s.local())
			if err != nil {
				s.log("raft connection refused", "from", c.RemoteAddr().String(), "err", err)
				_ = conn.Close()
				return
			}
			if peer.probe {
				_ = conn.Close()
				return
			}
			_ = conn.SetDeadline(time.Time{})
			select {
			case s.conns <- conn:
			case <-s.done:
				_ = conn.Close()
			}
		}()
	}
}

func (s *tlsStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.err != nil {
			return nil, s.err
		}
		return nil, net.ErrClosed
	}
}

func (s *tlsStream) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.lis.Close()
	})
	return err
}

func (s *tlsStream) Addr() net.Addr {
	if s.adv != nil {
		return s.adv
	}
	return s.lis.Addr()
}

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, _, err := s.dial(string(address), timeout, s.local())
	return conn, err
}

// dial opens a connection to a Raft address and exchanges hellos; it
// returns what the peer said.
func (s *tlsStream) dial(address string, timeout time.Duration, h hello) (net.Conn, hello, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", address)
	if err != nil {
		return nil, hello{}, err
	}
	conn := c
	_ = c.SetDeadline(time.Now().Add(timeout))
	if s.client != nil {
		tc := tls.Client(c, s.client)
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			return nil, hello{}, err
		}
		conn = tc
	}
	peer, err := sendHello(conn, h)
	if err != nil {
		_ = conn.Close()
		if !h.probe {
			s.log("raft connection refused", "to", address, "err", err)
		}
		return nil, peer, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, peer, nil
}

// probe asks the node at a Raft address what it holds (no Raft traffic).
func (s *tlsStream) probe(address string, timeout time.Duration) (hello, error) {
	h := s.local()
	h.probe = true
	conn, peer, err := s.dial(address, timeout, h)
	if conn != nil {
		_ = conn.Close()
	}
	return peer, err
}

// probeMember checks, before a node is added to the configuration, that
// something answers at its Raft address with that node's certificate: a
// made-up voter would cost the cluster its quorum. Insecure agents cannot
// tell who answers and skip the check.
func (a *Agent) probeMember(ctx context.Context, id, addr string) error {
	// In-process tests run Raft on an in-memory transport: nothing listens
	// on their Raft addresses (the process tests cover the probe).
	if a.tls == nil || a.opts.Transport != nil {
		return nil
	}
	cfg := a.tls.ClientConfig(func(got tlsid.Identity) error {
		if got.Name != id {
			return fmt.Errorf("the node answering is %s, not %s", got, id)
		}
		return nil
	})
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("node %s does not answer at %s: %w", id, addr, err)
	}
	return c.Close()
}
