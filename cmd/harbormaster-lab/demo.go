package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/scenario"
)

// demoCmd is `make demo`: a 3-node cluster with a VIP in a fresh lab, a live
// view, a crash of the VIP holder, the failover, cleanup on exit or Ctrl-C.
func demoCmd() *cobra.Command {
	var cf clusterFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show a VIP failover live: 3 nodes in network namespaces, crash of the holder, cleanup",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if err := needRoot(); err != nil {
				return err
			}
			co, err := cf.options("demo")
			if err != nil {
				return err
			}
			if _, err := lab.Sweep(); err != nil {
				fmt.Fprintln(os.Stderr, "harbormaster-lab: sweeping stale labs:", err)
			}
			ctx := cmd.Context()
			say := func(format string, args ...any) { fmt.Printf("\n\033[1m== "+format+"\033[0m\n", args...) }
			say("Building the lab: a switch namespace with a bridge, nodes n1-n3, client c1 (198.18.0.0/24)")
			c, err := scenario.StartCluster(ctx, co)
			if err != nil {
				return err
			}
			defer func() {
				say("Tearing the lab down (every namespace and process)")
				err = errors.Join(err, c.Close())
			}()
			v, err := c.WaitStable(ctx, time.Second, 30*time.Second)
			if err != nil {
				return err
			}
			for _, n := range c.Nodes() {
				fmt.Printf("  %s  %-13s %s  agent log %s\n", n.Name, n.IP, n.MAC, c.LogPath(n.Name))
			}
			fmt.Printf("  VIP %s, the client connects to %s:80 every 10 ms\n", scenario.VIP, scenario.VIP.Addr())
			mode := "mutual TLS on every channel (lab CA in " + c.TLSDir() + ")"
			if c.Insecure() {
				mode = "insecure: true (no TLS, no authentication)"
			}
			fmt.Printf("  agents run with %s\n", mode)
			say("Live view (leader %s, VIP on %s at epoch %d)", v.Leader, v.Holder, v.Epoch)
			live(ctx, c, 2*time.Second)
			holder := v.Holder
			say("Crash of %s, the VIP holder: its switch port goes down and everything in it is killed", holder)
			crashed, err := c.Crash(holder)
			if err != nil {
				return err
			}
			live(ctx, c, 2500*time.Millisecond)
			if ctx.Err() != nil {
				return nil
			}
			fmt.Printf("\n  client outage through the VIP: %d ms; the client's ARP entry now points at %s\n",
				outageSince(c, crashed).Milliseconds(), arpOwner(c))
			say("Restoring %s: it rejoins without taking the VIP back (no preemption)", holder)
			if err := c.Restore(holder); err != nil {
				return err
			}
			live(ctx, c, 2*time.Second)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

// live prints one status line every 250 ms for d.
func live(ctx context.Context, c *scenario.Cluster, d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		holders := c.Holders()
		kernel := "nobody"
		if len(holders) > 0 {
			kernel = strings.Join(holders, "+")
		}
		client := "no answer"
		if a, ok := c.Prober.LastSuccess(); ok && time.Since(a.Start) < 100*time.Millisecond {
			client = "answered by " + a.Node
		}
		leader, lease := "-", "-"
		for _, n := range c.Nodes() {
			if !c.Running(n.Name) {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			st, err := c.Status(sctx, n.Name)
			cancel()
			if err != nil {
				continue
			}
			if st.Leader != "" {
				leader = st.Leader
			}
			if len(holders) == 1 && n.Name == holders[0] {
				lease = fmt.Sprintf("%d ms", st.LeaseRemainingMs)
			}
		}
		fmt.Printf("  %s  VIP in the kernel of: %-6s  holder's lease left: %-7s  leader: %-3s  client: %s\n",
			time.Now().Format("15:04:05.000"), kernel, lease, leader, client)
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// outageSince is the longest run of failed client connects after t.
func outageSince(c *scenario.Cluster, t time.Time) time.Duration {
	var longest time.Duration
	var runStart time.Time
	for _, a := range c.Prober.Since(t) {
		if !a.OK {
			if runStart.IsZero() {
				runStart = a.Start
			}
			continue
		}
		if !runStart.IsZero() {
			longest = max(longest, a.Start.Sub(runStart))
			runStart = time.Time{}
		}
	}
	return longest
}

func arpOwner(c *scenario.Cluster) string {
	mac, ok := c.Lab.ARPCache("c1", scenario.VIP.Addr())
	if !ok {
		return "nothing"
	}
	for _, n := range c.Nodes() {
		if n.MAC.String() == mac.String() {
			return n.Name + " (" + mac.String() + ")"
		}
	}
	return mac.String()
}
