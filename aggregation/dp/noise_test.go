package dp

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestClipL2(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		n := 1 + rng.IntN(500)
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 10)
		}
		orig := append([]float32(nil), v...)
		c := rng.Float64() * 100
		norm := ClipL2(v, c)
		if want := L2Norm(orig); norm != want {
			t.Fatalf("trial %d: returned norm %v, want %v", trial, norm, want)
		}
		after := L2Norm(v)
		if after > c {
			t.Fatalf("trial %d: norm after clipping %v > %v", trial, after, c)
		}
		if norm <= c {
			for i := range v {
				if v[i] != orig[i] {
					t.Fatalf("trial %d: vector inside the ball was changed", trial)
				}
			}
			continue
		}
		if math.Abs(after-c) > 1e-5*c {
			t.Fatalf("trial %d: clipped norm %v, want %v", trial, after, c)
		}
		// Direction is kept: v = (c/norm)·orig.
		for i := range v {
			if want := float64(orig[i]) * c / norm; math.Abs(float64(v[i])-want) > 1e-5*math.Max(1, math.Abs(want)) {
				t.Fatalf("trial %d coord %d: %v, want %v", trial, i, v[i], want)
			}
		}
	}
}

func TestClipL2Edges(t *testing.T) {
	v := []float32{3, 4}
	if n := ClipL2(v, math.Inf(1)); n != 5 || v[0] != 3 || v[1] != 4 {
		t.Fatalf("c=+Inf changed v to %v", v)
	}
	for _, c := range []float64{0, -1, math.NaN()} {
		v := []float32{3, 4}
		ClipL2(v, c)
		if v[0] != 0 || v[1] != 0 {
			t.Fatalf("c=%v: v = %v, want zeros", c, v)
		}
	}
	bad := []float32{1, float32(math.NaN()), 2}
	if n := ClipL2(bad, 1); !math.IsNaN(n) || bad[0] != 1 || bad[2] != 2 {
		t.Fatalf("NaN input: norm %v, v %v", n, bad)
	}
	if err := CheckFinite(bad); err == nil || !strings.Contains(err.Error(), "coordinate 1") {
		t.Fatalf("CheckFinite error %v", err)
	}
	inf := []float32{float32(math.Inf(-1))}
	if n := ClipL2(inf, 1); !math.IsInf(n, 1) {
		t.Fatalf("Inf input: norm %v", n)
	}
	if CheckFinite([]float32{1, 2}) != nil {
		t.Fatal("CheckFinite refused a finite vector")
	}
	if n := ClipL2(nil, 1); n != 0 {
		t.Fatalf("empty vector norm %v", n)
	}
}

func TestAddGaussianSeededAndDistributed(t *testing.T) {
	const n = 200000
	const std = 2.5
	a := make([]float32, n)
	b := make([]float32, n)
	if err := AddGaussian(a, std, rand.New(rand.NewPCG(7, 7))); err != nil {
		t.Fatal(err)
	}
	AddGaussian(b, std, rand.New(rand.NewPCG(7, 7)))
	var sum, ss float64
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed gave different noise")
		}
		sum += float64(a[i])
		ss += float64(a[i]) * float64(a[i])
	}
	mean := sum / n
	sd := math.Sqrt(ss/n - mean*mean)
	// Standard errors: mean std/√n ≈ 0.0056, sd std/√(2n) ≈ 0.004.
	if math.Abs(mean) > 0.03 || math.Abs(sd-std) > 0.02 {
		t.Fatalf("mean %v sd %v, want 0 and %v", mean, sd, std)
	}
	c := make([]float32, n)
	AddGaussian(c, std, rand.New(rand.NewChaCha8([32]byte{1})))
	same := 0
	for i := range c {
		if c[i] == a[i] {
			same++
		}
	}
	if same > n/100 {
		t.Fatalf("different sources gave %d identical draws", same)
	}
}

func TestAddGaussianRefusesBadInput(t *testing.T) {
	v := []float32{1, 2}
	for _, std := range []float64{-1, math.NaN(), math.Inf(1)} {
		if err := AddGaussian(v, std, rand.New(rand.NewPCG(1, 1))); err == nil || !strings.Contains(err.Error(), "std") {
			t.Fatalf("std=%v: error %v", std, err)
		}
	}
	if err := AddGaussian(v, 1, nil); err == nil || !strings.Contains(err.Error(), "random source") {
		t.Fatalf("nil rng: error %v", err)
	}
	if v[0] != 1 || v[1] != 2 {
		t.Fatalf("refused calls changed v to %v", v)
	}
	if err := AddGaussian(v, 0, rand.New(rand.NewPCG(1, 1))); err != nil || v[0] != 1 {
		t.Fatalf("std=0: err %v, v %v", err, v)
	}
}

// TestDistributedNoiseSumsToCentral checks the claim DistributedStd documents:
// the sum of t clients' noise has the central std σ·C. Exactly for the
// variances, and empirically for seeded draws.
func TestDistributedNoiseSumsToCentral(t *testing.T) {
	sigma, clip := 1.2, 0.7
	for _, tmin := range []int{1, 3, 10} {
		d := DistributedStd(sigma, clip, tmin)
		if !relClose(float64(tmin)*d*d, math.Pow(CentralStd(sigma, clip), 2), 1e-12) {
			t.Fatalf("t=%d: %d·%v² != (%v)²", tmin, tmin, d, CentralStd(sigma, clip))
		}
	}
	const dim, clients = 50000, 8
	sum := make([]float32, dim)
	for k := range clients {
		v := make([]float32, dim)
		if err := AddGaussian(v, DistributedStd(sigma, clip, clients), rand.New(rand.NewPCG(uint64(k), 99))); err != nil {
			t.Fatal(err)
		}
		for i := range v {
			sum[i] += v[i]
		}
	}
	var ss float64
	for _, x := range sum {
		ss += float64(x) * float64(x)
	}
	sd := math.Sqrt(ss / dim)
	if want := sigma * clip; math.Abs(sd-want) > 0.02*want {
		t.Fatalf("std of the summed noise %v, want %v", sd, want)
	}
	if DistributedStd(sigma, clip, 0) != CentralStd(sigma, clip) {
		t.Fatal("minClients 0 should be read as 1")
	}
	if !math.IsNaN(CentralStd(-1, 1)) || !math.IsNaN(DistributedStd(1, math.NaN(), 3)) {
		t.Fatal("invalid sigma or clip should give NaN")
	}
}

func TestParamsValidate(t *testing.T) {
	good := Params{Clip: 1, NoiseMultiplier: 1.1, MinClients: 5}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if good.CentralStd() != 1.1 || !relClose(good.DistributedStd(), 1.1/math.Sqrt(5), 1e-15) {
		t.Fatal("Params std helpers disagree with the functions")
	}
	for _, c := range []struct {
		p    Params
		want string
	}{
		{Params{Clip: 0, NoiseMultiplier: 1, MinClients: 1}, "Clip"},
		{Params{Clip: math.Inf(1), NoiseMultiplier: 1, MinClients: 1}, "Clip"},
		{Params{Clip: 1, NoiseMultiplier: math.NaN(), MinClients: 1}, "NoiseMultiplier"},
		{Params{Clip: 1, NoiseMultiplier: 1, MinClients: 0}, "MinClients"},
	} {
		if err := c.p.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want it to name %s", c.p, err, c.want)
		}
	}
}
