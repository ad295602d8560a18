package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// stopCoordinator stops the coordinator with SIGTERM and waits for it.
func (f *fed) stopCoordinator() {
	f.t.Helper()
	f.coord.signal(syscall.SIGTERM)
	select {
	case <-f.coord.done:
	case <-time.After(30 * time.Second):
		f.t.Fatal("coordinator did not stop on SIGTERM")
	}
}

// state reads the coordinator's state snapshot (once it has stopped).
func (f *fed) state() coordinator.State {
	f.t.Helper()
	fh, err := os.Open(filepath.Join(f.coordDir, "state.snapshot"))
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	fsm := coordinator.NewFSM()
	if err := fsm.Restore(fh); err != nil {
		f.t.Fatal(err)
	}
	return fsm.State()
}

// heldOutAccuracy evaluates params as a model of spec on the digits test split.
func heldOutAccuracy(t *testing.T, spec string, params []float32) float64 {
	t.Helper()
	_, test, err := data.Digits()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := model.ParseSpec(spec, 1, 1, 64, 10)
	if err != nil {
		t.Fatal(err)
	}
	net, err := model.New(sp)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.SetParams(params); err != nil {
		t.Fatal(err)
	}
	_, acc, err := net.EvaluateChecked(test.X, test.Y, test.N)
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

// TestFederation runs one coordinator and five worker processes for five
// securely aggregated rounds with distributed DP, while an unenrolled peer
// knocks and an enrolled one sends a malformed and an oversized frame.
// Accuracy must rise, the final model must be the ledger head and the
// ledger must verify.
func TestFederation(t *testing.T) {
	// Eight rounds: with DP noise σ = 0.5 over five workers one round's
	// model can dip; after eight the federation is well past 0.6.
	const rounds = 8
	f := newFed(t, fedOptions{workers: 5, rounds: rounds, noise: 0.5})
	f.startCoordinator()
	for i := range f.wnames {
		f.startWorker(i)
	}
	f.waitStatus("five workers online", 60*time.Second, func(s status) bool { return len(s.Online) == 5 })

	probeIntruder(t, f)
	probeBadFrames(t, f)

	st := f.waitStatus("all rounds committed and evaluated", 120*time.Second, func(s status) bool {
		return s.CommittedRounds == rounds && s.AccuracyRound == rounds
	})
	f.stopCoordinator()

	if _, err := run(t, "ledger", "verify", "--data", f.coordDir); err != nil {
		t.Fatalf("ledger verify: %v", err)
	}
	ledger, err := coordinator.ReadLedgerFile(filepath.Join(f.coordDir, coordinator.LedgerFileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(ledger) != rounds+1 {
		t.Fatalf("ledger has %d entries, want %d (initial model and %d rounds)", len(ledger), rounds+1, rounds)
	}
	head := ledger[len(ledger)-1]
	if head.Hash.String() != st.LedgerHead {
		t.Fatalf("status reported ledger head %s, the ledger file ends with %s", st.LedgerHead, head.Hash)
	}
	state := f.state()
	latest := state.Models[len(state.Models)-1]
	if latest.Hash != head.ModelHash || latest.Round != rounds {
		t.Fatalf("final model %s of round %d, ledger head names %s of round %d", latest.Hash, latest.Round, head.ModelHash, head.Round)
	}
	wantPeers := slices.Clone(f.wpeers)
	slices.Sort(wantPeers)
	for _, e := range ledger[1:] {
		got := make([]string, len(e.Participants))
		for i, p := range e.Participants {
			got[i] = string(p)
		}
		if !slices.Equal(got, wantPeers) {
			t.Fatalf("round %d participants %v, want all five workers", e.Round, got)
		}
		if !(e.Epsilon > 0) {
			t.Fatalf("round %d: epsilon %v with DP on", e.Round, e.Epsilon)
		}
	}
	// Federated accuracy (example-weighted over the workers' test splits)
	// rises from the first round to the last.
	if len(state.Metrics) != rounds {
		t.Fatalf("%d metrics recorded, want %d", len(state.Metrics), rounds)
	}
	first, last := state.Metrics[0].Accuracy, state.Metrics[rounds-1].Accuracy
	t.Logf("federated accuracy: round 1 %.3f, round %d %.3f; epsilon %.2f", first, rounds, last, head.Epsilon)
	if !(last > first) || last < 0.6 {
		t.Fatalf("federated accuracy %.3f → %.3f: want a rise to at least 0.6", first, last)
	}
	// The registry holds the final model's bytes under the ledger head's
	// hash, and that model beats the initial one on the digits test split.
	reg, err := coordinator.OpenRegistryReadOnly(filepath.Join(f.coordDir, "registry"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	b, err := reg.GetBytes(head.ModelHash)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(b) != head.ModelHash {
		t.Fatal("final model bytes do not hash to the ledger head's model hash")
	}
	final, err := coordinator.DecodeParams(b)
	if err != nil {
		t.Fatal(err)
	}
	initial, err := reg.Get(ledger[0].ModelHash)
	if err != nil {
		t.Fatal(err)
	}
	a0, a5 := heldOutAccuracy(t, "logreg", initial), heldOutAccuracy(t, "logreg", final)
	t.Logf("digits test accuracy: initial %.3f, final %.3f", a0, a5)
	if !(a5 > a0+0.2) {
		t.Fatalf("digits test accuracy %.3f → %.3f: the federation did not learn", a0, a5)
	}
}

// probeIntruder dials the coordinator with a key that is not in the
// federation file: the coordinator must refuse the connection.
func probeIntruder(t *testing.T, f *fed) {
	t.Helper()
	fedFile, err := p2p.LoadFederation(f.fedFile)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := p2p.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	// The intruder believes itself enrolled: its own federation lists it.
	members := append(fedFile.Members(), p2p.Member{Name: "intruder", ID: id, Role: p2p.RoleWorker})
	own, err := p2p.NewFederation("e2e", members, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h, err := p2p.NewHost(ctx, p2p.HostConfig{Identity: sk, Federation: own})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	coord := fedFile.Coordinators()[0]
	err = h.Connect(ctx, coord.AddrInfo())
	if err == nil {
		var resp pb.StatusResponse
		err = p2p.NewClient(h).Request(ctx, coord.ID, p2p.ProtoStatus, &pb.StatusRequest{}, &resp)
	}
	if err == nil {
		t.Fatal("an unenrolled peer got a status answer from the coordinator")
	}
	waitLog(t, f.coord, 10*time.Second, 50*time.Millisecond, id.String())
}

// probeBadFrames opens status streams with an enrolled identity and sends
// a malformed frame and an oversized frame: each stream must be reset
// without an answer, and the coordinator must log why.
func probeBadFrames(t *testing.T, f *fed) {
	t.Helper()
	fedFile, err := p2p.LoadFederation(f.fedFile)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := p2p.LoadIdentity(f.observer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h, err := p2p.NewHost(ctx, p2p.HostConfig{Identity: sk, Federation: fedFile})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	coord := fedFile.Coordinators()[0]
	if err := h.Connect(ctx, coord.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	send := func(raw []byte) error {
		s, err := p2p.NewClient(h).Open(ctx, coord.ID, p2p.ProtoStatus)
		if err != nil {
			return err
		}
		defer s.Reset()
		if _, err := s.Write(raw); err != nil {
			return nil // reset while writing: refused
		}
		_ = s.CloseWrite()
		var resp pb.StatusResponse
		if err := s.ReadMsg(&resp); err != nil {
			return nil
		}
		return errors.New("answered")
	}
	// A 6-byte frame whose body is not a StatusRequest (field 1 with wire
	// type 7, which does not exist).
	if err := send([]byte{6, 0x0f, 1, 2, 3, 4, 5}); err != nil {
		t.Fatalf("malformed frame: %v", err)
	}
	waitLog(t, f.coord, 10*time.Second, 50*time.Millisecond, "stream failed", string(p2p.ProtoStatus), "malformed")
	// A frame announcing 64 MiB.
	var big [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(big[:], 64<<20)
	if err := send(big[:n]); err != nil {
		t.Fatalf("oversized frame: %v", err)
	}
	waitLog(t, f.coord, 10*time.Second, 50*time.Millisecond, "stream failed", string(p2p.ProtoStatus), "exceeds the limit")
}

// TestWorkerKilledAndRestarted SIGKILLs a worker once it has been asked
// for its masked input of round 1 (it holds a large partition, so it is
// still training): the round completes through unmasking without it.
// The worker is restarted on the same store while that round is still in
// flight, and takes part in the next round.
func TestWorkerKilledAndRestarted(t *testing.T) {
	const victim = 4
	rows := make([]int, 5)
	rows[victim] = 150 // ~54,000 rows: seconds of training for mlp:32
	f := newFed(t, fedOptions{workers: 5, rounds: 3, model: "mlp:32", noise: 0.5, rows: rows, maxWeight: 1e5, epochs: 1, lr: 0.2})
	f.startCoordinator()
	for i := range f.wnames {
		f.startWorker(i)
	}
	waitLog(t, f.workers[victim], 90*time.Second, 5*time.Millisecond, "masked input requested", "round=1")
	f.workers[victim].kill()
	if strings.Contains(f.workers[victim].logText(), "sent masked input") {
		t.Fatal("the worker sent its masked input before it was killed; the test needs it killed while training")
	}
	// Restart it at once, on the same store, while round 1 is in flight.
	f.startWorker(victim)
	line := waitLog(t, f.coord, 60*time.Second, 50*time.Millisecond, "survivors committed", "round=1")
	if !strings.Contains(line, "survivors=4") || !strings.Contains(line, "dropped=1") {
		t.Fatalf("round 1 survivors line: %s", line)
	}
	waitLog(t, f.coord, 60*time.Second, 50*time.Millisecond, "model committed", "round=1")
	f.waitStatus("three rounds committed", 180*time.Second, func(s status) bool { return s.CommittedRounds == 3 })
	f.stopCoordinator()
	if _, err := run(t, "ledger", "verify", "--data", f.coordDir); err != nil {
		t.Fatalf("ledger verify: %v", err)
	}
	ledger, err := coordinator.ReadLedgerFile(filepath.Join(f.coordDir, coordinator.LedgerFileName))
	if err != nil {
		t.Fatal(err)
	}
	has := func(e coordinator.LedgerEntry) bool {
		return slices.Contains(e.Participants, coordinator.WorkerID(f.wpeers[victim]))
	}
	var r1 *coordinator.LedgerEntry
	for i := range ledger {
		if ledger[i].Round == 1 {
			r1 = &ledger[i]
		}
	}
	if r1 == nil {
		t.Fatal("round 1 is not in the ledger")
	}
	if has(*r1) || len(r1.Participants) != 4 {
		t.Fatalf("round 1 participants %v: want the four survivors only", r1.Participants)
	}
	last := ledger[len(ledger)-1]
	if !has(last) || len(last.Participants) != 5 {
		t.Fatalf("round %d participants %v: want the restarted worker back among five", last.Round, last.Participants)
	}
	state := f.state()
	for _, m := range state.Metrics {
		if math.IsNaN(m.Accuracy) {
			t.Fatalf("round %d accuracy NaN", m.Round)
		}
	}
	t.Logf("round 1 without the killed worker, round %d with it again; %s", last.Round, fmt.Sprint(len(ledger), " ledger entries"))
}
