// Package trainer runs an institution's own training code (PyTorch, or any
// language) as a child process that speaks the trainer protocol of
// docs/trainer-protocol.md: length-prefixed JSON control messages over the
// child's stdin/stdout, model tensors as safetensors files in a private
// 0700 folder.
//
// The trainer only trains and evaluates. It never sees keys, shares, other
// institutions or the network: the worker (or the simulator) computes the
// update Δ = local − global from the tensors it reads back, and clips,
// noises and masks it exactly as for a built-in model. Every answer of the
// trainer is checked (protocol version, frame size, JSON, required fields,
// NaN/Inf, tensor names and shapes against the trainer's own hello, counts)
// and a bad one is an *Error naming the trainer, the request and the field.
//
// The package imports only model and model/safetensors, so both the worker
// and the simulator use it without importing each other.
package trainer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// Version is the protocol version this package speaks; a trainer's hello
// must announce it.
const Version = 1

// MaxFrame bounds one control message (tensors travel in files, so control
// messages are small; a sim's index list of 60,000 examples takes ~400 KB).
const MaxFrame = 16 << 20

// DTypeF32 is the only tensor dtype of protocol version 1.
const DTypeF32 = "F32"

// Message types.
const (
	TypeHello          = "hello"
	TypeTrain          = "train"
	TypeTrainResult    = "train_result"
	TypeEvaluate       = "evaluate"
	TypeEvaluateResult = "evaluate_result"
	TypeError          = "error"
)

// TensorInfo is one tensor of the trainer's model as its hello lists it.
type TensorInfo struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	DType string `json:"dtype"`
}

// Hello is the trainer's answer to the worker's hello: its protocol
// version, its model's tensors and its example counts.
type Hello struct {
	Protocol int          `json:"protocol"`
	Tensors  []TensorInfo `json:"tensors"`
	// Examples is the number of local training examples.
	Examples int `json:"examples"`
	// TestExamples is the number of local evaluation examples.
	TestExamples int `json:"test_examples"`
}

// NumParams is the total number of elements of the hello's tensors.
func (h *Hello) NumParams() int {
	n := 0
	for _, t := range h.Tensors {
		n += elements(t.Shape)
	}
	return n
}

func elements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// request is what the worker sends.
type request struct {
	Type     string  `json:"type"`
	ID       uint64  `json:"id"`
	Protocol int     `json:"protocol,omitempty"`
	Dir      string  `json:"dir,omitempty"`
	Model    string  `json:"model,omitempty"`
	Out      string  `json:"out,omitempty"`
	Round    uint64  `json:"round,omitempty"`
	Epochs   int     `json:"epochs,omitempty"`
	Batch    int     `json:"batch,omitempty"`
	LR       float64 `json:"lr,omitempty"`
	ProxMu   float64 `json:"prox_mu"`
	Seed     int64   `json:"seed"`
	Indices  []int   `json:"indices,omitempty"`
}

// answer is what the trainer sends; pointers tell a missing field from a
// zero one.
type answer struct {
	Type     *string      `json:"type"`
	ID       *uint64      `json:"id"`
	Protocol *int         `json:"protocol"`
	Tensors  []TensorInfo `json:"tensors"`
	Examples *int         `json:"examples"`
	Test     *int         `json:"test_examples"`
	Loss     *float64     `json:"loss"`
	Accuracy *float64     `json:"accuracy"`
	Message  *string      `json:"message"`
	// TrainSeconds is optional: the trainer's own time inside its
	// training (the benchmark's in-process baseline).
	TrainSeconds *float64 `json:"train_seconds"`
}

// Error is a trainer failure: a crash, a hang past the timeout, output that
// is not the protocol, or an answer that fails a check. Its text names the
// trainer, the request and, for a bad answer, the field; it carries no
// trainer output (stderr and error messages stay in the local log).
type Error struct {
	// Trainer is the trainer's short name (see Config.Name).
	Trainer string
	// Op is the request: "start", "hello", "train" or "evaluate".
	Op string
	// Field is the answer's field at fault ("" for a crash or timeout).
	Field string
	// Reason says what is wrong.
	Reason string
	// Detail is local-only information (the trainer's own error message);
	// not part of Error().
	Detail string
	// Exited is true when the process is gone (crash, kill, timeout).
	Exited bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "trainer %q: %s: ", e.Trainer, e.Op)
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// writeFrame writes v as one frame: a 4-byte big-endian length, then JSON.
func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxFrame {
		return fmt.Errorf("frame of %d bytes exceeds %d", len(b), MaxFrame)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// errFrame marks a frame that is not the protocol (as opposed to the
// stream ending).
type errFrame struct{ reason string }

func (e *errFrame) Error() string { return e.reason }

// readFrame reads one frame.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &errFrame{"stdout ended inside a frame's length prefix"}
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		hint := ""
		if printable(hdr[:]) {
			hint = fmt.Sprintf(" (it reads as text %q: does the trainer print to stdout? Protocol frames only go there; print to stderr)", string(hdr[:]))
		}
		return nil, &errFrame{fmt.Sprintf("frame length %d exceeds %d bytes%s", n, MaxFrame, hint)}
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, &errFrame{fmt.Sprintf("stdout ended inside a frame of %d bytes: %v", n, err)}
	}
	return b, nil
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\n' && c != '\t' && c != '\r' || c > 0x7e {
			return false
		}
	}
	return true
}

// decodeAnswer parses a frame and checks its type and ID. A trainer's
// "error" answer is returned as an *Error with its message as Detail.
func decodeAnswer(b []byte, name, op, wantType string, id uint64) (*answer, error) {
	bad := func(field, format string, a ...any) error {
		return &Error{Trainer: name, Op: op, Field: field, Reason: fmt.Sprintf(format, a...)}
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		hint := ""
		if strings.Contains(err.Error(), "invalid character 'N'") || strings.Contains(err.Error(), "invalid character 'I'") {
			hint = " (NaN and Infinity are not JSON numbers: a non-finite value was sent)"
		}
		return nil, bad("", "answer is not a JSON object: %v%s", err, hint)
	}
	if a.Type == nil {
		return nil, bad("type", "missing")
	}
	if a.ID == nil {
		return nil, bad("id", "missing (answers echo the request's id)")
	}
	if *a.ID != id {
		return nil, bad("id", "%d, want %d (the request's id)", *a.ID, id)
	}
	if *a.Type == TypeError {
		msg := ""
		if a.Message != nil {
			msg = *a.Message
		}
		return nil, &Error{Trainer: name, Op: op, Field: "", Reason: "the trainer answered an error (its message is in the worker's log)", Detail: msg}
	}
	if *a.Type != wantType {
		return nil, bad("type", "%q, want %q", *a.Type, wantType)
	}
	return &a, nil
}

// checkHello validates a hello answer.
func checkHello(a *answer, name string) (Hello, error) {
	bad := func(field, format string, v ...any) error {
		return &Error{Trainer: name, Op: TypeHello, Field: field, Reason: fmt.Sprintf(format, v...)}
	}
	if a.Protocol == nil {
		return Hello{}, bad("protocol", "missing")
	}
	if *a.Protocol != Version {
		return Hello{}, bad("protocol", "%d, this worker speaks version %d", *a.Protocol, Version)
	}
	if len(a.Tensors) == 0 {
		return Hello{}, bad("tensors", "missing or empty")
	}
	seen := map[string]bool{}
	total := 0
	for i, t := range a.Tensors {
		f := fmt.Sprintf("tensors[%d]", i)
		if t.Name == "" {
			return Hello{}, bad(f+".name", "empty")
		}
		if seen[t.Name] {
			return Hello{}, bad(f+".name", "%q appears twice", t.Name)
		}
		seen[t.Name] = true
		if t.DType != DTypeF32 {
			return Hello{}, bad(f+".dtype", "%q for tensor %q, protocol version %d has only %q", t.DType, t.Name, Version, DTypeF32)
		}
		if len(t.Shape) == 0 || len(t.Shape) > 8 {
			return Hello{}, bad(f+".shape", "%v for tensor %q: want 1 to 8 dimensions", t.Shape, t.Name)
		}
		n := 1
		for _, d := range t.Shape {
			if d <= 0 || d > 1<<31 {
				return Hello{}, bad(f+".shape", "%v for tensor %q: every dimension must be in [1, 2^31]", t.Shape, t.Name)
			}
			n *= d
			if n > 1<<31 {
				return Hello{}, bad(f+".shape", "%v for tensor %q: more than 2^31 elements", t.Shape, t.Name)
			}
		}
		total += n
		if total > 1<<31 {
			return Hello{}, bad("tensors", "more than 2^31 parameters in total")
		}
	}
	if a.Examples == nil {
		return Hello{}, bad("examples", "missing")
	}
	if *a.Examples < 0 {
		return Hello{}, bad("examples", "%d is negative", *a.Examples)
	}
	h := Hello{Protocol: *a.Protocol, Tensors: a.Tensors, Examples: *a.Examples}
	if a.Test != nil {
		if *a.Test < 0 {
			return Hello{}, bad("test_examples", "%d is negative", *a.Test)
		}
		h.TestExamples = *a.Test
	}
	return h, nil
}

// checkCount validates a required example count of an answer.
func checkCount(v *int, name, op, field string, maxN int) (int, error) {
	if v == nil {
		return 0, &Error{Trainer: name, Op: op, Field: field, Reason: "missing"}
	}
	if *v < 0 {
		return 0, &Error{Trainer: name, Op: op, Field: field, Reason: fmt.Sprintf("%d is negative", *v)}
	}
	if maxN >= 0 && *v > maxN {
		return 0, &Error{Trainer: name, Op: op, Field: field, Reason: fmt.Sprintf("%d is more than the %d examples it was given", *v, maxN)}
	}
	return *v, nil
}

// checkFloat validates a required finite number of an answer within [lo, hi].
func checkFloat(v *float64, name, op, field string, lo, hi float64) (float64, error) {
	if v == nil {
		return 0, &Error{Trainer: name, Op: op, Field: field, Reason: "missing"}
	}
	if math.IsNaN(*v) || math.IsInf(*v, 0) || *v < lo || *v > hi {
		return 0, &Error{Trainer: name, Op: op, Field: field, Reason: fmt.Sprintf("%v out of range [%v, %v]", *v, lo, hi)}
	}
	return *v, nil
}
