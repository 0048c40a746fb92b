package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	hmv1 "github.com/harbormaster/harbormaster/proto/harbormaster/v1"
)

// addTLSCommands adds cmds under the root's `tls` command group, creating
// the group if no other file registered it.
func addTLSCommands(root *cobra.Command, cmds ...*cobra.Command) {
	for _, c := range root.Commands() {
		if c.Name() == "tls" {
			c.AddCommand(cmds...)
			return
		}
	}
	group := &cobra.Command{Use: "tls", Short: "Cluster keys and certificates"}
	group.AddCommand(cmds...)
	root.AddCommand(group)
}

// rotateLeaseKeyCmd is `harbormaster tls rotate-lease-key`: the leader
// installs a new cluster lease key (the HMAC key of lease datagrams). The
// previous key stays accepted until the next rotation, so a second
// rotation right after the first locks out any node that has not applied
// the first yet; and the key itself is never printed.
func rotateLeaseKeyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-lease-key",
		Short: "Install a new cluster lease key (the key that authenticates lease datagrams); the previous one is accepted until the next rotation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(func(ctx context.Context, c hmv1.AdminClient) error {
				resp, err := c.RotateLeaseKey(ctx, &hmv1.RotateLeaseKeyRequest{Actor: cliActor()})
				if err != nil {
					return err
				}
				if g.json {
					return printProto(cmd.OutOrStdout(), resp)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "lease key %d in use; key %d accepted until the next rotation\n", resp.KeyId, resp.PreviousKeyId)
				return nil
			})
		},
	}
}
