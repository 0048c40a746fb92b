package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/harbormaster/harbormaster/agent/leasing"
	"github.com/harbormaster/harbormaster/fsm"
	"github.com/harbormaster/harbormaster/lease"
	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// The lease key is the leader's own command: Cluster.Propose refuses it
// whoever sends it, so no node (or anyone reaching the API) can install a
// key it knows.
func TestProposeRefusesLeaseKey(t *testing.T) {
	secret, err := newLeaseSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := fsm.Encode(&fsm.SetLeaseKey{ID: 2, Secret: secret, Actor: "n2"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&server{}).Propose(context.Background(), &hmv1.ProposeRequest{Command: b})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Propose(lease-key): %v, want PermissionDenied", err)
	}
}

func TestNextLeaseBoot(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	floor := uint64(now.Sub(leaseBootEpoch) / time.Second)
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(t.TempDir(), "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	for name, store := range map[string]raft.StableStore{"inmem": raft.NewInmemStore(), "bolt": bolt} {
		first, err := nextLeaseBoot(store, now)
		if err != nil || first != floor {
			t.Fatalf("%s: first boot %d, %v; want the seconds since 2020 (%d)", name, first, err, floor)
		}
		// Restarts within the second still increase it.
		second, _ := nextLeaseBoot(store, now)
		third, _ := nextLeaseBoot(store, now.Add(time.Millisecond))
		if second != first+1 || third != first+2 {
			t.Fatalf("%s: boots %d %d %d, want consecutive", name, first, second, third)
		}
		// A clock set back does not lower it.
		if back, _ := nextLeaseBoot(store, now.AddDate(-3, 0, 0)); back != first+3 {
			t.Fatalf("%s: boot after the clock went back: %d, want %d", name, back, first+3)
		}
	}
	// A wiped data dir (the counter lost) starts above every boot of the
	// runs before it that restarted at most once a second: three restarts
	// within a minute, then a wipe a minute later.
	wiped := raft.NewInmemStore()
	old := raft.NewInmemStore()
	var last uint64
	for i := range 3 {
		last, _ = nextLeaseBoot(old, now.Add(time.Duration(i)*10*time.Second))
	}
	if b, _ := nextLeaseBoot(wiped, now.Add(time.Minute)); b <= last {
		t.Fatalf("boot after a wipe %d, not above the last boot before it %d", b, last)
	}
	// Sequence numbers of this build start above those of the builds
	// before it (a 40-bit shift, boots in hours): a rolling upgrade keeps
	// the replay windows accepting.
	if hours := uint64(now.Sub(leaseBootEpoch) / time.Hour); (last << 32) <= (hours+1000)<<40|(1<<40-1) {
		t.Fatalf("first sequence number %d of this build is not above an older build's %d", last<<32, (hours+1000)<<40|(1<<40-1))
	}
	full := raft.NewInmemStore()
	_ = full.SetUint64(leaseBootKey, leasing.MaxBoot)
	if _, err := nextLeaseBoot(full, now); err == nil {
		t.Fatal("a boot counter beyond MaxBoot accepted")
	}
}

// Leases replies stay small whatever is asked: the table holds members
// only, and queries about other nodes are not recorded.
func TestLeasesReplyBoundedAt7VotersAnd200Roles(t *testing.T) {
	now := time.Now()
	g := lease.NewGrants(now.Add(-time.Hour), 0.1, 0)
	var ms []leasing.Member
	for i := 1; i <= 7; i++ {
		id := fmt.Sprintf("node-%02d", i)
		ms = append(ms, leasing.Member{ID: id, Voter: true, APIAddr: "10.0.0.1:7201"})
		if _, _, err := g.Renew(id, uint64(now.UnixNano()), lease.MaxTTL, now); err != nil {
			t.Fatal(err)
		}
	}
	// The leader asks about 200 roles' holders: the members' past
	// generations, and nodes that left (or never were).
	req := &hmv1.LeasesRequest{}
	for r := 0; r < 200; r++ {
		node := ms[r%7].ID
		if r%2 == 1 {
			node = fmt.Sprintf("gone-node-with-a-long-name-%03d", r)
		}
		req.Queries = append(req.Queries, &hmv1.LeaseQuery{Node: node, Gen: uint64(now.UnixNano()) - uint64(r+1)})
	}
	resp, err := leasesReply("node-01", g, ms, req, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Grants) != 7 || g.Len() != 7 {
		t.Fatalf("reply has %d grants, table %d nodes; want the 7 members", len(resp.Grants), g.Len())
	}
	reqSize, respSize := proto.Size(req), proto.Size(resp)
	t.Logf("7 voters, 200 roles: request %d bytes, reply %d bytes (gRPC limit %d)", reqSize, respSize, 4<<20)
	if respSize > 4<<10 || reqSize > 64<<10 {
		t.Fatalf("request %d bytes, reply %d bytes: not far below gRPC's 4 MiB", reqSize, respSize)
	}
	// A request at the query bound is still far below the limit, and one
	// above it is refused.
	big := &hmv1.LeasesRequest{}
	for i := 0; i < maxLeaseQueries; i++ {
		big.Queries = append(big.Queries, &hmv1.LeaseQuery{Node: fmt.Sprintf("%063d", i), Gen: 1 << 62})
	}
	if n := proto.Size(big); n > 1<<20 {
		t.Fatalf("a request of %d queries is %d bytes", maxLeaseQueries, n)
	}
	big.Queries = append(big.Queries, big.Queries[0])
	if _, err := leasesReply("node-01", g, ms, big, now); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%d queries: %v, want InvalidArgument", len(big.Queries), err)
	}
	if g.Len() != 7 {
		t.Fatalf("table grew to %d", g.Len())
	}
}

// The data dir holds the lease key (Raft log, snapshots): only the agent's
// user may read it, whether it is new or was created open.
func TestPrepareDataDirIsPrivate(t *testing.T) {
	root := t.TempDir()
	fresh := filepath.Join(root, "a", "n1")
	open := filepath.Join(root, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{fresh, open} {
		if err := prepareDataDir(dir); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: mode %v, want 0700", dir, fi.Mode().Perm())
		}
	}
}
