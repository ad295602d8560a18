package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	. "github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/coordtest"
	"github.com/sovereign-fl/sovereign/p2p"
)

// runRecorded runs a small federation and returns its commands.
func runRecorded(t *testing.T) (*FSM, [][]byte) {
	t.Helper()
	cfg := testConfig()
	c := coordtest.NewCohort(6, 21)
	c.DropAt(1, "w03", 2)
	f := NewFSM()
	rec := &recorder{fsm: f}
	d := newTestDriver(t, cfg, f, rec, NewMemRegistry(), c)
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f, rec.cmds
}

func snap(t *testing.T, f *FSM) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := f.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestFSMDeterminismAndSnapshot(t *testing.T) {
	f1, cmds := runRecorded(t)
	f2 := NewFSM()
	for _, b := range cmds {
		if err := f2.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	s1, s2 := snap(t, f1), snap(t, f2)
	if !bytes.Equal(s1, s2) {
		t.Fatal("two FSMs fed the same commands give different snapshots")
	}
	f3 := NewFSM()
	if err := f3.Restore(bytes.NewReader(s1)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap(t, f3), s1) {
		t.Fatal("snapshot → restore → snapshot differs")
	}
	// Replaying any command on the restored state is refused and changes
	// nothing.
	for i, b := range cmds {
		if err := f3.Apply(b); err == nil {
			t.Fatalf("replayed command %d accepted", i)
		}
	}
	if !bytes.Equal(snap(t, f3), s1) {
		t.Fatal("refused commands changed the state")
	}
}

func TestFSMRefusesMalformedAndStale(t *testing.T) {
	_, cmds := runRecorded(t)
	// Find the RoundStarted of round 2 and the commands before it.
	idx := -1
	for i, b := range cmds {
		c, _ := DecodeCommand(b)
		if c.RoundStarted != nil && c.RoundStarted.Round == 2 {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatal("no round 2")
	}
	f := NewFSM()
	for _, b := range cmds[:idx] {
		if err := f.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	before := snap(t, f)
	start, _ := DecodeCommand(cmds[idx])
	enc := func(c Command) []byte {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mod := func(fn func(rs *RoundStarted)) []byte {
		rs := *start.RoundStarted
		rs.Announce = CloneAnnounce(&rs.Announce)
		fn(&rs)
		return enc(Command{RoundStarted: &rs})
	}
	cases := map[string]struct {
		cmd  []byte
		want string
	}{
		"garbage":        {[]byte("{not json"), "malformed"},
		"unknown kind":   {[]byte(`{"v":1,"kind":99}`), "unknown kind"},
		"wrong version":  {[]byte(`{"v":2,"kind":1}`), "version"},
		"missing body":   {[]byte(`{"v":1,"kind":3}`), "payload missing"},
		"skipped round":  {mod(func(rs *RoundStarted) { rs.Round, rs.Announce.Round, rs.Announce.SecAgg.Round = 3, 3, 3 }), "round 3"},
		"old model":      {mod(func(rs *RoundStarted) { rs.Announce.ModelHash[0] ^= 1 }), "not the latest"},
		"unsorted":       {mod(func(rs *RoundStarted) { s := rs.Announce.Sampled; s[0], s[1] = s[1], s[0] }), "sorted"},
		"online too low": {mod(func(rs *RoundStarted) { rs.OnlineCount = 1 }), "online count"},
		"stage first":    {enc(Command{StageClosed: &StageClosed{Round: 2, Stage: 0}}), "round 2"},
		"survivors":      {enc(Command{SurvivorsCommitted: &SurvivorsCommitted{Round: 1, Survivors: []uint32{1, 2}}}), "round 1"},
		"metrics stale":  {enc(Command{MetricsRecorded: &MetricsRecorded{Round: 1, Accuracy: 0.5}}), "round 1"},
		"metrics range":  {enc(Command{MetricsRecorded: &MetricsRecorded{Round: 1, Accuracy: 1.5}}), "round 1"},
		"genesis again":  {enc(Command{ModelCommitted: &ModelCommitted{Round: 0, Prev: f.Ledger()[len(f.Ledger())-1].Hash}}), "initial model"},
		"bad prev":       {enc(Command{ModelCommitted: &ModelCommitted{Round: 2}}), "ledger head"},
	}
	for name, tc := range cases {
		err := f.Apply(tc.cmd)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", name, err, tc.want)
		}
		if !bytes.Equal(snap(t, f), before) {
			t.Fatalf("%s: refused command changed the state", name)
		}
	}
	// Out-of-order stage inside a round.
	if err := f.Apply(cmds[idx]); err != nil {
		t.Fatal(err)
	}
	err := f.Apply(enc(Command{StageClosed: &StageClosed{Round: 2, Stage: 1, Completed: []uint32{1}}}))
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Round != 2 || ce.Kind != KindStageClosed || !errors.Is(err, ErrStale) {
		t.Fatalf("stage 1 before stage 0: %v", err)
	}
	// Consistency signatures before the survivors are committed.
	err = f.Apply(enc(Command{ConsistencyCommitted: &ConsistencyCommitted{Round: 2, Signatures: []secagg.ConsistencyResponse{{Round: 2, From: 1}}}}))
	if !errors.As(err, &ce) || ce.Kind != KindConsistencyCommitted || !errors.Is(err, ErrStale) {
		t.Fatalf("consistency before survivors: %v", err)
	}
	// Replay the rest of round 2 up to its survivors, then malformed
	// signature sets are refused and the real one is accepted.
	var consistency []byte
	for _, b := range cmds[idx+1:] {
		c, _ := DecodeCommand(b)
		if c.ConsistencyCommitted != nil {
			consistency = b
			break
		}
		if err := f.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	if consistency == nil {
		t.Fatal("round 2 committed no consistency signatures")
	}
	cc, _ := DecodeCommand(consistency)
	good := cc.ConsistencyCommitted
	for name, bad := range map[string]func(m *ConsistencyCommitted){
		"not a survivor": func(m *ConsistencyCommitted) { m.Signatures[0].From = 99 },
		"unsorted":       func(m *ConsistencyCommitted) { m.Signatures[0], m.Signatures[1] = m.Signatures[1], m.Signatures[0] },
		"other round":    func(m *ConsistencyCommitted) { m.Signatures[0].Round = 1 },
		"below t":        func(m *ConsistencyCommitted) { m.Signatures = m.Signatures[:1] },
	} {
		m := *good
		m.Signatures = slices.Clone(good.Signatures)
		bad(&m)
		if err := f.Apply(enc(Command{ConsistencyCommitted: &m})); err == nil {
			t.Errorf("consistency signatures %s: accepted", name)
		}
	}
	if err := f.Apply(consistency); err != nil {
		t.Fatalf("the recorded signatures: %v", err)
	}
}

func TestLedgerVerifyNamesTamperedEntry(t *testing.T) {
	f, _ := runRecorded(t)
	l := f.Ledger()
	if err := VerifyLedger(l); err != nil {
		t.Fatal(err)
	}
	for i := range l {
		for _, tamper := range []func(e *LedgerEntry){
			func(e *LedgerEntry) { e.Epsilon += 1 },
			func(e *LedgerEntry) { e.ModelHash[3] ^= 1 },
			func(e *LedgerEntry) { e.Participants = append(e.Participants, "zz") },
		} {
			bad := f.Ledger()
			tamper(&bad[i])
			err := VerifyLedger(bad)
			var le *LedgerError
			if !errors.As(err, &le) || le.Index != i {
				t.Fatalf("entry %d tampered: got %v", i, err)
			}
		}
	}
	// Re-hashing a tampered entry breaks the next link.
	bad := f.Ledger()
	bad[1].Epsilon = 0.5
	bad[1].Hash = bad[1].ComputeHash()
	var le *LedgerError
	if err := VerifyLedger(bad); !errors.As(err, &le) || le.Index != 2 {
		t.Fatalf("rehashed entry 1: got %v", err)
	}
	// File round trip.
	p := filepath.Join(t.TempDir(), LedgerFileName)
	if err := WriteLedgerFile(p, l); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLedgerFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyLedger(back); err != nil || back[len(back)-1].Hash != l[len(l)-1].Hash {
		t.Fatalf("file round trip: %v", err)
	}
}

func TestRegistryRoundTripAndCorruption(t *testing.T) {
	dir := t.TempDir()
	r, err := OpenRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	params := []float32{1.5, -2, float32(math.Pi), 0, float32(math.Inf(1))}
	h, err := r.Put(params)
	if err != nil {
		t.Fatal(err)
	}
	if h != HashParams(params) {
		t.Fatal("hash is not SHA-256 of the little-endian bytes")
	}
	got, err := r.Get(h)
	if err != nil {
		t.Fatal(err)
	}
	for i := range params {
		if math.Float32bits(got[i]) != math.Float32bits(params[i]) {
			t.Fatalf("param %d: %v != %v", i, got[i], params[i])
		}
	}
	rc, n, err := r.Open(p2p.Hash(h))
	if err != nil || n != 20 {
		t.Fatalf("open: %v %d", err, n)
	}
	rc.Close()
	var missing Hash
	missing[0] = 9
	if _, err := r.Get(missing); !errors.Is(err, p2p.ErrBlobNotFound) || !strings.Contains(err.Error(), missing.String()) {
		t.Fatalf("missing: %v", err)
	}
	if err := RegistryPutRaw(r, h, []byte{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(h); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), h.String()) {
		t.Fatalf("corrupt: %v", err)
	}
	if _, _, err := r.Open(p2p.Hash(h)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt open: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: data persisted.
	r2, err := OpenRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	h2, _ := r2.Put([]float32{7})
	if v, err := r2.Get(h2); err != nil || v[0] != 7 {
		t.Fatalf("reopen: %v %v", v, err)
	}
	if _, err := DecodeParams([]byte{1, 2, 3}); err == nil {
		t.Fatal("odd length accepted")
	}
}
