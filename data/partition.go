package data

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
)

// Client is one virtual institution's share: indices into a shared Dataset
// (never copies), split into local train/test.
type Client struct {
	// ID is the client's position in the slice Partition returns.
	ID int
	// Train and Test are row indices into the partitioned Dataset.
	Train, Test []int
}

// PartitionForms describes the partition specs Partition accepts; it is
// quoted in its errors and suits a command-line flag's help text.
const PartitionForms = `"iid", "shards:K" (K label-sorted shards per client, K >= 1), ` +
	`"dirichlet:ALPHA" (per-class proportions ~ Dir(ALPHA), ALPHA > 0) or ` +
	`"quantity:ALPHA" (client sizes ~ Dir(ALPHA), labels iid, ALPHA > 0)`

// partitionSpec is a parsed partition spec.
type partitionSpec struct {
	kind   string
	shards int
	alpha  float64
}

// ParsePartitionSpec checks a partition spec without partitioning anything,
// so that a command line can be refused before data is loaded.
func ParsePartitionSpec(spec string) error {
	_, err := parsePartitionSpec(spec)
	return err
}

func parsePartitionSpec(spec string) (partitionSpec, error) {
	kind, arg, hasArg := strings.Cut(strings.TrimSpace(spec), ":")
	kind = strings.ToLower(kind)
	p := partitionSpec{kind: kind}
	switch kind {
	case "iid":
		if !hasArg {
			return p, nil
		}
	case "shards":
		k, err := strconv.Atoi(arg)
		if err == nil && k >= 1 {
			p.shards = k
			return p, nil
		}
		return p, fmt.Errorf("data: partition %q: shards per client %q must be an integer >= 1; allowed forms: %s", spec, arg, PartitionForms)
	case "dirichlet", "quantity":
		a, err := strconv.ParseFloat(arg, 64)
		if err == nil && a > 0 && !math.IsInf(a, 0) {
			p.alpha = a
			return p, nil
		}
		return p, fmt.Errorf("data: partition %q: alpha %q must be a finite number > 0; allowed forms: %s", spec, arg, PartitionForms)
	}
	return p, fmt.Errorf("data: unknown partition %q; allowed forms: %s", spec, PartitionForms)
}

// Partition assigns the indices of d to n clients. spec is one of
//
//   - "iid": a seeded shuffle cut into n near-equal parts (sizes differ by at
//     most one).
//   - "shards:K": the pathological non-IID split of McMahan et al. 2017
//     ("Communication-Efficient Learning of Deep Networks from Decentralized
//     Data", section 3): sort the rows by label, cut them into n*K shards and
//     deal K shards to each client. Shards never straddle two labels, so
//     every client holds at most K labels: the n*K shards are apportioned
//     among the classes in proportion to their sizes (the D'Hondt highest
//     averages rule, at least one shard per class), which keeps shard sizes
//     near-equal. Only when n*K is smaller than the number of classes present
//     are shards cut straight across the label-sorted rows instead, and a
//     client may then see more than K labels.
//   - "dirichlet:ALPHA": label-distribution skew of Hsu, Qi & Brown 2019
//     ("Measuring the Effects of Non-Identical Data Distribution for
//     Federated Visual Classification"): for each class, proportions
//     q ~ Dir(ALPHA, ..., ALPHA) over the n clients, and the class's rows are
//     divided in those proportions. Small ALPHA gives each client few
//     classes; large ALPHA approaches iid.
//   - "quantity:ALPHA": quantity skew (Li, Diao, Chen & He 2022, "Federated
//     Learning on Non-IID Data Silos: An Experimental Study"): client sizes
//     in proportions ~ Dir(ALPHA), rows assigned iid.
//
// Then testFrac, in [0, 1), of each client's rows, rounded to the nearest
// integer, go to its local test split, but never its last row: every client
// keeps at least one training row. With "dirichlet" a client may draw no
// rows at all; it is then given one row taken at random from the client that
// holds the most, until no client is empty, and "quantity" gives each client
// one row before dividing the rest. So no client ever has an empty train
// split. Requests that cannot be met are refused: n < 1, more clients than
// rows, more shards than rows.
//
// Randomness comes from a PCG generator seeded by seed: the same d, n, spec,
// testFrac and seed give the same clients. Each Train and Test slice is in
// random order.
func Partition(d *Dataset, n int, spec string, testFrac float64, seed int64) ([]Client, error) {
	p, err := parsePartitionSpec(spec)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, fmt.Errorf("data: partition %q: nil dataset", spec)
	}
	if len(d.Y) != d.N || d.N < 0 {
		return nil, fmt.Errorf("data: partition %q of %s: len(Y) = %d but N = %d", spec, d.Name, len(d.Y), d.N)
	}
	if d.Classes < 1 || d.Classes > MaxClasses {
		return nil, fmt.Errorf("data: partition %q of %s: Classes = %d outside [1, %d]", spec, d.Name, d.Classes, MaxClasses)
	}
	for i, y := range d.Y {
		if y < 0 || int(y) >= d.Classes {
			return nil, fmt.Errorf("data: partition %q of %s: row %d: label %d outside [0, %d)", spec, d.Name, i, y, d.Classes)
		}
	}
	if n < 1 {
		return nil, fmt.Errorf("data: partition %q of %s: %d clients, want at least 1", spec, d.Name, n)
	}
	if n > d.N {
		return nil, fmt.Errorf("data: partition %q of %s: %d clients but only %d examples; every client needs at least one", spec, d.Name, n, d.N)
	}
	if !(testFrac >= 0 && testFrac < 1) {
		return nil, fmt.Errorf("data: partition %q of %s: test fraction %v outside [0, 1)", spec, d.Name, testFrac)
	}
	if p.kind == "shards" && (p.shards > d.N || n*p.shards > d.N) {
		return nil, fmt.Errorf("data: partition %q of %s: %d clients x %d shards = %d shards but only %d examples",
			spec, d.Name, n, p.shards, n*p.shards, d.N)
	}

	rng := newRand(seed, streamPartition)
	var groups [][]int
	switch p.kind {
	case "iid":
		groups = cutSizes(rng.Perm(d.N), equalSizes(d.N, n))
	case "shards":
		groups = partitionShards(d, n, p.shards, rng)
	case "dirichlet":
		groups = partitionDirichlet(d, n, p.alpha, rng)
	case "quantity":
		sizes := apportion(d.N-n, dirichlet(rng, p.alpha, n))
		for i := range sizes {
			sizes[i]++
		}
		groups = cutSizes(rng.Perm(d.N), sizes)
	}

	clients := make([]Client, n)
	for i, g := range groups {
		rng.Shuffle(len(g), func(a, b int) { g[a], g[b] = g[b], g[a] })
		t := int(math.Round(testFrac * float64(len(g))))
		t = min(t, len(g)-1)
		clients[i] = Client{ID: i, Train: g[: len(g)-t : len(g)-t], Test: g[len(g)-t:]}
	}
	return clients, nil
}

// equalSizes splits total into n sizes differing by at most one.
func equalSizes(total, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = total / n
		if i < total%n {
			s[i]++
		}
	}
	return s
}

// cutSizes cuts idx into consecutive pieces of the given sizes (which must
// sum to len(idx)); each piece gets its own backing array.
func cutSizes(idx []int, sizes []int) [][]int {
	out := make([][]int, len(sizes))
	at := 0
	for i, s := range sizes {
		out[i] = append([]int(nil), idx[at:at+s]...)
		at += s
	}
	return out
}

// byClass returns the row indices of each class, each list in a seeded
// random order.
func byClass(d *Dataset, rng *rand.Rand) [][]int {
	lists := make([][]int, d.Classes)
	for _, i := range rng.Perm(d.N) {
		lists[d.Y[i]] = append(lists[d.Y[i]], i)
	}
	return lists
}

// partitionShards implements "shards:K" as documented on Partition.
func partitionShards(d *Dataset, n, k int, rng *rand.Rand) [][]int {
	lists := byClass(d, rng)
	var present []int
	for c, l := range lists {
		if len(l) > 0 {
			present = append(present, c)
		}
	}
	total := n * k
	var shards [][]int
	if total < len(present) {
		var sorted []int
		for _, l := range lists {
			sorted = append(sorted, l...)
		}
		shards = cutSizes(sorted, equalSizes(len(sorted), total))
	} else {
		per := dhondt(lists, present, total)
		for _, c := range present {
			shards = append(shards, cutSizes(lists[c], equalSizes(len(lists[c]), per[c]))...)
		}
	}
	order := rng.Perm(total)
	groups := make([][]int, n)
	for i := range groups {
		for _, s := range order[i*k : (i+1)*k] {
			groups[i] = append(groups[i], shards[s]...)
		}
	}
	return groups
}

// dhondt apportions total shards among the present classes by the D'Hondt
// highest-averages rule: each class starts with one shard, and each further
// shard goes to the class whose shards are currently largest (ties to the
// lower class), never giving a class more shards than rows. It requires
// len(present) <= total <= the number of rows.
func dhondt(lists [][]int, present []int, total int) []int {
	per := make([]int, len(lists))
	h := &shardHeap{lists: lists, per: per}
	for _, c := range present {
		per[c] = 1
		if len(lists[c]) > 1 {
			h.classes = append(h.classes, c)
		}
	}
	heap.Init(h)
	for left := total - len(present); left > 0 && h.Len() > 0; left-- {
		c := h.classes[0]
		per[c]++
		if per[c] == len(lists[c]) {
			heap.Pop(h)
		} else {
			heap.Fix(h, 0)
		}
	}
	return per
}

// shardHeap orders classes by current shard size, largest first.
type shardHeap struct {
	lists   [][]int
	per     []int
	classes []int
}

func (h *shardHeap) Len() int { return len(h.classes) }
func (h *shardHeap) Less(a, b int) bool {
	ca, cb := h.classes[a], h.classes[b]
	// len(a)/per(a) > len(b)/per(b), compared without division.
	la, lb := len(h.lists[ca])*h.per[cb], len(h.lists[cb])*h.per[ca]
	if la != lb {
		return la > lb
	}
	return ca < cb
}
func (h *shardHeap) Swap(a, b int) { h.classes[a], h.classes[b] = h.classes[b], h.classes[a] }
func (h *shardHeap) Push(x any)    { h.classes = append(h.classes, x.(int)) }
func (h *shardHeap) Pop() any {
	x := h.classes[len(h.classes)-1]
	h.classes = h.classes[:len(h.classes)-1]
	return x
}

// partitionDirichlet implements "dirichlet:ALPHA" as documented on Partition.
func partitionDirichlet(d *Dataset, n int, alpha float64, rng *rand.Rand) [][]int {
	groups := make([][]int, n)
	for _, l := range byClass(d, rng) {
		if len(l) == 0 {
			continue
		}
		sizes := apportion(len(l), dirichlet(rng, alpha, n))
		for i, piece := range cutSizes(l, sizes) {
			groups[i] = append(groups[i], piece...)
		}
	}
	// Refill empty clients from the largest one. Terminates because n <= N:
	// while a client is empty, the largest holds at least two rows.
	for i := range groups {
		if len(groups[i]) > 0 {
			continue
		}
		big := 0
		for j := range groups {
			if len(groups[j]) > len(groups[big]) {
				big = j
			}
		}
		g := groups[big]
		r := rng.IntN(len(g))
		groups[i] = append(groups[i], g[r])
		g[r] = g[len(g)-1]
		groups[big] = g[:len(g)-1]
	}
	return groups
}

// apportion divides total items among len(p) bins in proportions p (summing
// to 1) by the largest-remainder method (Hamilton's method): each bin gets
// floor(p*total), and the items left over go to the bins with the largest
// fractional parts, ties to the lower bin.
func apportion(total int, p []float64) []int {
	sizes := make([]int, len(p))
	rem := make([]float64, len(p))
	given := 0
	for i, q := range p {
		x := q * float64(total)
		sizes[i] = int(math.Floor(x))
		rem[i] = x - float64(sizes[i])
		given += sizes[i]
	}
	// Rounding in p can make the floors overshoot by a unit; take it back
	// from the largest bins.
	for given > total {
		big := 0
		for i := range sizes {
			if sizes[i] > sizes[big] {
				big = i
			}
		}
		sizes[big]--
		given--
	}
	order := make([]int, len(p))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rem[order[a]] > rem[order[b]] })
	for k := 0; given < total; k = (k + 1) % len(order) {
		sizes[order[k]]++
		given++
	}
	return sizes
}

// dirichlet draws proportions from the symmetric Dirichlet distribution
// Dir(alpha, ..., alpha) of dimension k, as normalised Gamma(alpha, 1)
// variates. The variates are kept as logarithms so that very small alpha,
// whose variates underflow float64, still gives a valid, extremely skewed
// draw.
func dirichlet(rng *rand.Rand, alpha float64, k int) []float64 {
	lg := make([]float64, k)
	m := math.Inf(-1)
	for i := range lg {
		lg[i] = logGamma(rng, alpha)
		m = max(m, lg[i])
	}
	p := make([]float64, k)
	if math.IsInf(m, -1) || math.IsNaN(m) {
		p[rng.IntN(k)] = 1
		return p
	}
	sum := 0.0
	for i, l := range lg {
		p[i] = math.Exp(l - m)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// logGamma returns the logarithm of a Gamma(a, 1) variate, a > 0, by
// Marsaglia & Tsang 2000 ("A Simple Method for Generating Gamma Variables",
// ACM TOMS 26(3)), with their boost for a < 1: Gamma(a) = Gamma(a+1) *
// U^(1/a).
func logGamma(rng *rand.Rand, a float64) float64 {
	if a < 1 {
		u := 1 - rng.Float64() // in (0, 1]
		return logGamma(rng, a+1) + math.Log(u)/a
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return math.Log(d) + math.Log(v)
		}
	}
}
