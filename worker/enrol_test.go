package worker

import (
	"context"
	"log/slog"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sovereign-fl/sovereign/p2p"
)

func enrolKey(t *testing.T, r *rand.Rand) (crypto.PrivKey, peer.ID) {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(r)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, id
}

// TestUnenrolledWorkerSaysWhy: a coordinator whose federation file lacks
// the worker refuses it in its connection gater, after the handshake; the
// worker's log then says it is not enrolled (or the federation file
// differs) instead of a bare "connection failed". Real libp2p hosts on
// loopback, TCP and QUIC.
func TestUnenrolledWorkerSaysWhy(t *testing.T) {
	for _, transport := range []string{"tcp", "quic"} {
		t.Run(transport, func(t *testing.T) {
			r := rand.New(rand.NewSource(15))
			csk, cid := enrolKey(t, r)
			wsk, wid := enrolKey(t, r)
			_, other := enrolKey(t, r)
			listen := "/ip4/127.0.0.1/tcp/0"
			if transport == "quic" {
				listen = "/ip4/127.0.0.1/udp/0/quic-v1"
			}
			placeholder := []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}
			coordFed, err := p2p.NewFederation("f", []p2p.Member{{Name: "coord", ID: cid, Role: p2p.RoleCoordinator, Addrs: placeholder},
				{Name: "someone-else", ID: other, Role: p2p.RoleWorker}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var coordLog syncBuffer
			ch, err := p2p.NewHost(context.Background(), p2p.HostConfig{Identity: csk, ListenAddrs: []string{listen}, Federation: coordFed,
				Logger: slog.New(slog.NewTextHandler(&coordLog, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			var addrs []ma.Multiaddr
			for _, a := range ch.Addrs() {
				m, _ := ma.SplitLast(ma.StringCast(a))
				addrs = append(addrs, m)
			}
			// The worker's federation file enrols it; the coordinator's does not.
			workerFed, err := p2p.NewFederation("f", []p2p.Member{{Name: "coord", ID: cid, Role: p2p.RoleCoordinator, Addrs: addrs},
				{Name: "inst0", ID: wid, Role: p2p.RoleWorker}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			wh, err := p2p.NewHost(context.Background(), p2p.HostConfig{Identity: wsk, Federation: workerFed})
			if err != nil {
				t.Fatal(err)
			}
			defer wh.Close()
			st, err := OpenStore(t.TempDir(), StoreOptions{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			train, test := shard(t, 0, 1)
			var log syncBuffer
			logger := slog.New(slog.NewTextHandler(&log, nil))
			node, err := NewNode(testConfig("inst0"), st, train, test, logger, WithID(wid.String()))
			if err != nil {
				t.Fatal(err)
			}
			srv, err := NewServer(wh, node, st, ServeOptions{Logger: logger, Seed: 1, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { srv.Run(ctx); close(done) }()
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(log.String(), ErrNotEnrolled.Error()) {
				if time.Now().After(deadline) {
					cancel()
					<-done
					t.Fatalf("worker log never said %q:\n%s", ErrNotEnrolled, log.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			<-done
			line := ""
			for _, l := range strings.Split(log.String(), "\n") {
				if strings.Contains(l, ErrNotEnrolled.Error()) {
					line = l
					break
				}
			}
			for _, want := range []string{"coordinator coord", wid.String(), "cannot reach coordinator"} {
				if !strings.Contains(line, want) {
					t.Errorf("line %q does not name %q", line, want)
				}
			}
		})
	}
}
