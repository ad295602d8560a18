package service

import (
	"context"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/coordinator/replica"
	"github.com/sovereign-fl/sovereign/p2p"
)

// Leave asks the running replicas to remove the replica peerID ("": the
// coordinator of cfg) from the Raft group, with cfg's identity, and says so
// on out.
func Leave(ctx context.Context, cfg *Config, peerID string, out io.Writer) error {
	log := p2p.NewLogger(io.Discard, cfg.Level, cfg.LogFormat, nil)
	fed, me, sk, err := cfg.Setup()
	if err != nil {
		return err
	}
	target := me.ID
	if peerID != "" {
		if target, err = peer.Decode(peerID); err != nil {
			return fmt.Errorf("--peer %q: %w", peerID, err)
		}
		if m, ok := fed.Lookup(target); !ok || m.Role != p2p.RoleCoordinator {
			return fmt.Errorf("--peer %s is not a coordinator of %s", target, cfg.Federation)
		}
	}
	h, err := p2p.NewHost(ctx, p2p.HostConfig{Identity: sk, Federation: fed, Logger: log})
	if err != nil {
		return err
	}
	defer h.Close()
	// Ask every coordinator, the leaving one included unless it is this
	// process's own identity (then the host would be talking to itself).
	if err := replica.RequestLeave(ctx, h, fed, target, log); err != nil {
		return err
	}
	name := target.String()
	if m, ok := fed.Lookup(target); ok {
		name = m.Name
	}
	fmt.Fprintf(out, "coordinator %s (%s) removed from the Raft group\n", name, target)
	return nil
}
