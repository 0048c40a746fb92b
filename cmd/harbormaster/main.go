// Command harbormaster is the harbormaster agent and its operator CLI.
//
// Exit codes: 0 success; 1 the request was refused or failed; 2 bad usage,
// bad config or invalid input; 3 the agent or the cluster's leader could not
// be reached, or `status` found it knows no leader (retry later); 4 not
// authorized: the certificate was refused or its role does not allow the
// command; 5 (agent) the Raft store in the data dir is damaged.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/harbormaster/harbormaster/agent"
	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/internal/version"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnavailable = 3
	exitDenied      = 4
	// exitStore: the agent's Raft store (raft.db) is damaged.
	exitStore = 5
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
	var se *agent.StoreError
	var nl noLeaderError
	switch {
	case errors.As(err, &se):
		return exitStore
	case errors.As(err, &ce), errors.As(err, &ue), strings.HasPrefix(err.Error(), "unknown command"):
		return exitUsage
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nl):
		return exitUnavailable
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.InvalidArgument, codes.NotFound:
			return exitUsage
		case codes.PermissionDenied, codes.Unauthenticated:
			return exitDenied
		case codes.Unavailable, codes.DeadlineExceeded:
			if handshakeRefused(st.Message()) {
				return exitDenied
			}
			return exitUnavailable
		}
	}
	return exitFailed
}

func errMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable:
			if handshakeRefused(st.Message()) {
				return "not authorized: the TLS handshake failed (" + st.Message() + "); check --ca-file, --cert-file and --key-file (docs/security.md)"
			}
			if plainText && strings.Contains(st.Message(), "connection") {
				return "unavailable: " + st.Message() + " (no --ca-file, --cert-file, --key-file given: if the agent runs TLS, give them or set HARBORMASTER_CA_FILE, HARBORMASTER_CERT_FILE and HARBORMASTER_KEY_FILE)"
			}
			return "unavailable: " + st.Message()
		case codes.PermissionDenied, codes.Unauthenticated:
			return "not authorized: " + st.Message()
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
		Version:       version.Get().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	g.register(root)
	root.AddCommand(agentCmd(), versionCmd(g),
		statusCmd(g), membersCmd(g), rolesCmd(g), specCmd(g), joinCmd(g), removeCmd(g),
		transferLeaderCmd(g), eventsCmd(g), moveCmd(g), drainCmd(g, true), drainCmd(g, false), explainCmd(g), tlsCmd(g), validateCmd(g), snapshotCmd(g), recoverCmd(g), importCmd(), genDocsCmd(), internalCmd())
	addTLSCommands(root, rotateLeaseKeyCmd(g))
	addExamples(root)
	return root
}

// plainText is set when the CLI dialled without TLS files.
var plainText bool

// handshakeRefused recognizes gRPC's message for a connection whose TLS
// handshake failed or was refused by the peer.
func handshakeRefused(msg string) bool {
	for _, s := range []string{"authentication handshake failed", "tls: ", "certificate", "first record does not look like a TLS handshake"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
