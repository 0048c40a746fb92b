package sentinel

import (
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/internal/secretfile"
)

// Addr is a host (IP address or name) and TCP port, as Sentinel reports
// them. The zero Addr means none.
type Addr struct {
	Host string
	Port int
}

// IsZero reports whether a is the zero Addr.
func (a Addr) IsZero() bool { return a == Addr{} }

// String returns "host:port", with brackets around an IPv6 host.
func (a Addr) String() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }

// Master is one replication group as the replicated state has it.
type Master struct {
	// Name is the master name clients ask for (sentinel_master_set in
	// Harbor), e.g. "mymaster".
	Name string
	// Addr is the current master's Redis announce address; zero when no
	// master is elected.
	Addr Addr
	// Epoch is harbormaster's fencing epoch of the master role, reported as
	// config-epoch.
	Epoch uint64
	// Replicas are the other members' Redis announce addresses.
	Replicas []Addr
	// Down means there is no live master right now. A down master (and one
	// with a zero Addr) is flagged "s_down,o_down,master" and its INFO status
	// is odown, as Sentinel reports a master that a quorum agrees is down.
	Down bool
}

// Source is what the server reads. Its methods must be cheap and safe for
// concurrent use; the server calls them for every request that needs them
// and on every Changed. The server neither keeps nor modifies the slices
// they return.
type Source interface {
	// Masters returns every replication group.
	Masters() []Master
	// Sentinels returns the other agents' sentinel listener addresses for
	// the named master (for SENTINEL sentinels), excluding this one.
	Sentinels(name string) []Addr
	// StepAside says for which clients this listener knows no master now
	// (a null for SENTINEL get-master-addr-by-name, no masters, "No such
	// master" for the commands that name one), so that they ask their next
	// sentinel:
	//   - AsideAll while this node's own view may be stale (it has no valid
	//     quorum lease: cut off, or starting) and another node runs a
	//     listener: a cut-off holder would name its own fenced Redis;
	//   - AsideSubscribers while its node holds the master role and another
	//     node runs a listener: clients that keep a single +switch-master
	//     subscription (go-redis, see conn.oneSubscription) then keep it on
	//     another node, so a crash of the master's node cannot take it down
	//     with the master (go-redis learns of a failover only through it);
	//   - AsideNone otherwise.
	StepAside() Aside
}

// Aside is an answer of Source.StepAside.
type Aside int

// Asides.
const (
	AsideNone Aside = iota
	AsideSubscribers
	AsideAll
)

// Config configures a Server.
type Config struct {
	// Addr is the listen address, e.g. 0.0.0.0:26379. The Server does not
	// listen itself (Serve takes the listener); the field is for the caller.
	Addr string
	// PasswordFile, when set, makes AUTH (or HELLO ... AUTH) required. Its
	// first line is the password, or "user password" in ACL style, as the
	// agent's redis checks read it. It is read by New and again at every
	// authentication attempt, so it may be rotated. A secret file: mode
	// 0600 or 0400, owned by the agent's user or root (internal/secretfile).
	PasswordFile string
	// RunID is 40 lower-case hex characters identifying this sentinel
	// (SENTINEL myid, INFO's run_id); it should be stable per node, e.g.
	// derived from the node id. New refuses any other form.
	RunID string
	// Announce is how this sentinel is announced to others (ip and port in
	// their SENTINEL sentinels answers). The server leaves it out of its own
	// SENTINEL sentinels answers should the Source list it, and reports its
	// port as INFO's tcp_port.
	Announce Addr
	// MaxConnections bounds the open client connections (default
	// DefaultMaxConnections). A connection beyond it is answered
	// "-ERR max number of clients reached" and closed at once.
	MaxConnections int
	// IdleTimeout closes a connection that sends no request for that long
	// (default DefaultIdleTimeout), unless it is subscribed: clients hold
	// a SUBSCRIBE to "+switch-master" open for hours without a word, and
	// Redis never times out subscribers either. The timeout also bounds
	// how long a request may take to arrive.
	IdleTimeout time.Duration
	// TLS, when set, makes every listener given to Serve a TLS listener
	// with this configuration; nil serves plain TCP.
	TLS *tls.Config
}

// Defaults of Config's limits.
const (
	DefaultMaxConnections = 1024
	DefaultIdleTimeout    = 5 * time.Minute
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("sentinel: server closed")

// Server answers Sentinel clients from a Source. Create it with New, run
// Serve on one or more listeners, call Changed when the Source's answers may
// have changed, and Close to stop. All methods are safe for concurrent use.
type Server struct {
	cfg   Config
	src   Source
	log   *slog.Logger
	now   func() time.Time // the clock; time.Now but in tests
	start time.Time

	// auth is set when a password file is configured.
	auth bool
	// match is the pattern matcher: globMatch, but in tests.
	match func(pattern, s string) bool
	// refusing holds a token per connection being refused (answered
	// "max number of clients" in its own goroutine); when none is left,
	// further ones are closed without an answer.
	refusing chan struct{}

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	nextID    int64
	wg        sync.WaitGroup

	// pubMu serializes Changed, so messages keep their order; publishing
	// (and matching patterns) happens under it alone. It is taken before
	// trackMu, mu and any conn's mu, never while holding them.
	pubMu sync.Mutex
	// trackMu guards tracked; it is held only to read or update it.
	trackMu sync.Mutex
	tracked map[string]*tracked
	// aside is whether the last Changed found the server stepping aside
	// (for the log); guarded by pubMu.
	aside Aside
}

// tracked is what the server remembers of one master between Changed calls.
type tracked struct {
	addr      Addr      // the last non-zero address
	since     time.Time // when addr was first seen
	downSince time.Time // when the master was first seen down; zero when up
}

// maxRefusing bounds the connections being refused at once.
const maxRefusing = 16

// writeTimeout bounds every write to a client; a client that does not read
// for that long is disconnected.
const writeTimeout = 10 * time.Second

var runIDPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// New validates cfg and returns a Server that reads src and logs to log. It
// reads the password file (to fail early) and takes the Source's current
// masters as the baseline for Changed; it starts nothing.
func New(cfg Config, src Source, log *slog.Logger) (*Server, error) {
	return newServer(cfg, src, log, time.Now)
}

func newServer(cfg Config, src Source, log *slog.Logger, now func() time.Time) (*Server, error) {
	if src == nil {
		return nil, errors.New("sentinel: nil Source")
	}
	if !runIDPattern.MatchString(cfg.RunID) {
		return nil, fmt.Errorf("sentinel: run id %q is not 40 lower-case hex characters", cfg.RunID)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.MaxConnections < 0:
		return nil, fmt.Errorf("sentinel: max connections %d is negative", cfg.MaxConnections)
	case cfg.MaxConnections == 0:
		cfg.MaxConnections = DefaultMaxConnections
	}
	switch {
	case cfg.IdleTimeout < 0:
		return nil, fmt.Errorf("sentinel: idle timeout %s is negative", cfg.IdleTimeout)
	case cfg.IdleTimeout == 0:
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	s := &Server{
		cfg:       cfg,
		src:       src,
		log:       log.With("component", "sentinel"),
		now:       now,
		start:     now(),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		tracked:   make(map[string]*tracked),
		match:     globMatch,
		refusing:  make(chan struct{}, maxRefusing),
	}
	if cfg.PasswordFile != "" {
		if _, _, err := readPasswordFile(cfg.PasswordFile); err != nil {
			return nil, fmt.Errorf("sentinel: %w", err)
		}
		s.auth = true
	}
	for _, m := range src.Masters() {
		if _, ok := s.tracked[m.Name]; !ok {
			s.tracked[m.Name] = s.track(m, s.start)
		}
	}
	return s, nil
}

func (s *Server) track(m Master, now time.Time) *tracked {
	t := &tracked{addr: m.Addr, since: now}
	if isDown(m) {
		t.downSince = now
	}
	return t
}

// isDown reports whether m has no live master.
func isDown(m Master) bool { return m.Down || m.Addr.IsZero() }

// readPasswordFile reads "password" or "user password" from the first line
// of path; the user defaults to "default". The file must be a secret file
// (internal/secretfile: mode 0600 or 0400, owned by the agent's user or
// root).
func readPasswordFile(path string) (user, pass string, err error) {
	line, err := secretfile.ReadLine("password_file", path)
	if err != nil {
		return "", "", err
	}
	if u, p, ok := strings.Cut(line, " "); ok && u != "" {
		return u, p, nil
	}
	return "default", line, nil
}

// checkAuth reports whether user and pass are the configured credentials.
// Without a password file, the default user takes any password, as Redis's
// nopass default user does.
func (s *Server) checkAuth(user, pass string) bool {
	if !s.auth {
		return user == "default"
	}
	wantUser, wantPass, err := readPasswordFile(s.cfg.PasswordFile)
	if err != nil {
		s.log.Warn("authentication refused: cannot read the password file", "err", err)
		return false
	}
	u := subtle.ConstantTimeCompare([]byte(user), []byte(wantUser))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(wantPass))
	return u&p == 1
}

// Serve accepts connections on ln and serves each in its own goroutine
// until Close, then returns ErrServerClosed. It may run on several
// listeners at once. Other accept errors are returned (temporary ones are
// retried); Serve closes ln when it returns. With Config.TLS, ln's
// connections are served over TLS.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("sentinel: accept: %w", err)
		}
		backoff = 0
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		case len(s.conns) >= s.cfg.MaxConnections:
			s.refuse(nc) // under mu, so Close waits for it
			s.mu.Unlock()
			continue
		}
		s.nextID++
		c := newConn(s, nc, s.nextID)
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops every Serve, closes every connection and waits for their
// goroutines. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// refuse answers nc "max number of clients reached" and closes it, in a
// goroutine of its own (a TLS handshake or a full socket buffer must not
// hold up Accept), or closes it at once when maxRefusing are being
// answered already. Callers hold mu.
func (s *Server) refuse(nc net.Conn) {
	select {
	case s.refusing <- struct{}{}:
	default:
		nc.Close()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.refusing }()
		// Both ways: over TLS, the write first reads the handshake.
		nc.SetDeadline(time.Now().Add(time.Second))
		io.WriteString(nc, "-ERR max number of clients reached\r\n")
		nc.Close()
	}()
}

// goAsync runs f in a goroutine that Close waits for, unless the server is
// closed.
func (s *Server) goAsync(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Changed compares the Source's masters with what the server saw last and,
// for every master whose address changed, publishes on "+switch-master"
// "<name> <old-ip> <old-port> <new-ip> <new-port>", as Sentinel does after a
// failover. The old address is the last non-zero one seen (a master that
// went away and came back elsewhere is a switch); a master seen for the
// first time publishes nothing. Call it after every state change: when
// nothing changed it reads the Source once and allocates nothing more.
// Publishing never blocks on slow clients. It also logs when the server
// steps aside (Source.StepAside) and when it serves again; a +switch-master
// to this node's Redis is published before the server steps aside.
func (s *Server) Changed() {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	ms := s.src.Masters()
	now := s.now()
	s.trackMu.Lock()
	var msgs []string
	for _, m := range ms {
		t, ok := s.tracked[m.Name]
		if !ok {
			s.tracked[m.Name] = s.track(m, now)
			continue
		}
		if down := isDown(m); down && t.downSince.IsZero() {
			t.downSince = now
		} else if !down && !t.downSince.IsZero() {
			t.downSince = time.Time{}
		}
		if m.Addr.IsZero() || m.Addr == t.addr {
			continue
		}
		if !t.addr.IsZero() {
			msg := fmt.Sprintf("%s %s %d %s %d", m.Name, t.addr.Host, t.addr.Port, m.Addr.Host, m.Addr.Port)
			msgs = append(msgs, msg)
			s.log.Info("master switched", "master", m.Name, "from", t.addr.String(), "to", m.Addr.String(), "epoch", m.Epoch)
		}
		t.addr, t.since = m.Addr, now
	}
	s.trackMu.Unlock()
	for _, msg := range msgs {
		s.publish("+switch-master", msg)
	}
	if aside := s.src.StepAside(); aside != s.aside {
		s.aside = aside
		switch aside {
		case AsideAll:
			s.log.Info("stepping aside: this node has no quorum lease (its view may be stale); clients are sent to the other listeners")
		case AsideSubscribers:
			s.log.Info("stepping aside for single-subscription clients (go-redis): this node holds the Redis master role")
		default:
			s.log.Info("answering for the master again")
		}
	}
}

// publish queues message on channel to every connection subscribed to it,
// directly or by a pattern. Callers hold pubMu, so messages keep their
// order; no other lock is held while patterns are matched.
func (s *Server) publish(channel, message string) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.deliver(channel, message)
	}
}

// matchPatterns appends to dst the patterns that match channel.
func (s *Server) matchPatterns(patterns []string, channel string, dst []string) []string {
	for _, p := range patterns {
		if s.match(p, channel) {
			dst = append(dst, p)
		}
	}
	return dst
}

// masterTimes returns how long ago the master's current address was first
// seen and how long it has been down (0 when up or not yet tracked).
func (s *Server) masterTimes(name string, now time.Time) (since, down time.Duration) {
	s.trackMu.Lock()
	defer s.trackMu.Unlock()
	t, ok := s.tracked[name]
	if !ok {
		return 0, 0
	}
	since = now.Sub(t.since)
	if !t.downSince.IsZero() {
		down = now.Sub(t.downSince)
	}
	return since, down
}

// sentinels returns the Source's other sentinels for name, without this
// one's announce address.
func (s *Server) sentinels(name string) []Addr {
	all := s.src.Sentinels(name)
	if s.cfg.Announce.IsZero() {
		return all
	}
	out := make([]Addr, 0, len(all))
	for _, a := range all {
		if a != s.cfg.Announce {
			out = append(out, a)
		}
	}
	return out
}

// stepsAsideFor reports whether the server knows no master for c now:
// the Source steps aside and c's client keeps a single +switch-master
// subscription (see oneSubscription).
func (s *Server) stepsAsideFor(c *conn) bool {
	switch s.src.StepAside() {
	case AsideAll:
		return true
	case AsideSubscribers:
		return c.oneSubscription()
	}
	return false
}

// master returns the named master from the Source; none while the
// server steps aside for c.
func (s *Server) master(c *conn, name string) (Master, bool) {
	if s.stepsAsideFor(c) {
		return Master{}, false
	}
	for _, m := range s.src.Masters() {
		if m.Name == name {
			return m, true
		}
	}
	return Master{}, false
}

// numClients returns the number of open connections.
func (s *Server) numClients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
