package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/sovereign-fl/sovereign/coordinator"
)

func TestEntryRoundTrip(t *testing.T) {
	for _, e := range []Entry{
		{Command: []byte(`{"v":1}`)},
		{Command: []byte("c"), Blobs: [][]byte{{1, 2, 3}, {}, bytes.Repeat([]byte{9}, 1000)}},
	} {
		got, err := DecodeEntry(EncodeEntry(e))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Command, e.Command) || len(got.Blobs) != len(e.Blobs) {
			t.Fatalf("got %+v, want %+v", got, e)
		}
		for i := range e.Blobs {
			if !bytes.Equal(got.Blobs[i], e.Blobs[i]) {
				t.Fatalf("blob %d differs", i)
			}
		}
	}
}

func TestDecodeEntryMalformed(t *testing.T) {
	good := EncodeEntry(Entry{Command: []byte("cmd"), Blobs: [][]byte{{1, 2}}})
	huge := append([]byte("SVR\x01\x02"), binary.BigEndian.AppendUint32(nil, 1)...)
	huge = append(binary.BigEndian.AppendUint64(huge, 1<<40), 'x')
	cases := map[string]struct {
		data []byte
		want string
	}{
		"empty":         {nil, "too short"},
		"magic":         {[]byte("XYZ\x01\x01c"), "bad magic"},
		"version":       {[]byte("SVR\x09\x01c"), "version 9"},
		"kind":          {[]byte("SVR\x01\x07c"), "unknown kind 7"},
		"no command":    {[]byte("SVR\x01\x01"), "command missing"},
		"no count":      {[]byte("SVR\x01\x02ab"), "blob count missing"},
		"count too big": {append([]byte("SVR\x01\x02"), 0xff, 0xff, 0xff, 0xff), "cannot fit"},
		"blob length":   {huge, "beyond"},
		"truncated":     {good[:len(good)-4], "beyond"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeEntry(c.data)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want one containing %q", err, c.want)
			}
		})
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(EncodeEntry(Entry{Command: []byte("cmd"), Blobs: [][]byte{{1, 2}}}))
	f.Add([]byte("SVR\x01\x01{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEntry(data)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeEntry(e), data) {
			t.Fatal("decoded entry does not re-encode to its bytes")
		}
	})
}

// applyAll applies recorded commands to a replica FSM the way the leader
// wraps them, reading blobs from ref.
func applyAll(t *testing.T, f *FSM, cmds [][]byte, ref coordinator.ModelStore) {
	t.Helper()
	for i, cmd := range cmds {
		data, err := wrap(cmd, ref)
		if err != nil {
			t.Fatal(err)
		}
		if resp := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data}); resp != nil {
			t.Fatalf("command %d: %v", i, resp)
		}
	}
}

// TestFSMApplyMatchesCoordinator: the replica FSM reaches the state of the
// plain coordinator FSM, and its registry holds every model.
func TestFSMApplyMatchesCoordinator(t *testing.T) {
	cmds, ref, want := recordRun(t, testDriverConfig(2), 1)
	reg := coordinator.NewMemRegistry()
	f := NewFSM(coordinator.NewFSM(), reg, quietLogger())
	applyAll(t, f, cmds, ref)
	var a, b bytes.Buffer
	want.Snapshot(&a)
	f.Coordinator().Snapshot(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("replica FSM state differs from the coordinator FSM")
	}
	for _, h := range referencedBlobs(f.Coordinator().Studies()) {
		if _, err := reg.GetBytes(h); err != nil {
			t.Fatal(err)
		}
	}
	// The FSM's refusal is the response, as an error.
	resp := f.Apply(&raft.Log{Index: 99, Type: raft.LogCommand, Data: EncodeEntry(Entry{Command: cmds[1]})})
	if err, ok := resp.(error); !ok || !errors.Is(err, coordinator.ErrStale) {
		t.Fatalf("replayed command: response %v, want a stale error", resp)
	}
}

// TestFSMRefusesModelWithoutBytes: a ModelCommitted whose entry lacks the
// model bytes, or blobs on another command, are refused on every replica
// alike and change nothing.
func TestFSMRefusesModelWithoutBytes(t *testing.T) {
	cmds, _, _ := recordRun(t, testDriverConfig(1), 1)
	f := NewFSM(coordinator.NewFSM(), coordinator.NewMemRegistry(), quietLogger())
	// cmds[0] is the initial ModelCommitted.
	if c, _ := coordinator.DecodeCommand(cmds[0]); c.ModelCommitted == nil {
		t.Fatal("first command is not the initial model")
	}
	cases := map[string]Entry{
		"wrong bytes":        {Command: cmds[0], Blobs: [][]byte{{1, 2, 3, 4}}},
		"blobs on non-model": {Command: cmds[1], Blobs: [][]byte{{1}}},
	}
	for name, e := range cases {
		resp := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: EncodeEntry(e)})
		if resp == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Without blobs the command goes to the coordinator FSM alone: the
	// model commit is applied, but wrap never builds such an entry.
	if _, err := wrap(cmds[0], coordinator.NewMemRegistry()); err == nil {
		t.Error("wrap of a ModelCommitted without the model in the registry succeeded")
	}
	if _, ok := f.Coordinator().LatestModel(); ok {
		t.Error("a refused entry committed a model")
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func snapshotOf(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

// TestSnapshotRestore: a fresh replica restored from a snapshot has the same
// state and serves the same models; a damaged snapshot is refused and
// changes nothing.
func TestSnapshotRestore(t *testing.T) {
	cmds, ref, _ := recordRun(t, testDriverConfig(2), 2)
	f := NewFSM(coordinator.NewFSM(), coordinator.NewMemRegistry(), quietLogger())
	applyAll(t, f, cmds, ref)
	snap := snapshotOf(t, f)

	reg2 := coordinator.NewMemRegistry()
	g := NewFSM(coordinator.NewFSM(), reg2, quietLogger())
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotOf(t, g), snap) {
		t.Fatal("restored replica snapshots differently")
	}
	st := g.Coordinator().State()
	if len(st.Models) != 3 {
		t.Fatalf("%d models restored, want 3", len(st.Models))
	}
	for _, m := range st.Models {
		got, err := reg2.GetBytes(m.Hash)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ref.GetBytes(m.Hash)
		if !bytes.Equal(got, want) {
			t.Fatalf("model %s differs", m.Hash)
		}
	}

	// Damage: flip a byte in the last blob, cut the stream, drop a blob.
	stateLen := binary.BigEndian.Uint64(snap[len(snapMagic)+1:])
	blobsAt := len(snapMagic) + 1 + 8 + int(stateLen)
	flipped := bytes.Clone(snap)
	flipped[len(flipped)-1] ^= 1
	noBlobs := append(bytes.Clone(snap[:blobsAt]), 0, 0, 0, 0)
	cases := map[string]struct {
		data []byte
		want string
	}{
		"flipped blob": {flipped, "hashing to"},
		"truncated":    {snap[:len(snap)-10], "blob"},
		"missing blob": {noBlobs, "is missing"},
		"bad magic":    {append([]byte("XXXXXXX"), snap[7:]...), "bad magic"},
		"empty":        {nil, "header"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := NewFSM(coordinator.NewFSM(), coordinator.NewMemRegistry(), quietLogger())
			err := h.Restore(io.NopCloser(bytes.NewReader(c.data)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want one containing %q", err, c.want)
			}
			if _, ok := h.Coordinator().LatestModel(); ok {
				t.Fatal("a refused snapshot changed the state")
			}
		})
	}
}

// failingStore fails every write, as a full disk would.
type failingStore struct{ *coordinator.MemRegistry }

func (*failingStore) PutBytes([]byte) (coordinator.Hash, error) {
	return coordinator.Hash{}, errors.New("disk full")
}

// TestFSMStopsOnStorageError: a replica that cannot store a model stops
// applying instead of diverging, and says why.
func TestFSMStopsOnStorageError(t *testing.T) {
	cmds, ref, _ := recordRun(t, testDriverConfig(1), 1)
	f := NewFSM(coordinator.NewFSM(), &failingStore{coordinator.NewMemRegistry()}, quietLogger())
	data, err := wrap(cmds[0], ref)
	if err != nil {
		t.Fatal(err)
	}
	resp := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
	if err, ok := resp.(error); !ok || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("response %v, want the storage error", resp)
	}
	resp = f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: EncodeEntry(Entry{Command: cmds[1]})})
	if resp == nil || f.Err() == nil {
		t.Fatal("the FSM kept applying after a storage error")
	}
	if _, err := f.Snapshot(); err == nil {
		t.Fatal("a stopped FSM took a snapshot")
	}
}
