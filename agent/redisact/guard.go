package redisact

import (
	"context"
	"errors"
	"time"

	"github.com/harbormaster/harbormaster/agent/act"
)

// The guard of this node's Redis (Config.StartGuard; the process side is
// agent/serviceguard/redis.go). One guard is kept ready while the spec has
// a redis-master role, with no deadline. A promotion gives it the lease's
// end less GuardAhead first (a promotion without a running guard does not
// happen), the fencer moves that deadline on with every renewal while the
// node may act as master, and the agent's own fence releases it (a fresh
// one is started for the next promotion). A killed or frozen agent gives
// no more deadlines: the guard arms the Redis's write fence at the last
// one, by its own clock, whatever the network (chaos seed 550006: a new
// master's remote demotion lost to packet loss while the old master's
// agent was stopped).

// guardCheck is how often the keeper checks that the spec still has a
// redis-master role (it is woken for everything else).
const guardCheck = 5 * time.Second

// guardDeadline converts the lease's end less GuardAhead to the guard's
// clock.
func (x *Actuator) guardDeadline(auth act.Authority) time.Duration {
	return x.monoBase + auth.LeaseUntil.Add(-GuardAhead).Sub(x.wallBase)
}

// mayMaster reports whether this node may act as the Redis master now,
// with the fence's margin (a deadline is given or moved only then).
func (x *Actuator) mayMaster(auth act.Authority) bool {
	st, _ := x.node.State()
	r, ok := Role(st)
	return ok && auth.MayAct(st.Assignment(r.Name), FenceAhead)
}

// startDeadline is the first deadline of a guard that starts (read once it
// is ready): the current one while a promotion is guarded and the node may
// act as master, else none.
func (x *Actuator) startDeadline() time.Duration {
	x.mu.Lock()
	armed := x.guardArmed
	x.mu.Unlock()
	auth := x.node.Authority()
	if !armed || !x.mayMaster(auth) {
		return 0
	}
	return x.guardDeadline(auth)
}

// liveGuard returns the running guard, starting one when there is none or
// it exited.
func (x *Actuator) liveGuard() (Guard, error) {
	x.guardStart.Lock()
	defer x.guardStart.Unlock()
	x.mu.Lock()
	g := x.guard
	x.mu.Unlock()
	if g != nil && !exited(g) {
		return g, nil
	}
	g, err := x.cfg.StartGuard(x.startDeadline)
	if err != nil {
		return nil, err
	}
	if g == nil {
		return nil, errors.New("redis guard: none started")
	}
	x.mu.Lock()
	x.guard = g
	x.mu.Unlock()
	act.Poke(x.guardWake) // the keeper watches the new one
	return g, nil
}

func exited(g Guard) bool {
	select {
	case <-g.Done():
		return true
	default:
		return false
	}
}

// armGuard gives the guard the deadline of auth before a promotion; an
// error means no guard runs and the promotion must not happen. Without
// Config.StartGuard there is nothing to arm.
func (x *Actuator) armGuard(auth act.Authority) error {
	if x.cfg.StartGuard == nil {
		return nil
	}
	g, err := x.liveGuard()
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.guardArmed = true
	x.mu.Unlock()
	if err := g.Renew(x.guardDeadline(auth)); err != nil {
		return err
	}
	if exited(g) {
		return errors.New("redis guard: exited as it was given its deadline")
	}
	return nil
}

// renewGuard moves the armed guard's deadline to auth's lease while the
// node may act as master; otherwise the guard keeps the deadline it has.
func (x *Actuator) renewGuard(auth act.Authority) {
	x.mu.Lock()
	g, armed := x.guard, x.guardArmed
	x.mu.Unlock()
	if g == nil || !armed || !x.mayMaster(auth) {
		return
	}
	if err := g.Renew(x.guardDeadline(auth)); err != nil {
		x.cfg.Log.Warn("Redis guard not renewed", "err", err)
	}
}

// disarmGuard releases the armed guard once this agent fenced its Redis
// itself; the keeper starts the next one.
func (x *Actuator) disarmGuard() {
	x.mu.Lock()
	g, armed := x.guard, x.guardArmed
	if armed {
		x.guard, x.guardArmed = nil, false
	}
	x.mu.Unlock()
	if armed && g != nil {
		x.releaseGuard(g, true)
	}
}

// releaseGuard releases g in the background (Release waits for the process
// to exit); Run waits for it before it returns. restart wakes the keeper
// after.
func (x *Actuator) releaseGuard(g Guard, restart bool) {
	x.releases.Add(1)
	go func() {
		defer x.releases.Done()
		if err := g.Release(); err != nil {
			x.cfg.Log.Warn("Redis guard release", "err", err)
		}
		if restart {
			act.Poke(x.guardWake)
		}
	}()
}

// guardKeeper keeps a guard running while the spec has a redis-master
// role (and releases it when the role goes), starting a new one when the
// last exited: it fenced the Redis, or died.
func (x *Actuator) guardKeeper(ctx context.Context) {
	if x.cfg.StartGuard == nil {
		return
	}
	backoff := time.Duration(0)
	for {
		wait := guardCheck
		var done <-chan struct{}
		if x.manages() {
			g, err := x.liveGuard()
			if err != nil {
				if backoff == 0 {
					x.cfg.Log.Error("Redis guard not started; this node's Redis is not promoted without one", "err", err)
				}
				backoff = min(max(2*backoff, time.Second), 30*time.Second)
				wait = backoff
			} else {
				if backoff > 0 {
					x.cfg.Log.Info("Redis guard started")
				}
				backoff = 0
				done = g.Done()
			}
		} else {
			x.mu.Lock()
			g, armed := x.guard, x.guardArmed
			if !armed {
				x.guard = nil
			}
			x.mu.Unlock()
			if g != nil && !armed {
				x.releaseGuard(g, false)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-done:
			x.guardExited(done)
		case <-x.guardWake:
		case <-time.After(wait):
		}
	}
}

// guardExited forgets a guard that exited by itself and says so.
func (x *Actuator) guardExited(done <-chan struct{}) {
	x.mu.Lock()
	g, armed := x.guard, x.guardArmed
	mine := g != nil && g.Done() == done
	if mine {
		x.guard = nil
	}
	x.mu.Unlock()
	if !mine {
		return
	}
	if armed {
		x.cfg.Log.Warn("Redis guard exited while it guarded a promotion (it fenced the Redis at its deadline, or died); starting another")
		if !x.mayMaster(x.node.Authority()) {
			// Its deadline passed: the promotion it guarded is over
			// (the next one arms the next guard).
			x.mu.Lock()
			x.guardArmed = false
			x.mu.Unlock()
		}
		return
	}
	x.cfg.Log.Warn("Redis guard exited by itself; starting another")
}

// dropGuardOnExit ends the guard as the actuator stops: released when this
// node's Redis is fenced or no promotion is guarded; left running when a
// master could not be fenced, so that it fences at the lease's end (the
// agent's exit closes its stdin).
func (x *Actuator) dropGuardOnExit() {
	x.mu.Lock()
	g, armed, fenced := x.guard, x.guardArmed, x.fenced
	x.guard, x.guardArmed = nil, false
	x.mu.Unlock()
	if g != nil {
		if armed && !fenced {
			x.cfg.Log.Warn("stopping with this node's Redis master not fenced; its guard fences it at the lease's end")
		} else {
			x.releaseGuard(g, false)
		}
	}
	x.releases.Wait()
}
