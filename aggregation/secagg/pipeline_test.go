package secagg

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"
)

// pipeline delivers in order, holds at most 2p results undelivered, and
// stops at the first delivery error with its goroutines ended.
func TestPipelineOrderWindowAndError(t *testing.T) {
	const n, p = 200, 3
	var inFlight, peak atomic.Int32
	var got []int
	err := pipeline(n, p, func(i int) {
		v := inFlight.Add(1)
		for {
			old := peak.Load()
			if v <= old || peak.CompareAndSwap(old, v) {
				break
			}
		}
	}, func(i int) error {
		inFlight.Add(-1)
		got = append(got, i)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want 0..%d in order", got, n-1)
	}
	if pk := peak.Load(); pk > 2*p {
		t.Fatalf("%d results outstanding at once, bound is %d", pk, 2*p)
	}
	stopAt := errors.New("stop")
	var worked atomic.Int32
	got = nil
	err = pipeline(n, p, func(int) { worked.Add(1) }, func(i int) error {
		got = append(got, i)
		if i == 10 {
			return stopAt
		}
		return nil
	})
	if !errors.Is(err, stopAt) || len(got) != 11 {
		t.Fatalf("err %v after %d deliveries, want the error of delivery 10", err, len(got))
	}
	if w := worked.Load(); w > 11+2*p {
		t.Fatalf("%d items worked on after the error at 10, bound %d", w, 11+2*p)
	}
}
