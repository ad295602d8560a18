package modelfile

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/safetensors"
)

func trained(t *testing.T, name string, c, h, w, k int) (model.Spec, []float32) {
	t.Helper()
	s, err := model.ParseSpec(name, c, h, w, k)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := model.New(s)
	n.Init(4)
	return s, n.Params()
}

func TestSaveLoadProvenance(t *testing.T) {
	s, p := trained(t, "cnn:3,5", 1, 8, 8, 10)
	path := filepath.Join(t.TempDir(), "m.safetensors")
	st := &Standardization{Mean: make([]float64, 64), Scale: make([]float64, 64)}
	for i := range st.Mean {
		st.Mean[i], st.Scale[i] = float64(i)/7, 1+float64(i)/3
	}
	prov := Provenance{Source: "coordinator", Round: 7, LedgerEntry: strings.Repeat("ab", 32), Institutions: 5,
		DP: true, Epsilon: 1.25, Delta: 1e-5, Federation: "st-marys", Standardize: st}
	if err := Save(path, s, p, prov); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Spec.String() != s.String() || m.Spec.InputDim() != 64 || m.Hash != Hash(p) {
		t.Fatalf("spec %s hash %s", m.Spec, m.Hash)
	}
	for i := range p {
		if math.Float32bits(m.Params[i]) != math.Float32bits(p[i]) {
			t.Fatalf("param %d differs", i)
		}
	}
	g := m.Provenance
	if g.Source != prov.Source || g.Round != 7 || g.LedgerEntry != prov.LedgerEntry || g.Institutions != 5 || !g.DP ||
		g.Epsilon != 1.25 || g.Delta != 1e-5 || g.Federation != "st-marys" || g.Standardize == nil || g.Standardize.Scale[63] != st.Scale[63] {
		t.Fatalf("provenance %+v, want %+v", g, prov)
	}
}

// TestAttackTamperedModelFile: a file whose tensors were changed after
// export but whose model_sha256 was kept is refused, so `ledger verify
// --model` cannot be fooled into vouching for altered weights by a file
// that still names a committed hash.
func TestAttackTamperedModelFile(t *testing.T) {
	s, p := trained(t, "2nn", 1, 8, 8, 10)
	f, err := Encode(s, p, Provenance{Source: "coordinator", Round: 3})
	if err != nil {
		t.Fatal(err)
	}
	f.Tensors[4].Data[17] += 0.5 // 4.weight
	path := filepath.Join(t.TempDir(), "tampered.safetensors")
	if err := safetensors.Write(path, f); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || !strings.Contains(err.Error(), "hash to") || !strings.Contains(err.Error(), Hash(p)) {
		t.Fatalf("tampered file: error %v, want a hash mismatch naming the claimed hash", err)
	}
	if _, err := LoadFor(path, s); err == nil {
		t.Fatal("LoadFor accepted a tampered file")
	}
}

// TestLoadForPlainStateDict: a file with only tensors (as PyTorch's
// save_file(state_dict) writes it) initialises a model; a file of another
// shape is refused naming the tensor and both shapes.
func TestLoadForPlainStateDict(t *testing.T) {
	s, p := trained(t, "logreg", 1, 1, 13, 3)
	ts, _ := model.ParamsToTensors(s, p)
	dir := t.TempDir()
	path := filepath.Join(dir, "plain.safetensors")
	if err := safetensors.Write(path, &safetensors.File{Tensors: ts}); err != nil {
		t.Fatal(err)
	}
	got, err := LoadFor(path, s)
	if err != nil || len(got) != len(p) || got[5] != p[5] {
		t.Fatalf("LoadFor: %v", err)
	}
	other, _ := model.ParseSpec("logreg", 1, 1, 12, 3)
	if _, err := LoadFor(path, other); err == nil || !strings.Contains(err.Error(), `"0.weight"`) || !strings.Contains(err.Error(), "[3 13]") || !strings.Contains(err.Error(), "[3 12]") || !strings.Contains(err.Error(), path) {
		t.Fatalf("mismatch: error %v", err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "format") {
		t.Fatalf("Load of a file without sovereign metadata: error %v", err)
	}
}
