package service

// The coordinator file: its schema, defaults and validation. Errors name
// the file, the key and the allowed values, like the worker's
// (worker/config.go); every key is documented in ConfigDoc
// (configdoc.go), from which docs/config.md is generated.

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/replica"
	"github.com/sovereign-fl/sovereign/metrics"
	"github.com/sovereign-fl/sovereign/p2p"
)

// File is the TOML layout of `sovereign coordinator --config`:
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
type File struct {
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

// Config is a loaded, resolved and validated configuration.
type Config struct {
	File
	Config coordinator.Config
	Level  slog.Level
	// Replica holds the Raft settings; Dir, Host and Logger are filled in
	// when the coordinator starts.
	Replica replica.Config
	// Resume reopens a failed or budget-exhausted study once this replica
	// leads (--resume).
	Resume bool
}

// Load reads path; errors name the file and the field.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b, filepath.Dir(path))
}

func Parse(src string, b []byte, dir string) (*Config, error) {
	var f File
	if err := ConfigDoc.Decode(src, b, &f); err != nil {
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
	c := &Config{File: f}
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

// coordinatorSetup checks the configuration against the federation file and
// loads the identity.
func (cfg *Config) Setup() (*p2p.Federation, p2p.Member, crypto.PrivKey, error) {
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
