package p2p

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sovereign-fl/sovereign/p2p/pb"
)

func TestFrameRoundTrip(t *testing.T) {
	msgs := []proto.Message{
		&pb.Hello{Name: "st-marys", Capabilities: []string{"secagg+"}, AcceptedModels: []*pb.ModelShape{{Architecture: "mlp", NumParams: 101770}}},
		&pb.RoundAnnounce{Round: 12, ModelSha256: bytes.Repeat([]byte{7}, 32), SampledWorkers: [][]byte{[]byte("a"), []byte("b")}, Secure: true, Secagg: &pb.SecAggParams{Threshold: 3, Neighbours: 4}},
		&pb.StatusRequest{}, // empty message: a zero-length frame
		&pb.UnmaskResponse{Round: 3, Refusal: &pb.Refusal{Round: 3, Reason: "survivor set changed"}},
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		if err := WriteMsg(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	fr := newFrameReader(&buf, 16)
	for _, want := range msgs {
		got := want.ProtoReflect().New().Interface()
		if err := ReadMsg(fr, got, 1024); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if err := ReadMsg(fr, &pb.Hello{}, 1024); err != io.EOF {
		t.Fatalf("at end: err = %v, want io.EOF", err)
	}
}

func TestReadMsgErrors(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"oversize", binary.AppendUvarint(nil, 2000), 1000, ErrFrameTooLarge},
		{"huge prefix", binary.AppendUvarint(nil, 1<<63), 1000, ErrFrameTooLarge},
		{"varint overflow", bytes.Repeat([]byte{0xff}, 11), 1000, ErrMalformedFrame},
		{"10th byte too big", append(bytes.Repeat([]byte{0xff}, 9), 0x02), 1000, ErrMalformedFrame},
		{"prefix cut", []byte{0x80}, 1000, ErrMalformedFrame},
		{"body cut", []byte{5, 1, 2}, 1000, ErrMalformedFrame},
		{"bad body", []byte{2, 0x0a, 0x05}, 1000, ErrMalformedFrame},
		{"wrong wire type", []byte{2, 0x0d, 0x00}, 1000, ErrMalformedFrame},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ReadMsg(bytes.NewReader(tc.in), &pb.Hello{}, tc.max)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			// Without a ByteReader, the same result.
			err = ReadMsg(io.MultiReader(bytes.NewReader(tc.in)), &pb.Hello{}, tc.max)
			if !errors.Is(err, tc.want) {
				t.Fatalf("plain reader: err = %v, want %v", err, tc.want)
			}
		})
	}
	if err := ReadMsg(bytes.NewReader(nil), &pb.Hello{}, 10); err != io.EOF {
		t.Fatalf("empty input: %v, want io.EOF", err)
	}
}

// TestDecodeChunkMatchesProto checks the zero-copy chunk decoder against
// proto.Unmarshal on encodings with unknown and repeated fields.
func TestDecodeChunkMatchesProto(t *testing.T) {
	enc := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	inputs := [][]byte{
		enc(&pb.BlobChunk{Data: []byte("hello")}),
		append(enc(&pb.BlobChunk{Data: []byte("first")}), enc(&pb.BlobChunk{Data: []byte("last")})...),
		append(enc(&pb.BlobTrailer{Sha256: []byte("x")})[:0], append([]byte{0x10, 0x05}, enc(&pb.BlobChunk{Data: []byte("after-unknown")})...)...),
		{0x0a, 0x00},
		{0x0a, 0x05, 1},
		{0x08, 0x01},
		{},
	}
	for i, in := range inputs {
		var m pb.BlobChunk
		perr := proto.Unmarshal(in, &m)
		data, err := decodeChunk(in)
		switch {
		case perr != nil:
			if err == nil {
				t.Errorf("input %d: proto refuses (%v), decodeChunk accepts", i, perr)
			}
		case len(m.Data) == 0:
			if err == nil {
				t.Errorf("input %d: empty chunk accepted", i)
			}
		default:
			if err != nil || !bytes.Equal(data, m.Data) {
				t.Errorf("input %d: decodeChunk = %q, %v; proto = %q", i, data, err, m.Data)
			}
		}
	}
}
