package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/p2p"
)

func init() { rootCmd.AddCommand(newCoordinatorCmd()) }

// coordinatorFile is the TOML layout of `sovereign coordinator --config`:
//
//	name       = "coord-1"               # the coordinator's name in the federation file
//	identity   = "coord-1.key"           # from `sovereign keygen`
//	federation = "federation.toml"
//	listen     = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
//	announce   = []                      # optional public addresses
//	data       = "data"                  # models (badger), state snapshot, ledger.json
//	log_level  = "info"                  # debug, info, warn, error
//	log_format = "text"                  # text or json
//
//	[rounds]                             # coordinator.Config
//	model = "2nn"; input = [1, 28, 28]; classes = 10
//	rounds = 10; workers_per_round = 10; fraction = 0.0; min_workers = 3
//	epochs = 1; batch = 10; lr = 0.05; strategy = "fedavg"; server_lr = 0.0
//	clip = 1.0; noise = 0.0; delta = 1e-5; clip_range = 1.0; max_weight = 1e4
//	secagg_degree = 0; stage_timeout = "1m"; retry_limit = 3; seed = 1; poll_interval = "1s"
//
// Relative paths are resolved against the configuration file's folder.
type coordinatorFile struct {
	Name       string      `toml:"name"`
	Identity   string      `toml:"identity"`
	Federation string      `toml:"federation"`
	Listen     []string    `toml:"listen"`
	Announce   []string    `toml:"announce"`
	Data       string      `toml:"data"`
	LogLevel   string      `toml:"log_level"`
	LogFormat  string      `toml:"log_format"`
	Rounds     roundsTable `toml:"rounds"`
}

// roundsTable holds the coordinator.Config fields; pointers tell "absent"
// (take the default) from zero.
type roundsTable struct {
	Model           *string  `toml:"model"`
	Input           []int    `toml:"input"`
	Classes         *int     `toml:"classes"`
	Rounds          *int     `toml:"rounds"`
	WorkersPerRound *int     `toml:"workers_per_round"`
	Fraction        *float64 `toml:"fraction"`
	MinWorkers      *int     `toml:"min_workers"`
	Epochs          *int     `toml:"epochs"`
	Batch           *int     `toml:"batch"`
	LR              *float64 `toml:"lr"`
	ProxMu          *float64 `toml:"prox_mu"`
	Strategy        *string  `toml:"strategy"`
	ServerLR        *float64 `toml:"server_lr"`
	Clip            *float64 `toml:"clip"`
	Noise           *float64 `toml:"noise"`
	Delta           *float64 `toml:"delta"`
	ClipRange       *float64 `toml:"clip_range"`
	MaxWeight       *float64 `toml:"max_weight"`
	SecAggDegree    *int     `toml:"secagg_degree"`
	StageTimeout    *string  `toml:"stage_timeout"`
	RetryLimit      *int     `toml:"retry_limit"`
	Seed            *int64   `toml:"seed"`
	PollInterval    *string  `toml:"poll_interval"`
}

// coordinatorConfig is a loaded, resolved and validated configuration.
type coordinatorConfig struct {
	coordinatorFile
	Config coordinator.Config
	Level  slog.Level
}

// loadCoordinatorConfig reads path; errors name the file and the field.
func loadCoordinatorConfig(path string) (*coordinatorConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseCoordinatorConfig(path, b, filepath.Dir(path))
}

func parseCoordinatorConfig(src string, b []byte, dir string) (*coordinatorConfig, error) {
	var f coordinatorFile
	dec := toml.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", src, describeTOMLError(err))
	}
	fail := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: %s: %s", src, field, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(f.Name) == "" {
		return nil, fail("name", "missing (the coordinator's name in the federation file)")
	}
	if f.Identity == "" {
		return nil, fail("identity", "missing (the key file written by `sovereign keygen`)")
	}
	if f.Federation == "" {
		return nil, fail("federation", "missing (the federation file)")
	}
	if len(f.Listen) == 0 {
		return nil, fail("listen", "missing (at least one multiaddr, e.g. /ip4/0.0.0.0/tcp/4001)")
	}
	if f.Data == "" {
		return nil, fail("data", "missing (the coordinator's data folder)")
	}
	res := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	f.Identity, f.Federation, f.Data = res(f.Identity), res(f.Federation), res(f.Data)
	c := &coordinatorConfig{coordinatorFile: f}
	switch strings.ToLower(f.LogLevel) {
	case "", "info":
		c.Level = slog.LevelInfo
	case "debug":
		c.Level = slog.LevelDebug
	case "warn":
		c.Level = slog.LevelWarn
	case "error":
		c.Level = slog.LevelError
	default:
		return nil, fail("log_level", "%q is not debug, info, warn or error", f.LogLevel)
	}
	if f.LogFormat != "" && f.LogFormat != "text" && f.LogFormat != "json" {
		return nil, fail("log_format", "%q is not text or json", f.LogFormat)
	}
	cfg := coordinator.DefaultConfig()
	r := f.Rounds
	setS := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	setI := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setF := func(name string, dst *float64, v *float64) error {
		if v == nil {
			return nil
		}
		if math.IsNaN(*v) || math.IsInf(*v, 0) {
			return fail("rounds."+name, "%v is not a finite number", *v)
		}
		*dst = *v
		return nil
	}
	setD := func(name string, dst *time.Duration, v *string) error {
		if v == nil {
			return nil
		}
		d, err := time.ParseDuration(*v)
		if err != nil || d <= 0 {
			return fail("rounds."+name, "%q is not a positive duration like \"5s\"", *v)
		}
		*dst = d
		return nil
	}
	setS(&cfg.Model, r.Model)
	if r.Input != nil {
		if len(r.Input) != 3 {
			return nil, fail("rounds.input", "%v: want [channels, height, width]", r.Input)
		}
		cfg.InC, cfg.InH, cfg.InW = r.Input[0], r.Input[1], r.Input[2]
	}
	setI(&cfg.Classes, r.Classes)
	setI(&cfg.Rounds, r.Rounds)
	setI(&cfg.WorkersPerRound, r.WorkersPerRound)
	setI(&cfg.MinWorkers, r.MinWorkers)
	setI(&cfg.Train.Epochs, r.Epochs)
	setI(&cfg.Train.Batch, r.Batch)
	setI(&cfg.SecAggDegree, r.SecAggDegree)
	setI(&cfg.RetryLimit, r.RetryLimit)
	setS(&cfg.Strategy, r.Strategy)
	if r.Seed != nil {
		cfg.Seed = *r.Seed
	}
	for _, x := range []struct {
		name string
		dst  *float64
		v    *float64
	}{
		{"fraction", &cfg.Fraction, r.Fraction}, {"lr", &cfg.Train.LR, r.LR}, {"prox_mu", &cfg.Train.ProxMu, r.ProxMu},
		{"server_lr", &cfg.ServerLR, r.ServerLR}, {"clip", &cfg.DP.Clip, r.Clip}, {"noise", &cfg.DP.Noise, r.Noise},
		{"delta", &cfg.Delta, r.Delta}, {"clip_range", &cfg.ClipRange, r.ClipRange}, {"max_weight", &cfg.MaxWeight, r.MaxWeight},
	} {
		if err := setF(x.name, x.dst, x.v); err != nil {
			return nil, err
		}
	}
	if err := setD("stage_timeout", &cfg.StageTimeout, r.StageTimeout); err != nil {
		return nil, err
	}
	if err := setD("poll_interval", &cfg.PollInterval, r.PollInterval); err != nil {
		return nil, err
	}
	cfg.DP.MinClients = cfg.MinWorkers
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: [rounds]: %w", src, err)
	}
	c.Config = cfg
	return c, nil
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// stateFileName is the coordinator's FSM snapshot in its data folder,
// rewritten after every command so that a restarted coordinator resumes.
const stateFileName = "state.snapshot"

// persistentLocal is the single-node Replicator of the coordinator command:
// it applies each command to the FSM and then writes the FSM's snapshot to
// the data folder (atomically), so a restart resumes where it stopped.
type persistentLocal struct {
	fsm  *coordinator.FSM
	path string
	mu   sync.Mutex
}

func (p *persistentLocal) Apply(_ context.Context, cmd []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.fsm.Apply(cmd); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.path), ".state-*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := p.fsm.Snapshot(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), p.path); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

func (p *persistentLocal) IsLeader() bool { return true }

func newCoordinatorCmd() *cobra.Command {
	var path string
	var exitWhenDone bool
	cmd := &cobra.Command{
		Use:   "coordinator --config FILE",
		Short: "Run a coordinator: drive securely aggregated rounds with the enrolled workers",
		Long: "coordinator listens for the workers of the federation file, drives the configured\n" +
			"rounds with SecAgg+ and (optionally) distributed differential privacy, stores models by\n" +
			"hash in its data folder, keeps the hash-chained ledger (data/ledger.json) and answers\n" +
			"`sovereign status`. It resumes the round in flight after a restart.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("coordinator: --config is required")
			}
			cfg, err := loadCoordinatorConfig(path)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runCoordinator(ctx, cfg, cmd.ErrOrStderr(), exitWhenDone)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "coordinator configuration file (TOML)")
	cmd.Flags().BoolVar(&exitWhenDone, "exit-when-done", false, "exit once every configured round is committed (default: keep serving status and models)")
	return cmd
}

func runCoordinator(ctx context.Context, cfg *coordinatorConfig, logOut io.Writer, exitWhenDone bool) error {
	log := newLogger(logOut, cfg.Level, cfg.LogFormat).With("coordinator", cfg.Name)
	fed, err := p2p.LoadFederation(cfg.Federation)
	if err != nil {
		return err
	}
	me, ok := fed.LookupName(cfg.Name)
	if !ok {
		return fmt.Errorf("name: %q is not in the federation file %s", cfg.Name, cfg.Federation)
	}
	if me.Role != p2p.RoleCoordinator {
		return fmt.Errorf("name: %q has role %q in %s, want coordinator", cfg.Name, me.Role, cfg.Federation)
	}
	sk, err := p2p.LoadIdentity(cfg.Identity)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	fsm := coordinator.NewFSM()
	statePath := filepath.Join(cfg.Data, stateFileName)
	if f, err := os.Open(statePath); err == nil {
		err = fsm.Restore(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("data: %s: %w", statePath, err)
		}
		st := fsm.State()
		log.Info("state restored", "round", st.Round, "committed", st.CommittedRounds())
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data: %w", err)
	}
	reg, err := coordinator.OpenRegistry(filepath.Join(cfg.Data, "models"))
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	defer reg.Close()
	h, err := p2p.NewHost(ctx, p2p.HostConfig{Identity: sk, ListenAddrs: cfg.Listen, AnnounceAddrs: cfg.Announce, Federation: fed, Logger: log})
	if err != nil {
		return err
	}
	defer h.Close()
	if h.ID() != me.ID {
		return fmt.Errorf("identity: %s holds peer %s but %q is enrolled as %s", cfg.Identity, h.ID(), cfg.Name, me.ID)
	}
	cohort, err := coordinator.NewNetCohort(h, coordinator.NetCohortOptions{Logger: log, Info: func() (uint64, coordinator.Hash) {
		m, _ := fsm.LatestModel()
		return fsm.State().Round, m.Hash
	}})
	if err != nil {
		return err
	}
	defer cohort.Close()
	if err := h.ServeBlobs(reg, p2p.RoleWorker, p2p.RoleCoordinator); err != nil {
		return err
	}
	d, err := coordinator.NewDriver(cfg.Config, fsm, &persistentLocal{fsm: fsm, path: statePath}, reg, cohort, log)
	if err != nil {
		return err
	}
	d.LedgerPath = filepath.Join(cfg.Data, coordinator.LedgerFileName)
	if err := coordinator.ServeStatus(h, cfg.Name, d.Status); err != nil {
		return err
	}
	log.Info("listening", "peer", h.ID().String(), "addrs", strings.Join(h.Addrs(), ","))
	err = d.Run(ctx)
	if ctx.Err() != nil {
		log.Info("stopping", "reason", ctx.Err())
		return nil
	}
	if err != nil {
		log.Error("round driver stopped", "err", err)
		return err
	}
	st := fsm.State()
	head := st.Head()
	log.Info("federation finished", "round", st.Round, "committed", st.CommittedRounds(), "ledger_head", head.Hash.String())
	if exitWhenDone {
		return nil
	}
	<-ctx.Done()
	log.Info("stopping", "reason", ctx.Err())
	return nil
}
