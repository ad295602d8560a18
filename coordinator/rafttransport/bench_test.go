package rafttransport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// modelBlob returns n float32 parameters drawn from seed, little-endian.
func modelBlob(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(rng.NormFloat64())))
	}
	return b
}

var benchSizes = []struct {
	name   string
	floats int
}{
	{"1M-float32", 1 << 20},
	{"10M-float32", 10 << 20},
}

// benchCluster starts 3 replicas. Raft's timing is widened from its
// defaults (1 s heartbeat, 500 ms leader lease) to 2 s and 2 s: a 40 MB
// AppendEntries shares the peers' one multiplexed connection with the
// heartbeats, which then queue behind it, and with a 500 ms lease the
// leader stepped down mid-commit (see docs/bench-raft.md).
func benchCluster(b *testing.B, store string) []*replica {
	o := clusterOpts{timeout: 60 * time.Second, heartbeat: 2 * time.Second, lease: 2 * time.Second}
	switch store {
	case "inmem":
		o.inmem = true
	case "badger-sync":
		o.sync = true
	case "badger-nosync":
	default:
		b.Fatalf("unknown store kind %q", store)
	}
	reps := makeCluster(b, 3, o)
	waitLeader(b, reps)
	return reps
}

// checkSame fails the benchmark unless all replicas applied the same
// sequence of n commands.
func checkSame(b *testing.B, reps []*replica, n int) {
	b.Helper()
	waitFor(b, "replicas to apply every command", time.Minute, func() bool {
		for _, r := range reps {
			if len(r.fsm.list()) < n {
				return false
			}
		}
		return true
	})
	ref := reps[0].fsm.list()
	for _, r := range reps[1:] {
		got := r.fsm.list()
		for i := range ref {
			if got[i] != ref[i] {
				b.Fatalf("%s differs from %s at command %d", r.id, reps[0].id, i)
			}
		}
	}
}

// BenchmarkCommitModel measures the latency of committing a whole model as
// one Raft command through a 3-replica cluster over libp2p (Noise, TCP,
// loopback): Apply returns once a majority has stored the entry and the
// leader's FSM has applied it. Stores: raft.InmemStore (network and Raft
// only), badger without and with synced writes (production). The baseline
// in the same run is a 32-byte command (a model hash) through the same
// cluster with synced badger.
func BenchmarkCommitModel(b *testing.B) {
	b.Run("baseline-32B", func(b *testing.B) {
		reps := benchCluster(b, "badger-sync")
		defer stopAll(b, reps)
		cmd := make([]byte, 32)
		n := 0
		b.ResetTimer()
		for b.Loop() {
			binary.BigEndian.PutUint64(cmd, uint64(n))
			if err := leader(reps).raft.Apply(cmd, time.Minute).Error(); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
		checkSame(b, reps, n)
	})
	for _, sz := range benchSizes {
		for _, store := range []string{"inmem", "badger-nosync", "badger-sync"} {
			b.Run(sz.name+"/"+store, func(b *testing.B) {
				blob := modelBlob(sz.floats, 42)
				reps := benchCluster(b, store)
				defer stopAll(b, reps)
				b.SetBytes(int64(len(blob)))
				n := 0
				b.ResetTimer()
				for b.Loop() {
					// A new model each round, in a fresh buffer: raft.InmemStore
					// keeps the command slice itself and may resend it later.
					b.StopTimer()
					cmd := append([]byte(nil), blob...)
					binary.BigEndian.PutUint64(cmd, uint64(n))
					b.StartTimer()
					if err := leader(reps).raft.Apply(cmd, time.Minute).Error(); err != nil {
						b.Fatalf("apply %d-byte command: %v", len(blob), err)
					}
					n++
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
				checkSame(b, reps, n)
			})
		}
	}
}

// BenchmarkCommitModelChunked commits a model through Raft by value but cut
// into 256 KiB commands, all handed to Apply at once (Raft batches up to
// MaxAppendEntries of them per AppendEntries request); the time is until
// the last one is committed. Chunks stay below go-msgpack's 256 KiB read
// step, so decoding is linear in the model's size (see
// BenchmarkMsgpackDecodeEntry). Synced badger stores.
func BenchmarkCommitModelChunked(b *testing.B) {
	const chunk = 256 << 10
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			blob := modelBlob(sz.floats, 42)
			reps := benchCluster(b, "badger-sync")
			defer stopAll(b, reps)
			b.SetBytes(int64(len(blob)))
			n := 0
			for b.Loop() {
				binary.BigEndian.PutUint64(blob, uint64(n)) // badger copies each entry on StoreLogs
				l := leader(reps)
				var futures []raft.ApplyFuture
				for off := 0; off < len(blob); off += chunk {
					futures = append(futures, l.raft.Apply(blob[off:min(off+chunk, len(blob))], time.Minute))
				}
				for i, f := range futures {
					if err := f.Error(); err != nil {
						b.Fatalf("apply chunk %d of %d: %v", i, len(futures), err)
					}
				}
				n += len(futures)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
			checkSame(b, reps, n)
		})
	}
}

// blobProto is a benchmark-only protocol that stands in for the chunked
// model transfer of package p2p: the sender writes an 8-byte length and the
// blob; the receiver stores it in a file named by its SHA-256, fsyncs it,
// and answers with the hash.
const blobProto protocol.ID = "/sovereign/bench-blob/1.0.0"

func serveBlobs(b *testing.B, r *replica, dir string) {
	r.host.SetStreamHandler(blobProto, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(time.Minute))
		var hdr [8]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			s.Reset()
			return
		}
		n := binary.BigEndian.Uint64(hdr[:])
		if n > 1<<30 {
			s.Reset()
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(s, buf); err != nil {
			s.Reset()
			return
		}
		sum, err := storeBlob(dir, buf)
		if err != nil {
			s.Reset()
			return
		}
		_, _ = s.Write(sum[:])
	})
}

func storeBlob(dir string, blob []byte) ([32]byte, error) {
	sum := sha256.Sum256(blob)
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%x", sum)))
	if err != nil {
		return sum, err
	}
	if _, err := f.Write(blob); err != nil {
		f.Close()
		return sum, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return sum, err
	}
	return sum, f.Close()
}

func pushBlob(ctx context.Context, r *replica, to peer.ID, blob []byte, want [32]byte) error {
	s, err := r.host.NewStream(ctx, to, blobProto)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(time.Minute))
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(len(blob)))
	if _, err := s.Write(hdr[:]); err != nil {
		s.Reset()
		return err
	}
	if _, err := s.Write(blob); err != nil {
		s.Reset()
		return err
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return err
	}
	var got [32]byte
	if _, err := io.ReadFull(s, got[:]); err != nil {
		s.Reset()
		return err
	}
	if !bytes.Equal(got[:], want[:]) {
		return fmt.Errorf("peer %s stored hash %x, want %x", to, got, want)
	}
	return nil
}

// BenchmarkCommitModelByHash measures the alternative to BenchmarkCommitModel:
// the leader stores the model blob in a file named by its SHA-256 and pushes
// it to both followers over its own libp2p stream in parallel (each stores
// and fsyncs it), then commits only the 32-byte hash through Raft. It waits
// for every follower, which is stricter than Raft's majority.
func BenchmarkCommitModelByHash(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			blob := modelBlob(sz.floats, 42)
			reps := benchCluster(b, "badger-sync")
			defer stopAll(b, reps)
			dirs := map[*replica]string{}
			for _, r := range reps {
				dirs[r] = b.TempDir()
				serveBlobs(b, r, dirs[r])
			}
			b.SetBytes(int64(len(blob)))
			n := 0
			b.ResetTimer()
			for b.Loop() {
				binary.BigEndian.PutUint64(blob, uint64(n))
				l := leader(reps)
				sum := sha256.Sum256(blob)
				var wg sync.WaitGroup
				errs := make(chan error, len(reps))
				for _, r := range reps {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if r == l {
							_, err := storeBlob(dirs[r], blob)
							errs <- err
							return
						}
						errs <- pushBlob(context.Background(), l, r.host.ID(), blob, sum)
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						b.Fatalf("blob push: %v", err)
					}
				}
				if err := l.raft.Apply(sum[:], time.Minute).Error(); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
			checkSame(b, reps, n)
		})
	}
}

// BenchmarkLibp2pPush is the network baseline for the two benchmarks above:
// one model blob over one libp2p stream (Noise, yamux, TCP loopback) to one
// peer that reads it and answers its SHA-256, with no disk and no Raft.
func BenchmarkLibp2pPush(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			blob := modelBlob(sz.floats, 42)
			src, dst := newHost(b, 201), newHost(b, 202)
			defer src.Close()
			defer dst.Close()
			src.Peerstore().AddAddrs(dst.ID(), dst.Addrs(), time.Hour)
			dst.SetStreamHandler(blobProto, func(s network.Stream) {
				defer s.Close()
				var hdr [8]byte
				if _, err := io.ReadFull(s, hdr[:]); err != nil {
					s.Reset()
					return
				}
				h := sha256.New()
				if _, err := io.CopyN(h, s, int64(binary.BigEndian.Uint64(hdr[:]))); err != nil {
					s.Reset()
					return
				}
				_, _ = s.Write(h.Sum(nil))
			})
			from := &replica{host: src}
			b.SetBytes(int64(len(blob)))
			n := 0
			for b.Loop() {
				binary.BigEndian.PutUint64(blob, uint64(n))
				if err := pushBlob(context.Background(), from, dst.ID(), blob, sha256.Sum256(blob)); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
		})
	}
}

// BenchmarkMsgpackDecodeEntry isolates the cost that dominates large
// entries in BenchmarkCommitModel: raft.NetworkTransport decodes every
// AppendEntries request with go-msgpack's default handle, which reads a
// byte string in 256 KiB steps and copies everything read so far at each
// step (hashicorp/go-msgpack v2.1.5 codec/decode.go, decByteSlice with
// decInferLen), so an n-byte entry costs O(n²/256 KiB) of copying. The
// baseline in the same run reads the same bytes with io.ReadFull.
func BenchmarkMsgpackDecodeEntry(b *testing.B) {
	for _, sz := range benchSizes {
		blob := modelBlob(sz.floats, 42)
		var enc bytes.Buffer
		req := raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 1, Term: 1, Data: blob}}}
		if err := codec.NewEncoder(&enc, &codec.MsgpackHandle{}).Encode(&req); err != nil {
			b.Fatal(err)
		}
		b.Run(sz.name+"/readfull", func(b *testing.B) {
			b.SetBytes(int64(enc.Len()))
			buf := make([]byte, enc.Len())
			for b.Loop() {
				if _, err := io.ReadFull(bufio.NewReaderSize(bytes.NewReader(enc.Bytes()), 256<<10), buf); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(sz.name+"/msgpack", func(b *testing.B) {
			b.SetBytes(int64(enc.Len()))
			for b.Loop() {
				var got raft.AppendEntriesRequest
				dec := codec.NewDecoder(bufio.NewReaderSize(bytes.NewReader(enc.Bytes()), 256<<10), &codec.MsgpackHandle{})
				if err := dec.Decode(&got); err != nil {
					b.Fatal(err)
				}
				if len(got.Entries) != 1 || len(got.Entries[0].Data) != len(blob) {
					b.Fatalf("decoded %d entries", len(got.Entries))
				}
			}
		})
	}
}
