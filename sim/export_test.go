package sim

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/model/modelfile"
)

// TestModelFileRoundTripAndInit: WriteOutputs leaves model.safetensors
// holding the final parameters bit for bit with the run's provenance, and
// --init starts a new run from it.
func TestModelFileRoundTripAndInit(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.Out = t.TempDir()
	res, err := RunOn(context.Background(), cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteOutputs(cfg.Out, res); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.Out, ModelFile)
	m, err := modelfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range res.Params {
		if math.Float32bits(m.Params[i]) != math.Float32bits(v) {
			t.Fatalf("parameter %d: file %v, run %v", i, m.Params[i], v)
		}
	}
	if m.Spec.String() != "mlp:32" || m.Provenance.Round != cfg.Rounds || m.Provenance.Institutions != res.Rounds[len(res.Rounds)-1].Clients || m.Provenance.Source != "sim" {
		t.Fatalf("provenance %+v spec %s", m.Provenance, m.Spec)
	}
	// Continued training: round 1 from the saved model is at least as good
	// as the saved model's last round, and better than round 1 from scratch.
	cont := cfg
	cont.Init, cont.Rounds = path, 1
	r2, err := RunOn(context.Background(), cont, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, scratch := r2.Rounds[0].Accuracy, res.Rounds[0].Accuracy; got <= scratch {
		t.Fatalf("round 1 from --init: accuracy %.4f, not above round 1 from scratch %.4f", got, scratch)
	}
	// A file of another architecture is refused, naming tensor and shapes.
	bad := cfg
	bad.Init, bad.Model = path, "mlp:16"
	_, err = RunOn(context.Background(), bad, train, test, nil)
	if err == nil || !strings.Contains(err.Error(), `"0.weight"`) || !strings.Contains(err.Error(), "[32 64]") || !strings.Contains(err.Error(), "[16 64]") {
		t.Fatalf("mismatched --init: error %v, want tensor 0.weight with shapes [32 64] and [16 64]", err)
	}
}
