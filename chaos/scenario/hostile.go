package scenario

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/harbormaster/harbormaster/agent/leasing"
	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/internal/tlsid"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// hostile-lan: an attacker on the lab's LAN, in the client namespace c2,
// with no certificate of the cluster, tries every door of the agents while
// the usual observers (sampler, prober in c1) watch the VIP. Each kind of
// attack is one phase; after each phase the observer (the harness, with
// the lab's admin certificate, and the leader's node certificate for the
// grant tables) reads the cluster again and blames every change on that
// phase. Nothing the attacker does may be accepted.

const (
	// attacker is the lab host the attacks come from.
	attacker = "c2"
	// hostileSettle is how long after a phase the observer waits before
	// judging it: two leases, so that a renewal refused or a role moved
	// because of the attack has happened.
	hostileSettle = time.Second
	// floodConns is how many idle TCP connections a flood opens (spread
	// over the nodes), floodHold how long it holds them: longer than the
	// agents' 5 s handshake timeout.
	floodConns = 2000
	floodHold  = 6 * time.Second
	// forgedNames is how many made-up node names lease-names renews.
	forgedNames = 20000
	// attackCallTimeout bounds one attacker call or connection.
	attackCallTimeout = 3 * time.Second
)

// hostile is one run of the attacks.
type hostile struct {
	c   *Cluster
	tr  *Trial
	v   View
	dir string // foreign CAs
	// foreign are the attacker's client certificates by name.
	foreign map[string]*tls.Config
	// forged are the lease generations the attacker forged for real
	// nodes (besides math.MaxUint64): seeing one in a grant table or a
	// status is an acceptance.
	forged map[uint64]bool
	// last is the observer's view after the previous phase.
	last hostileSnap

	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn // the observer's grant-table readers, by "as>node"
	tlsCreds map[string]credentials.TransportCredentials
	guardErr error // the first refusal of the guard in an attacker dial
}

func hostileCluster(co *ClusterOptions, _ Options) error {
	co.Clients = max(co.Clients, 2)
	return nil
}

func hostileLAN(ctx context.Context, c *Cluster, v View, tr *Trial, _ Options) error {
	h := &hostile{c: c, tr: tr, v: v, dir: filepath.Join(c.Dir(), "hostile-tls"), forged: map[uint64]bool{},
		conns: map[string]*grpc.ClientConn{}, tlsCreds: map[string]credentials.TransportCredentials{}}
	defer h.close()
	if err := h.guard(); err != nil {
		return err
	}
	if err := h.makeForeign(); err != nil {
		return err
	}
	var err error
	if h.last, err = h.snap(ctx, 0); err != nil {
		return fmt.Errorf("hostile-lan: first look at the cluster: %w", err)
	}
	t0 := time.Now()
	tr.Fault = t0
	phases := []struct {
		kind string
		run  func(ctx context.Context, kind string) (int, error)
	}{
		{"api-plaintext", h.apiWith(nil)},
		{"api-tls-no-cert", h.apiWith(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})},
		{"api-foreign-ca-admin", h.apiWith(h.foreign["lab/admin"])},
		{"api-foreign-ca-node", h.apiWith(h.foreign["lab/n1"])},
		{"api-other-cluster-admin", h.apiWith(h.foreign["evil/admin"])},
		{"api-other-cluster-node", h.apiWith(h.foreign["evil/n1"])},
		{"raft-plaintext", h.raftWith(nil)},
		{"raft-tls-no-cert", h.raftWith(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})},
		{"raft-foreign-ca-node", h.raftWith(h.foreign["lab/n1"])},
		{"flood-api", h.floodPort(apiPort)},
		{"flood-raft", h.floodPort(raftPort)},
	}
	for _, p := range phases {
		if err := h.phase(ctx, p.kind, p.run); err != nil {
			return err
		}
	}
	if err := h.leasePhases(ctx); err != nil {
		return err
	}
	measure(c, tr, t0)
	if hs := c.Holders(); len(hs) == 1 && hs[0] != v.Holder {
		tr.NewHolder = hs[0]
	}
	return nil
}

// phase runs one kind of attack and judges it: run counts its attempts
// and returns how many of them the cluster visibly accepted (it records a
// violation for each); afterwards every change the observer sees is
// blamed on the attack.
func (h *hostile) phase(ctx context.Context, kind string, run func(ctx context.Context, kind string) (int, error)) error {
	h.tr.attack(kind, 0)
	h.tr.accept(kind, 0)
	start := time.Now()
	kernel := h.c.Holders()
	explicit, err := run(ctx, kind)
	if err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	if err := h.guardFailed(); err != nil {
		return fmt.Errorf("%s: %w", kind, err)
	}
	h.tr.accept(kind, explicit)
	if err := Sleep(ctx, hostileSettle); err != nil {
		return err
	}
	after, err := h.snap(ctx, h.last.lastSeq)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.tr.violate("accepted: %s: the observer could not read the cluster afterwards: %v", kind, err)
		if explicit == 0 {
			h.tr.accept(kind, 1)
		}
		return nil
	}
	issues := h.judge(h.last, after, h.c.SamplesSince(start), kernel)
	for _, is := range issues {
		h.tr.violate("accepted: %s: %s", kind, is)
	}
	if explicit == 0 && len(issues) > 0 {
		h.tr.accept(kind, 1)
	}
	h.last = after
	return nil
}

// holder is the VIP's holder after the previous phase, and its epoch (the
// one before the attack if the state has none).
func (h *hostile) holder() (string, uint64) {
	var epoch uint64
	node, e, ok := strings.Cut(h.last.roles[VIPRole], "@")
	if !ok || node == "" {
		return h.v.Holder, h.v.Epoch
	}
	fmt.Sscanf(e, "%d", &epoch)
	return node, epoch
}

// guard checks, from the attacker's namespace, that it and every target
// are inside the lab.
func (h *hostile) guard() error {
	return h.c.Lab.InNamespace(attacker, func() error { return lab.GuardHere(h.nodeIPs()...) })
}

func (h *hostile) guardFailed() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.guardErr
}

// noteGuard records a refusal of the guard (the scenario stops on it).
func (h *hostile) noteGuard(err error) {
	if errors.Is(err, lab.ErrNotInLab) {
		h.mu.Lock()
		if h.guardErr == nil {
			h.guardErr = err
		}
		h.mu.Unlock()
	}
}

func (h *hostile) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		_ = c.Close()
	}
	h.conns = map[string]*grpc.ClientConn{}
}

// makeForeign writes two other clusters' CAs and certificates: one also
// named "lab" (same name, another CA) and one named "evil", each with an
// admin operator and a node n1 with n1's address.
func (h *hostile) makeForeign() error {
	h.foreign = map[string]*tls.Config{}
	n1 := h.c.Node("n1")
	for _, cluster := range []string{"lab", "evil"} {
		dir := filepath.Join(h.dir, cluster)
		if err := tlsid.WriteCluster(dir, cluster, map[string][]net.IP{"n1": {n1.IP.AsSlice()}}, tlsid.RoleAdmin); err != nil {
			return fmt.Errorf("foreign CA %s: %w", cluster, err)
		}
		for _, name := range []string{"admin", "n1"} {
			f := tlsid.FilesIn(dir, name)
			pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
			if err != nil {
				return fmt.Errorf("foreign CA %s: %w", cluster, err)
			}
			h.foreign[cluster+"/"+name] = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
				Certificates: []tls.Certificate{pair}}
		}
	}
	return nil
}

func (h *hostile) nodeIPs() []netip.Addr {
	var out []netip.Addr
	for _, n := range h.c.Nodes() {
		out = append(out, n.IP)
	}
	return out
}

// hostileSnap is what the observer reads after every phase.
type hostileSnap struct {
	leader      string
	term        uint64
	specVersion uint64
	roles       map[string]string // role -> holder@epoch
	members     []string          // "id voter" / "id nonvoter", sorted
	ownGen      map[string]uint64 // node -> its own lease generation
	// grants are the nodes' grant tables (Cluster.Leases, read as the
	// leader: only the leader may ask).
	grants  map[string][]*hmv1.LeaseGrant
	events  []*hmv1.Event // after the previous snapshot's lastSeq
	lastSeq uint64
}

// snap reads the cluster, retrying for up to 5 s (a flood or an election
// may make one read fail).
func (h *hostile) snap(ctx context.Context, since uint64) (hostileSnap, error) {
	var (
		s   hostileSnap
		err error
	)
	pollEvery(ctx, 200*time.Millisecond, 5*time.Second, func() bool {
		s, err = h.read(ctx, since)
		return err == nil
	})
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return s, err
}

func (h *hostile) read(ctx context.Context, since uint64) (hostileSnap, error) {
	s := hostileSnap{roles: map[string]string{}, ownGen: map[string]uint64{}, grants: map[string][]*hmv1.LeaseGrant{},
		lastSeq: since}
	for _, n := range h.c.Nodes() {
		st, err := h.c.Status(ctx, n.Name)
		if err != nil {
			return s, fmt.Errorf("status of %s: %w", n.Name, err)
		}
		s.ownGen[n.Name] = st.LeaseGen
		if st.IsLeader {
			s.leader, s.term, s.specVersion = n.Name, st.Term, st.SpecVersion
		}
	}
	if s.leader == "" {
		return s, errors.New("no node leads")
	}
	roles, err := h.c.Roles(ctx, s.leader)
	if err != nil {
		return s, fmt.Errorf("roles: %w", err)
	}
	for _, r := range roles.Roles {
		s.roles[r.Name] = fmt.Sprintf("%s@%d", r.Holder, r.Epoch)
	}
	ms, err := h.c.Members(ctx, s.leader)
	if err != nil {
		return s, fmt.Errorf("members: %w", err)
	}
	for _, m := range ms.Members {
		if m.InRaft {
			s.members = append(s.members, fmt.Sprintf("%s %s", m.Id, map[bool]string{true: "voter", false: "nonvoter"}[m.Voter]))
		}
	}
	sort.Strings(s.members)
	for _, n := range h.c.Nodes() {
		conn, err := h.leasesConn(s.leader, n.Name)
		if err != nil {
			return s, err
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := hmv1.NewClusterClient(conn).Leases(cctx, &hmv1.LeasesRequest{})
		cancel()
		if err != nil {
			return s, fmt.Errorf("grant table of %s: %w", n.Name, err)
		}
		s.grants[n.Name] = r.Grants
	}
	evs, err := h.c.Events(ctx, s.leader, since)
	if err != nil {
		return s, fmt.Errorf("events: %w", err)
	}
	s.events = evs
	for _, e := range evs {
		s.lastSeq = max(s.lastSeq, e.Seq)
	}
	return s, nil
}

// leasesConn is the observer's connection to node's API as the leader
// as (the Leases RPC answers only the leader), from the client c1.
func (h *hostile) leasesConn(as, node string) (*grpc.ClientConn, error) {
	key := as + ">" + node
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.conns[key]; ok {
		return c, nil
	}
	creds, err := h.credsLocked(as)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(apiAddr(h.c.Node(node)), grpc.WithTransportCredentials(creds), grpc.WithContextDialer(h.c.dial))
	if err != nil {
		return nil, fmt.Errorf("observer: %w", err)
	}
	h.conns[key] = conn
	return conn, nil
}

// creds are the observer's credentials as the lab's holder as (a node
// or an operator role of the lab's CA; insecure in an insecure lab).
func (h *hostile) creds(as string) (credentials.TransportCredentials, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.credsLocked(as)
}

func (h *hostile) credsLocked(as string) (credentials.TransportCredentials, error) {
	if h.c.Insecure() {
		return insecure.NewCredentials(), nil
	}
	if c, ok := h.tlsCreds[as]; ok {
		return c, nil
	}
	st, err := tlsid.Load(tlsid.FilesIn(h.c.TLSDir(), as), nil)
	if err != nil {
		return nil, fmt.Errorf("observer: %w", err)
	}
	c := credentials.NewTLS(st.ClientConfig(tlsid.AnyNode))
	h.tlsCreds[as] = c
	return c, nil
}

// judge lists every change from before to after that the attack may have
// caused: a role's holder or epoch, the leader or its term, the spec, the
// Raft configuration, an event by someone who is neither a node nor the
// lab's operator, a grant table holding a node that is not a member or a
// forged generation or a grant longer than a lease, a node's own lease at
// a forged generation, and the kernels' VIP holders changing in samples
// (kernel is the holder set when the phase started).
func (h *hostile) judge(before, after hostileSnap, samples []lab.Sample, kernel []string) []string {
	var out []string
	for _, r := range unionKeys(before.roles, after.roles) {
		if before.roles[r] != after.roles[r] {
			out = append(out, fmt.Sprintf("role %s changed from %q to %q", r, before.roles[r], after.roles[r]))
		}
	}
	if before.leader != after.leader || before.term != after.term {
		out = append(out, fmt.Sprintf("raft leader %s (term %d) became %s (term %d)", before.leader, before.term, after.leader, after.term))
	}
	if before.specVersion != after.specVersion {
		out = append(out, fmt.Sprintf("spec version %d became %d", before.specVersion, after.specVersion))
	}
	if !slices.Equal(before.members, after.members) {
		out = append(out, fmt.Sprintf("raft configuration %v became %v", before.members, after.members))
	}
	allowed := h.actors()
	for _, e := range after.events {
		if !allowed[e.Actor] {
			out = append(out, fmt.Sprintf("event %d (%s %s) by %q, neither a node nor the lab's operator", e.Seq, e.Kind, e.Message, e.Actor))
		}
	}
	was, is := h.leaseEvidence(before), h.leaseEvidence(after)
	for _, k := range sortedKeys(is) {
		if _, ok := was[k]; !ok {
			out = append(out, is[k])
		}
	}
	for _, ch := range lab.Holders(samples) {
		if !slices.Equal(ch.Holders, kernel) {
			out = append(out, fmt.Sprintf("the VIP's holders went from %v to %v at %s", kernel, ch.Holders, stamp(ch.At)))
			break
		}
	}
	return out
}

// actors are the event actors the cluster itself and the lab's operators
// write: node ids (and their spec seed), the lab's operator identities,
// the insecure lab's actor name.
func (h *hostile) actors() map[string]bool {
	out := map[string]bool{"chaos/scenario": true}
	for _, n := range h.c.Nodes() {
		out[n.Name], out["node:"+n.Name], out["seed:"+n.Name] = true, true, true
	}
	for _, r := range tlsid.Roles {
		out["operator:"+string(r)] = true
	}
	return out
}

// leaseEvidence lists, by a key that stays the same while the evidence
// does, every sign in s that a forged lease datagram was accepted. A
// growing count of unknown nodes is a new key.
func (h *hostile) leaseEvidence(s hostileSnap) map[string]string {
	members := map[string]bool{}
	for _, n := range h.c.Nodes() {
		members[n.Name] = true
	}
	long := h.c.Timing.Lease + time.Duration(float64(h.c.Timing.Lease)*leasing.Margin) + 300*time.Millisecond
	out := map[string]string{}
	for granter, gs := range s.grants {
		unknown := 0
		for _, g := range gs {
			switch {
			case !members[g.Node]:
				unknown++
			case g.Gen == math.MaxUint64 || h.forged[g.Gen]:
				out[fmt.Sprintf("gen %s %s %d", granter, g.Node, g.Gen)] = fmt.Sprintf("%s's grant table holds %s at the forged generation %d", granter, g.Node, g.Gen)
			}
			if rem := time.Duration(g.RemainingUs) * time.Microsecond; members[g.Node] && rem > long {
				out[fmt.Sprintf("ttl %s %s", granter, g.Node)] = fmt.Sprintf("%s grants %s for %s more, longer than a lease (%s)",
					granter, g.Node, rem.Round(time.Millisecond), h.c.Timing.Lease)
			}
		}
		if unknown > 0 {
			out[fmt.Sprintf("unknown %s %d", granter, unknown)] = fmt.Sprintf("%s's grant table holds %d nodes that are not members", granter, unknown)
		}
	}
	for node, gen := range s.ownGen {
		if gen == math.MaxUint64 || h.forged[gen] {
			out[fmt.Sprintf("own %s %d", node, gen)] = fmt.Sprintf("%s's own lease is at the forged generation %d", node, gen)
		}
	}
	return out
}

func unionKeys(a, b map[string]string) []string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	out := make([]string, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// examples joins up to three examples of a list and says how many more.
func examples(list []string) string {
	if len(list) <= 3 {
		return strings.Join(list, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(list[:3], "; "), len(list)-3)
}
