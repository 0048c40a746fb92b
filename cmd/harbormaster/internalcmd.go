package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/agent/serviceguard"
)

// internalCmd groups the hidden commands the agent runs of its own binary;
// they are not for operators.
func internalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "internal",
		Short:  "Commands the agent runs itself (not for operators)",
		Hidden: true,
	}
	cmd.AddCommand(&cobra.Command{
		Use:    "service-guard",
		Hidden: true,
		Short:  "The dead-man of one running service, or of the node's Redis: stops it (fences it) at the lease's end when the agent did not (agent/serviceguard)",
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return serviceguard.Main(os.Stdin, os.Stdout, os.Stderr)
		},
	})
	return cmd
}
