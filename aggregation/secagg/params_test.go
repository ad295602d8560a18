package secagg

import (
	"math"
	"testing"
)

// binomTail against direct summation of the binomial pmf.
func TestBinomTailMatchesDirectSum(t *testing.T) {
	for _, tc := range []struct {
		k, c int
		p    float64
	}{{10, 3, 0.2}, {20, 11, 0.5}, {7, 0, 0.3}, {30, 30, 0.9}} {
		want := 0.0
		for i := tc.c; i <= tc.k; i++ {
			b := 1.0
			for j := 0; j < i; j++ {
				b = b * float64(tc.k-j) / float64(j+1)
			}
			want += b * math.Pow(tc.p, float64(i)) * math.Pow(1-tc.p, float64(tc.k-i))
		}
		if got := math.Exp(binomTail(tc.k, tc.c, tc.p)); math.Abs(got-want) > 1e-12*math.Max(1, want) {
			t.Fatalf("P[Bin(%d,%v) ≥ %d] = %v, want %v", tc.k, tc.p, tc.c, got, want)
		}
	}
}

func TestParamsForMeetsBothBounds(t *testing.T) {
	if _, err := ParamsFor(100, 0.1, 0.1, 40); err == nil {
		t.Fatal("n=100, γ=0.1: no degree reaches 2^-40, ParamsFor must say so")
	}
	for _, n := range []int{1000, 10000} {
		p, err := ParamsFor(n, 0.1, 0.1, 40)
		if err != nil {
			t.Fatal(err)
		}
		if p.Log2Privacy > -40 || p.Log2Failure > -40 || p.Threshold != SafeThreshold(p.Degree, p.Colluders) || p.Colluders >= p.Threshold {
			t.Fatalf("n=%d: %+v", n, p)
		}
		// One degree step smaller must miss a bound (minimality).
		if q, ok := sized(p.Degree-2, n, 0.1, 0.81, -40*math.Ln2-math.Log(float64(n))); ok {
			t.Fatalf("n=%d: degree %d also meets the bounds: %+v", n, p.Degree-2, q)
		}
		t.Logf("n=%d γ=0.1 δ=0.1: %+v", n, p)
	}
	if SafeThreshold(10, 1) != 7 || SafeThreshold(10, 0) != DefaultThreshold(10) {
		t.Fatalf("SafeThreshold(10,1)=%d SafeThreshold(10,0)=%d", SafeThreshold(10, 1), SafeThreshold(10, 0))
	}
}

// ColludersFor is the c that ParamsFor derives for its degree, so a worker
// checking an announced (k, t) against its γ uses the same bound.
func TestColludersForMatchesParamsFor(t *testing.T) {
	for _, tc := range []struct {
		n     int
		gamma float64
	}{{300, 0.05}, {1000, 0.05}} {
		p, err := ParamsFor(tc.n, tc.gamma, 0.1, 40)
		if err != nil {
			t.Fatal(err)
		}
		if c := ColludersFor(p.Degree, tc.n, tc.gamma, 40); c != p.Colluders {
			t.Errorf("n=%d γ=%v k=%d: ColludersFor %d, ParamsFor %d", tc.n, tc.gamma, p.Degree, c, p.Colluders)
		}
		if SafeThreshold(p.Degree, ColludersFor(p.Degree, tc.n, tc.gamma, 40)) != p.Threshold {
			t.Errorf("n=%d γ=%v: threshold differs", tc.n, tc.gamma)
		}
	}
	if ColludersFor(20, 100, 0, 40) != 0 {
		t.Error("γ = 0 must give c = 0")
	}
}
