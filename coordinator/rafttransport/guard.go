package rafttransport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The RPC type bytes of hashicorp/raft's NetworkTransport framing
// (net_transport.go: one type byte, then the msgpack-encoded request; an
// InstallSnapshot request is followed by Size raw bytes of snapshot).
const (
	rpcAppendEntries uint8 = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
	rpcRequestPreVote
)

// DefaultMaxRPCBytes bounds one encoded Raft request. Coordinator log
// entries carry hashes, worker lists and SecAgg+ key and share lists, never
// model vectors (models travel by hash on their own streams), so an entry
// grows with the cohort, not with the model.
const DefaultMaxRPCBytes = 64 << 20

// DefaultMaxSnapshotBytes bounds the raw snapshot that follows an
// InstallSnapshot request. Snapshot bytes are streamed to the snapshot
// store, not held in memory.
const DefaultMaxSnapshotBytes = 4 << 30

// ErrRPCRefused reports an incoming Raft RPC that the transport refused
// before hashicorp/raft saw it: its header names a server other than the
// stream's authenticated peer, or it exceeds the size bounds.
var ErrRPCRefused = errors.New("rafttransport: raft RPC refused")

// guardConn is what NetworkTransport reads from for an accepted stream: a
// pipe fed by guard, which decodes each request from the stream, checks
// it, and re-encodes it. Writes (the responses) go to the stream directly.
type guardConn struct {
	net.Conn
	pr *io.PipeReader
}

func (g *guardConn) Read(b []byte) (int, error) { return g.pr.Read(b) }

func (g *guardConn) Close() error {
	g.pr.Close()
	return g.Conn.Close()
}

// limits are the size bounds guard applies.
type limits struct {
	maxRPC      int64
	maxSnapshot int64
}

// countingReader fails once more than budget bytes have been read since
// the last reset; it keeps a peer from making the decoder buffer an
// unbounded request.
type countingReader struct {
	r      io.Reader
	budget int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	if c.budget <= 0 {
		return 0, fmt.Errorf("%w: request larger than the transport's bound", ErrRPCRefused)
	}
	if int64(len(b)) > c.budget {
		b = b[:c.budget]
	}
	n, err := c.r.Read(b)
	c.budget -= int64(n)
	return n, err
}

// guarded wraps an accepted stream from peer p so that every request is
// checked before NetworkTransport decodes it.
func guarded(c net.Conn, p peer.ID, lim limits, admit Admit, log *slog.Logger) net.Conn {
	pr, pw := io.Pipe()
	go guard(c, p, lim, admit, pw, log)
	return &guardConn{Conn: c, pr: pr}
}

// guard copies requests from the stream c to pw while they pass the
// checks: the header names p, the sizes fit lim, admit still allows p.
// On the first refused or malformed request it logs the peer, closes the
// stream and ends the pipe with the error.
func guard(c net.Conn, p peer.ID, lim limits, admit Admit, pw *io.PipeWriter, log *slog.Logger) {
	cr := &countingReader{r: c}
	br := bufio.NewReader(cr)
	dec := codec.NewDecoder(br, &codec.MsgpackHandle{})
	var buf bytes.Buffer
	enc := codec.NewEncoder(&buf, &codec.MsgpackHandle{})
	err := func() error {
		for {
			cr.budget = lim.maxRPC
			t, err := br.ReadByte()
			if err != nil {
				return err
			}
			req, snapSize, err := decodeRequest(t, dec)
			if err != nil {
				return err
			}
			if err := checkSender(t, req, p); err != nil {
				return err
			}
			if err := admit(p); err != nil {
				return fmt.Errorf("%w: %v", ErrRPCRefused, err)
			}
			if snapSize > lim.maxSnapshot {
				return fmt.Errorf("%w: InstallSnapshot of %d bytes exceeds the bound of %d", ErrRPCRefused, snapSize, lim.maxSnapshot)
			}
			buf.Reset()
			buf.WriteByte(t)
			if err := enc.Encode(req); err != nil {
				return fmt.Errorf("rafttransport: re-encode request: %w", err)
			}
			if _, err := pw.Write(buf.Bytes()); err != nil {
				return err
			}
			if snapSize > 0 {
				cr.budget = snapSize + int64(br.Size())
				if _, err := io.CopyN(pw, br, snapSize); err != nil {
					return err
				}
			}
		}
	}()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, net.ErrClosed) {
		log.Warn("raft RPC refused; stream reset", "protocol", ProtocolID, "peer", p, "err", err)
		// Reset, not Close: the sender learns at once, and the rest of
		// what it sends is discarded rather than left in flow control.
		if r, ok := c.(interface{ Reset() error }); ok {
			_ = r.Reset()
		}
	}
	_ = c.Close()
	pw.CloseWithError(err)
}

// decodeRequest decodes the request of RPC type t. snapSize is the number
// of raw snapshot bytes that follow an InstallSnapshot.
func decodeRequest(t uint8, dec *codec.Decoder) (req any, snapSize int64, err error) {
	switch t {
	case rpcAppendEntries:
		req = new(raft.AppendEntriesRequest)
	case rpcRequestVote:
		req = new(raft.RequestVoteRequest)
	case rpcRequestPreVote:
		req = new(raft.RequestPreVoteRequest)
	case rpcInstallSnapshot:
		req = new(raft.InstallSnapshotRequest)
	case rpcTimeoutNow:
		req = new(raft.TimeoutNowRequest)
	default:
		return nil, 0, fmt.Errorf("%w: unknown RPC type %d", ErrRPCRefused, t)
	}
	if err := dec.Decode(req); err != nil {
		return nil, 0, fmt.Errorf("rafttransport: decode RPC type %d: %w", t, err)
	}
	if s, ok := req.(*raft.InstallSnapshotRequest); ok {
		if s.Size < 0 {
			return nil, 0, fmt.Errorf("%w: InstallSnapshot size %d", ErrRPCRefused, s.Size)
		}
		snapSize = s.Size
	}
	return req, snapSize, nil
}

// checkSender refuses a request whose header (or deprecated leader or
// candidate field) names a server other than p, the stream's authenticated
// peer. A replica's ServerID and ServerAddress are both its peer ID string
// (see addrProvider), so both must equal p exactly. hashicorp/raft adopts
// the leader an AppendEntries names (security review C1), so a coordinator
// must not be able to speak for another.
func checkSender(t uint8, req any, p peer.ID) error {
	want := p.String()
	h := req.(raft.WithRPCHeader).GetRPCHeader()
	if string(h.ID) != want || string(h.Addr) != want {
		return fmt.Errorf("%w: RPC type %d from peer %s names server ID %q address %q", ErrRPCRefused, t, p, h.ID, h.Addr)
	}
	var legacy []byte
	switch r := req.(type) {
	case *raft.AppendEntriesRequest:
		legacy = r.Leader
	case *raft.RequestVoteRequest:
		legacy = r.Candidate
	case *raft.InstallSnapshotRequest:
		legacy = r.Leader
	}
	if len(legacy) > 0 && string(legacy) != want {
		return fmt.Errorf("%w: RPC type %d from peer %s names leader/candidate %q", ErrRPCRefused, t, p, legacy)
	}
	return nil
}
