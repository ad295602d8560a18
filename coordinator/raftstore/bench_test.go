package raftstore

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/raft"
)

// BenchmarkStoreLogs measures StoreLogs throughput of a batch of 64 entries
// of 1 KiB (raft's default MaxAppendEntries) and of one 4 MiB entry (one
// float32 model of 1M parameters), against raft.InmemStore as the baseline
// in the same run. Each iteration appends at fresh indexes.
func BenchmarkStoreLogs(b *testing.B) {
	shapes := []struct {
		name        string
		batch, size int
	}{
		{"64x1KiB", 64, 1 << 10},
		{"1x4MiB", 1, 4 << 20},
	}
	for _, sh := range shapes {
		rng := rand.New(rand.NewPCG(11, uint64(sh.size)))
		data := make([]byte, sh.size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		mkBatch := func(next uint64) []*raft.Log {
			logs := make([]*raft.Log, sh.batch)
			for i := range logs {
				logs[i] = &raft.Log{Index: next + uint64(i), Term: 1, Type: raft.LogCommand, Data: data}
			}
			return logs
		}
		run := func(b *testing.B, st raft.LogStore) {
			b.SetBytes(int64(sh.batch * sh.size))
			next := uint64(1)
			for b.Loop() {
				if err := st.StoreLogs(mkBatch(next)); err != nil {
					b.Fatal(err)
				}
				next += uint64(sh.batch)
			}
		}
		b.Run(fmt.Sprintf("%s/inmem", sh.name), func(b *testing.B) { run(b, raft.NewInmemStore()) })
		for _, sync := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/badger-sync=%v", sh.name, sync), func(b *testing.B) {
				s, err := Open(b.TempDir(), Options{NoSync: !sync, Logger: quietLogger()})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				run(b, s)
			})
		}
		// The default ValueThreshold (512 B) against 64 KiB, which keeps
		// 1 KiB entries in the LSM tree.
		b.Run(sh.name+"/badger-sync=false-threshold=64KiB", func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{NoSync: true, Logger: quietLogger(), ValueThreshold: 64 << 10})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			run(b, s)
		})
	}
}
