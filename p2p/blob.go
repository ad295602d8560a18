package p2p

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// Chunked blob transfer. A blob is one BlobHeader frame announcing its size,
// BlobChunk frames carrying exactly that many bytes, and one BlobTrailer
// frame with the SHA-256 (FIPS 180-4) of the content. Both ends hold one
// chunk at a time, so memory stays bounded whatever the blob's size, and
// the receiver streams the content into an io.Writer while hashing it.

// Chunk sizes.
const (
	DefaultChunkSize = 1 << 20
	MaxChunkSize     = 4 << 20
	// chunkOverhead bounds the protobuf and length-prefix bytes around a chunk.
	chunkOverhead = 1 + binary.MaxVarintLen64
)

// Errors a blob transfer can fail with; each is wrapped in an error naming
// the peer and the blob.
var (
	ErrBlobHashMismatch = errors.New("blob hash mismatch")
	ErrBlobTooLarge     = errors.New("blob larger than allowed")
	ErrBlobShort        = errors.New("blob shorter than announced")
	ErrBlobLong         = errors.New("blob longer than announced")
	ErrBlobHeader       = errors.New("invalid blob header")
	ErrBlobNotFound     = errors.New("blob not found")
	ErrBlobRefused      = errors.New("blob refused by receiver")
)

// Hash is a SHA-256 digest naming a blob.
type Hash [sha256.Size]byte

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// HashOf returns the SHA-256 of data.
func HashOf(data []byte) Hash { return sha256.Sum256(data) }

// ParseHash decodes a 64-character hex hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("p2p: %q is not a hex SHA-256 hash", s)
	}
	copy(h[:], b)
	return h, nil
}

// HashFromBytes converts a 32-byte slice to a Hash.
func HashFromBytes(b []byte) (Hash, error) {
	var h Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("p2p: hash of %d bytes, want %d", len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// blobName names a blob in errors.
func blobName(hdr *pb.BlobHeader) string {
	if hdr == nil {
		return "blob"
	}
	s := fmt.Sprintf("blob %q", hdr.GetName())
	if hdr.GetRound() != 0 {
		s += fmt.Sprintf(" (round %d)", hdr.GetRound())
	}
	return s
}

// chunkBufs is a pair of chunk buffers: while one chunk is hashed, the next
// is read into the other.
type chunkBufs [2][]byte

// chunkBufPool holds buffer pairs of MaxChunkSize plus overhead.
var chunkBufPool = sync.Pool{New: func() any {
	return &chunkBufs{make([]byte, MaxChunkSize+2*chunkOverhead), make([]byte, MaxChunkSize+2*chunkOverhead)}
}}

// asyncHashMin is the chunk size from which hashing runs beside the I/O.
const asyncHashMin = 64 << 10

// asyncHasher hashes chunks in order, each one concurrently with the I/O of
// the next, so that SHA-256 and the network use separate cores. A chunk's
// buffer must not change until the following write (or wait) returns.
type asyncHasher struct {
	h    hash.Hash
	done chan struct{}
	busy bool
}

func newAsyncHasher() *asyncHasher {
	return &asyncHasher{h: sha256.New(), done: make(chan struct{}, 1)}
}

func (a *asyncHasher) write(p []byte) {
	a.wait()
	if len(p) < asyncHashMin {
		a.h.Write(p)
		return
	}
	a.busy = true
	go func() {
		a.h.Write(p)
		a.done <- struct{}{}
	}()
}

func (a *asyncHasher) wait() {
	if a.busy {
		<-a.done
		a.busy = false
	}
}

func (a *asyncHasher) sum() Hash {
	a.wait()
	var s Hash
	a.h.Sum(s[:0])
	return s
}

// deadlineFunc, when not nil, is called before each frame with the idle deadline.
type deadlineFunc func()

// writeBlob writes hdr, then r's content in chunks, then the trailer. It
// fills in hdr.ChunkSize when zero. hdr.Size must be the exact length of r.
func writeBlob(w io.Writer, hdr *pb.BlobHeader, r io.Reader, beforeWrite deadlineFunc) (Hash, error) {
	var zero Hash
	if hdr == nil {
		return zero, fmt.Errorf("%w: nil header", ErrBlobHeader)
	}
	if hdr.ChunkSize == 0 {
		hdr.ChunkSize = DefaultChunkSize
	}
	if hdr.ChunkSize > MaxChunkSize {
		return zero, fmt.Errorf("%s: %w: chunk_size %d exceeds %d", blobName(hdr), ErrBlobHeader, hdr.ChunkSize, MaxChunkSize)
	}
	if n := len(hdr.Sha256); n != 0 && n != sha256.Size {
		return zero, fmt.Errorf("%s: %w: sha256 of %d bytes", blobName(hdr), ErrBlobHeader, n)
	}
	if beforeWrite != nil {
		beforeWrite()
	}
	if err := WriteMsg(w, hdr); err != nil {
		return zero, err
	}
	return writeBlobBody(w, hdr, r, beforeWrite, true)
}

// writeBlobBody writes the chunks and the trailer of a blob whose header
// (checked by writeBlob) has been sent. With hashSource it hashes the
// content and refuses to send a trailer for content other than the header
// promised. Without it (a content-addressed store serving a blob by the
// hash it is named by, hdr.Sha256 set) the trailer repeats hdr.Sha256
// unhashed: the receiver hashes every byte and refuses a mismatch, so one
// SHA-256 pass per transfer still verifies it, and the sender's pass, which
// would only move the same refusal to the sending side, is saved.
func writeBlobBody(w io.Writer, hdr *pb.BlobHeader, r io.Reader, beforeWrite deadlineFunc, hashSource bool) (Hash, error) {
	var zero Hash
	if !hashSource && len(hdr.Sha256) != sha256.Size {
		return zero, fmt.Errorf("%s: %w: sending unhashed needs the header's sha256", blobName(hdr), ErrBlobHeader)
	}
	bufs := chunkBufPool.Get().(*chunkBufs)
	defer chunkBufPool.Put(bufs)
	var h *asyncHasher
	if hashSource {
		h = newAsyncHasher()
		defer h.wait() // before the buffers go back to the pool
	}
	// The chunk payload is read straight into buf after room for the
	// longest possible prefix; the prefix is then written right-aligned in
	// front of it so each chunk goes out in one Write, with no copy.
	const room = 2 * chunkOverhead
	remaining := hdr.Size
	for i := 0; remaining > 0; i++ {
		buf := bufs[i%2]
		n := uint64(hdr.ChunkSize)
		if remaining < n {
			n = remaining
		}
		payload := buf[room : room+int(n)]
		if got, err := io.ReadFull(r, payload); err != nil {
			sent := hdr.Size - remaining + uint64(got)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return zero, fmt.Errorf("%s: %w: source ended after %d of %d bytes", blobName(hdr), ErrBlobShort, sent, hdr.Size)
			}
			return zero, fmt.Errorf("%s: read source: %w", blobName(hdr), err)
		}
		if h != nil {
			h.write(payload)
		}
		var pre [room]byte
		body := protowire.SizeTag(1) + protowire.SizeBytes(int(n))
		p := binary.AppendUvarint(pre[:0], uint64(body))
		p = protowire.AppendTag(p, 1, protowire.BytesType)
		p = protowire.AppendVarint(p, n)
		start := room - len(p)
		copy(buf[start:room], p)
		if beforeWrite != nil {
			beforeWrite()
		}
		if _, err := w.Write(buf[start : room+int(n)]); err != nil {
			return zero, fmt.Errorf("%s: write chunk: %w", blobName(hdr), err)
		}
		remaining -= n
	}
	var extra [1]byte
	if n, _ := io.ReadFull(r, extra[:]); n > 0 {
		return zero, fmt.Errorf("%s: %w: source has more than %d bytes", blobName(hdr), ErrBlobLong, hdr.Size)
	}
	var sum Hash
	if h != nil {
		sum = h.sum()
	} else {
		copy(sum[:], hdr.Sha256)
	}
	if len(hdr.Sha256) == sha256.Size && !bytes.Equal(hdr.Sha256, sum[:]) {
		// Never send a trailer for content that is not what the header promised.
		return zero, fmt.Errorf("%s: %w: header promises %x, source hashes to %s", blobName(hdr), ErrBlobHashMismatch, hdr.Sha256, sum)
	}
	if beforeWrite != nil {
		beforeWrite()
	}
	if err := WriteMsg(w, &pb.BlobTrailer{Sha256: sum[:]}); err != nil {
		return zero, err
	}
	return sum, nil
}

// checkHeader validates a received header against the receiver's limit.
func checkHeader(where string, hdr *pb.BlobHeader, maxSize int64) error {
	if hdr.ChunkSize == 0 || hdr.ChunkSize > MaxChunkSize {
		return fmt.Errorf("%s%s: %w: chunk_size %d not in [1, %d]", where, blobName(hdr), ErrBlobHeader, hdr.ChunkSize, MaxChunkSize)
	}
	if n := len(hdr.Sha256); n != 0 && n != sha256.Size {
		return fmt.Errorf("%s%s: %w: sha256 of %d bytes", where, blobName(hdr), ErrBlobHeader, n)
	}
	if maxSize >= 0 && hdr.Size > uint64(maxSize) {
		return fmt.Errorf("%s%s: %w: %d bytes announced, limit %d", where, blobName(hdr), ErrBlobTooLarge, hdr.Size, maxSize)
	}
	return nil
}

// readBlobBody reads the chunks and trailer of a blob whose header hdr has
// been read and checked, writing the content to w. expect, when not nil, is
// the hash the content must have (in addition to the trailer's).
func readBlobBody(r *frameReader, hdr *pb.BlobHeader, w io.Writer, expect *Hash, beforeRead deadlineFunc) (Hash, error) {
	var zero Hash
	pre := where(r.proto, r.peer)
	bufs := chunkBufPool.Get().(*chunkBufs)
	defer chunkBufPool.Put(bufs)
	maxFrame := int(hdr.ChunkSize) + chunkOverhead
	h := newAsyncHasher()
	defer h.wait() // before the buffers go back to the pool
	var got uint64
	chunk := &pb.BlobChunk{}
	for i := 0; got < hdr.Size; i++ {
		buf := bufs[i%2]
		if beforeRead != nil {
			beforeRead()
		}
		frame, err := readFrame(r, buf, maxFrame, chunk)
		if err != nil {
			if err == io.EOF {
				return zero, fmt.Errorf("%s%s: %w: stream ended after %d of %d bytes", pre, blobName(hdr), ErrBlobShort, got, hdr.Size)
			}
			return zero, fmt.Errorf("%s: %w", blobName(hdr), err)
		}
		data, err := decodeChunk(frame)
		if err != nil {
			return zero, fmt.Errorf("%s: %w", blobName(hdr), &MalformedFrameError{Protocol: r.proto, Peer: r.peer, Message: msgName(chunk), Reason: err.Error()})
		}
		if uint64(len(data)) > uint64(hdr.ChunkSize) {
			return zero, fmt.Errorf("%s%s: %w: chunk of %d bytes exceeds chunk_size %d", pre, blobName(hdr), ErrBlobHeader, len(data), hdr.ChunkSize)
		}
		if uint64(len(data)) > hdr.Size-got {
			return zero, fmt.Errorf("%s%s: %w: more than the %d bytes announced", pre, blobName(hdr), ErrBlobLong, hdr.Size)
		}
		h.write(data)
		if _, err := w.Write(data); err != nil {
			return zero, fmt.Errorf("%s%s: write content: %w", pre, blobName(hdr), err)
		}
		got += uint64(len(data))
	}
	if beforeRead != nil {
		beforeRead()
	}
	var tr pb.BlobTrailer
	if err := ReadMsg(r, &tr, 128); err != nil {
		if err == io.EOF {
			return zero, fmt.Errorf("%s%s: %w: stream ended before the trailer", pre, blobName(hdr), ErrBlobShort)
		}
		return zero, fmt.Errorf("%s: trailer: %w", blobName(hdr), err)
	}
	sum := h.sum()
	if !bytes.Equal(tr.Sha256, sum[:]) {
		return zero, fmt.Errorf("%s%s: %w: trailer says %x, content hashes to %s", pre, blobName(hdr), ErrBlobHashMismatch, tr.Sha256, sum)
	}
	if len(hdr.Sha256) != 0 && !bytes.Equal(hdr.Sha256, sum[:]) {
		return zero, fmt.Errorf("%s%s: %w: header says %x, content hashes to %s", pre, blobName(hdr), ErrBlobHashMismatch, hdr.Sha256, sum)
	}
	if expect != nil && *expect != sum {
		return zero, fmt.Errorf("%s%s: %w: requested %s, content hashes to %s", pre, blobName(hdr), ErrBlobHashMismatch, *expect, sum)
	}
	return sum, nil
}

// decodeChunk returns the data field of an encoded BlobChunk without
// copying it. Like proto.Unmarshal it skips unknown fields (a field 1 of
// another wire type is one) and keeps the last occurrence of a repeated
// scalar field; an empty chunk is refused.
func decodeChunk(b []byte) ([]byte, error) {
	var data []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("bad tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, fmt.Errorf("bad data field: %w", protowire.ParseError(m))
			}
			data = v
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, fmt.Errorf("bad field %d: %w", num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	if len(data) == 0 {
		return nil, errors.New("empty chunk")
	}
	return data, nil
}

// ReceiveBlob reads one whole blob (header, chunks, trailer) from r. After
// the header is read and checked against maxSize (negative: no limit), open
// is called with it and returns where the content goes; returning an error
// refuses the blob. It returns the header and the verified SHA-256. On error
// the content written so far must be discarded. Errors name the blob, and
// the peer and protocol when r is a libp2p stream.
func ReceiveBlob(r io.Reader, maxSize int64, open func(*pb.BlobHeader) (io.Writer, error)) (*pb.BlobHeader, Hash, error) {
	var zero Hash
	fr, ok := r.(*frameReader)
	if !ok {
		fr = newFrameReader(r, 64<<10)
	}
	hdr := &pb.BlobHeader{}
	if err := ReadMsg(fr, hdr, 4096); err != nil {
		return nil, zero, fmt.Errorf("blob header: %w", err)
	}
	if err := checkHeader(where(fr.proto, fr.peer), hdr, maxSize); err != nil {
		return hdr, zero, err
	}
	w, err := open(hdr)
	if err != nil {
		return hdr, zero, fmt.Errorf("%s%s: %w: %v", where(fr.proto, fr.peer), blobName(hdr), ErrBlobRefused, err)
	}
	sum, err := readBlobBody(fr, hdr, w, nil, nil)
	return hdr, sum, err
}

// WriteBlob writes hdr, r's content in chunks and the trailer to w, and
// returns the content's SHA-256. hdr.Size must be r's exact length;
// hdr.ChunkSize defaults to DefaultChunkSize. It is the sending half of
// [ReceiveBlob], for any io.Writer.
func WriteBlob(w io.Writer, hdr *pb.BlobHeader, r io.Reader) (Hash, error) {
	return writeBlob(w, hdr, r, nil)
}

// idleDeadline returns a function pushing the read (or write) deadline of s
// idle into the future.
func idleDeadline(set func(time.Time) error, idle time.Duration) deadlineFunc {
	return func() { _ = set(time.Now().Add(idle)) }
}

// openBlobStream opens a stream whose lifetime is bound to ctx (cancelling
// ctx resets it) and returns a stop function to call when done.
func (h *Host) openBlobStream(ctx context.Context, p peer.ID, pid protocol.ID) (network.Stream, func() bool, error) {
	dctx, cancel := context.WithTimeout(ctx, h.cfg.StreamTimeout)
	defer cancel()
	ns, err := h.newStream(dctx, p, pid)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = ns.Reset() })
	return ns, stop, nil
}

// SendBlob opens a stream to p on pid and sends r's content as a blob
// described by hdr (hdr.Size must be r's exact length), then waits for the
// receiver's BlobReceipt. Memory use is one chunk whatever the size. It
// returns the content's SHA-256 once the receiver has verified it.
// Cancelling ctx aborts the transfer.
func SendBlob(ctx context.Context, h *Host, p peer.ID, pid protocol.ID, hdr *pb.BlobHeader, r io.Reader) (Hash, error) {
	return h.sendBlob(ctx, p, pid, nil, hdr, r)
}

// SendMaskedInput sends a SecAgg+ masked input on [ProtoSecAggMasked]: the
// MaskedInputHeader, then the masked vector as a blob.
func SendMaskedInput(ctx context.Context, h *Host, p peer.ID, mh *pb.MaskedInputHeader, hdr *pb.BlobHeader, r io.Reader) (Hash, error) {
	if mh == nil {
		return Hash{}, errors.New("p2p: SendMaskedInput: nil MaskedInputHeader")
	}
	return h.sendBlob(ctx, p, ProtoSecAggMasked, mh, hdr, r)
}

func (h *Host) sendBlob(ctx context.Context, p peer.ID, pid protocol.ID, preamble proto.Message, hdr *pb.BlobHeader, r io.Reader) (Hash, error) {
	var zero Hash
	ns, stop, err := h.openBlobStream(ctx, p, pid)
	if err != nil {
		return zero, err
	}
	defer stop()
	fail := func(err error) (Hash, error) {
		return zero, fmt.Errorf("p2p: send %s to %s on %s: %w", blobName(hdr), p, pid, err)
	}
	// The receipt is read concurrently: a receiver that refuses the blob
	// early answers at once, and the sender then stops writing.
	type receipt struct {
		rc  *pb.BlobReceipt
		err error
	}
	receipts := make(chan receipt, 1)
	go func() {
		rc := &pb.BlobReceipt{}
		err := ReadMsg(newFrameReader(ns, 512), rc, 4096)
		if err == nil && !rc.Accepted {
			_ = ns.Reset() // unblocks the writer
		}
		receipts <- receipt{rc, err}
	}()
	wd := idleDeadline(ns.SetWriteDeadline, h.cfg.BlobIdleTimeout)
	var werr error
	if preamble != nil {
		wd()
		werr = WriteMsg(ns, preamble)
	}
	var sum Hash
	if werr == nil {
		sum, werr = writeBlob(ns, hdr, r, wd)
	}
	if werr != nil && !isStreamError(werr) {
		// A local failure (short source, hash mismatch): abort.
		_ = ns.Reset()
		<-receipts
		return fail(werr)
	}
	if werr == nil {
		_ = ns.CloseWrite()
	}
	_ = ns.SetReadDeadline(time.Now().Add(h.cfg.StreamTimeout))
	got := <-receipts
	if got.err == nil && !got.rc.Accepted {
		return fail(fmt.Errorf("%w: %s", ErrBlobRefused, got.rc.Reason))
	}
	if werr != nil {
		_ = ns.Reset()
		return fail(werr)
	}
	if got.err != nil {
		_ = ns.Reset()
		return fail(fmt.Errorf("receipt: %w", got.err))
	}
	_ = ns.Close()
	if !bytes.Equal(got.rc.Sha256, sum[:]) {
		return fail(fmt.Errorf("%w: receiver acknowledged %x, sent %s", ErrBlobHashMismatch, got.rc.Sha256, sum))
	}
	return sum, nil
}

// isStreamError reports whether err came from the stream itself (the
// receiver may have stopped reading and left a receipt saying why).
func isStreamError(err error) bool {
	var se *network.StreamError
	return errors.As(err, &se) || errors.Is(err, network.ErrReset) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, os.ErrDeadlineExceeded)
}

// BlobSpec says how pushed blobs of one protocol are received.
type BlobSpec struct {
	// ID must look like /sovereign/<name>/<major>.<minor>.<patch>.
	ID protocol.ID
	// Roles the sender must hold; empty admits any enrolled member.
	Roles []Role
	// MaxSize bounds the announced blob size (required, > 0).
	MaxSize int64
	// Preamble, when set, returns a fresh message that precedes the blob
	// on each stream (e.g. *pb.MaskedInputHeader on ProtoSecAggMasked).
	Preamble func() proto.Message
}

// BlobSink receives pushed blobs. Begin and End are called from the stream's
// goroutine, possibly for several streams at once.
type BlobSink interface {
	// Begin is called once the preamble (nil without one) and header are
	// read and checked; it returns where the content goes, or an error to
	// refuse the blob (the reason is sent back to the sender).
	Begin(ctx context.Context, from Member, preamble proto.Message, hdr *pb.BlobHeader) (io.Writer, error)
	// End is called exactly once after every successful Begin: with the
	// verified hash and a nil error, or with the error that ended the
	// transfer, in which case the content written must be discarded. An
	// error returned by End refuses the blob after all.
	End(from Member, hdr *pb.BlobHeader, sum Hash, err error) error
}

// HandleBlobs registers the receiver of pushed blobs on spec.ID. Each
// stream's remote peer must be enrolled (with one of spec.Roles, if any);
// each frame must arrive within the host's BlobIdleTimeout; the announced
// size must not exceed spec.MaxSize. The sender gets a BlobReceipt saying
// whether the blob was accepted and, if not, why.
func (h *Host) HandleBlobs(spec BlobSpec, sink BlobSink) error {
	ps := ProtocolSpec{ID: spec.ID, Roles: spec.Roles}
	if err := ps.validate(); err != nil {
		return err
	}
	if spec.MaxSize <= 0 {
		return fmt.Errorf("p2p: BlobSpec.MaxSize of %s: %d must be positive", spec.ID, spec.MaxSize)
	}
	if sink == nil {
		return fmt.Errorf("p2p: HandleBlobs %s: nil sink", spec.ID)
	}
	h.h.SetStreamHandler(spec.ID, func(ns network.Stream) {
		if !h.track() {
			_ = ns.Reset()
			return
		}
		defer h.wg.Done()
		remote := ns.Conn().RemotePeer()
		rd := idleDeadline(ns.SetReadDeadline, h.cfg.BlobIdleTimeout)
		rd()
		m, err := h.admit(spec.ID, remote, spec.Roles)
		if err != nil {
			h.logger.Warn("p2p: stream refused", "protocol", string(spec.ID), "peer", remote.String(), "err", err)
			_ = ns.Reset()
			return
		}
		if err := h.receivePushed(ns, m, spec, sink, rd); err != nil {
			h.logger.Warn("p2p: blob refused", "protocol", string(spec.ID), "peer", remote.String(), "member", m.Name, "err", err)
		}
	})
	return nil
}

func (h *Host) receivePushed(ns network.Stream, m Member, spec BlobSpec, sink BlobSink, rd deadlineFunc) error {
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	fr := newFrameReader(ns, 64<<10)
	// refuse answers with a receipt saying why, then closes the stream.
	refuse := func(err error) error {
		_ = ns.SetWriteDeadline(time.Now().Add(h.cfg.StreamTimeout))
		if werr := WriteMsg(ns, &pb.BlobReceipt{Accepted: false, Reason: err.Error()}); werr != nil {
			_ = ns.Reset()
			return err
		}
		_ = ns.CloseWrite()
		// Let the sender read the receipt: it resets the stream when it
		// does, which ends this drain (bounded by the deadline anyway).
		_ = ns.SetReadDeadline(time.Now().Add(h.cfg.StreamTimeout))
		_, _ = io.Copy(io.Discard, fr)
		_ = ns.Reset()
		return err
	}
	var pre proto.Message
	if spec.Preamble != nil {
		pre = spec.Preamble()
		if err := ReadMsg(fr, pre, DefaultMaxFrame); err != nil {
			return refuse(fmt.Errorf("preamble: %w", err))
		}
	}
	hdr := &pb.BlobHeader{}
	if err := ReadMsg(fr, hdr, 4096); err != nil {
		return refuse(fmt.Errorf("blob header: %w", err))
	}
	if err := checkHeader(where(fr.proto, fr.peer), hdr, spec.MaxSize); err != nil {
		return refuse(err)
	}
	w, err := h.begin(ctx, sink, m, pre, hdr)
	if err != nil {
		return refuse(fmt.Errorf("%s%s: %w: %v", where(fr.proto, fr.peer), blobName(hdr), ErrBlobRefused, err))
	}
	sum, err := readBlobBody(fr, hdr, w, nil, rd)
	if endErr := sink.End(m, hdr, sum, err); err == nil && endErr != nil {
		err = fmt.Errorf("%s%s: %w: %v", where(fr.proto, fr.peer), blobName(hdr), ErrBlobRefused, endErr)
	}
	if err != nil {
		return refuse(err)
	}
	_ = ns.SetWriteDeadline(time.Now().Add(h.cfg.StreamTimeout))
	if err := WriteMsg(ns, &pb.BlobReceipt{Accepted: true, Sha256: sum[:]}); err != nil {
		_ = ns.Reset()
		return err
	}
	return ns.Close()
}

// begin calls sink.Begin, turning a panic into an error.
func (h *Host) begin(ctx context.Context, sink BlobSink, m Member, pre proto.Message, hdr *pb.BlobHeader) (w io.Writer, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sink panic: %v", r)
		}
	}()
	w, err = sink.Begin(ctx, m, pre, hdr)
	if err == nil && w == nil {
		err = errors.New("sink returned no writer")
	}
	return w, err
}
