package service

import (
	"reflect"

	"github.com/sovereign-fl/sovereign/internal/confdoc"
)

// ConfigDoc documents every key of File; TestConfigReference
// fails on a key without an entry and renders docs/config.md from it.
var ConfigDoc = confdoc.File{
	Name:  "coordinator",
	Title: "Coordinator file (`sovereign coordinator --config`)",
	Intro: "One file per coordinator replica. Relative paths are resolved against the file's folder. " +
		"`[rounds]` is the training configuration of the federation's default study (more studies start on the running federation with `sovereign study start`; " +
		"a study file takes the same keys), `[raft]` tunes the replicated log.",
	Schema: reflect.TypeOf(File{}),
	Docs: confdoc.Docs{
		"name":       {Text: "The coordinator's name in the federation file (role `coordinator`).", Note: "required", Example: `"coord-1"`},
		"identity":   {Text: "Private key file written by `sovereign keygen`; its peer ID must be the one enrolled under `name`.", Note: "required", Example: `"coord-1.key"`},
		"federation": {Text: "The federation file listing every member.", Note: "required", Example: `"federation.toml"`},
		"listen":     {Text: "libp2p multiaddrs to listen on, TCP and/or QUIC. A port another process listens on is an error.", Note: "required", Type: "array of multiaddr strings", Example: `["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]`},
		"announce":   {Text: "Multiaddrs to announce instead of the listen addresses (behind NAT or a load balancer).", Note: "the listen addresses", Type: "array of multiaddr strings", Example: `["/dns4/coord-1.example.org/tcp/4001"]`},
		"data":       {Text: "Data folder: `raft/` (log, snapshots), `registry/` (models by hash), `ledger.json`, `state.snapshot`, `model.json`. Keep it across restarts.", Note: "required", Example: `"coord-1-data"`},
		"log_level":  {Text: "Lowest level logged.", Default: `"info"`, Range: "`debug`, `info`, `warn`, `error`", Example: `"debug"`},
		"log_format": {Text: "Log line format on stderr; `--log-format` overrides it.", Default: `"text"`, Range: "`text`, `json`", Example: `"json"`},
		"metrics_listen": {Text: "host:port of the Prometheus endpoint (`/metrics`). Keep it on loopback.", Note: "off", Type: "host:port string",
			Example: `"127.0.0.1:9464"`},
		"dashboard_listen": {Text: "host:port of the read-only web dashboard.", Note: "off", Type: "host:port string", Example: `"127.0.0.1:8080"`},
		"dashboard_token":  {Text: "Bearer token guarding the dashboard (needs `dashboard_listen`).", Note: "none", Example: `"s3cret-token"`},

		"rounds":                   {Text: "The training configuration: model, rounds, sampling, local training, server strategy, differential privacy and SecAgg+."},
		"rounds.model":             {Text: "Architecture, in `model.ParseSpec` syntax; `external` is the institutions' own model (any tensors), trained only by their trainers (docs/trainer-protocol.md): its layout and initial weights are `init`'s tensors.", Default: `"2nn"`, Range: "`logreg`, `2nn`, `cnn`, `mlp:H1,H2,...`, `cnn:C1,...,FC`, `external`", Example: `"mlp:32"`},
		"rounds.input":             {Text: "Input shape [channels, height, width]; must match the workers' data (64 features = `[1, 1, 64]`).", Default: "[1, 28, 28]", Range: "three integers ≥ 1", Example: "[1, 1, 64]"},
		"rounds.classes":           {Text: "Number of classes; must match the workers' labels.", Default: "10", Range: "≥ 2", Example: "2"},
		"rounds.rounds":            {Text: "Models to commit after the initial one.", Default: "10", Range: "≥ 1", Example: "30"},
		"rounds.workers_per_round": {Text: "Workers sampled per round; 0 samples `fraction` of the online workers.", Default: "10", Range: "0 or [2, 65535]", Example: "3"},
		"rounds.fraction":          {Text: "Share of online workers sampled when `workers_per_round` is 0 (rounded up).", Default: "0.1", Range: "(0, 1]", Example: "0.5"},
		"rounds.min_workers":       {Text: "Fewest workers a round samples and fewest survivors whose sum may be released; with DP on also the t of the distributed noise σC/√t.", Default: "3", Range: "[2, workers_per_round]", Example: "2"},
		"rounds.epochs":            {Text: "Local epochs per round (FedAvg's E).", Default: "1", Range: "≥ 1", Example: "5"},
		"rounds.batch":             {Text: "Local minibatch size (FedAvg's B).", Default: "10", Range: "≥ 1", Example: "16"},
		"rounds.lr":                {Text: "Client learning rate.", Default: "0.05", Range: "(0, ∞)", Example: "0.1"},
		"rounds.prox_mu":           {Text: "FedProx proximal term μ (Li et al. 2020); 0 is plain FedAvg local training.", Default: "0.0", Range: "[0, ∞)", Example: "0.01"},
		"rounds.strategy":          {Text: "Server strategy; SecAgg+ reveals only the sum, so only the FedAvg family applies (FedOpt: Reddi et al. 2021).", Default: `"fedavg"`, Range: "`fedavg`, `fedavgm`, `fedadam`, `fedyogi`, `fedadagrad`, `fedprox:MU`", Example: `"fedadam"`},
		"rounds.server_lr":         {Text: "Server learning rate of the strategy; 0 takes the strategy's default.", Default: "0.0", Range: "[0, ∞)", Example: "0.01"},
		"rounds.clip":              {Text: "L2 clipping norm C of each update (needed when `noise` > 0).", Default: "0.0", Range: "(0, ∞) with noise on", Example: "1.0"},
		"rounds.noise":             {Text: "Gaussian noise multiplier σ of distributed DP; each worker adds N(0, σ²C²/t). 0 turns differential privacy off (workers with a finite `max_epsilon` then refuse).", Default: "0.0", Range: "[0, ∞)", Example: "1.0"},
		"rounds.delta":             {Text: "δ of the (ε, δ) guarantee the RDP accountant reports (Mironov 2017).", Default: "1e-5", Range: "(0, 1)", Example: "1e-5"},
		"rounds.clip_range":        {Text: "SecAgg+ quantization range [-R, R] of each coordinate when DP is off (with DP on it is C + 6 noise deviations).", Default: "1.0", Range: "(0, ∞)", Example: "2.0"},
		"rounds.max_weight":        {Text: "Largest weight (example count) a worker may claim for its update.", Default: "1e4", Range: "(0, ∞)", Example: "1e5"},
		"rounds.secagg_degree":     {Text: "SecAgg+ neighbour degree k (Bell et al. 2020); 0 takes about 2·log2 n, capped at sampled − 1 (= classic SecAgg).", Default: "0", Range: "≥ 0", Example: "8"},
		"rounds.stage_timeout":     {Text: "Bound on each protocol stage and the evaluation.", Default: `"1m"`, Range: "> 0", Type: "duration, a string such as \"10s\"", Example: `"10s"`},
		"rounds.retry_limit":       {Text: "Failed rounds in a row the driver tolerates before it stops.", Default: "3", Range: "≥ 0", Example: "5"},
		"rounds.seed":              {Text: "Seed of the initial model, the sampling and the SecAgg+ graphs.", Default: "0", Range: "any integer", Example: "1"},
		"rounds.poll_interval":     {Text: "How often the driver checks again for enough online workers.", Default: `"1s"`, Range: "> 0", Type: "duration, a string such as \"1s\"", Example: `"500ms"`},
		"rounds.pace":              {Text: "How long each round stays in flight before its first stage, so that a demonstration's rounds last long enough to kill the leader mid-round; a resumed round does not wait again.", Default: `"0s"`, Range: "≥ 0", Type: "duration, a string such as \"1s\"", Example: `"1s"`},
		"rounds.secure_evaluation": {Text: "Evaluate each announced model inside the round's secure aggregate: the coordinator learns only the mean over the survivors (docs/threat-model.md).", Default: "false", Example: "true"},
		"rounds.init":              {Text: "safetensors model file to start from (round 0) instead of the seeded initialisation; its tensors must fit `model`, `input` and `classes`.", Note: "none", Example: `"model.safetensors"`},
		"rounds.max_epsilon":       {Text: "The study's own privacy budget: the study ends `budget-exhausted` (status and ledger) instead of starting a round whose cumulative ε would pass it; 0 = none of its own (the institutions' `policy.max_epsilon` still apply).", Default: "0", Range: "≥ 0, finite", Example: "8.0"},
		"rounds.schema":            {Text: "The federation's data schema file (docs/data-schema.md), the same every worker names: the statistics round runs first, and `input` and `classes` follow from it.", Note: "none", Example: `"schema.toml"`},
		"rounds.stats_noise":       {Text: "σ of the row-level Gaussian noise on the federation statistics (each site adds N(0, σ²Δ²/t)); its ε is reported with the statistics, apart from the model rounds'. Needs `schema`.", Default: "0", Range: "≥ 0, finite", Example: "1.0"},
		"rounds.stats_max_rows":    {Text: "Public bound on one site's rows, the range of the statistics' secure sum; a worker with more rows refuses the statistics round; 0 = `max_weight`. Needs `schema`.", Default: "0", Range: "≥ 0", Example: "100000"},

		"raft":                      {Text: "Optional hashicorp/raft settings; absent keys keep these defaults."},
		"raft.heartbeat_timeout":    {Text: "Time without leader contact before a follower stands for election.", Default: `"500ms"`, Range: "> 0", Type: "duration, a string such as \"500ms\"", Example: `"1s"`},
		"raft.election_timeout":     {Text: "Time a candidate waits for votes.", Default: `"500ms"`, Range: "> 0", Type: "duration, a string such as \"500ms\"", Example: `"1s"`},
		"raft.leader_lease_timeout": {Text: "Time a leader stays leader without reaching a quorum.", Default: `"500ms"`, Range: "> 0, at most `heartbeat_timeout`", Type: "duration, a string such as \"500ms\"", Example: `"500ms"`},
		"raft.commit_timeout":       {Text: "Longest delay before a heartbeat carries the commit index.", Default: `"50ms"`, Range: "> 0", Type: "duration, a string such as \"50ms\"", Example: `"100ms"`},
		"raft.snapshot_threshold":   {Text: "Log entries since the last snapshot that trigger a new one.", Default: "8192", Range: "≥ 1", Example: "1024"},
		"raft.snapshot_interval":    {Text: "How often the threshold is checked.", Default: `"2m"`, Range: "> 0", Type: "duration, a string such as \"2m\"", Example: `"30s"`},
		"raft.trailing_logs":        {Text: "Log entries kept after a snapshot, for slow followers.", Default: "10240", Range: "≥ 1", Example: "20000"},
		"raft.transport_timeout":    {Text: "Bound on one Raft RPC; must let the largest model cross.", Default: `"60s"`, Range: "> 0", Type: "duration, a string such as \"60s\"", Example: `"2m"`},
		"raft.restart_delay":        {Text: "Pause before a leader runs its round driver again after the driver returned an error.", Default: `"1s"`, Range: "> 0", Type: "duration, a string such as \"1s\"", Example: `"5s"`},
	},
}
