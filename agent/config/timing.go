package config

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// Timing holds the Raft and lease durations a node runs with.
type Timing struct {
	// Heartbeat, Election and LeaderLease go to raft.Config.
	Heartbeat   time.Duration
	Election    time.Duration
	LeaderLease time.Duration
	// Lease is the node lease: how long a node may act for its roles
	// after the send time of its last renewal a majority of voters granted.
	Lease time.Duration
	// Renew is how often a node renews its lease with the voters (quorum
	// lease, agent/leasing).
	Renew time.Duration
}

// Profiles are the named timing profiles. Raft's timeouts follow DESIGN.md
// §4. Node leases are quorum leases renewed directly with the voters
// (docs/design-quorum-lease.md), so they no longer have to outlast a leader
// election: lan renews 5 times per 500 ms lease; fast 4 times per 200 ms for
// a quiet, low-latency network; wan tolerates links with tens of
// milliseconds of latency and loss.
var Profiles = map[string]Timing{
	"lan":  {Heartbeat: 250 * time.Millisecond, Election: 250 * time.Millisecond, LeaderLease: 125 * time.Millisecond, Lease: 500 * time.Millisecond, Renew: 100 * time.Millisecond},
	"fast": {Heartbeat: 100 * time.Millisecond, Election: 100 * time.Millisecond, LeaderLease: 50 * time.Millisecond, Lease: 200 * time.Millisecond, Renew: 50 * time.Millisecond},
	"wan":  {Heartbeat: time.Second, Election: time.Second, LeaderLease: 500 * time.Millisecond, Lease: 3 * time.Second, Renew: 500 * time.Millisecond},
}

// Upper bounds of the timing overrides. MaxLease is the longest lease a
// voter grants (agent/leasing.MaxTTL); a longer one could not be asked for.
const (
	MaxLease       = 10 * time.Minute
	MaxRaftTimeout = time.Minute
	raftReason     = "a longer Raft timeout leaves the cluster without a leader for that long after a failure"
)

// ProfileNames returns the profile names, sorted.
func ProfileNames() []string {
	var n []string
	for k := range Profiles {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// TimingProfile returns the profile named by c.Profile with c.Timing's
// overrides applied, after checking the values fit together.
func (c *Config) TimingProfile() (Timing, error) {
	t, ok := Profiles[c.Profile]
	if !ok {
		return Timing{}, fieldErr("profile", "%q is not a profile; use one of %s", c.Profile, strings.Join(ProfileNames(), ", "))
	}
	o := c.Timing
	for _, v := range []struct {
		field  string
		val    conf.Duration
		dst    *time.Duration
		max    time.Duration
		reason string
	}{
		{"timing.heartbeat", o.Heartbeat, &t.Heartbeat, MaxRaftTimeout, raftReason},
		{"timing.election", o.Election, &t.Election, MaxRaftTimeout, raftReason},
		{"timing.leader_lease", o.LeaderLease, &t.LeaderLease, MaxRaftTimeout, raftReason},
		{"timing.lease", o.Lease, &t.Lease, MaxLease, "voters grant no longer lease, and a holder cut off keeps acting for its whole lease"},
		{"timing.renew", o.Renew, &t.Renew, MaxRaftTimeout, "renew several times per lease"},
	} {
		if v.val < 0 || (v.val > 0 && time.Duration(v.val) < 5*time.Millisecond) {
			return Timing{}, fieldErr(v.field, "%s is too short; use at least 5ms", time.Duration(v.val))
		}
		if err := atMost(v.field, time.Duration(v.val), v.max, v.reason); err != nil {
			return Timing{}, err
		}
		if v.val > 0 {
			*v.dst = time.Duration(v.val)
		}
	}
	switch {
	case t.LeaderLease > t.Heartbeat:
		return Timing{}, fieldErr("timing.leader_lease", "%s exceeds the heartbeat %s; Raft needs leader_lease <= heartbeat", t.LeaderLease, t.Heartbeat)
	case t.Election < t.Heartbeat:
		return Timing{}, fieldErr("timing.election", "%s is below the heartbeat %s; Raft needs election >= heartbeat", t.Election, t.Heartbeat)
	case t.Renew*3 > t.Lease:
		return Timing{}, fieldErr("timing.renew", "%s leaves fewer than 3 renewals per lease of %s; lower renew or raise lease", t.Renew, t.Lease)
	}
	return t, nil
}

// String renders the timing for logs.
func (t Timing) String() string {
	return fmt.Sprintf("heartbeat=%s election=%s leader_lease=%s lease=%s renew=%s", t.Heartbeat, t.Election, t.LeaderLease, t.Lease, t.Renew)
}
