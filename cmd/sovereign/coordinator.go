package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/replica"
	"github.com/sovereign-fl/sovereign/metrics"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/p2p/pb"
)

func init() { rootCmd.AddCommand(newCoordinatorCmd()) }

// coordinatorFile is the TOML layout of `sovereign coordinator --config`:
//
//	name       = "coord-1"               # the coordinator's name in the federation file
//	identity   = "coord-1.key"           # from `sovereign keygen`
//	federation = "federation.toml"
//	listen     = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
//	announce   = []                      # optional public addresses
//	data       = "data"                  # raft/ (log, snapshots), registry/ (models), ledger.json, state.snapshot, model.json
//	log_level  = "info"                  # debug, info, warn, error
//	log_format = "text"                  # text or json (--log-format overrides)
//	metrics_listen   = "127.0.0.1:9464"  # Prometheus /metrics; absent = off
//	dashboard_listen = "127.0.0.1:8080"  # web dashboard; absent = off
//	dashboard_token  = "…"               # optional bearer token guarding the dashboard
//
//	[rounds]                             # coordinator.Config
//	model = "2nn"; input = [1, 28, 28]; classes = 10
//	rounds = 10; workers_per_round = 10; fraction = 0.0; min_workers = 3
//	epochs = 1; batch = 10; lr = 0.05; strategy = "fedavg"; server_lr = 0.0
//	clip = 1.0; noise = 0.0; delta = 1e-5; clip_range = 1.0; max_weight = 1e4
//	secagg_degree = 0; stage_timeout = "1m"; retry_limit = 3; seed = 1; poll_interval = "1s"
//	pace = "0s"                          # a demo's rounds stay in flight this long before their first stage
//	secure_evaluation = false            # evaluate inside the secure aggregate
//	max_epsilon = 0.0                    # the study's budget: end budget-exhausted before passing it (0 = none)
//	init = "model.safetensors"            # optional: the initial model (round 0) from a file
//	schema = "schema.toml"                # optional: the data schema; its statistics round runs first
//	stats_noise = 0.0; stats_max_rows = 0 # row-level DP σ of the statistics; a site's row bound (0 = max_weight)
//
//
//	[raft]                               # optional; absent keys take these defaults
//	heartbeat_timeout = "500ms"; election_timeout = "500ms"; leader_lease_timeout = "500ms"
//	commit_timeout = "50ms"; snapshot_threshold = 8192; snapshot_interval = "2m"
//	trailing_logs = 10240; transport_timeout = "60s"; restart_delay = "1s"
//
// Relative paths are resolved against the configuration file's folder.
type coordinatorFile struct {
	Name       string   `toml:"name"`
	Identity   string   `toml:"identity"`
	Federation string   `toml:"federation"`
	Listen     []string `toml:"listen"`
	Announce   []string `toml:"announce"`
	Data       string   `toml:"data"`
	LogLevel   string   `toml:"log_level"`
	LogFormat  string   `toml:"log_format"`
	// MetricsListen and DashboardListen are host:port listeners, off when
	// empty; DashboardToken, if set, is the dashboard's bearer token.
	MetricsListen   string                  `toml:"metrics_listen"`
	DashboardListen string                  `toml:"dashboard_listen"`
	DashboardToken  string                  `toml:"dashboard_token"`
	Rounds          coordinator.RoundsTable `toml:"rounds"`
	Raft            raftTable               `toml:"raft"`
}

// raftTable holds the optional Raft settings of replica.Config; an absent
// key keeps the replica's default (noted in replica.Config).
type raftTable struct {
	HeartbeatTimeout   *string `toml:"heartbeat_timeout"`
	ElectionTimeout    *string `toml:"election_timeout"`
	LeaderLeaseTimeout *string `toml:"leader_lease_timeout"`
	CommitTimeout      *string `toml:"commit_timeout"`
	SnapshotThreshold  *int64  `toml:"snapshot_threshold"`
	SnapshotInterval   *string `toml:"snapshot_interval"`
	TrailingLogs       *int64  `toml:"trailing_logs"`
	TransportTimeout   *string `toml:"transport_timeout"`
	RestartDelay       *string `toml:"restart_delay"`
}

// coordinatorConfig is a loaded, resolved and validated configuration.
type coordinatorConfig struct {
	coordinatorFile
	Config coordinator.Config
	Level  slog.Level
	// Replica holds the Raft settings; Dir, Host and Logger are filled in
	// when the coordinator starts.
	Replica replica.Config
	// Resume reopens a failed or budget-exhausted study once this replica
	// leads (--resume).
	Resume bool
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
	if err := coordinatorDoc.Decode(src, b, &f); err != nil {
		return nil, err
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
	for _, l := range []struct{ key, addr string }{{"metrics_listen", f.MetricsListen}, {"dashboard_listen", f.DashboardListen}} {
		if l.addr == "" {
			continue
		}
		if _, err := metrics.CheckListen(l.key, l.addr); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
	}
	if f.DashboardToken != "" && f.DashboardListen == "" {
		return nil, fail("dashboard_token", "set without dashboard_listen")
	}
	cfg, err := f.Rounds.Config(src, dir, nil)
	if err != nil {
		return nil, err
	}
	c.Config = cfg
	rt := f.Raft
	for _, x := range []struct {
		name string
		dst  *time.Duration
		v    *string
	}{
		{"heartbeat_timeout", &c.Replica.HeartbeatTimeout, rt.HeartbeatTimeout},
		{"election_timeout", &c.Replica.ElectionTimeout, rt.ElectionTimeout},
		{"leader_lease_timeout", &c.Replica.LeaderLeaseTimeout, rt.LeaderLeaseTimeout},
		{"commit_timeout", &c.Replica.CommitTimeout, rt.CommitTimeout},
		{"snapshot_interval", &c.Replica.SnapshotInterval, rt.SnapshotInterval},
		{"transport_timeout", &c.Replica.TransportTimeout, rt.TransportTimeout},
		{"restart_delay", &c.Replica.RestartDelay, rt.RestartDelay},
	} {
		if x.v == nil {
			continue
		}
		d, err := time.ParseDuration(*x.v)
		if err != nil || d <= 0 {
			return nil, fail("raft."+x.name, "%q is not a positive duration like \"500ms\"", *x.v)
		}
		*x.dst = d
	}
	for _, x := range []struct {
		name string
		dst  *uint64
		v    *int64
	}{
		{"snapshot_threshold", &c.Replica.SnapshotThreshold, rt.SnapshotThreshold},
		{"trailing_logs", &c.Replica.TrailingLogs, rt.TrailingLogs},
	} {
		if x.v == nil {
			continue
		}
		if *x.v <= 0 {
			return nil, fail("raft."+x.name, "%d is not a positive count", *x.v)
		}
		*x.dst = uint64(*x.v)
	}
	// hashicorp/raft refuses a leader lease longer than the heartbeat
	// timeout; say so in the configuration's own terms.
	hb, lease := c.Replica.HeartbeatTimeout, c.Replica.LeaderLeaseTimeout
	if hb == 0 {
		hb = replica.DefaultHeartbeatTimeout
	}
	if lease == 0 {
		lease = replica.DefaultLeaderLeaseTimeout
	}
	if lease > hb {
		return nil, fail("raft.leader_lease_timeout", "%v exceeds the heartbeat timeout %v (set both)", lease, hb)
	}
	return c, nil
}

// withPeerNames makes every log attribute holding an enrolled peer's ID
// carry the member's name too (p2p.PeerNames): "peer=12D3… peer_name=st-marys".
func withPeerNames(l *slog.Logger, fed *p2p.Federation) *slog.Logger {
	return slog.New(p2p.PeerNames(l.Handler(), fed))
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// stateFileName is the export of the coordinator FSM's snapshot that every
// replica keeps in its data folder beside ledger.json, for inspection and
// `sovereign ledger verify --snapshot`. The coordinator never reads it: it
// resumes from its Raft log and snapshots (data/raft).
const stateFileName = "state.snapshot"

// exportInterval is how often a replica checks whether its FSM moved and,
// if so, rewrites ledger.json and state.snapshot.
const exportInterval = 250 * time.Millisecond

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
			cfg, err := loadCoordinatorConfig(path)
			if err != nil {
				return err
			}
			if err := setLogFormat(&cfg.LogFormat, logFormat); err != nil {
				return err
			}
			cfg.Resume = resume
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runCoordinator(ctx, cfg, cmd.ErrOrStderr(), exitWhenDone, false)
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
			cfg, err := loadCoordinatorConfig(path)
			if err != nil {
				return err
			}
			if err := setLogFormat(&cfg.LogFormat, logFormat); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runCoordinator(ctx, cfg, cmd.ErrOrStderr(), false, true)
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
			cfg, err := loadCoordinatorConfig(path)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return runLeave(ctx, cfg, peerID, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "coordinator configuration file (TOML) whose identity signs the request")
	cmd.Flags().StringVar(&peerID, "peer", "", "peer ID of the replica to remove (default: the coordinator of --config)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to try")
	return cmd
}

// coordinatorSetup checks the configuration against the federation file and
// loads the identity.
func coordinatorSetup(cfg *coordinatorConfig) (*p2p.Federation, p2p.Member, crypto.PrivKey, error) {
	fed, err := p2p.LoadFederation(cfg.Federation)
	if err != nil {
		return nil, p2p.Member{}, nil, err
	}
	me, ok := fed.LookupName(cfg.Name)
	if !ok {
		return nil, p2p.Member{}, nil, fmt.Errorf("name: %q is not in the federation file %s", cfg.Name, cfg.Federation)
	}
	if me.Role != p2p.RoleCoordinator {
		return nil, p2p.Member{}, nil, fmt.Errorf("name: %q has role %q in %s, want coordinator", cfg.Name, me.Role, cfg.Federation)
	}
	sk, err := p2p.LoadIdentity(cfg.Identity)
	if err != nil {
		return nil, p2p.Member{}, nil, fmt.Errorf("identity: %w", err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return nil, p2p.Member{}, nil, fmt.Errorf("identity: %w", err)
	}
	if id != me.ID {
		return nil, p2p.Member{}, nil, fmt.Errorf("identity: %s holds peer %s but %q is enrolled as %s", cfg.Identity, id, cfg.Name, me.ID)
	}
	return fed, me, sk, nil
}

func runCoordinator(ctx context.Context, cfg *coordinatorConfig, logOut io.Writer, exitWhenDone, join bool) error {
	fed, _, sk, err := coordinatorSetup(cfg)
	if err != nil {
		return err
	}
	log := withPeerNames(newLogger(logOut, cfg.Level, cfg.LogFormat), fed).With("coordinator", cfg.Name)
	cfg.Config.Federation = fed.Name
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := writeModelInfo(cfg, fed.Name); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	h, err := p2p.NewHost(ctx, p2p.HostConfig{Identity: sk, ListenAddrs: cfg.Listen, AnnounceAddrs: cfg.Announce, Federation: fed, Logger: log})
	if err != nil {
		return err
	}
	defer h.Close()
	rc := cfg.Replica
	rc.Dir, rc.Host, rc.Logger, rc.NoBootstrap = cfg.Data, h, log, join
	if spec, err := model.ParseSpec(cfg.Config.Model, cfg.Config.InC, cfg.Config.InH, cfg.Config.InW, cfg.Config.Classes); err == nil {
		rc.MaxModelBytes = 4 * int64(spec.NumParams())
	}
	node, err := replica.Open(rc)
	if err != nil {
		return fmt.Errorf("data: %s: %w", cfg.Data, err)
	}
	defer func() {
		if err := node.Shutdown(); err != nil {
			log.Warn("replica shutdown", "err", err)
		}
	}()
	fsm, reg := node.FSM(), node.Registry()
	if st := fsm.State(); st.Round > 0 || len(st.Ledger) > 0 {
		log.Info("state restored", "round", st.Round, "committed", st.CommittedRounds())
	}
	// The driver is built after the cohort; Hellos before it get no plan.
	var planner atomic.Pointer[coordinator.Driver]
	cohort, err := coordinator.NewNetCohort(h, coordinator.NetCohortOptions{Logger: log, Info: func() (uint64, coordinator.Hash) {
		m, _ := fsm.LatestModel()
		return fsm.State().Round, m.Hash
	}, Plan: func(online int) *pb.StudyPlan {
		if d := planner.Load(); d != nil {
			return d.Plan(online)
		}
		return nil
	}})
	if err != nil {
		return err
	}
	defer cohort.Close()
	if err := h.ServeBlobs(reg, p2p.RoleWorker, p2p.RoleCoordinator); err != nil {
		return err
	}
	mon := metrics.NewCoordinator(metrics.CoordinatorSource{State: fsm.State, Online: cohort.Online, Bandwidth: h.Bandwidth,
		Raft: func() metrics.RaftStats {
			s := node.Stats()
			return metrics.RaftStats{State: s.State, Term: s.Term, CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex, LastIndex: s.LastIndex}
		}})
	d, err := coordinator.NewDriver(cfg.Config, fsm, mon.Replicator(node), reg, mon.Cohort(cohort), log)
	if err != nil {
		return err
	}
	d.Incompatible, d.Warnings = cohort.Incompatible, cohort.Warnings
	d.LedgerPath = filepath.Join(cfg.Data, coordinator.LedgerFileName)
	planner.Store(d)
	// Created studies (sovereign study start): one driver each, built from
	// the replicated spec on whichever replica leads.
	build := func(name string, c coordinator.Config) (*coordinator.Driver, error) {
		sd, err := coordinator.NewDriver(c, fsm.Study(name), mon.Replicator(node), reg, mon.Cohort(cohort), log.With("study", name))
		if err != nil {
			return nil, err
		}
		sd.LedgerPath = filepath.Join(cfg.Data, coordinator.StudyLedgerFileName(name))
		sd.Incompatible = func() map[coordinator.WorkerID][]string { return cohort.StudyIncompatible(sd) }
		sd.Warnings = func() map[coordinator.WorkerID][]string { return cohort.StudyWarnings(sd) }
		return sd, nil
	}
	sched := coordinator.NewScheduler(d, build, log)
	sched.CheckPlan = cohort.CheckStudyPlan
	sched.NameOf = func(w coordinator.WorkerID) string {
		if id, err := peer.Decode(string(w)); err == nil {
			if m, ok := fed.Lookup(id); ok {
				return m.Name
			}
		}
		return string(w)
	}
	status := func() coordinator.Status {
		s := d.Status()
		if !node.IsLeader() || s.Stage == "" {
			// The driver runs on the leader only: a follower (or a leader
			// whose driver has not started) reports the stage its
			// replicated state is in.
			s.Stage = followerStage(fsm.State(), cfg.Config.Rounds)
		}
		s.Studies = sched.Statuses()
		if len(s.Studies) > 0 {
			s.Studies[0].Stage = s.Stage
		}
		return s
	}
	if err := serveStatus(h, cfg.Name, status, node); err != nil {
		return err
	}
	if err := coordinator.ServeStudies(h, sched, node.IsLeader, node.Leader, log); err != nil {
		return err
	}
	if err := serveReplicaStatus(h, node); err != nil {
		return err
	}
	// Workers confirm each survivor set with a majority of the replicas
	// before they sign or unmask it (security review L4).
	if err := coordinator.ServeSurvivors(h, fsm.StateOfRound); err != nil {
		return err
	}
	log.Info("listening", "peer", h.ID().String(), "addrs", strings.Join(h.Addrs(), ","))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mon.WatchRaft(ctx, node.Raft())
	stopMonitoring, err := serveMonitoring(ctx, cfg, fed, node, fsm, mon, status, cohort.Online, log)
	if err != nil {
		return err
	}
	defer stopMonitoring()
	ledgerPath := filepath.Join(cfg.Data, coordinator.LedgerFileName)
	ex := &exporter{fsm: fsm, ledgerPath: ledgerPath, statePath: filepath.Join(cfg.Data, stateFileName), log: log}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(exportInterval)
		defer t.Stop()
		for {
			ex.export()
			if exitWhenDone && finished(fsm.State(), cfg.Config.Rounds) && createdStudiesEnded(fsm) {
				st := fsm.State()
				log.Info("federation finished", "round", st.Round, "committed", st.CommittedRounds(), "ledger_head", headHash(st))
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	if join {
		if err := joinCluster(ctx, h, fed, log); err != nil {
			cancel()
			wg.Wait()
			return err
		}
	}
	resume := cfg.Resume
	err = node.Lead(ctx, func(lctx context.Context) error {
		if resume {
			if ok, err := d.Resume(lctx); err != nil {
				return err
			} else if !ok {
				log.Info("--resume: the study has not failed; nothing to resume")
			}
			resume = false
		}
		// The scheduler drives every study until leadership ends; a
		// study that ends leaves the coordinator ready for the next.
		err := sched.Run(lctx)
		if err != nil && lctx.Err() == nil && !errors.Is(err, coordinator.ErrNotLeader) {
			log.Error("round driver stopped", "err", err)
		}
		return err
	})
	cancel()
	wg.Wait()
	ex.export()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopping", "reason", context.Cause(ctx))
	return nil
}

// createdStudiesEnded reports whether every study created with `sovereign
// study start` has ended (--exit-when-done waits for them too).
func createdStudiesEnded(fsm *coordinator.FSM) bool {
	for _, st := range fsm.Studies() {
		if st.Name != coordinator.DefaultStudy && st.State.Ended == nil {
			return false
		}
	}
	return true
}

// headHash returns the ledger head's hash in hex ("" before any entry).
func headHash(st coordinator.State) string {
	if h := st.Head(); h != nil {
		return h.Hash.String()
	}
	return ""
}

// finished reports whether every configured round is committed and the
// last model evaluated, as the replicated state says.
func finished(st coordinator.State, rounds int) bool {
	if st.Current == nil && st.Ended != nil && st.Ended.State != coordinator.EndFinished {
		return true // failed or budget-exhausted: nothing more will come
	}
	if st.Current != nil || st.CommittedRounds() < rounds {
		return false
	}
	if n := len(st.Metrics); n > 0 {
		m, _ := latestModelRound(st)
		return st.Metrics[n-1].Round >= m
	}
	return false
}

func latestModelRound(st coordinator.State) (uint64, bool) {
	if len(st.Models) == 0 {
		return 0, false
	}
	return st.Models[len(st.Models)-1].Round, true
}

// followerStage names what the replicated state says the round is doing.
func followerStage(st coordinator.State, rounds int) string {
	switch {
	case st.Current != nil:
		return st.Current.Next.String()
	case st.CommittedRounds() >= rounds:
		return "finished"
	case len(st.Models) == 0:
		return "init"
	}
	return "sample"
}

// exporter rewrites ledger.json and state.snapshot when the replica's FSM
// has changed, so that `sovereign ledger verify --data DIR` works on every
// replica, not only on the leader. It compares the FSM's snapshot bytes, not
// Raft's applied index, which Raft advances before the FSM has applied.
type exporter struct {
	fsm        *coordinator.FSM
	ledgerPath string
	statePath  string
	log        *slog.Logger

	mu     sync.Mutex
	last   [32]byte
	ledger int
	ended  bool
	done   bool
}

func (e *exporter) export() {
	e.mu.Lock()
	defer e.mu.Unlock()
	// Read the state once: the ledger and the snapshot agree.
	var snap bytes.Buffer
	if err := e.fsm.Snapshot(&snap); err != nil {
		e.log.Warn("state export", "err", err)
		return
	}
	sum := sha256.Sum256(snap.Bytes())
	if e.done && sum == e.last {
		return
	}
	ledger, end, err := coordinator.ReadSnapshotLedgerEnd(bytes.NewReader(snap.Bytes()))
	if err != nil {
		e.log.Warn("state export", "err", err)
		return
	}
	if len(ledger) > 0 && (!e.done || len(ledger) != e.ledger || (end != nil) != e.ended) {
		if err := coordinator.WriteLedgerFileEnd(e.ledgerPath, ledger, end); err != nil {
			e.log.Warn("ledger export", "path", e.ledgerPath, "err", err)
			return
		}
		e.ledger, e.ended = len(ledger), end != nil
	}
	// Each created study's ledger beside it (ledger-NAME.json).
	for _, st := range e.fsm.Studies() {
		if st.Name == coordinator.DefaultStudy {
			continue
		}
		p := filepath.Join(filepath.Dir(e.ledgerPath), coordinator.StudyLedgerFileName(st.Name))
		if err := coordinator.WriteLedgerFileEnd(p, st.State.Ledger, st.State.Ended); err != nil {
			e.log.Warn("ledger export", "path", p, "err", err)
			return
		}
	}
	if err := writeFileAtomic(e.statePath, snap.Bytes()); err != nil {
		e.log.Warn("state export", "path", e.statePath, "err", err)
		return
	}
	e.last, e.done = sum, true
}

// writeFileAtomic writes b to a temporary file beside path, syncs it and
// renames it over path.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".export-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// serveStatus answers p2p.ProtoStatus like coordinator.ServeStatus, adding
// the Raft leader this replica knows, so that a client can redirect.
func serveStatus(h *p2p.Host, name string, status func() coordinator.Status, node *replica.Node) error {
	return h.Handle(p2p.ProtocolSpec{ID: p2p.ProtoStatus, Roles: p2p.AllRoles(), Timeout: 10 * time.Second, MaxFrame: 4096}, func(_ context.Context, s *p2p.Stream) error {
		var req pb.StatusRequest
		if err := s.ReadMsg(&req); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		resp := coordinator.StatusToPB(name, status(), h.Federation(), req.IncludeMembers)
		if l := node.Leader(); l != "" {
			resp.Leader = []byte(l)
		}
		return s.WriteMsg(resp)
	})
}

// ProtoReplicaStatus is the status companion protocol of the replicated
// coordinator: any enrolled member (the `sovereign status` command runs
// as an observer) sends an empty frame and gets a BytesValue with the JSON
// of []replicaStat, this replica's view of every replica of its Raft
// configuration (its own first; unreachable ones with State "Unreachable").
const ProtoReplicaStatus = "/sovereign/replica-status/1.0.0"

// replicaStatsTimeout bounds how long a replica waits for each of the others.
const replicaStatsTimeout = 2 * time.Second

func serveReplicaStatus(h *p2p.Host, node *replica.Node) error {
	return h.Handle(p2p.ProtocolSpec{ID: ProtoReplicaStatus, Roles: p2p.AllRoles(), Timeout: 10 * time.Second, MaxFrame: 1024}, func(ctx context.Context, s *p2p.Stream) error {
		var req wrapperspb.BytesValue
		if err := s.ReadMsg(&req); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		stats := clusterStats(ctx, node)
		out := make([]replicaStat, len(stats))
		for i, st := range stats {
			out[i] = toReplicaStat(st)
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		return s.WriteMsg(wrapperspb.Bytes(b))
	})
}

// replicaStat is the wire form of replica.Stats on ProtoReplicaStatus, with
// peer IDs as strings ("" when unknown).
type replicaStat struct {
	ID                string   `json:"id"`
	State             string   `json:"state"`
	Leader            string   `json:"leader"`
	Term              uint64   `json:"term"`
	CommitIndex       uint64   `json:"commit_index"`
	AppliedIndex      uint64   `json:"applied_index"`
	LastIndex         uint64   `json:"last_index"`
	LastSnapshotIndex uint64   `json:"last_snapshot_index"`
	Voters            []string `json:"voters"`
	Err               string   `json:"err,omitempty"`
}

func toReplicaStat(s replica.Stats) replicaStat {
	r := replicaStat{ID: s.ID.String(), State: s.State, Term: s.Term, CommitIndex: s.CommitIndex,
		AppliedIndex: s.AppliedIndex, LastIndex: s.LastIndex, LastSnapshotIndex: s.LastSnapshotIndex, Err: s.Err, Voters: []string{}}
	if s.Leader != "" {
		r.Leader = s.Leader.String()
	}
	for _, sv := range s.Servers {
		if sv.Voter {
			r.Voters = append(r.Voters, sv.ID.String())
		}
	}
	return r
}

// clusterStats asks every replica of node's configuration for its Stats in
// parallel, each within replicaStatsTimeout; node's own entry comes first.
func clusterStats(ctx context.Context, node *replica.Node) []replica.Stats {
	own := node.Stats()
	out := []replica.Stats{own}
	var others []peer.ID
	for _, sv := range own.Servers {
		if sv.ID != own.ID {
			others = append(others, sv.ID)
		}
	}
	res := make([]replica.Stats, len(others))
	var wg sync.WaitGroup
	for i, id := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, replicaStatsTimeout)
			defer cancel()
			st, err := node.PeerStats(c, id)
			if err != nil {
				st = replica.Stats{ID: id, State: "Unreachable", Err: err.Error()}
			}
			res[i] = st
		}()
	}
	wg.Wait()
	return append(out, res...)
}

// adminRequest and adminResponse are the JSON bodies of the replica
// protocol (replica.ProtocolID), for the join and leave commands, which
// talk to replicas from a process that is not (yet) one of them.
type adminRequest struct {
	Op    string   `json:"op"`
	Peer  string   `json:"peer,omitempty"`
	Addrs []string `json:"addrs,omitempty"`
}

type adminResponse struct {
	Err    string `json:"err,omitempty"`
	Leader string `json:"leader,omitempty"`
}

// askReplicas sends req to the coordinators of fed other than the host
// itself until one accepts it, following not-the-leader redirects; it
// retries for as long as ctx allows (a cluster may be electing a leader).
func askReplicas(ctx context.Context, h *p2p.Host, fed *p2p.Federation, req adminRequest, log *slog.Logger) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var lastErr error
	try := func(id peer.ID) (redirect peer.ID, ok bool) {
		m, known := fed.Lookup(id)
		if !known || m.Role != p2p.RoleCoordinator || id == h.ID() {
			return "", false
		}
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := h.Connect(c, m.AddrInfo()); err != nil {
			lastErr = fmt.Errorf("coordinator %s: %w", m.Name, err)
			return "", false
		}
		var out wrapperspb.BytesValue
		if err := p2p.NewClient(h).Request(c, id, replica.ProtocolID, wrapperspb.Bytes(body), &out); err != nil {
			lastErr = fmt.Errorf("coordinator %s: %w", m.Name, err)
			return "", false
		}
		var resp adminResponse
		if err := json.Unmarshal(out.Value, &resp); err != nil {
			lastErr = fmt.Errorf("coordinator %s: malformed answer: %w", m.Name, err)
			return "", false
		}
		if resp.Err == "" {
			log.Info("replica "+req.Op+" accepted", "by", m.Name, "peer", req.Peer)
			return "", true
		}
		lastErr = fmt.Errorf("coordinator %s: %s", m.Name, resp.Err)
		if l, err := peer.Decode(resp.Leader); err == nil && l != id {
			return l, false
		}
		return "", false
	}
	backoff := 200 * time.Millisecond
	for {
		for _, m := range fed.Coordinators() {
			redirect, ok := try(m.ID)
			if ok {
				return nil
			}
			if redirect != "" {
				if _, ok := try(redirect); ok {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = errors.New("no other coordinator in the federation file")
			}
			return fmt.Errorf("replica %s of %s: %w (last error: %v)", req.Op, req.Peer, ctx.Err(), lastErr)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// joinCluster asks the running replicas to add this host as a voter.
func joinCluster(ctx context.Context, h *p2p.Host, fed *p2p.Federation, log *slog.Logger) error {
	c, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return askReplicas(c, h, fed, adminRequest{Op: "join", Peer: h.ID().String(), Addrs: h.Addrs()}, log)
}

func runLeave(ctx context.Context, cfg *coordinatorConfig, peerID string, out io.Writer) error {
	log := newLogger(io.Discard, cfg.Level, cfg.LogFormat)
	fed, me, sk, err := coordinatorSetup(cfg)
	if err != nil {
		return err
	}
	target := me.ID
	if peerID != "" {
		if target, err = peer.Decode(peerID); err != nil {
			return fmt.Errorf("--peer %q: %w", peerID, err)
		}
		if m, ok := fed.Lookup(target); !ok || m.Role != p2p.RoleCoordinator {
			return fmt.Errorf("--peer %s is not a coordinator of %s", target, cfg.Federation)
		}
	}
	h, err := p2p.NewHost(ctx, p2p.HostConfig{Identity: sk, Federation: fed, Logger: log})
	if err != nil {
		return err
	}
	defer h.Close()
	// Ask every coordinator, the leaving one included unless it is this
	// process's own identity (then the host would be talking to itself).
	if err := askReplicas(ctx, h, fed, adminRequest{Op: "leave", Peer: target.String()}, log); err != nil {
		return err
	}
	name := target.String()
	if m, ok := fed.Lookup(target); ok {
		name = m.Name
	}
	fmt.Fprintf(out, "coordinator %s (%s) removed from the Raft group\n", name, target)
	return nil
}
