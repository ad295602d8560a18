package replica

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/coordinator"
	"github.com/sovereign-fl/sovereign/coordinator/coordtest"
)

// TestReplicationFailoverAndCatchUp applies a recorded command sequence
// (three rounds of a real driver run, model commits included) through a
// 3-replica cluster, kills the leader half-way, finishes on the new leader,
// forces a snapshot that truncates the log, restarts the old leader from
// its data folder and checks that it catches up through the snapshot: every
// replica ends with byte-identical FSM snapshots and serves the same model
// bytes by hash.
func TestReplicationFailoverAndCatchUp(t *testing.T) {
	cmds, ref, want := recordRun(t, testDriverConfig(3), 3)
	var wantSnap bytes.Buffer
	if err := want.Snapshot(&wantSnap); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 3, func(_ *cluster, _ int, cfg *Config) {
		cfg.TrailingLogs = 2
		cfg.SnapshotThreshold = 1 << 20 // snapshots only when asked
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := c.leader()
	half := len(cmds) / 2
	for i, cmd := range cmds[:half] {
		if err := applyRecorded(ctx, c.nodes[l], cmd, ref); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	c.converged(l)
	old := l
	c.stop(old)
	l = c.leader()
	if l == old {
		t.Fatal("the stopped replica still leads")
	}
	for i, cmd := range cmds[half:] {
		if err := applyRecorded(ctx, c.nodes[l], cmd, ref); err != nil {
			t.Fatalf("command %d on the new leader: %v", half+i, err)
		}
	}
	// Snapshot on both survivors so that the log the old leader misses is
	// gone and it must be sent the snapshot.
	for _, n := range c.nodes {
		if n != nil {
			if err := n.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, err := c.nodes[l].store.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	restarted := c.start(old)
	if lastSeen := restarted.Raft().LastIndex(); lastSeen >= first {
		t.Fatalf("the restarted replica's log (last %d) reaches the leader's first index %d: no snapshot needed", lastSeen, first)
	}
	c.converged(l)
	for i, n := range c.nodes {
		if got := snapshotBytes(t, n); !bytes.Equal(got, wantSnap.Bytes()) {
			t.Errorf("replica %d state differs from the single-node run", i)
		}
		checkModels(t, n, ref)
	}
	if st := restarted.Stats(); st.LastSnapshotIndex == 0 {
		t.Errorf("restarted replica caught up without a snapshot: %+v", st)
	}
	// A replayed command is refused as stale through Raft too, and the
	// refusal reaches the caller as the FSM's error.
	if err := c.nodes[l].Apply(ctx, cmds[len(cmds)-1]); !errors.Is(err, coordinator.ErrStale) {
		t.Errorf("replayed command: %v, want a stale refusal", err)
	}
}

// TestQuorumLost: with 2 of 3 replicas down Apply fails within its
// context's deadline and the state is untouched; when one replica returns
// the cluster makes progress again and stays consistent.
func TestQuorumLost(t *testing.T) {
	cmds, ref, _ := recordRun(t, testDriverConfig(1), 5)
	c := newCluster(t, 3, nil)
	l := c.leader()
	ctx := context.Background()
	const done = 3
	for i, cmd := range cmds[:done] {
		if err := applyRecorded(ctx, c.nodes[l], cmd, ref); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	c.converged(l)
	before := snapshotBytes(t, c.nodes[l])
	// Stop the two followers: the leader is left alone.
	var down []int
	for i := range c.nodes {
		if i != l {
			c.stop(i)
			down = append(down, i)
		}
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := applyRecorded(actx, c.nodes[l], cmds[done], ref)
	cancel()
	if err == nil {
		t.Fatal("Apply without a quorum succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, coordinator.ErrNotLeader) {
		t.Errorf("Apply without a quorum: %v, want a deadline or not-leader error", err)
	}
	if got := snapshotBytes(t, c.nodes[l]); !bytes.Equal(got, before) {
		t.Error("state changed without a quorum")
	}
	// One replica returns: progress again.
	c.start(down[0])
	l = c.leader()
	// The command tried without a quorum may have been committed by now
	// (it was in the old leader's log): then its replay is stale.
	if err := applyRecorded(ctx, c.nodes[l], cmds[done], ref); err != nil && !errors.Is(err, coordinator.ErrStale) {
		t.Fatalf("command %d after recovery: %v", done, err)
	}
	for i, cmd := range cmds[done+1:] {
		if err := applyRecorded(ctx, c.nodes[l], cmd, ref); err != nil {
			t.Fatalf("command %d after recovery: %v", done+1+i, err)
		}
	}
	c.converged(l)
	for _, n := range c.nodes {
		if n != nil {
			checkModels(t, n, ref)
		}
	}
	if st := c.nodes[l].FSM().State(); st.CommittedRounds() != 1 {
		got := st.CommittedRounds()
		t.Errorf("%d rounds committed, want 1", got)
	}
}

// TestDriverFailoverAtEachStage runs the round driver on the leader of a
// 3-replica cluster and kills the leader while it waits on the workers of
// each SecAgg+ stage; the new leader must finish the round, committing the
// same model as an uninterrupted run, and no worker may be asked two
// survivor sets.
func TestDriverFailoverAtEachStage(t *testing.T) {
	cfg := testDriverConfig(1)
	_, _, refFSM := recordRun(t, cfg, 9)
	want, _ := refFSM.Model(1)
	for _, stage := range []secagg.Stage{secagg.StageAdvertise, secagg.StageShareKeys, secagg.StageMaskedInput, secagg.StageUnmask} {
		t.Run(stage.String(), func(t *testing.T) {
			cohort := coordtest.NewCohort(6, 9)
			reached, release := cohort.Gate(stage)
			defer release()
			c := newCluster(t, 3, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			leads := make(chan error, 8)
			lead := func(n *Node) {
				d, err := coordinator.NewDriver(cfg, n.FSM(), n, n.Registry(), cohort, quietLogger())
				if err != nil {
					t.Error(err)
					return
				}
				go func() { leads <- n.Lead(ctx, d.Run) }()
			}
			for _, n := range c.nodes {
				lead(n)
			}
			select {
			case <-reached:
			case <-time.After(30 * time.Second):
				t.Fatalf("the driver never reached stage %v", stage)
			}
			old := c.leader()
			c.stop(old)
			release()
			waitFor(t, "the round to commit on a new leader", 30*time.Second, func() bool {
				for i, n := range c.nodes {
					if n != nil && i != old && n.IsLeader() {
						_, ok := n.FSM().Model(1)
						return ok
					}
				}
				return false
			})
			l := c.leader()
			got, _ := c.nodes[l].FSM().Model(1)
			if got != want {
				t.Errorf("round committed %s after failover, uninterrupted run %s", got, want)
			}
			cohort.DistinctUnmaskSets(t)
			// The old replica returns and catches up with the model.
			c.start(old)
			c.converged(l)
			for _, n := range c.nodes {
				checkModels(t, n, c.nodes[l].Registry())
			}
			cancel()
		})
	}
}

// TestJoinLeaveForwarded adds a fourth replica through a follower, which
// forwards the request to the leader, checks that it receives the state,
// reads every replica's stats, and removes it again through a follower.
func TestJoinLeaveForwarded(t *testing.T) {
	cmds, ref, _ := recordRun(t, testDriverConfig(1), 4)
	c := newCluster(t, 4, func(c *cluster, i int, cfg *Config) {
		cfg.Coordinators = []peer.ID{c.hosts[0].ID(), c.hosts[1].ID(), c.hosts[2].ID()}
		cfg.NoBootstrap = i == 3
	})
	c.stop(3) // not a member yet: started just before it joins
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := c.leader()
	for i, cmd := range cmds {
		if err := applyRecorded(ctx, c.nodes[l], cmd, ref); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	if got := len(c.nodes[l].Stats().Servers); got != 3 {
		t.Fatalf("%d servers before the join, want 3", got)
	}
	f := (l + 1) % 3
	c.start(3)
	if err := c.nodes[f].Join(ctx, c.hosts[3].ID(), c.hosts[3].Addrs()); err != nil {
		t.Fatalf("join through follower %d: %v", f, err)
	}
	c.converged(l)
	checkModels(t, c.nodes[3], ref)
	stats := c.nodes[f].ClusterStats(ctx)
	if len(stats) != 4 {
		t.Fatalf("%d stats, want 4", len(stats))
	}
	leaders := 0
	for _, st := range stats {
		if st.Err != "" {
			t.Errorf("replica %s: %s", st.ID, st.Err)
		}
		if st.Leader != c.nodes[l].ID() {
			t.Errorf("replica %s names leader %s, want %s", st.ID, st.Leader, c.nodes[l].ID())
		}
		if st.State == "Leader" {
			leaders++
		}
		if st.CommitIndex == 0 || st.Term == 0 {
			t.Errorf("replica %s: commit index %d, term %d", st.ID, st.CommitIndex, st.Term)
		}
	}
	if leaders != 1 {
		t.Errorf("%d replicas report themselves leader", leaders)
	}
	// An unenrolled peer or a worker cannot join.
	if err := c.nodes[f].Join(ctx, c.hosts[3].ID()+"x", nil); err == nil {
		t.Error("join of an unknown peer accepted")
	}
	if err := c.nodes[f].Leave(ctx, c.hosts[3].ID()); err != nil {
		t.Fatalf("leave through follower %d: %v", f, err)
	}
	waitFor(t, "the configuration without replica 3", 10*time.Second, func() bool {
		return len(c.nodes[f].Stats().Servers) == 3
	})
	// A follower refuses Apply and names the leader.
	var nl *NotLeaderError
	if err := c.nodes[f].Apply(ctx, cmds[0]); !errors.As(err, &nl) || nl.Leader != c.nodes[l].ID() {
		t.Errorf("Apply on a follower: %v, want a NotLeaderError naming %s", err, c.nodes[l].ID())
	}
}
