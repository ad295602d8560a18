package wire

import (
	"errors"
	"math"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// peerIDs returns n sorted peer IDs from seeded Ed25519 keys.
func peerIDs(t testing.TB, n int, seed int64) []string {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	out := make([]string, n)
	for i := range out {
		sk, _, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(sk)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = id.String()
	}
	sortStrings(out)
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func bytesOf(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

func sampleAnnounce(t testing.TB) *Announce {
	ids := peerIDs(t, 5, 1)
	cfg := secagg.Config{Round: 7, Clients: []uint32{1, 2, 3, 4, 5}, ClipRange: 3, MaxWeight: 100, Dim: 650, StageTimeout: 5 * time.Second}.WithDefaults()
	cfg.GraphSeed[0] = 9
	a := &Announce{
		Round: 7, ModelVersion: 6, ModelSpec: "logreg", NumParams: 650,
		Train: TrainParams{Epochs: 1, Batch: 32, LR: 0.1, ProxMu: 0.01}, DP: DPParams{Clip: 1, Noise: 0.5, MinClients: 3},
		SecAgg: cfg, Sampled: ids, Epsilon: 1.25, Study: "b",
	}
	a.ModelHash[3] = 0xab
	return a
}

func TestAnnounceRoundTrip(t *testing.T) {
	a := sampleAnnounce(t)
	m, err := AnnounceToPB(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := AnnounceFromPB(m)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, a)
	}
}

func TestAnnounceRejects(t *testing.T) {
	cases := []struct {
		name, field string
		edit        func(m *pb.RoundAnnounce)
	}{
		{"round zero", "round", func(m *pb.RoundAnnounce) { m.Round = 0 }},
		{"short hash", "model_sha256", func(m *pb.RoundAnnounce) { m.ModelSha256 = m.ModelSha256[:5] }},
		{"nan lr", "config.learning_rate", func(m *pb.RoundAnnounce) { m.Config.LearningRate = math.NaN() }},
		{"inf epsilon", "epsilon", func(m *pb.RoundAnnounce) { m.Epsilon = math.Inf(1) }},
		{"dup worker", "sampled_workers[1]", func(m *pb.RoundAnnounce) { m.SampledWorkers[1] = m.SampledWorkers[0] }},
		{"bad peer", "sampled_workers[2]", func(m *pb.RoundAnnounce) { m.SampledWorkers[2] = []byte("nope") }},
		{"dim mismatch", "secagg.vector_length", func(m *pb.RoundAnnounce) { m.Secagg.VectorLength = 10 }},
		{"size mismatch", "model_size", func(m *pb.RoundAnnounce) { m.ModelSize = 3 }},
		{"no secagg", "secagg", func(m *pb.RoundAnnounce) { m.Secagg = nil }},
		{"bad threshold", "SecAggParams", func(m *pb.RoundAnnounce) { m.Secagg.Threshold = 50 }},
		{"wrong clients", "secagg.clients[0]", func(m *pb.RoundAnnounce) { m.Secagg.Clients = []uint32{2, 3, 4, 5, 6} }},
		{"zero epochs", "config.local_epochs", func(m *pb.RoundAnnounce) { m.Config.LocalEpochs = 0 }},
		{"version not before", "model_version", func(m *pb.RoundAnnounce) { m.ModelVersion = 7 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := AnnounceToPB(sampleAnnounce(t))
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(m)
			_, err = AnnounceFromPB(m)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %q or match ErrInvalid", err, tc.field)
			}
		})
	}
}

func TestStageRoundTrips(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	k1 := secagg.AdvertiseKeys{Round: 4, From: 2, EncKey: bytesOf(r, secagg.KeySize), MaskKey: bytesOf(r, secagg.KeySize), SeedCommit: bytesOf(r, secagg.KeySize), Signature: bytesOf(r, 64)}
	got, err := AdvertiseKeysFromPB(AdvertiseKeysToPB(k1), 4)
	if err != nil || !reflect.DeepEqual(got, k1) {
		t.Fatalf("advertise: %v %+v", err, got)
	}
	if _, err := AdvertiseKeysFromPB(AdvertiseKeysToPB(k1), 5); err == nil || !strings.Contains(err.Error(), "expected round 5") {
		t.Fatalf("stale round accepted: %v", err)
	}
	k2 := secagg.AdvertiseKeys{Round: 4, From: 3, EncKey: bytesOf(r, secagg.KeySize), MaskKey: bytesOf(r, secagg.KeySize), SeedCommit: bytesOf(r, secagg.KeySize), Signature: bytesOf(r, 64)}
	kb := secagg.KeyBroadcast{Round: 4, To: 1, Keys: []secagg.AdvertiseKeys{k1, k2}}
	gkb, err := KeyBroadcastFromPB(KeyBroadcastToPB(kb))
	if err != nil || !reflect.DeepEqual(gkb, kb) {
		t.Fatalf("broadcast: %v %+v", err, gkb)
	}
	shares := []secagg.EncryptedShare{
		{Round: 4, From: 2, To: 1, Ciphertext: bytesOf(r, secagg.CiphertextSize)},
		{Round: 4, From: 3, To: 1, Ciphertext: bytesOf(r, secagg.CiphertextSize)},
	}
	gs, err := SharesFromPB(SharesToPB(4, 0, shares), 4)
	if err != nil || !reflect.DeepEqual(gs, shares) {
		t.Fatalf("shares: %v", err)
	}
	sb, err := ShareBundleFromPB(SharesToPB(4, 1, shares))
	if err != nil || !reflect.DeepEqual(sb, secagg.ShareBundle{Round: 4, To: 1, Shares: shares}) {
		t.Fatalf("bundle: %v", err)
	}
	if _, err := ShareBundleFromPB(SharesToPB(4, 2, shares)); err == nil || !strings.Contains(err.Error(), "shares[0].to_index") {
		t.Fatalf("misaddressed bundle accepted: %v", err)
	}
	req := secagg.UnmaskRequest{Round: 4, To: 2, Survivors: []uint32{1, 2}, Dropped: []uint32{3}}
	greq, err := UnmaskRequestFromPB(UnmaskRequestToPB(req))
	if err != nil || !reflect.DeepEqual(greq, req) {
		t.Fatalf("unmask request: %v %+v", err, greq)
	}
	bad := UnmaskRequestToPB(secagg.UnmaskRequest{Round: 4, To: 2, Survivors: []uint32{1, 3}, Dropped: []uint32{3}})
	if _, err := UnmaskRequestFromPB(bad); err == nil || !strings.Contains(err.Error(), "also a survivor") {
		t.Fatalf("overlap accepted: %v", err)
	}
	resp := secagg.UnmaskResponse{Round: 4, From: 2,
		SelfMaskShares: []secagg.Share{{Owner: 1, Value: bytesOf(r, secagg.ShareSize)}, {Owner: 2, Value: bytesOf(r, secagg.ShareSize)}},
		MaskKeyShares:  []secagg.Share{{Owner: 3, Value: bytesOf(r, secagg.ShareSize)}}}
	gresp, err := UnmaskResponseFromPB(UnmaskResponseToPB(resp), 4, 2)
	if err != nil || !reflect.DeepEqual(gresp, resp) {
		t.Fatalf("unmask response: %v", err)
	}
	if _, err := UnmaskResponseFromPB(UnmaskResponseToPB(resp), 4, 3); err == nil || !strings.Contains(err.Error(), "expected node 3") {
		t.Fatalf("wrong sender accepted: %v", err)
	}
}

func TestMaskedVector(t *testing.T) {
	mi := secagg.MaskedInput{Round: 3, From: 2, Vector: []uint32{0, 1, 0xffffffff, 12345}}
	blob := EncodeVector(mi.Vector)
	h := MaskedHeader(mi, blob)
	n, err := CheckMaskedHeader(h, 3, 2, 0)
	if err != nil || n != 4 {
		t.Fatalf("header: %d %v", n, err)
	}
	v, err := DecodeVector(blob, n, 32)
	if err != nil || !reflect.DeepEqual(v, mi.Vector) {
		t.Fatalf("vector: %v %v", err, v)
	}
	if _, err := DecodeVector(blob, n, 16); err == nil || !strings.Contains(err.Error(), "vector[2]") {
		t.Fatalf("out-of-range element accepted: %v", err)
	}
	if _, err := DecodeVector(blob[:7], n, 32); err == nil {
		t.Fatal("short vector accepted")
	}
	h.BlobSize++
	if _, err := CheckMaskedHeader(h, 3, 2, 0); err == nil || !strings.Contains(err.Error(), "blob_size") {
		t.Fatalf("bad size accepted: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	if m, err := MetricsFromPB(&pb.MetricsReport{Round: 2, Examples: 10, Loss: 0.5, Accuracy: 0.9}, 2); err != nil || m.Examples != 10 || m.Accuracy != 0.9 {
		t.Fatalf("%v %+v", err, m)
	}
	for _, m := range []*pb.MetricsReport{
		{Round: 2, Accuracy: 1.5}, {Round: 2, Loss: math.NaN()}, {Round: 3}, nil,
	} {
		if _, err := MetricsFromPB(m, 2); err == nil {
			t.Fatalf("accepted %v", m)
		}
	}
}

// The consistency-check messages: round trip, and every bound names its
// field.
func TestConsistencyMessagesBounded(t *testing.T) {
	req := secagg.ConsistencyRequest{Round: 3, To: 2, Survivors: []uint32{1, 2, 4}}
	if got, err := ConsistencyRequestFromPB(ConsistencyRequestToPB(req)); err != nil || !reflect.DeepEqual(got, req) {
		t.Fatalf("request round trip: %+v, %v", got, err)
	}
	sig := secagg.ConsistencyResponse{Round: 3, From: 2, Signature: []byte{1, 2, 3}}
	um := secagg.UnmaskRequest{Round: 3, To: 2, Survivors: []uint32{1, 2, 4}, Dropped: []uint32{3}, Signatures: []secagg.ConsistencyResponse{sig}}
	if got, err := UnmaskRequestFromPB(UnmaskRequestToPB(um)); err != nil || !reflect.DeepEqual(got, um) {
		t.Fatalf("unmask round trip: %+v, %v", got, err)
	}
	for name, tc := range map[string]struct {
		err  error
		want string
	}{
		"unsorted survivors": {func() error {
			_, err := ConsistencyRequestFromPB(&pb.ConsistencyRequest{Round: 3, ToIndex: 2, SurvivorIndices: []uint32{2, 1}})
			return err
		}(), "survivor_indices[1]"},
		"oversized signature": {func() error {
			_, err := ConsistencyResponseFromPB(&pb.ConsistencyResponse{Round: 3, FromIndex: 2, Signature: make([]byte, MaxSignatureLen+1)}, 3, 2)
			return err
		}(), "signature"},
		"other signer": {func() error {
			_, err := ConsistencyResponseFromPB(&pb.ConsistencyResponse{Round: 3, FromIndex: 1}, 3, 2)
			return err
		}(), "from_index"},
		"signature of a non-survivor": {func() error {
			m := UnmaskRequestToPB(um)
			m.Signatures[0].FromIndex = 3
			_, err := UnmaskRequestFromPB(m)
			return err
		}(), "not a survivor"},
		"two signatures of one signer": {func() error {
			m := UnmaskRequestToPB(um)
			m.Signatures = append(m.Signatures, m.Signatures[0])
			_, err := UnmaskRequestFromPB(m)
			return err
		}(), "signed twice"},
		"signature of another round": {func() error {
			m := UnmaskRequestToPB(um)
			m.Signatures[0].Round = 2
			_, err := UnmaskRequestFromPB(m)
			return err
		}(), "round"},
	} {
		if !errors.Is(tc.err, ErrInvalid) || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", name, tc.err, tc.want)
		}
	}
}

// A replica's survivor answer: round trip (sorted), and bounds naming the
// field.
func TestSurvivorAnswerBounded(t *testing.T) {
	ids := peerIDs(t, 3, 5)
	m, err := SurvivorAnswerToPB(4, true, []string{ids[2], ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	got, known, err := SurvivorAnswerFromPB(m, 4)
	if err != nil || !known || !reflect.DeepEqual(got, []string{ids[0], ids[2]}) {
		t.Fatalf("round trip: %v %v %v", got, known, err)
	}
	dup, _ := SurvivorAnswerToPB(4, true, []string{ids[1], ids[1]})
	for name, tc := range map[string]struct {
		m    *pb.SurvivorAnswer
		want string
	}{
		"other round":       {&pb.SurvivorAnswer{Round: 3, Known: true}, "round"},
		"unknown with list": {&pb.SurvivorAnswer{Round: 4, Survivors: m.Survivors}, "known unset"},
		"not a peer ID":     {&pb.SurvivorAnswer{Round: 4, Known: true, Survivors: [][]byte{{1, 2, 3}}}, "survivors[0]"},
		"listed twice":      {dup, "twice"},
	} {
		if _, _, err := SurvivorAnswerFromPB(tc.m, 4); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", name, err, tc.want)
		}
	}
}
