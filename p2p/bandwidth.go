package p2p

import (
	"sync/atomic"
	"time"

	lpmetrics "github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// byteCounter is the libp2p bandwidth reporter of a Host: two atomic
// totals, exact at every read. (libp2p's own BandwidthCounter updates its
// totals from a sweeper once a second and keeps per-peer and per-protocol
// meters the host does not need.) The swarm calls LogSentMessage and
// LogRecvMessage for every stream write and read, and the *Stream variants
// for the same bytes, so only the former are counted.
type byteCounter struct{ in, out atomic.Int64 }

var _ lpmetrics.Reporter = (*byteCounter)(nil)

func (b *byteCounter) LogSentMessage(n int64)                              { b.out.Add(n) }
func (b *byteCounter) LogRecvMessage(n int64)                              { b.in.Add(n) }
func (b *byteCounter) LogSentMessageStream(int64, protocol.ID, peer.ID)    {}
func (b *byteCounter) LogRecvMessageStream(int64, protocol.ID, peer.ID)    {}
func (b *byteCounter) GetBandwidthForPeer(peer.ID) lpmetrics.Stats         { return lpmetrics.Stats{} }
func (b *byteCounter) GetBandwidthForProtocol(protocol.ID) lpmetrics.Stats { return lpmetrics.Stats{} }
func (b *byteCounter) GetBandwidthTotals() lpmetrics.Stats {
	return lpmetrics.Stats{TotalIn: b.in.Load(), TotalOut: b.out.Load()}
}
func (b *byteCounter) GetBandwidthByPeer() map[peer.ID]lpmetrics.Stats {
	return map[peer.ID]lpmetrics.Stats{}
}
func (b *byteCounter) GetBandwidthByProtocol() map[protocol.ID]lpmetrics.Stats {
	return map[protocol.ID]lpmetrics.Stats{}
}
func (b *byteCounter) Reset()             { b.in.Store(0); b.out.Store(0) }
func (b *byteCounter) TrimIdle(time.Time) {}
