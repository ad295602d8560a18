package worker

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
)

func openTestStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	a := &Announce{Round: 3, ModelSpec: "2nn", NumParams: 5, Sampled: []string{"a", "b"}, Epsilon: math.Inf(1)}
	mi := secagg.MaskedInput{Round: 3, From: 2, Vector: []uint32{1, 2, 3, math.MaxUint32}}
	if err := s.PutClient(3, []byte("state-1"), a); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMasked(3, []byte("state-2"), mi); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAnswer(3, []byte("state-3"), Answer{Survivors: []uint32{1, 2}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutClient(4, []byte("other"), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir)
	defer s.Close()
	got, ok, err := s.Announce(3)
	if err != nil || !ok || got.ModelSpec != "2nn" || !math.IsInf(got.Epsilon, 1) || !slices.Equal(got.Sampled, a.Sampled) {
		t.Fatalf("announce %+v %v %v", got, ok, err)
	}
	st, ok, err := s.Client(3)
	if err != nil || !ok || string(st) != "state-3" {
		t.Fatalf("client state %q %v %v", st, ok, err)
	}
	m, ok, err := s.Masked(3)
	if err != nil || !ok || m.From != 2 || !slices.Equal(m.Vector, mi.Vector) {
		t.Fatalf("masked %+v %v %v", m, ok, err)
	}
	ans, ok, err := s.Answer(3)
	if err != nil || !ok || !slices.Equal(ans.Survivors, []uint32{1, 2}) {
		t.Fatalf("answer %+v %v %v", ans, ok, err)
	}
	if _, ok, err := s.Masked(4); ok || err != nil {
		t.Fatalf("round 4 masked: %v %v", ok, err)
	}
	if r, _ := s.Rounds(); !slices.Equal(r, []uint64{3, 4}) {
		t.Fatalf("rounds %v", r)
	}

	// Commit keeps the largest ε and drops rounds up to the committed one.
	if err := s.Commit(3, 2.5); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(2, 1.0); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Rounds(); !slices.Equal(r, []uint64{4}) {
		t.Fatalf("rounds after commit %v", r)
	}
	if c, ok, err := s.Committed(); c != 3 || !ok || err != nil {
		t.Fatalf("committed %d %v %v", c, ok, err)
	}
	if e, err := s.Epsilon(); e != 2.5 || err != nil {
		t.Fatalf("ε %v %v", e, err)
	}
	if err := s.Commit(5, math.NaN()); err == nil || !strings.Contains(err.Error(), "round 5") {
		t.Fatalf("NaN ε: %v", err)
	}
	n, err := s.GC(10)
	if err != nil || n != 1 {
		t.Fatalf("GC removed %d, %v", n, err)
	}
}

// TestStoreCorruptionNamed damages records in several ways: each read gives
// a *CorruptError naming the key, never a panic, and a node reading a
// damaged client state says so.
func TestStoreCorruptionNamed(t *testing.T) {
	cl := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	a := cl.announce(2, maxExamples)
	if _, err := cl.nodes[0].Advertise(a); err != nil {
		t.Fatal(err)
	}
	st := cl.stores[0]
	raw := func(key string, mutate func([]byte) []byte) {
		t.Helper()
		err := st.db.Update(func(txn *badger.Txn) error {
			var v []byte
			if it, err := txn.Get([]byte(key)); err == nil {
				v, _ = it.ValueCopy(nil)
			}
			return txn.Set([]byte(key), mutate(v))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	flip := func(v []byte) []byte { v[len(v)-1] ^= 0x40; return v }
	short := func([]byte) []byte { return []byte{1, 2} }
	version := func(v []byte) []byte { v[0] = 9; return v }
	rewrap := func(payload []byte) func([]byte) []byte {
		return func([]byte) []byte { return wrapRecord(payload) }
	}
	cases := []struct {
		key    string
		mutate func([]byte) []byte
		read   func() error
		reason string
	}{
		{roundKey(2, recClient), flip, func() error { _, _, err := st.Client(2); return err }, "checksum"},
		{roundKey(2, recClient), short, func() error { _, _, err := st.Client(2); return err }, "shorter"},
		{roundKey(2, recAnnounce), version, func() error { _, _, err := st.Announce(2); return err }, "version 9"},
		{roundKey(2, recAnnounce), rewrap([]byte("not gob")), func() error { _, _, err := st.Announce(2); return err }, ""},
		{roundKey(2, recMasked), rewrap([]byte{0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 9}), func() error { _, _, err := st.Masked(2); return err }, "9 words"},
		{roundKey(2, recAnswer), rewrap([]byte("{")), func() error { _, _, err := st.Answer(2); return err }, ""},
		{keyCommitted, rewrap([]byte{1}), func() error { _, _, err := st.Committed(); return err }, "want 8"},
		{keyEpsilon, rewrap([]byte{0xff, 0xf8, 0, 0, 0, 0, 0, 1}), func() error { _, err := st.Epsilon(); return err }, "ε = NaN"},
	}
	for _, tc := range cases {
		raw(tc.key, tc.mutate)
		err := tc.read()
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.key) || !strings.Contains(ce.Reason, tc.reason) {
			t.Errorf("%s: got %v", tc.key, err)
		}
	}

	// A node restarted on a store whose client state is damaged names the
	// record instead of answering.
	cl2 := newCluster(t, 4, func(i int, c *Config) { c.Policy.MaxEpsilon = math.Inf(1) })
	if _, err := cl2.nodes[0].Advertise(a); err != nil {
		t.Fatal(err)
	}
	cl2.restart(0)
	st = cl2.stores[0]
	raw(roundKey(2, recClient), rewrap([]byte("garbage that is no gob stream")))
	_, err := cl2.nodes[0].ShareKeys(secagg.KeyBroadcast{Round: 2, To: 1})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Key != roundKey(2, recClient) {
		t.Fatalf("damaged client state: %v", err)
	}
	// A damaged committed-round record stops every stage with its name.
	raw(keyCommitted, short)
	if _, err := cl2.nodes[0].Advertise(a); !errors.As(err, &ce) || ce.Key != keyCommitted {
		t.Fatalf("damaged commit record: %v", err)
	}
}

func TestMaskedEncoding(t *testing.T) {
	for _, mi := range []secagg.MaskedInput{
		{Round: 0, From: 1, Vector: []uint32{}},
		{Round: math.MaxUint64, From: math.MaxUint32, Vector: []uint32{0, 1, 0xdeadbeef}},
	} {
		got, err := decodeMasked(encodeMasked(mi))
		if err != nil || got.Round != mi.Round || got.From != mi.From || !slices.Equal(got.Vector, mi.Vector) {
			t.Fatalf("round trip of %+v: %+v %v", mi, got, err)
		}
	}
	b := encodeMasked(secagg.MaskedInput{Round: 1, From: 1, Vector: []uint32{1, 2}})
	for n := range len(b) {
		if _, err := decodeMasked(b[:n]); err == nil {
			t.Fatalf("truncated to %d bytes decoded", n)
		}
	}
}

func TestMemStore(t *testing.T) {
	s, err := OpenMemStore()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutClient(1, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Client(1); string(v) != "x" || !ok || err != nil {
		t.Fatalf("%q %v %v", v, ok, err)
	}
	if _, err := OpenStore("", StoreOptions{}); err == nil {
		t.Fatal("empty folder accepted")
	}
}
