package trainer

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/model/safetensors"
)

// The test binary doubles as a fake trainer: with SOVEREIGN_FAKE_TRAINER
// set, TestMain runs fakeTrainer instead of the tests. The mode says how it
// misbehaves on its first train request; with SOVEREIGN_FAKE_ONCE=PATH it
// misbehaves only while PATH does not exist (and creates it), so a
// restarted trainer behaves.
func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv("SOVEREIGN_FAKE_TRAINER"); ok {
		os.Exit(fakeTrainer(mode))
	}
	os.Exit(m.Run())
}

// fakeLayout is a softmax regression of 4 features and 3 classes
// (model.ParseSpec("logreg", 1, 1, 4, 3)).
var fakeLayout = []TensorInfo{{"0.weight", []int{3, 4}, "F32"}, {"0.bias", []int{3}, "F32"}}

func fakeTrainer(mode string) int {
	in := bufio.NewReader(os.Stdin)
	out := os.Stdout
	send := func(v any) {
		b, _ := json.Marshal(v)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
		out.Write(hdr[:])
		out.Write(b)
	}
	misbehave := true
	if once := os.Getenv("SOVEREIGN_FAKE_ONCE"); once != "" {
		if _, err := os.Stat(once); err == nil {
			misbehave = false
		}
	}
	markDone := func() {
		if once := os.Getenv("SOVEREIGN_FAKE_ONCE"); once != "" {
			os.WriteFile(once, nil, 0o600)
		}
	}
	fmt.Fprintln(os.Stderr, "fake trainer starting, mode", mode)
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(in, hdr[:]); err != nil {
			return 0
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(in, b); err != nil {
			return 1
		}
		var req map[string]any
		if err := json.Unmarshal(b, &req); err != nil {
			return 2
		}
		id := req["id"]
		switch req["type"] {
		case "hello":
			switch {
			case mode == "hello-negative":
				send(map[string]any{"type": "hello", "id": id, "protocol": 1, "tensors": fakeLayout, "examples": -5})
			case mode == "hello-version":
				send(map[string]any{"type": "hello", "id": id, "protocol": 7, "tensors": fakeLayout, "examples": 10})
			case mode == "hello-hang":
				time.Sleep(time.Hour)
			default:
				send(map[string]any{"type": "hello", "id": id, "protocol": 1, "tensors": fakeLayout, "examples": 10, "test_examples": 5})
			}
		case "train":
			f, err := safetensors.Read(req["model"].(string))
			if err != nil {
				send(map[string]any{"type": "error", "id": id, "message": err.Error()})
				continue
			}
			for _, t := range f.Tensors {
				for j := range t.Data {
					t.Data[j] += 0.5
				}
			}
			examples, loss := 10, 0.25
			if misbehave {
				markDone()
				fmt.Fprintln(os.Stderr, "misbehaving:", mode)
				switch mode {
				case "nan":
					f.Tensors[0].Data[5] = float32(math.NaN())
				case "inf":
					f.Tensors[1].Data[0] = float32(math.Inf(-1))
				case "shape":
					f.Tensors[0].Shape = []int{4, 3}
				case "name":
					f.Tensors[1].Name = "0.beta"
				case "missing":
					f.Tensors = f.Tensors[:1]
				case "negative":
					examples = -3
				case "toomany":
					examples = 11
				case "crash":
					os.Exit(3)
				case "hang":
					time.Sleep(time.Hour)
				case "garbage":
					out.WriteString("epoch 1 loss 0.25\n")
					continue
				case "badjson":
					var h [4]byte
					binary.BigEndian.PutUint32(h[:], 9)
					out.Write(h[:])
					out.WriteString("{\"type\": ")
					continue
				case "nanloss":
					var h [4]byte
					s := fmt.Sprintf(`{"type":"train_result","id":%v,"examples":10,"loss":NaN}`, id)
					binary.BigEndian.PutUint32(h[:], uint32(len(s)))
					out.Write(h[:])
					out.WriteString(s)
					continue
				case "wrongid":
					send(map[string]any{"type": "train_result", "id": 999, "examples": 10, "loss": 0.1})
					continue
				case "error":
					send(map[string]any{"type": "error", "id": id, "message": "CUDA out of memory at /data/secret-cohort"})
					continue
				case "symlink":
					// The out path made a link to a file elsewhere.
					os.Symlink(req["model"].(string), req["out"].(string))
					send(map[string]any{"type": "train_result", "id": id, "examples": 10, "loss": 0.1})
					continue
				case "huge":
					big := make([]byte, 2<<20)
					os.WriteFile(req["out"].(string), big, 0o600)
					send(map[string]any{"type": "train_result", "id": id, "examples": 10, "loss": 0.1})
					continue
				case "f64":
					// Not F32: the safetensors reader refuses the dtype.
					hdr := `{"0.weight":{"dtype":"F64","shape":[3,4],"data_offsets":[0,96]},"0.bias":{"dtype":"F64","shape":[3],"data_offsets":[96,120]}}`
					b := make([]byte, 8, 8+len(hdr)+120)
					binary.LittleEndian.PutUint64(b, uint64(len(hdr)))
					b = append(append(b, hdr...), make([]byte, 120)...)
					os.WriteFile(req["out"].(string), b, 0o600)
					send(map[string]any{"type": "train_result", "id": id, "examples": 10, "loss": 0.1})
					continue
				case "nofile":
					send(map[string]any{"type": "train_result", "id": id, "examples": 10, "loss": 0.1})
					continue
				}
			}
			if err := safetensors.Write(req["out"].(string), f); err != nil {
				send(map[string]any{"type": "error", "id": id, "message": err.Error()})
				continue
			}
			send(map[string]any{"type": "train_result", "id": id, "examples": examples, "loss": loss, "pid": os.Getpid()})
		case "evaluate":
			acc := 0.6
			if misbehave && mode == "eval-accuracy" {
				acc = 1.5
			}
			send(map[string]any{"type": "evaluate_result", "id": id, "examples": 5, "loss": 0.5, "accuracy": acc})
		default:
			send(map[string]any{"type": "error", "id": id, "message": "unknown request"})
		}
	}
}
