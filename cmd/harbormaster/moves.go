package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

func cliActor() string {
	if u := os.Getenv("USER"); u != "" {
		return "cli:" + u
	}
	return "cli"
}

// waitRoles polls ListRoles until done says the roles are as wanted.
func waitRoles(ctx context.Context, c hmv1.AdminClient, done func([]*hmv1.Role) bool) error {
	for {
		r, err := c.ListRoles(ctx, &hmv1.ListRolesRequest{})
		if err != nil {
			return err
		}
		if done(r.Roles) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func moveCmd(g *globals) *cobra.Command {
	var noWait, acceptLoss bool
	cmd := &cobra.Command{
		Use:   "move ROLE NODE",
		Short: "Hand a role over to NODE at once (planned switchover), and wait until NODE holds it",
		Args:  exactArgs(2, "ROLE and NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			role, node := args[0], args[1]
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				start := time.Now()
				r, err := c.Move(ctx, &hmv1.MoveRequest{Role: role, Node: node, Actor: cliActor(), AcceptDataLoss: acceptLoss})
				if err != nil {
					return err
				}
				if !r.Already && !noWait {
					if err := waitRoles(ctx, c, func(rs []*hmv1.Role) bool {
						for _, x := range rs {
							if x.Name == role {
								return x.Holder == node
							}
						}
						return false
					}); err != nil {
						return fmt.Errorf("waiting for %s to hold %s: %w", node, role, err)
					}
				}
				took := time.Since(start)
				if g.json {
					return printJSON(cmd.OutOrStdout(), map[string]any{"role": role, "node": node, "already": r.Already, "took_ms": took.Milliseconds()})
				}
				switch {
				case r.Already:
					fmt.Fprintf(cmd.OutOrStdout(), "%s already holds %s\n", node, role)
				case noWait:
					fmt.Fprintf(cmd.OutOrStdout(), "move of %s to %s requested (log index %d)\n", role, node, r.Index)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "%s moved to %s in %d ms\n", role, node, took.Milliseconds())
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the move is requested")
	cmd.Flags().BoolVar(&acceptLoss, "accept-data-loss", false,
		"redis-master roles: move to a node whose Redis has not synced with the last master, losing what that master acknowledged since (also promotes a role kept vacant by unsynced_promotion: never)")
	return cmd
}

func drainCmd(g *globals, drain bool) *cobra.Command {
	use, short := "drain NODE", "Move every role off NODE and give it none until undrained; wait until it holds none"
	if !drain {
		use, short = "undrain NODE", "Let NODE hold roles again"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			node := args[0]
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				start := time.Now()
				if _, err := c.Drain(ctx, &hmv1.DrainRequest{Node: node, Drained: drain, Actor: cliActor()}); err != nil {
					return err
				}
				if drain {
					if err := waitRoles(ctx, c, func(rs []*hmv1.Role) bool {
						for _, x := range rs {
							if x.Holder == node {
								return false
							}
						}
						return true
					}); err != nil {
						return fmt.Errorf("waiting for %s to hand its roles over: %w", node, err)
					}
				}
				took := time.Since(start)
				if g.json {
					return printJSON(cmd.OutOrStdout(), map[string]any{"node": node, "drained": drain, "took_ms": took.Milliseconds()})
				}
				if drain {
					fmt.Fprintf(cmd.OutOrStdout(), "%s drained: it holds no role (%d ms)\n", node, took.Milliseconds())
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "%s undrained\n", node)
				}
				return nil
			})
		},
	}
}
