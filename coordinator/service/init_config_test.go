package service

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/modelfile"
)

// TestCoordinatorConfigInit: [rounds] init loads a model file of the
// configured architecture bit for bit, and refuses one of another, naming
// the tensor and both shapes.
func TestCoordinatorConfigInit(t *testing.T) {
	dir := t.TempDir()
	spec, _ := model.ParseSpec("logreg", 1, 1, 64, 10)
	n, _ := model.New(spec)
	n.Init(9)
	if err := modelfile.Save(filepath.Join(dir, "good.safetensors"), spec, n.Params(), modelfile.Provenance{Source: "sim"}); err != nil {
		t.Fatal(err)
	}
	other, _ := model.ParseSpec("logreg", 1, 1, 32, 10)
	if err := modelfile.Save(filepath.Join(dir, "other.safetensors"), other, make([]float32, other.NumParams()), modelfile.Provenance{Source: "sim"}); err != nil {
		t.Fatal(err)
	}
	c, err := Parse("coord.toml", []byte(strings.Replace(baseCoordinatorTOML, "[rounds]\n", "[rounds]\ninit = \"good.safetensors\"\n", 1)), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Config.InitParams) != len(n.Params()) {
		t.Fatalf("InitParams has %d values, want %d", len(c.Config.InitParams), len(n.Params()))
	}
	for i, v := range n.Params() {
		if math.Float32bits(c.Config.InitParams[i]) != math.Float32bits(v) {
			t.Fatalf("InitParams[%d] = %v, want %v", i, c.Config.InitParams[i], v)
		}
	}
	_, err = Parse("coord.toml", []byte(strings.Replace(baseCoordinatorTOML, "[rounds]\n", "[rounds]\ninit = \"other.safetensors\"\n", 1)), dir)
	if err == nil || !strings.Contains(err.Error(), "rounds.init") || !strings.Contains(err.Error(), `"0.weight"`) ||
		!strings.Contains(err.Error(), "[10 32]") || !strings.Contains(err.Error(), "[10 64]") {
		t.Fatalf("mismatched init: error %v, want rounds.init, tensor 0.weight, shapes [10 32] and [10 64]", err)
	}
}
