package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// printRedis prints a redis-master role's replication state under the
// roles table: the history a new master must hold, each member's Redis
// (with the master's view of its replicas), why the role is vacant, and
// the redis-config warnings.
func printRedis(w io.Writer, r *hmv1.Role) {
	fmt.Fprintf(w, "\nRedis of role %s (unsynced_promotion: %s, min_synced_replicas: %d)\n", r.Name, r.UnsyncedPromotion, r.MinSyncedReplicas)
	if h := r.RedisHistory; h != nil {
		fmt.Fprintf(w, "  history: %s's Redis, replication id %.8s, offset %d (reported %s)\n", h.Node, h.ReplId, h.Offset, clock(h.TimeUnixMs))
	}
	if r.Unsynced != "" {
		fmt.Fprintf(w, "  VACANT since %s: %s\n", clock(r.UnsyncedSinceUnixMs), r.Unsynced)
	}
	view := map[string]*hmv1.RedisReplica{}
	for _, n := range r.Redis {
		for _, x := range n.Replicas {
			if x.Node != "" {
				view[x.Node] = x
			}
		}
	}
	t := table(w)
	fmt.Fprintln(t, "  NODE\tREDIS\tLINK\tOFFSET\tHISTORY\tAS ITS MASTER SEES IT")
	for _, n := range r.Redis {
		role, link := n.Role, "-"
		if n.Error != "" {
			role = "unreadable: " + n.Error
		}
		if n.Role == "replica" {
			link = map[bool]string{true: "up", false: "down"}[n.LinkUp]
			role += " of " + n.Master
		}
		hist := "no (never synced with it)"
		switch {
		case r.RedisHistory == nil:
			hist = "-"
		case n.Synced && n.BehindBytes < 0:
			hist = "yes (its own data, reloaded from its files)"
		case n.Synced && n.BehindBytes > 0:
			hist = fmt.Sprintf("yes, %d B behind", n.BehindBytes)
		case n.Synced:
			hist = "yes"
		}
		seen := "-"
		if x := view[n.Node]; x != nil {
			sync := "out of sync"
			if x.InSync {
				sync = "in sync"
			}
			seen = fmt.Sprintf("%s, %s since %s, lag %d B / %s", x.State, sync, clock(x.SinceUnixMs), x.LagBytes, ms(x.LagMs))
		}
		fmt.Fprintf(t, "  %s\t%s\t%s\t%d\t%s\t%s\n", n.Node, role, link, n.Offset, hist, seen)
	}
	t.Flush()
	printRedisWarnings(w, r.Redis)
}

// printRedisWarnings prints the redis-config warnings of each node.
func printRedisWarnings(w io.Writer, nodes []*hmv1.RedisNode) {
	var lines []string
	for _, n := range nodes {
		for _, x := range n.Warnings {
			lines = append(lines, fmt.Sprintf("  %s: %s", n.Node, x))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "redis-config warnings:\n%s\n", strings.Join(lines, "\n"))
	}
}

// redisLine sums up a node's own Redis for status.
func redisLine(n *hmv1.RedisNode) string {
	if n.Error != "" {
		return "unreadable: " + n.Error
	}
	s := fmt.Sprintf("%s, offset %d", n.Role, n.Offset)
	if n.Role == "replica" {
		s += fmt.Sprintf(", of %s, link %s", n.Master, map[bool]string{true: "up", false: "down"}[n.LinkUp])
	}
	if len(n.Replicas) > 0 {
		in := 0
		for _, x := range n.Replicas {
			if x.InSync {
				in++
			}
		}
		s += fmt.Sprintf(", %d of %d replicas in sync", in, len(n.Replicas))
	}
	if !n.Synced {
		s += "; not synced with the role's history"
	}
	if len(n.Warnings) > 0 {
		s += fmt.Sprintf("; %d redis-config warning(s)", len(n.Warnings))
	}
	return s
}

func clock(unixMs int64) string {
	if unixMs <= 0 {
		return "-"
	}
	return time.UnixMilli(unixMs).UTC().Format("15:04:05Z")
}
