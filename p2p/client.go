package p2p

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"
)

// Client opens streams from a Host to enrolled peers. The zero Timeout and
// MaxFrame take the host's StreamTimeout and DefaultMaxFrame.
type Client struct {
	Host *Host
	// Timeout bounds each request, from opening the stream to reading the
	// response; a context deadline that comes sooner wins.
	Timeout time.Duration
	// MaxFrame bounds every frame read.
	MaxFrame int
}

// NewClient returns a Client using h's defaults.
func NewClient(h *Host) *Client { return &Client{Host: h} }

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return c.Host.cfg.StreamTimeout
}

// Open opens a stream to p on pid with the client's deadline set on it. The
// caller must Close or Reset the stream.
func (c *Client) Open(ctx context.Context, p peer.ID, pid protocol.ID) (*Stream, error) {
	m, ok := c.Host.gater.Lookup(p)
	if !ok {
		return nil, fmt.Errorf("p2p: open %s to %s: %w", pid, p, ErrNotEnrolled)
	}
	deadline := time.Now().Add(c.timeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ns, err := c.Host.newStream(ctx, p, pid)
	if err != nil {
		return nil, err
	}
	_ = ns.SetDeadline(deadline)
	return newStream(ns, m, c.MaxFrame), nil
}

// Request sends req to p on pid and reads one response frame into resp.
// The stream is closed after a complete exchange and reset on any error;
// errors name the protocol and the peer.
func (c *Client) Request(ctx context.Context, p peer.ID, pid protocol.ID, req, resp proto.Message) error {
	s, err := c.Open(ctx, p, pid)
	if err != nil {
		return err
	}
	if err := s.WriteMsg(req); err != nil {
		_ = s.Reset()
		return err
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return fmt.Errorf("p2p: %s to %s: close write: %w", pid, p, err)
	}
	if err := s.ReadMsg(resp); err != nil {
		_ = s.Reset()
		return fmt.Errorf("p2p: %s response from %s: %w", pid, p, err)
	}
	return s.Close()
}
