package p2p

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// GateRefusal describes one connection the gater refused, for logs and tests.
type GateRefusal struct {
	Peer      peer.ID
	Direction network.Direction
	// Remote is the remote address, when known.
	Remote ma.Multiaddr
	Reason string
}

// Gater is a libp2p connection gater that admits only enrolled members of
// the federation. Inbound connections are checked once the remote peer has
// proven its identity (InterceptSecured); outbound dials to non-members are
// refused before they start. The member set can be replaced at run time;
// all methods are safe for concurrent use.
type Gater struct {
	fed      atomic.Pointer[Federation]
	logger   *slog.Logger
	refused  atomic.Uint64
	mu       sync.Mutex
	onRefuse func(GateRefusal)
}

var _ connmgr.ConnectionGater = (*Gater)(nil)

// NewGater returns a gater admitting the members of fed. logger may be nil
// (refusals are then not logged).
func NewGater(fed *Federation, logger *slog.Logger) *Gater {
	g := &Gater{logger: logger}
	g.fed.Store(fed)
	return g
}

// SetFederation replaces the member set. Connections already open to peers
// no longer enrolled are not closed by the gater; [Host.SetFederation] does that.
func (g *Gater) SetFederation(fed *Federation) { g.fed.Store(fed) }

// Federation returns the current member set.
func (g *Gater) Federation() *Federation { return g.fed.Load() }

// Lookup returns the enrolled member with peer ID id.
func (g *Gater) Lookup(id peer.ID) (Member, bool) {
	f := g.fed.Load()
	if f == nil {
		return Member{}, false
	}
	return f.Lookup(id)
}

// OnRefuse sets a function called (synchronously, so it must not block) for
// every refused connection. Pass nil to remove it.
func (g *Gater) OnRefuse(fn func(GateRefusal)) {
	g.mu.Lock()
	g.onRefuse = fn
	g.mu.Unlock()
}

// Refused returns how many connections the gater has refused.
func (g *Gater) Refused() uint64 { return g.refused.Load() }

func (g *Gater) refuse(r GateRefusal) {
	g.refused.Add(1)
	if g.logger != nil {
		attrs := []any{"peer", r.Peer.String(), "direction", r.Direction.String(), "reason", r.Reason}
		if r.Remote != nil {
			attrs = append(attrs, "remote", r.Remote.String())
		}
		g.logger.Warn("p2p: connection refused", attrs...)
	}
	g.mu.Lock()
	fn := g.onRefuse
	g.mu.Unlock()
	if fn != nil {
		fn(r)
	}
}

// InterceptPeerDial refuses dialling a peer that is not enrolled.
func (g *Gater) InterceptPeerDial(p peer.ID) bool {
	if _, ok := g.Lookup(p); ok {
		return true
	}
	g.refuse(GateRefusal{Peer: p, Direction: network.DirOutbound, Reason: "dial to peer not enrolled in the federation"})
	return false
}

// InterceptAddrDial allows every address of a peer that passed InterceptPeerDial.
func (g *Gater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

// InterceptAccept allows every inbound connection until its peer is known.
func (g *Gater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured refuses a connection, in either direction, whose
// authenticated remote peer is not enrolled in the federation.
func (g *Gater) InterceptSecured(dir network.Direction, p peer.ID, addrs network.ConnMultiaddrs) bool {
	if _, ok := g.Lookup(p); ok {
		return true
	}
	r := GateRefusal{Peer: p, Direction: dir, Reason: "peer not enrolled in the federation"}
	if addrs != nil {
		r.Remote = addrs.RemoteMultiaddr()
	}
	g.refuse(r)
	return false
}

// InterceptUpgraded allows every connection that passed InterceptSecured.
func (g *Gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
