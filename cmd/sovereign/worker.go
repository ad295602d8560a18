package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/metrics"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/worker"
)

func init() { rootCmd.AddCommand(newWorkerCmd()) }

func newWorkerCmd() *cobra.Command {
	var path, logFormat string
	cmd := &cobra.Command{
		Use:   "worker --config FILE",
		Short: "Run an institution's worker: train locally and take part in securely aggregated rounds",
		Long: "worker loads the institution's data set, dials the coordinators of the federation file,\n" +
			"says Hello and answers the round stages within the limits of its policy. Every answer is\n" +
			"kept in its store so a restarted worker answers the same. See docs/runbook.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("worker: --config is required")
			}
			cfg, err := worker.LoadConfig(path)
			if err != nil {
				return err
			}
			if err := setLogFormat(&cfg.LogFormat, logFormat); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runWorker(ctx, cfg, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "worker configuration file (TOML)")
	addLogFormatFlag(cmd, &logFormat)
	return cmd
}

func runWorker(ctx context.Context, cfg *worker.Config, logOut io.Writer) error {
	level, err := cfg.SlogLevel()
	if err != nil {
		return err
	}
	fed, err := p2p.LoadFederation(cfg.Federation)
	if err != nil {
		return err
	}
	log := p2p.NewLogger(logOut, level, cfg.LogFormat, fed)
	me, ok := fed.LookupName(cfg.Name)
	if !ok {
		return fmt.Errorf("name: %q is not in the federation file %s", cfg.Name, cfg.Federation)
	}
	if me.Role != p2p.RoleWorker {
		return fmt.Errorf("name: %q has role %q in %s, want worker", cfg.Name, me.Role, cfg.Federation)
	}
	sk, err := p2p.LoadIdentity(cfg.Identity)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	d, err := cfg.LoadData()
	if err != nil {
		return err
	}
	train, test := d.Train, d.Test
	// Files the worker creates (its badger store holds round secrets) are
	// born 0600 and folders 0700 (security review L1).
	privateUmask()
	st, err := worker.OpenStore(cfg.Store, worker.StoreOptions{Logger: log})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer st.Close()
	h, err := p2p.NewHost(ctx, p2p.HostConfig{Identity: sk, ListenAddrs: cfg.Listen, AnnounceAddrs: cfg.Announce, Federation: fed, Logger: log.With("worker", cfg.Name)})
	if err != nil {
		return err
	}
	defer h.Close()
	if h.ID() != me.ID {
		return fmt.Errorf("identity: %s holds peer %s but %q is enrolled as %s", cfg.Identity, h.ID(), cfg.Name, me.ID)
	}
	delta := cfg.Policy.WithDefaults().Delta
	mon := metrics.NewWorker(metrics.WorkerSource{Epsilon: st.Epsilon, OwnEpsilon: func() (float64, error) { return worker.OwnEpsilonOf(st, delta) },
		OwnEpsilonByStudy: func() (map[string]float64, error) { return worker.OwnEpsilonByStudy(st, delta) },
		Budget:            cfg.Policy.MaxEpsilon, StoreDir: cfg.Store, Bandwidth: h.Bandwidth})
	// SecAgg+ keys are signed with the identity key and checked against the
	// federation in force (security review H1).
	enrolled := func(p peer.ID) (p2p.Member, bool) { return h.Federation().Lookup(p) }
	node, err := worker.NewNode(cfg, st, train, test, log, worker.WithID(h.ID().String()), worker.WithObserver(mon), worker.WithIdentity(sk, fed.Name, enrolled), worker.WithData(d))
	if err != nil {
		return err
	}
	defer node.Close()
	// The redial jitter is seeded from the peer ID: reproducible for one
	// worker, different between workers.
	sum := sha256.Sum256([]byte(h.ID()))
	srv, err := worker.NewServer(h, node, st, worker.ServeOptions{Logger: log, Seed: int64(binary.BigEndian.Uint64(sum[:8]))})
	if err != nil {
		return err
	}
	defer srv.Close()
	if cfg.MetricsListen != "" {
		ms, err := metrics.ListenLogged("metrics_listen", cfg.MetricsListen, mon.Handler(), log)
		if err != nil {
			return err
		}
		defer ms.Close()
		log.Info("metrics listening", "worker", cfg.Name, "addr", "http://"+ms.Addr()+"/metrics")
	}
	log.Info("worker started", "worker", cfg.Name, "peer", h.ID().String(), "addrs", strings.Join(h.Addrs(), ","),
		"train", node.Examples(), "test", node.TestExamples(), "trainer", len(cfg.Trainer) > 0)
	if err := srv.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	log.Info("stopping", "worker", cfg.Name)
	return nil
}
