package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/harbormaster/harbormaster/agent"
	"github.com/harbormaster/harbormaster/agent/config"
	"github.com/harbormaster/harbormaster/internal/version"
)

func agentCmd() *cobra.Command {
	var (
		cfgPath, dataDir string
		newCluster       bool
	)
	cmd := &cobra.Command{
		Use:   "agent --config FILE [--data-dir DIR]",
		Short: "Run the harbormaster agent of this node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return usageError{fmt.Errorf("--config is required: the node's YAML config file")}
			}
			// A reload applies the same override.
			override := func(c *config.Config) {
				if dataDir != "" {
					c.DataDir = dataDir
				}
			}
			cfg, err := config.Load(cfgPath, override)
			if err != nil {
				return err
			}
			level := new(slog.LevelVar)
			_ = level.UnmarshalText([]byte(cfg.LogLevel))
			handler, err := agent.NewLogHandler(os.Stderr, cfg.LogFormat, level)
			if err != nil {
				return err
			}
			log := slog.New(handler)
			a, err := agent.New(cfg, agent.Options{Logger: log, LogLevel: level, LogHandler: handler, BootstrapNewCluster: newCluster})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			sigs := notifySignals()
			defer signal.Stop(sigs)
			sigCtx, stopSigs := context.WithCancel(ctx)
			handled := make(chan struct{})
			go func() {
				defer close(handled)
				handleSignals(sigCtx, sigs, a, log, func() (*config.Config, error) { return config.Load(cfgPath, override) })
			}()
			err = a.Run(ctx)
			stopSigs()
			<-handled
			return err
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "node config file (YAML)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory (overrides data_dir in the config)")
	cmd.Flags().BoolVar(&newCluster, "bootstrap-new-cluster", false,
		"with an empty data dir, bootstrap the bootstrap list at once, even while peers do not answer or hold another history (a new cluster; never needed for the first start of all nodes together)")
	return cmd
}

// notifySignals catches and drops SIGPIPE, and returns the channel of the
// signals handleSignals handles. SIGPIPE is caught, not ignored: an ignored
// signal stays ignored in every hook the agent runs (exec keeps SIG_IGN),
// and a hook's pipeline must get SIGPIPE as usual.
func notifySignals() chan os.Signal {
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	go func() {
		for range pipe {
		}
	}()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	return ch
}

// handleSignals gives the signals other than SIGINT and SIGTERM (a
// graceful stop) their action until ctx ends (docs/operations.md,
// "Signals"):
//   - SIGHUP re-reads the TLS files, then the config file, and applies what
//     may change at run time (Agent.Reload), or refuses the whole change;
//   - SIGUSR1 and SIGUSR2 are logged and otherwise ignored (Go's default
//     would kill the agent, and with it every role it holds);
//   - SIGPIPE is caught and dropped: a closed stdout or stderr (journald
//     restarting) makes writes fail instead of killing the agent.
//
// SIGQUIT keeps Go's default: a goroutine dump on stderr, exit 2, no
// release (for a hung agent).
func handleSignals(ctx context.Context, ch <-chan os.Signal, a *agent.Agent, log *slog.Logger, load func() (*config.Config, error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-ch:
			if sig != syscall.SIGHUP {
				log.Info("signal ignored", "signal", sig.String())
				continue
			}
			log.Info("SIGHUP: reloading the TLS files and the config")
			_ = a.ReloadTLS()
			cfg, err := load()
			if err != nil {
				log.Error("config reload refused; the running config is kept", "err", err)
				continue
			}
			_, _ = a.Reload(cfg) // logs its result
		}
	}
}

func versionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version, commit and Go version of this build",
		Example: "  harbormaster version\n  harbormaster version --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := version.Get()
			if g.json {
				return printJSON(cmd.OutOrStdout(), in)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), in.String())
			return err
		},
	}
}
