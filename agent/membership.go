package agent

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"

	"github.com/harbormaster/harbormaster/fsm"
)

// inConfig reports whether this node is in the Raft configuration.
func (a *Agent) inConfig() bool { return a.isMember(a.cfg.NodeID) }

// isMember reports whether node id is in the Raft configuration.
func (a *Agent) isMember(id string) bool {
	f := a.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(id) {
			return true
		}
	}
	return false
}

// joinLoop asks the members listed under `join` to add this node, until one
// does. A node that is already a member (bootstrapped, or joined before a
// restart) skips it.
func (a *Agent) joinLoop(ctx context.Context) {
	if len(a.cfg.Join) == 0 {
		return
	}
	backoff := 500 * time.Millisecond
	warned := false
	for {
		if a.inConfig() {
			return
		}
		for _, addr := range a.cfg.Join {
			err := a.joinVia(ctx, addr)
			if err == nil {
				a.log.Info("joined the cluster", "via", addr)
				return
			}
			if !warned {
				a.log.Warn("join failed; retrying", "via", addr, "err", err)
				warned = true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (a *Agent) joinVia(ctx context.Context, addr string) error {
	c, err := a.conns.get(addr)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = hmv1.NewAdminClient(c).Join(cctx, &hmv1.JoinRequest{Id: a.cfg.NodeID, RaftAddress: a.raftAddr,
		ApiAddress: a.apiAddr, Voter: a.cfg.IsVoter()})
	return err
}

// registerLoop keeps this node's registration in the state current: at
// start, after a removal and re-join, when an address changed, or when a
// reload changed the checks (then the results of the checks that stay are
// kept: RegisterNode.KeepChecks).
func (a *Agent) registerLoop(ctx context.Context) {
	failing := false
	// Register at least once per process start, even when nothing
	// changed: it resets this node's check results and Redis report to
	// unknown, so that nothing is placed on a verdict of a previous run.
	fresh := true
	for {
		st, changed := a.fsm.State()
		checkNames := a.currentCheckNames()
		n, ok := st.Nodes[a.cfg.NodeID]
		want := fresh || !ok || n.RaftAddr != a.raftAddr || n.APIAddr != a.apiAddr || n.Voter != a.cfg.IsVoter() ||
			n.Witness != a.cfg.Witness || n.LeaseTTLMillis != a.timing.Lease.Milliseconds() || n.Leaving ||
			n.VIP != (a.cfg.VIPInterface != "") || n.MAC != a.vipMAC ||
			!sameSet(n.Services, a.cfg.ServiceNames()) || !sameSet(namesOf(st.Checks[a.cfg.NodeID]), checkNames) ||
			n.Redis != a.redisAnnounce() || n.Sentinel != a.sentinelAnnounce()
		want = want && !a.stopping.Load()
		if want && a.inConfig() {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			idx, err := a.Propose(pctx, &fsm.RegisterNode{Node: a.cfg.NodeID, RaftAddr: a.raftAddr, APIAddr: a.apiAddr, VIP: a.cfg.VIPInterface != "", MAC: a.vipMAC,
				Voter: a.cfg.IsVoter(), Witness: a.cfg.Witness, LeaseTTLMillis: a.timing.Lease.Milliseconds(),
				Checks: checkNames, KeepChecks: !fresh && len(st.Checks[a.cfg.NodeID]) > 0, Services: a.cfg.ServiceNames(), Redis: a.redisAnnounce(), Sentinel: a.sentinelAnnounce(),
				Time: time.Now().UnixMilli()})
			cancel()
			switch {
			case err == nil:
				a.log.Info("registered")
				failing, fresh = false, false
				wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				a.waitApplied(wctx, idx) // do not register twice while it travels
				cancel()
				continue
			case !failing && ctx.Err() == nil:
				a.log.Info("registration waits for a leader", "err", err)
				failing = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(a.timing.Renew):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-a.registerWake:
		case <-time.After(5 * time.Second): // re-check membership now and then
		}
	}
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

func namesOf(m map[string]fsm.CheckResult) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func (a *Agent) redisAnnounce() string {
	if a.cfg.Redis == nil {
		return ""
	}
	return a.cfg.Redis.AnnounceAddr()
}

func (a *Agent) sentinelAnnounce() string {
	if a.cfg.Sentinel == nil {
		return ""
	}
	return a.cfg.Sentinel.AnnounceAddr()
}
