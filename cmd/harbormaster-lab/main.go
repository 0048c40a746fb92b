// Command harbormaster-lab runs harbormaster in the network-namespace lab
// (DESIGN.md §7): the chaos scenarios, and a lab to play with.
//
//	harbormaster-lab run SCENARIO [--trials N] [--profile lan|fast] [--json]
//	harbormaster-lab chaos [--nodes 3,5,7] [--runs N] [--seed S] [--report DIR]
//	harbormaster-lab scale [--nodes 3,5] [--roles 1,20,200] [--trials N] [--json]
//	harbormaster-lab soak [--duration 1h] [--every 20s] [--sample 30s] [--json]
//	harbormaster-lab list
//	harbormaster-lab up        # a running cluster until Ctrl-C
//	harbormaster-lab status    # labs on this machine
//	harbormaster-lab down      # stop `up` labs, sweep stale ones
//	harbormaster-lab internal push|service   # helpers the scenarios run inside the lab
//
// It needs root (namespaces, nftables). Every lab lives in namespaces named
// hmlab-<pid>-..., is torn down on exit, SIGINT and SIGTERM, and sends
// traffic only inside 198.18.0.0/15.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries an exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := rootCmd()
	err := root.ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	code := 1
	var ee exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if ee.err != nil || code == 1 {
		fmt.Fprintln(os.Stderr, "harbormaster-lab:", err)
	}
	os.Exit(code)
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "harbormaster-lab",
		Short:         "Chaos scenarios and a playground for harbormaster in a network-namespace lab",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), chaosCmd(), scaleCmd(), soakCmd(), listCmd(), upCmd(), downCmd(), statusCmd(), serveCmd(), probeCmd(), demoCmd(), internalCmd())
	return root
}

// writeJSON prints v as one indented JSON object (the commands' --json).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
