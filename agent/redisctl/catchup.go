package redisctl

import (
	"context"
	"sync"
	"time"
)

// siblingRead bounds the read of one sibling (a node that is down must not
// hold the promotion up).
const siblingRead = 100 * time.Millisecond

// CatchUp brings this replica up to the most advanced of its siblings
// (other replicas' announce addresses) before a promotion: the ranking that
// chose it used offsets reported up to a second ago, and after a diskless
// full sync Redis streams to a replica only from its first acknowledgement
// after the transfer (up to a second later), so a sibling may hold writes
// this one lacks. It reads every sibling at once; when one in this
// replica's history (same replication id) is ahead, it follows that
// sibling (a partial resync from its backlog) and waits, until ctx ends,
// for its offset. It returns the sibling followed ("" when none was ahead)
// and the offset reached. The caller promotes afterwards either way.
func (c *Client) CatchUp(ctx context.Context, siblings []string) (from string, offset int64, err error) {
	me, err := c.Replication(ctx)
	if err != nil {
		return "", -1, err
	}
	if me.Role != "replica" {
		return "", me.Offset, nil
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	best, bestOff := "", me.Offset
	for _, addr := range siblings {
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			rc, err := Remote(c.cfg, addr)
			if err != nil {
				return
			}
			defer rc.Close()
			rctx, cancel := context.WithTimeout(ctx, siblingRead)
			r, err := rc.Replication(rctx)
			cancel()
			if err != nil || r.Role != "replica" || r.ReplID != me.ReplID {
				return
			}
			mu.Lock()
			if r.Offset > bestOff {
				best, bestOff = addr, r.Offset
			}
			mu.Unlock()
		}(addr)
	}
	wg.Wait()
	if best == "" {
		return "", me.Offset, nil
	}
	if err := c.Follow(ctx, best); err != nil {
		return best, me.Offset, err
	}
	if err := c.WaitCaughtUp(ctx, bestOff); err != nil {
		return best, me.Offset, err
	}
	return best, bestOff, nil
}
