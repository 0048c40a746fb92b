// Command harbormaster is the harbormaster agent and its operator CLI.
//
// Exit codes: 0 success; 1 the request was refused or failed; 2 bad usage,
// bad config or invalid input; 3 the agent or the cluster's leader could not
// be reached (retry later).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/agent/config"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnavailable = 3
)

type usageError struct{ error }

func main() {
	root := newRoot()
	err := root.Execute()
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "error:", errMessage(err))
	var ce *config.Error
	var ue usageError
	switch {
	case errors.As(err, &ce), errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, context.DeadlineExceeded):
		return exitUnavailable
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.InvalidArgument:
			return exitUsage
		case codes.Unavailable, codes.DeadlineExceeded:
			return exitUnavailable
		}
	}
	return exitFailed
}

func errMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable:
			return "unavailable: " + st.Message()
		default:
			return st.Message()
		}
	}
	return err.Error()
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "harbormaster",
		Short:         "High availability for container-registry clusters: VIPs, Redis master, active/standby services, agreed through Raft",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	g.register(root)
	root.AddCommand(agentCmd(), versionCmd(),
		statusCmd(g), membersCmd(g), rolesCmd(g), specCmd(g), joinCmd(g), removeCmd(g),
		transferLeaderCmd(g), eventsCmd(g), moveCmd(g), drainCmd(g, true), drainCmd(g, false), explainCmd(g))
	addTLSCommands(root, rotateLeaseKeyCmd(g))
	return root
}
