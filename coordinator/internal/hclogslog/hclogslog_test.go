package hclogslog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func records(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestOneLevelPerLine: a Raft warning is one slog record at WARN whose
// message carries no second level, with hclog's pairs as attributes.
func TestOneLevelPerLine(t *testing.T) {
	var b bytes.Buffer
	l := New(slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), "raft", hclog.Warn)
	l.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "x", "last-leader-id", "y")
	l.Error("failed to appendEntries", "peer", "p")
	l.Info("dropped: below the adapter's level")
	l.With("id", "n1").Named("snap").Warn("lone", "value")
	l.StandardLogger(nil).Print("[ERROR] raft-net: failed to decode")
	recs := records(t, &b)
	if len(recs) != 4 {
		t.Fatalf("got %d records, want 4: %s", len(recs), b.String())
	}
	for _, r := range recs {
		msg := r["msg"].(string)
		for _, lv := range []string{"[WARN]", "[ERROR]", "[ERR]", "[INFO]", "[DEBUG]"} {
			if strings.Contains(msg, lv) {
				t.Errorf("message %q carries a second level %s", msg, lv)
			}
		}
	}
	if recs[0]["level"] != "WARN" || recs[0]["component"] != "raft" || recs[0]["last-leader-id"] != "y" {
		t.Errorf("first record %v", recs[0])
	}
	if recs[1]["level"] != "ERROR" || recs[1]["peer"] != "p" {
		t.Errorf("second record %v", recs[1])
	}
	if recs[2]["component"] != "raft.snap" || recs[2]["id"] != "n1" || recs[2]["extra"] != "value" {
		t.Errorf("third record %v", recs[2])
	}
	if recs[3]["level"] != "ERROR" || recs[3]["msg"] != "raft-net: failed to decode" {
		t.Errorf("standard logger record %v", recs[3])
	}
	if l.IsInfo() || !l.IsWarn() {
		t.Error("level checks")
	}
}

// TestSlogLevelGates: a slog handler at ERROR drops hclog warnings.
func TestSlogLevelGates(t *testing.T) {
	var b bytes.Buffer
	l := New(slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{Level: slog.LevelError})), "raft", hclog.Trace)
	l.Warn("w")
	l.Error("e")
	if recs := records(t, &b); len(recs) != 1 || recs[0]["msg"] != "e" {
		t.Fatalf("records %v", recs)
	}
}
