package p2p

import (
	"context"
	"strings"
	"testing"
)

// TestPortInUseIsAnError: a second host on a port another host listens on
// fails to start and says why, for TCP and for QUIC.
func TestPortInUseIsAnError(t *testing.T) {
	fed := testFederation(t, []testNode{{"a", RoleCoordinator, 1}, {"b", RoleCoordinator, 2}})
	for _, transport := range []string{"tcp", "quic"} {
		t.Run(transport, func(t *testing.T) {
			h1, err := NewHost(context.Background(), HostConfig{Identity: testKey(t, 1), ListenAddrs: listenAddrs(transport), Federation: fed})
			if err != nil {
				t.Fatal(err)
			}
			defer h1.Close()
			a := h1.LibP2P().Addrs()[0].String()
			h2, err := NewHost(context.Background(), HostConfig{Identity: testKey(t, 2), ListenAddrs: []string{a}, Federation: fed})
			if err == nil {
				h2.Close()
				t.Fatalf("second host on %s started", a)
			}
			if !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), a) {
				t.Fatalf("error %q does not name the address and the cause", err)
			}
		})
	}
}
