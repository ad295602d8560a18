package worker

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/wire"
)

// statsSites are three hospitals' files as they write them: BOM, ';' and
// decimal commas, tab, plain ','; missing cells, a category, text labels.
var statsSites = []string{
	"\ufeffpatient_id;age;sbp;sex;outcome\r\n1;54;\"132,5\";M;yes\r\n2;NA;120;F;no\r\n3;61;;M;yes\r\n4;47;141;?;no\r\n5;39;118;F;yes\r\n6;70;150;F;yes\r\n",
	"outcome\tsex\tsbp\tage\tpatient_id\nno\tF\t125\t33\t7\nyes\tM\t160\t66\t8\nno\tM\tNA\t41\t9\nyes\tF\t170\t72\t10\nno\tF\t128\t45\t15\n",
	"age,sbp,sex,outcome,patient_id\n58,140,M,yes,11\n29,115,F,no,12\n,130,F,no,13\n80,180,M,yes,14\n51,135,M,no,16\n",
}

const statsSpec = "mlp:8"

type statsFed struct {
	t      *testing.T
	schema *data.Schema
	hash   [32]byte
	data   []*Data
	nodes  []*Node
	logs   []*syncBuffer
	global []float32
}

// newStatsFed starts one node per site with the schema and no statistics
// file (the federation computes them). mutate may change a site's config.
func newStatsFed(t *testing.T, mutate func(i int, c *Config)) *statsFed {
	t.Helper()
	dir := t.TempDir()
	sb, err := os.ReadFile("../data/testdata/cohort_schema.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "schema.toml"), sb, 0o600); err != nil {
		t.Fatal(err)
	}
	f := &statsFed{t: t, hash: sha256.Sum256(sb)}
	for i, text := range statsSites {
		name := fmt.Sprintf("site%d", i)
		if err := os.WriteFile(filepath.Join(dir, name+".csv"), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfgText := strings.Replace(validTOML, `dataset = "csv:data/cohort.csv?label=outcome"`,
			`dataset = "csv:`+name+`.csv?test=0.2"`+"\nschema = \"schema.toml\"", 1)
		cfgText = strings.Replace(cfgText, `accepted_models = ["2nn", "mlp:32"]`, `accepted_models = ["`+statsSpec+`"]`, 1)
		cfgText = strings.Replace(cfgText, "max_epsilon = 8.0\n", "", 1)
		c, err := ParseConfig(name+".toml", []byte(cfgText), dir)
		if err != nil {
			t.Fatal(err)
		}
		if mutate != nil {
			mutate(i, c)
		}
		d, err := c.LoadData()
		if err != nil {
			t.Fatalf("site %d: %v", i, err)
		}
		if d.Stats != nil {
			t.Fatal("stats from a file that is not configured")
		}
		f.schema = d.Schema
		st, err := OpenStore(filepath.Join(dir, name+"-store"), StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		lb := &syncBuffer{}
		node, err := NewNode(c, st, d.Train, d.Test, slog.New(slog.NewTextHandler(lb, nil)), WithID(workerID(i)), WithRand(seeded(uint64(50+i))), WithData(d))
		if err != nil {
			t.Fatal(err)
		}
		f.data, f.nodes, f.logs = append(f.data, d), append(f.nodes, node), append(f.logs, lb)
	}
	sp, err := model.ParseSpec(statsSpec, 1, 1, f.schema.Dim(), f.schema.Classes())
	if err != nil {
		t.Fatal(err)
	}
	net, _ := model.New(sp)
	net.Init(3)
	f.global = append([]float32(nil), net.Params()...)
	return f
}

func (f *statsFed) announce(round uint64, purpose string, stats []byte) Announce {
	n := len(f.nodes)
	ids := make([]uint32, n)
	sampled := make([]string, n)
	for i := range n {
		ids[i], sampled[i] = uint32(i+1), workerID(i)
	}
	var seed [32]byte
	seed[0] = byte(round)
	a := Announce{
		Round: round, ModelHash: ModelHash(f.global), ModelSpec: statsSpec, NumParams: len(f.global),
		Train:   TrainParams{Epochs: 1, Batch: 4, LR: 0.1},
		SecAgg:  secagg.Config{Round: round, Clients: ids, ClipRange: 1, MaxWeight: 100, Dim: len(f.global), GraphSeed: seed},
		Sampled: sampled, SchemaHash: f.hash, Stats: stats,
	}
	if purpose == wire.PurposeStatistics {
		a.Purpose, a.StatsMaxRows = purpose, 100
		a.SecAgg.Dim, a.SecAgg.MaxWeight = data.SumsLen(f.schema), 1
	}
	return a
}

// run drives one SecAgg+ round over the nodes and returns the unmasked sum
// and every masked input the server received.
func (f *statsFed) run(a Announce) ([]float64, float64, map[uint32]secagg.MaskedInput) {
	t := f.t
	t.Helper()
	srv, err := secagg.NewServer(a.SecAgg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	for i, node := range f.nodes {
		ads, err := node.Advertise(a)
		if err != nil {
			t.Fatalf("site %d advertise: %v", i, err)
		}
		if err := srv.Receive(ads, now); err != nil {
			t.Fatal(err)
		}
	}
	masked := map[uint32]secagg.MaskedInput{}
	for {
		out, done, err := srv.Advance(now)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		for _, o := range out {
			node := f.nodes[o.To-1]
			var reply any
			switch m := o.Msg.(type) {
			case secagg.KeyBroadcast:
				reply, err = node.ShareKeys(m)
			case secagg.ShareBundle:
				var mi secagg.MaskedInput
				mi, err = node.MaskedInput(m, f.global)
				masked[o.To], reply = mi, mi
			case secagg.UnmaskRequest:
				reply, err = node.Unmask(m)
			}
			if err != nil {
				t.Fatalf("site %d: %v", o.To-1, err)
			}
			if err := srv.Receive(reply, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	sum, tw, _, err := srv.Result()
	if err != nil {
		t.Fatal(err)
	}
	return sum, tw, masked
}

// The networked statistics round, worker side: the unmasked sum gives the
// pooled data's count, mean and variance; no masked input equals its
// site's plain quantized statistics; the next model round's statistics
// re-encode every site's splits exactly as data.Encode with the pooled
// statistics does.
func TestStatisticsRoundEqualsPooledAndStaysMasked(t *testing.T) {
	f := newStatsFed(t, nil)
	a := f.announce(1, wire.PurposeStatistics, nil)
	sum, tw, masked := f.run(a)
	if math.Abs(tw-3) > 1e-6 {
		t.Fatalf("total weight %v, want 3 (one per site)", tw)
	}
	scales, _ := data.SumScales(f.schema, a.StatsMaxRows)
	var pooled []float64
	for _, d := range f.data {
		s, _ := data.Sums(f.schema, d.RawTrain, nil)
		if pooled == nil {
			pooled = make([]float64, len(s))
		}
		for j, v := range s {
			pooled[j] += v
		}
	}
	counts := data.SumIsCount(f.schema)
	got := make([]float64, len(sum))
	for j, v := range sum {
		got[j] = v * scales[j]
		if counts[j] {
			got[j] = math.Round(got[j])
		}
		if math.Abs(got[j]-pooled[j]) > 1e-4*math.Max(1, math.Abs(pooled[j])) {
			t.Fatalf("sum[%d] = %v, pooled %v", j, got[j], pooled[j])
		}
	}
	want, _ := data.StatsFromSums(f.schema, pooled)
	st, err := data.StatsFromSums(f.schema, got)
	if err != nil {
		t.Fatal(err)
	}
	for c := range want.Mean {
		if math.Abs(st.Mean[c]-want.Mean[c]) > 1e-4 || math.Abs(st.Var[c]-want.Var[c]) > 1e-2 {
			t.Fatalf("column %d: mean %v var %v, pooled %v %v", c, st.Mean[c], st.Var[c], want.Mean[c], want.Var[c])
		}
	}
	// What the coordinator received of each site is masked: no coordinate
	// equals the site's plainly quantized statistic.
	q, _ := secagg.NewQuantizer(a.SecAgg.WithDefaults().Bits, 1, 1, 3)
	for i, d := range f.data {
		s, _ := data.Sums(f.schema, d.RawTrain, nil)
		plain := make([]float32, len(s))
		for j, v := range s {
			plain[j] = float32(v / scales[j])
		}
		pq := make([]uint32, len(plain)+1)
		if err := q.Quantize(pq, plain, 1, mrand.New(seeded(9))); err != nil {
			t.Fatal(err)
		}
		mi := masked[uint32(i+1)]
		same := 0
		for j := range plain {
			if mi.Vector[j] == pq[j] {
				same++
			}
		}
		if same > 0 {
			t.Fatalf("site %d: %d of %d masked coordinates equal its plain statistics", i, same, len(plain))
		}
	}
	// Before the statistics are announced, no model round is trained.
	var r *Refusal
	if _, err := f.nodes[0].Advertise(f.announce(2, "", nil)); !errors.As(err, &r) || !strings.Contains(r.Reason, "no federation statistics") {
		t.Fatalf("model round without statistics: %v", err)
	}
	// The committed statistics, announced with the next model round.
	b, _ := jsonStats(st)
	ma := f.announce(3, "", b)
	for i, node := range f.nodes {
		if _, err := node.Advertise(ma); err != nil {
			t.Fatalf("site %d: %v", i, err)
		}
		wantTrain, _ := data.Encode(f.schema, f.data[i].RawTrain, st, f.data[i].Standardize)
		for j, v := range wantTrain.X {
			if node.train.X[j] != v {
				t.Fatalf("site %d: train.X[%d] = %v, encoded with the federation's statistics %v", i, j, node.train.X[j], v)
			}
		}
		if !strings.Contains(f.logs[i].String(), "data encoded with the federation's statistics") {
			t.Fatalf("site %d did not log the re-encoding", i)
		}
	}
}

// A statistics round under another schema, with a too-small row bound, or
// without noise against policy.require_stats_noise is refused with the rule
// named; a worker without a schema refuses one too.
func TestAttackStatisticsRoundMismatchRefused(t *testing.T) {
	f := newStatsFed(t, func(i int, c *Config) { c.Policy.RequireStatsNoise = i == 2 })
	cases := []struct {
		name   string
		node   int
		mutate func(a *Announce)
		want   string
	}{
		{"other schema", 0, func(a *Announce) { a.SchemaHash[0] ^= 1 }, "is not this worker's schema"},
		{"row bound", 0, func(a *Announce) { a.StatsMaxRows = 2 }, "more rows than the announced stats_max_rows"},
		{"no noise", 2, func(a *Announce) {}, "policy.require_stats_noise"},
	}
	for k, tc := range cases {
		a := f.announce(uint64(10+k), wire.PurposeStatistics, nil)
		tc.mutate(&a)
		_, err := f.nodes[tc.node].Advertise(a)
		var r *Refusal
		if !errors.As(err, &r) || !strings.Contains(r.Reason, tc.want) {
			t.Fatalf("%s: %v, want a refusal naming %q", tc.name, err, tc.want)
		}
	}
	a := f.announce(20, wire.PurposeStatistics, nil)
	a.SecAgg.Dim++
	if _, err := f.nodes[0].Advertise(a); err == nil || !strings.Contains(err.Error(), "secagg.dim") {
		t.Fatalf("wrong statistics length: %v", err)
	}
	// Bad announced statistics are an error naming the field.
	ma := f.announce(21, "", []byte(`{"rows": 3, "count": [1]}`))
	if _, err := f.nodes[0].Advertise(ma); err == nil || !strings.Contains(err.Error(), "federation_stats") {
		t.Fatalf("bad statistics: %v", err)
	}
	cl := newCluster(t, 2, nil)
	sa := cl.announce(1, 10)
	sa.Purpose, sa.SchemaHash, sa.StatsMaxRows = wire.PurposeStatistics, f.hash, 100
	var r *Refusal
	if _, err := cl.nodes[0].Advertise(sa); !errors.As(err, &r) || !strings.Contains(r.Reason, "without one") {
		t.Fatalf("worker without schema: %v", err)
	}
}

func jsonStats(st *data.Stats) ([]byte, error) { return json.Marshal(st) }

// With stats noise σ each site adds N(0, σ²Δ²/t) to its scaled vector: the
// released sum differs from the pooled sums by noise of about σΔ·√(n/t) per
// coordinate (Δ = one row's L2 change, dp.clip), and no more.
func TestStatisticsRoundNoise(t *testing.T) {
	f := newStatsFed(t, func(i int, c *Config) { c.Policy.RequireStatsNoise = true })
	a := f.announce(1, wire.PurposeStatistics, nil)
	numeric, categorical := 0, 0
	for _, k := range f.schema.Features() {
		if f.schema.Columns[k].Type == data.TypeNumeric {
			numeric++
		} else {
			categorical++
		}
	}
	delta := math.Sqrt(float64(1+3*numeric+2*categorical)) / float64(a.StatsMaxRows)
	a.DP = DPParams{Noise: 1, Clip: delta, MinClients: 2}
	a.SecAgg.ClipRange = 1 + 6*delta
	sum, _, _ := f.run(a)
	scales, _ := data.SumScales(f.schema, a.StatsMaxRows)
	pooled := make([]float64, len(sum))
	for _, d := range f.data {
		s, _ := data.Sums(f.schema, d.RawTrain, nil)
		for j, v := range s {
			pooled[j] += v / scales[j]
		}
	}
	std := delta * math.Sqrt(3.0/2)
	var maxDev, sq float64
	for j := range sum {
		d := sum[j] - pooled[j]
		maxDev = max(maxDev, math.Abs(d))
		sq += d * d
	}
	rms := math.Sqrt(sq / float64(len(sum)))
	t.Logf("noise rms %.3g, expected std %.3g, max %.3g", rms, std, maxDev)
	if maxDev > 6*std || rms < 0.3*std {
		t.Fatalf("deviation rms %.3g max %.3g from the pooled sums, want noise of std %.3g", rms, maxDev, std)
	}
}
