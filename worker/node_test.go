package worker

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/sovereign-fl/sovereign/aggregation/dp"
	"github.com/sovereign-fl/sovereign/aggregation/secagg"
)

// maxExamples is a MaxWeight above every shard's example count.
const maxExamples = 2000

// TestFullRoundMatchesPlainMean runs one SecAgg+ round among 4 workers and
// checks the unmasked sum against the plain weighted sum of their deltas,
// recomputed independently, within the quantization bound.
func TestFullRoundMatchesPlainMean(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(1, maxExamples)
	sum, total, survivors, _ := cl.runRound(a, hooks{})
	if !slices.Equal(survivors, []uint32{1, 2, 3, 4}) {
		t.Fatalf("survivors %v", survivors)
	}
	want := make([]float64, len(cl.global))
	wantW := 0.0
	for i, node := range cl.nodes {
		if got := node.trainCalls.Load(); got != 1 {
			t.Fatalf("worker %d trained %d times", i, got)
		}
		delta, _, err := node.update(&a, cl.global) // deterministic without DP
		if err != nil {
			t.Fatal(err)
		}
		w := float64(node.Examples())
		for j, v := range delta {
			if math.Abs(float64(v)) > a.SecAgg.ClipRange {
				t.Fatalf("worker %d delta[%d] = %v beyond the clip range; the comparison would not hold", i, j, v)
			}
			want[j] += w * float64(v)
		}
		wantW += w
	}
	q, err := secagg.NewQuantizer(secagg.DefaultBits, a.SecAgg.ClipRange, a.SecAgg.MaxWeight, len(a.Sampled))
	if err != nil {
		t.Fatal(err)
	}
	perCoord, perWeight := q.ErrorBound(len(survivors))
	if math.Abs(total-wantW) > perWeight {
		t.Fatalf("total weight %v, want %v ± %v", total, wantW, perWeight)
	}
	nonzero := 0
	for j := range want {
		if d := math.Abs(sum[j] - want[j]); d > perCoord {
			t.Fatalf("sum[%d] = %v, plain %v: off by %v > bound %v", j, sum[j], want[j], d, perCoord)
		}
		if math.Abs(want[j]) > 10*perCoord {
			nonzero++
		}
	}
	if nonzero < len(want)/10 {
		t.Fatalf("only %d of %d coordinates are clearly non-zero: training did not move the model", nonzero, len(want))
	}
	// The mean update improves the model on a worker's test split.
	next := slices.Clone(cl.global)
	for j := range next {
		next[j] += float32(sum[j] / total)
	}
	_, _, acc0, err := cl.nodes[0].Evaluate(0, cl.global)
	if err != nil {
		t.Fatal(err)
	}
	ex, _, acc1, err := cl.nodes[0].Evaluate(1, next)
	if err != nil {
		t.Fatal(err)
	}
	if ex == 0 || acc1 <= acc0 {
		t.Fatalf("accuracy %v after the round, %v before (%d examples)", acc1, acc0, ex)
	}
}

func TestPolicyRefusals(t *testing.T) {
	cases := []struct {
		name   string
		cfg    func(c *Config)
		ann    func(a *Announce)
		reason string
	}{
		{"model not accepted", nil, func(a *Announce) {
			a.ModelSpec = "mlp:8"
			a.NumParams = 8*64 + 8 + 8*10 + 10
			a.SecAgg.Dim = a.NumParams
		}, "not in policy.accepted_models"},
		{"cohort too small", func(c *Config) { c.Policy.MinCohort = 5 }, nil, "below policy.min_cohort 5"},
		{"epsilon over budget", nil, func(a *Announce) { a.Epsilon = 12; a.DP = DPParams{Clip: 1, Noise: 1, MinClients: 2} }, "above policy.max_epsilon"},
		{"no dp with finite budget", nil, nil, "no differential privacy"},
		{"dp min clients above threshold", nil, func(a *Announce) { a.DP = DPParams{Clip: 1, Noise: 1, MinClients: 4} }, "exceeds the SecAgg+ threshold"},
		{"weight above max", func(c *Config) { c.Policy.MaxEpsilon = math.Inf(1) }, func(a *Announce) { a.DP = DPParams{}; a.SecAgg.MaxWeight = 10 }, "exceeds secagg.max_weight 10"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t, 4, func(i int, c *Config) {
				if tc.cfg != nil {
					tc.cfg(c)
				}
			})
			a := cl.announce(1, maxExamples)
			if tc.name != "no dp with finite budget" {
				a.DP = DPParams{Clip: 1, Noise: 1, MinClients: 2}
			}
			if tc.ann != nil {
				tc.ann(&a)
			}
			_, err := cl.nodes[0].Advertise(a)
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("want *Refusal, got %v", err)
			}
			if r.Round != 1 || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("refusal %+v, want reason containing %q", r, tc.reason)
			}
			if log := cl.logs[0].String(); !strings.Contains(log, "round refused") || !strings.Contains(log, tc.reason) || !strings.Contains(log, "round=1") {
				t.Fatalf("refusal not logged with round and reason:\n%s", log)
			}
			// A refused round leaves no state behind.
			if rounds, err := cl.stores[0].Rounds(); err != nil || len(rounds) != 0 {
				t.Fatalf("rounds %v, %v after a refusal", rounds, err)
			}
		})
	}
	// The same announcement passes when nothing is wrong with it.
	cl := newCluster(t, 4, nil)
	a := cl.announce(1, maxExamples)
	a.DP = DPParams{Clip: 1, Noise: 1, MinClients: 2}
	if _, err := cl.nodes[0].Advertise(a); err != nil {
		t.Fatalf("valid announcement refused: %v", err)
	}
}

func TestAnnounceValidation(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	cases := []struct {
		field string
		ann   func(a *Announce)
	}{
		{"secagg.round", func(a *Announce) { a.SecAgg.Round = 9 }},
		{"secagg.dim", func(a *Announce) { a.SecAgg.Dim++ }},
		{"sampled", func(a *Announce) { a.Sampled[0] = "stranger" }},
		{"secagg.clients", func(a *Announce) { a.SecAgg.Clients = []uint32{1, 2, 3} }},
		{"train", func(a *Announce) { a.Train.LR = math.NaN() }},
		{"epsilon", func(a *Announce) { a.Epsilon = math.NaN() }},
		{"dp.noise", func(a *Announce) { a.DP.Noise = -1 }},
		{"model_version", func(a *Announce) { a.ModelVersion = 1 }},
	}
	for _, tc := range cases {
		a := cl.announce(1, maxExamples)
		tc.ann(&a)
		_, err := cl.nodes[0].Advertise(a)
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "round 1") {
			t.Errorf("%s: got %v", tc.field, err)
		}
	}
}

// TestMaskedInputIdempotent asks every stage twice: the answers are
// identical and training runs once.
func TestMaskedInputIdempotent(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(1, maxExamples)
	_, _, _, msgs := cl.runRound(a, hooks{})
	for i, node := range cl.nodes {
		id := uint32(i + 1)
		ads, err := node.Advertise(a)
		if err != nil || !reflect.DeepEqual(ads, msgs[id][0]) {
			t.Fatalf("worker %d: second advertise differs: %v", i, err)
		}
		mi, err := node.MaskedInput(secagg.ShareBundle{Round: 1, To: id}, cl.global)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(mi, msgs[id][2]) {
			t.Fatalf("worker %d: second masked input differs", i)
		}
		if got := node.trainCalls.Load(); got != 1 {
			t.Fatalf("worker %d trained %d times", i, got)
		}
	}
}

// TestRestartMidRound restarts each worker right after every answer and
// asks again: the restarted node (with fresh randomness) answers exactly
// what it answered before, from its store, and nobody retrains. Then the
// round is driven a second time against a new server on the same stores,
// and every answer repeats once more.
func TestRestartMidRound(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(1, maxExamples)
	_, total, surv, first := cl.runRound(a, hooks{repeat: true})
	if len(surv) != 4 || !(total > 0) {
		t.Fatalf("survivors %v total %v", surv, total)
	}
	_, _, _, again := cl.runRound(a, hooks{})
	if got := cl.trainCalls(); got != 4 {
		t.Fatalf("%d training runs in all, want 4 (one per worker)", got)
	}
	for id := range first {
		if !reflect.DeepEqual(first[id], again[id]) {
			t.Fatalf("worker %d answered a resumed round differently", id-1)
		}
	}
}

// TestConcurrentRequests asks every stage concurrently several times: the
// answers agree and each worker trains once.
func TestConcurrentRequests(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	_, total, surv, _ := cl.runRound(cl.announce(1, maxExamples), hooks{concurrent: true})
	if len(surv) != 4 || !(total > 0) {
		t.Fatalf("survivors %v total %v", surv, total)
	}
	if got := cl.trainCalls(); got != 4 {
		t.Fatalf("%d training runs, want 4", got)
	}
}

// TestRestartMidRoundContinues restarts workers between stages of a round
// they have not finished, and the round completes.
func TestRestartMidRoundContinues(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(3, maxExamples)
	restarts := 0
	sum, total, surv, _ := cl.runRound(a, hooks{before: func(st secagg.Stage) {
		if st == secagg.StageAdvertise {
			return
		}
		i := int(st) % cl.n
		cl.restart(i)
		restarts++
	}})
	if restarts != 3 || len(surv) != 4 || !(total > 0) || len(sum) != len(cl.global) {
		t.Fatalf("restarts %d survivors %v total %v", restarts, surv, total)
	}
}

func TestEquivocationRefusedAfterRestart(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(1, maxExamples)
	_, _, _, msgs := cl.runRound(a, hooks{})
	cl.restart(0)
	req := secagg.UnmaskRequest{Round: 1, To: 1, Survivors: []uint32{1, 2, 3}, Dropped: []uint32{4}}
	_, err := cl.nodes[0].Unmask(req)
	var eq *secagg.EquivocationError
	var r *Refusal
	if !errors.As(err, &eq) || !errors.As(err, &r) || r.Round != 1 {
		t.Fatalf("want a refusal wrapping an equivocation error, got %v", err)
	}
	if !slices.Equal(eq.Answered, []uint32{1, 2, 3, 4}) {
		t.Fatalf("answered %v", eq.Answered)
	}
	// The answered set is recorded on its own too.
	ans, ok, err := cl.stores[0].Answer(1)
	if err != nil || !ok || !slices.Equal(ans.Survivors, []uint32{1, 2, 3, 4}) || len(ans.Dropped) != 0 {
		t.Fatalf("stored answer %+v %v %v", ans, ok, err)
	}
	// The committed set is still answered, identically.
	resp, err := cl.nodes[0].Unmask(secagg.UnmaskRequest{Round: 1, To: 1, Survivors: []uint32{4, 3, 2, 1}})
	if err != nil || !reflect.DeepEqual(resp, msgs[1][3]) {
		t.Fatalf("repeated unmask differs: %v", err)
	}
}

func TestCommitDropsRoundAndRefusesStale(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(1, maxExamples)
	cl.runRound(a, hooks{})
	node, st := cl.nodes[0], cl.stores[0]
	if _, ok, _ := st.Masked(1); !ok {
		t.Fatal("masked input not cached before commit")
	}
	if err := node.Commit(1, 0.75); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Masked(1); ok {
		t.Fatal("masked input still cached after commit")
	}
	if rounds, _ := st.Rounds(); len(rounds) != 0 {
		t.Fatalf("rounds %v left after commit", rounds)
	}
	cl.restart(0)
	node = cl.nodes[0]
	if e, err := node.EpsilonSpent(); err != nil || e != 0.75 {
		t.Fatalf("ε spent %v, %v", e, err)
	}
	_, err := node.Unmask(secagg.UnmaskRequest{Round: 1, To: 1, Survivors: []uint32{1, 2, 3}})
	var r *Refusal
	if !errors.As(err, &r) || !strings.Contains(r.Reason, "last committed round 1") {
		t.Fatalf("stale unmask: %v", err)
	}
	if _, err := node.Advertise(a); !errors.As(err, &r) {
		t.Fatalf("stale advertise: %v", err)
	}
	// An announcement built on round 2's model commits round 2 implicitly.
	b := cl.announce(2, maxExamples)
	if _, err := node.Advertise(b); err != nil {
		t.Fatal(err)
	}
	c := cl.announce(5, maxExamples)
	c.ModelVersion = 2
	if _, err := node.Advertise(c); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := cl.stores[0].Committed(); err != nil || !ok || got != 2 {
		t.Fatalf("committed %d %v %v", got, ok, err)
	}
	if rounds, _ := cl.stores[0].Rounds(); !slices.Equal(rounds, []uint64{5}) {
		t.Fatalf("rounds %v", rounds)
	}
}

func TestAnnouncementReplacement(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(1, maxExamples)
	node := cl.nodes[0]
	k1, err := node.Advertise(a)
	if err != nil {
		t.Fatal(err)
	}
	b := a
	b.SecAgg.GraphSeed[5] = 9
	k2, err := node.Advertise(b)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(k1, k2) {
		t.Fatal("a replaced announcement kept the old keys")
	}
	cl.runRound(b, hooks{})
	c := b
	c.SecAgg.GraphSeed[5] = 10
	_, err = node.Advertise(c)
	var r *Refusal
	if !errors.As(err, &r) || !strings.Contains(r.Reason, "already sent") {
		t.Fatalf("second announcement after masking: %v", err)
	}
}

func TestMaskedInputChecksModel(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(1, maxExamples)
	cl.runRound(a, hooks{before: func(st secagg.Stage) {
		if st != secagg.StageMaskedInput {
			return
		}
		bad := slices.Clone(cl.global)
		bad[3] += 1
		_, err := cl.nodes[0].MaskedInput(secagg.ShareBundle{Round: 1, To: 1}, bad)
		if err == nil || !strings.Contains(err.Error(), "model hash") {
			t.Errorf("tampered model: %v", err)
		}
		_, err = cl.nodes[0].MaskedInput(secagg.ShareBundle{Round: 1, To: 1}, cl.global[:10])
		if err == nil || !strings.Contains(err.Error(), "10 parameters") {
			t.Errorf("short model: %v", err)
		}
		_, err = cl.nodes[0].MaskedInput(secagg.ShareBundle{Round: 1, To: 2}, cl.global)
		if err == nil || !strings.Contains(err.Error(), "addressed to node 2") {
			t.Errorf("misaddressed bundle: %v", err)
		}
		if n := cl.nodes[0].trainCalls.Load(); n != 0 {
			t.Errorf("trained %d times on bad requests", n)
		}
	}})
}

// TestDPUpdateClippedAndNoised checks the DP path of the local update: with
// tiny noise the delta's norm is at most the clip bound; with large noise
// the delta's spread matches σ·C/√t.
func TestDPUpdateClippedAndNoised(t *testing.T) {
	cl := newCluster(t, 4, nil)
	a := cl.announce(1, maxExamples)
	node := cl.nodes[0]
	a.DP = DPParams{Clip: 0.05, Noise: 1e-9, MinClients: 2}
	d, _, err := node.update(&a, cl.global)
	if err != nil {
		t.Fatal(err)
	}
	if n := dp.L2Norm(d); n > 0.05*(1+1e-6) || n < 0.04 {
		t.Fatalf("clipped delta norm %v, want ≈ 0.05", n)
	}
	a.DP = DPParams{Clip: 0.05, Noise: 4, MinClients: 4}
	d, _, err = node.update(&a, cl.global)
	if err != nil {
		t.Fatal(err)
	}
	var ss float64
	for _, v := range d {
		ss += float64(v) * float64(v)
	}
	std := math.Sqrt(ss / float64(len(d)))
	want := dp.DistributedStd(4, 0.05, 4)
	// The clipped signal adds at most 0.05/√d to the RMS; sampling error
	// of an RMS over d ≈ 1200 Gaussians is about 2%.
	if math.Abs(std-want) > 0.06*want {
		t.Fatalf("noise std %v, want %v", std, want)
	}
	if w := node.weight(&a); w != 1 {
		t.Fatalf("DP weight %v, want 1", w)
	}
}

func TestEvaluateSpecResolution(t *testing.T) {
	cl := newCluster(t, 2, nil)
	node := cl.nodes[0]
	// No announcement seen: the only accepted model with this many
	// parameters is used.
	ex, _, acc, err := node.Evaluate(4, cl.global)
	if err != nil || ex == 0 || acc < 0 || acc > 1 {
		t.Fatalf("evaluate: %d %v %v", ex, acc, err)
	}
	if _, _, _, err := node.Evaluate(5, cl.global[:7]); err == nil || !strings.Contains(err.Error(), "7-parameter") {
		t.Fatalf("unknown shape: %v", err)
	}
	if _, _, _, err := node.EvaluateSpec(testSpec, append(slices.Clone(cl.global[:len(cl.global)-1]), float32(math.NaN()))); err == nil {
		t.Fatal("NaN model evaluated")
	}
}

// TestClientStateStoredWithoutMaskedVector checks that the stored SecAgg+
// client state does not repeat the masked vector (stored once, in its own
// record), that a restarted worker still answers stage 3 from the two
// records, and that a missing masked record is reported as corrupt state,
// naming the key, instead of answering.
func TestClientStateStoredWithoutMaskedVector(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(1, maxExamples)
	_, _, _, msgs := cl.runRound(a, hooks{})
	for i := range cl.nodes {
		state, ok, err := cl.stores[i].Client(1)
		if err != nil || !ok {
			t.Fatalf("worker %d: client state: %v %v", i, ok, err)
		}
		full, err := cl.nodes[i].clients[1].MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		if vec := 4 * (len(cl.global) + 1); len(full)-len(state) < vec {
			t.Fatalf("worker %d: stored client state of %d bytes, the full one %d: the %d-byte masked vector is not left out", i, len(state), len(full), vec)
		}
		if _, ok, err := cl.stores[i].Masked(1); err != nil || !ok {
			t.Fatalf("worker %d: masked record: %v %v", i, ok, err)
		}
	}
	// After a restart the client is rebuilt from both records: the cached
	// masked input and the stage-3 answer are the ones sent.
	cl.restart(1)
	c, err := cl.nodes[1].client(1)
	if err != nil {
		t.Fatal(err)
	}
	if mi, ok := c.CachedMaskedInput(); !ok || !reflect.DeepEqual(mi, msgs[2][2]) {
		t.Fatal("restored client's cached masked input differs from the one sent")
	}
	resp, err := cl.nodes[1].Unmask(secagg.UnmaskRequest{Round: 1, To: 2, Survivors: []uint32{1, 2, 3, 4}})
	if err != nil || !reflect.DeepEqual(resp, msgs[2][3]) {
		t.Fatalf("unmask after restart differs: %v", err)
	}
	// Without the masked record the state cannot be completed.
	cl.restart(0)
	if err := cl.stores[0].db.Update(func(txn *badger.Txn) error {
		return txn.Delete([]byte(roundKey(1, recMasked)))
	}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.nodes[0].Unmask(secagg.UnmaskRequest{Round: 1, To: 1, Survivors: []uint32{1, 2, 3, 4}})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Key != roundKey(1, recClient) || !strings.Contains(ce.Reason, "masked input") {
		t.Fatalf("want a corrupt-state error naming %q, got %v", roundKey(1, recClient), err)
	}
}

// TestUpdateReusesNetwork checks that local training on the network a
// worker keeps across rounds gives, bit for bit, the update a fresh
// network gives: nothing of an earlier training carries over.
func TestUpdateReusesNetwork(t *testing.T) {
	cl := newCluster(t, 3, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a1 := cl.announce(1, maxExamples)
	a2 := cl.announce(2, maxExamples)
	a2.Train.ProxMu = 0.1
	node := cl.nodes[0]
	first, _, err := node.update(&a1, cl.global)
	if err != nil {
		t.Fatal(err)
	}
	first = slices.Clone(first)
	net := node.trainNet
	for _, a := range []*Announce{&a2, &a1} {
		got, loss, err := node.update(a, cl.global)
		if err != nil {
			t.Fatal(err)
		}
		if node.trainNet != net {
			t.Fatal("a new network was built for the same model")
		}
		got = slices.Clone(got)
		cl.restart(0)
		fresh, floss, err := cl.nodes[0].update(a, cl.global)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, fresh) || loss != floss {
			t.Fatalf("round %d: update on the reused network differs from a fresh network's", a.Round)
		}
		node = cl.nodes[0]
		net = node.trainNet
		if a.Round == 1 && !slices.Equal(got, first) {
			t.Fatal("round 1 retrained after another round differs")
		}
	}
}

// The consistency check (Bonawitz et al. 2017, round 4) through the node:
// the signed survivor set is in the store, so after a restart (a new
// leader asking again) the same set gets the same answer and another set
// is refused, and the unmask request must name the signed set.
func TestConsistencySignedOnceAcrossRestart(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(1, maxExamples)
	a.SecAgg.ConsistencyCheck = true
	_, _, surv, msgs := cl.runRound(a, hooks{repeat: true})
	if !slices.Equal(surv, []uint32{1, 2, 3, 4}) {
		t.Fatalf("survivors %v", surv)
	}
	signed, ok := msgs[1][3].(secagg.ConsistencyResponse)
	if !ok {
		t.Fatalf("worker 1's fourth answer is %T, want its consistency signature", msgs[1][3])
	}
	cl.restart(0)
	again, err := cl.nodes[0].ConsistencyCheck(secagg.ConsistencyRequest{Round: 1, To: 1, Survivors: []uint32{1, 2, 3, 4}})
	if err != nil || !reflect.DeepEqual(again, signed) {
		t.Fatalf("same set after restart: %+v, %v; want %+v", again, err, signed)
	}
	_, err = cl.nodes[0].ConsistencyCheck(secagg.ConsistencyRequest{Round: 1, To: 1, Survivors: []uint32{1, 2, 3}})
	var eq *secagg.EquivocationError
	var r *Refusal
	if !errors.As(err, &eq) || !errors.As(err, &r) || !slices.Equal(eq.Answered, []uint32{1, 2, 3, 4}) {
		t.Fatalf("a second survivor set after restart: %v, want a refusal wrapping an equivocation error", err)
	}
}
