package agent

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/harbormaster/harbormaster/fsm"
)

// Event recorder bounds.
const (
	// eventQueue is how many events wait for the log at most; beyond it
	// new ones are dropped (and counted).
	eventQueue = 256
	// eventQueueBytes bounds the events waiting, by fsm.EventSize; beyond
	// it new ones are dropped (and counted) too.
	eventQueueBytes = 256 << 10
	// eventTimeout bounds one event's proposal.
	eventTimeout = 2 * time.Second
	// eventFlush bounds how long a stopping agent keeps trying to commit
	// the events still queued.
	eventFlush = 500 * time.Millisecond
)

// recorder puts the agent's own events (failover phases, service and Redis
// changes, fences, VIP conflicts) into the log without making the caller
// wait for Raft: a cut-off node cannot commit them, and an actuator must
// never block on that. One goroutine, owned by Run, proposes them in order.
type recorder struct {
	ch      chan fsm.Event
	propose func(context.Context, fsm.Command) (uint64, error)
	log     *slog.Logger
	dropped atomic.Int64
	queued  atomic.Int64 // bytes of the events in ch, by fsm.EventSize
}

func newRecorder(propose func(context.Context, fsm.Command) (uint64, error), log *slog.Logger) *recorder {
	return &recorder{ch: make(chan fsm.Event, eventQueue), propose: propose, log: log}
}

// Record queues e, its text cut to the log's bounds (fsm.Event.Bounded).
// It never blocks: when the queue holds eventQueue events or
// eventQueueBytes, e is dropped.
func (r *recorder) Record(e fsm.Event) {
	e = e.Bounded()
	n := int64(fsm.EventSize(e))
	if r.queued.Add(n) <= eventQueueBytes {
		select {
		case r.ch <- e:
			return
		default:
		}
	}
	r.queued.Add(-n)
	if r.dropped.Add(1) == 1 {
		r.log.Warn("event queue full; dropping events until the log takes them again", "kind", e.Kind)
	}
}

// Dropped counts the events dropped because the queue was full.
func (r *recorder) Dropped() int64 { return r.dropped.Load() }

// run proposes the queued events until ctx ends, then tries the ones still
// queued for at most eventFlush.
func (r *recorder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			r.flush()
			return
		case e := <-r.ch:
			r.one(ctx, e)
		}
	}
}

func (r *recorder) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), eventFlush)
	defer cancel()
	for {
		select {
		case e := <-r.ch:
			r.one(ctx, e)
		default:
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (r *recorder) one(ctx context.Context, e fsm.Event) {
	r.queued.Add(-int64(fsm.EventSize(e)))
	pctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	if _, err := r.propose(pctx, &fsm.RecordEvent{Event: e}); err != nil && ctx.Err() == nil {
		r.log.Debug("record event", "kind", e.Kind, "role", e.Role, "err", err)
	}
}
