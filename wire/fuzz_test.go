package wire

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// Each fuzz target decodes arbitrary bytes as a protobuf message and then
// through the wire decoder: it must never panic, and whatever it accepts
// must survive an encode/decode round trip unchanged. The seed corpus is in
// testdata/fuzz/<target>.

func FuzzAnnounce(f *testing.F) {
	m, err := AnnounceToPB(sampleAnnounce(f))
	if err != nil {
		f.Fatal(err)
	}
	b, _ := proto.Marshal(m)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.RoundAnnounce
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		a, err := AnnounceFromPB(&m)
		if err != nil {
			return
		}
		m2, err := AnnounceToPB(a)
		if err != nil {
			t.Fatalf("re-encode of accepted announce: %v", err)
		}
		a2, err := AnnounceFromPB(m2)
		if err != nil || !reflect.DeepEqual(a, a2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzKeyBroadcast(f *testing.F) {
	f.Add([]byte{8, 1, 24, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.KeysBroadcast
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		kb, err := KeyBroadcastFromPB(&m)
		if err != nil {
			return
		}
		kb2, err := KeyBroadcastFromPB(KeyBroadcastToPB(kb))
		if err != nil || !reflect.DeepEqual(kb, kb2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzShares(f *testing.F) {
	f.Add([]byte{8, 1, 24, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.EncryptedShares
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		if _, err := SharesFromPB(&m, 0); err != nil {
			return
		}
		sb, err := ShareBundleFromPB(&m)
		if err != nil {
			return
		}
		sb2, err := ShareBundleFromPB(SharesToPB(sb.Round, sb.To, sb.Shares))
		if err != nil || !reflect.DeepEqual(sb, sb2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzUnmask(f *testing.F) {
	f.Add([]byte{8, 1, 32, 1, 42, 2, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req pb.UnmaskRequest
		if proto.Unmarshal(b, &req) == nil {
			if r, err := UnmaskRequestFromPB(&req); err == nil {
				r2, err := UnmaskRequestFromPB(UnmaskRequestToPB(r))
				if err != nil || !reflect.DeepEqual(r, r2) {
					t.Fatalf("request round trip: %v", err)
				}
			}
		}
		var creq pb.ConsistencyRequest
		if proto.Unmarshal(b, &creq) == nil {
			if r, err := ConsistencyRequestFromPB(&creq); err == nil {
				r2, err := ConsistencyRequestFromPB(ConsistencyRequestToPB(r))
				if err != nil || !reflect.DeepEqual(r, r2) {
					t.Fatalf("consistency request round trip: %v", err)
				}
			}
		}
		var cresp pb.ConsistencyResponse
		if proto.Unmarshal(b, &cresp) == nil {
			if r, err := ConsistencyResponseFromPB(&cresp, 0, 0); err == nil {
				r2, err := ConsistencyResponseFromPB(ConsistencyResponseToPB(r), r.Round, r.From)
				if err != nil || !reflect.DeepEqual(r, r2) {
					t.Fatalf("consistency response round trip: %v", err)
				}
			}
		}
		var resp pb.UnmaskResponse
		if proto.Unmarshal(b, &resp) == nil {
			if r, err := UnmaskResponseFromPB(&resp, 0, 0); err == nil {
				r2, err := UnmaskResponseFromPB(UnmaskResponseToPB(r), r.Round, r.From)
				if err != nil || !reflect.DeepEqual(r, r2) {
					t.Fatalf("response round trip: %v", err)
				}
			}
		}
	})
}

func FuzzMasked(f *testing.F) {
	f.Add([]byte{8, 1, 56, 1, 24, 2, 32, 32, 48, 8}, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, hdr, blob []byte) {
		var h pb.MaskedInputHeader
		if proto.Unmarshal(hdr, &h) != nil {
			return
		}
		n, err := CheckMaskedHeader(&h, 0, 0, 0)
		if err != nil || n > 1<<16 {
			return
		}
		v, err := DecodeVector(blob, n, 32)
		if err != nil {
			return
		}
		if string(EncodeVector(v)) != string(blob) {
			t.Fatal("vector round trip")
		}
	})
}

func FuzzMetrics(f *testing.F) {
	f.Add([]byte{8, 1, 24, 10})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.MetricsReport
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		if r, err := MetricsFromPB(&m, m.Round); err == nil && (r.Accuracy < 0 || r.Accuracy > 1 || r.Loss < 0) {
			t.Fatalf("accepted out-of-range metrics %+v", r)
		}
		var e pb.EvaluateRequest
		if proto.Unmarshal(b, &e) == nil {
			_, _, _, _ = EvaluateFromPB(&e)
		}
	})
}

// TestAttackAnnounceUnparseablePeerID replays security review finding L5
// from its reproducer (testdata/fuzz/FuzzAnnounce/657cb9de2686cf09): a
// sampled_workers entry that libp2p decodes from bytes but whose text form
// does not parse back, so a worker and the coordinator would disagree
// about the sample. The announcement must be refused naming the entry.
func TestAttackAnnounceUnparseablePeerID(t *testing.T) {
	raw, err := os.ReadFile("testdata/fuzz/FuzzAnnounce/657cb9de2686cf09")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	lit := strings.TrimSuffix(strings.TrimPrefix(lines[len(lines)-1], "[]byte("), ")")
	in, err := strconv.Unquote(lit)
	if err != nil {
		t.Fatalf("reproducer: %v", err)
	}
	var m pb.RoundAnnounce
	if err := proto.Unmarshal([]byte(in), &m); err != nil {
		t.Fatalf("reproducer is no longer a RoundAnnounce: %v", err)
	}
	_, err = AnnounceFromPB(&m)
	if err == nil || !strings.Contains(err.Error(), "sampled_workers[") || !strings.Contains(err.Error(), "does not parse back") {
		t.Fatalf("AnnounceFromPB accepted the reproducer's peer ID (err %v)", err)
	}
}
