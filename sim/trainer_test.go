package sim

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/model/safetensors"
)

// The test binary doubles as a trainer (docs/trainer-protocol.md): with
// the arguments "-test.run=^$ fake-trainer SPEC", TestMain serves the
// protocol on the digits training set with model.Train on the requested
// indices — the simulator's own ClientUpdate, through the protocol.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[2] == "fake-trainer" {
		os.Exit(fakeTrainer(os.Args[3]))
	}
	os.Exit(m.Run())
}

func fakeTrainer(spec string) int {
	train, _, err := data.Digits()
	if err != nil {
		return 1
	}
	sp, err := model.ParseSpec(spec, train.C, train.H, train.W, train.Classes)
	if err != nil {
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
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			return 0
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(in, b); err != nil {
			return 1
		}
		var req struct {
			Type, Model, Out string
			ID               uint64
			Epochs, Batch    int
			LR               float64
			ProxMu           float64 `json:"prox_mu"`
			Seed             int64
			Indices          []int
		}
		if err := json.Unmarshal(b, &req); err != nil {
			return 2
		}
		if req.Type == "hello" {
			send(map[string]any{"type": "hello", "id": req.ID, "protocol": 1, "tensors": layout, "examples": train.N})
			continue
		}
		f, err := safetensors.Read(req.Model)
		if err != nil {
			return 3
		}
		params, err := model.TensorsToParams(sp, f.Tensors)
		if err != nil {
			return 4
		}
		net, _ := model.New(sp)
		net.SetParams(params)
		loss, err := model.Train(net, train.X, train.Y, train.Dim, req.Indices, model.TrainConfig{
			Epochs: req.Epochs, Batch: req.Batch, LR: float32(req.LR), ProxMu: float32(req.ProxMu), Seed: req.Seed,
		})
		if err != nil {
			return 5
		}
		ts, _ := model.ParamsToTensors(sp, net.Params())
		if err := safetensors.Write(req.Out, &safetensors.File{Tensors: ts}); err != nil {
			return 6
		}
		send(map[string]any{"type": "train_result", "id": req.ID, "examples": len(req.Indices), "loss": loss})
	}
}

func fakeCommand(t *testing.T, spec string) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("'%s' '-test.run=^$' fake-trainer %s", self, spec)
}

// TestTrainerSimMatchesBuiltin: the simulator training its clients through
// a pool of trainer processes (each told the client's indices) gives the
// very metrics of the built-in training, plain and secure with DP.
func TestTrainerSimMatchesBuiltin(t *testing.T) {
	train, test := digits(t)
	for _, secure := range []bool{false, true} {
		cfg := small()
		cfg.Rounds = 3
		cfg.Secure = secure
		if secure {
			cfg.DPClip, cfg.DPNoise, cfg.DPDelta = 1, 0.5, 1e-5
		}
		cfg.Parallel = 2
		want, err := RunOn(context.Background(), cfg, train, test, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Trainer = fakeCommand(t, cfg.Model)
		got, err := RunOn(context.Background(), cfg, train, test, nil)
		if err != nil {
			t.Fatal(err)
		}
		for r := range want.Rounds {
			w, g := want.Rounds[r], got.Rounds[r]
			if w.Accuracy != g.Accuracy || w.Loss != g.Loss || w.TrainLoss != g.TrainLoss {
				t.Fatalf("secure=%v round %d: trainer (acc %v, loss %v, train loss %v), built-in (%v, %v, %v)",
					secure, r+1, g.Accuracy, g.Loss, g.TrainLoss, w.Accuracy, w.Loss, w.TrainLoss)
			}
		}
		if first, last := got.Rounds[0].Accuracy, got.Rounds[len(got.Rounds)-1].Accuracy; !(last > first) {
			t.Fatalf("secure=%v: accuracy %v after round 1, %v after round %d: not learning", secure, first, last, len(got.Rounds))
		}
	}
}

func TestTrainerSimChecksLayout(t *testing.T) {
	train, test := digits(t)
	cfg := small()
	cfg.Rounds = 1
	cfg.Trainer = fakeCommand(t, "mlp:16")
	_, err := RunOn(context.Background(), cfg, train, test, nil)
	if err == nil || !strings.Contains(err.Error(), `--trainer: model mlp:32`) || !strings.Contains(err.Error(), "[16 64]") {
		t.Fatalf("got %v", err)
	}
	cfg.Trainer = "'unterminated"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--trainer") {
		t.Fatalf("got %v", err)
	}
}
