package agent

import (
	"time"

	"github.com/harbormaster/harbormaster/lease"
)

// RecentAt is leasing.Node.Recent at a given instant (Agent.Recent reads
// time.Now).
func RecentAt(a *Agent, now time.Time) (lease.Majority, lease.View, time.Duration, bool) {
	return a.leases.Recent(now)
}
