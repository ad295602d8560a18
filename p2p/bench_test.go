package p2p

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// discardSink verifies blobs and throws the content away.
type discardSink struct{ done chan error }

func (d discardSink) Begin(context.Context, Member, proto.Message, *pb.BlobHeader) (io.Writer, error) {
	return io.Discard, nil
}

func (d discardSink) End(_ Member, _ *pb.BlobHeader, _ Hash, err error) error {
	d.done <- err
	return nil
}

// BenchmarkBlobThroughput compares the chunked, hashed blob stream over a
// libp2p connection (Noise + yamux on TCP, and QUIC) with the raw loopback
// TCP throughput of the same bytes, measured in the same run. raw-tcp-blob
// is the blob protocol (framing and SHA-256 at both ends) over plain TCP,
// which separates the protocol's cost from libp2p's; sha256 is the cost of
// hashing the same bytes once, the ceiling of any verified transfer.
func BenchmarkBlobThroughput(b *testing.B) {
	const size = 32 << 20
	data := randomBytes(42, size)

	b.Run("raw-tcp", func(b *testing.B) {
		conn, peerConn := tcpPair(b)
		go func() {
			// Read each blob fully, then acknowledge it with one byte.
			buf := make([]byte, 256<<10)
			for {
				if _, err := io.CopyBuffer(io.Discard, io.LimitReader(peerConn, size), buf); err != nil {
					return
				}
				if _, err := peerConn.Write([]byte{1}); err != nil {
					return
				}
			}
		}()
		ack := make([]byte, 1)
		b.SetBytes(size)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := io.Copy(conn, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(conn, ack); err != nil {
				b.Fatal(err)
			}
		}
	})

	// raw-tcp-1MiB: the same, written 1 MiB at a time (the blob chunk
	// size), so that only framing, hashing and encryption differ from the
	// blob cases.
	b.Run("raw-tcp-1MiB", func(b *testing.B) {
		conn, peerConn := tcpPair(b)
		go func() {
			buf := make([]byte, 1<<20)
			for {
				if _, err := io.CopyBuffer(io.Discard, io.LimitReader(peerConn, size), buf); err != nil {
					return
				}
				if _, err := peerConn.Write([]byte{1}); err != nil {
					return
				}
			}
		}()
		ack := make([]byte, 1)
		b.SetBytes(size)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for off := 0; off < size; off += 1 << 20 {
				if _, err := conn.Write(data[off : off+1<<20]); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := io.ReadFull(conn, ack); err != nil {
				b.Fatal(err)
			}
		}
	})

	// sha256: hashing the bytes once, no network; each blob is hashed at
	// both ends, so this bounds what any verified transfer can reach here.
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			_ = HashOf(data)
		}
	})

	b.Run("raw-tcp-blob", func(b *testing.B) {
		conn, peerConn := tcpPair(b)
		go func() {
			fr := newFrameReader(peerConn, 64<<10)
			for {
				if _, _, err := ReceiveBlob(fr, -1, func(*pb.BlobHeader) (io.Writer, error) { return io.Discard, nil }); err != nil {
					return
				}
				if _, err := peerConn.Write([]byte{1}); err != nil {
					return
				}
			}
		}()
		ack := make([]byte, 1)
		b.SetBytes(size)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := WriteBlob(conn, &pb.BlobHeader{Name: "bench", Size: size}, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(conn, ack); err != nil {
				b.Fatal(err)
			}
		}
	})

	for _, tr := range []string{"tcp", "quic"} {
		name := "libp2p-blob"
		if tr == "quic" {
			name = "libp2p-blob-quic"
		}
		if tr == "tcp" {
			// libp2p-stream: the bytes over one libp2p stream (Noise +
			// yamux on TCP), no framing and no hashing: the transport's
			// own ceiling, against which the blob protocol's cost shows.
			b.Run("libp2p-stream", func(b *testing.B) {
				fed := testFederation(b, twoNodes)
				hosts := startHosts(b, fed, twoNodes, tr)
				coord, worker := hosts[0], hosts[1]
				const pid protocol.ID = "/sovereign/bench-raw/1.0.0"
				coord.LibP2P().SetStreamHandler(pid, func(s network.Stream) {
					buf := make([]byte, 1<<20)
					if _, err := io.CopyBuffer(io.Discard, io.LimitReader(s, size), buf); err != nil {
						_ = s.Reset()
						return
					}
					_, _ = s.Write([]byte{1})
					_ = s.Close()
				})
				ack := make([]byte, 1)
				b.SetBytes(size)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					s, err := worker.LibP2P().NewStream(context.Background(), coord.ID(), pid)
					if err != nil {
						b.Fatal(err)
					}
					for off := 0; off < size; off += 1 << 20 {
						if _, err := s.Write(data[off : off+1<<20]); err != nil {
							b.Fatal(err)
						}
					}
					if _, err := io.ReadFull(s, ack); err != nil {
						b.Fatal(err)
					}
					_ = s.Close()
				}
			})
			// libp2p-fetch: FetchBlob of the bytes, served by hash from a
			// content-addressed store (the model-fetch path): hashed once,
			// by the fetcher.
			b.Run("libp2p-fetch", func(b *testing.B) {
				fed := testFederation(b, twoNodes)
				hosts := startHosts(b, fed, twoNodes, tr)
				coord, worker := hosts[0], hosts[1]
				store := NewMemBlobStore()
				sum := store.Put(data)
				if err := coord.ServeBlobs(store, RoleWorker); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(size)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := FetchBlob(context.Background(), worker, coord.ID(), sum, io.Discard, size); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(name, func(b *testing.B) {
			fed := testFederation(b, twoNodes)
			hosts := startHosts(b, fed, twoNodes, tr)
			coord, worker := hosts[0], hosts[1]
			const pid protocol.ID = "/sovereign/bench/1.0.0"
			sink := discardSink{done: make(chan error, 1)}
			if err := coord.HandleBlobs(BlobSpec{ID: pid, Roles: AllRoles(), MaxSize: size}, sink); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := SendBlob(context.Background(), worker, coord.ID(), pid, &pb.BlobHeader{Name: "bench", Size: size}, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
				if err := <-sink.done; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(b *testing.B) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	peerConn, ok := <-accepted
	if !ok {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { conn.Close(); peerConn.Close() })
	return conn, peerConn
}
