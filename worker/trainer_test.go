package worker

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/safetensors"
)

// The test binary doubles as a trainer speaking the trainer protocol
// (docs/trainer-protocol.md): run with the arguments
// "-test.run=^$ fake-trainer SHARD N MODE ONCE", TestMain serves the
// protocol with model.Train on digits shard SHARD of N — the very training
// a built-in worker of that shard does — misbehaving as MODE says on its
// first train request while the file ONCE does not exist.
func TestMain(m *testing.M) {
	if len(os.Args) == 7 && os.Args[2] == "fake-trainer" {
		os.Exit(fakeTrainer(os.Args[3:]))
	}
	os.Exit(m.Run())
}

type fakeReq struct {
	Type    string  `json:"type"`
	ID      uint64  `json:"id"`
	Model   string  `json:"model"`
	Out     string  `json:"out"`
	Epochs  int     `json:"epochs"`
	Batch   int     `json:"batch"`
	LR      float64 `json:"lr"`
	ProxMu  float64 `json:"prox_mu"`
	Seed    int64   `json:"seed"`
	Indices []int   `json:"indices"`
}

func fakeTrainer(args []string) int {
	shardI, _ := strconv.Atoi(args[0])
	shardN, _ := strconv.Atoi(args[1])
	mode, once := args[2], args[3]
	train, test, err := digitsShard(shardI, shardN)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sp, err := model.ParseSpec(testSpec, train.C, train.H, train.W, train.Classes)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	in := bufio.NewReader(os.Stdin)
	send := func(v any) {
		b, _ := json.Marshal(v)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
		os.Stdout.Write(append(hdr[:], b...))
	}
	var layout []map[string]any
	for _, t := range sp.Tensors() {
		layout = append(layout, map[string]any{"name": t.Name, "shape": t.Shape, "dtype": "F32"})
	}
	if mode == "layout" {
		layout[0]["shape"] = []int{32, train.Dim}
	}
	fmt.Fprintf(os.Stderr, "fake trainer: shard %d/%d, %d examples, mode %s\n", shardI, shardN, train.N, mode)
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			return 0
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(in, b); err != nil {
			return 1
		}
		var req fakeReq
		if err := json.Unmarshal(b, &req); err != nil {
			return 2
		}
		if req.Type == "hello" {
			send(map[string]any{"type": "hello", "id": req.ID, "protocol": 1, "tensors": layout, "examples": train.N, "test_examples": test.N})
			continue
		}
		f, err := safetensors.Read(req.Model)
		if err != nil {
			send(map[string]any{"type": "error", "id": req.ID, "message": err.Error()})
			continue
		}
		params, err := model.TensorsToParams(sp, f.Tensors)
		if err != nil {
			send(map[string]any{"type": "error", "id": req.ID, "message": err.Error()})
			continue
		}
		net, _ := model.New(sp)
		net.SetParams(params)
		if req.Type == "evaluate" {
			loss, acc := net.Evaluate(test.X, test.Y, test.N)
			send(map[string]any{"type": "evaluate_result", "id": req.ID, "examples": test.N, "loss": loss, "accuracy": acc})
			continue
		}
		idx := make([]int, train.N)
		for i := range idx {
			idx[i] = i
		}
		loss, err := model.Train(net, train.X, train.Y, train.Dim, idx, model.TrainConfig{
			Epochs: req.Epochs, Batch: req.Batch, LR: float32(req.LR), ProxMu: float32(req.ProxMu), Seed: req.Seed,
		})
		if err != nil {
			send(map[string]any{"type": "error", "id": req.ID, "message": err.Error()})
			continue
		}
		ts, _ := model.ParamsToTensors(sp, net.Params())
		examples := train.N
		if _, err := os.Stat(once); err != nil && mode != "good" && mode != "layout" {
			os.WriteFile(once, nil, 0o600)
			fmt.Fprintln(os.Stderr, "misbehaving:", mode)
			switch mode {
			case "shape":
				ts[2].Shape = []int{16, 10}
			case "nan":
				ts[0].Data[7] = float32(math.NaN())
			case "negative":
				examples = -1
			case "crash":
				os.Exit(3)
			case "hang":
				time.Sleep(time.Hour)
			case "garbage":
				os.Stdout.WriteString("loss=0.3\n")
				continue
			}
		}
		if err := safetensors.Write(req.Out, &safetensors.File{Tensors: ts}); err != nil {
			send(map[string]any{"type": "error", "id": req.ID, "message": err.Error()})
			continue
		}
		send(map[string]any{"type": "train_result", "id": req.ID, "examples": examples, "loss": loss})
	}
}

// digitsShard is shard without a testing.TB, for the fake trainer.
func digitsShard(i, n int) (train, test *data.Dataset, err error) {
	tr, te, err := data.Digits()
	if err != nil {
		return nil, nil, err
	}
	part := func(d *data.Dataset) (*data.Dataset, error) {
		lo, hi := i*d.N/n, (i+1)*d.N/n
		idx := make([]int, 0, hi-lo)
		for r := lo; r < hi; r++ {
			idx = append(idx, r)
		}
		return d.Subset(fmt.Sprintf("%s-shard%d", d.Name, i), idx)
	}
	if train, err = part(tr); err != nil {
		return nil, nil, err
	}
	test, err = part(te)
	return train, test, err
}

// withDP turns on distributed DP in an announcement (weights are then 1).
func withDP(a Announce) Announce {
	a.DP = DPParams{Clip: 0.5, Noise: 1, MinClients: 2}
	a.SecAgg.MaxWeight = 10
	return a
}

// useFakeTrainer makes c a trainer worker of digits shard i of n.
func useFakeTrainer(t testing.TB, c *Config, i, n int, mode string, timeout time.Duration) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c.Dataset = ""
	c.Trainer = []string{self, "-test.run=^$", "fake-trainer", strconv.Itoa(i), strconv.Itoa(n), mode, filepath.Join(t.TempDir(), "once")}
	c.TrainerTimeout = timeout
	// A trainer trains one layout: every accepted model must be it.
	c.Policy.AcceptedModels = []string{testSpec}
}

// driveRound runs one SecAgg+ round like cluster.runRound, but a worker may
// refuse the masked-input stage: its error is returned and the round goes
// on without it (the server's stage deadline passes).
func (cl *cluster) driveRound(a Announce) (sum []float64, total float64, survivors []uint32, refused map[int]error) {
	t := cl.t
	t.Helper()
	refused = map[int]error{}
	srv, err := secagg.NewServer(a.SecAgg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	for i, node := range cl.nodes {
		ads, err := node.Advertise(a)
		if err != nil {
			t.Fatalf("worker %d advertise: %v", i, err)
		}
		if err := srv.Receive(ads, now); err != nil {
			t.Fatal(err)
		}
	}
	for {
		out, done, err := srv.Advance(now)
		if err != nil {
			t.Fatalf("server: %v", err)
		}
		if done {
			break
		}
		missing := false
		for _, o := range out {
			i := int(o.To - 1)
			var reply any
			switch m := o.Msg.(type) {
			case secagg.KeyBroadcast:
				reply, err = cl.nodes[i].ShareKeys(m)
			case secagg.ShareBundle:
				reply, err = cl.nodes[i].MaskedInput(m, cl.global)
			case secagg.UnmaskRequest:
				reply, err = cl.nodes[i].Unmask(m)
			}
			if err != nil {
				if _, ok := o.Msg.(secagg.ShareBundle); !ok {
					t.Fatalf("worker %d at %v: %v", i, srv.Stage(), err)
				}
				refused[i] = err
				missing = true
				continue
			}
			if err := srv.Receive(reply, now); err != nil {
				t.Fatal(err)
			}
		}
		if missing {
			now = now.Add(2 * secagg.DefaultStageTimeout)
		}
	}
	sum, total, survivors, err = srv.Result()
	if err != nil {
		t.Fatal(err)
	}
	return sum, total, survivors, refused
}

// TestTrainerWorkerMatchesBuiltin: a federation where two of three workers
// train through the trainer protocol (with exactly the built-in training)
// aggregates, with DP, to the same sum as the all-built-in federation: the
// worker computes Δ, clips, noises and masks it the same way whoever
// trained. A mixed federation works because the layouts match.
func TestTrainerWorkerMatchesBuiltin(t *testing.T) {
	builtin := newCluster(t, 3, nil)
	mixed := newCluster(t, 3, func(i int, c *Config) {
		if i > 0 {
			useFakeTrainer(t, c, i, 3, "good", time.Minute)
		}
	})
	for _, n := range mixed.nodes {
		t.Cleanup(func() { n.Close() })
	}
	if mixed.nodes[1].ext == nil || mixed.nodes[0].ext != nil {
		t.Fatal("workers 1 and 2 should train through the trainer, worker 0 built in")
	}
	if got, want := mixed.nodes[2].Examples(), builtin.nodes[2].Examples(); got != want {
		t.Fatalf("trainer worker examples %d, built-in %d", got, want)
	}
	a := withDP(builtin.announce(1, 10))
	want, wantW, _, _ := builtin.runRound(a, hooks{})
	got, gotW, survivors, refused := mixed.driveRound(a)
	if len(refused) != 0 || len(survivors) != 3 {
		t.Fatalf("refused %v, survivors %v", refused, survivors)
	}
	if gotW != wantW {
		t.Fatalf("total weight %v, want %v", gotW, wantW)
	}
	for j := range want {
		if got[j] != want[j] {
			t.Fatalf("sum[%d] = %v with trainer workers, %v built in", j, got[j], want[j])
		}
	}
	// Evaluation goes through the trainer too, with the same answer.
	e1, l1, a1, err := mixed.nodes[1].EvaluateSpec(testSpec, mixed.global)
	if err != nil {
		t.Fatal(err)
	}
	e2, l2, a2, _ := builtin.nodes[1].EvaluateSpec(testSpec, builtin.global)
	if e1 != e2 || math.Abs(l1-l2) > 1e-6 || a1 != a2 {
		t.Fatalf("trainer evaluation (%d, %v, %v), built-in (%d, %v, %v)", e1, l1, a1, e2, l2, a2)
	}
	if starts := mixed.nodes[1].ext.Starts(); starts != 1 {
		t.Fatalf("trainer started %d times, want 1", starts)
	}
	if !strings.Contains(mixed.logs[1].String(), "fake trainer: shard 1/3") {
		t.Fatalf("the trainer's stderr is not in the worker's log:\n%s", mixed.logs[1])
	}
}

// TestAttackTrainerBadAnswer: a trainer that answers a wrong shape, NaN, a
// negative count, garbage, crashes or hangs makes its worker refuse the
// round with a reason naming the trainer and the field; the other workers'
// round completes without it, and the restarted trainer takes part in the
// next round.
func TestAttackTrainerBadAnswer(t *testing.T) {
	for _, c := range []struct{ mode, want string }{
		{"shape", `train: model: tensor "2.weight" has shape [16 10], the trainer's hello says [10 16]`},
		{"nan", `train: model: tensor "0.weight" element 7 is NaN`},
		{"negative", "train: examples: -1 is negative"},
		{"garbage", "train: output is not the protocol"},
		{"crash", "train: exited during the request (exit status 3)"},
		{"hang", "train: no answer within 2s; the trainer was killed"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			cl := newCluster(t, 3, func(i int, cfg *Config) {
				if i == 0 {
					useFakeTrainer(t, cfg, 0, 3, c.mode, 2*time.Second)
				}
			})
			t.Cleanup(func() { cl.nodes[0].Close() })
			_, _, survivors, refused := cl.driveRound(withDP(cl.announce(1, maxExamples)))
			var r *Refusal
			if !errors.As(refused[0], &r) {
				t.Fatalf("worker 0: got %v, want a *Refusal", refused[0])
			}
			name := filepath.Base(cl.cfgs[0].Trainer[0])
			if !strings.Contains(r.Reason, fmt.Sprintf("trainer %q: ", name)) || !strings.Contains(r.Reason, c.want) {
				t.Fatalf("reason %q, want it to name the trainer %q and contain %q", r.Reason, name, c.want)
			}
			if !slices.Equal(survivors, []uint32{2, 3}) {
				t.Fatalf("survivors %v, want the two others", survivors)
			}
			if !strings.Contains(cl.logs[0].String(), "misbehaving: "+c.mode) {
				t.Fatalf("trainer stderr not in the worker log")
			}
			// The next round: the trainer is back.
			_, _, survivors, refused = cl.driveRound(withDP(cl.announce(2, maxExamples)))
			if len(refused) != 0 || len(survivors) != 3 {
				t.Fatalf("next round: refused %v, survivors %v", refused, survivors)
			}
			if s := cl.nodes[0].ext.Starts(); s != 2 {
				t.Fatalf("trainer started %d times, want 2 (restarted once)", s)
			}
		})
	}
}

// TestTrainerLayoutChecked: a trainer whose tensors are not the announced
// model's is refused at the policy stage, naming the tensor and both
// shapes; it cannot start against accepted_models it does not fit either.
func TestTrainerLayoutChecked(t *testing.T) {
	cl := newCluster(t, 3, func(i int, c *Config) {
		if i == 0 {
			useFakeTrainer(t, c, 0, 3, "layout", time.Minute)
			c.Policy.AcceptedModels = nil
		}
	})
	t.Cleanup(func() { cl.nodes[0].Close() })
	_, err := cl.nodes[0].Advertise(withDP(cl.announce(1, maxExamples)))
	var r *Refusal
	if !errors.As(err, &r) || !strings.Contains(r.Reason, `tensor "0.weight" has shape [32 64] in the trainer's hello, the model needs [16 64]`) {
		t.Fatalf("got %v", err)
	}
	c := testConfig("strict")
	useFakeTrainer(t, c, 0, 3, "layout", time.Minute)
	c.Policy.AcceptedModels = []string{testSpec}
	st, err := OpenStore(t.TempDir(), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := NewNode(c, st, nil, nil, nil, WithID("peer-x")); err == nil || !strings.Contains(err.Error(), "policy.accepted_models[0]") {
		t.Fatalf("NewNode with a trainer not fitting accepted_models: %v", err)
	}
}

func TestTrainerConfig(t *testing.T) {
	base := "name = \"a\"\nidentity = \"a.key\"\nfederation = \"f.toml\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nstore = \"s\"\n"
	c, err := ParseConfig("w.toml", []byte(base+"trainer = [\"python3\", \"train.py\"]\ntrainer_timeout = \"90s\"\n"), "/inst")
	if err != nil {
		t.Fatal(err)
	}
	if c.TrainerTimeout != 90*time.Second || c.TrainerDir != "/inst" || len(c.Trainer) != 2 {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []struct{ body, want string }{
		{"trainer = [\"python3\"]\ndataset = \"digits\"\n", "w.toml: dataset: set together with trainer"},
		{"trainer = [\"\"]\n", "w.toml: trainer[0]: empty program"},
		{"trainer = [\"x\"]\ntrainer_timeout = \"soon\"\n", "w.toml: trainer_timeout: \"soon\" is not a positive duration"},
		{"", "w.toml: dataset: missing"},
	} {
		if _, err := ParseConfig("w.toml", []byte(base+bad.body), "/inst"); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: got %v, want %q", bad.body, err, bad.want)
		}
	}
}
