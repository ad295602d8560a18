package main

// `sovereign coordinator`, `coordinator join` and `coordinator leave`: the
// flags and the process's start and stop. The coordinator itself — its
// configuration file, its wiring, its protocols — is coordinator/service.

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/coordinator/service"
)

func init() { rootCmd.AddCommand(newCoordinatorCmd()) }

func newCoordinatorCmd() *cobra.Command {
	var path, logFormat string
	var exitWhenDone, resume bool
	cmd := &cobra.Command{
		Use:   "coordinator --config FILE",
		Short: "Run a coordinator replica: drive securely aggregated rounds with the enrolled workers",
		Long: "coordinator runs one replica of the federation's Raft-replicated coordinator (a single\n" +
			"coordinator in the federation file is a one-replica group). The replicas listed in the\n" +
			"federation file bootstrap the group together on first start; the leader drives the\n" +
			"configured rounds with SecAgg+ and (optionally) distributed differential privacy, and every\n" +
			"state change, model bytes included, goes through the Raft log, so when the leader dies the\n" +
			"next one resumes the round in flight from its last committed stage. Every replica serves\n" +
			"models by hash and `sovereign status`, and keeps data/ledger.json. See docs/runbook.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("coordinator: --config is required")
			}
			cfg, err := service.Load(path)
			if err != nil {
				return err
			}
			if err := setLogFormat(&cfg.LogFormat, logFormat); err != nil {
				return err
			}
			cfg.Resume = resume
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return service.Run(ctx, cfg, cmd.ErrOrStderr(), service.Options{ExitWhenDone: exitWhenDone})
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "coordinator configuration file (TOML)")
	addLogFormatFlag(cmd, &logFormat)
	cmd.Flags().BoolVar(&exitWhenDone, "exit-when-done", false, "exit once every configured round is committed and evaluated, or the study ended (default: keep serving status and models)")
	cmd.Flags().BoolVar(&resume, "resume", false, "reopen a study that ended failed or budget-exhausted (after fixing its configuration), once this replica leads")
	cmd.AddCommand(newCoordinatorJoinCmd(), newCoordinatorLeaveCmd())
	return cmd
}

func newCoordinatorJoinCmd() *cobra.Command {
	var path, logFormat string
	cmd := &cobra.Command{
		Use:   "join --config FILE",
		Short: "Start a new coordinator replica and add it to the running Raft group",
		Long: "join starts a replica like `sovereign coordinator`, but never bootstraps: it asks the\n" +
			"coordinators of the federation file (the new one must be listed there, with role\n" +
			"coordinator) to add it as a voter, then catches up from the leader and keeps running.\n" +
			"Restart it later with `sovereign coordinator --config FILE`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("coordinator join: --config is required")
			}
			cfg, err := service.Load(path)
			if err != nil {
				return err
			}
			if err := setLogFormat(&cfg.LogFormat, logFormat); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return service.Run(ctx, cfg, cmd.ErrOrStderr(), service.Options{Join: true})
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file of the new coordinator (TOML)")
	addLogFormatFlag(cmd, &logFormat)
	return cmd
}

func newCoordinatorLeaveCmd() *cobra.Command {
	var path, peerID string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "leave --config FILE [--peer ID]",
		Short: "Remove a coordinator replica from the Raft group",
		Long: "leave asks the running coordinators to remove the replica with peer ID --peer (default:\n" +
			"the coordinator of --config) from the Raft group. It uses the identity of --config, which\n" +
			"must be a coordinator of the federation file. Stop the removed replica afterwards.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("coordinator leave: --config is required")
			}
			cfg, err := service.Load(path)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return service.Leave(ctx, cfg, peerID, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "coordinator configuration file (TOML) whose identity signs the request")
	cmd.Flags().StringVar(&peerID, "peer", "", "peer ID of the replica to remove (default: the coordinator of --config)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to try")
	return cmd
}
