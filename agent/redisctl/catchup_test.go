package redisctl

import (
	"strconv"
	"testing"
	"time"
)

// TestCatchUpFromAMoreAdvancedSibling: b stopped replicating (its master
// address unreachable) while a kept up with the master; b catches up from
// a by a partial resync, and has every write a has.
func TestCatchUpFromAMoreAdvancedSibling(t *testing.T) {
	ctx := ctxT(t, 20*time.Second)
	_, a, b, mc, ac, bc := replicated(t, ctx)
	must(t, mc, "SET", "k1", "v")
	waitValue(t, bc, "k1", "v")
	// b loses its master (an address nobody answers); a goes on.
	if err := bc.Follow(ctx, "127.0.0.1:"+strconv.Itoa(freePort(t))); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		must(t, mc, "RPUSH", "list", strconv.Itoa(i))
	}
	waitValue(t, ac, "k1", "v")
	waitFor(t, 5*time.Second, "a has every write", func() bool {
		n, err := ac.do(ctx, "LLEN", "list")
		return err == nil && n == int64(50)
	})
	ra, rb := repl(t, ac), repl(t, bc)
	if rb.Offset >= ra.Offset || rb.ReplID != ra.ReplID {
		t.Fatalf("setup: b at %d (%s), a at %d (%s); want b behind in the same history", rb.Offset, rb.ReplID, ra.Offset, ra.ReplID)
	}
	// A sibling that is down costs at most its read bound.
	dead := "127.0.0.1:" + strconv.Itoa(freePort(t))
	from, off, err := bc.CatchUp(ctx, []string{dead, a.addr})
	if err != nil || from != a.addr || off < ra.Offset {
		t.Fatalf("CatchUp: from %q, offset %d, %v; want from %s at %d or more", from, off, err, a.addr, ra.Offset)
	}
	if n, err := bc.do(ctx, "LLEN", "list"); err != nil || n != int64(50) {
		t.Fatalf("b after the catch-up: LLEN %v, %v; want 50", n, err)
	}
	// Nobody ahead: nothing to do.
	if from, _, err := ac.CatchUp(ctx, []string{b.addr}); err != nil || from != "" {
		t.Fatalf("CatchUp of a caught-up replica: from %q, %v; want none", from, err)
	}
}
