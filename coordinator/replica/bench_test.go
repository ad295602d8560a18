package replica

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/sovereign-fl/sovereign/coordinator"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

func membersSeen(b testing.TB) []byte {
	cmd, err := coordinator.EncodeCommand(coordinator.Command{MembersSeen: &coordinator.MembersSeen{Round: 1, Members: []coordinator.WorkerID{"w1", "w2"}}})
	if err != nil {
		b.Fatal(err)
	}
	return cmd
}

// BenchmarkFailover measures, per leader kill (one kill per iteration), the
// time from shutting the leader down to a new leader committing its next
// command, with Raft's default timeouts and with the tests' short ones. The
// baseline in the same run is the commit latency of the same command with
// a stable leader (steady-ms). Run with -benchtime=20x or more.
func BenchmarkFailover(b *testing.B) {
	for _, tc := range []struct {
		name string
		tune func(*cluster, int, *Config)
	}{
		{"default", func(_ *cluster, _ int, c *Config) {
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = 0, 0, 0, 0
		}},
		{"test-timeouts", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := newCluster(b, 3, tc.tune)
			cmd := membersSeen(b)
			ctx := context.Background()
			var kills, steady []time.Duration
			for b.Loop() {
				l := c.leader()
				c.converged(l)
				t0 := time.Now()
				if err := c.nodes[l].Apply(ctx, cmd); err != nil {
					b.Fatal(err)
				}
				steady = append(steady, time.Since(t0))
				start := time.Now()
				c.stop(l)
				for done := false; !done; {
					for _, n := range c.nodes {
						if n == nil || !n.IsLeader() {
							continue
						}
						actx, cancel := context.WithTimeout(ctx, time.Second)
						err := n.Apply(actx, cmd)
						cancel()
						if err == nil {
							done = true
							break
						}
					}
					if !done {
						time.Sleep(time.Millisecond)
					}
				}
				kills = append(kills, time.Since(start))
				c.start(l)
			}
			b.ReportMetric(float64(percentile(kills, 0.5).Microseconds())/1e3, "median-ms")
			b.ReportMetric(float64(percentile(kills, 0.95).Microseconds())/1e3, "p95-ms")
			b.ReportMetric(float64(percentile(steady, 0.5).Microseconds())/1e3, "steady-ms")
		})
	}
}

// BenchmarkModelCommit measures the commit latency of a ModelCommitted
// carrying a 1M- or 10M-parameter model through a 3-replica Raft cluster
// (the model bytes travel in the log entry to both followers, each stores
// them in its registry), against the same commit on a single coordinator
// (registry write + FSM apply, no replication) in the same run. Only the
// ModelCommitted is timed, from storing the model in the leader's registry
// (as the driver does) to the commit; the round's other commands are
// applied outside the timer. Synced writes and Raft's default timeouts are
// on, as in production.
func BenchmarkModelCommit(b *testing.B) {
	cmds, _, _ := recordRun(b, testDriverConfig(1), 1)
	tmpl := make([]coordinator.Command, len(cmds))
	for i, raw := range cmds {
		var err error
		if tmpl[i], err = coordinator.DecodeCommand(raw); err != nil {
			b.Fatal(err)
		}
	}
	for _, params := range []int{1 << 20, 10 << 20} {
		model := make([]float32, params)
		rng := rand.New(rand.NewPCG(1, uint64(params)))
		for i := range model {
			model[i] = rng.Float32()
		}
		b.Run(fmt.Sprintf("params=%dM/raft3", params>>20), func(b *testing.B) {
			c := newCluster(b, 3, func(_ *cluster, _ int, cfg *Config) {
				// Production settings: Raft's default timeouts, synced writes.
				cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout, cfg.CommitTimeout = 0, 0, 0, 0
				cfg.NoSync, cfg.TransportTimeout = false, time.Minute
			})
			l := c.leader()
			n := c.nodes[l]
			benchModelCommits(b, tmpl, model, n.FSM(), n.Registry(), n)
		})
		b.Run(fmt.Sprintf("params=%dM/local", params>>20), func(b *testing.B) {
			reg, err := coordinator.OpenRegistry(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer reg.Close()
			f := coordinator.NewFSM()
			benchModelCommits(b, tmpl, model, f, reg, localRepl{f})
		})
	}
}

// localRepl commits on one node: the model is already in the registry
// (the driver stores it before committing), the FSM applies the command.
type localRepl struct{ f *coordinator.FSM }

func (l localRepl) Apply(_ context.Context, cmd []byte) error { return l.f.Apply(cmd) }
func (localRepl) IsLeader() bool                              { return true }

// benchModelCommits commits one round per iteration, built from the
// recorded round tmpl, with a fresh model of len(model) parameters.
func benchModelCommits(b *testing.B, tmpl []coordinator.Command, model []float32, f *coordinator.FSM, reg coordinator.ModelStore, repl coordinator.Replicator) {
	ctx := context.Background()
	apply := func(c coordinator.Command) {
		raw, err := coordinator.EncodeCommand(c)
		if err != nil {
			b.Fatal(err)
		}
		if err := repl.Apply(ctx, raw); err != nil {
			b.Fatalf("%v: %v", c.Kind, err)
		}
	}
	putModel := func(i int) coordinator.Hash {
		model[0] = float32(i)
		h, err := reg.Put(model)
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	// The initial model, then one round per iteration.
	h0 := putModel(-1)
	apply(coordinator.Command{ModelCommitted: &coordinator.ModelCommitted{ModelHash: h0}})
	b.SetBytes(int64(4 * len(model)))
	round := uint64(0)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		round++
		st := f.State()
		head := st.Head()
		for _, c := range tmpl[1:] {
			switch {
			case c.MembersSeen != nil:
				m := *c.MembersSeen
				m.Round = round
				apply(coordinator.Command{MembersSeen: &m})
			case c.RoundStarted != nil:
				m := *c.RoundStarted
				m.Round, m.Announce.Round, m.Announce.SecAgg.Round = round, round, round
				m.Announce.ModelHash, m.Announce.ModelVersion = head.ModelHash, head.Round
				apply(coordinator.Command{RoundStarted: &m})
			case c.StageClosed != nil:
				m := *c.StageClosed
				m.Round = round
				m.Keys = slices.Clone(m.Keys)
				for i := range m.Keys {
					m.Keys[i].Round = round
				}
				m.Shares = slices.Clone(m.Shares)
				for i := range m.Shares {
					m.Shares[i].Round = round
				}
				apply(coordinator.Command{StageClosed: &m})
			case c.SurvivorsCommitted != nil:
				m := *c.SurvivorsCommitted
				m.Round = round
				apply(coordinator.Command{SurvivorsCommitted: &m})
			case c.ConsistencyCommitted != nil:
				m := *c.ConsistencyCommitted
				m.Round = round
				m.Signatures = slices.Clone(m.Signatures)
				for i := range m.Signatures {
					m.Signatures[i].Round = round
				}
				apply(coordinator.Command{ConsistencyCommitted: &m})
			case c.ModelCommitted != nil:
				m := *c.ModelCommitted
				m.Round, m.Prev, m.Optimizer, m.DP, m.Epsilon = round, head.Hash, coordinator.OptimizerRef{}, nil, 0
				b.StartTimer()
				m.ModelHash = putModel(int(round))
				apply(coordinator.Command{ModelCommitted: &m})
				b.StopTimer()
			}
		}
		b.StartTimer()
	}
}
