package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// quietLogger drops everything below warnings.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{NoSync: true, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	return s
}

func mkLog(rng *rand.Rand, index uint64, size int) *raft.Log {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	l := &raft.Log{Index: index, Term: 1 + index/10, Type: raft.LogCommand, Data: data}
	if index%3 == 0 {
		l.Extensions = []byte(fmt.Sprintf("ext-%d", index))
		l.AppendedAt = time.Unix(1700000000+int64(index), int64(index*7919)%1e9)
	}
	if index%5 == 0 {
		l.Type = raft.LogConfiguration
	}
	return l
}

func mkLogs(rng *rand.Rand, from, to uint64, size int) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, mkLog(rng, i, size))
	}
	return out
}

func sameLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt) && a.AppendedAt.IsZero() == b.AppendedAt.IsZero()
}

func checkBounds(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	l, err := s.LastIndex()
	if err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	if f != first || l != last {
		t.Fatalf("bounds = (%d, %d), want (%d, %d)", f, l, first, last)
	}
}

func checkPresent(t *testing.T, s *Store, want []*raft.Log) {
	t.Helper()
	for _, w := range want {
		var got raft.Log
		if err := s.GetLog(w.Index, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", w.Index, err)
		}
		if !sameLog(&got, w) {
			t.Fatalf("GetLog(%d) = %+v, want %+v", w.Index, got, *w)
		}
	}
}

func checkAbsent(t *testing.T, s *Store, idx ...uint64) {
	t.Helper()
	for _, i := range idx {
		var got raft.Log
		if err := s.GetLog(i, &got); err != raft.ErrLogNotFound {
			t.Fatalf("GetLog(%d) error = %v, want raft.ErrLogNotFound", i, err)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []*raft.Log{
		{},
		{Index: ^uint64(0), Term: ^uint64(0), Type: raft.LogBarrier},
		{Index: 7, Term: 3, Data: []byte{}, Extensions: []byte{1}},
		{Index: 8, Term: 3, AppendedAt: time.Unix(-5, 999_999_999)},
		{Index: 9, Term: 3, AppendedAt: time.Date(2262, 5, 1, 0, 0, 0, 1, time.UTC)},
	}
	for i := 0; i < 50; i++ {
		cases = append(cases, mkLog(rng, uint64(i), rng.IntN(300)))
	}
	for _, c := range cases {
		buf := appendLog(nil, c)
		if len(buf) > encodedLogSize(c) {
			t.Fatalf("index %d: encoded %d bytes, bound says %d", c.Index, len(buf), encodedLogSize(c))
		}
		var got raft.Log
		if err := decodeLog(buf, &got); err != nil {
			t.Fatalf("index %d: decode: %v", c.Index, err)
		}
		if !sameLog(&got, c) {
			t.Fatalf("round trip: got %+v, want %+v", got, *c)
		}
		// Every strict prefix must be rejected, never accepted or panicking.
		for n := 0; n < len(buf); n++ {
			if err := decodeLog(buf[:n], &got); err == nil {
				t.Fatalf("index %d: prefix of %d/%d bytes decoded without error", c.Index, n, len(buf))
			}
		}
	}
}

func TestCodecRejectsBadValues(t *testing.T) {
	good := appendLog(nil, &raft.Log{Index: 4, Term: 2, Data: []byte("abc"), AppendedAt: time.Unix(10, 5)})
	cases := map[string]struct {
		buf  []byte
		want string
	}{
		"version":  {append([]byte{9}, good[1:]...), "version 9"},
		"trailing": {append(append([]byte(nil), good...), 0), "trailing"},
		"flag":     {append(appendLog(nil, &raft.Log{Index: 4})[:6], 7), "AppendedAt flag"},
		"length":   {[]byte{1, 4, 2, 0, 200, 1, 'x'}, "field Data"},
	}
	for name, c := range cases {
		var l raft.Log
		err := decodeLog(c.buf, &l)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v, want one containing %q", name, err, c.want)
		}
	}
}

func TestEmptyStore(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	checkBounds(t, s, 0, 0)
	checkAbsent(t, s, 0, 1, 100)
	if err := s.DeleteRange(1, 10); err != nil {
		t.Fatalf("DeleteRange on empty store: %v", err)
	}
	checkBounds(t, s, 0, 0)
}

func TestStoreAndDeleteRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := openTest(t, t.TempDir())
	defer s.Close()

	one := mkLog(rng, 1, 10)
	if err := s.StoreLog(one); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 1, 1)
	logs := mkLogs(rng, 2, 100, 64)
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 1, 100)
	checkPresent(t, s, append([]*raft.Log{one}, logs...))
	checkAbsent(t, s, 0, 101)

	// Prefix deletion, as raft does after a snapshot.
	if err := s.DeleteRange(1, 40); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 41, 100)
	checkAbsent(t, s, 1, 20, 40)
	checkPresent(t, s, logs[39:])

	// Suffix deletion, as raft does when a follower's log conflicts.
	if err := s.DeleteRange(90, 100); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 41, 89)
	checkAbsent(t, s, 90, 100)

	// A range wider than what is stored.
	if err := s.DeleteRange(80, 1000); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 41, 79)

	// Overwrite with a new term, as a follower does.
	over := &raft.Log{Index: 79, Term: 99, Data: []byte("new")}
	if err := s.StoreLog(over); err != nil {
		t.Fatal(err)
	}
	checkPresent(t, s, []*raft.Log{over})
	checkBounds(t, s, 41, 79)

	// Everything.
	if err := s.DeleteRange(0, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 0, 0)
	checkAbsent(t, s, 41, 79)

	// A gap after a snapshot restore is allowed by raft.LogStore.
	if err := s.StoreLogs(mkLogs(rng, 500, 510, 8)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 500, 510)
}

func TestLargeBatchIsSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	s, err := Open(t.TempDir(), Options{NoSync: true, Logger: quietLogger(), MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// 4000 entries of 1 KiB (4 MB) cannot fit one transaction of a 1 MiB
	// memtable (limit 15% of it), so StoreLogs must split.
	logs := mkLogs(rng, 1, 4000, 1024)
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs of 4000 entries: %v", err)
	}
	checkBounds(t, s, 1, 4000)
	checkPresent(t, s, logs)
	// One big entry goes to the value log.
	big := mkLog(rng, 4001, 4<<20)
	if err := s.StoreLog(big); err != nil {
		t.Fatalf("StoreLog of 4 MiB entry: %v", err)
	}
	checkPresent(t, s, []*raft.Log{big})
	// The split path must reject a nil entry without storing anything of it.
	if err := s.StoreLogs([]*raft.Log{mkLog(rng, 4002, 1), nil}); err == nil || !strings.Contains(err.Error(), "entry 1 of 2 is nil") {
		t.Fatalf("StoreLogs with nil entry: err = %v", err)
	}
	checkBounds(t, s, 1, 4001)
	if err := s.DeleteRange(1, 4001); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 0, 0)
	if err := s.RunValueLogGC(0.5); err != nil {
		t.Fatalf("RunValueLogGC: %v", err)
	}
}

func TestStableStore(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	if _, err := s.Get([]byte("missing")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get(missing) error = %v, want exactly \"not found\"", err)
	}
	// Match raft.InmemStore: Get of a missing key fails, GetUint64 is 0.
	mem := raft.NewInmemStore()
	_, memErr := mem.Get([]byte("missing"))
	if memErr == nil || memErr.Error() != ErrKeyNotFound.Error() {
		t.Fatalf("raft.InmemStore.Get(missing) = %v; our ErrKeyNotFound %q no longer matches", memErr, ErrKeyNotFound)
	}
	if v, err := s.GetUint64([]byte("missing")); err != nil || v != 0 {
		t.Fatalf("GetUint64(missing) = %d, %v; want 0, nil", v, err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-2" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get([]byte("empty")); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get(empty) = %v, %v; want empty non-nil slice", v, err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 1<<40+3); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 1<<40+3 {
		t.Fatalf("GetUint64 = %d, %v", v, err)
	}
	// Stable keys and log keys do not collide.
	if err := s.Set(logKey(1)[len(logPrefix):], []byte("x")); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 0, 0)
	// A stable value of the wrong width gives an error naming the key.
	if _, err := s.GetUint64([]byte("LastVoteCand")); err == nil || !strings.Contains(err.Error(), "LastVoteCand") {
		t.Fatalf("GetUint64 of 6-byte value: err = %v", err)
	}
}

func TestSurvivesReopen(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	dir := t.TempDir()
	s := openTest(t, dir)
	logs := mkLogs(rng, 1, 300, 200)
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 50); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 12); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n3")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	var l raft.Log
	if err := s.GetLog(60, &l); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetLog after Close = %v, want ErrClosed", err)
	}

	s = openTest(t, dir)
	defer s.Close()
	checkBounds(t, s, 51, 300)
	checkPresent(t, s, logs[50:])
	checkAbsent(t, s, 1, 50)
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 12 {
		t.Fatalf("GetUint64 after reopen = %d, %v", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n3" {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
}

func TestCorruptValueNamesKey(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Data: []byte("a")}, {Index: 2, Term: 1, Data: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	// Damage the stored values behind the store's back.
	bad := map[uint64][]byte{
		1: {1, 1, 1, 0, 50, 'x'},                        // Data length past the end
		2: appendLog(nil, &raft.Log{Index: 3, Term: 1}), // records another index
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		for i, v := range bad {
			if err := txn.Set(logKey(i), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range bad {
		var l raft.Log
		err := s.GetLog(i, &l)
		if err == nil || err == raft.ErrLogNotFound {
			t.Fatalf("GetLog(%d) of corrupt value: err = %v", i, err)
		}
		if want := fmt.Sprintf("index %d (key %x)", i, logKey(i)); !strings.Contains(err.Error(), want) {
			t.Fatalf("GetLog(%d) error %q does not name %q", i, err, want)
		}
	}
	s.Close()
}

// TestConcurrentReadersAndWriters runs raft's access pattern under the race
// detector: one appender, one compactor deleting prefixes, and readers.
func TestConcurrentReadersAndWriters(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	payload := func(i uint64) []byte { return []byte(fmt.Sprintf("entry-%d", i)) }
	const total = 1500
	done := make(chan struct{})
	errs := make(chan error, 4)
	go func() { // appender
		defer close(done)
		for i := uint64(1); i <= total; i += 10 {
			var batch []*raft.Log
			for j := i; j < i+10; j++ {
				batch = append(batch, &raft.Log{Index: j, Term: 1, Data: payload(j)})
			}
			if err := s.StoreLogs(batch); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // compactor
		for {
			select {
			case <-done:
				errs <- nil
				return
			default:
			}
			last, _ := s.LastIndex()
			if last > 100 {
				if err := s.DeleteRange(0, last-100); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	for r := 0; r < 2; r++ {
		go func() { // readers
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				last, _ := s.LastIndex()
				if last == 0 {
					continue
				}
				// The compactor always keeps the newest 100 entries.
				var l raft.Log
				if err := s.GetLog(last, &l); err != nil {
					// Compacted meanwhile is allowed only if the writer has
					// since moved more than 100 entries past it (a reader
					// descheduled under load).
					if now, _ := s.LastIndex(); errors.Is(err, raft.ErrLogNotFound) && now > last+100 {
						continue
					}
					errs <- fmt.Errorf("GetLog(%d): %w", last, err)
					return
				}
				if l.Index != last || string(l.Data) != string(payload(last)) {
					errs <- fmt.Errorf("GetLog(%d) = index %d data %q", last, l.Index, l.Data)
					return
				}
			}
		}()
	}
	<-done
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	last, _ := s.LastIndex()
	if last != total {
		t.Fatalf("LastIndex = %d after appending up to %d", last, total)
	}
	if err := s.DeleteRange(0, last-100); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, last-99, last)
}
