package redisctl

import (
	"strconv"
	"testing"
	"time"

	"github.com/harbormaster/harbormaster/internal/resp"
)

// These tests pin what Redis (7.0) does with CLIENT PAUSE WRITE, the
// behaviour the package documentation's fence decision rests on. Where a
// test ends the pause itself (CLIENT UNPAUSE), the pause is a minute long,
// and a write it holds shows as a blocked client: the test waits for that
// instead of sleeping, and a blocked client still there after the checks
// proves the pause lasted through them, whatever the machine's speed.

// pauseHeld is a CLIENT PAUSE longer than any test that ends it by hand.
const pauseHeld = "60000"

// TestClientPauseBlocksWritesAndServesReplicas: a write sent during CLIENT
// PAUSE WRITE gets no reply (it is queued, not refused), reads are served,
// and the master still serves replication: a replica attached during the
// pause completes its full sync.
func TestClientPauseBlocksWritesAndServesReplicas(t *testing.T) {
	m := startRedis(t)
	mc := m.client()
	must(t, mc, "SET", "before", "1")
	must(t, mc, "CLIENT", "PAUSE", pauseHeld, "WRITE")

	w := send(t, mc, "SET", "k", "during-pause")
	waitBlocked(t, mc, 1)
	if w.answered(0) {
		t.Fatalf("SET during CLIENT PAUSE WRITE answered %v (err %v), want it blocked", w.v, w.err)
	}
	if got := must(t, mc, "GET", "before"); got != "1" {
		t.Fatalf("GET during the pause = %v, want 1", got)
	}

	r := startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.port))
	rc := r.client()
	waitLinked(t, rc)
	if got := must(t, rc, "GET", "before"); got != "1" {
		t.Fatalf("replica synced during the pause: GET before = %v, want 1", got)
	}
	if n := blockedClients(t, mc); n != 1 {
		t.Fatalf("%d blocked clients after the replica synced, want the SET still blocked: the pause did not hold", n)
	}

	must(t, mc, "CLIENT", "UNPAUSE")
	if got := w.wait(t); got != "OK" {
		t.Fatalf("blocked SET after CLIENT UNPAUSE = %v, want OK (executed late)", got)
	}
	waitValue(t, rc, "k", "during-pause")
}

// TestClientPauseExpiryExecutesBlockedWrites: when the pause simply ends,
// the queued write runs and is acknowledged, long after the pause began. A
// fence that expires by itself hands an old master's clients late writes
// if its demotion did not come in time.
func TestClientPauseExpiryExecutesBlockedWrites(t *testing.T) {
	m := startRedis(t)
	mc := m.client()
	start := time.Now() // before the pause begins: only a lower bound follows
	must(t, mc, "CLIENT", "PAUSE", "400", "WRITE")
	w := send(t, mc, "SET", "k", "late")
	if got := w.wait(t); got != "OK" {
		t.Fatalf("SET blocked by an expiring pause = %v, want OK", got)
	}
	if d := w.at.Sub(start); d < 400*time.Millisecond {
		t.Fatalf("SET answered %s after the pause began, want after the 400 ms pause", d)
	}
	if got := must(t, mc, "GET", "k"); got != "late" {
		t.Fatalf("GET k = %v, want late", got)
	}
}

// TestClientPauseThenDemote pins what happens to writes blocked by a pause
// when the paused master is made a replica (REPLICAOF) during the pause:
// REPLICAOF is accepted at once; the blocked write stays blocked (no reply)
// while the pause lasts; the server completes its full sync from the new
// master but does not apply the stream after it until the pause ends; when
// the pause ends the write is processed from scratch and refused with
// READONLY: it is neither executed nor acknowledged, on either server.
func TestClientPauseThenDemote(t *testing.T) {
	old := startRedis(t)
	nu := startRedis(t)
	oc, nc := old.client(), nu.client()
	must(t, nc, "SET", "from-new", "1")

	must(t, oc, "CLIENT", "PAUSE", pauseHeld, "WRITE")
	w := send(t, oc, "SET", "k", "blocked")
	waitBlocked(t, oc, 1)

	// Accepted at once: must's 5 s deadline is far shorter than the pause.
	must(t, oc, "REPLICAOF", "127.0.0.1", strconv.Itoa(nu.port))
	if r := repl(t, oc); r.Role != "replica" || r.MasterPort != nu.port {
		t.Fatalf("after REPLICAOF during the pause: %+v, want a replica of %d", r, nu.port)
	}
	// The full sync (RDB) completes during the pause, but the command
	// stream that follows is not applied while the pause lasts: the master
	// link is a client like the others (only replicas of this server are
	// never paused).
	waitLinked(t, oc)
	waitValue(t, oc, "from-new", "1")
	must(t, nc, "SET", "from-new", "2")
	target := repl(t, nc).Offset
	// The master link's SET arrives and is held: a second blocked client.
	waitBlocked(t, oc, 2)
	if got := must(t, oc, "GET", "from-new"); got != "1" {
		t.Fatalf("paused replica applied the stream: GET from-new = %v, want 1 until the pause ends", got)
	}
	if r := repl(t, oc); r.Offset >= target {
		t.Fatalf("paused replica at offset %d, want behind its master's %d", r.Offset, target)
	}
	if n := blockedClients(t, oc); n != 2 {
		t.Fatalf("%d blocked clients after the checks, want the SET and the master link still blocked: the pause did not hold", n)
	}

	must(t, oc, "CLIENT", "UNPAUSE")
	re, ok := w.wait(t).(*resp.Error)
	if !ok || re.Prefix() != "READONLY" {
		t.Fatalf("blocked SET after demotion and unpause = %v, want a READONLY error", w.v)
	}
	waitValue(t, oc, "from-new", "2")
	for _, c := range []*Client{oc, nc} {
		if got := must(t, c, "GET", "k"); got != nil {
			t.Fatalf("GET k on %s = %v, want no key: the refused write must not exist", c.Addr(), got)
		}
	}
}

// TestClientPauseThenFence: a write queued by CLIENT PAUSE is checked
// again when the pause ends, so the write fence armed during the pause
// refuses it (NOREPLICAS). Writes arriving while the fence is armed are
// refused at once even under the pause: the min-replicas check comes before
// the pause in Redis's command processing.
func TestClientPauseThenFence(t *testing.T) {
	m := startRedis(t)
	mc := m.client()
	must(t, mc, "CLIENT", "PAUSE", pauseHeld, "WRITE")
	w := send(t, mc, "SET", "k", "blocked")
	waitBlocked(t, mc, 1)
	if err := mc.PauseWrites(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Answered at once: within replyCode's 5 s, while the minute-long
	// pause still holds the first SET.
	if code := replyCode(t, mc, "SET", "k2", "x"); code != "NOREPLICAS" {
		t.Fatalf("SET under pause and fence: reply code %q, want NOREPLICAS", code)
	}
	if n := blockedClients(t, mc); n != 1 {
		t.Fatalf("%d blocked clients after the refusal, want the first SET still blocked: the pause did not hold", n)
	}
	must(t, mc, "CLIENT", "UNPAUSE")
	re, ok := w.wait(t).(*resp.Error)
	if !ok || re.Prefix() != "NOREPLICAS" {
		t.Fatalf("blocked SET after unpause under the fence = %v, want NOREPLICAS", w.v)
	}
	if got := must(t, mc, "GET", "k"); got != nil {
		t.Fatalf("GET k = %v, want no key", got)
	}
}
