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
			cfg, err := config.Load(cfgPath, func(c *config.Config) {
				if dataDir != "" {
					c.DataDir = dataDir
				}
			})
			if err != nil {
				return err
			}
			var level slog.Level
			_ = level.UnmarshalText([]byte(cfg.LogLevel))
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			a, err := agent.New(cfg, agent.Options{Logger: log, BootstrapNewCluster: newCluster})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// SIGHUP reloads the TLS files (certificate rotation) instead
			// of killing the agent.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						log.Info("SIGHUP: reloading the TLS files")
						_ = a.ReloadTLS()
					}
				}
			}()
			return a.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "node config file (YAML)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory (overrides data_dir in the config)")
	cmd.Flags().BoolVar(&newCluster, "bootstrap-new-cluster", false,
		"with an empty data dir, bootstrap the bootstrap list at once, even while peers do not answer or hold another history (a new cluster; never needed for the first start of all nodes together)")
	return cmd
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "harbormaster", agent.Version) },
	}
}
