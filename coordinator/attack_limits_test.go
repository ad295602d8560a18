package coordinator_test

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"math/rand"
	"runtime"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/p2p/pb"
	"github.com/sovereign-fl/sovereign/wire"
)

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// TestAttackOversizedMaskedInput is security review M2: an enrolled worker
// answers stage 2 with a header announcing 2^28+1 words (and, in the second
// case, streams them) for a round whose model has 10 parameters. The
// coordinator must refuse at the header, naming the worker and the field,
// and allocate nothing near the announced gigabyte: the bytes it allocates
// during the whole call stay within a few MiB.
func TestAttackOversizedMaskedInput(t *testing.T) {
	for _, sendBody := range []bool{false, true} {
		name := "header only"
		if sendBody {
			name = "header and body"
		}
		t.Run(name, func(t *testing.T) { attackOversizedMasked(t, sendBody) })
	}
}

func attackOversizedMasked(t *testing.T, sendBody bool) {
	r := rand.New(rand.NewSource(5))
	logger := slog.New(slog.DiscardHandler)
	csk, cid := keyOf(t, r)
	wsk, wid := keyOf(t, r)
	members := []p2p.Member{
		{Name: "coord", ID: cid, Role: p2p.RoleCoordinator, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}},
		{Name: "evil", ID: wid, Role: p2p.RoleWorker},
	}
	fed, err := p2p.NewFederation("test", members, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := p2p.NewHost(context.Background(), p2p.HostConfig{Identity: csk, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Federation: fed, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	cohort, err := coordinator.NewNetCohort(ch, coordinator.NetCohortOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	wh, err := p2p.NewHost(context.Background(), p2p.HostConfig{Identity: wsk, Federation: fed, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	const n = secagg.MaxDim + 1
	// The body's hash, computed before the measured call.
	sum := make([]byte, 32)
	if sendBody {
		h := sha256.New()
		_, _ = io.Copy(h, io.LimitReader(zeroReader{}, 4*n))
		sum = h.Sum(nil)
	}
	err = wh.Handle(p2p.ProtocolSpec{ID: wire.ProtoMasked, Roles: []p2p.Role{p2p.RoleCoordinator}, Timeout: time.Minute}, func(ctx context.Context, s *p2p.Stream) error {
		var m pb.EncryptedShares
		if err := s.ReadMsg(&m); err != nil {
			return err
		}
		if err := s.WriteMsg(&pb.MaskedInputHeader{Round: m.Round, FromIndex: m.ToIndex, VectorLength: n, ElementBits: 32, BlobSha256: sum, BlobSize: 4 * n}); err != nil {
			return err
		}
		if !sendBody {
			if err := s.WriteMsg(&pb.BlobHeader{Kind: pb.BlobKind_BLOB_KIND_MASKED_INPUT, Size: 4 * n, ChunkSize: p2p.DefaultChunkSize}); err != nil {
				return err
			}
			<-ctx.Done()
			return ctx.Err()
		}
		_, err := p2p.WriteBlob(s, &pb.BlobHeader{Kind: pb.BlobKind_BLOB_KIND_MASKED_INPUT, Size: 4 * n}, io.LimitReader(zeroReader{}, 4*n))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Connect(context.Background(), ch.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	// The refusal must come from the header check, long before this
	// deadline; the deadline only bounds a regression.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const dim = 10
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	mi, err := cohort.MaskedInput(ctx, coordinator.WorkerID(wid.String()), secagg.ShareBundle{Round: 1, To: 3}, dim)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("MaskedInput: %d words, err %v; %d KiB allocated during the call (round needs %d words)", len(mi.Vector), err, allocated>>10, dim+1)
	if err == nil {
		t.Fatalf("oversized masked input accepted: %d words", len(mi.Vector))
	}
	for _, want := range []string{wid.String(), "round 1", "vector_length", "268435457"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if ctx.Err() != nil {
		t.Errorf("refused only at the deadline, not at the header: %v", err)
	}
	// Everything the process allocated during the call, not a sampled
	// peak: the coordinator's peak heap cannot exceed it. It includes the
	// attacking host's own send buffers (it runs in this process); the
	// announced vector alone would be 1 GiB.
	if allocated > 16<<20 {
		t.Errorf("coordinator allocated %d MiB for one oversized header, want a few MiB at most", allocated>>20)
	}
}
