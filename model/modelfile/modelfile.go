// Package modelfile saves a Sovereign model as a safetensors file whose
// tensors are in PyTorch's nn.Sequential layout (model.ParamsToTensors) and
// whose __metadata__ carries the model's provenance, and loads it back.
// See docs/model-export.md for the keys.
package modelfile

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/safetensors"
)

// Metadata keys; scripts rely on them, don't rename.
const (
	KeyFormat       = "format"       // FormatV1
	KeyModel        = "model"        // model.ParseSpec syntax: "2nn", "cnn", "mlp:64,32"
	KeyInputShape   = "input_shape"  // JSON [C, H, W]
	KeyClasses      = "classes"      // decimal
	KeyParameters   = "parameters"   // decimal
	KeyRound        = "round"        // the round that produced the model (0 = initial)
	KeyModelSHA256  = "model_sha256" // SHA-256 of the flat little-endian float32 vector, as committed
	KeyLedgerEntry  = "ledger_entry" // hash of the round's ledger entry (coordinator exports)
	KeyInstitutions = "institutions" // how many institutions' updates are in the round
	KeyEpsilon      = "epsilon"      // (ε, δ) spent; absent when DP is off
	KeyDelta        = "delta"
	KeyFederation   = "federation"    // the federation's name
	KeyStandardize  = "standardize"   // JSON {"mean": [...], "scale": [...]}: x' = (x − mean)·scale; absent if none
	KeySchema       = "data_schema"   // the federation's data schema (TOML text, docs/data-schema.md); absent if none
	KeyFeatureStats = "feature_stats" // JSON of the federation's data.Stats the schema encodes with
	KeySource       = "source"        // "sim" or "coordinator"
	KeyDataset      = "dataset"       // the sim's --dataset
)

// FormatV1 is the value of KeyFormat.
const FormatV1 = "sovereign/model/v1"

// Standardization is the per-feature affine map applied to inputs before
// the model: x' = (x − Mean)·Scale.
type Standardization struct {
	Mean  []float64 `json:"mean"`
	Scale []float64 `json:"scale"`
}

// Provenance is what a file says about where its model comes from.
type Provenance struct {
	Source       string
	Round        int
	LedgerEntry  string // hex, "" if none
	Institutions int
	// Epsilon and Delta are the privacy spent; DP false means none claimed.
	DP             bool
	Epsilon, Delta float64
	Federation     string
	Dataset        string
	Standardize    *Standardization
	// Schema and Stats, set together, are the data schema (its TOML text)
	// and the federation statistics (JSON of data.Stats) that turn a raw
	// CSV into this model's input: imputation, one-hot, standardisation.
	Schema string
	Stats  []byte
}

// DataEncoding returns the schema and statistics of the file (ok false if
// it has none).
func (p *Provenance) DataEncoding() (s *data.Schema, st *data.Stats, ok bool, err error) {
	if p.Schema == "" {
		return nil, nil, false, nil
	}
	if s, err = data.ParseSchema([]byte(p.Schema), "__metadata__ "+KeySchema); err != nil {
		return nil, nil, false, err
	}
	if st, err = data.ParseStats(p.Stats, "__metadata__ "+KeyFeatureStats, s); err != nil {
		return nil, nil, false, err
	}
	return s, st, true, nil
}

// Model is a loaded file.
type Model struct {
	Spec       model.Spec
	Params     []float32
	Hash       string // hex SHA-256 of Params' little-endian bytes
	Provenance Provenance
	Metadata   map[string]string
	Tensors    []safetensors.Tensor
}

// Hash returns the hex SHA-256 of params' little-endian float32 bytes (the
// hash the coordinator commits).
func Hash(params []float32) string {
	h := sha256.New()
	var b [4]byte
	for _, v := range params {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Encode builds the safetensors content of a model.
func Encode(spec model.Spec, params []float32, p Provenance) (*safetensors.File, error) {
	ts, err := model.ParamsToTensors(spec, params)
	if err != nil {
		return nil, err
	}
	in, _ := json.Marshal([]int{spec.InC, spec.InH, spec.InW})
	md := map[string]string{
		KeyFormat: FormatV1, KeyModel: spec.String(), KeyInputShape: string(in),
		KeyClasses: strconv.Itoa(spec.Classes), KeyParameters: strconv.Itoa(len(params)),
		KeyRound: strconv.Itoa(p.Round), KeyModelSHA256: Hash(params),
		KeyInstitutions: strconv.Itoa(p.Institutions), KeySource: p.Source,
	}
	set := func(k, v string) {
		if v != "" {
			md[k] = v
		}
	}
	set(KeyLedgerEntry, p.LedgerEntry)
	set(KeyFederation, p.Federation)
	set(KeyDataset, p.Dataset)
	if p.DP {
		md[KeyEpsilon] = strconv.FormatFloat(p.Epsilon, 'g', -1, 64)
		md[KeyDelta] = strconv.FormatFloat(p.Delta, 'g', -1, 64)
	}
	if p.Standardize != nil {
		b, err := json.Marshal(p.Standardize)
		if err != nil {
			return nil, err
		}
		md[KeyStandardize] = string(b)
	}
	if (p.Schema == "") != (len(p.Stats) == 0) {
		return nil, fmt.Errorf("modelfile: a data schema and its statistics go together")
	}
	if p.Schema != "" {
		s, _, _, err := p.DataEncoding()
		if err != nil {
			return nil, fmt.Errorf("modelfile: %w", err)
		}
		if s.Dim() != spec.InputDim() {
			return nil, fmt.Errorf("modelfile: the data schema encodes %d features, the model takes %d", s.Dim(), spec.InputDim())
		}
		md[KeySchema], md[KeyFeatureStats] = p.Schema, string(p.Stats)
	}
	return &safetensors.File{Tensors: ts, Metadata: md}, nil
}

// Save writes the model to path.
func Save(path string, spec model.Spec, params []float32, p Provenance) error {
	f, err := Encode(spec, params, p)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return safetensors.Write(path, f)
}

// Load reads a file written by Save: the architecture comes from its
// metadata, the tensors must match it exactly, and the parameters must hash
// to model_sha256. Errors name the file.
func Load(path string) (*Model, error) {
	f, err := safetensors.Read(path)
	if err != nil {
		return nil, err
	}
	return decode(path, f)
}

func decode(path string, f *safetensors.File) (*Model, error) {
	md := f.Metadata
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...))
	}
	if md[KeyFormat] != FormatV1 {
		return nil, fail("__metadata__ %q is %q, want %q (a file written by sovereign)", KeyFormat, md[KeyFormat], FormatV1)
	}
	var in []int
	if err := json.Unmarshal([]byte(md[KeyInputShape]), &in); err != nil || len(in) != 3 {
		return nil, fail("__metadata__ %q is %q, want [C, H, W]", KeyInputShape, md[KeyInputShape])
	}
	classes, err := strconv.Atoi(md[KeyClasses])
	if err != nil {
		return nil, fail("__metadata__ %q is %q, want an integer", KeyClasses, md[KeyClasses])
	}
	spec, err := model.ParseSpec(md[KeyModel], in[0], in[1], in[2], classes)
	if err != nil {
		return nil, fail("__metadata__ %q: %v", KeyModel, err)
	}
	params, err := model.TensorsToParams(spec, f.Tensors)
	if err != nil {
		return nil, fail("%v", err)
	}
	h := Hash(params)
	if want := md[KeyModelSHA256]; want != h {
		return nil, fail("the tensors hash to %s but __metadata__ %q says %q", h, KeyModelSHA256, want)
	}
	m := &Model{Spec: spec, Params: params, Hash: h, Metadata: md, Tensors: f.Tensors}
	p := &m.Provenance
	p.Source, p.LedgerEntry, p.Federation, p.Dataset = md[KeySource], md[KeyLedgerEntry], md[KeyFederation], md[KeyDataset]
	p.Round, _ = strconv.Atoi(md[KeyRound])
	p.Institutions, _ = strconv.Atoi(md[KeyInstitutions])
	if e, ok := md[KeyEpsilon]; ok {
		p.DP = true
		p.Epsilon, _ = strconv.ParseFloat(e, 64)
		p.Delta, _ = strconv.ParseFloat(md[KeyDelta], 64)
	}
	if s, ok := md[KeyStandardize]; ok {
		var st Standardization
		if err := json.Unmarshal([]byte(s), &st); err != nil || len(st.Mean) != spec.InputDim() || len(st.Scale) != spec.InputDim() {
			return nil, fail("__metadata__ %q is not {\"mean\": [...], \"scale\": [...]} of %d features each", KeyStandardize, spec.InputDim())
		}
		p.Standardize = &st
	}
	if sc, ok := md[KeySchema]; ok {
		p.Schema, p.Stats = sc, []byte(md[KeyFeatureStats])
		s, _, _, err := p.DataEncoding()
		if err != nil {
			return nil, fail("%v", err)
		}
		if s.Dim() != spec.InputDim() {
			return nil, fail("__metadata__ %q encodes %d features, the model takes %d", KeySchema, s.Dim(), spec.InputDim())
		}
	}
	return m, nil
}

// LoadFor reads the parameters of a file for a given architecture (sim
// --init, the coordinator's [rounds] init): the file's tensors must match
// spec (an error names the tensor and both shapes). The file's own
// metadata need not come from sovereign, so a file written by PyTorch
// (save_file(model.state_dict(), ...)) is accepted too.
func LoadFor(path string, spec model.Spec) ([]float32, error) {
	f, err := safetensors.Read(path)
	if err != nil {
		return nil, err
	}
	params, err := model.TensorsToParams(spec, f.Tensors)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if want, ok := f.Metadata[KeyModelSHA256]; ok && want != Hash(params) {
		return nil, fmt.Errorf("%s: the tensors hash to %s but __metadata__ %q says %q", path, Hash(params), KeyModelSHA256, want)
	}
	return params, nil
}

// Apply standardizes rows (n×len(Mean)) in place.
func (s *Standardization) Apply(x []float32) {
	d := len(s.Mean)
	for i := range x {
		j := i % d
		x[i] = float32((float64(x[i]) - s.Mean[j]) * s.Scale[j])
	}
}
