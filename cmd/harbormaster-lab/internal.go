package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/chaos/lab"
	"github.com/harbormaster/harbormaster/chaos/scenario"
	"github.com/harbormaster/harbormaster/internal/ocitest"
)

// serveCmd is the stand-in service behind the VIP, for labs built by other
// tools: run it in a node namespace (`ip netns exec NS harbormaster-lab
// serve --node n1`). The scenarios run the same server in-process.
func serveCmd() *cobra.Command {
	var (
		port int
		node string
	)
	cmd := &cobra.Command{
		Use:   "serve --node NAME [--port 80]",
		Short: "Internal: answer every TCP connection on 0.0.0.0:PORT with the node name (run inside a node namespace)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" {
				return exitError{2, fmt.Errorf("--node is required")}
			}
			// Answers are lab traffic too: refuse outside a lab namespace.
			if err := lab.GuardHere(); err != nil {
				return err
			}
			ln, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
			if err != nil {
				return err
			}
			go func() {
				<-cmd.Context().Done()
				ln.Close()
			}()
			return scenario.Serve(ln, node)
		},
	}
	cmd.Flags().IntVar(&port, "port", 80, "TCP port")
	cmd.Flags().StringVar(&node, "node", "", "the name to answer with")
	return cmd
}

// probeCmd is the client prober as a process: run it in the client
// namespace (`ip netns exec NS harbormaster-lab probe --target
// 198.18.0.200:80`). It refuses to run outside a lab namespace.
func probeCmd() *cobra.Command {
	var (
		target   string
		every    time.Duration
		timeout  time.Duration
		duration time.Duration
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "probe --target ADDR:PORT",
		Short: "Internal: connect through the VIP every 10 ms and report who answers (run inside the client namespace)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ap, err := netip.ParseAddrPort(target)
			if err != nil {
				return exitError{2, fmt.Errorf("--target %q: %w", target, err)}
			}
			ctx := cmd.Context()
			if duration > 0 {
				var cancel func()
				ctx, cancel = contextWithTimeout(ctx, duration)
				defer cancel()
			}
			var (
				mu       sync.Mutex
				enc      = json.NewEncoder(os.Stdout)
				lastNode = "?"
				lastOK   time.Time
				ok, fail int
			)
			report := func(a scenario.Attempt) {
				mu.Lock()
				defer mu.Unlock()
				if a.OK {
					ok++
				} else {
					fail++
				}
				if asJSON {
					_ = enc.Encode(a)
					return
				}
				switch {
				case a.OK && a.Node != lastNode:
					gap := ""
					if !lastOK.IsZero() {
						gap = fmt.Sprintf(" (%s since the last answer)", a.Start.Sub(lastOK).Round(time.Millisecond))
					}
					fmt.Printf("%s  answered by %s%s\n", a.Start.Format("15:04:05.000"), a.Node, gap)
					lastNode = a.Node
				case !a.OK && lastNode != "":
					fmt.Printf("%s  no answer: %s\n", a.Start.Format("15:04:05.000"), a.Err)
					lastNode = ""
				}
				if a.OK && a.Start.After(lastOK) {
					lastOK = a.Start
				}
			}
			err = scenario.RunProbe(ctx, scenario.ProbeConfig{Target: ap, Every: every, Timeout: timeout}, report)
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Printf("%d answered, %d failed\n", ok, fail)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "target", "198.18.0.200:80", "address and port to connect to (in 198.18.0.0/15)")
	cmd.Flags().DurationVar(&every, "every", 10*time.Millisecond, "period between connects")
	cmd.Flags().DurationVar(&timeout, "timeout", 50*time.Millisecond, "timeout of one connect and answer")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print every attempt as one JSON line")
	return cmd
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// internalCmd groups the helpers the scenarios run inside the lab (through
// `ip netns exec`, or as service hooks of the agents); they are not meant
// to be run by hand, but can be.
func internalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "internal",
		Short: "Internal: helpers the scenarios run inside the lab's namespaces (push, service)",
	}
	cmd.AddCommand(pushCmd(), standInCmd(), busyCmd())
	return cmd
}

// busyCmd burns CPU until killed: the lab's CPU contention
// (scenario.Cluster.Busy runs it inside a node's namespace). It sends
// nothing, but like every lab helper it refuses to run outside a lab
// namespace, so it never loads a real machine by mistake.
func busyCmd() *cobra.Command {
	var workers int
	cmd := &cobra.Command{
		Use:   "busy [--workers 1]",
		Short: "Internal: keep N threads spinning until killed (run inside a node namespace)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if workers < 1 || workers > 256 {
				return exitError{2, fmt.Errorf("--workers %d: want 1 to 256", workers)}
			}
			if err := lab.GuardHere(); err != nil {
				return err
			}
			runtime.GOMAXPROCS(workers)
			for range workers {
				go spin()
			}
			<-cmd.Context().Done()
			return nil
		},
	}
	cmd.Flags().IntVar(&workers, "workers", 1, "spinning threads")
	return cmd
}

// spin burns CPU for ever.
func spin() {
	x := uint64(1)
	for {
		x = x*6364136223846793005 + 1442695040888963407
		if x == 0 {
			runtime.Gosched()
		}
	}
}

// pushCmd pushes the tiny hello-world index to a lab registry. It
// sends lab traffic, so it refuses to run outside a lab namespace.
func pushCmd() *cobra.Command {
	var (
		registry, repo, tag string
		wait                time.Duration
	)
	cmd := &cobra.Command{
		Use:   "push --registry http://198.18.0.11:5000",
		Short: "Wait for a lab registry to answer, then push a tiny 2-platform image index to it (run inside a node namespace)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := url.Parse(registry)
			if err != nil || u.Scheme != "http" || u.Host == "" || strings.Trim(u.Path, "/") != "" {
				return exitError{2, fmt.Errorf("--registry %q: want http://ADDR:PORT", registry)}
			}
			ap, err := netip.ParseAddrPort(u.Host)
			if err != nil {
				return exitError{2, fmt.Errorf("--registry %q: the host must be an address in the lab: %w", registry, err)}
			}
			if err := lab.GuardHere(ap.Addr()); err != nil {
				return err
			}
			ctx := cmd.Context()
			p := ocitest.Pusher{Base: strings.TrimRight(registry, "/")}
			deadline := time.Now().Add(wait)
			for {
				err = p.Ping(ctx)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("registry %s not answering after %s: %w", registry, wait, err)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			}
			idx, err := ocitest.Hello()
			if err != nil {
				return err
			}
			if err := p.PushIndex(ctx, repo, idx, tag); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed %s:%s %s to %s\n", repo, tag, idx.Digest, registry)
			return nil
		},
	}
	cmd.Flags().StringVar(&registry, "registry", "", "the registry's base URL, http://ADDR:PORT with ADDR in 198.18.0.0/15")
	cmd.Flags().StringVar(&repo, "repo", "library/hello-world", "repository")
	cmd.Flags().StringVar(&tag, "tag", "latest", "tag")
	cmd.Flags().DurationVar(&wait, "wait", 15*time.Second, "how long to wait for the registry to answer GET /v2/")
	return cmd
}

// standInCmd is the stand-in service the scenarios' service hooks start
// (scenario.RunStandIn). It sends no traffic.
func standInCmd() *cobra.Command {
	var cfg scenario.StandInConfig
	cmd := &cobra.Command{
		Use:   "service --role R --node N --epoch E --log FILE [--pid-file FILE]",
		Short: "Run a stand-in active/standby service that logs start, a beat every 20 ms, and stop on SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return scenario.RunStandIn(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&cfg.Role, "role", "", "service role name")
	cmd.Flags().StringVar(&cfg.Node, "node", "", "node id")
	cmd.Flags().Uint64Var(&cfg.Epoch, "epoch", 0, "the role's epoch (HARBORMASTER_EPOCH)")
	cmd.Flags().StringVar(&cfg.Log, "log", "", "the shared service log (appended)")
	cmd.Flags().StringVar(&cfg.PIDFile, "pid-file", "", "pid file, written after the start line, removed after the stop line")
	cmd.Flags().DurationVar(&cfg.Beat, "beat", 20*time.Millisecond, "period of the beat lines")
	return cmd
}
