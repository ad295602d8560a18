package worker

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/data"
	"github.com/sovereign-fl/sovereign/model"
)

const testSpec = "mlp:16"

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	digitsOnce              sync.Once
	digitsTrain, digitsTest *data.Dataset
	digitsErr               error
)

// shard returns the i-th of n contiguous shards of the digits train and
// test splits.
func shard(t testing.TB, i, n int) (train, test *data.Dataset) {
	t.Helper()
	digitsOnce.Do(func() { digitsTrain, digitsTest, digitsErr = data.Digits() })
	if digitsErr != nil {
		t.Fatal(digitsErr)
	}
	part := func(d *data.Dataset) *data.Dataset {
		lo, hi := i*d.N/n, (i+1)*d.N/n
		idx := make([]int, 0, hi-lo)
		for r := lo; r < hi; r++ {
			idx = append(idx, r)
		}
		s, err := d.Subset(fmt.Sprintf("%s-shard%d", d.Name, i), idx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return part(digitsTrain), part(digitsTest)
}

func testConfig(name string) *Config {
	c := &Config{
		Name: name, Identity: "unused.key", Federation: "federation.toml",
		Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Dataset: "digits", Store: "store", LogLevel: "info",
		Policy: Policy{MaxEpsilon: 10, MinCohort: 2, AcceptedModels: []string{testSpec, "2nn"}},
		path:   name + ".toml",
	}
	return c
}

func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	for i := range 4 {
		seed = seed*6364136223846793005 + 1442695040888963407
		for j := range 8 {
			s[i*8+j] = byte(seed >> (8 * j))
		}
	}
	return rand.NewChaCha8(s)
}

// cluster is n workers of one test, each with its own store.
type cluster struct {
	t      testing.TB
	n      int
	dirs   []string
	stores []*Store
	nodes  []*Node
	cfgs   []*Config
	logs   []*syncBuffer
	global []float32
	spec   model.Spec
	boots  int
	// trained counts the training runs of nodes that were restarted.
	trained int64
}

// trainCalls returns the training runs of every node ever started.
func (cl *cluster) trainCalls() int64 {
	n := cl.trained
	for _, node := range cl.nodes {
		n += node.trainCalls.Load()
	}
	return n
}

func workerID(i int) string { return fmt.Sprintf("peer-%02d", i) }

func newCluster(t testing.TB, n int, mutate func(i int, c *Config)) *cluster {
	t.Helper()
	cl := &cluster{t: t, n: n}
	for i := range n {
		c := testConfig(fmt.Sprintf("inst%d", i))
		if mutate != nil {
			mutate(i, c)
		}
		cl.cfgs = append(cl.cfgs, c)
		cl.dirs = append(cl.dirs, t.TempDir())
		cl.stores = append(cl.stores, nil)
		cl.nodes = append(cl.nodes, nil)
		cl.logs = append(cl.logs, &syncBuffer{})
		cl.start(i)
	}
	t.Cleanup(func() {
		for _, s := range cl.stores {
			if s != nil {
				s.Close()
			}
		}
	})
	train, _ := shard(t, 0, n)
	sp, err := model.ParseSpec(testSpec, train.C, train.H, train.W, train.Classes)
	if err != nil {
		t.Fatal(err)
	}
	net, err := model.New(sp)
	if err != nil {
		t.Fatal(err)
	}
	net.Init(7)
	cl.spec = sp
	cl.global = append([]float32(nil), net.Params()...)
	return cl
}

// start opens worker i's store and creates its node, with a fresh random
// stream each time (a restart does not replay the old randomness).
func (cl *cluster) start(i int) {
	cl.t.Helper()
	st, err := OpenStore(cl.dirs[i], StoreOptions{Logger: slog.New(slog.NewTextHandler(cl.logs[i], nil))})
	if err != nil {
		cl.t.Fatal(err)
	}
	train, test := shard(cl.t, i, cl.n)
	cl.boots++
	node, err := NewNode(cl.cfgs[i], st, train, test, slog.New(slog.NewTextHandler(cl.logs[i], nil)),
		WithID(workerID(i)), WithRand(seeded(uint64(1000*cl.boots+i))))
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.stores[i], cl.nodes[i] = st, node
}

// restart closes worker i's store and starts a new node on it.
func (cl *cluster) restart(i int) {
	cl.t.Helper()
	cl.trained += cl.nodes[i].trainCalls.Load()
	if err := cl.stores[i].Close(); err != nil {
		cl.t.Fatal(err)
	}
	cl.start(i)
}

func (cl *cluster) announce(round uint64, maxWeight float64) Announce {
	ids := make([]uint32, cl.n)
	sampled := make([]string, cl.n)
	for i := range cl.n {
		ids[i] = uint32(i + 1)
		sampled[i] = workerID(i)
	}
	var seed [32]byte
	seed[0] = byte(round)
	return Announce{
		Round: round, ModelHash: ModelHash(cl.global), ModelSpec: testSpec, NumParams: len(cl.global),
		Train:   TrainParams{Epochs: 1, Batch: 32, LR: 0.1},
		SecAgg:  secagg.Config{Round: round, Clients: ids, ClipRange: 1, MaxWeight: maxWeight, Dim: len(cl.global), GraphSeed: seed},
		Sampled: sampled, Epsilon: 1,
		DP: DPParams{Clip: 1, Noise: 0, MinClients: 1},
	}
}

// hooks let a test act between the stages of a driven round.
type hooks struct {
	// before is called before stage st's requests go out.
	before func(st secagg.Stage)
	// repeat restarts each worker after it answered and asks it again;
	// the second answer must equal the first.
	repeat bool
	// concurrent asks each worker three times at once per stage; the
	// answers must agree.
	concurrent bool
}

// runRound drives one SecAgg+ round with a secagg.Server fed by the
// nodes' methods and returns the server's result.
func (cl *cluster) runRound(a Announce, h hooks) (sum []float64, total float64, survivors []uint32, msgs map[uint32][]any) {
	t := cl.t
	t.Helper()
	msgs = map[uint32][]any{}
	srv, err := secagg.NewServer(a.SecAgg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	if h.before != nil {
		h.before(secagg.StageAdvertise)
	}
	for i := range cl.nodes {
		ads, err := cl.nodes[i].Advertise(a)
		if err != nil {
			t.Fatalf("worker %d advertise: %v", i, err)
		}
		if h.repeat {
			cl.restart(i)
			again, err := cl.nodes[i].Advertise(a)
			if err != nil || !reflect.DeepEqual(again, ads) {
				t.Fatalf("worker %d: advertise after restart differs (%v)", i, err)
			}
		}
		msgs[uint32(i+1)] = append(msgs[uint32(i+1)], ads)
		if err := srv.Receive(ads, now); err != nil {
			t.Fatal(err)
		}
	}
	for {
		out, done, err := srv.Advance(now)
		if err != nil {
			t.Fatalf("server: %v", err)
		}
		if done {
			break
		}
		if h.before != nil {
			h.before(srv.Stage())
		}
		for _, o := range out {
			ask := func() (reply any, err error) {
				node := cl.nodes[o.To-1]
				switch m := o.Msg.(type) {
				case secagg.KeyBroadcast:
					return node.ShareKeys(m)
				case secagg.ShareBundle:
					return node.MaskedInput(m, cl.global)
				case secagg.ConsistencyRequest:
					return node.ConsistencyCheck(m)
				case secagg.UnmaskRequest:
					return node.Unmask(m)
				}
				t.Fatalf("unexpected message %T", o.Msg)
				return nil, nil
			}
			reply, err := ask()
			if h.concurrent {
				var wg sync.WaitGroup
				others := make([]any, 3)
				errs := make([]error, 3)
				for k := range others {
					wg.Go(func() { others[k], errs[k] = ask() })
				}
				wg.Wait()
				for k := range others {
					if errs[k] != nil || !reflect.DeepEqual(others[k], reply) {
						t.Fatalf("worker %d at %v: concurrent answer %d differs (%v)", o.To-1, srv.Stage(), k, errs[k])
					}
				}
			}
			if err != nil {
				t.Fatalf("worker %d at %v: %v", o.To-1, srv.Stage(), err)
			}
			if h.repeat {
				cl.restart(int(o.To - 1))
				again, err := ask()
				if err != nil || !reflect.DeepEqual(again, reply) {
					t.Fatalf("worker %d at %v: answer after restart differs (%v)", o.To-1, srv.Stage(), err)
				}
			}
			msgs[o.To] = append(msgs[o.To], reply)
			if err := srv.Receive(reply, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	sum, total, survivors, err = srv.Result()
	if err != nil {
		t.Fatal(err)
	}
	return sum, total, survivors, msgs
}
