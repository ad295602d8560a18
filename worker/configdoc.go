package worker

import (
	"reflect"

	"github.com/sovereign-fl/sovereign/internal/confdoc"
)

// ConfigDoc documents every key of the worker's configuration file; the
// reference test (cmd/sovereign) fails on a key without an entry and
// renders docs/config.md from it. ParseConfig decodes with it.
var ConfigDoc = confdoc.File{
	Name:  "worker",
	Title: "Worker file (`sovereign worker --config`)",
	Intro: "One file per institution. Relative paths (in `dataset` too) are resolved against the file's folder. " +
		"`[policy]` is what the institution agrees to: a round outside it is refused, with the rule named to the coordinator " +
		"and the private values only in the worker's log.",
	Schema: reflect.TypeOf(rawConfig{}),
	Docs: confdoc.Docs{
		"name":       {Text: "The institution's name in the federation file (role `worker`).", Note: "required", Example: `"st-marys"`},
		"identity":   {Text: "Private key file written by `sovereign keygen`; its peer ID must be the one enrolled under `name`.", Note: "required", Example: `"st-marys.key"`},
		"federation": {Text: "The federation file (the same at every member).", Note: "required", Example: `"federation.toml"`},
		"listen":     {Text: "libp2p multiaddrs to listen on. A port another process listens on is an error.", Note: "required", Type: "array of multiaddr strings", Example: `["/ip4/0.0.0.0/tcp/4101"]`},
		"announce":   {Text: "Multiaddrs to announce instead of the listen addresses.", Note: "the listen addresses", Type: "array of multiaddr strings", Example: `["/dns4/fl.st-marys.example/tcp/4101"]`},
		"dataset": {Text: "The local data: a CSV file (`label=` column, `classes=` count, `header=`, `standardize=` options), an IDX folder, or an embedded set " +
			"(`digits`, `mnist`, with `?shard=I/N` for the I-th of N disjoint shards). With `schema`: `csv:FILE[?test=FRAC&seed=N]`.",
			Note: "required", Range: "`csv:FILE?…`, `idx:DIR`, `digits[?shard=I/N]`, `mnist[?shard=I/N]`", Example: `"csv:/data/cohort.csv?label=outcome&classes=2"`},
		"schema":          {Text: "The federation-wide data schema (docs/data-schema.md); with it the CSV is checked and encoded at start.", Note: "none", Example: `"schema.toml"`},
		"stats":           {Text: "The federation's feature statistics (data.Stats JSON, e.g. a statistics round's stats.json); required with `schema`.", Note: "none", Example: `"stats.json"`},
		"standardize":     {Text: "With a schema, z-score numeric columns with the federation's mean and deviation (false if either this or the schema says false).", Default: "true", Example: "false"},
		"store":           {Text: "The worker's badger store (keys, answered rounds, ε spent). Keep it across restarts; it is 0700.", Note: "required", Example: `"store"`},
		"log_level":       {Text: "Lowest level logged.", Default: `"info"`, Range: "`debug`, `info`, `warn`, `error`", Example: `"debug"`},
		"log_format":      {Text: "Log line format on stderr; `--log-format` overrides it.", Default: `"text"`, Range: "`text`, `json`", Example: `"json"`},
		"trainer":         {Text: "The institution's own training command, started once and kept across rounds; it speaks the trainer protocol (docs/trainer-protocol.md) and replaces `dataset`, `schema` and `stats`.", Note: "none (built-in training)", Type: "array of strings", Example: `["python3", "train.py", "--data", "/data/cohort"]`},
		"trainer_timeout": {Text: "Bound on each trainer request (its start included); a trainer past it is killed, the round refused and the trainer restarted.", Default: `"10m"`, Range: "> 0", Type: "duration, a string such as \"10m\"", Example: `"30m"`},
		"metrics_listen":  {Text: "host:port of the Prometheus endpoint (`/metrics`). Keep it on loopback.", Note: "off", Type: "host:port string", Example: `"127.0.0.1:9465"`},

		"policy":                      {Text: "The institution's conditions for taking part in a round."},
		"policy.max_epsilon":          {Text: "Largest cumulative ε of one study (the coordinator's RDP accountant, as announced for the end of the round, and the worker's own q = 1 accountant over that study's rounds) the institution accepts. With a finite budget, rounds without differential privacy are refused.", Note: "+∞ (no budget)", Range: "(0, ∞]", Example: "8.0"},
		"policy.min_cohort":           {Text: "Fewest institutions a round must sample.", Default: "2", Range: "≥ 1", Example: "3"},
		"policy.accepted_models":      {Text: "Model specs the institution trains (`model.ParseSpec` forms).", Note: "any", Type: "array of model specs", Example: `["logreg", "mlp:32"]`},
		"policy.max_cohort":           {Text: "Largest cohort a round may announce (bounds the SecAgg+ work).", Default: "1024", Range: "[max(min_cohort, 2), 65535]", Example: "200"},
		"policy.max_secagg_degree":    {Text: "Largest SecAgg+ neighbour degree a round may announce.", Default: "256", Range: "[1, 65534]", Example: "64"},
		"policy.evaluation":           {Text: "What the worker answers to evaluation: its exact figures once per round it trained in, only inside the secure aggregate, or nothing (docs/threat-model.md).", Default: `"exact"`, Range: "`exact`, `aggregate`, `none`", Example: `"aggregate"`},
		"policy.colluding_neighbours": {Text: "SecAgg+ neighbours c assumed to collude with the coordinator; announced thresholds below SafeThreshold(k, c) are refused.", Default: "0", Range: "[0, 65535]", Example: "2"},
		"policy.colluding_fraction":   {Text: "Fraction γ of a round's sampled workers assumed to collude with the coordinator; turned into colluding neighbours for the announced n and k (secagg.ColludersFor, failure 2^-40), and announced thresholds below SafeThreshold(k, c) are refused.", Default: "0", Range: "[0, 1)", Example: "0.1"},
		"policy.max_epsilon_total":    {Text: "Largest ε of the worker's own accountant (q = 1) over every study of the federation together: the institution's data is the same in each, so privacy loss composes across studies (`max_epsilon` caps each study).", Note: "+∞ (no cap across studies)", Range: "(0, ∞]", Example: "16.0"},
		"policy.delta":                {Text: "δ of the (ε, δ) the worker's own accountant (q = 1, over the rounds it joined) reports and checks against `max_epsilon`.", Default: "1e-05", Range: "(0, 1)", Example: "1e-06"},
		"policy.require_stats_noise":  {Text: "Refuse a federation-statistics round whose sums carry no row-level noise (coordinator `[rounds] stats_noise`).", Default: "false", Example: "true"},
	},
}
