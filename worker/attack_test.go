package worker

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/wire"
)

// biasModel returns a model of cl's spec that predicts class c for every
// input: all weights zero, the output bias of c large. Ten of them, one per
// class, read the label histogram of a test split off the accuracies.
func biasModel(cl *cluster, c int) []float32 {
	p := make([]float32, len(cl.global))
	k := cl.spec.Classes
	p[len(p)-k+c] = 100
	return p
}

// TestAttackEvaluateOracle is security review M4: a coordinator asks a
// worker to evaluate crafted models (each predicting one class) on its
// private test split, to read the split's label histogram off the
// accuracies, first with a spec outside the worker's policy and before any
// round, then in a round the worker trained in. The worker must refuse
// every request but one model per round it trained in, refuse a spec other
// than the announced one, and refuse a later announcement that builds on a
// model other than the one it evaluated.
func TestAttackEvaluateOracle(t *testing.T) {
	cl := newCluster(t, 3, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	n := cl.nodes[0]
	fetches := 0
	ask := func(round uint64, spec string, params []float32) (int, float64, error) {
		ex, _, acc, err := n.EvaluateCommitted(round, ModelHash(params), spec, func(numParams int) ([]float32, error) {
			fetches++
			if numParams != len(cl.global) {
				t.Fatalf("fetch asked for %d parameters, the round announced %d", numParams, len(cl.global))
			}
			return params, nil
		})
		return ex, acc, err
	}
	refused := func(err error, want string) {
		t.Helper()
		var r *Refusal
		if !errors.As(err, &r) || !strings.Contains(r.Reason, want) {
			t.Fatalf("got %v, want a refusal containing %q", err, want)
		}
	}

	// Before any round: nothing to evaluate, whatever the spec.
	_, _, err := ask(1, "logreg", biasModel(cl, 0))
	refused(err, "no accepted announcement of round 1")
	_, _, err = ask(1, "", biasModel(cl, 0))
	refused(err, "no accepted announcement of round 1")

	a := cl.announce(1, maxExamples)
	cl.runRound(a, hooks{})

	// In the round it trained: a spec other than the announced one.
	_, _, err = ask(1, "logreg", biasModel(cl, 0))
	refused(err, `model spec "logreg" is not the spec "mlp:16" announced for round 1`)

	// Ten crafted models of the announced spec: only the first is
	// answered; the worker cannot tell it from the committed model, but
	// it pins it and answers no other model for the round.
	answered := 0
	for c := range cl.spec.Classes {
		if _, _, err := ask(1, "", biasModel(cl, c)); err == nil {
			answered++
		} else {
			refused(err, "a model was already evaluated for round 1; one model per round")
		}
	}
	if answered != 1 || fetches != 1 {
		t.Fatalf("%d crafted models answered (%d fetched), want 1", answered, fetches)
	}
	// The same model again: the same answer, no new evaluation.
	ex1, acc1, err := ask(1, "", biasModel(cl, 0))
	if err != nil || fetches != 1 {
		t.Fatalf("repeat of the pinned model: %v (%d fetches)", err, fetches)
	}
	if ex1 <= 0 || acc1 < 0 || acc1 > 1 {
		t.Fatalf("pinned answer: %d examples, accuracy %v", ex1, acc1)
	}

	// An earlier round, and a round the worker was not sampled in.
	_, _, err = ask(0, "", cl.global)
	refused(err, "before round 1, the last one evaluated")
	_, _, err = ask(7, "", cl.global)
	refused(err, "no accepted announcement of round 7")

	// The next round must build on the evaluated model.
	next := cl.announce(2, maxExamples)
	next.ModelVersion = 1
	_, err = n.Advertise(next)
	refused(err, "the announced model of round 1 is not the one this worker evaluated")
	next.ModelHash = ModelHash(biasModel(cl, 0))
	if _, err := n.Advertise(next); err != nil {
		t.Fatalf("announcement building on the evaluated model: %v", err)
	}

	// policy.evaluation = "none" answers nothing.
	cl2 := newCluster(t, 3, func(i int, c *Config) {
		c.Policy.MaxEpsilon = math.Inf(1)
		c.Policy.Evaluation = EvalNone
	})
	cl2.runRound(cl2.announce(1, maxExamples), hooks{})
	_, _, _, err = cl2.nodes[0].EvaluateCommitted(1, ModelHash(cl2.global), "", func(int) ([]float32, error) {
		t.Fatal("a worker with policy.evaluation none fetched a model")
		return nil, nil
	})
	refused(err, `policy.evaluation is "none"`)
}

// TestAttackRefusalLeaksPrivateValues is security review L2: a coordinator
// announces rounds a worker must refuse (a max_weight below its example
// count, an ε above its budget, a model that does not fit its data) to
// read the exact example count, the budget or the data's shape off the
// refusal text. The refusal must name the rule only; the values stay in
// the worker's own log.
func TestAttackRefusalLeaksPrivateValues(t *testing.T) {
	cases := []struct {
		name    string
		cfg     func(c *Config)
		ann     func(cl *cluster, a *Announce)
		rule    string
		private func(cl *cluster) string
	}{
		{"example count", func(c *Config) { c.Policy.MaxEpsilon = math.Inf(1) }, func(cl *cluster, a *Announce) { a.SecAgg.MaxWeight = 1 },
			"exceeds secagg.max_weight", func(cl *cluster) string { return strconv.Itoa(cl.nodes[0].Examples()) }},
		{"privacy budget", func(c *Config) { c.Policy.MaxEpsilon = 7.25 }, func(cl *cluster, a *Announce) {
			a.Epsilon = 9.5
			a.DP = DPParams{Clip: 1, Noise: 1, MinClients: 2}
		}, "above policy.max_epsilon", func(cl *cluster) string { return "7.25" }},
		{"data shape", func(c *Config) { c.Policy.MaxEpsilon = math.Inf(1) }, func(cl *cluster, a *Announce) { a.NumParams, a.SecAgg.Dim = 12, 12 },
			"does not have the announced num_params 12", func(cl *cluster) string { return strconv.Itoa(len(cl.global)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t, 3, func(i int, c *Config) { tc.cfg(c) })
			a := cl.announce(1, maxExamples)
			tc.ann(cl, &a)
			_, err := cl.nodes[0].Advertise(a)
			var r *Refusal
			if !errors.As(err, &r) || !strings.Contains(err.Error(), tc.rule) {
				t.Fatalf("got %v, want a refusal naming %q", err, tc.rule)
			}
			secret := tc.private(cl)
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("refusal sent to the coordinator %q carries the private value %s", err, secret)
			}
			if log := cl.logs[0].String(); !strings.Contains(log, secret) {
				t.Fatalf("the private value %s is not in the worker's own log:\n%s", secret, log)
			}
		})
	}
}

// TestAttackStoreFileModes is security review L1: an operator (or an
// image) created the store folder 0755, and badger creates its files 0666
// less the umask, so under umask 022 the round secrets would sit in
// world-readable files. After a round the folder must be 0700 and every
// file in it 0600.
func TestAttackStoreFileModes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	cl := newCluster(t, 3, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	dir := cl.dirs[0]
	if err := cl.stores[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.Chmod(filepath.Join(dir, e.Name()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cl.start(0)
	cl.runRound(cl.announce(1, maxExamples), hooks{})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("store folder mode %04o after a round, want 0700", got)
	}
	ents, err = os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !info.Mode().IsRegular() {
			continue
		}
		files++
		if got := info.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: mode %04o after a round, want 0600", e.Name(), got)
		}
	}
	if files == 0 {
		t.Fatal("the store folder holds no files after a round")
	}
}

// TestAttackAnnounceQuadraticWork is security review L3: an announcement
// of a 16,384-worker cohort with SecAgg+ degree n−1 would make the worker
// build an n×(n−1) neighbour table (1 GiB). The worker must refuse it by
// its policy limits before building anything: a few MiB at most are
// allocated during the call.
func TestAttackAnnounceQuadraticWork(t *testing.T) {
	cl := newCluster(t, 1, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	huge := func(n, degree int) Announce {
		ids := make([]uint32, n)
		sampled := make([]string, n)
		for i := range n {
			ids[i] = uint32(i + 1)
			sampled[i] = fmt.Sprintf("peer-%05d", i)
		}
		sampled[0] = workerID(0)
		slices.Sort(sampled)
		return Announce{
			Round: 1, ModelHash: ModelHash(cl.global), ModelSpec: testSpec, NumParams: len(cl.global),
			Train:   TrainParams{Epochs: 1, Batch: 32, LR: 0.1},
			SecAgg:  secagg.Config{Round: 1, Clients: ids, Degree: degree, ClipRange: 1, MaxWeight: maxExamples, Dim: len(cl.global)},
			Sampled: sampled,
		}
	}
	for _, tc := range []struct {
		name      string
		n, degree int
		rule      string
	}{
		{"cohort", 16384, 16383, "above policy.max_cohort 1024"},
		{"degree", 1024, 1023, "SecAgg+ degree 1023 is above policy.max_secagg_degree 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := huge(tc.n, tc.degree)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := cl.nodes[0].Advertise(a)
			runtime.ReadMemStats(&after)
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("Advertise: %v; %d KiB allocated", err, allocated>>10)
			var r *Refusal
			if !errors.As(err, &r) || !strings.Contains(r.Reason, tc.rule) {
				t.Fatalf("got %v, want a refusal containing %q", err, tc.rule)
			}
			if allocated > 4<<20 {
				t.Fatalf("%d MiB allocated for a refused announcement, want a few MiB at most", allocated>>20)
			}
		})
	}
}

// TestAttackSecureEvaluationHidesEachWorker is the aggregate mode of
// security review M4: with policy.evaluation = "aggregate" a worker
// answers no evaluation request at all, and in a round with secure
// evaluation its figures reach the coordinator only inside the SecAgg+ sum,
// whose evaluation words give the weighted mean over the survivors; a
// worker with policy "none" adds zeros.
func TestAttackSecureEvaluationHidesEachWorker(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) {
		c.Policy.MaxEpsilon = math.Inf(1)
		c.Policy.Evaluation = EvalAggregate
		if i == 3 {
			c.Policy.Evaluation = EvalNone
		}
	})
	a := cl.announce(1, maxExamples)
	a.SecAgg.Dim = a.NumParams + wire.EvalWords
	// What each worker would have told the coordinator in clear.
	var wantAcc, wantLoss, wantW float64
	for i := range 3 {
		ex, loss, acc, err := cl.nodes[i].EvaluateSpec(testSpec, cl.global)
		if err != nil || ex == 0 {
			t.Fatalf("worker %d: %d examples, %v", i, ex, err)
		}
		w := cl.nodes[i].weight(&a)
		wantAcc, wantLoss, wantW = wantAcc+w*acc, wantLoss+w*loss, wantW+w
	}
	wantAcc, wantLoss = wantAcc/wantW, wantLoss/wantW
	sum, _, survivors, _ := cl.runRound(a, hooks{})
	if len(survivors) != 4 || len(sum) != a.NumParams+wire.EvalWords {
		t.Fatalf("%d survivors, sum of %d words", len(survivors), len(sum))
	}
	acc, loss, ok, err := wire.ParseEvalTail(sum[a.NumParams:])
	if err != nil || !ok {
		t.Fatalf("evaluation tail %v: ok %v, %v", sum[a.NumParams:], ok, err)
	}
	t.Logf("secure evaluation: accuracy %.4f loss %.4f (clear mean over the three evaluating workers %.4f, %.4f)", acc, loss, wantAcc, wantLoss)
	if math.Abs(acc-wantAcc) > 1e-3 || math.Abs(loss-min(wantLoss, wire.EvalLossCap)) > 1e-2 {
		t.Fatalf("secure evaluation %.4f/%.4f, want the weighted mean %.4f/%.4f of the evaluating workers", acc, loss, wantAcc, wantLoss)
	}
	// Asked directly, every one of them refuses.
	for i, n := range cl.nodes {
		_, _, _, err := n.EvaluateCommitted(1, ModelHash(cl.global), "", func(int) ([]float32, error) {
			t.Fatalf("worker %d fetched a model for a direct evaluation", i)
			return nil, nil
		})
		var r *Refusal
		if !errors.As(err, &r) || !strings.Contains(r.Reason, "policy.evaluation is") {
			t.Fatalf("worker %d answered a direct evaluation: %v", i, err)
		}
	}
}
