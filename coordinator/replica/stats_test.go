package replica

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestStatsJSONRoundTrip(t *testing.T) {
	a, err := peer.IDFromPrivateKey(testKey(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := peer.IDFromPrivateKey(testKey(t, 2))
	if err != nil {
		t.Fatal(err)
	}
	contact := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, want := range []Stats{
		{ID: a, State: "Follower", Leader: b, Term: 3, CommitIndex: 10, AppliedIndex: 9, LastIndex: 11,
			LastSnapshotIndex: 4, LastContact: contact, Servers: []Server{{ID: a, Voter: true}, {ID: b}}},
		{ID: a, State: "Candidate", Term: 4, Servers: []Server{{ID: a, Voter: true}}},          // no leader known
		{ID: b, State: "Unreachable", Err: "replica stats request to " + b.String() + ": EOF"}, // no servers
		{}, // the zero value
	} {
		raw, err := json.Marshal(want)
		if err != nil {
			t.Fatalf("%+v: marshal: %v", want, err)
		}
		var got Stats
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("unmarshal %s: %v", raw, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %s:\ngot  %+v\nwant %+v", raw, got, want)
		}
	}
}

func TestStatsJSONMalformed(t *testing.T) {
	a, err := peer.IDFromPrivateKey(testKey(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"id":"` + a.String() + `","leader":"not-a-peer"}`, "leader"},
		{`{"id":"nope","leader":""}`, "id"},
		{`{"id":"` + a.String() + `","term":"three"}`, "term"},
		{`{"id":"` + a.String() + `","servers":[{"id":"bad"}]}`, `server id: "bad"`},
		{`[1]`, "replica stats"},
	} {
		var s Stats
		err := json.Unmarshal([]byte(tc.in), &s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("unmarshal %s: error %v, want one naming %q", tc.in, err, tc.want)
		}
	}
}

// TestPeerStatsWithoutLeader asks, over the replica protocol, for the stats
// of a replica that knows no leader: one that was never bootstrapped nor
// added to a cluster.
func TestPeerStatsWithoutLeader(t *testing.T) {
	c := newCluster(t, 2, func(c *cluster, i int, cfg *Config) {
		cfg.Coordinators = []peer.ID{c.hosts[0].ID()}
		cfg.NoBootstrap = i == 1
	})
	waitFor(t, "replica 0, the only voter, to lead", 20*time.Second, c.nodes[0].IsLeader)
	if own := c.nodes[1].Stats(); own.Leader != "" {
		t.Fatalf("precondition: replica 1 knows leader %s", own.Leader)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.nodes[0].PeerStats(ctx, c.hosts[1].ID())
	if err != nil {
		t.Fatalf("stats of the replica without a leader: %v", err)
	}
	if st.ID != c.hosts[1].ID() || st.Leader != "" || st.State != "Follower" {
		t.Errorf("stats of replica 1: id %s, leader %q, state %q; want %s, none, Follower", st.ID, st.Leader, st.State, c.hosts[1].ID())
	}
	// The other way round the leader is named.
	st, err = c.nodes[1].PeerStats(ctx, c.hosts[0].ID())
	if err != nil {
		t.Fatalf("stats of the leader: %v", err)
	}
	if st.Leader != c.hosts[0].ID() || st.State != "Leader" {
		t.Errorf("stats of replica 0: leader %q, state %q; want %s, Leader", st.Leader, st.State, c.hosts[0].ID())
	}
}
