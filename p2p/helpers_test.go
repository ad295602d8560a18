package p2p

import (
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// testKey returns a deterministic Ed25519 key for seed.
func testKey(t testing.TB, seed int64) crypto.PrivKey {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.New(rand.NewSource(seed)))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func testID(t testing.TB, seed int64) peer.ID {
	t.Helper()
	id, err := peer.IDFromPrivateKey(testKey(t, seed))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// testNode is one planned member of a test federation.
type testNode struct {
	name string
	role Role
	seed int64
}

// listenAddrs returns loopback listen addresses for transport "tcp" or "quic".
func listenAddrs(transport string) []string {
	if transport == "quic" {
		return []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	return []string{"/ip4/127.0.0.1/tcp/0"}
}

// placeholderAddr is a coordinator address used only to satisfy validation
// before the real listen address is known.
var placeholderAddr = ma.StringCast("/ip4/127.0.0.1/tcp/1")

// testFederation builds a federation of nodes.
func testFederation(t testing.TB, nodes []testNode) *Federation {
	t.Helper()
	ms := make([]Member, len(nodes))
	for i, n := range nodes {
		ms[i] = Member{Name: n.name, ID: testID(t, n.seed), Role: n.role}
		if n.role == RoleCoordinator {
			ms[i].Addrs = []ma.Multiaddr{placeholderAddr}
		}
	}
	f, err := NewFederation("test", ms, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// startHosts starts one host per node, all enrolled in fed, listening on
// loopback, and connects every host to the first one.
func startHosts(t testing.TB, fed *Federation, nodes []testNode, transport string, opts ...Option) []*Host {
	t.Helper()
	hosts := make([]*Host, len(nodes))
	for i, n := range nodes {
		h, err := NewHost(context.Background(), HostConfig{
			Identity:    testKey(t, n.seed),
			ListenAddrs: listenAddrs(transport),
			Federation:  fed,
		}, opts...)
		if err != nil {
			t.Fatalf("host %s: %v", n.name, err)
		}
		t.Cleanup(func() { h.Close() })
		hosts[i] = h
	}
	for _, h := range hosts[1:] {
		connect(t, h, hosts[0])
	}
	return hosts
}

func connect(t testing.TB, from, to *Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := from.Connect(ctx, to.AddrInfo()); err != nil {
		t.Fatalf("connect %s -> %s: %v", from.ID(), to.ID(), err)
	}
}

// recv waits for a value on ch, failing the test after a generous deadline.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic(fmt.Sprintf("unreachable: %s", what))
	}
}
