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
// node may act as master, and once the Redis is seen fenced (or down) the
// guard is released and the next one kept ready. A killed or frozen agent
// gives no more deadlines: the guard arms the Redis's write fence at the
// last one, by its own clock, whatever the network (chaos seed 550006: a
// new master's remote demotion lost to packet loss while the old master's
// agent was stopped).
//
// Arms are numbered (armGen): the end of an episode seen on one goroutine
// (the fencer's fence) must not disarm the guard of a promotion the pass
// goroutine made meanwhile.

// guardCheck is how often the keeper looks at the spec when nothing woke
// it (Wake does on every renewal and state change).
const guardCheck = 5 * time.Second

// guardQuick is how long a guard must run for its exit not to make the
// keeper back off (a guard that dies right after "ready").
const guardQuick = time.Second

// guardDeadline converts the lease's end less GuardAhead to the guard's
// clock.
func (x *Actuator) guardDeadline(auth act.Authority) time.Duration {
	return x.clock.Deadline(auth.LeaseUntil.Add(-GuardAhead))
}

// mayMaster reports whether this node may act as the Redis master now,
// with the fence's margin (a deadline is given or moved only then).
func (x *Actuator) mayMaster(auth act.Authority) bool {
	st, _ := x.node.State()
	r, ok := Role(st)
	return ok && auth.MayAct(st.Assignment(r.Name), FenceAhead)
}

// startDeadline is the first deadline of a guard that starts (read once it
// is ready): none while no promotion is guarded; the current one while the
// node may act as master; else the last one given, passed or not (the
// guard then fences at once: the Redis has not been seen fenced since).
func (x *Actuator) startDeadline() time.Duration {
	x.mu.Lock()
	armed, last := x.guardArmed, x.lastDeadline
	x.mu.Unlock()
	if !armed {
		return 0
	}
	if auth := x.node.Authority(); x.mayMaster(auth) {
		return x.guardDeadline(auth)
	}
	return last
}

// startGuard starts a guard unless one runs, for the keeper.
func (x *Actuator) startGuard() (Guard, error) {
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
	x.guard, x.guardStarted = g, time.Now()
	x.mu.Unlock()
	act.Poke(x.wake) // a promotion waiting for a guard goes on
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

// armGuard gives the running guard the deadline of auth before a
// promotion; an error means no guard runs and the promotion must not
// happen (the keeper starts one and wakes the pass). Without
// Config.StartGuard there is nothing to arm.
func (x *Actuator) armGuard(auth act.Authority) error {
	if x.cfg.StartGuard == nil {
		return nil
	}
	d := x.guardDeadline(auth)
	x.mu.Lock()
	g := x.guard
	if g != nil && !exited(g) {
		x.guardArmed, x.lastDeadline = true, d
		x.armGen++
	}
	x.mu.Unlock()
	if g == nil || exited(g) {
		act.Poke(x.guardWake)
		return errors.New("redis guard: none running (the keeper starts one)")
	}
	if err := g.Renew(d); err != nil {
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
	d := x.guardDeadline(auth)
	x.mu.Lock()
	if x.guard == g && x.guardArmed {
		x.lastDeadline = max(x.lastDeadline, d)
	}
	x.mu.Unlock()
	if err := g.Renew(d); err != nil {
		x.cfg.Log.Warn("Redis guard not renewed", "err", err)
	}
}

// disarmGuard releases the guard armed at gen (no newer arm since) once
// this node's Redis was seen fenced or down; the keeper starts the next.
func (x *Actuator) disarmGuard(gen uint64) {
	x.mu.Lock()
	g, armed := x.guard, x.guardArmed && x.armGen == gen
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
// role, starting a new one when the last exited (it fenced the Redis, or
// died), backing off when starts fail or guards die young. Without the
// role it releases the guard, armed or not: an unmanaged Redis (a
// migration's rollback: docs/migrate.md) is never fenced by the agent.
func (x *Actuator) guardKeeper(ctx context.Context) {
	if x.cfg.StartGuard == nil {
		return
	}
	backoff := time.Duration(0)
	var retry time.Time // no start before
	for {
		wait := guardCheck
		var done <-chan struct{}
		if !x.manages() {
			x.dropGuard()
		} else if until := time.Until(retry); until > 0 {
			wait = until
		} else if g, err := x.startGuard(); err != nil {
			if backoff == 0 {
				x.cfg.Log.Error("Redis guard not started; this node's Redis is not promoted without one", "err", err)
			}
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			retry, wait = time.Now().Add(backoff), backoff
		} else {
			done = g.Done()
		}
		select {
		case <-ctx.Done():
			return
		case <-done:
			if x.guardExited(done) {
				backoff = min(max(2*backoff, time.Second), 30*time.Second)
				retry = time.Now().Add(backoff)
			} else {
				backoff = 0
			}
		case <-x.guardWake:
		case <-time.After(wait):
		}
	}
}

// dropGuard releases the guard, armed or not (the spec has no
// redis-master role).
func (x *Actuator) dropGuard() {
	x.mu.Lock()
	g := x.guard
	x.guard, x.guardArmed = nil, false
	x.mu.Unlock()
	if g != nil {
		x.releaseGuard(g, false)
	}
}

// guardExited forgets a guard that exited by itself (releasing its handle),
// says so, and reports whether it died young. An armed guard's successor
// gets its deadline (startDeadline).
func (x *Actuator) guardExited(done <-chan struct{}) (young bool) {
	x.mu.Lock()
	g, armed := x.guard, x.guardArmed
	mine := g != nil && g.Done() == done
	if mine {
		x.guard = nil
		young = time.Since(x.guardStarted) < guardQuick
	}
	x.mu.Unlock()
	if !mine {
		return false
	}
	x.releaseGuard(g, false) // closes the agent's end of its pipe
	if armed {
		x.cfg.Log.Warn("Redis guard exited while it guarded a promotion (it fenced the Redis at its deadline, or died); starting another")
	} else {
		x.cfg.Log.Warn("Redis guard exited by itself; starting another")
	}
	return young
}

// dropGuardOnExit ends the guard as the actuator stops: released when this
// node's Redis is fenced, no promotion is guarded, or the spec has no
// redis-master role; left running when a master could not be fenced, so
// that it fences at the lease's end (the agent's exit closes its stdin).
func (x *Actuator) dropGuardOnExit() {
	manages := x.manages()
	x.mu.Lock()
	g, armed, fenced := x.guard, x.guardArmed, x.fenced
	x.guard, x.guardArmed = nil, false
	x.mu.Unlock()
	if g != nil {
		if manages && armed && !fenced {
			x.cfg.Log.Warn("stopping with this node's Redis master not fenced; its guard fences it at the lease's end")
		} else {
			x.releaseGuard(g, false)
		}
	}
	x.releases.Wait()
}
