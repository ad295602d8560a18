// Package rafttransport carries hashicorp/raft's RPCs between coordinator
// replicas over libp2p streams, so that Raft traffic is Noise-encrypted,
// multiplexed on the replicas' existing connections and admitted by the
// same connection gater as every other protocol of the host.
//
// Why not go-libp2p-raft's NewLibp2pTransport: it registers the fixed
// protocol ID "/raft/1.0.0/rpc", which cannot be changed to the project's
// versioned "/sovereign/raft/1.0.0", and it disables connection pooling
// (MaxPool 0) so that every RPC negotiates a new stream. This package
// implements the same idea, a raft.StreamLayer on go-libp2p's
// p2p/net/gostream, with our protocol ID and a small stream pool.
//
// Entry size: hashicorp/raft's NetworkTransport decodes each request with
// go-msgpack, whose byte-string decoding is quadratic above 256 KiB, so a
// 40 MB entry takes seconds to commit. Commit models by hash and move the
// blobs on their own streams (docs/bench-raft.md has the measurements).
//
// Addressing: a replica's raft.ServerID and raft.ServerAddress are both its
// libp2p peer ID string. The multiaddresses behind a peer ID come from the
// host's peerstore (or whatever routing the host has); Raft never sees IPs.
package rafttransport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"

	"github.com/sovereign-fl/sovereign/coordinator/internal/hclogslog"
)

// ProtocolID is the libp2p protocol of Raft RPCs. Bump the version when the
// wire format (hashicorp/raft's msgpack framing of its RPC structs) changes
// incompatibly.
const ProtocolID protocol.ID = "/sovereign/raft/1.0.0"

// maxPool is how many idle streams to each peer the transport keeps for
// reuse. Streams are cheap on a multiplexed connection, but each new one
// costs a protocol negotiation.
const maxPool = 3

var _ raft.StreamLayer = (*StreamLayer)(nil)

// StreamLayer is a raft.StreamLayer whose connections are libp2p streams of
// ProtocolID. Accept yields the streams that peers open to this host; Dial
// opens one to the peer whose ID string is the address.
type StreamLayer struct {
	host  host.Host
	l     net.Listener
	admit Admit
	lim   limits
	log   *slog.Logger
}

// Limits bounds what one incoming RPC may make this replica read. Zero
// fields take DefaultMaxRPCBytes and DefaultMaxSnapshotBytes.
type Limits struct {
	// MaxRPCBytes bounds one encoded request (an AppendEntries with all
	// its entries, a vote request).
	MaxRPCBytes int64
	// MaxSnapshotBytes bounds the snapshot an InstallSnapshot streams.
	MaxSnapshotBytes int64
}

func (l Limits) resolve() limits {
	out := limits{maxRPC: l.MaxRPCBytes, maxSnapshot: l.MaxSnapshotBytes}
	if out.maxRPC <= 0 {
		out.maxRPC = DefaultMaxRPCBytes
	}
	if out.maxSnapshot <= 0 {
		out.maxSnapshot = DefaultMaxSnapshotBytes
	}
	return out
}

// Admit decides whether the authenticated remote peer of an incoming Raft
// stream may speak Raft to this replica. It returns an error naming the
// rule that failed; the stream is then closed before a byte of it is read.
// It is applied again before every RPC the stream carries, so a peer that
// leaves the Raft configuration loses its pooled streams too.
// Security review finding C1: without it any enrolled member (a worker, an
// observer) could depose the leader and commit arbitrary entries.
type Admit func(p peer.ID) error

// NewStreamLayer registers the ProtocolID stream handler on h. Close
// removes it. admit is applied to every incoming stream and RPC; it is
// required. Every accepted stream is guarded: each request's header must
// name the stream's authenticated peer and fit lim, or the stream is
// closed and the peer logged before hashicorp/raft sees the request.
func NewStreamLayer(h host.Host, admit Admit, lim Limits, logger *slog.Logger) (*StreamLayer, error) {
	if h == nil {
		return nil, errors.New("rafttransport: host is nil")
	}
	if admit == nil {
		return nil, errors.New("rafttransport: admit rule is nil: Raft streams must be restricted to coordinator replicas")
	}
	if logger == nil {
		logger = slog.Default()
	}
	l, err := gostream.Listen(h, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("rafttransport: listen on %s: %w", ProtocolID, err)
	}
	return &StreamLayer{host: h, l: l, admit: admit, lim: lim.resolve(), log: logger}, nil
}

// Dial opens a stream to the peer whose ID string is address, giving up
// after timeout.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	pid, err := peer.Decode(string(address))
	if err != nil {
		return nil, fmt.Errorf("rafttransport: server address %q is not a libp2p peer ID: %w", address, err)
	}
	if pid == s.host.ID() {
		return nil, fmt.Errorf("rafttransport: server address %q is this host itself", address)
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := gostream.Dial(ctx, s.host, pid, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("rafttransport: open %s stream to peer %s: %w", ProtocolID, pid, err)
	}
	return c, nil
}

// Accept waits for the next stream a peer opens to this host whose remote
// peer the admit rule allows; refused streams are closed and logged with
// the peer.
func (s *StreamLayer) Accept() (net.Conn, error) {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return nil, err
		}
		p, err := peer.Decode(c.RemoteAddr().String())
		if err == nil {
			err = s.admit(p)
		}
		if err != nil {
			s.log.Warn("raft stream refused", "protocol", ProtocolID, "peer", c.RemoteAddr().String(), "err", err)
			_ = c.Close()
			continue
		}
		return guarded(c, p, s.lim, s.admit, s.log), nil
	}
}

// Close stops accepting streams and removes the stream handler.
func (s *StreamLayer) Close() error { return s.l.Close() }

// Addr returns this host's peer ID as a net.Addr; its String() is the
// raft.ServerAddress of this replica.
func (s *StreamLayer) Addr() net.Addr { return s.l.Addr() }

// addrProvider maps a ServerID to the identical ServerAddress: both are the
// peer ID string.
type addrProvider struct{}

func (addrProvider) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if _, err := peer.Decode(string(id)); err != nil {
		return "", fmt.Errorf("rafttransport: server ID %q is not a libp2p peer ID: %w", id, err)
	}
	return raft.ServerAddress(id), nil
}

// New returns a raft.Transport over h, admitting incoming streams and RPCs
// by admit and lim (see NewStreamLayer). timeout bounds dialing and each RPC's
// I/O (InstallSnapshot scales it with the snapshot's size); it must allow
// the largest log entry to cross the network. logger receives the
// transport's warnings and errors; nil means slog.Default().
//
// The result is a *raft.NetworkTransport; it implements raft.WithClose, so
// raft.Raft.Shutdown closes it, which also removes the stream handler.
func New(h host.Host, admit Admit, timeout time.Duration, lim Limits, logger *slog.Logger) (raft.Transport, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("rafttransport: timeout must be positive, got %v", timeout)
	}
	sl, err := NewStreamLayer(h, admit, lim, logger)
	if err != nil {
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		ServerAddressProvider: addrProvider{},
		Logger:                hcLogger(logger, "raft-net"),
		Stream:                sl,
		MaxPool:               maxPool,
		Timeout:               timeout,
	}), nil
}

// hcLogger adapts an slog.Logger to hclog, passing warnings and errors.
func hcLogger(l *slog.Logger, name string) hclog.Logger {
	return hclogslog.New(l, name, hclog.Warn)
}
