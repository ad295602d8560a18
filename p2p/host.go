package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/fx"
)

// HostConfig is what a [Host] is built from. Zero durations and sizes take
// the defaults noted on each field.
type HostConfig struct {
	// Identity is the host's Ed25519 private key (see [LoadOrCreateIdentity]).
	// Required.
	Identity crypto.PrivKey
	// ListenAddrs are multiaddr strings to listen on, TCP
	// ("/ip4/0.0.0.0/tcp/4001") or QUIC ("/ip4/0.0.0.0/udp/4001/quic-v1").
	// Empty means the host only dials out.
	ListenAddrs []string
	// AnnounceAddrs, if set, replace the listen addresses the host tells
	// other peers about (e.g. a public address in front of a NAT).
	AnnounceAddrs []string
	// Federation is the enrolled member set; the host refuses every other
	// peer. Required. Its PSK, if any, makes the network private (TCP only).
	Federation *Federation
	// Logger receives refusals and handler errors; nil discards them.
	Logger *slog.Logger
	// StreamTimeout bounds every request/response stream (default 30 s).
	StreamTimeout time.Duration
	// BlobIdleTimeout bounds the wait for each frame of a blob stream, so a
	// large blob may take as long as it needs while it keeps moving
	// (default 30 s).
	BlobIdleTimeout time.Duration
	// DialTimeout bounds establishing a connection (default 15 s).
	DialTimeout time.Duration
}

// Default timeouts.
const (
	DefaultStreamTimeout   = 30 * time.Second
	DefaultBlobIdleTimeout = 30 * time.Second
	DefaultDialTimeout     = 15 * time.Second
)

// Option changes a HostConfig before the host is built; it may refuse a value.
type Option func(*HostConfig) error

// WithListenAddrs appends listen addresses.
func WithListenAddrs(addrs ...string) Option {
	return func(c *HostConfig) error {
		c.ListenAddrs = append(c.ListenAddrs, addrs...)
		return nil
	}
}

// WithAnnounceAddrs sets the announced addresses.
func WithAnnounceAddrs(addrs ...string) Option {
	return func(c *HostConfig) error {
		c.AnnounceAddrs = append(c.AnnounceAddrs, addrs...)
		return nil
	}
}

// WithIdentity sets the identity key; it must be Ed25519.
func WithIdentity(sk crypto.PrivKey) Option {
	return func(c *HostConfig) error {
		if sk == nil || sk.Type() != crypto.Ed25519 {
			return errors.New("p2p: WithIdentity: want an Ed25519 private key")
		}
		c.Identity = sk
		return nil
	}
}

// WithFederation sets the enrolled member set.
func WithFederation(f *Federation) Option {
	return func(c *HostConfig) error {
		if f == nil {
			return errors.New("p2p: WithFederation: nil federation")
		}
		c.Federation = f
		return nil
	}
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(c *HostConfig) error {
		c.Logger = l
		return nil
	}
}

// WithStreamTimeout sets the request/response stream deadline.
func WithStreamTimeout(d time.Duration) Option {
	return func(c *HostConfig) error {
		if d <= 0 {
			return fmt.Errorf("p2p: WithStreamTimeout: %v must be positive", d)
		}
		c.StreamTimeout = d
		return nil
	}
}

// WithBlobIdleTimeout sets the per-frame deadline of blob streams.
func WithBlobIdleTimeout(d time.Duration) Option {
	return func(c *HostConfig) error {
		if d <= 0 {
			return fmt.Errorf("p2p: WithBlobIdleTimeout: %v must be positive", d)
		}
		c.BlobIdleTimeout = d
		return nil
	}
}

// Host is a libp2p host restricted to the federation's members, on which
// protocol handlers are registered with [Host.Handle], [Host.HandleBlobs]
// and [Host.ServeBlobs].
type Host struct {
	h      host.Host
	bw     *byteCounter
	gater  *Gater
	cfg    HostConfig
	logger *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// validate checks the configuration; errors name the field at fault.
func (c *HostConfig) validate() error {
	if c.Identity == nil {
		return errors.New("p2p: HostConfig.Identity: required")
	}
	if c.Identity.Type() != crypto.Ed25519 {
		return fmt.Errorf("p2p: HostConfig.Identity: key type %v, want Ed25519", c.Identity.Type())
	}
	if c.Federation == nil {
		return errors.New("p2p: HostConfig.Federation: required (the host admits only enrolled peers)")
	}
	for i, s := range c.ListenAddrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("p2p: HostConfig.ListenAddrs[%d]: invalid multiaddr %q: %v", i, s, err)
		}
		quic, tcp := isQUIC(a), isTCP(a)
		if !quic && !tcp {
			return fmt.Errorf("p2p: HostConfig.ListenAddrs[%d]: %q is neither TCP nor QUIC (quic-v1)", i, s)
		}
		if quic && c.Federation.PSK != nil {
			return fmt.Errorf("p2p: HostConfig.ListenAddrs[%d]: %q: QUIC cannot be used on a private network (the federation has a PSK); use TCP", i, s)
		}
	}
	for i, s := range c.AnnounceAddrs {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fmt.Errorf("p2p: HostConfig.AnnounceAddrs[%d]: invalid multiaddr %q: %v", i, s, err)
		}
	}
	for name, d := range map[string]time.Duration{"StreamTimeout": c.StreamTimeout, "BlobIdleTimeout": c.BlobIdleTimeout, "DialTimeout": c.DialTimeout} {
		if d < 0 {
			return fmt.Errorf("p2p: HostConfig.%s: %v is negative", name, d)
		}
	}
	return nil
}

func isQUIC(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_QUIC_V1)
	return err == nil
}

func isTCP(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_TCP)
	return err == nil
}

// NewHost builds and starts a host from cfg, then opts applied in order.
// It listens on TCP and QUIC addresses; TCP connections are secured with
// Noise (the XX handshake of the Noise Protocol Framework, as libp2p
// specifies it) and multiplexed with yamux; QUIC brings its own TLS 1.3 and
// streams, as the libp2p QUIC spec requires. Plaintext is never offered. ctx
// only bounds construction; stop the host with [Host.Close].
func NewHost(ctx context.Context, cfg HostConfig, opts ...Option) (*Host, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.StreamTimeout == 0 {
		cfg.StreamTimeout = DefaultStreamTimeout
	}
	if cfg.BlobIdleTimeout == 0 {
		cfg.BlobIdleTimeout = DefaultBlobIdleTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	gater := NewGater(cfg.Federation, logger)
	bw := &byteCounter{}

	lopts := []libp2p.Option{
		libp2p.Identity(cfg.Identity),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		// Without SO_REUSEPORT a second process on the same TCP port fails
		// to listen instead of silently sharing the port (two coordinators
		// on one port each got half the connections).
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.ConnectionGater(gater),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.BandwidthReporter(bw),
		libp2p.WithDialTimeout(cfg.DialTimeout),
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		// libp2p's dependency injection logs a failed start (a port in use)
		// three times on slog's default logger; the error NewHost returns
		// says it once, in the caller's terms.
		libp2p.WithFxOption(fx.NopLogger),
	}
	if cfg.Federation.PSK != nil {
		lopts = append(lopts, libp2p.PrivateNetwork(cfg.Federation.PSK))
	} else {
		lopts = append(lopts, libp2p.Transport(quic.NewTransport))
	}
	if len(cfg.ListenAddrs) == 0 {
		lopts = append(lopts, libp2p.NoListenAddrs)
	}
	if len(cfg.AnnounceAddrs) > 0 {
		announce := make([]ma.Multiaddr, len(cfg.AnnounceAddrs))
		for i, s := range cfg.AnnounceAddrs {
			announce[i] = ma.StringCast(s) // validated above
		}
		lopts = append(lopts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr {
			return append([]ma.Multiaddr(nil), announce...)
		}))
	}
	h, err := libp2p.New(lopts...)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("p2p: listen %s: address already in use (another process, perhaps a second coordinator or worker, listens there; give each its own port): %w",
				strings.Join(cfg.ListenAddrs, ", "), err)
		}
		return nil, fmt.Errorf("p2p: start libp2p host: %w", err)
	}
	hctx, cancel := context.WithCancel(context.Background())
	return &Host{h: h, bw: bw, gater: gater, cfg: cfg, logger: logger, ctx: hctx, cancel: cancel}, nil
}

// ID returns the host's peer ID.
func (h *Host) ID() peer.ID { return h.h.ID() }

// LibP2P returns the underlying libp2p host (for pubsub and the like). Its
// connections are subject to the same gater.
func (h *Host) LibP2P() host.Host { return h.h }

// Bandwidth returns the bytes received and sent over this host's streams
// since it started, all protocols and peers together.
func (h *Host) Bandwidth() (in, out int64) {
	return h.bw.in.Load(), h.bw.out.Load()
}

// Gater returns the host's connection gater.
func (h *Host) Gater() *Gater { return h.gater }

// Federation returns the current member set.
func (h *Host) Federation() *Federation { return h.gater.Federation() }

// Logger returns the host's logger.
func (h *Host) Logger() *slog.Logger { return h.logger }

// Addrs returns the host's announced addresses as multiaddr strings, each
// ending in /p2p/<peer ID> so it can be dialled as is.
func (h *Host) Addrs() []string {
	info := peer.AddrInfo{ID: h.h.ID(), Addrs: h.h.Addrs()}
	full, err := peer.AddrInfoToP2pAddrs(&info)
	if err != nil {
		return nil
	}
	out := make([]string, len(full))
	for i, a := range full {
		out[i] = a.String()
	}
	return out
}

// AddrInfo returns the host's ID and announced addresses.
func (h *Host) AddrInfo() peer.AddrInfo { return peer.AddrInfo{ID: h.h.ID(), Addrs: h.h.Addrs()} }

// Connect dials p at the given addresses (or at addresses already known).
// A peer that is not enrolled is refused before dialling.
func (h *Host) Connect(ctx context.Context, p peer.AddrInfo) error {
	if _, ok := h.gater.Lookup(p.ID); !ok {
		return fmt.Errorf("p2p: connect to %s: peer not enrolled in the federation", p.ID)
	}
	if err := h.h.Connect(ctx, p); err != nil {
		return fmt.Errorf("p2p: connect to %s: %w", p.ID, err)
	}
	return nil
}

// ConnectMember dials the enrolled member called name at its federation
// addresses.
func (h *Host) ConnectMember(ctx context.Context, name string) error {
	m, ok := h.Federation().LookupName(name)
	if !ok {
		return fmt.Errorf("p2p: connect: no member named %q", name)
	}
	return h.Connect(ctx, m.AddrInfo())
}

// SetFederation replaces the member set at run time and closes connections
// to peers that are no longer enrolled. Later streams from a member whose
// role changed are checked against its new role.
func (h *Host) SetFederation(f *Federation) error {
	if f == nil {
		return errors.New("p2p: SetFederation: nil federation")
	}
	if h.cfg.Federation.PSK != nil && f.PSK == nil || h.cfg.Federation.PSK == nil && f.PSK != nil {
		return errors.New("p2p: SetFederation: the private-network key cannot change at run time; restart the host")
	}
	h.gater.SetFederation(f)
	for _, p := range h.h.Network().Peers() {
		if _, ok := f.Lookup(p); !ok {
			h.logger.Info("p2p: closing connections of peer no longer enrolled", "peer", p.String())
			_ = h.h.Network().ClosePeer(p)
		}
	}
	return nil
}

// Close stops every handler and the libp2p host. It is safe to call more
// than once.
func (h *Host) Close() error {
	h.once.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		h.cancel()
		h.err = h.h.Close()
		h.wg.Wait()
	})
	return h.err
}

// newStream opens a stream to p on pid, refusing peers that are not enrolled.
func (h *Host) newStream(ctx context.Context, p peer.ID, pid protocol.ID) (network.Stream, error) {
	if _, ok := h.gater.Lookup(p); !ok {
		return nil, fmt.Errorf("p2p: open %s to %s: peer not enrolled in the federation", pid, p)
	}
	s, err := h.h.NewStream(ctx, p, pid)
	if err != nil {
		return nil, fmt.Errorf("p2p: open %s to %s: %w", pid, p, err)
	}
	return s, nil
}
