package redisctl

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// handOverBound is how long WaitReplicasCaughtUp may take after a burst of
// writes: far below the second after which replicas acknowledge by
// themselves, which is all the master's own view tells.
const handOverBound = 250 * time.Millisecond

// TestWaitReplicasCaughtUp: a master fenced right after a burst of writes
// sees its two replicas' processed offsets within milliseconds (reading
// them), and each replica has every write when the wait returns; with a
// replica that stopped replicating, the wait ends with ctx and names it.
func TestWaitReplicasCaughtUp(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	_, _, b, mc, ac, bc := replicated(t, ctx)
	for round := range 6 {
		if err := mc.Unpause(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			must(t, mc, "RPUSH", "list", strconv.Itoa(round*200+i))
		}
		if err := mc.PauseWrites(ctx); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := mc.WaitReplicasCaughtUp(ctxT(t, 5*time.Second)); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if d := time.Since(start); d > handOverBound {
			t.Errorf("round %d: the replicas were known caught up after %s, want <= %s", round, d.Round(time.Millisecond), handOverBound)
		}
		want := int64((round + 1) * 200)
		for _, c := range []*Client{ac, bc} {
			if n, err := c.do(ctx, "LLEN", "list"); err != nil || n != want {
				t.Fatalf("round %d: %s has LLEN %v, %v when the wait returned; want %d", round, c.Addr(), n, err, want)
			}
		}
	}
	// b freezes (SIGSTOP): the master still lists it online with the offset
	// it last acknowledged, and b does not answer; the wait ends with ctx
	// and names it.
	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := mc.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	must(t, mc, "RPUSH", "list", "last")
	if err := mc.PauseWrites(ctx); err != nil {
		t.Fatal(err)
	}
	err := mc.WaitReplicasCaughtUp(ctxT(t, 500*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), b.addr) {
		t.Fatalf("WaitReplicasCaughtUp with %s frozen: %v, want an error naming it", b.addr, err)
	}
	if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// On a replica: nothing to wait for.
	if err := ac.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatalf("on a replica: %v", err)
	}
}
