package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/agent/redisact"
	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/agent/service"
	"github.com/harbormaster/harbormaster/agent/serviceact"
	"github.com/harbormaster/harbormaster/agent/serviceguard"
	"github.com/harbormaster/harbormaster/agent/vipact"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/spec"
	"github.com/harbormaster/harbormaster/vip"
)

// nodeView is the agent as its actuators see it (act.Node).
type nodeView struct{ a *Agent }

var _ act.Node = nodeView{}

func (n nodeView) ID() string                           { return n.a.cfg.NodeID }
func (n nodeView) State() (*fsm.State, <-chan struct{}) { return n.a.fsm.State() }
func (n nodeView) Propose(ctx context.Context, c fsm.Command) (uint64, error) {
	return n.a.Propose(ctx, c)
}
func (n nodeView) Record(e fsm.Event)  { n.a.events.Record(e) }
func (n nodeView) Fence(reason string) { n.a.fenceSelf(reason) }
func (n nodeView) Nudge()              { act.Poke(n.a.releaseWake) }

// Authority implements act.Node: this node's lease and stopping flag, now.
func (n nodeView) Authority() act.Authority {
	a := n.a
	now := time.Now()
	gen, valid, until := a.leases.Lease(now)
	return act.Authority{Node: a.cfg.NodeID, LeaseGen: gen, LeaseValid: valid, LeaseUntil: until,
		Stopping: a.stopping.Load(), Now: now}
}

// buildActuators makes the actuators that need nothing opened: the service
// roles' (when the node has services) and the Redis master's (when it has a
// redis endpoint). The VIP actuator needs netlink and comes in Run.
func (a *Agent) buildActuators() error {
	view := nodeView{a}
	if names := a.cfg.ServiceNames(); len(names) > 0 {
		backends := map[string]service.Actuator{}
		for _, name := range names {
			b, err := a.opts.serviceBackend(name, a.cfg.Services[name])
			if err != nil {
				return &config.Error{Path: a.cfg.Path, Field: "services." + name, Msg: err.Error()}
			}
			backends[name] = b
		}
		startGuard, err := a.opts.guardStarter()
		if err != nil {
			return err
		}
		a.services = serviceact.New(view, serviceact.Config{Backends: backends, Tick: a.timing.Renew,
			Log: a.log.With("component", "service"), OnActed: a.failoverActed, StartGuard: startGuard})
		a.actuators = append(a.actuators, a.services)
	}
	if a.cfg.Redis != nil {
		startGuard, err := a.opts.redisGuardStarter(*a.cfg.Redis)
		if err != nil {
			return err
		}
		r, err := redisact.New(view, redisact.Config{Redis: *a.cfg.Redis, Log: a.log.With("component", "redis"), OnActed: a.failoverActed,
			StartGuard: startGuard})
		if err != nil {
			return &config.Error{Path: a.cfg.Path, Field: "redis", Msg: err.Error()}
		}
		a.actuators = append(a.actuators, r)
	}
	return nil
}

// serviceBackend builds the backend of a service role: Options'
// ServiceActuator in tests, agent/service otherwise.
func (o Options) serviceBackend(role string, c service.Config) (service.Actuator, error) {
	if o.ServiceActuator != nil {
		return o.ServiceActuator(role, c)
	}
	return service.New(role, c)
}

// guardStarter returns how the service actuator starts the guard of a
// running service (agent/serviceguard): the agent's own binary (or
// Options.ServiceGuardBin) with the hidden command, sharing the agent's
// stderr. Backends without a config of agent/service (fakes) get no guard.
func (o Options) guardStarter() (func(string, service.Actuator, service.Env, time.Duration, func() time.Duration) (serviceact.Guard, error), error) {
	exe := o.ServiceGuardBin
	if exe == "" {
		if o.ServiceActuator != nil {
			return nil, nil // tests with fake backends: nothing to guard
		}
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("service guard: the agent's own binary: %w", err)
		}
	}
	return func(role string, back service.Actuator, env service.Env, stopTimeout time.Duration, deadline func() time.Duration) (serviceact.Guard, error) {
		c, ok := service.ConfigOf(back)
		if !ok {
			return nil, nil
		}
		g, err := serviceguard.Start(exe, serviceguard.Spec{Role: role, Service: c, Env: env, StopTimeout: stopTimeout}, os.Stderr, deadline)
		if err != nil {
			return nil, err
		}
		return g, nil
	}, nil
}

// redisGuardStarter returns how the Redis actuator starts the guard of
// this node's Redis (agent/serviceguard with a Redis spec): the agent's own
// binary (or Options.ServiceGuardBin), sharing the agent's stderr; none
// with Options.NoRedisGuard.
func (o Options) redisGuardStarter(c redisctl.Config) (func(func() time.Duration) (redisact.Guard, error), error) {
	if o.NoRedisGuard {
		return nil, nil
	}
	exe := o.ServiceGuardBin
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("redis guard: the agent's own binary: %w", err)
		}
	}
	return func(deadline func() time.Duration) (redisact.Guard, error) {
		g, err := serviceguard.Start(exe, serviceguard.Spec{Role: string(spec.TypeRedisMaster), Redis: &c, StopTimeout: redisGuardFence},
			os.Stderr, deadline)
		if err != nil {
			return nil, err
		}
		return g, nil
	}, nil
}

// redisGuardFence bounds the Redis guard's attempts at the fence.
const redisGuardFence = 5 * time.Second

// openVIPs builds the VIP actuator when the node has a vip_interface:
// netlink and raw sockets in production, the fakes from Options in tests.
// The returned cleanup closes what it opened.
func (a *Agent) openVIPs() (cleanup func(), err error) {
	cleanup = func() {}
	if a.cfg.VIPInterface == "" {
		return cleanup, nil
	}
	k, ann := a.opts.VIPKernel, a.opts.VIPAnnouncer
	if k == nil {
		nl, err := vip.NewNetlink()
		if err != nil {
			return nil, err
		}
		k, cleanup = nl, nl.Close
	}
	if ann == nil {
		w := vip.NewWire()
		prev := cleanup
		ann, cleanup = w, func() { w.Close(); prev() }
	}
	fence := a.opts.VIPFence
	if fence == nil && a.opts.VIPKernel == nil {
		// Production: the kernel-side dead-man (vip.NFTFence). The
		// manager closes it when it stops.
		f, err := vip.NewNFTFence()
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("%w (the VIP fence needs nf_tables; vip_interface %q is set)", err, a.cfg.VIPInterface)
		}
		fence = f
	}
	if hw, err := k.HardwareAddr(a.cfg.VIPInterface); err == nil {
		a.vipMAC = hw.String()
	}
	g := a.cfg.GARP
	a.vips = vipact.New(nodeView{a}, vipact.Config{Iface: a.cfg.VIPInterface, MAC: a.vipMAC, Kernel: k, Announcer: ann,
		Manager: vip.Config{GARPRepeat: g.Repeat, GARPInterval: time.Duration(g.Interval), GARPRefresh: time.Duration(g.Refresh), Fence: fence},
		Tick:    a.timing.Renew, Term: a.raft.CurrentTerm, Log: a.log.With("component", "vip"), OnActed: a.failoverActed})
	a.actuators = append([]act.Actuator{a.vips}, a.actuators...)
	return cleanup, nil
}

// actuatorsFor returns the actuators that decide whether role may be
// released: the one of its type, or every one when the role is no longer
// in the spec (its type is unknown: ask them all).
func (a *Agent) actuatorsFor(st *fsm.State, role string) []act.Actuator {
	r, ok := st.Spec.Role(role)
	if !ok {
		return a.actuators
	}
	for _, x := range a.actuators {
		if x.Type() == r.Type {
			return []act.Actuator{x}
		}
	}
	return nil
}

// releasable asks the actuators whether the node has stopped acting for
// role, so that its release may be committed.
func (a *Agent) releasable(ctx context.Context, st *fsm.State, role string) bool {
	for _, x := range a.actuatorsFor(st, role) {
		if !x.Releasable(ctx, st, role) {
			return false
		}
	}
	return true
}

// wakeActuators tells every actuator and the release loop that the node's
// authority changed.
func (a *Agent) wakeActuators() {
	act.Poke(a.releaseWake)
	for _, x := range a.actuators {
		x.Wake()
	}
}

// fenceSelf stops renewing this node's lease until it has surely lapsed
// everywhere (two leases), so that every role it holds is dropped here at
// the lease's end (act.MayAct turns false as the lease runs out) and moved
// by the coordinator. The fence runs on the monotonic clock: a wall-clock
// step neither ends it early nor makes it last.
func (a *Agent) fenceSelf(reason string) {
	d := 2*a.timing.Lease + a.timing.Renew
	a.fenceUntil.Store(int64(a.clock.Mono() + d))
	a.log.Warn("fencing: letting the lease lapse", "reason", reason, "for", d.String())
	a.events.Record(fsm.Event{Time: a.clock.Now().UnixMilli(), Kind: fsm.EventService, Node: a.cfg.NodeID,
		Actor: a.cfg.NodeID, Message: "node fences itself (lease left to lapse): " + reason})
	a.wakeActuators()
}

// fenced reports whether the node is inside a self-fence.
func (a *Agent) fenced() bool { return int64(a.clock.Mono()) < a.fenceUntil.Load() }

// reannounce starts a new announcement burst for the VIPs this node holds:
// a member that did not answer the previous renewal answers again (a
// partition healed), and hosts on its side may still have the old
// holder's MAC for an address.
func (a *Agent) reannounce() {
	if a.vips != nil {
		a.log.Info("a peer answers again; re-announcing held VIPs")
		a.vips.Reannounce()
	}
}

// releaseLoop answers release requests: when the coordinator asks this
// node to let a role go, the role's actuator stops acting for it (removes
// the address, stops the service, fences Redis and hands its writes over)
// and only then is the release committed.
func (a *Agent) releaseLoop(ctx context.Context) {
	for {
		_, changed := a.fsm.State()
		asked := releasePass(ctx, a.cfg.NodeID, a.State, a.releasable, func(ctx context.Context, c *fsm.Release) error {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := a.Propose(pctx, c)
			var rej *fsm.RejectedError
			if err != nil && !errors.As(err, &rej) && ctx.Err() == nil {
				a.log.Warn("release failed; retrying", "role", c.Role, "epoch", c.Epoch, "err", err)
			} else if err == nil {
				a.log.Info("released role", "role", c.Role, "epoch", c.Epoch)
			}
			return err
		})
		var retry <-chan time.Time // a release to retry: nil (never) while none is asked
		if asked {
			retry = time.After(a.timing.Renew)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-a.releaseWake:
		case <-retry:
		}
	}
}

// releasePass proposes the release of each role node holds and is asked to
// release, once its actuators have let go, and reports whether any was
// asked. Each role is judged on the state as it is then, not as the pass
// began: every proposal takes a Raft round, and a node asked to let 160
// roles go spent seconds on them while other roles came to it. Handed the
// pass's first state, the VIP actuator's Releasable set the addresses to
// that old view and removed the new roles' addresses; the target loop put
// them back from the current state: every address flapped until the pass
// ended (5-node, 200-role lab, `harbormaster-lab scale`).
func releasePass(ctx context.Context, node string, state func() *fsm.State,
	releasable func(context.Context, *fsm.State, string) bool, propose func(context.Context, *fsm.Release) error) (asked bool) {
	for _, as := range state().HeldBy(node) {
		if !as.Releasing {
			continue
		}
		st := state()
		now := st.Assignment(as.Role)
		if now.Holder != node || !now.Releasing || now.Epoch != as.Epoch {
			continue // released, moved or renewed meanwhile
		}
		asked = true
		if !releasable(ctx, st, as.Role) {
			continue // the actuator is letting go; it nudges us
		}
		_ = propose(ctx, &fsm.Release{Role: as.Role, Node: node, Epoch: now.Epoch,
			Reason: "release requested", Cause: now.ReleaseCause, Time: time.Now().UnixMilli()})
	}
	return asked
}
