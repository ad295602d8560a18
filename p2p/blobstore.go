package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// BlobStore is where a node keeps blobs (models) that peers may fetch by
// hash. Implementations must be safe for concurrent use; the content read
// from Open must hash to the hash asked for (the server checks as it sends
// and aborts the transfer if not).
type BlobStore interface {
	// Open returns the content of the blob with SHA-256 hash and its size,
	// or an error wrapping ErrBlobNotFound. The caller closes the reader.
	Open(hash Hash) (io.ReadCloser, int64, error)
}

// MemBlobStore is an in-memory BlobStore, for tests and simulations.
type MemBlobStore struct {
	mu    sync.RWMutex
	blobs map[Hash][]byte
}

var _ BlobStore = (*MemBlobStore)(nil)

// NewMemBlobStore returns an empty store.
func NewMemBlobStore() *MemBlobStore { return &MemBlobStore{blobs: make(map[Hash][]byte)} }

// Put stores a copy of data and returns its hash.
func (m *MemBlobStore) Put(data []byte) Hash {
	h := HashOf(data)
	m.mu.Lock()
	m.blobs[h] = bytes.Clone(data)
	m.mu.Unlock()
	return h
}

// Open implements BlobStore.
func (m *MemBlobStore) Open(h Hash) (io.ReadCloser, int64, error) {
	m.mu.RLock()
	b, ok := m.blobs[h]
	m.mu.RUnlock()
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s", ErrBlobNotFound, h)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// ServeBlobs registers the fetch-by-hash server ([ProtoBlob]) answering
// from store. Requesters must be enrolled and hold one of roles (one at
// least is required). A blob unknown to the store is answered with a Refusal.
func (h *Host) ServeBlobs(store BlobStore, roles ...Role) error {
	if store == nil {
		return errors.New("p2p: ServeBlobs: nil store")
	}
	spec := ProtocolSpec{ID: ProtoBlob, Roles: roles}
	if err := spec.validate(); err != nil {
		return err
	}
	h.h.SetStreamHandler(ProtoBlob, func(ns network.Stream) {
		if !h.track() {
			_ = ns.Reset()
			return
		}
		defer h.wg.Done()
		remote := ns.Conn().RemotePeer()
		_ = ns.SetDeadline(time.Now().Add(h.cfg.StreamTimeout))
		m, err := h.admit(ProtoBlob, remote, roles)
		if err != nil {
			h.logger.Warn("p2p: stream refused", "protocol", string(ProtoBlob), "peer", remote.String(), "err", err)
			_ = ns.Reset()
			return
		}
		if err := h.serveBlob(ns, store); err != nil {
			h.logger.Warn("p2p: blob fetch failed", "protocol", string(ProtoBlob), "peer", remote.String(), "member", m.Name, "err", err)
			_ = ns.Reset()
			return
		}
		_ = ns.Close()
	})
	return nil
}

func (h *Host) serveBlob(ns network.Stream, store BlobStore) error {
	var req pb.BlobRequest
	if err := ReadMsg(newFrameReader(ns, 256), &req, 256); err != nil {
		return err
	}
	want, err := HashFromBytes(req.Sha256)
	if err != nil {
		_ = WriteMsg(ns, &pb.BlobFetchResponse{Result: &pb.BlobFetchResponse_Refusal{Refusal: &pb.Refusal{Reason: "sha256: " + err.Error()}}})
		return fmt.Errorf("request: sha256: %w", err)
	}
	rc, size, err := store.Open(want)
	if err != nil {
		reason := "blob not available"
		if errors.Is(err, ErrBlobNotFound) {
			reason = fmt.Sprintf("blob %s not found", want)
		}
		if werr := WriteMsg(ns, &pb.BlobFetchResponse{Result: &pb.BlobFetchResponse_Refusal{Refusal: &pb.Refusal{Reason: reason}}}); werr != nil {
			return werr
		}
		if errors.Is(err, ErrBlobNotFound) {
			return nil // an ordinary answer
		}
		return fmt.Errorf("open %s: %w", want, err)
	}
	defer rc.Close()
	if size < 0 {
		return fmt.Errorf("open %s: store reports negative size %d", want, size)
	}
	hdr := &pb.BlobHeader{Name: want.String(), Size: uint64(size), Sha256: want[:], ChunkSize: DefaultChunkSize}
	if err := WriteMsg(ns, &pb.BlobFetchResponse{Result: &pb.BlobFetchResponse_Header{Header: hdr}}); err != nil {
		return err
	}
	wd := idleDeadline(ns.SetWriteDeadline, h.cfg.BlobIdleTimeout)
	// The header has already gone out inside the response; send the body.
	// The fetcher hashes what it receives against the hash it asked for,
	// so the store's content is not hashed a second time here.
	_, err = writeBlobBody(ns, hdr, rc, wd, false)
	return err
}

// FetchBlob asks p for the blob with SHA-256 want on [ProtoBlob] and streams
// its content into w, refusing it if it is larger than maxSize or does not
// hash to want. It returns the number of bytes written. On error the
// content written to w must be discarded.
func FetchBlob(ctx context.Context, h *Host, p peer.ID, want Hash, w io.Writer, maxSize int64) (int64, error) {
	fail := func(err error) (int64, error) {
		return 0, fmt.Errorf("p2p: fetch blob %s from %s: %w", want, p, err)
	}
	ns, stop, err := h.openBlobStream(ctx, p, ProtoBlob)
	if err != nil {
		return fail(err)
	}
	defer stop()
	_ = ns.SetWriteDeadline(time.Now().Add(h.cfg.StreamTimeout))
	if err := WriteMsg(ns, &pb.BlobRequest{Sha256: want[:]}); err != nil {
		_ = ns.Reset()
		return fail(err)
	}
	_ = ns.CloseWrite()
	rd := idleDeadline(ns.SetReadDeadline, h.cfg.BlobIdleTimeout)
	rd()
	fr := newFrameReader(ns, 64<<10)
	var resp pb.BlobFetchResponse
	if err := ReadMsg(fr, &resp, 4096); err != nil {
		_ = ns.Reset()
		return fail(err)
	}
	var hdr *pb.BlobHeader
	switch r := resp.Result.(type) {
	case *pb.BlobFetchResponse_Refusal:
		_ = ns.Close()
		if r.Refusal == nil {
			return fail(fmt.Errorf("%w: empty refusal", ErrBlobRefused))
		}
		return fail(fmt.Errorf("%w: %s", ErrBlobNotFound, r.Refusal.Reason))
	case *pb.BlobFetchResponse_Header:
		hdr = r.Header
	}
	if hdr == nil {
		_ = ns.Reset()
		return fail(&MalformedFrameError{Protocol: ProtoBlob, Peer: p, Message: msgName(&resp), Reason: "neither header nor refusal"})
	}
	if err := checkHeader("", hdr, maxSize); err != nil {
		_ = ns.Reset()
		return fail(err)
	}
	if !bytes.Equal(hdr.Sha256, want[:]) {
		_ = ns.Reset()
		return fail(fmt.Errorf("%w: server announces %x", ErrBlobHashMismatch, hdr.Sha256))
	}
	if _, err := readBlobBody(fr, hdr, w, &want, rd); err != nil {
		_ = ns.Reset()
		return fail(err)
	}
	_ = ns.Close()
	return int64(hdr.Size), nil
}
