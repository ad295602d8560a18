package sim

import (
	"fmt"
	"reflect"

	"github.com/sovereign-fl/sovereign/internal/confdoc"
)

// ConfigDoc documents every key of a `sovereign sim --config` file; the
// defaults are DefaultConfig's (ConfigDocWithDefaults fills them in). The
// reference test (cmd/sovereign) fails on a key without an entry.
var ConfigDoc = confdoc.File{
	Name:  "sim",
	Title: "Simulation file (`sovereign sim --config`)",
	Intro: "The same keys as the flags of `sovereign sim`, in snake_case (`--dp-clip` is `dp_clip`); flags given on the " +
		"command line override the file. The dashed spellings of earlier versions (`dp-clip`, `server-lr`, …) are still " +
		"read, with a deprecation warning.",
	Schema: reflect.TypeOf(Config{}),
	Docs: confdoc.Docs{
		"dataset":       {Text: "The data set, split into a training part (partitioned among the clients) and a held-out test part.", Range: "`digits`, `mnist`, `idx:DIR`, `csv:FILE[?label=COL&header=true&standardize=true]`", Example: `"mnist"`},
		"schema":        {Text: "A federation-wide data schema (docs/data-schema.md) for `csv:FILE`; the feature statistics are computed under secure aggregation before round 1.", Note: "none", Example: `"schema.toml"`},
		"model":         {Text: "Architecture.", Range: "`logreg`, `2nn`, `cnn`, `mlp:H1,H2,...`", Example: `"cnn"`},
		"clients":       {Text: "Number of virtual institutions N.", Range: "[1, 1000000]", Example: "100"},
		"fraction":      {Text: "Fraction C of institutions sampled per round.", Range: "(0, 1]", Example: "0.1"},
		"epochs":        {Text: "Local epochs E per round.", Range: "[1, 10000]", Example: "1"},
		"batch":         {Text: "Local minibatch size B.", Range: "≥ 1", Example: "10"},
		"lr":            {Text: "Client learning rate.", Range: "(0, ∞)", Example: "0.1"},
		"momentum":      {Text: "Client SGD momentum.", Range: "[0, 1)", Example: "0.9"},
		"rounds":        {Text: "Maximum number of rounds.", Range: "[1, 1000000]", Example: "200"},
		"partition":     {Text: "How the training data is split among the clients (seeded).", Range: "`iid`, `shards:K`, `dirichlet:ALPHA`, `quantity:ALPHA`", Example: `"dirichlet:0.5"`},
		"strategy":      {Text: "Aggregation rule and server optimizer (FedOpt: Reddi et al. 2021).", Range: "`fedavg`, `fedavgm`, `fedadam`, `fedyogi`, `fedadagrad`, `fedprox:MU`, `median`, `trimmed:BETA`, `krum:F`, `multikrum:F`, `bulyan:F`", Example: `"fedadam"`},
		"server_lr":     {Text: "Server learning rate; 0 takes the strategy's default.", Range: "[0, ∞)", Example: "0.01"},
		"seed":          {Text: "Seed of every random choice: same seed, same metrics.", Range: "any integer", Example: "7"},
		"target":        {Text: "Stop when the held-out accuracy reaches this; 0 never stops early.", Range: "[0, 1]", Example: "0.97"},
		"out":           {Text: "Output folder (metrics.csv, summary.json, accuracy.png, report.html, model.safetensors).", Example: `"out/mnist"`},
		"dropout":       {Text: "Fraction of sampled clients that vanish each round.", Range: "[0, 1)", Example: "0.2"},
		"attackers":     {Text: "Attacking clients: N:KIND[:PARAM], KIND `signflip`, `scale` or `noise`.", Note: "none", Example: `"10:signflip"`},
		"test_fraction": {Text: "Fraction of each client's examples kept as its local test split.", Range: "[0, 1)", Example: "0.2"},
		"parallel":      {Text: "Clients trained at once; 0 = the number of cores.", Range: "≥ 0", Example: "4"},
		"secure":        {Text: "Aggregate every round through the whole SecAgg+ protocol (Bell et al. 2020).", Example: "true"},
		"secagg_degree": {Text: "SecAgg+ neighbour degree k; 0 = about 2·log2 n, clients − 1 = classic SecAgg.", Range: "[0, clients − 1]", Example: "8"},
		"dp_clip":       {Text: "L2 clipping norm C of each update (needed with `dp_noise`).", Range: "(0, ∞) with DP on", Example: "1.0"},
		"dp_noise":      {Text: "Gaussian noise multiplier σ; 0 = no differential privacy. Central noise in plain mode, distributed with `secure`.", Range: "[0, ∞)", Example: "1.0"},
		"dp_delta":      {Text: "δ of the (ε, δ) guarantee reported by the RDP accountant (Mironov 2017).", Range: "(0, 1)", Example: "1e-5"},
		"trainer":       {Text: "Train the virtual clients with your own code speaking the trainer protocol (docs/trainer-protocol.md): a pool of `parallel` processes, each request naming the client's example indices into `dataset`.", Note: "none (built-in training)", Example: `"python3 train.py --data DIR"`},
		"init":          {Text: "A safetensors model (e.g. an earlier run's model.safetensors) to start from instead of the seeded initialisation.", Note: "none", Example: `"out/model.safetensors"`},
	},
}

// ConfigDocWithDefaults is ConfigDoc with each key's default taken from
// DefaultConfig, so the reference cannot disagree with the code.
func ConfigDocWithDefaults() confdoc.File {
	f := ConfigDoc
	f.Docs = confdoc.Docs{}
	def := reflect.ValueOf(DefaultConfig())
	t := def.Type()
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("toml")
		d := ConfigDoc.Docs[key]
		if d.Note == "" {
			if v, ok := def.Field(i).Interface().(string); ok {
				d.Default = fmt.Sprintf("%q", v)
			} else {
				d.Default = fmt.Sprint(def.Field(i).Interface())
			}
		}
		f.Docs[key] = d
	}
	return f
}
