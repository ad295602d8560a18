package p2p

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"strings"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/sovereign-fl/sovereign/p2p/pb"
)

const testPushProto protocol.ID = "/sovereign/test-push/1.0.0"

func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// bufferSink keeps blobs in memory and reports each End on a channel.
type bufferSink struct {
	mu       sync.Mutex
	bufs     map[string]*bytes.Buffer
	ended    chan sinkEnd
	preamble chan proto.Message
}

type sinkEnd struct {
	from string
	hdr  *pb.BlobHeader
	sum  Hash
	err  error
	data []byte
}

func newBufferSink() *bufferSink {
	return &bufferSink{bufs: map[string]*bytes.Buffer{}, ended: make(chan sinkEnd, 8), preamble: make(chan proto.Message, 8)}
}

func (b *bufferSink) Begin(ctx context.Context, from Member, pre proto.Message, hdr *pb.BlobHeader) (io.Writer, error) {
	if hdr.Name == "refuse-me" {
		return nil, errors.New("policy says no")
	}
	if pre != nil {
		b.preamble <- pre
	}
	buf := &bytes.Buffer{}
	b.mu.Lock()
	b.bufs[hdr.Name] = buf
	b.mu.Unlock()
	return buf, nil
}

func (b *bufferSink) End(from Member, hdr *pb.BlobHeader, sum Hash, err error) error {
	b.mu.Lock()
	data := b.bufs[hdr.Name].Bytes()
	b.mu.Unlock()
	b.ended <- sinkEnd{from.Name, hdr, sum, err, data}
	return nil
}

func TestBlobRoundTrip(t *testing.T) {
	for _, tr := range []string{"tcp", "quic"} {
		t.Run(tr, func(t *testing.T) {
			fed := testFederation(t, twoNodes)
			hosts := startHosts(t, fed, twoNodes, tr)
			coord, worker := hosts[0], hosts[1]
			sink := newBufferSink()
			if err := coord.HandleBlobs(BlobSpec{ID: testPushProto, MaxSize: 8 << 20, Roles: []Role{RoleWorker}}, sink); err != nil {
				t.Fatal(err)
			}
			data := randomBytes(1, 5<<20+12345) // not a multiple of the chunk size
			sum, err := SendBlob(t.Context(), worker, coord.ID(), testPushProto,
				&pb.BlobHeader{Kind: pb.BlobKind_BLOB_KIND_MODEL, Name: "model-v3", Round: 3, Size: uint64(len(data))}, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256(data)
			if sum != want {
				t.Fatalf("sender hash %s, want %x", sum, want)
			}
			end := recv(t, sink.ended, "sink end")
			if end.err != nil || end.sum != Hash(want) || !bytes.Equal(end.data, data) || end.from != "st-marys" || end.hdr.Round != 3 {
				t.Fatalf("received %d bytes, err %v, sum %s, from %s", len(end.data), end.err, end.sum, end.from)
			}
		})
	}
}

func TestMaskedInputPreamble(t *testing.T) {
	fed := testFederation(t, twoNodes)
	hosts := startHosts(t, fed, twoNodes, "tcp")
	coord, worker := hosts[0], hosts[1]
	sink := newBufferSink()
	spec := BlobSpec{ID: ProtoSecAggMasked, Roles: AllRoles(), MaxSize: 1 << 20, Preamble: func() proto.Message { return &pb.MaskedInputHeader{} }}
	if err := coord.HandleBlobs(spec, sink); err != nil {
		t.Fatal(err)
	}
	vec := randomBytes(2, 4000)
	h := HashOf(vec)
	mh := &pb.MaskedInputHeader{Round: 5, Sender: []byte(worker.ID()), VectorLength: 1000, ElementBits: 32, BlobSha256: h[:], BlobSize: 4000}
	if _, err := SendMaskedInput(t.Context(), worker, coord.ID(), mh,
		&pb.BlobHeader{Kind: pb.BlobKind_BLOB_KIND_MASKED_INPUT, Name: "masked", Round: 5, Size: 4000, Sha256: h[:], ChunkSize: 1000}, bytes.NewReader(vec)); err != nil {
		t.Fatal(err)
	}
	got := recv(t, sink.preamble, "preamble").(*pb.MaskedInputHeader)
	if !proto.Equal(got, mh) {
		t.Fatalf("preamble %v, want %v", got, mh)
	}
	end := recv(t, sink.ended, "end")
	if end.err != nil || !bytes.Equal(end.data, vec) {
		t.Fatalf("end %v", end.err)
	}
}

// pushRaw opens a push stream and writes hand-made frames, then returns the
// receipt the receiver answers with (nil if it only reset the stream).
func pushRaw(t *testing.T, from, to *Host, frames []proto.Message, rawTail []byte) *pb.BlobReceipt {
	t.Helper()
	s, err := NewClient(from).Open(t.Context(), to.ID(), testPushProto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	for _, f := range frames {
		if err := s.WriteMsg(f); err != nil {
			t.Fatal(err)
		}
	}
	if len(rawTail) > 0 {
		if _, err := s.Write(rawTail); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.CloseWrite()
	var rc pb.BlobReceipt
	if err := s.ReadMsg(&rc); err != nil {
		return nil
	}
	return &rc
}

func TestCorruptBlobRefused(t *testing.T) {
	fed := testFederation(t, twoNodes)
	hosts := startHosts(t, fed, twoNodes, "tcp")
	coord, worker := hosts[0], hosts[1]
	sink := newBufferSink()
	if err := coord.HandleBlobs(BlobSpec{ID: testPushProto, Roles: AllRoles(), MaxSize: 1 << 20}, sink); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(3, 3000)
	good := sha256.Sum256(data)
	bad := good
	bad[0] ^= 1
	hdr := func(name string, size uint64) *pb.BlobHeader {
		return &pb.BlobHeader{Name: name, Size: size, ChunkSize: 1024}
	}
	chunks := []proto.Message{&pb.BlobChunk{Data: data[:1024]}, &pb.BlobChunk{Data: data[1024:2048]}, &pb.BlobChunk{Data: data[2048:]}}

	cases := []struct {
		name   string
		frames []proto.Message
		tail   []byte
		want   error
		// begun: the sink saw Begin, so End must report the error.
		begun bool
	}{
		{"wrong-trailer", append(append([]proto.Message{hdr("wrong-trailer", 3000)}, chunks...), &pb.BlobTrailer{Sha256: bad[:]}), nil, ErrBlobHashMismatch, true},
		{"header-hash", append(append([]proto.Message{&pb.BlobHeader{Name: "header-hash", Size: 3000, ChunkSize: 1024, Sha256: bad[:]}}, chunks...), &pb.BlobTrailer{Sha256: good[:]}), nil, ErrBlobHashMismatch, true},
		{"short", append([]proto.Message{hdr("short", 3000)}, chunks[:2]...), nil, ErrBlobShort, true},
		{"long", append(append([]proto.Message{hdr("long", 2500)}, chunks...), &pb.BlobTrailer{Sha256: good[:]}), nil, ErrBlobLong, true},
		{"oversize", []proto.Message{hdr("oversize", 2<<20)}, nil, ErrBlobTooLarge, false},
		{"big-chunk", []proto.Message{&pb.BlobHeader{Name: "big-chunk", Size: 3000, ChunkSize: 1000}, chunks[0]}, nil, ErrFrameTooLarge, true},
		{"garbage-chunk", []proto.Message{hdr("garbage-chunk", 3000)}, []byte{4, 0x0a, 0xff, 0xff, 0xff}, ErrMalformedFrame, true},
		{"empty-chunk", []proto.Message{hdr("empty-chunk", 3000), &pb.BlobChunk{}}, nil, ErrMalformedFrame, true},
		{"refuse-me", []proto.Message{hdr("refuse-me", 3000)}, nil, ErrBlobRefused, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := pushRaw(t, worker, coord, tc.frames, tc.tail)
			if rc == nil || rc.Accepted {
				t.Fatalf("receipt %v, want a refusal", rc)
			}
			if !strings.Contains(rc.Reason, tc.name) {
				t.Fatalf("reason %q does not name the blob %q", rc.Reason, tc.name)
			}
			if tc.begun {
				end := recv(t, sink.ended, "sink end")
				if !errors.Is(end.err, tc.want) {
					t.Fatalf("End err = %v, want %v", end.err, tc.want)
				}
				if !strings.Contains(end.err.Error(), worker.ID().String()) || !strings.Contains(end.err.Error(), tc.name) {
					t.Fatalf("error %q does not name the peer and the blob", end.err)
				}
			}
		})
	}
	// The receiver still accepts a good blob afterwards.
	if _, err := SendBlob(t.Context(), worker, coord.ID(), testPushProto, hdr("fine", 3000), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if end := recv(t, sink.ended, "good end"); end.err != nil {
		t.Fatal(end.err)
	}
}

func TestSendBlobErrors(t *testing.T) {
	fed := testFederation(t, twoNodes)
	hosts := startHosts(t, fed, twoNodes, "tcp")
	coord, worker := hosts[0], hosts[1]
	sink := newBufferSink()
	if err := coord.HandleBlobs(BlobSpec{ID: testPushProto, Roles: AllRoles(), MaxSize: 1 << 20}, sink); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(4, 5000)
	// Receiver refuses an oversize announcement; the sender learns why.
	_, err := SendBlob(t.Context(), worker, coord.ID(), testPushProto, &pb.BlobHeader{Name: "huge", Size: 1 << 30}, io.LimitReader(zeros{}, 1<<30))
	if !errors.Is(err, ErrBlobRefused) || !strings.Contains(err.Error(), "huge") || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversize push: err = %v", err)
	}
	// Source shorter than announced.
	_, err = SendBlob(t.Context(), worker, coord.ID(), testPushProto, &pb.BlobHeader{Name: "liar", Size: 6000}, bytes.NewReader(data))
	if !errors.Is(err, ErrBlobShort) {
		t.Fatalf("short source: err = %v", err)
	}
	// Source longer than announced.
	_, err = SendBlob(t.Context(), worker, coord.ID(), testPushProto, &pb.BlobHeader{Name: "liar2", Size: 4000}, bytes.NewReader(data))
	if !errors.Is(err, ErrBlobLong) {
		t.Fatalf("long source: err = %v", err)
	}
	// Header hash that the content does not match: no trailer is sent.
	wrong := HashOf([]byte("x"))
	_, err = SendBlob(t.Context(), worker, coord.ID(), testPushProto, &pb.BlobHeader{Name: "wrong", Size: 5000, Sha256: wrong[:]}, bytes.NewReader(data))
	if !errors.Is(err, ErrBlobHashMismatch) {
		t.Fatalf("wrong header hash: err = %v", err)
	}
	// An aborted blob may end before the receiver's handler even starts;
	// those that did start must have ended in an error. A good blob, sent
	// last, marks the end.
	if _, err := SendBlob(t.Context(), worker, coord.ID(), testPushProto, &pb.BlobHeader{Name: "good", Size: 5000}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for {
		end := recv(t, sink.ended, "end")
		if end.hdr.Name == "good" {
			if end.err != nil {
				t.Fatal(end.err)
			}
			break
		}
		if end.err == nil {
			t.Fatalf("receiver accepted aborted blob %q", end.hdr.Name)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestFetchBlobByHash(t *testing.T) {
	for _, tr := range []string{"tcp", "quic"} {
		t.Run(tr, func(t *testing.T) {
			fed := testFederation(t, twoNodes)
			hosts := startHosts(t, fed, twoNodes, tr)
			coord, worker := hosts[0], hosts[1]
			store := NewMemBlobStore()
			model := randomBytes(5, 3<<20+7)
			h := store.Put(model)
			if err := coord.ServeBlobs(store, RoleWorker); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			n, err := FetchBlob(t.Context(), worker, coord.ID(), h, &got, 4<<20)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(model)) || !bytes.Equal(got.Bytes(), model) {
				t.Fatalf("fetched %d bytes, want %d identical", n, len(model))
			}
			// Unknown hash.
			_, err = FetchBlob(t.Context(), worker, coord.ID(), HashOf([]byte("nope")), io.Discard, 4<<20)
			if !errors.Is(err, ErrBlobNotFound) {
				t.Fatalf("unknown hash: err = %v", err)
			}
			// Larger than the caller accepts.
			_, err = FetchBlob(t.Context(), worker, coord.ID(), h, io.Discard, 1<<20)
			if !errors.Is(err, ErrBlobTooLarge) {
				t.Fatalf("limit: err = %v", err)
			}
		})
	}
}

// corruptStore serves content that does not match the hash asked for.
type corruptStore struct{ data []byte }

func (c corruptStore) Open(Hash) (io.ReadCloser, int64, error) {
	return io.NopCloser(bytes.NewReader(c.data)), int64(len(c.data)), nil
}

func TestFetchBlobCorruptStore(t *testing.T) {
	fed := testFederation(t, twoNodes)
	hosts := startHosts(t, fed, twoNodes, "tcp")
	coord, worker := hosts[0], hosts[1]
	if err := coord.ServeBlobs(corruptStore{randomBytes(6, 10000)}, AllRoles()...); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, err := FetchBlob(t.Context(), worker, coord.ID(), HashOf([]byte("expected")), &got, 1<<20)
	if err == nil {
		t.Fatal("fetched a blob that does not match its hash")
	}
	if !strings.Contains(err.Error(), coord.ID().String()) {
		t.Fatalf("error %q does not name the peer", err)
	}
}

func TestWriteReceiveBlobNoNetwork(t *testing.T) {
	data := randomBytes(7, 10_000)
	var wire bytes.Buffer
	sum, err := WriteBlob(&wire, &pb.BlobHeader{Name: "x", Size: uint64(len(data)), ChunkSize: 999}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	hdr, got, err := ReceiveBlob(&wire, 1<<20, func(*pb.BlobHeader) (io.Writer, error) { return &out, nil })
	if err != nil {
		t.Fatal(err)
	}
	if got != sum || sum != HashOf(data) || !bytes.Equal(out.Bytes(), data) || hdr.ChunkSize != 999 {
		t.Fatal("round trip mismatch")
	}
	// Every chunk goes through the protobuf decoder identically.
	var wire2 bytes.Buffer
	if _, err := WriteBlob(&wire2, &pb.BlobHeader{Name: "x", Size: 3, ChunkSize: 2}, bytes.NewReader([]byte{1, 2, 3})); err != nil {
		t.Fatal(err)
	}
	fr := newFrameReader(&wire2, 1024)
	var h pb.BlobHeader
	var c1, c2 pb.BlobChunk
	var tr pb.BlobTrailer
	for _, m := range []proto.Message{&h, &c1, &c2, &tr} {
		if err := ReadMsg(fr, m, 1024); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(c1.Data, []byte{1, 2}) || !bytes.Equal(c2.Data, []byte{3}) {
		t.Fatalf("chunks %v %v", c1.Data, c2.Data)
	}
	want := HashOf([]byte{1, 2, 3})
	if !bytes.Equal(tr.Sha256, want[:]) {
		t.Fatal("trailer hash")
	}
}

// TestFetchBlobCorruptLastChunkRefused serves, under the hash asked for,
// content of the right size whose last chunk differs in one byte: the
// server does not hash what it serves, so the fetcher's own hash must catch
// it, and nothing is reported as fetched.
func TestFetchBlobCorruptLastChunkRefused(t *testing.T) {
	fed := testFederation(t, twoNodes)
	hosts := startHosts(t, fed, twoNodes, "tcp")
	coord, worker := hosts[0], hosts[1]
	good := randomBytes(8, 3*DefaultChunkSize+17)
	bad := bytes.Clone(good)
	bad[len(bad)-5] ^= 0x40
	if err := coord.ServeBlobs(corruptStore{bad}, AllRoles()...); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	n, err := FetchBlob(t.Context(), worker, coord.ID(), HashOf(good), &got, 1<<30)
	if !errors.Is(err, ErrBlobHashMismatch) || n != 0 {
		t.Fatalf("FetchBlob = %d, %v; want 0 and a hash mismatch", n, err)
	}
	if !strings.Contains(err.Error(), coord.ID().String()) || !strings.Contains(err.Error(), HashOf(good).String()) {
		t.Fatalf("error %q does not name the peer and the blob", err)
	}

	// The same store serving the right content is fetched intact.
	if err := coord.ServeBlobs(corruptStore{good}, AllRoles()...); err != nil {
		t.Fatal(err)
	}
	got.Reset()
	if n, err := FetchBlob(t.Context(), worker, coord.ID(), HashOf(good), &got, 1<<30); err != nil || n != int64(len(good)) || !bytes.Equal(got.Bytes(), good) {
		t.Fatalf("FetchBlob of intact content = %d, %v", n, err)
	}
}

// TestWriteBlobBodyUnhashedNeedsHash checks that the unhashed sending mode
// is refused without a header hash to put in the trailer.
func TestWriteBlobBodyUnhashedNeedsHash(t *testing.T) {
	var wire bytes.Buffer
	_, err := writeBlobBody(&wire, &pb.BlobHeader{Name: "x", Size: 3, ChunkSize: 2}, bytes.NewReader([]byte{1, 2, 3}), nil, false)
	if !errors.Is(err, ErrBlobHeader) || wire.Len() != 0 {
		t.Fatalf("err %v, %d bytes written", err, wire.Len())
	}
}
