package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sovereign-fl/sovereign/sim"
)

func init() { rootCmd.AddCommand(newSimCmd()) }

func newSimCmd() *cobra.Command {
	cfg := sim.DefaultConfig()
	var configFile string
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a whole federation in one process and write metrics.csv, summary.json, accuracy.png and report.html",
		Long: `sim runs N virtual institutions in one process, with the same training,
aggregation, secure-aggregation and privacy code as the networked federation.
With no flags it trains on the embedded digits data set and finishes in seconds.
A --config file (TOML) carries the flags as snake_case keys (--dp-clip is dp_clip;
the old dashed keys are read with a deprecation warning); flags override it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				if err := applyConfigFile(cmd.Flags(), configFile, &cfg, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			return runSim(ctx, cfg, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "TOML file with these flags as snake_case keys (dp_clip for --dp-clip; docs/config.md); flags override it")
	f.StringVar(&cfg.Dataset, "dataset", cfg.Dataset, "digits | mnist | idx:DIR | csv:FILE[?label=COL&header=true&standardize=true]")
	f.StringVar(&cfg.Schema, "schema", cfg.Schema, "federation-wide data schema (TOML) for --dataset csv:FILE[?test=FRAC&seed=N]; feature statistics computed under secure aggregation")
	f.StringVar(&cfg.Model, "model", cfg.Model, "logreg | 2nn | cnn | mlp:H1,H2,...")
	f.IntVar(&cfg.Clients, "clients", cfg.Clients, "number of virtual institutions")
	f.Float64Var(&cfg.Fraction, "fraction", cfg.Fraction, "fraction C of institutions sampled per round, in (0, 1]")
	f.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "local epochs E per round")
	f.IntVar(&cfg.Batch, "batch", cfg.Batch, "local minibatch size B")
	f.Float64Var(&cfg.LR, "lr", cfg.LR, "client learning rate")
	f.Float64Var(&cfg.Momentum, "momentum", cfg.Momentum, "client SGD momentum in [0, 1)")
	f.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "maximum number of rounds")
	f.StringVar(&cfg.Partition, "partition", cfg.Partition, "iid | shards:K | dirichlet:ALPHA | quantity:ALPHA")
	f.StringVar(&cfg.Strategy, "strategy", cfg.Strategy, "fedavg | fedavgm | fedadam | fedyogi | fedadagrad | fedprox:MU | median | trimmed:BETA | krum:F | multikrum:F | bulyan:F")
	f.Float64Var(&cfg.ServerLR, "server-lr", cfg.ServerLR, "server learning rate (0 = the strategy's default)")
	f.Int64Var(&cfg.Seed, "seed", cfg.Seed, "seed of every random choice; same seed, same metrics")
	f.Float64Var(&cfg.Target, "target", cfg.Target, "stop when held-out accuracy reaches this (0 = never)")
	f.StringVar(&cfg.Out, "out", cfg.Out, "output folder")
	f.Float64Var(&cfg.Dropout, "dropout", cfg.Dropout, "fraction of sampled clients that vanish each round, in [0, 1)")
	f.StringVar(&cfg.Attackers, "attackers", cfg.Attackers, "N:KIND[:PARAM] attackers, KIND signflip | scale | noise (e.g. 10:signflip)")
	f.Float64Var(&cfg.TestFraction, "test-fraction", cfg.TestFraction, "fraction of each client's examples kept as its local test split")
	f.IntVar(&cfg.Parallel, "parallel", cfg.Parallel, "clients trained at once (0 = number of cores)")
	f.BoolVar(&cfg.Secure, "secure", cfg.Secure, "aggregate every round through SecAgg+ secure aggregation")
	f.IntVar(&cfg.SecAggDegree, "secagg-degree", cfg.SecAggDegree, "SecAgg+ neighbour degree k (0 = about 2·log2 n; clients-1 = classic SecAgg)")
	f.Float64Var(&cfg.DPClip, "dp-clip", cfg.DPClip, "L2 clipping norm C of each update (needed with --dp-noise)")
	f.Float64Var(&cfg.DPNoise, "dp-noise", cfg.DPNoise, "Gaussian noise multiplier σ (0 = no differential privacy)")
	f.Float64Var(&cfg.DPDelta, "dp-delta", cfg.DPDelta, "δ of the (ε, δ) guarantee reported")
	f.StringVar(&cfg.Init, "init", cfg.Init, "start from this safetensors model (e.g. an earlier run's model.safetensors) instead of the seeded initialisation")
	f.StringVar(&cfg.Trainer, "trainer", cfg.Trainer, "train the clients with this command speaking the trainer protocol (docs/trainer-protocol.md), e.g. \"python3 train.py --data DIR\"; a pool of --parallel processes")
	return cmd
}

// applyConfigFile loads a TOML file into cfg and then re-applies the flags
// given on the command line, so flags override the file. Keys in the old
// dashed spelling (dp-clip) are read as their snake_case form (dp_clip)
// with a deprecation warning on warn.
func applyConfigFile(fs *pflag.FlagSet, path string, cfg *sim.Config, warn io.Writer) error {
	changed := map[string]string{}
	fs.Visit(func(f *pflag.Flag) { changed[f.Name] = f.Value.String() })
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	b, warnings := sim.ConfigDoc.RenameDashed(path, b)
	for _, w := range warnings {
		fmt.Fprintln(warn, "sovereign sim: warning:", w)
	}
	if err := sim.ConfigDoc.Decode(path, b, cfg); err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	for name, v := range changed {
		if name == "config" {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
	}
	return nil
}

func runSim(ctx context.Context, cfg sim.Config, w io.Writer) error {
	// Every input (flags, data set, schema, model, initial model) is
	// checked before the banner: a bad one is the only thing printed.
	prep, err := sim.Prepare(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "sovereign sim: %s, model %s, %d clients (%d per round), partition %s, strategy %s, seed %d\n",
		cfg.Dataset, cfg.Model, cfg.Clients, cfg.Sampled(), cfg.Partition, cfg.Strategy, cfg.Seed)
	res, err := prep.Run(ctx, func(m sim.RoundMetrics, elapsed, eta time.Duration) {
		sim.FormatProgress(w, cfg.Rounds, m, elapsed, eta)
	})
	if res != nil && len(res.Rounds) > 0 {
		if werr := sim.WriteOutputs(cfg.Out, res); werr != nil {
			return werr
		}
	} else if res != nil && res.Summary.Interrupted {
		// Stopped before the first round ended: only the summary says so.
		if werr := sim.WriteSummary(cfg.Out, res); werr != nil {
			return werr
		}
	}
	if err != nil {
		if res != nil && res.Summary.Interrupted {
			fmt.Fprintf(w, "interrupted after %d rounds in %.1fs; wrote %s/%s (interrupted: true)\n", res.Summary.RoundsRun, res.Summary.WallSeconds, cfg.Out, sim.SummaryFile)
		}
		return err
	}
	s := res.Summary
	fmt.Fprintf(w, "done: %d rounds in %.1fs, final accuracy %.4f, best %.4f", s.RoundsRun, s.WallSeconds, s.FinalAccuracy, s.BestAccuracy)
	if s.RoundsToTarget != nil {
		fmt.Fprintf(w, ", target %.4f reached in round %d", cfg.Target, *s.RoundsToTarget)
	} else if cfg.Target > 0 {
		fmt.Fprintf(w, ", target %.4f not reached", cfg.Target)
	}
	if s.Epsilon != nil {
		fmt.Fprintf(w, ", ε = %.3f at δ = %g", *s.Epsilon, cfg.DPDelta)
	}
	files := sim.MetricsFile + "," + sim.SummaryFile + "," + sim.PlotFile + "," + sim.ReportFile + "," + sim.ModelFile
	if res.Stats != nil {
		files += "," + sim.StatsFile
	}
	fmt.Fprintf(w, "\nwrote %s/{%s}\n", cfg.Out, files)
	return nil
}
