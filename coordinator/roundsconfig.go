package coordinator

import (
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/modelfile"
	"github.com/sovereign-fl/sovereign/model/safetensors"
)

// RoundsTable is a study's [rounds] table (the coordinator file's, or a
// study file's): the Config fields; pointers tell "absent" (take the
// default) from zero. It is replicated in a StudySpec as JSON.
type RoundsTable struct {
	Model           *string  `toml:"model" json:"model,omitempty"`
	Input           []int    `toml:"input" json:"input,omitempty"`
	Classes         *int     `toml:"classes" json:"classes,omitempty"`
	Rounds          *int     `toml:"rounds" json:"rounds,omitempty"`
	WorkersPerRound *int     `toml:"workers_per_round" json:"workers_per_round,omitempty"`
	Fraction        *float64 `toml:"fraction" json:"fraction,omitempty"`
	MinWorkers      *int     `toml:"min_workers" json:"min_workers,omitempty"`
	Epochs          *int     `toml:"epochs" json:"epochs,omitempty"`
	Batch           *int     `toml:"batch" json:"batch,omitempty"`
	LR              *float64 `toml:"lr" json:"lr,omitempty"`
	ProxMu          *float64 `toml:"prox_mu" json:"prox_mu,omitempty"`
	Strategy        *string  `toml:"strategy" json:"strategy,omitempty"`
	ServerLR        *float64 `toml:"server_lr" json:"server_lr,omitempty"`
	Clip            *float64 `toml:"clip" json:"clip,omitempty"`
	Noise           *float64 `toml:"noise" json:"noise,omitempty"`
	Delta           *float64 `toml:"delta" json:"delta,omitempty"`
	ClipRange       *float64 `toml:"clip_range" json:"clip_range,omitempty"`
	MaxWeight       *float64 `toml:"max_weight" json:"max_weight,omitempty"`
	SecAggDegree    *int     `toml:"secagg_degree" json:"secagg_degree,omitempty"`
	StageTimeout    *string  `toml:"stage_timeout" json:"stage_timeout,omitempty"`
	RetryLimit      *int     `toml:"retry_limit" json:"retry_limit,omitempty"`
	Seed            *int64   `toml:"seed" json:"seed,omitempty"`
	PollInterval    *string  `toml:"poll_interval" json:"poll_interval,omitempty"`
	Pace            *string  `toml:"pace" json:"pace,omitempty"`
	// SecureEvaluation: see Config.SecureEvaluation.
	SecureEvaluation *bool `toml:"secure_evaluation" json:"secure_evaluation,omitempty"`
	// Init is a safetensors model file to start from (round 0).
	Init *string `toml:"init" json:"init,omitempty"`
	// MaxEpsilon is the study's privacy budget (Config.MaxEpsilon).
	MaxEpsilon *float64 `toml:"max_epsilon" json:"max_epsilon,omitempty"`
	// Schema is the federation's data schema file: the federation
	// statistics round runs before the first model round, and input and
	// classes follow from it (Config.Schema).
	Schema       *string  `toml:"schema" json:"schema,omitempty"`
	StatsNoise   *float64 `toml:"stats_noise" json:"stats_noise,omitempty"`
	StatsMaxRows *int     `toml:"stats_max_rows" json:"stats_max_rows,omitempty"`
}

// Config resolves the table into a validated driver configuration: absent
// keys take DefaultConfig's values; the schema and init files are read
// relative to dir, or, when schemaText is non-nil, the schema is those
// bytes (a replicated StudySpec). Errors name src and the key.
func (r RoundsTable) Config(src, dir string, schemaText []byte) (Config, error) {
	fail := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: %s: %s", src, field, fmt.Sprintf(format, args...))
	}
	res := func(p string) string {
		if p == "" || filepath.IsAbs(p) || dir == "" {
			return p
		}
		return filepath.Join(dir, p)
	}
	cfg := DefaultConfig()
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
			return Config{}, fail("rounds.input", "%v: want [channels, height, width]", r.Input)
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
	if r.SecureEvaluation != nil {
		cfg.SecureEvaluation = *r.SecureEvaluation
	}
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
		{"max_epsilon", &cfg.MaxEpsilon, r.MaxEpsilon},
	} {
		if err := setF(x.name, x.dst, x.v); err != nil {
			return Config{}, err
		}
	}
	if err := setD("stage_timeout", &cfg.StageTimeout, r.StageTimeout); err != nil {
		return Config{}, err
	}
	if err := setD("poll_interval", &cfg.PollInterval, r.PollInterval); err != nil {
		return Config{}, err
	}
	if r.Pace != nil && *r.Pace == "0s" {
		r.Pace = nil // the default, written out
	}
	if err := setD("pace", &cfg.Pace, r.Pace); err != nil {
		return Config{}, err
	}
	cfg.DP.MinClients = cfg.MinWorkers
	if r.Schema != nil && *r.Schema != "" {
		path := res(*r.Schema)
		b := schemaText
		if b == nil {
			var err error
			if b, err = os.ReadFile(path); err != nil {
				return Config{}, fail("rounds.schema", "%v", err)
			}
		}
		s, err := data.ParseSchema(b, path)
		if err != nil {
			return Config{}, fail("rounds.schema", "%v", err)
		}
		cfg.Schema, cfg.SchemaHash, cfg.SchemaText = s, sha256.Sum256(b), b
		// The schema fixes the feature vector and the classes.
		if r.Input == nil {
			cfg.InC, cfg.InH, cfg.InW = 1, 1, s.Dim()
		} else if cfg.InC*cfg.InH*cfg.InW != s.Dim() {
			return Config{}, fail("rounds.input", "%v has %d features, the schema %s encodes %d", r.Input, cfg.InC*cfg.InH*cfg.InW, *r.Schema, s.Dim())
		}
		if r.Classes == nil {
			cfg.Classes = s.Classes()
		} else if cfg.Classes != s.Classes() {
			return Config{}, fail("rounds.classes", "%d, the schema %s has %d classes", cfg.Classes, *r.Schema, s.Classes())
		}
		setI(&cfg.StatsMaxRows, r.StatsMaxRows)
		if err := setF("stats_noise", &cfg.StatsNoise, r.StatsNoise); err != nil {
			return Config{}, err
		}
	} else if (r.StatsNoise != nil && *r.StatsNoise != 0) || (r.StatsMaxRows != nil && *r.StatsMaxRows != 0) {
		return Config{}, fail("rounds.stats_noise", "stats_noise and stats_max_rows need rounds.schema")
	}
	external := cfg.Model == "external"
	if external {
		// The institutions' own model: its layout is the init file's
		// tensors (written by the trainer, e.g. train.py --write-init).
		if r.Init == nil || *r.Init == "" {
			return Config{}, fail("rounds.init", "required with model = \"external\": the initial weights written by the institutions' trainer")
		}
		sf, err := safetensors.Read(res(*r.Init))
		if err != nil {
			return Config{}, fail("rounds.init", "%v", err)
		}
		layout := make([]model.TensorShape, len(sf.Tensors))
		for i, t := range sf.Tensors {
			layout[i] = model.TensorShape{Name: t.Name, Shape: t.Shape}
		}
		spec, err := model.TensorsSpec(layout)
		if err != nil {
			return Config{}, fail("rounds.init", "%v", err)
		}
		if cfg.InitParams, err = model.TensorsToParams(spec, sf.Tensors); err != nil {
			return Config{}, fail("rounds.init", "%v", err)
		}
		cfg.Model = spec.String()
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: [rounds]: %w", src, err)
	}
	if r.Init != nil && *r.Init != "" && !external {
		spec, err := model.ParseSpec(cfg.Model, cfg.InC, cfg.InH, cfg.InW, cfg.Classes)
		if err != nil {
			return Config{}, fail("rounds.model", "%v", err)
		}
		if cfg.InitParams, err = modelfile.LoadFor(res(*r.Init), spec); err != nil {
			return Config{}, fail("rounds.init", "%v", err)
		}
	}
	return cfg, nil
}
