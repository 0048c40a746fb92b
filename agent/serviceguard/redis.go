package serviceguard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/harbormaster/harbormaster/agent/redisctl"
	"github.com/harbormaster/harbormaster/agent/service"
)

// The guard of a Redis master. The Redis actuator (agent/redisact) fences
// its Redis itself ahead of its lease's end; a killed or frozen agent does
// not, and the next holder's remote demotion is best effort (a lost
// connect, and the old master takes writes beside the new one: chaos seed
// 550006). So each agent that manages a redis-master role keeps one guard
// ready, and gives it a deadline when it promotes its Redis: the guard
// arms the write fence at that deadline unless a later one came, by its own
// process and clock.
//
// The guard is started before it is needed (a start costs 30-80 ms of
// exec and Go start-up, too much for the promotion's critical path) and
// waits with no deadline. Watch's rule for an agent that goes before any
// deadline (act at once) fences a Redis whose agent died while it guarded
// no promotion: what the agent's own exit does to a master (fenceOnExit),
// and harmless to a replica (its fence is armed while it follows).

// redisRetry is the pause between two attempts of the Redis guard's
// fence (a Redis busy with a fork, a connect refused during a restart).
const redisRetry = 20 * time.Millisecond

// redisAttempt bounds one attempt of the fence.
const redisAttempt = 500 * time.Millisecond

// redisFence is the backend of a Redis guard: Stop arms the write fence of
// the node's Redis, retrying until it holds or ctx ends. It runs no starts.
type redisFence struct{ cli *redisctl.Client }

func newRedisFence(c redisctl.Config) (*redisFence, error) {
	cli, err := redisctl.New(c)
	if err != nil {
		return nil, err
	}
	return &redisFence{cli: cli}, nil
}

var errRedisStart = errors.New("the Redis guard runs no starts")

func (r *redisFence) Start(context.Context, service.Env) error { return errRedisStart }

func (r *redisFence) Status(context.Context, service.Env) (bool, error) {
	return false, service.ErrNoStatus
}

// Stop arms the fence (PauseWrites), attempt after attempt until one
// succeeds or ctx ends; the error then is the last attempt's.
func (r *redisFence) Stop(ctx context.Context, _ service.Env) error {
	for attempts := 1; ; attempts++ {
		actx, cancel := context.WithTimeout(ctx, redisAttempt)
		err := r.cli.PauseWrites(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Redis %s: write fence not armed after %d attempts: %w", r.cli.Addr(), attempts, err)
		case <-time.After(redisRetry):
		}
	}
}

func (r *redisFence) Close() error { return r.cli.Close() }
