package sentinel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/harbormaster/harbormaster/internal/resp"
)

// conn is one client connection. Its serve goroutine reads requests,
// executes them and writes the replies; Changed delivers pub/sub messages
// into the same output buffer, written by a short-lived goroutine, so a
// slow client never blocks Changed.
type conn struct {
	s  *Server
	nc net.Conn
	id int64
	br *bufio.Reader
	w  writer // the reply being built; serve goroutine only

	// Only the serve goroutine touches these.
	authed bool
	name   string
	quit   bool
	// lib is the client library's name (CLIENT SETINFO LIB-NAME).
	lib string

	wmu sync.Mutex // held while writing to nc

	// mu guards the fields below. The serve goroutine writes them under mu
	// and may read them without it.
	mu       sync.Mutex
	proto    int      // 2 or 3
	channels []string // subscribed channels, in subscription order
	patterns []string // subscribed patterns, in subscription order; replaced, never modified in place
	subGen   uint64   // incremented at every change of channels or patterns
	out      []byte   // replies and messages not yet written
	spare    []byte   // a written buffer kept for reuse
	kicked   bool     // an asynchronous flush is pending
	closed   bool
}

func newConn(s *Server, nc net.Conn, id int64) *conn {
	return &conn{
		s:      s,
		nc:     nc,
		id:     id,
		br:     bufio.NewReaderSize(nc, readBufferSize),
		w:      writer{proto: 2},
		authed: !s.auth,
		proto:  2,
	}
}

// serve runs the connection until the client quits or disconnects, a
// request is malformed, a write fails, the connection is idle for the
// server's IdleTimeout while not subscribed, or the server closes.
func (c *conn) serve() {
	defer c.close()
	log := c.s.log.With("client", c.nc.RemoteAddr().String())
	for {
		if c.subscriptions() > 0 {
			c.nc.SetReadDeadline(time.Time{})
		} else {
			c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
		}
		args, err := resp.ReadCommand(c.br, requestLimits(c.authed))
		if err != nil {
			var pe *resp.ProtocolError
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				log.Debug("closing an idle connection", "idle_timeout", c.s.cfg.IdleTimeout)
			case errors.As(err, &pe):
				log.Debug("closing the connection after a protocol error", "err", err)
				c.w.err("ERR Protocol error: " + pe.Msg)
				c.emit()
				c.flush()
			case !errors.Is(err, io.EOF) && !c.isClosed():
				log.Debug("closing the connection", "err", err)
			}
			return
		}
		c.exec(args)
		c.emit()
		if c.quit {
			c.flush()
			return
		}
		if c.br.Buffered() == 0 || c.pending() > maxBulk {
			if err := c.flush(); err != nil {
				if !c.isClosed() {
					log.Debug("closing the connection after a failed write", "err", err)
				}
				return
			}
		}
	}
}

// emit moves the built reply to the output buffer.
func (c *conn) emit() {
	c.mu.Lock()
	c.emitLocked()
	c.mu.Unlock()
}

func (c *conn) emitLocked() {
	c.out = append(c.out, c.w.b...)
	c.w.reset()
}

func (c *conn) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out)
}

// flush writes the output buffer until it is empty.
func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *conn) flushLocked() error {
	for {
		c.mu.Lock()
		buf := c.out
		c.out, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		if len(buf) == 0 {
			return nil
		}
		c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.nc.Write(buf); err != nil {
			return err
		}
		if cap(buf) <= 4*maxBulk {
			c.mu.Lock()
			c.spare = buf[:0]
			c.mu.Unlock()
		}
	}
}

// deliver queues message on channel if the connection subscribed to it,
// directly or by pattern, and has it written asynchronously. A connection
// that lets more than maxPendingOutput bytes pile up is closed, as Redis
// does with its pubsub output buffer limit.
//
// Patterns are matched without holding c.mu, on a snapshot of the
// subscriptions: the serve goroutine (and so the client's next PSUBSCRIBE
// or PING) never waits for a match. Should the subscriptions change
// meanwhile, the match is redone on the new ones, under c.mu after two
// tries, so a message never follows the confirmation of the UNSUBSCRIBE
// that ended its subscription.
func (c *conn) deliver(channel, message string) {
	var matched []string
	for try := 0; ; try++ {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		if try >= 2 {
			matched = c.s.matchPatterns(c.patterns, channel, matched[:0])
			break
		}
		pats, gen := c.patterns, c.subGen
		c.mu.Unlock()
		matched = c.s.matchPatterns(pats, channel, matched[:0])
		c.mu.Lock()
		if c.subGen == gen {
			break
		}
		c.mu.Unlock()
	}
	// c.mu is held.
	if c.closed {
		c.mu.Unlock()
		return
	}
	w := writer{b: c.out, proto: c.proto}
	if slices.Contains(c.channels, channel) {
		w.push(3)
		w.bulk("message")
		w.bulk(channel)
		w.bulk(message)
	}
	for _, p := range matched {
		w.push(4)
		w.bulk("pmessage")
		w.bulk(p)
		w.bulk(channel)
		w.bulk(message)
	}
	if len(w.b) == len(c.out) {
		c.mu.Unlock()
		return
	}
	if len(w.b) > maxPendingOutput {
		c.mu.Unlock()
		c.s.log.Warn("closing a subscriber that does not read its messages", "client", c.nc.RemoteAddr().String())
		c.close()
		return
	}
	c.out = w.b
	kick := !c.kicked
	c.kicked = true
	c.mu.Unlock()
	if kick {
		c.s.goAsync(func() {
			c.wmu.Lock()
			defer c.wmu.Unlock()
			c.mu.Lock()
			c.kicked = false
			c.mu.Unlock()
			if err := c.flushLocked(); err != nil {
				c.close()
			}
		})
	}
}

// close closes the network connection, which ends serve. It is idempotent.
func (c *conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.nc.Close()
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *conn) setProto(p int) {
	c.mu.Lock()
	c.proto = p
	c.mu.Unlock()
	c.w.proto = p
}

func (c *conn) subscriptions() int { return len(c.channels) + len(c.patterns) }

// command is an entry of the command table.
type command struct {
	arity  int // as Redis: n means exactly n words, -n at least n
	noAuth bool
	pubsub bool // allowed in RESP2 subscribed mode
	run    func(c *conn, args []string)
	subs   map[string]*command // subcommands of a container command
}

// commands is the command table; it is never modified.
var commands = map[string]*command{
	"ping":         {arity: -1, pubsub: true, run: (*conn).ping},
	"auth":         {arity: -2, noAuth: true, run: (*conn).authCmd},
	"hello":        {arity: -1, noAuth: true, run: (*conn).hello},
	"quit":         {arity: -1, noAuth: true, pubsub: true, run: (*conn).quitCmd},
	"reset":        {arity: 1, noAuth: true, pubsub: true, run: (*conn).reset},
	"subscribe":    {arity: -2, pubsub: true, run: (*conn).subscribe},
	"psubscribe":   {arity: -2, pubsub: true, run: (*conn).subscribe},
	"unsubscribe":  {arity: -1, pubsub: true, run: (*conn).unsubscribe},
	"punsubscribe": {arity: -1, pubsub: true, run: (*conn).unsubscribe},
	"info":         {arity: -1, run: (*conn).info},
	"role":         {arity: 1, run: (*conn).role},
	"publish":      {arity: 3, run: refuse("PUBLISH", "only harbormaster publishes here")},
	"shutdown":     {arity: -1, run: refuse("SHUTDOWN", "stop the harbormaster agent instead")},
	"client": {arity: -2, subs: map[string]*command{
		"id":      {arity: 2, run: func(c *conn, _ []string) { c.w.int(c.id) }},
		"getname": {arity: 2, run: (*conn).clientGetName},
		"setname": {arity: 3, run: (*conn).clientSetName},
		"setinfo": {arity: 4, run: (*conn).clientSetInfo},
		"help":    {arity: 2, run: help(clientHelp)},
	}},
	"command": {arity: -1, run: (*conn).commandCmd, subs: map[string]*command{
		"count": {arity: 2, run: func(c *conn, _ []string) { c.w.int(0) }},
		"docs":  {arity: -2, run: func(c *conn, _ []string) { c.w.mapHeader(0) }},
		"info":  {arity: -2, run: (*conn).commandCmd},
		"list":  {arity: -2, run: (*conn).commandCmd},
		"help":  {arity: 2, run: help(commandHelp)},
	}},
	"sentinel": {arity: -2, subs: sentinelCommands},
}

// exec looks a request up in the command table, checks its arity,
// authentication and the subscribed mode, and runs it, in Redis's order.
func (c *conn) exec(args []string) {
	name := strings.ToLower(args[0])
	cmd, ok := commands[name]
	if !ok {
		c.w.err(unknownCommand(args))
		return
	}
	full := name
	if cmd.subs != nil && len(args) >= 2 {
		sub := strings.ToLower(args[1])
		sc, ok := cmd.subs[sub]
		if !ok {
			c.w.err(fmt.Sprintf("ERR unknown subcommand '%s'. Try %s HELP.", trunc(args[1], 128), strings.ToUpper(name)))
			return
		}
		cmd, full = sc, name+"|"+sub
	}
	if n := cmd.arity; n > 0 && len(args) != n || n < 0 && len(args) < -n {
		c.w.err(fmt.Sprintf("ERR wrong number of arguments for '%s' command", full))
		return
	}
	if !c.authed && !cmd.noAuth {
		c.w.err("NOAUTH Authentication required.")
		return
	}
	if c.proto == 2 && c.subscriptions() > 0 && !cmd.pubsub {
		c.w.err(fmt.Sprintf("ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", full))
		return
	}
	cmd.run(c, args)
}

// unknownCommand is Redis's error for an unknown command: the name and the
// first arguments, quoted, up to about 128 characters.
func unknownCommand(args []string) string {
	var b strings.Builder
	for _, a := range args[1:] {
		if b.Len() >= 128 {
			break
		}
		fmt.Fprintf(&b, "'%s' ", trunc(a, 128-b.Len()))
	}
	return fmt.Sprintf("ERR unknown command '%s', with args beginning with: %s", trunc(args[0], 128), b.String())
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// refuse returns a command that replies that harbormaster owns what the
// command would change.
func refuse(what, instead string) func(*conn, []string) {
	return func(c *conn, _ []string) {
		c.w.err(fmt.Sprintf("ERR harbormaster owns this sentinel and its configuration: %s is refused; %s", what, instead))
	}
}

// help returns a command that replies with lines of help.
func help(lines []string) func(*conn, []string) {
	return func(c *conn, _ []string) {
		c.w.array(len(lines))
		for _, l := range lines {
			c.w.simple(l)
		}
	}
}

var clientHelp = []string{
	"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
	"GETNAME",
	"    Return the name of the current connection.",
	"ID",
	"    Return the ID of the current connection.",
	"SETNAME <name>",
	"    Assign the name <name> to the current connection.",
	"SETINFO <option> <value>",
	"    Accepted and ignored (LIB-NAME, LIB-VER).",
	"HELP",
	"    Print this help.",
}

var commandHelp = []string{
	"COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
	"(no subcommand), COUNT, DOCS, INFO, LIST",
	"    Answered empty: this is harbormaster's Sentinel-compatible listener.",
	"HELP",
	"    Print this help.",
}

func (c *conn) ping(args []string) {
	if len(args) > 2 {
		c.w.err("ERR wrong number of arguments for 'ping' command")
		return
	}
	if c.proto == 2 && c.subscriptions() > 0 {
		c.w.array(2)
		c.w.bulk("pong")
		if len(args) == 2 {
			c.w.bulk(args[1])
		} else {
			c.w.bulk("")
		}
		return
	}
	if len(args) == 2 {
		c.w.bulk(args[1])
		return
	}
	c.w.simple("PONG")
}

const (
	errWrongPass   = "WRONGPASS invalid username-password pair or user is disabled."
	errHelloNoAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
)

func (c *conn) authCmd(args []string) {
	var user, pass string
	switch len(args) {
	case 2:
		if !c.s.auth {
			c.w.err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
			return
		}
		user, pass = "default", args[1]
	case 3:
		user, pass = args[1], args[2]
	default:
		c.w.err("ERR syntax error")
		return
	}
	if !c.s.checkAuth(user, pass) {
		c.s.log.Debug("authentication failed", "client", c.nc.RemoteAddr().String(), "user", user)
		c.w.err(errWrongPass)
		return
	}
	c.authed = true
	c.w.simple("OK")
}

// hello is HELLO [protover [AUTH user pass] [SETNAME name]]: it switches
// between RESP2 and RESP3 and replies with the server's properties.
func (c *conn) hello(args []string) {
	proto := c.proto
	i := 1
	if len(args) >= 2 {
		v, ok := resp.ParseInt([]byte(args[1]))
		if !ok {
			c.w.err("ERR Protocol version is not an integer or out of range")
			return
		}
		if v < 2 || v > 3 {
			c.w.err("NOPROTO unsupported protocol version")
			return
		}
		proto, i = int(v), 2
	}
	var user, pass, name string
	var withAuth, withName bool
	for ; i < len(args); i++ {
		more := len(args) - 1 - i
		switch {
		case strings.EqualFold(args[i], "AUTH") && more >= 2:
			user, pass, withAuth = args[i+1], args[i+2], true
			i += 2
		case strings.EqualFold(args[i], "SETNAME") && more >= 1:
			name, withName = args[i+1], true
			if !validName(name) {
				c.w.err(errClientName)
				return
			}
			i++
		default:
			c.w.err(fmt.Sprintf("ERR Syntax error in HELLO option '%s'", args[i]))
			return
		}
	}
	if withAuth {
		if !c.s.checkAuth(user, pass) {
			c.s.log.Debug("authentication failed", "client", c.nc.RemoteAddr().String(), "user", user)
			c.w.err(errWrongPass)
			return
		}
		c.authed = true
	}
	if !c.authed {
		c.w.err(errHelloNoAuth)
		return
	}
	if withName {
		c.name = name
	}
	c.setProto(proto)
	c.w.mapHeader(6)
	c.w.bulk("server")
	c.w.bulk("redis")
	c.w.bulk("version")
	c.w.bulk(redisVersion)
	c.w.bulk("proto")
	c.w.int(int64(proto))
	c.w.bulk("id")
	c.w.int(c.id)
	c.w.bulk("mode")
	c.w.bulk("sentinel")
	c.w.bulk("modules")
	c.w.array(0)
}

func (c *conn) quitCmd([]string) {
	c.w.simple("OK")
	c.quit = true
}

// reset is RESET: it drops the subscriptions, the name and the
// authentication and returns to RESP2, as Redis does.
func (c *conn) reset([]string) {
	c.mu.Lock()
	c.channels, c.patterns = nil, nil
	c.subGen++
	c.mu.Unlock()
	c.name = ""
	c.authed = !c.s.auth
	c.setProto(2)
	c.w.simple("RESET")
}

const errClientName = "ERR Client names cannot contain spaces, newlines or special characters."

// validName reports whether name is a valid client name: printable ASCII
// without spaces.
func validName(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] < '!' || name[i] > '~' {
			return false
		}
	}
	return true
}

func (c *conn) clientGetName([]string) {
	if c.name == "" {
		c.w.nullBulk()
		return
	}
	c.w.bulk(c.name)
}

func (c *conn) clientSetName(args []string) {
	if !validName(args[2]) {
		c.w.err(errClientName)
		return
	}
	c.name = args[2]
	c.w.simple("OK")
}

func (c *conn) clientSetInfo(args []string) {
	switch strings.ToLower(args[2]) {
	case "lib-name":
		c.lib = args[3]
		c.w.simple("OK")
	case "lib-ver":
		c.w.simple("OK")
	default:
		c.w.err(fmt.Sprintf("ERR Unrecognized option '%s'", args[2]))
	}
}

// commandCmd answers COMMAND (and COMMAND INFO, LIST) with an empty array:
// clients use it only for hints.
func (c *conn) commandCmd([]string) { c.w.array(0) }

// subscribe is SUBSCRIBE and PSUBSCRIBE. The subscriptions and their
// confirmations enter the output under one lock, so no message overtakes
// a confirmation. A request that would take the connection over
// maxChannels (maxPatterns), or names one longer than
// maxSubscriptionName, is refused whole with an error; the connection and
// its other subscriptions stay.
func (c *conn) subscribe(args []string) {
	pattern := strings.EqualFold(args[0], "psubscribe")
	kind, what, limit := "subscribe", "channels", maxChannels
	if pattern {
		kind, what, limit = "psubscribe", "patterns", maxPatterns
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	set, other := c.channels, len(c.patterns)
	if pattern {
		set, other = c.patterns, len(c.channels)
	}
	next := slices.Clip(set) // appends copy: deliver may be reading set
	counts := make([]int, 0, len(args)-1)
	for _, name := range args[1:] {
		if len(name) > maxSubscriptionName {
			c.w.err(fmt.Sprintf("ERR a name of %d bytes is too long; subscribe to names of at most %d bytes", len(name), maxSubscriptionName))
			c.emitLocked()
			return
		}
		if !slices.Contains(next, name) {
			next = append(next, name)
		}
		counts = append(counts, other+len(next))
	}
	if len(next) > limit {
		c.w.err(fmt.Sprintf("ERR too many %s on one connection: at most %d; unsubscribe some first", what, limit))
		c.emitLocked()
		return
	}
	if pattern {
		c.patterns = next
	} else {
		c.channels = next
	}
	c.subGen++
	for i, name := range args[1:] {
		c.w.push(3)
		c.w.bulk(kind)
		c.w.bulk(name)
		c.w.int(int64(counts[i]))
	}
	c.emitLocked()
}

// unsubscribe is UNSUBSCRIBE and PUNSUBSCRIBE; without arguments they drop
// every channel (pattern).
func (c *conn) unsubscribe(args []string) {
	pattern := strings.EqualFold(args[0], "punsubscribe")
	kind := "unsubscribe"
	if pattern {
		kind = "punsubscribe"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	set := &c.channels
	if pattern {
		set = &c.patterns
	}
	names := args[1:]
	if len(names) == 0 {
		names = slices.Clone(*set)
	}
	if len(names) == 0 {
		c.w.push(3)
		c.w.bulk(kind)
		c.w.nullBulk()
		c.w.int(int64(c.subscriptions()))
	}
	for _, name := range names {
		if i := slices.Index(*set, name); i >= 0 {
			// A new slice: deliver may be reading the old one.
			*set = slices.Delete(slices.Clone(*set), i, i+1)
			c.subGen++
		}
		c.w.push(3)
		c.w.bulk(kind)
		c.w.bulk(name)
		c.w.int(int64(c.subscriptions()))
	}
	c.emitLocked()
}

// oneSubscriptionLibs are the client libraries, by CLIENT SETINFO
// LIB-NAME prefix, that keep their +switch-master subscription on the one
// sentinel that answered them first and learn of a failover only through
// it: go-redis (NewFailoverClient; its sentinel connections identify
// themselves unless DisableIdentity). The listener on the master's node
// steps aside for them only. Others (redigo with FZambia/sentinel, which
// sends no LIB-NAME, redis-py, Jedis) ask every sentinel in turn or
// subscribe to all: a null from one of them would only cost them time
// (FZambia/sentinel then skips the next sentinel of its list).
var oneSubscriptionLibs = []string{"go-redis"}

// oneSubscription reports whether c's client library is one of
// oneSubscriptionLibs.
func (c *conn) oneSubscription() bool {
	for _, p := range oneSubscriptionLibs {
		if strings.HasPrefix(strings.ToLower(c.lib), p) {
			return true
		}
	}
	return false
}
