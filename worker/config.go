// Package worker is an institution's node in a Sovereign federation: it
// holds the institution's data, applies its policy, trains locally (FedAvg,
// McMahan et al. 2017, or FedProx, Li et al. 2020), clips and noises its
// update for differential privacy (McMahan et al. 2018; distributed noise as
// in Truex et al. 2019), and runs the client side of SecAgg+ (Bell et al.
// 2020, over the stages of Bonawitz et al. 2017) with every answer kept in a
// badger store so that a restarted node, or a coordinator asking again after
// a failover, gets the same answer.
//
// The package has no network code. A Node's methods map one to one onto the
// coordinator's Cohort interface; the libp2p server that exposes them lives
// beside it (serve.go) and converts wire messages to these types.
package worker

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/trainer"
)

// DefaultMinCohort is the smallest cohort a worker accepts when its policy
// does not say: secure aggregation needs at least two clients to hide one.
const DefaultMinCohort = 2

// DefaultMaxCohort and DefaultMaxSecAggDegree bound the work one
// announcement can ask of a worker: its SecAgg+ neighbour table holds
// cohort × degree entries and it computes a pairwise mask per neighbour
// (security review L3). 1,024 × 256 entries take 1 MiB; a federation with
// larger rounds raises them in the policy.
const (
	DefaultMaxCohort       = 1024
	DefaultMaxSecAggDegree = 256
)

// Evaluation policies: what a worker returns when the coordinator asks it
// to evaluate a committed model on its local test split.
const (
	// EvalExact answers the example count, loss and accuracy of the model
	// the worker was sampled to train, once per round (the default).
	EvalExact = "exact"
	// EvalAggregate refuses every evaluation request and reports its
	// figures only inside a round's secure aggregate, when the coordinator
	// runs secure evaluation (wire.EvalWords): the coordinator learns the
	// mean over at least the SecAgg+ threshold of survivors, never this
	// worker's figures.
	EvalAggregate = "aggregate"
	// EvalNone refuses every evaluation request and contributes zeros to
	// a secure evaluation.
	EvalNone = "none"
)

// Config is a worker's configuration file (TOML), as read by LoadConfig:
//
//	name       = "st-marys"
//	identity   = "st-marys.key"          # private key from `sovereign keygen`
//	federation = "federation.toml"
//	listen     = ["/ip4/0.0.0.0/tcp/4101", "/ip4/0.0.0.0/udp/4101/quic-v1"]
//	announce   = []                      # optional public addresses
//	dataset    = "csv:/data/cohort.csv?label=outcome"   # or "idx:DIR", see data.Load
//	store      = "store"                 # the worker's own badger folder
//	log_level  = "info"                  # debug, info, warn, error
//	log_format = "text"                  # text or json (--log-format overrides)
//	metrics_listen = "127.0.0.1:9465"    # Prometheus /metrics; absent = off
//	trainer    = ["python3", "train.py", "--data", "/data/cohort"]  # own training code instead of dataset
//	trainer_timeout = "10m"              # bound of each trainer request
//
//	[policy]
//	max_epsilon     = 8.0                # refuse rounds beyond this ε
//	min_cohort      = 3                  # refuse rounds sampling fewer institutions
//	accepted_models = ["2nn", "mlp:32"]  # refuse other architectures
//	colluding_fraction = 0.05            # size the SecAgg+ threshold for this γ
//	delta           = 1e-5               # δ of the worker's own (ε, δ) accountant
//
// Relative paths are resolved against the folder of the configuration file.
type Config struct {
	// Name is the institution's name in the federation file.
	Name string `toml:"name"`
	// Identity is the private key file (written by `sovereign keygen`).
	Identity string `toml:"identity"`
	// Federation is the federation file listing the enrolled peers.
	Federation string `toml:"federation"`
	// Listen are the multiaddrs the worker listens on.
	Listen []string `toml:"listen"`
	// Announce are the multiaddrs the worker announces instead (optional).
	Announce []string `toml:"announce"`
	// Dataset is a data.Load spec: "csv:FILE?label=NAME", "idx:DIR",
	// "digits" or "mnist". The train split trains, the test split serves
	// federated evaluation.
	Dataset string `toml:"dataset"`
	// Schema is the federation-wide data schema (data.Schema), a file every
	// member shares. With it, dataset must be "csv:FILE[?test=FRAC&seed=N]":
	// the file is checked against the schema at start (every problem
	// reported at once) and encoded into the schema's feature vector.
	Schema string `toml:"schema"`
	// Stats, optional with Schema, is a file of the federation's feature
	// statistics (data.Stats JSON, e.g. the stats.json of `sovereign sim
	// --schema`). Without it the worker takes the statistics the
	// federation computes in its statistics round (coordinator
	// [rounds] schema); with it, it uses the file until an announcement
	// carries the federation's own. Missing cells are imputed and, unless
	// Standardize is false, numeric columns standardised with them, the
	// same at every site.
	Stats string `toml:"stats"`
	// Standardize (default true with a schema; false if either this or the
	// schema's standardize key is false) z-scores numeric columns with the
	// federation's mean and deviation.
	Standardize bool `toml:"standardize"`
	// Store is the folder of the worker's badger store.
	Store string `toml:"store"`
	// Policy is what the institution agrees to take part in.
	Policy Policy `toml:"policy"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `toml:"log_level"`
	// LogFormat is text or json (default text).
	LogFormat string `toml:"log_format"`
	// MetricsListen, if set, is the host:port of the Prometheus endpoint
	// (/metrics). Off by default; keep it on loopback unless a scraper on
	// another machine needs it.
	MetricsListen string `toml:"metrics_listen"`
	// Trainer, if set, is the institution's own training command
	// (docs/trainer-protocol.md), run in the configuration file's folder
	// instead of the built-in networks; it holds the data, so Dataset,
	// Schema and Stats must be absent.
	Trainer []string `toml:"trainer"`
	// TrainerTimeout bounds each trainer request, its start included
	// (default trainer.DefaultTimeout).
	TrainerTimeout time.Duration `toml:"-"`
	// TrainerDir is the folder the trainer runs in (the configuration
	// file's folder).
	TrainerDir string `toml:"-"`

	// path is the file the configuration was read from (for messages).
	path string
}

// Policy is an institution's conditions for taking part in a round.
type Policy struct {
	// MaxEpsilon is the largest cumulative ε (of the federation's privacy
	// accountant, as announced for the end of the round) the institution
	// accepts. Absent means no budget: +Inf. With a finite budget, rounds
	// without differential privacy are refused.
	MaxEpsilon float64 `toml:"max_epsilon"`
	// MaxEpsilonTotal, if finite, caps the worker's own ε over every
	// study of the federation together (the same data in each: privacy
	// loss composes); MaxEpsilon caps each study. Absent: +Inf.
	MaxEpsilonTotal float64 `toml:"max_epsilon_total"`
	// MinCohort is the fewest institutions a round must sample
	// (default DefaultMinCohort).
	MinCohort int `toml:"min_cohort"`
	// AcceptedModels are the model specs (model.ParseSpec forms) the
	// institution trains; empty means any.
	AcceptedModels []string `toml:"accepted_models"`
	// MaxCohort is the largest cohort (sampled workers) a round may
	// announce (default DefaultMaxCohort).
	MaxCohort int `toml:"max_cohort"`
	// MaxSecAggDegree is the largest SecAgg+ neighbour degree a round may
	// announce (default DefaultMaxSecAggDegree).
	MaxSecAggDegree int `toml:"max_secagg_degree"`
	// Evaluation is EvalExact, EvalAggregate or EvalNone (default
	// EvalExact); see
	// docs/threat-model.md for what the coordinator learns from each.
	Evaluation string `toml:"evaluation"`
	// ColludingNeighbours is the number c of a worker's SecAgg+ neighbours
	// the institution assumes may collude with the coordinator; announced
	// thresholds below secagg.SafeThreshold(k, c) are refused (default 0:
	// t must be a strict majority of the k+1 holders).
	ColludingNeighbours int `toml:"colluding_neighbours"`
	// RequireStatsNoise refuses a federation-statistics round whose sums
	// carry no differential-privacy noise (coordinator [rounds]
	// stats_noise; default false: only the pooled sums over the cohort
	// are revealed).
	RequireStatsNoise bool `toml:"require_stats_noise"`
	// ColludingFraction is the fraction γ of the round's sampled workers
	// the institution assumes may collude with the coordinator. With γ > 0
	// the worker turns it into a number of colluding neighbours for the
	// announced n and k (secagg.ColludersFor, Bell et al. 2020 §3, failure
	// 2^-40) and refuses a threshold below SafeThreshold(k, c), c being
	// the larger of that number and colluding_neighbours (default 0).
	ColludingFraction float64 `toml:"colluding_fraction"`
	// Delta is the δ of the (ε, δ) the worker's own accountant reports and
	// checks against MaxEpsilon (default DefaultDelta). See Node.OwnEpsilon.
	Delta float64 `toml:"delta"`
}

// DefaultDelta is the default policy.delta.
const DefaultDelta = 1e-5

// WithDefaults returns p with the zero work limits and evaluation policy
// replaced by their defaults (a Config built in code leaves them zero).
func (p Policy) WithDefaults() Policy {
	if p.MaxCohort == 0 {
		p.MaxCohort = DefaultMaxCohort
	}
	if p.MaxSecAggDegree == 0 {
		p.MaxSecAggDegree = DefaultMaxSecAggDegree
	}
	if p.Evaluation == "" {
		p.Evaluation = EvalExact
	}
	if p.Delta == 0 {
		p.Delta = DefaultDelta
	}
	return p
}

// rawConfig mirrors Config with pointers where absence differs from zero.
type rawConfig struct {
	Name        string   `toml:"name"`
	Identity    string   `toml:"identity"`
	Federation  string   `toml:"federation"`
	Listen      []string `toml:"listen"`
	Announce    []string `toml:"announce"`
	Dataset     string   `toml:"dataset"`
	Schema      string   `toml:"schema"`
	Stats       string   `toml:"stats"`
	Standardize *bool    `toml:"standardize"`
	Store       string   `toml:"store"`
	LogLevel    string   `toml:"log_level"`
	LogFormat   string   `toml:"log_format"`
	Metrics     string   `toml:"metrics_listen"`
	Trainer     []string `toml:"trainer"`
	TrainerTO   string   `toml:"trainer_timeout"`
	Policy      struct {
		MaxEpsilon          *float64 `toml:"max_epsilon"`
		MaxEpsilonTotal     *float64 `toml:"max_epsilon_total"`
		MinCohort           *int     `toml:"min_cohort"`
		AcceptedModels      []string `toml:"accepted_models"`
		MaxCohort           *int     `toml:"max_cohort"`
		MaxSecAggDegree     *int     `toml:"max_secagg_degree"`
		Evaluation          string   `toml:"evaluation"`
		ColludingNeighbours int      `toml:"colluding_neighbours"`
		RequireStatsNoise   bool     `toml:"require_stats_noise"`
		ColludingFraction   float64  `toml:"colluding_fraction"`
		Delta               *float64 `toml:"delta"`
	} `toml:"policy"`
}

// LoadConfig reads, resolves and validates a worker configuration file.
// Errors name the file and the offending field.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	c, err := ParseConfig(filepath.Base(path), b, filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ParseConfig parses a configuration from b; src names it in errors and
// relative paths are resolved against dir.
func ParseConfig(src string, b []byte, dir string) (*Config, error) {
	var raw rawConfig
	if err := ConfigDoc.Decode(src, b, &raw); err != nil {
		return nil, err
	}
	c := &Config{
		Name: raw.Name, Identity: raw.Identity, Federation: raw.Federation,
		Listen: raw.Listen, Announce: raw.Announce, Dataset: raw.Dataset, Store: raw.Store,
		LogLevel: raw.LogLevel, LogFormat: raw.LogFormat, MetricsListen: raw.Metrics, path: src,
	}
	c.Schema, c.Stats, c.Standardize = raw.Schema, raw.Stats, raw.Standardize == nil || *raw.Standardize
	c.Trainer, c.TrainerDir = raw.Trainer, dir
	c.TrainerTimeout = trainer.DefaultTimeout
	if raw.TrainerTO != "" {
		d, err := time.ParseDuration(raw.TrainerTO)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s: trainer_timeout: %q is not a positive duration like \"10m\"", src, raw.TrainerTO)
		}
		c.TrainerTimeout = d
	}
	c.Policy.AcceptedModels = raw.Policy.AcceptedModels
	c.Policy.ColludingNeighbours = raw.Policy.ColludingNeighbours
	c.Policy.RequireStatsNoise = raw.Policy.RequireStatsNoise
	c.Policy.ColludingFraction = raw.Policy.ColludingFraction
	c.Policy.Delta = DefaultDelta
	if raw.Policy.Delta != nil {
		c.Policy.Delta = *raw.Policy.Delta
	}
	c.Policy.MaxEpsilon = math.Inf(1)
	if raw.Policy.MaxEpsilon != nil {
		c.Policy.MaxEpsilon = *raw.Policy.MaxEpsilon
	}
	c.Policy.MaxEpsilonTotal = math.Inf(1)
	if raw.Policy.MaxEpsilonTotal != nil {
		c.Policy.MaxEpsilonTotal = *raw.Policy.MaxEpsilonTotal
	}
	c.Policy.MinCohort = DefaultMinCohort
	if raw.Policy.MinCohort != nil {
		c.Policy.MinCohort = *raw.Policy.MinCohort
	}
	// Absent limits take the defaults; a written 0 is an error, not a
	// default.
	for _, l := range []struct {
		key string
		v   *int
		dst *int
		def int
	}{
		{"policy.max_cohort", raw.Policy.MaxCohort, &c.Policy.MaxCohort, DefaultMaxCohort},
		{"policy.max_secagg_degree", raw.Policy.MaxSecAggDegree, &c.Policy.MaxSecAggDegree, DefaultMaxSecAggDegree},
	} {
		*l.dst = l.def
		if l.v != nil {
			if *l.v == 0 {
				return nil, fmt.Errorf("%s: %s: 0 out of range [1, %d]", src, l.key, secagg.MaxClients)
			}
			*l.dst = *l.v
		}
	}
	c.Policy.Evaluation = raw.Policy.Evaluation
	if c.Policy.Evaluation == "" {
		c.Policy.Evaluation = EvalExact
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	resolve := func(p string) string {
		if p == "" || filepath.IsAbs(p) || dir == "" {
			return p
		}
		return filepath.Join(dir, p)
	}
	c.Identity = resolve(c.Identity)
	c.Federation = resolve(c.Federation)
	c.Store = resolve(c.Store)
	c.Schema = resolve(c.Schema)
	c.Stats = resolve(c.Stats)
	c.Dataset = resolveDataset(c.Dataset, resolve)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// resolveDataset resolves the path inside an "idx:" or "csv:" spec.
func resolveDataset(spec string, resolve func(string) string) string {
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok || rest == "" {
		return spec
	}
	switch strings.ToLower(kind) {
	case "idx":
		return kind + ":" + resolve(rest)
	case "csv":
		file, query, hasQ := cutLast(rest, "?")
		out := kind + ":" + resolve(file)
		if hasQ {
			out += "?" + query
		}
		return out
	}
	return spec
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// fieldError is a validation error naming the file and the field.
func (c *Config) fieldError(field, format string, a ...any) error {
	src := c.path
	if src == "" {
		src = "worker config"
	}
	return fmt.Errorf("%s: %s: "+format, append([]any{src, field}, a...)...)
}

// Validate checks every field and returns an error naming the first bad one,
// e.g. "worker.toml: policy.min_cohort: -1 out of range [1, ∞)".
func (c *Config) Validate() error {
	if strings.TrimSpace(c.Name) == "" {
		return c.fieldError("name", "missing")
	}
	if c.Identity == "" {
		return c.fieldError("identity", "missing (the key file written by `sovereign keygen`)")
	}
	if c.Federation == "" {
		return c.fieldError("federation", "missing (the federation file)")
	}
	if len(c.Listen) == 0 {
		return c.fieldError("listen", "missing (at least one multiaddr, e.g. /ip4/0.0.0.0/tcp/4101)")
	}
	for i, a := range c.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return c.fieldError(fmt.Sprintf("listen[%d]", i), "%q is not a multiaddr: %v", a, err)
		}
	}
	for i, a := range c.Announce {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return c.fieldError(fmt.Sprintf("announce[%d]", i), "%q is not a multiaddr: %v", a, err)
		}
	}
	if len(c.Trainer) > 0 {
		return c.validateTrainer()
	}
	if c.Dataset == "" {
		return c.fieldError("dataset", `missing ("csv:FILE?label=NAME", "idx:DIR", "digits" or "mnist")`)
	}
	kind, rest, _ := strings.Cut(c.Dataset, ":")
	if base, _, ok := strings.Cut(kind, "?"); ok && rest == "" {
		kind = base // digits?shard=I/N: data.Load checks the option
	}
	switch strings.ToLower(kind) {
	case "digits", "mnist":
		if rest != "" {
			return c.fieldError("dataset", "%q: %s takes no argument (only ?shard=I/N)", c.Dataset, kind)
		}
	case "idx", "csv":
		if rest == "" {
			return c.fieldError("dataset", "%q: %s needs a path", c.Dataset, kind)
		}
	default:
		return c.fieldError("dataset", `%q: unknown kind %q (want csv:, idx:, digits or mnist)`, c.Dataset, kind)
	}
	if c.Schema != "" {
		if strings.ToLower(kind) != "csv" {
			return c.fieldError("schema", "needs dataset = \"csv:FILE\", have %q", c.Dataset)
		}
	} else if c.Stats != "" {
		return c.fieldError("stats", "set without schema")
	}
	return c.validateRest()
}

// validateRest checks the fields after the data source.
func (c *Config) validateRest() error {
	if c.Store == "" {
		return c.fieldError("store", "missing (the worker's store folder)")
	}
	if _, err := c.SlogLevel(); err != nil {
		return c.fieldError("log_level", "%v", err)
	}
	if c.LogFormat != "" && c.LogFormat != "text" && c.LogFormat != "json" {
		return c.fieldError("log_format", "%q is not text or json", c.LogFormat)
	}
	if c.MetricsListen != "" {
		if _, port, err := net.SplitHostPort(c.MetricsListen); err != nil || port == "" {
			return c.fieldError("metrics_listen", "%q is not host:port (e.g. \"127.0.0.1:9465\")", c.MetricsListen)
		}
	}
	p := c.Policy.WithDefaults()
	if math.IsNaN(p.MaxEpsilon) || p.MaxEpsilon <= 0 {
		return c.fieldError("policy.max_epsilon", "%v out of range (0, ∞]", p.MaxEpsilon)
	}
	if math.IsNaN(p.MaxEpsilonTotal) || p.MaxEpsilonTotal < 0 {
		return c.fieldError("policy.max_epsilon_total", "%v out of range (0, ∞]", p.MaxEpsilonTotal)
	}
	if p.MinCohort < 1 {
		return c.fieldError("policy.min_cohort", "%d out of range [1, ∞)", p.MinCohort)
	}
	if p.MaxCohort < max(p.MinCohort, 2) || p.MaxCohort > secagg.MaxClients {
		return c.fieldError("policy.max_cohort", "%d out of range [max(min_cohort, 2) = %d, %d]", p.MaxCohort, max(p.MinCohort, 2), secagg.MaxClients)
	}
	if p.MaxSecAggDegree < 1 || p.MaxSecAggDegree > secagg.MaxClients-1 {
		return c.fieldError("policy.max_secagg_degree", "%d out of range [1, %d]", p.MaxSecAggDegree, secagg.MaxClients-1)
	}
	switch p.Evaluation {
	case EvalExact, EvalAggregate, EvalNone:
	default:
		return c.fieldError("policy.evaluation", "%q is not one of %q, %q, %q", p.Evaluation, EvalExact, EvalAggregate, EvalNone)
	}
	if p.ColludingNeighbours < 0 || p.ColludingNeighbours > secagg.MaxClients {
		return c.fieldError("policy.colluding_neighbours", "%d out of range [0, %d]", p.ColludingNeighbours, secagg.MaxClients)
	}
	if !(p.Delta > 0 && p.Delta < 1) {
		return c.fieldError("policy.delta", "%v out of range (0, 1)", p.Delta)
	}
	if !(p.ColludingFraction >= 0 && p.ColludingFraction < 1) {
		return c.fieldError("policy.colluding_fraction", "%v out of range [0, 1)", p.ColludingFraction)
	}
	for i, s := range p.AcceptedModels {
		if err := checkSpecSyntax(s); err != nil {
			return c.fieldError(fmt.Sprintf("policy.accepted_models[%d]", i), "%v", err)
		}
	}
	return nil
}

// checkSpecSyntax parses a model spec against a nominal 28x28, 10-class
// input; the real input shape is only known once the data is loaded.
func checkSpecSyntax(s string) error {
	_, err := model.ParseSpec(s, 1, 28, 28, 10)
	return err
}

// SlogLevel returns the configured log level.
func (c *Config) SlogLevel() (slog.Level, error) {
	switch strings.ToLower(c.LogLevel) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not one of debug, info, warn, error", c.LogLevel)
}

// Data is a worker's loaded data: the encoded train and test splits and,
// with a schema, the schema (and its file's SHA-256), the raw tables behind
// the splits and the statistics they were encoded with (nil: placeholders,
// until the federation's statistics arrive).
type Data struct {
	Train, Test       *data.Dataset
	Schema            *data.Schema
	SchemaHash        [32]byte
	RawTrain, RawTest *data.Dataset
	Stats             *data.Stats
	Standardize       bool
}

// LoadDataset loads the worker's data (see LoadData).
func (c *Config) LoadDataset() (train, test *data.Dataset, err error) {
	d, err := c.LoadData()
	if err != nil {
		return nil, nil, err
	}
	return d.Train, d.Test, nil
}

// LoadData loads the worker's data: nothing with a Trainer (which holds
// the data); data.Load(Dataset), or with Schema the
// CSV checked against the schema (every problem at once) and encoded with
// the statistics file, or with placeholders until the federation's
// statistics round commits. Errors name the field.
func (c *Config) LoadData() (*Data, error) {
	if len(c.Trainer) > 0 {
		return &Data{}, nil // the trainer holds the data
	}
	if c.Schema == "" {
		train, test, err := data.Load(c.Dataset)
		if err != nil {
			return nil, c.fieldError("dataset", "%v", err)
		}
		return &Data{Train: train, Test: test}, nil
	}
	sb, err := os.ReadFile(c.Schema)
	if err != nil {
		return nil, c.fieldError("schema", "%v", err)
	}
	s, err := data.ParseSchema(sb, c.Schema)
	if err != nil {
		return nil, c.fieldError("schema", "%v", err)
	}
	d := &Data{Schema: s, SchemaHash: sha256.Sum256(sb), Standardize: c.Standardize && s.Standardizes()}
	st := data.Placeholder(s)
	if c.Stats != "" {
		if d.Stats, err = data.LoadStats(c.Stats, s); err != nil {
			return nil, c.fieldError("stats", "%v", err)
		}
		st = d.Stats
	}
	path, testFrac, seed, err := data.ParseSchemaCSV(c.Dataset)
	if err != nil {
		return nil, c.fieldError("dataset", "%v", err)
	}
	if d.RawTrain, d.RawTest, err = data.LoadSchemaTables(path, s, testFrac, seed); err != nil {
		// Wrapped, so callers can reach the *data.SchemaError.
		return nil, c.fieldError("dataset", "%w", err)
	}
	if d.Train, err = data.Encode(s, d.RawTrain, st, d.Standardize); err != nil {
		return nil, c.fieldError("dataset", "%w", err)
	}
	if d.Test, err = data.Encode(s, d.RawTest, st, d.Standardize); err != nil {
		return nil, c.fieldError("dataset", "%w", err)
	}
	return d, nil
}
