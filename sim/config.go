// Package sim runs a whole federation in one process: N virtual
// institutions holding index views into one shared data set, sampled each
// round, training locally with the same code a worker runs, and aggregated
// with the same rules, secure aggregation and differential privacy as the
// networked federation. Dropouts and attackers can be injected so that
// aggregation rules can be compared.
package sim

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/sovereign-fl/sovereign/aggregation"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/trainer"
)

// Config is a simulated federation. Its TOML keys are the flag names of
// `sovereign sim` in snake_case (--dp-clip is dp_clip, as in every other
// file); a config file carries the same keys and flags override it.
type Config struct {
	Dataset string `toml:"dataset" json:"dataset"`
	// Schema is a federation-wide data schema (data.Schema); with it the
	// csv:FILE dataset is read against it, and the federation's feature
	// statistics are computed under secure aggregation before round 1.
	Schema    string  `toml:"schema" json:"schema,omitempty"`
	Model     string  `toml:"model" json:"model"`
	Clients   int     `toml:"clients" json:"clients"`
	Fraction  float64 `toml:"fraction" json:"fraction"`
	Epochs    int     `toml:"epochs" json:"epochs"`
	Batch     int     `toml:"batch" json:"batch"`
	LR        float64 `toml:"lr" json:"lr"`
	Momentum  float64 `toml:"momentum" json:"momentum"`
	Rounds    int     `toml:"rounds" json:"rounds"`
	Partition string  `toml:"partition" json:"partition"`
	Strategy  string  `toml:"strategy" json:"strategy"`
	ServerLR  float64 `toml:"server_lr" json:"server_lr"`
	Seed      int64   `toml:"seed" json:"seed"`
	// Target is the held-out accuracy at which the run stops early (0 = never).
	Target float64 `toml:"target" json:"target"`
	Out    string  `toml:"out" json:"out"`
	// Dropout is the fraction of sampled clients that vanish each round.
	Dropout float64 `toml:"dropout" json:"dropout"`
	// Attackers is "N:KIND[:PARAM]" with KIND signflip, scale or noise.
	Attackers string `toml:"attackers" json:"attackers"`
	// TestFraction of each client's examples is kept as its local test split.
	TestFraction float64 `toml:"test_fraction" json:"test_fraction"`
	// Parallel is the number of clients trained at once (0 = GOMAXPROCS).
	Parallel int `toml:"parallel" json:"parallel"`

	// Secure runs every round's aggregation through SecAgg+.
	Secure bool `toml:"secure" json:"secure"`
	// SecAggDegree is the SecAgg+ neighbour-graph degree (0 = default).
	SecAggDegree int `toml:"secagg_degree" json:"secagg_degree"`
	// DPClip, DPNoise and DPDelta turn on differential privacy when DPNoise > 0.
	DPClip  float64 `toml:"dp_clip" json:"dp_clip"`
	DPNoise float64 `toml:"dp_noise" json:"dp_noise"`
	DPDelta float64 `toml:"dp_delta" json:"dp_delta"`
	// Init is a safetensors file (e.g. an earlier run's model.safetensors)
	// to start from instead of the seeded initialisation.
	Init string `toml:"init" json:"init"`
	// Trainer is a command line (shell-like quoting) of the institution's
	// training code speaking the trainer protocol
	// (docs/trainer-protocol.md); the clients then train through a pool
	// of Parallel such processes, each request naming the client's
	// example indices. It must load the same training set as Dataset.
	Trainer string `toml:"trainer" json:"trainer,omitempty"`
}

// DefaultConfig is what `sovereign sim` runs with no flags: a federation of
// 20 institutions on the embedded digits data that finishes in seconds.
func DefaultConfig() Config {
	return Config{
		Dataset:      "digits",
		Model:        "2nn",
		Clients:      20,
		Fraction:     0.5,
		Epochs:       2,
		Batch:        10,
		LR:           0.05,
		Rounds:       30,
		Partition:    "iid",
		Strategy:     "fedavg",
		Seed:         1,
		Out:          "out",
		TestFraction: 0.1,
		DPDelta:      1e-5,
	}
}

// AttackSpec is a parsed --attackers value.
type AttackSpec struct {
	Count int
	Kind  string // signflip, scale or noise
	Param float64
}

// ParseAttackers parses "N:KIND[:PARAM]"; the empty string means none.
// signflip sends −PARAM·Δ (default 1), scale sends PARAM·Δ (default 10),
// noise sends N(0, PARAM²) per coordinate (default 1).
func ParseAttackers(s string) (AttackSpec, error) {
	if s == "" || s == "0" {
		return AttackSpec{}, nil
	}
	const form = "want N:KIND[:PARAM] with KIND signflip, scale or noise, e.g. 10:signflip"
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return AttackSpec{}, fmt.Errorf("--attackers %q: %s", s, form)
	}
	n, err := strconv.Atoi(parts[0])
	if err != nil || n < 0 {
		return AttackSpec{}, fmt.Errorf("--attackers %q: count must be an integer ≥ 0; %s", s, form)
	}
	a := AttackSpec{Count: n, Kind: parts[1]}
	switch a.Kind {
	case "signflip":
		a.Param = 1
	case "scale":
		a.Param = 10
	case "noise":
		a.Param = 1
	default:
		return AttackSpec{}, fmt.Errorf("--attackers %q: unknown kind %q; %s", s, a.Kind, form)
	}
	if len(parts) == 3 {
		p, err := strconv.ParseFloat(parts[2], 64)
		if err != nil || math.IsNaN(p) || math.IsInf(p, 0) || p <= 0 {
			return AttackSpec{}, fmt.Errorf("--attackers %q: PARAM must be a positive number", s)
		}
		a.Param = p
	}
	return a, nil
}

// Validate checks every field and names the flag and its allowed range.
func (c Config) Validate() error {
	switch {
	case c.Dataset == "":
		return fmt.Errorf("--dataset is empty: want digits, mnist, idx:DIR or csv:FILE")
	case c.Model == "":
		return fmt.Errorf("--model is empty: want logreg, 2nn, cnn or mlp:H1,H2,...")
	case c.Clients < 1 || c.Clients > 1_000_000:
		return fmt.Errorf("--clients %d out of range [1, 1000000]", c.Clients)
	case !(c.Fraction > 0 && c.Fraction <= 1):
		return fmt.Errorf("--fraction %v out of range (0, 1]", c.Fraction)
	case c.Epochs < 1 || c.Epochs > 10_000:
		return fmt.Errorf("--epochs %d out of range [1, 10000]", c.Epochs)
	case c.Batch < 1:
		return fmt.Errorf("--batch %d out of range [1, ∞)", c.Batch)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("--lr %v out of range (0, ∞)", c.LR)
	case !(c.Momentum >= 0 && c.Momentum < 1):
		return fmt.Errorf("--momentum %v out of range [0, 1)", c.Momentum)
	case c.Rounds < 1 || c.Rounds > 1_000_000:
		return fmt.Errorf("--rounds %d out of range [1, 1000000]", c.Rounds)
	case c.Partition == "":
		return fmt.Errorf("--partition is empty: want iid, shards:K, dirichlet:ALPHA or quantity:ALPHA")
	case !(c.ServerLR >= 0) || math.IsInf(c.ServerLR, 0):
		return fmt.Errorf("--server-lr %v out of range [0, ∞) (0 = the strategy's default)", c.ServerLR)
	case !(c.Target >= 0 && c.Target <= 1):
		return fmt.Errorf("--target %v out of range [0, 1] (0 = no early stop)", c.Target)
	case c.Out == "":
		return fmt.Errorf("--out is empty: want a folder for metrics.csv, summary.json and accuracy.png")
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return fmt.Errorf("--dropout %v out of range [0, 1)", c.Dropout)
	case !(c.TestFraction >= 0 && c.TestFraction < 1):
		return fmt.Errorf("--test-fraction %v out of range [0, 1)", c.TestFraction)
	case c.Parallel < 0:
		return fmt.Errorf("--parallel %d out of range [0, ∞) (0 = number of cores)", c.Parallel)
	case c.SecAggDegree < 0:
		return fmt.Errorf("--secagg-degree %d out of range [0, clients-1] (0 = default)", c.SecAggDegree)
	case !(c.DPNoise >= 0) || math.IsInf(c.DPNoise, 0):
		return fmt.Errorf("--dp-noise %v out of range [0, ∞)", c.DPNoise)
	case !(c.DPClip >= 0) || math.IsInf(c.DPClip, 0):
		return fmt.Errorf("--dp-clip %v out of range [0, ∞)", c.DPClip)
	}
	if c.DPNoise > 0 {
		if !(c.DPClip > 0) {
			return fmt.Errorf("--dp-clip %v: differential privacy (--dp-noise > 0) needs a clipping norm in (0, ∞)", c.DPClip)
		}
		if !(c.DPDelta > 0 && c.DPDelta < 1) {
			return fmt.Errorf("--dp-delta %v out of range (0, 1)", c.DPDelta)
		}
	}
	if c.Trainer != "" {
		if _, err := trainer.SplitCommand(c.Trainer); err != nil {
			return fmt.Errorf("--trainer: %w", err)
		}
		if c.Momentum != 0 {
			return fmt.Errorf("--momentum %v with --trainer: momentum is not part of the trainer protocol (a trainer may use its own)", c.Momentum)
		}
		if c.Schema != "" {
			return fmt.Errorf("--schema with --trainer: the trainer loads and encodes its data itself")
		}
	}
	if err := data.ParsePartitionSpec(c.Partition); err != nil {
		return fmt.Errorf("--partition: %w", err)
	}
	if _, err := model.ParseSpec(c.Model, 1, 28, 28, 10); err != nil {
		return fmt.Errorf("--model: %w", err)
	}
	a, err := ParseAttackers(c.Attackers)
	if err != nil {
		return err
	}
	if a.Count > c.Clients {
		return fmt.Errorf("--attackers %q: %d attackers but only %d clients", c.Attackers, a.Count, c.Clients)
	}
	st, err := aggregation.ParseStrategy(c.Strategy, c.ServerLR)
	if err != nil {
		return fmt.Errorf("--strategy: %w", err)
	}
	if c.Secure {
		if _, ok := st.Rule.(aggregation.WeightedMean); !ok {
			return fmt.Errorf("--strategy %q cannot be combined with --secure: secure aggregation reveals only the sum of updates, so only fedavg, fedavgm, fedadam, fedyogi, fedadagrad and fedprox apply", c.Strategy)
		}
	}
	if c.DPNoise > 0 {
		if _, ok := st.Rule.(aggregation.WeightedMean); !ok {
			return fmt.Errorf("--strategy %q cannot be combined with --dp-noise: the privacy accounting assumes a (noised) sum of clipped updates", c.Strategy)
		}
	}
	return nil
}

// Sampled is the number of clients sampled per round: max(1, ⌊C·N⌉).
func (c Config) Sampled() int {
	m := int(math.Round(c.Fraction * float64(c.Clients)))
	if m < 1 {
		m = 1
	}
	return m
}
