package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/p2p"
	"github.com/sovereign-fl/sovereign/p2p/pb"
	"github.com/sovereign-fl/sovereign/worker"
)

// netFed is a coordinator and n workers on loopback libp2p hosts, each
// worker a real worker.Node served by worker.Server.
type netFed struct {
	coordHost *p2p.Host
	cohort    *coordinator.NetCohort
	hosts     []*p2p.Host
	servers   []*worker.Server
	cancel    context.CancelFunc
	nodes     []*worker.Node
	// coordHosts and cohorts are every coordinator replica's host and
	// cohort (coordHosts[0] is coordHost).
	coordHosts []*p2p.Host
	cohorts    []*coordinator.NetCohort
}

func keyOf(t testing.TB, r *rand.Rand) (crypto.PrivKey, peer.ID) {
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

func chacha(seed uint64) *mrand.ChaCha8 {
	var s [32]byte
	for i := range s {
		s[i] = byte(seed >> (8 * (i % 8)) * uint64(i+1))
	}
	return mrand.NewChaCha8(s)
}

func newNetFed(t *testing.T, n int, seed int64) *netFed {
	t.Helper()
	return newNetFedOpts(t, n, seed, netFedOptions{})
}

// netFedOptions: with auth every worker authenticates its SecAgg+
// messages with its libp2p identity (worker.WithIdentity) in the
// federation named "test"; coords is the number of coordinator hosts
// (default 1), each enrolled and saying HelloAck.
type netFedOptions struct {
	auth   bool
	coords int
	// plan, if set, is every coordinator's NetCohortOptions.Plan.
	plan func(online int) *pb.StudyPlan
}

// newNetFedOpts is newNetFed with options.
func newNetFedOpts(t *testing.T, n int, seed int64, o netFedOptions) *netFed {
	t.Helper()
	auth := o.auth
	if o.coords < 1 {
		o.coords = 1
	}
	r := rand.New(rand.NewSource(seed))
	logger := slog.New(slog.NewTextHandler(testLogOut, nil))
	csks := make([]crypto.PrivKey, o.coords)
	var members []p2p.Member
	for k := range o.coords {
		csk, cid := keyOf(t, r)
		csks[k] = csk
		name := "coord"
		if k > 0 {
			name = fmt.Sprintf("coord%d", k)
		}
		members = append(members, p2p.Member{Name: name, ID: cid, Role: p2p.RoleCoordinator, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}})
	}
	wsk := make([]crypto.PrivKey, n)
	for i := range n {
		sk, id := keyOf(t, r)
		wsk[i] = sk
		members = append(members, p2p.Member{Name: fmt.Sprintf("w%d", i), ID: id, Role: p2p.RoleWorker})
	}
	fed, err := p2p.NewFederation("test", members, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &netFed{}
	for k := range o.coords {
		ch, err := p2p.NewHost(context.Background(), p2p.HostConfig{Identity: csks[k], ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Federation: fed, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ch.Close() })
		// The federation now knows the coordinator's real address.
		members[k].Addrs = nil
		for _, a := range ch.Addrs() {
			m := ma.StringCast(a)
			m, _ = ma.SplitLast(m) // drop /p2p/<id>
			members[k].Addrs = append(members[k].Addrs, m)
		}
		f.coordHosts = append(f.coordHosts, ch)
	}
	fed, err = p2p.NewFederation("test", members, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range f.coordHosts {
		if err := ch.SetFederation(fed); err != nil {
			t.Fatal(err)
		}
		c, err := coordinator.NewNetCohort(ch, coordinator.NetCohortOptions{Logger: logger, Plan: o.plan})
		if err != nil {
			t.Fatal(err)
		}
		f.cohorts = append(f.cohorts, c)
	}
	f.coordHost, f.cohort = f.coordHosts[0], f.cohorts[0]
	train, test, err := data.Digits()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	t.Cleanup(cancel)
	var runs sync.WaitGroup
	for i := range n {
		h, err := p2p.NewHost(context.Background(), p2p.HostConfig{Identity: wsk[i], ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, Federation: fed, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		st, err := worker.OpenStore(t.TempDir(), worker.StoreOptions{Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		cfg := &worker.Config{Name: fmt.Sprintf("w%d", i), Identity: "unused", Federation: "unused", Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			Dataset: "digits", Store: "unused", Policy: worker.Policy{MaxEpsilon: 1e6, MinCohort: 2}}
		sub := func(d *data.Dataset) *data.Dataset {
			lo, hi := i*d.N/n, (i+1)*d.N/n
			idx := make([]int, 0, hi-lo)
			for k := lo; k < hi; k++ {
				idx = append(idx, k)
			}
			s, err := d.Subset(fmt.Sprintf("shard%d", i), idx)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		opts := []worker.Option{worker.WithID(h.ID().String()), worker.WithRand(chacha(uint64(seed)*31 + uint64(i)))}
		if auth {
			opts = append(opts, worker.WithIdentity(wsk[i], "test", fed.Lookup))
		}
		node, err := worker.NewNode(cfg, st, sub(train), sub(test), logger, opts...)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := worker.NewServer(h, node, st, worker.ServeOptions{Logger: logger, Seed: int64(i), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, ConfirmTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		runs.Add(1)
		go func() {
			defer runs.Done()
			srv.Run(ctx)
		}()
		f.hosts, f.servers, f.nodes = append(f.hosts, h), append(f.servers, srv), append(f.nodes, node)
	}
	// Runs first (cleanups are LIFO): the workers stop redialling before
	// any host closes (libp2p panics dialling on a closed swarm).
	t.Cleanup(func() {
		cancel()
		runs.Wait()
	})
	waitFor(t, 20*time.Second, func() bool { return len(f.cohort.Online()) == n }, "all workers online")
	return f
}

func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func netConfig() coordinator.Config {
	c := coordinator.DefaultConfig()
	c.Model, c.InC, c.InH, c.InW, c.Classes = "logreg", 1, 8, 8, 10
	c.Rounds = 3
	c.WorkersPerRound = 4
	c.MinWorkers = 3
	c.MaxWeight = 1000
	c.ClipRange = 2
	c.Train = coordinator.TrainParams{Epochs: 1, Batch: 16, LR: 0.3}
	c.StageTimeout = 10 * time.Second
	c.PollInterval = 20 * time.Millisecond
	c.DP = coordinator.DPParams{Clip: 2, Noise: 0.3, MinClients: 3}
	c.Seed = 3
	return c
}

// TestNetCohortRounds runs whole rounds of SecAgg+ over libp2p between a
// coordinator and four real workers, and checks the result: models
// committed, ledger intact, federated accuracy recorded and rising.
func TestNetCohortRounds(t *testing.T) {
	f := newNetFed(t, 4, 1)
	fsm := coordinator.NewFSM()
	reg := coordinator.NewMemRegistry()
	if err := f.coordHost.ServeBlobs(reg, p2p.RoleWorker); err != nil {
		t.Fatal(err)
	}
	d, err := coordinator.NewDriver(netConfig(), fsm, coordinator.NewLocal(fsm), reg, f.cohort, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st := fsm.State()
	if st.CommittedRounds() != 3 {
		t.Fatalf("%d rounds committed, want 3", st.CommittedRounds())
	}
	if err := coordinator.VerifyLedger(st.Ledger); err != nil {
		t.Fatal(err)
	}
	for _, e := range st.Ledger[1:] {
		if len(e.Participants) != 4 {
			t.Fatalf("round %d: %d participants, want 4", e.Round, len(e.Participants))
		}
	}
	if len(st.Metrics) != 3 {
		t.Fatalf("%d metrics recorded, want 3", len(st.Metrics))
	}
	if first, last := st.Metrics[0].Accuracy, st.Metrics[2].Accuracy; !(last > first) || last < 0.5 {
		t.Fatalf("accuracy %v → %v: not rising to at least 0.5", first, last)
	}
	head, _ := fsm.LatestModel()
	if st.Head().ModelHash != head.Hash {
		t.Fatal("ledger head does not name the latest model")
	}
}

// TestNetCohortRefusal checks that a worker's refusal arrives as a
// *RefusalError naming the worker and the round, and that an unknown
// worker ID is an error naming it.
func TestNetCohortRefusal(t *testing.T) {
	f := newNetFed(t, 2, 2)
	w := coordinator.WorkerID(f.hosts[0].ID().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Unmask for a round this worker never heard of: refused.
	_, err := f.cohort.Unmask(ctx, w, secaggUnmask(9))
	var rf *coordinator.RefusalError
	if !errors.As(err, &rf) || rf.Worker != w || rf.Round != 9 {
		t.Fatalf("want a refusal of round 9 by %s, got %v", w, err)
	}
	if _, err := f.cohort.Evaluate(ctx, "not-a-peer", 1, [32]byte{}); err == nil {
		t.Fatal("unknown worker accepted")
	}
	// A worker that drops off is no longer online.
	f.hosts[1].Close()
	waitFor(t, 10*time.Second, func() bool { return len(f.cohort.Online()) == 1 }, "worker 1 offline")
	// Status answers any enrolled member.
	if err := coordinator.ServeStatus(f.coordHost, "coord", func() coordinator.Status {
		return coordinator.Status{Round: 4, Stage: "idle", Online: f.cohort.Online(), Accuracy: 0.5}
	}, nil); err != nil {
		t.Fatal(err)
	}
	var resp pb.StatusResponse
	if err := p2p.NewClient(f.hosts[0]).Request(ctx, f.coordHost.ID(), p2p.ProtoStatus, &pb.StatusRequest{IncludeMembers: true}, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Round != 4 || resp.Accuracy != 0.5 || len(resp.Members) != 3 {
		t.Fatalf("status %v", &resp)
	}
}

// A coordinator replica that is still building its study's driver has no
// plan yet: its Hellos are refused as "starting" and the workers say Hello
// again after their backoff, so no worker is online (and sampled) before
// its plan check has arrived. Here the first 2n Hellos find no plan; every
// worker then joins with a plan it cannot take part in (a data schema it
// does not have) and is listed as incompatible.
func TestHelloDeferredUntilPlan(t *testing.T) {
	const n = 3
	var calls, maxOnline atomic.Int64
	plan := func(online int) *pb.StudyPlan {
		if calls.Add(1) <= 2*n {
			for {
				m := maxOnline.Load()
				if int64(online) <= m || maxOnline.CompareAndSwap(m, int64(online)) {
					break
				}
			}
			return nil
		}
		return &pb.StudyPlan{ModelSpec: "logreg", NumParams: 650, PlannedRounds: 3, Cohort: n, SchemaSha256: bytes.Repeat([]byte{7}, 32)}
	}
	f := newNetFedOpts(t, n, 11, netFedOptions{plan: plan})
	if m := maxOnline.Load(); m != 1 {
		t.Fatalf("while Hellos were deferred a Hello saw %d workers online, want 0", m-1)
	}
	if inc := f.cohort.Incompatible(); len(inc) != n {
		t.Fatalf("incompatible workers %v: want all %d, each checked against the plan", inc, n)
	}
	t.Logf("%d Hellos, the first %d deferred; all %d workers online and checked", calls.Load(), 2*n, n)
}
