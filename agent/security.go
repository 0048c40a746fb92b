package agent

import (
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/internal/secretfile"
	"github.com/harbormaster/harbormaster/internal/tlsid"
)

// Bounds of the gRPC API (docs/security.md): what one peer can push.
const (
	// apiMaxConns and apiMaxConnsPerIP bound open API connections; more
	// are closed at once.
	apiMaxConns      = 1024
	apiMaxConnsPerIP = 64
	// apiMaxStreams bounds concurrent calls on one connection.
	apiMaxStreams = 64
	// apiMaxRecvMsg bounds a request (a spec is at most 1 MiB).
	apiMaxRecvMsg = 2 << 20
	// apiMaxSendMsg bounds a reply (a status of a large cluster).
	apiMaxSendMsg = 16 << 20
)

// grpcServerOptions are the API server's credentials, authorization and
// bounds.
func (a *Agent) grpcServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.unaryAuthz),
		grpc.ChainStreamInterceptor(a.streamAuthz),
		grpc.MaxConcurrentStreams(apiMaxStreams),
		grpc.MaxRecvMsgSize(apiMaxRecvMsg),
		grpc.MaxSendMsgSize(apiMaxSendMsg),
		// A connection that has not finished its TLS and HTTP/2 handshakes
		// in time is dropped.
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute}),
	}
	if a.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(a.tls.ServerConfig(tlsid.AnyIdentity))))
	}
	return opts
}

// metricsTLS says whether the metrics listener serves mutual TLS: always
// with tls configured, unless it listens on loopback only.
func (a *Agent) metricsTLS() bool {
	if a.tls == nil {
		return false
	}
	return !redisctl.IsLoopback(a.cfg.MetricsAddr)
}

// ReloadTLS reads the node's certificate, key and CA again (SIGHUP): new
// connections use them, established ones keep theirs. On an error the
// loaded ones stay.
func (a *Agent) ReloadTLS() error {
	if a.tls == nil {
		return nil
	}
	err := secretfile.CheckExisting("tls.key_file", a.cfg.TLS.KeyFile)
	if err == nil {
		err = a.tls.Reload()
	}
	if err != nil {
		a.log.Error("tls reload failed; keeping the loaded certificate", "err", err)
		return err
	}
	a.log.Info("tls reloaded", "identity", a.tls.Self().String(), "expires", a.tls.NotAfter().UTC().Format(time.RFC3339))
	return nil
}

// limitListener closes connections beyond a total and a per-address bound
// at once, instead of letting them queue (a peer holding many connections
// open cannot lock others out).
type limitListener struct {
	net.Listener
	max, perIP int
	mu         sync.Mutex
	total      int
	byIP       map[string]int
}

func (a *Agent) limitAPI(l net.Listener) net.Listener {
	return &limitListener{Listener: l, max: apiMaxConns, perIP: apiMaxConnsPerIP, byIP: map[string]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		if l.total >= l.max || l.byIP[ip] >= l.perIP {
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		l.total++
		l.byIP[ip]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, l: l, ip: ip}, nil
	}
}

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	ip   string
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.total--
		if c.l.byIP[c.ip]--; c.l.byIP[c.ip] <= 0 {
			delete(c.l.byIP, c.ip)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
