package coordinator_test

import (
	"context"
	"math"
	"strings"
	"testing"

	. "github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/coordtest"
)

// TestInitParamsBecomeRoundZero: with Config.InitParams the committed
// initial model is exactly those parameters; a vector of the wrong length
// or with a NaN is refused.
func TestInitParamsBecomeRoundZero(t *testing.T) {
	cfg := testConfig()
	init := make([]float32, 10)
	for i := range init {
		init[i] = float32(i) - 4.5
	}
	cfg.InitParams = init
	fsm := NewFSM()
	reg := NewMemRegistry()
	d := newTestDriver(t, cfg, fsm, NewLocal(fsm), reg, coordtest.NewCohort(5, 1))
	if err := d.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, ok := fsm.LatestModel()
	if !ok || m.Round != 0 || m.Hash != HashParams(init) {
		t.Fatalf("round 0 model %+v (ok %v), want hash %s", m, ok, HashParams(init))
	}
	got, err := reg.Get(m.Hash)
	if err != nil {
		t.Fatal(err)
	}
	for i := range init {
		if got[i] != init[i] {
			t.Fatalf("param %d: %v, want %v", i, got[i], init[i])
		}
	}
	for _, bad := range [][]float32{make([]float32, 9), {0, 0, 0, float32(math.NaN()), 0, 0, 0, 0, 0, 0}} {
		cfg.InitParams = bad
		f2 := NewFSM()
		d := newTestDriver(t, cfg, f2, NewLocal(f2), NewMemRegistry(), coordtest.NewCohort(5, 1))
		if err := d.Init(context.Background()); err == nil || !strings.Contains(err.Error(), "initial model") {
			t.Fatalf("InitParams %v: error %v", bad, err)
		}
	}
}
