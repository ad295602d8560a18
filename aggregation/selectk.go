package aggregation

import "slices"

// smallSort is the length up to which insertion sort beats the general sort.
const smallSort = 24

// sortColumn sorts a short column of finite values in place.
func sortColumn(x []float32) {
	if len(x) > smallSort {
		slices.Sort(x)
		return
	}
	for i := 1; i < len(x); i++ {
		v := x[i]
		j := i
		for ; j > 0 && x[j-1] > v; j-- {
			x[j] = x[j-1]
		}
		x[j] = v
	}
}

// selectK reorders x so that x[k] holds the value it would have if x were
// sorted, with x[:k] <= x[k] <= x[k+1:] (Hoare's quickselect with a
// median-of-three pivot; deterministic). x holds finite values and
// 0 <= k < len(x).
func selectK(x []float32, k int) {
	lo, hi := 0, len(x)-1
	for hi-lo >= smallSort {
		// Median of three moved to x[lo]; x[lo+1] <= pivot <= x[hi]
		// act as sentinels.
		mid := lo + (hi-lo)/2
		if x[mid] < x[lo] {
			x[mid], x[lo] = x[lo], x[mid]
		}
		if x[hi] < x[lo] {
			x[hi], x[lo] = x[lo], x[hi]
		}
		if x[hi] < x[mid] {
			x[hi], x[mid] = x[mid], x[hi]
		}
		x[mid], x[lo+1] = x[lo+1], x[mid]
		p := x[lo+1]
		i, j := lo+1, hi
		for {
			for i++; x[i] < p; i++ {
			}
			for j--; x[j] > p; j-- {
			}
			if i >= j {
				break
			}
			x[i], x[j] = x[j], x[i]
		}
		x[lo+1], x[j] = x[j], p
		switch {
		case j == k:
			return
		case j < k:
			lo = j + 1
		default:
			hi = j - 1
		}
	}
	sortColumn(x[lo : hi+1])
}
