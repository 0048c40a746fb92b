package agent

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/harbormaster/harbormaster/agent/redisact"
	"github.com/harbormaster/harbormaster/agent/sentinel"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/lease"
)

// sentinelSource answers the Sentinel-compatible listener from the state
// and this node's grant table.
type sentinelSource struct {
	self   string
	state  func() (st *fsm.State, changed <-chan struct{})
	grants *lease.Grants
	// leaseValid reports whether this node holds a valid quorum lease.
	leaseValid func() bool
}

func hostPort(s string) sentinel.Addr {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return sentinel.Addr{}
	}
	port, _ := strconv.Atoi(p)
	return sentinel.Addr{Host: h, Port: port}
}

// Masters implements sentinel.Source: the redis-master role's holder is the
// master while its lease generation is live by this node's grants.
func (s sentinelSource) Masters() []sentinel.Master {
	st, _ := s.state()
	r, ok := redisact.Role(st)
	if !ok {
		return nil
	}
	as := st.Assignment(r.Name)
	m := sentinel.Master{Name: r.SentinelName(), Epoch: as.Epoch, Down: true}
	if n, ok := st.Nodes[as.Holder]; ok && n.Redis != "" && !as.Releasing {
		m.Addr = hostPort(n.Redis)
		gen, live := s.grants.Snapshot(time.Now()).Live(as.Holder)
		m.Down = !live || gen != as.HolderGen
	}
	for _, id := range st.NodeIDs() {
		if n := st.Nodes[id]; id != as.Holder && n.Redis != "" {
			m.Replicas = append(m.Replicas, hostPort(n.Redis))
		}
	}
	return []sentinel.Master{m}
}

// Sentinels implements sentinel.Source.
func (s sentinelSource) Sentinels(string) []sentinel.Addr {
	st, _ := s.state()
	var out []sentinel.Addr
	for _, id := range st.NodeIDs() {
		if n := st.Nodes[id]; id != s.self && n.Sentinel != "" {
			out = append(out, hostPort(n.Sentinel))
		}
	}
	return out
}

// StepAside implements sentinel.Source: for everyone while this node has
// no valid quorum lease (cut off or starting: its state may name a master
// that was replaced; a cut-off holder would name its own fenced Redis), for
// single-subscription clients while it holds the redis-master role; only
// when another node runs a listener to send them to.
func (s sentinelSource) StepAside() sentinel.Aside {
	st, _ := s.state()
	r, ok := redisact.Role(st)
	if !ok {
		return sentinel.AsideNone
	}
	others := false
	for id, n := range st.Nodes {
		others = others || (id != s.self && n.Sentinel != "")
	}
	switch {
	case !others:
		return sentinel.AsideNone
	case s.leaseValid != nil && !s.leaseValid():
		return sentinel.AsideAll
	case st.Assignment(r.Name).Holder == s.self:
		return sentinel.AsideSubscribers
	}
	return sentinel.AsideNone
}

// openSentinel builds the Sentinel-compatible listener when configured and
// listens on its address (a failure is fatal at start).
func (a *Agent) openSentinel() (*sentinel.Server, net.Listener, error) {
	sc := a.cfg.Sentinel
	if sc == nil {
		return nil, nil, nil
	}
	sum := sha1.Sum([]byte("harbormaster sentinel " + a.cfg.NodeID))
	srv, err := sentinel.New(sentinel.Config{Addr: sc.Addr, PasswordFile: sc.PasswordFile, RunID: hex.EncodeToString(sum[:]),
		Announce: hostPort(sc.AnnounceAddr()), MaxConnections: sc.MaxConnections, IdleTimeout: time.Duration(sc.IdleTimeout),
		TLS: a.sentinelTLS()},
		sentinelSource{self: a.cfg.NodeID, state: a.fsm.State, grants: a.leases.Grants(), leaseValid: func() bool {
			now := time.Now()
			_, _, until := a.leases.Lease(now)
			return until.After(now)
		}},
		a.log.With("component", "sentinel"))
	if err != nil {
		return nil, nil, fmt.Errorf("sentinel: %w", err)
	}
	ln, err := net.Listen("tcp", sc.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on sentinel.addr %s: %w", sc.Addr, err)
	}
	return srv, ln, nil
}

// watchSentinel tells the listener of every state change (for
// +switch-master) and every renew interval (liveness changes without a
// state change), until ctx ends.
func (a *Agent) watchSentinel(ctx context.Context, srv *sentinel.Server) {
	for {
		_, changed := a.fsm.State()
		srv.Changed()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(a.timing.Renew):
		}
	}
}

// sentinelTLS is the listener's TLS configuration: the node's certificate
// when sentinel.tls is set, else nil (plain RESP).
func (a *Agent) sentinelTLS() *tls.Config {
	if a.tls == nil || !a.cfg.Sentinel.TLS {
		return nil
	}
	return a.tls.ServerConfigNoClientAuth()
}
