package p2p

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestPeerNamesInLogs: attributes holding enrolled peer IDs gain the
// member's federation name; others are left alone.
func TestPeerNamesInLogs(t *testing.T) {
	nodes := []testNode{{"coord-1", RoleCoordinator, 1}, {"st-marys", RoleWorker, 2}, {"guys", RoleWorker, 3}}
	fed := testFederation(t, nodes)
	w1, w2, stranger := testID(t, 2), testID(t, 3), testID(t, 99)
	var b bytes.Buffer
	log := slog.New(PeerNames(slog.NewJSONHandler(&b, nil), fed)).With("peer", w1.String())
	type serverAddress string // like raft.ServerAddress: a string type without String()
	log.Info("x", "leader", serverAddress(w1.String()), "worker", w2, "missing", []peer.ID{w1, w2}, "ids", []string{w2.String()}, "from", stranger.String(), "round", 3, "text", "hello")
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"peer": w1.String(), "peer_name": "st-marys", "worker_name": "guys", "from_name": "not enrolled", "leader_name": "st-marys"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, m[k], v, b.String())
		}
	}
	if got, _ := json.Marshal(m["missing_names"]); string(got) != `["st-marys","guys"]` {
		t.Errorf("missing_names = %s", got)
	}
	if got, _ := json.Marshal(m["ids_names"]); string(got) != `["guys"]` {
		t.Errorf("ids_names = %s", got)
	}
	for _, k := range []string{"round_name", "text_name"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s added for a value that is no peer ID", k)
		}
	}
}
