package worker

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/wire"
)

// plainDecodeModel is the reference decoding: all bytes at once.
func plainDecodeModel(b []byte) ([]float32, error) {
	if len(b)%4 != 0 || len(b) == 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of float32 parameters", len(b))
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("parameter %d is %v", i, v)
		}
		out[i] = v
	}
	return out, nil
}

// decodeSplit writes b to a modelDecoder in pieces cut at random points.
func decodeSplit(b []byte, rng *rand.Rand, sizeHint int) ([]float32, error) {
	d := &modelDecoder{params: make([]float32, 0, sizeHint)}
	for len(b) > 0 {
		k := 1 + rng.IntN(min(len(b), 37))
		if n, err := d.Write(b[:k]); err != nil {
			return nil, err
		} else if n != k {
			return nil, fmt.Errorf("wrote %d of %d bytes", n, k)
		}
		b = b[k:]
	}
	return d.finish()
}

// TestModelDecoderMatchesPlain checks the streaming model decoder, fed in
// pieces that split parameters anywhere, against decoding all bytes at
// once, for valid models and for each kind of bad input.
func TestModelDecoderMatchesPlain(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		n := 1 + rng.IntN(300)
		b := make([]byte, 4*n)
		for i := range n {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(rng.NormFloat64())))
		}
		want, err := plainDecodeModel(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeSplit(b, rng, []int{0, n, n / 2}[trial%3])
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("trial %d: %d parameters decoded differently (%v)", trial, n, err)
		}
		// A non-finite parameter is refused by both, naming the same index.
		bad := slices.Clone(b)
		k := rng.IntN(n)
		binary.LittleEndian.PutUint32(bad[4*k:], math.Float32bits(float32([]float64{math.NaN(), math.Inf(1), math.Inf(-1)}[trial%3])))
		_, perr := plainDecodeModel(bad)
		_, serr := decodeSplit(bad, rng, 0)
		if perr == nil || serr == nil || perr.Error() != serr.Error() {
			t.Fatalf("trial %d: non-finite parameter %d: plain %v, streaming %v", trial, k, perr, serr)
		}
		// A trailing partial parameter is refused.
		_, serr = decodeSplit(b[:len(b)-1-rng.IntN(3)], rng, 0)
		if serr == nil || !strings.Contains(serr.Error(), "not a whole number") {
			t.Fatalf("trial %d: truncated model: %v", trial, serr)
		}
	}
	if _, err := (&modelDecoder{}).finish(); err == nil {
		t.Fatal("empty model accepted")
	}
}

// TestEncodeVectorMatchesWire checks the pooled masked-vector encoding
// against wire.EncodeVector, including into a reused, longer buffer.
func TestEncodeVectorMatchesWire(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 0, 16)
	for _, n := range []int{0, 1, 5, 1000, 3} {
		v := make([]uint32, n)
		for i := range v {
			v[i] = rng.Uint32()
		}
		buf = encodeVector(buf[:0], v)
		if want := wire.EncodeVector(v); !slices.Equal(buf, want) {
			t.Fatalf("%d words encoded differently", n)
		}
	}
}
