// Package wire converts between the SecAgg+ messages of package secagg
// (Bell et al. 2020, over the stages of Bonawitz et al. 2017) and the
// protobuf messages of package pb that carry them between coordinator and
// workers, and names the protocol IDs of the coordinator-driven round.
//
// Every decoder (the *FromPB functions and DecodeVector) checks what it
// reads: counts are bounded, indices are non-zero, keys and ciphertexts have
// their fixed sizes, floats are finite, and the round agrees with the one
// expected. Errors name the message and the field; no input makes a decoder
// panic (see the fuzz tests).
package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// Protocol IDs of the coordinator-driven round: the coordinator opens one
// stream per worker and stage on the connection the worker dialled, sends
// the request and reads the response (messages of package pb). A worker's
// refusal is a response whose refusal field is set.
const (
	// ProtoAdvertise is stage 0: RoundAnnounce → AdvertiseKeys.
	ProtoAdvertise protocol.ID = "/sovereign/round-advertise/1.0.0"
	// ProtoShareKeys is stage 1: KeysBroadcast → EncryptedShares.
	ProtoShareKeys protocol.ID = "/sovereign/round-sharekeys/1.0.0"
	// ProtoMasked is stage 2: EncryptedShares (addressed to the worker) →
	// MaskedInputHeader, then, unless refused, the masked vector as a blob
	// (BlobHeader, BlobChunk..., BlobTrailer) on the same stream, whose
	// SHA-256 the header names. Version 2: masks expanded with AES-128-CTR
	// (1.0.0 used AES-256), so that a worker and a coordinator of different
	// versions fail to talk instead of summing masks that do not cancel.
	ProtoMasked protocol.ID = "/sovereign/round-masked/2.0.0"
	// ProtoConsistency is the consistency check of Bonawitz et al. 2017
	// (their round 4), between stages 2 and 3 in rounds whose SecAgg+
	// configuration sets it: ConsistencyRequest → ConsistencyResponse.
	ProtoConsistency protocol.ID = "/sovereign/round-consistency/1.0.0"
	// ProtoUnmask is stage 3: UnmaskRequest → UnmaskResponse.
	ProtoUnmask protocol.ID = "/sovereign/round-unmask/1.0.0"
	// ProtoSurvivors is opened by a worker on every coordinator replica
	// before it signs or unmasks a survivor set: SurvivorQuery →
	// SurvivorAnswer, from the replica's Raft-committed state (review L4).
	ProtoSurvivors protocol.ID = "/sovereign/round-survivors/1.0.0"
	// ProtoEvaluate is the federated evaluation of a committed model:
	// EvaluateRequest → MetricsReport.
	ProtoEvaluate protocol.ID = "/sovereign/round-evaluate/1.0.0"
)

// ElementBits is the width of a masked-vector element on the wire: every
// element of Z_(2^b), b ≤ 32, travels as a little-endian uint32.
const ElementBits = 32

// Limits on what decoders accept.
const (
	// MaxSpecLen bounds a model spec string.
	MaxSpecLen = 64 << 10
	// MaxEpochs and MaxBatch bound the training settings of a round.
	MaxEpochs = 1 << 16
	MaxBatch  = 1 << 24
	// MaxReasonLen bounds a refusal's reason.
	MaxReasonLen = 4096
	// MaxSignatureLen bounds a signature (Ed25519: 64 bytes; room for other
	// libp2p key types).
	MaxSignatureLen = 1024
)

// ErrInvalid is matched (errors.Is) by every decoding error of this package.
var ErrInvalid = errors.New("invalid wire message")

func invalid(msg, field, format string, args ...any) error {
	return fmt.Errorf("%w: %s.%s: %s", ErrInvalid, msg, field, fmt.Sprintf(format, args...))
}

func checkRound(msg string, got, want uint64) error {
	if got == 0 {
		return invalid(msg, "round", "0 (rounds start at 1)")
	}
	if want != 0 && got != want {
		return invalid(msg, "round", "%d, expected round %d", got, want)
	}
	return nil
}

func checkIndex(msg, field string, v uint32) error {
	if v == 0 {
		return invalid(msg, field, "node index 0 (indices start at 1)")
	}
	if v > secagg.MaxClients {
		return invalid(msg, field, "node index %d above %d", v, secagg.MaxClients)
	}
	return nil
}

func finite(msg, field string, v float64, min float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return invalid(msg, field, "%v is not finite", v)
	}
	if v < min {
		return invalid(msg, field, "%v below %v", v, min)
	}
	return nil
}

// Refusal returns the wire form of a refusal of round for reason.
func Refusal(round uint64, reason string) *pb.Refusal {
	if len(reason) > MaxReasonLen {
		reason = reason[:MaxReasonLen]
	}
	return &pb.Refusal{Round: round, Reason: reason}
}

// ---- announcement ----

// PurposeStatistics marks the round that computes a schema's federation
// statistics under secure aggregation (see docs/data-schema.md).
const PurposeStatistics = "statistics"

// MaxStatsBytes bounds RoundAnnounce.federation_stats; MaxStatsRows
// RoundAnnounce.stats_max_rows.
const (
	MaxStatsBytes = 1 << 20
	MaxStatsRows  = 1 << 40
)

// AnnounceToPB encodes a. It fails on a sampled worker that is not a valid
// peer ID.
func AnnounceToPB(a *Announce) (*pb.RoundAnnounce, error) {
	sampled := make([][]byte, len(a.Sampled))
	for i, s := range a.Sampled {
		id, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("wire: RoundAnnounce.sampled_workers[%d] %q: %w", i, s, err)
		}
		sampled[i] = []byte(id)
	}
	algo := "fedavg"
	if a.Train.ProxMu > 0 {
		algo = "fedprox"
	}
	c := a.SecAgg
	return &pb.RoundAnnounce{
		Round:           a.Round,
		ModelSha256:     append([]byte(nil), a.ModelHash[:]...),
		ModelSize:       uint64(a.NumParams) * 4,
		ModelVersion:    a.ModelVersion,
		ModelSpec:       a.ModelSpec,
		NumParams:       uint64(a.NumParams),
		Epsilon:         a.Epsilon,
		SampledWorkers:  sampled,
		Secure:          true,
		Purpose:         a.Purpose,
		SchemaSha256:    schemaHashBytes(a.SchemaHash),
		FederationStats: append([]byte(nil), a.Stats...),
		StatsMaxRows:    uint64(a.StatsMaxRows),
		Study:           a.Study,
		Config: &pb.RoundConfig{
			Algorithm:       algo,
			LocalEpochs:     uint32(a.Train.Epochs),
			BatchSize:       uint32(a.Train.Batch),
			LearningRate:    a.Train.LR,
			ProximalMu:      a.Train.ProxMu,
			ClipNorm:        a.DP.Clip,
			NoiseMultiplier: a.DP.Noise,
			StageTimeoutMs:  uint64(c.StageTimeout / time.Millisecond),
			DpMinClients:    uint32(a.DP.MinClients),
		},
		Secagg: &pb.SecAggParams{
			Threshold:        uint32(c.Threshold),
			Neighbours:       uint32(c.Degree),
			QuantizationBits: uint32(c.Bits),
			ModulusBits:      uint32(c.Bits),
			ClipRange:        c.ClipRange,
			VectorLength:     uint64(c.Dim),
			GraphSeed:        append([]byte(nil), c.GraphSeed[:]...),
			Clients:          append([]uint32(nil), c.Clients...),
			MaxWeight:        c.MaxWeight,
			StageTimeoutMs:   uint64(c.StageTimeout / time.Millisecond),
			ConsistencyCheck: c.ConsistencyCheck,
		},
	}, nil
}

// AnnounceFromPB decodes and checks a RoundAnnounce: the SecAgg+
// configuration must validate, cover exactly the sampled workers and agree
// with the model's size and the round.
func AnnounceFromPB(m *pb.RoundAnnounce) (*Announce, error) {
	const msg = "RoundAnnounce"
	if m == nil {
		return nil, invalid(msg, "", "missing")
	}
	if err := checkRound(msg, m.Round, 0); err != nil {
		return nil, err
	}
	a := &Announce{Round: m.Round, ModelVersion: m.ModelVersion, Epsilon: m.Epsilon}
	if len(m.ModelSha256) != 32 {
		return nil, invalid(msg, "model_sha256", "%d bytes, want 32", len(m.ModelSha256))
	}
	copy(a.ModelHash[:], m.ModelSha256)
	if m.ModelVersion >= m.Round {
		return nil, invalid(msg, "model_version", "%d not before round %d", m.ModelVersion, m.Round)
	}
	if m.ModelSpec == "" || len(m.ModelSpec) > MaxSpecLen {
		return nil, invalid(msg, "model_spec", "length %d out of range 1..%d", len(m.ModelSpec), MaxSpecLen)
	}
	a.ModelSpec = m.ModelSpec
	if m.NumParams < 1 || m.NumParams > secagg.MaxDim {
		return nil, invalid(msg, "num_params", "%d out of range 1..%d", m.NumParams, secagg.MaxDim)
	}
	a.NumParams = int(m.NumParams)
	if m.ModelSize != 4*m.NumParams {
		return nil, invalid(msg, "model_size", "%d bytes, want 4·num_params = %d", m.ModelSize, 4*m.NumParams)
	}
	if err := finite(msg, "epsilon", m.Epsilon, 0); err != nil {
		return nil, err
	}
	if !m.Secure || m.Secagg == nil {
		return nil, invalid(msg, "secagg", "missing: rounds are always securely aggregated")
	}
	rc := m.Config
	if rc == nil {
		return nil, invalid(msg, "config", "missing")
	}
	if rc.LocalEpochs < 1 || rc.LocalEpochs > MaxEpochs {
		return nil, invalid(msg, "config.local_epochs", "%d out of range 1..%d", rc.LocalEpochs, MaxEpochs)
	}
	if rc.BatchSize < 1 || rc.BatchSize > MaxBatch {
		return nil, invalid(msg, "config.batch_size", "%d out of range 1..%d", rc.BatchSize, MaxBatch)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"config.learning_rate", rc.LearningRate}, {"config.proximal_mu", rc.ProximalMu}, {"config.clip_norm", rc.ClipNorm}, {"config.noise_multiplier", rc.NoiseMultiplier}} {
		if err := finite(msg, f.name, f.v, 0); err != nil {
			return nil, err
		}
	}
	if !(rc.LearningRate > 0) {
		return nil, invalid(msg, "config.learning_rate", "%v must be > 0", rc.LearningRate)
	}
	if rc.NoiseMultiplier > 0 && !(rc.ClipNorm > 0) {
		return nil, invalid(msg, "config.clip_norm", "%v must be > 0 when noise_multiplier is %v", rc.ClipNorm, rc.NoiseMultiplier)
	}
	a.Train = TrainParams{Epochs: int(rc.LocalEpochs), Batch: int(rc.BatchSize), LR: rc.LearningRate, ProxMu: rc.ProximalMu}
	a.DP = DPParams{Clip: rc.ClipNorm, Noise: rc.NoiseMultiplier, MinClients: int(rc.DpMinClients)}
	n := len(m.SampledWorkers)
	if n < 2 || n > secagg.MaxClients {
		return nil, invalid(msg, "sampled_workers", "%d entries, need 2..%d", n, secagg.MaxClients)
	}
	seen := make(map[string]bool, n)
	a.Sampled = make([]string, n)
	for i, b := range m.SampledWorkers {
		id, err := peer.IDFromBytes(b)
		if err != nil {
			return nil, invalid(msg, fmt.Sprintf("sampled_workers[%d]", i), "not a peer ID: %v", err)
		}
		s := id.String()
		// Only IDs whose text form parses back to the same ID: libp2p
		// decodes some multihashes it cannot print as a parseable ID, so a
		// worker and the coordinator would disagree about who was sampled
		// (security review L5).
		if back, err := peer.Decode(s); err != nil || back != id {
			return nil, invalid(msg, fmt.Sprintf("sampled_workers[%d]", i), "peer ID %q does not parse back: %v", s, err)
		}
		if seen[s] {
			return nil, invalid(msg, fmt.Sprintf("sampled_workers[%d]", i), "%s listed twice", s)
		}
		seen[s] = true
		if i > 0 && s < a.Sampled[i-1] {
			return nil, invalid(msg, fmt.Sprintf("sampled_workers[%d]", i), "not sorted")
		}
		a.Sampled[i] = s
	}
	if a.DP.MinClients < 0 || a.DP.MinClients > n {
		return nil, invalid(msg, "config.dp_min_clients", "%d out of range 0..%d", a.DP.MinClients, n)
	}
	cfg, err := ConfigFromPB(m.Round, m.Secagg)
	if err != nil {
		return nil, err
	}
	if len(cfg.Clients) != n {
		return nil, invalid(msg, "secagg.clients", "%d entries for %d sampled workers", len(cfg.Clients), n)
	}
	for i, c := range cfg.Clients {
		if c != uint32(i+1) {
			return nil, invalid(msg, fmt.Sprintf("secagg.clients[%d]", i), "%d, want %d (sampled_workers[%d] has index %d)", c, i+1, i, i+1)
		}
	}
	switch m.Purpose {
	case "":
		if cfg.Dim != a.NumParams && cfg.Dim != a.NumParams+EvalWords {
			return nil, invalid(msg, "secagg.vector_length", "%d, want num_params = %d (or %d with secure evaluation)", cfg.Dim, a.NumParams, a.NumParams+EvalWords)
		}
	case PurposeStatistics:
		// The vector is the schema's sufficient statistics; the worker
		// checks its length against its own schema.
		if len(m.SchemaSha256) == 0 {
			return nil, invalid(msg, "schema_sha256", "missing on a %s round", PurposeStatistics)
		}
		if m.StatsMaxRows < 1 || m.StatsMaxRows > MaxStatsRows {
			return nil, invalid(msg, "stats_max_rows", "%d out of range 1..%d", m.StatsMaxRows, MaxStatsRows)
		}
		a.StatsMaxRows = int(m.StatsMaxRows)
	default:
		return nil, invalid(msg, "purpose", "%q, want empty or %q", m.Purpose, PurposeStatistics)
	}
	if m.Purpose != PurposeStatistics && m.StatsMaxRows != 0 {
		return nil, invalid(msg, "stats_max_rows", "set on a model round")
	}
	a.Purpose = m.Purpose
	if len(m.Study) > MaxStudyName || !utf8.ValidString(m.Study) {
		return nil, invalid(msg, "study", "%d bytes, at most %d of UTF-8", len(m.Study), MaxStudyName)
	}
	a.Study = m.Study
	switch len(m.SchemaSha256) {
	case 0:
	case 32:
		copy(a.SchemaHash[:], m.SchemaSha256)
	default:
		return nil, invalid(msg, "schema_sha256", "%d bytes, want 32 or none", len(m.SchemaSha256))
	}
	if len(m.FederationStats) > MaxStatsBytes {
		return nil, invalid(msg, "federation_stats", "%d bytes, above %d", len(m.FederationStats), MaxStatsBytes)
	}
	if len(m.FederationStats) > 0 {
		if a.SchemaHash == ([32]byte{}) {
			return nil, invalid(msg, "federation_stats", "set without schema_sha256")
		}
		if m.Purpose == PurposeStatistics {
			return nil, invalid(msg, "federation_stats", "set on the %s round itself", PurposeStatistics)
		}
		a.Stats = append([]byte(nil), m.FederationStats...)
	}
	a.SecAgg = cfg
	return a, nil
}

func schemaHashBytes(h [32]byte) []byte {
	if h == ([32]byte{}) {
		return nil
	}
	return append([]byte(nil), h[:]...)
}

// ConfigFromPB decodes the SecAgg+ parameters of round and validates them
// (secagg.Config.Validate).
func ConfigFromPB(round uint64, p *pb.SecAggParams) (secagg.Config, error) {
	const msg = "SecAggParams"
	if p == nil {
		return secagg.Config{}, invalid(msg, "", "missing")
	}
	if p.QuantizationBits != p.ModulusBits {
		return secagg.Config{}, invalid(msg, "quantization_bits", "%d differs from modulus_bits %d", p.QuantizationBits, p.ModulusBits)
	}
	if len(p.GraphSeed) != 32 {
		return secagg.Config{}, invalid(msg, "graph_seed", "%d bytes, want 32", len(p.GraphSeed))
	}
	if len(p.Clients) < 2 || len(p.Clients) > secagg.MaxClients {
		return secagg.Config{}, invalid(msg, "clients", "%d entries, need 2..%d", len(p.Clients), secagg.MaxClients)
	}
	if p.Neighbours < 1 || p.Threshold < 2 || p.QuantizationBits == 0 {
		return secagg.Config{}, invalid(msg, "neighbours", "degree %d, threshold %d, bits %d: all must be set", p.Neighbours, p.Threshold, p.QuantizationBits)
	}
	if p.VectorLength < 1 || p.VectorLength > secagg.MaxDim {
		return secagg.Config{}, invalid(msg, "vector_length", "%d out of range 1..%d", p.VectorLength, secagg.MaxDim)
	}
	const maxTimeoutMs = uint64(24 * time.Hour / time.Millisecond)
	if p.StageTimeoutMs < 1 || p.StageTimeoutMs > maxTimeoutMs {
		return secagg.Config{}, invalid(msg, "stage_timeout_ms", "%d out of range 1..%d", p.StageTimeoutMs, maxTimeoutMs)
	}
	c := secagg.Config{
		Round:        round,
		Clients:      append([]uint32(nil), p.Clients...),
		Degree:       int(p.Neighbours),
		Threshold:    int(p.Threshold),
		Bits:         int(p.QuantizationBits),
		ClipRange:    p.ClipRange,
		MaxWeight:    p.MaxWeight,
		Dim:          int(p.VectorLength),
		StageTimeout: time.Duration(p.StageTimeoutMs) * time.Millisecond,
		// ConsistencyCheck: Bonawitz et al. 2017, round 4.
		ConsistencyCheck: p.ConsistencyCheck,
	}
	copy(c.GraphSeed[:], p.GraphSeed)
	if err := c.Validate(); err != nil {
		return secagg.Config{}, fmt.Errorf("%w: %s: %v", ErrInvalid, msg, err)
	}
	return c, nil
}

// ---- stage 0 ----

// AdvertiseKeysToPB encodes a worker's stage-0 keys.
func AdvertiseKeysToPB(k secagg.AdvertiseKeys) *pb.AdvertiseKeys {
	return &pb.AdvertiseKeys{Round: k.Round, FromIndex: k.From, CPk: k.EncKey, SPk: k.MaskKey,
		SeedCommitment: k.SeedCommit, Signature: k.Signature}
}

// AdvertiseKeysFromPB decodes stage-0 keys of round (0: any round). A set
// refusal field is not decoded here: check it first (see RefusalOf).
func AdvertiseKeysFromPB(m *pb.AdvertiseKeys, round uint64) (secagg.AdvertiseKeys, error) {
	const msg = "AdvertiseKeys"
	if m == nil {
		return secagg.AdvertiseKeys{}, invalid(msg, "", "missing")
	}
	if err := checkRound(msg, m.Round, round); err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	if err := checkIndex(msg, "from_index", m.FromIndex); err != nil {
		return secagg.AdvertiseKeys{}, err
	}
	if len(m.CPk) != secagg.KeySize {
		return secagg.AdvertiseKeys{}, invalid(msg, "c_pk", "%d bytes, want %d", len(m.CPk), secagg.KeySize)
	}
	if len(m.SPk) != secagg.KeySize {
		return secagg.AdvertiseKeys{}, invalid(msg, "s_pk", "%d bytes, want %d", len(m.SPk), secagg.KeySize)
	}
	if len(m.SeedCommitment) != secagg.KeySize {
		return secagg.AdvertiseKeys{}, invalid(msg, "seed_commitment", "%d bytes, want %d", len(m.SeedCommitment), secagg.KeySize)
	}
	if len(m.Signature) > MaxSignatureLen {
		return secagg.AdvertiseKeys{}, invalid(msg, "signature", "%d bytes, at most %d", len(m.Signature), MaxSignatureLen)
	}
	return secagg.AdvertiseKeys{
		Round: m.Round, From: m.FromIndex,
		EncKey:     append([]byte(nil), m.CPk...),
		MaskKey:    append([]byte(nil), m.SPk...),
		SeedCommit: append([]byte(nil), m.SeedCommitment...),
		Signature:  append([]byte(nil), m.Signature...),
	}, nil
}

// ---- stage 1 ----

// KeyBroadcastToPB encodes the neighbours' keys relayed to one worker.
func KeyBroadcastToPB(kb secagg.KeyBroadcast) *pb.KeysBroadcast {
	m := &pb.KeysBroadcast{Round: kb.Round, ToIndex: kb.To, Keys: make([]*pb.AdvertiseKeys, len(kb.Keys))}
	for i, k := range kb.Keys {
		m.Keys[i] = AdvertiseKeysToPB(k)
	}
	return m
}

// KeyBroadcastFromPB decodes the keys relayed to a worker.
func KeyBroadcastFromPB(m *pb.KeysBroadcast) (secagg.KeyBroadcast, error) {
	const msg = "KeysBroadcast"
	if m == nil {
		return secagg.KeyBroadcast{}, invalid(msg, "", "missing")
	}
	if err := checkRound(msg, m.Round, 0); err != nil {
		return secagg.KeyBroadcast{}, err
	}
	if err := checkIndex(msg, "to_index", m.ToIndex); err != nil {
		return secagg.KeyBroadcast{}, err
	}
	if len(m.Keys) > secagg.MaxClients {
		return secagg.KeyBroadcast{}, invalid(msg, "keys", "%d entries, at most %d", len(m.Keys), secagg.MaxClients)
	}
	kb := secagg.KeyBroadcast{Round: m.Round, To: m.ToIndex, Keys: make([]secagg.AdvertiseKeys, len(m.Keys))}
	for i, k := range m.Keys {
		d, err := AdvertiseKeysFromPB(k, m.Round)
		if err != nil {
			return secagg.KeyBroadcast{}, fmt.Errorf("KeysBroadcast.keys[%d]: %w", i, err)
		}
		kb.Keys[i] = d
	}
	return kb, nil
}

// SharesToPB encodes encrypted shares: a worker's stage-1 answer (to = 0)
// or the bundle relayed to worker to in stage 2.
func SharesToPB(round uint64, to uint32, shares []secagg.EncryptedShare) *pb.EncryptedShares {
	m := &pb.EncryptedShares{Round: round, ToIndex: to, Shares: make([]*pb.EncryptedShare, len(shares))}
	for i, s := range shares {
		m.Shares[i] = &pb.EncryptedShare{FromIndex: s.From, ToIndex: s.To, Ciphertext: s.Ciphertext}
	}
	return m
}

// SharesFromPB decodes encrypted shares of round (0: any round). Every
// ciphertext must have secagg.CiphertextSize bytes.
func SharesFromPB(m *pb.EncryptedShares, round uint64) ([]secagg.EncryptedShare, error) {
	const msg = "EncryptedShares"
	if m == nil {
		return nil, invalid(msg, "", "missing")
	}
	if err := checkRound(msg, m.Round, round); err != nil {
		return nil, err
	}
	if len(m.Shares) > secagg.MaxClients {
		return nil, invalid(msg, "shares", "%d entries, at most %d", len(m.Shares), secagg.MaxClients)
	}
	out := make([]secagg.EncryptedShare, len(m.Shares))
	for i, s := range m.Shares {
		f := fmt.Sprintf("shares[%d]", i)
		if s == nil {
			return nil, invalid(msg, f, "missing")
		}
		if err := checkIndex(msg, f+".from_index", s.FromIndex); err != nil {
			return nil, err
		}
		if err := checkIndex(msg, f+".to_index", s.ToIndex); err != nil {
			return nil, err
		}
		if len(s.Ciphertext) != secagg.CiphertextSize {
			return nil, invalid(msg, f+".ciphertext", "%d bytes, want %d", len(s.Ciphertext), secagg.CiphertextSize)
		}
		out[i] = secagg.EncryptedShare{Round: m.Round, From: s.FromIndex, To: s.ToIndex, Ciphertext: append([]byte(nil), s.Ciphertext...)}
	}
	return out, nil
}

// ShareBundleFromPB decodes the shares relayed to a worker in stage 2:
// to_index must be set and every share addressed to it.
func ShareBundleFromPB(m *pb.EncryptedShares) (secagg.ShareBundle, error) {
	shares, err := SharesFromPB(m, 0)
	if err != nil {
		return secagg.ShareBundle{}, err
	}
	if err := checkIndex("EncryptedShares", "to_index", m.ToIndex); err != nil {
		return secagg.ShareBundle{}, err
	}
	for i, s := range shares {
		if s.To != m.ToIndex {
			return secagg.ShareBundle{}, invalid("EncryptedShares", fmt.Sprintf("shares[%d].to_index", i), "%d in a bundle for node %d", s.To, m.ToIndex)
		}
	}
	return secagg.ShareBundle{Round: m.Round, To: m.ToIndex, Shares: shares}, nil
}

// ---- stage 2 ----

// MaskedHeader returns the header announcing mi's vector, to be followed
// by the bytes of EncodeVector(mi.Vector) as a blob.
func MaskedHeader(mi secagg.MaskedInput, blob []byte) *pb.MaskedInputHeader {
	sum := sha256Sum(blob)
	return &pb.MaskedInputHeader{
		Round: mi.Round, FromIndex: mi.From, VectorLength: uint64(len(mi.Vector)),
		ElementBits: ElementBits, BlobSha256: sum[:], BlobSize: uint64(len(blob)),
		Complaints: mi.Complaints,
	}
}

// MaskedComplaints returns the complaints of a stage-2 header: node indices
// other than the sender, ascending and distinct, at most secagg.MaxClients.
func MaskedComplaints(m *pb.MaskedInputHeader) ([]uint32, error) {
	const msg = "MaskedInputHeader"
	if len(m.Complaints) > secagg.MaxClients {
		return nil, invalid(msg, "complaints", "%d entries, at most %d", len(m.Complaints), secagg.MaxClients)
	}
	for i, v := range m.Complaints {
		if err := checkIndex(msg, "complaints", v); err != nil {
			return nil, err
		}
		if v == m.FromIndex {
			return nil, invalid(msg, "complaints", "names the sender %d", v)
		}
		if i > 0 && v <= m.Complaints[i-1] {
			return nil, invalid(msg, "complaints", "%d after %d: must ascend", v, m.Complaints[i-1])
		}
	}
	if len(m.Complaints) == 0 {
		return nil, nil
	}
	return append([]uint32(nil), m.Complaints...), nil
}

// CheckMaskedHeader checks a stage-2 header of round (0: any) from node
// from (0: any) before its blob is read, and returns the vector length.
// words (0: any up to MaxDim+1) is the length the round allows, its Dim+1
// (the masked weight rides as the last word): a header announcing any
// other length is refused here, before a byte of the blob is allocated
// (security review M2).
func CheckMaskedHeader(m *pb.MaskedInputHeader, round uint64, from uint32, words int) (int, error) {
	const msg = "MaskedInputHeader"
	if m == nil {
		return 0, invalid(msg, "", "missing")
	}
	if err := checkRound(msg, m.Round, round); err != nil {
		return 0, err
	}
	if err := checkIndex(msg, "from_index", m.FromIndex); err != nil {
		return 0, err
	}
	if from != 0 && m.FromIndex != from {
		return 0, invalid(msg, "from_index", "%d, expected node %d", m.FromIndex, from)
	}
	if m.ElementBits != ElementBits {
		return 0, invalid(msg, "element_bits", "%d, want %d", m.ElementBits, ElementBits)
	}
	if m.VectorLength < 2 || m.VectorLength > secagg.MaxDim+1 {
		return 0, invalid(msg, "vector_length", "%d out of range 2..%d", m.VectorLength, secagg.MaxDim+1)
	}
	if words != 0 && m.VectorLength != uint64(words) {
		return 0, invalid(msg, "vector_length", "%d, the round's model needs %d (dim+1)", m.VectorLength, words)
	}
	if m.BlobSize != 4*m.VectorLength {
		return 0, invalid(msg, "blob_size", "%d, want 4·vector_length = %d", m.BlobSize, 4*m.VectorLength)
	}
	if len(m.BlobSha256) != 32 {
		return 0, invalid(msg, "blob_sha256", "%d bytes, want 32", len(m.BlobSha256))
	}
	return int(m.VectorLength), nil
}

// EncodeVector returns v as little-endian uint32 words.
func EncodeVector(v []uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}

// DecodeVector reads n little-endian uint32 words from b, each below
// 2^bits (8 ≤ bits ≤ 32).
func DecodeVector(b []byte, n, bits int) ([]uint32, error) {
	if n < 0 || len(b) != 4*n {
		return nil, invalid("MaskedInput", "vector", "%d bytes, want 4·%d", len(b), n)
	}
	if bits < 8 || bits > 32 {
		return nil, invalid("MaskedInput", "bits", "%d out of range 8..32", bits)
	}
	v := make([]uint32, n)
	for i := range v {
		x := binary.LittleEndian.Uint32(b[4*i:])
		if bits < 32 && x>>uint(bits) != 0 {
			return nil, invalid("MaskedInput", fmt.Sprintf("vector[%d]", i), "%d not below 2^%d", x, bits)
		}
		v[i] = x
	}
	return v, nil
}

// ---- stage 3 ----

// UnmaskRequestToPB encodes the committed survivor set sent to one worker,
// with the consistency-check signatures over it.
func UnmaskRequestToPB(r secagg.UnmaskRequest) *pb.UnmaskRequest {
	m := &pb.UnmaskRequest{
		Round: r.Round, ToIndex: r.To,
		SurvivorIndices: append([]uint32(nil), r.Survivors...),
		DroppedIndices:  append([]uint32(nil), r.Dropped...),
	}
	for _, sg := range r.Signatures {
		m.Signatures = append(m.Signatures, ConsistencyResponseToPB(sg))
	}
	return m
}

// ---- consistency check (Bonawitz et al. 2017, round 4) ----

// ConsistencyRequestToPB encodes the survivor set one worker is asked to
// sign.
func ConsistencyRequestToPB(r secagg.ConsistencyRequest) *pb.ConsistencyRequest {
	return &pb.ConsistencyRequest{Round: r.Round, ToIndex: r.To, SurvivorIndices: append([]uint32(nil), r.Survivors...)}
}

// ConsistencyRequestFromPB decodes a consistency request: survivor indices
// sorted, distinct and non-zero.
func ConsistencyRequestFromPB(m *pb.ConsistencyRequest) (secagg.ConsistencyRequest, error) {
	const msg = "ConsistencyRequest"
	if m == nil {
		return secagg.ConsistencyRequest{}, invalid(msg, "", "missing")
	}
	if err := checkRound(msg, m.Round, 0); err != nil {
		return secagg.ConsistencyRequest{}, err
	}
	if err := checkIndex(msg, "to_index", m.ToIndex); err != nil {
		return secagg.ConsistencyRequest{}, err
	}
	if err := checkIndexSet(msg, "survivor_indices", m.SurvivorIndices); err != nil {
		return secagg.ConsistencyRequest{}, err
	}
	return secagg.ConsistencyRequest{Round: m.Round, To: m.ToIndex, Survivors: append([]uint32{}, m.SurvivorIndices...)}, nil
}

// ConsistencyResponseToPB encodes a worker's signature over a survivor set.
func ConsistencyResponseToPB(r secagg.ConsistencyResponse) *pb.ConsistencyResponse {
	return &pb.ConsistencyResponse{Round: r.Round, FromIndex: r.From, Signature: append([]byte(nil), r.Signature...)}
}

// ConsistencyResponseFromPB decodes a consistency signature of round (0:
// any) from node from (0: any); the signature is at most MaxSignatureLen
// bytes (its validity is the receiver's check, under the signer's peer ID).
func ConsistencyResponseFromPB(m *pb.ConsistencyResponse, round uint64, from uint32) (secagg.ConsistencyResponse, error) {
	const msg = "ConsistencyResponse"
	if m == nil {
		return secagg.ConsistencyResponse{}, invalid(msg, "", "missing")
	}
	if err := checkRound(msg, m.Round, round); err != nil {
		return secagg.ConsistencyResponse{}, err
	}
	if err := checkIndex(msg, "from_index", m.FromIndex); err != nil {
		return secagg.ConsistencyResponse{}, err
	}
	if from != 0 && m.FromIndex != from {
		return secagg.ConsistencyResponse{}, invalid(msg, "from_index", "%d, expected node %d", m.FromIndex, from)
	}
	if len(m.Signature) > MaxSignatureLen {
		return secagg.ConsistencyResponse{}, invalid(msg, "signature", "%d bytes, at most %d", len(m.Signature), MaxSignatureLen)
	}
	return secagg.ConsistencyResponse{Round: m.Round, From: m.FromIndex, Signature: append([]byte(nil), m.Signature...)}, nil
}

func checkIndexSet(msg, field string, v []uint32) error {
	if len(v) > secagg.MaxClients {
		return invalid(msg, field, "%d entries, at most %d", len(v), secagg.MaxClients)
	}
	for i, x := range v {
		if err := checkIndex(msg, fmt.Sprintf("%s[%d]", field, i), x); err != nil {
			return err
		}
		if i > 0 && x <= v[i-1] {
			return invalid(msg, fmt.Sprintf("%s[%d]", field, i), "%d not above %d (must be sorted and distinct)", x, v[i-1])
		}
	}
	return nil
}

// UnmaskRequestFromPB decodes a survivor set: indices sorted, distinct,
// non-zero, and no index both survivor and dropped.
func UnmaskRequestFromPB(m *pb.UnmaskRequest) (secagg.UnmaskRequest, error) {
	const msg = "UnmaskRequest"
	if m == nil {
		return secagg.UnmaskRequest{}, invalid(msg, "", "missing")
	}
	if err := checkRound(msg, m.Round, 0); err != nil {
		return secagg.UnmaskRequest{}, err
	}
	if err := checkIndex(msg, "to_index", m.ToIndex); err != nil {
		return secagg.UnmaskRequest{}, err
	}
	if err := checkIndexSet(msg, "survivor_indices", m.SurvivorIndices); err != nil {
		return secagg.UnmaskRequest{}, err
	}
	if err := checkIndexSet(msg, "dropped_indices", m.DroppedIndices); err != nil {
		return secagg.UnmaskRequest{}, err
	}
	surv := make(map[uint32]bool, len(m.SurvivorIndices))
	for _, s := range m.SurvivorIndices {
		surv[s] = true
	}
	for i, d := range m.DroppedIndices {
		if surv[d] {
			return secagg.UnmaskRequest{}, invalid(msg, fmt.Sprintf("dropped_indices[%d]", i), "node %d is also a survivor", d)
		}
	}
	// At most one signature per survivor, each a survivor's, for this
	// round; whether they verify is the worker's check (secagg confirmed).
	if len(m.Signatures) > len(m.SurvivorIndices) {
		return secagg.UnmaskRequest{}, invalid(msg, "signatures", "%d entries for %d survivors", len(m.Signatures), len(m.SurvivorIndices))
	}
	var sigs []secagg.ConsistencyResponse
	signed := make(map[uint32]bool, len(m.Signatures))
	for i, sg := range m.Signatures {
		f := fmt.Sprintf("signatures[%d]", i)
		r, err := ConsistencyResponseFromPB(sg, m.Round, 0)
		if err != nil {
			return secagg.UnmaskRequest{}, fmt.Errorf("%s.%s: %w", msg, f, err)
		}
		if !surv[r.From] {
			return secagg.UnmaskRequest{}, invalid(msg, f+".from_index", "node %d is not a survivor", r.From)
		}
		if signed[r.From] {
			return secagg.UnmaskRequest{}, invalid(msg, f+".from_index", "node %d signed twice", r.From)
		}
		signed[r.From] = true
		sigs = append(sigs, r)
	}
	return secagg.UnmaskRequest{
		Round: m.Round, To: m.ToIndex,
		Survivors:  append([]uint32{}, m.SurvivorIndices...),
		Dropped:    append([]uint32{}, m.DroppedIndices...),
		Signatures: sigs,
	}, nil
}

// UnmaskResponseToPB encodes a worker's stage-3 shares.
func UnmaskResponseToPB(r secagg.UnmaskResponse) *pb.UnmaskResponse {
	m := &pb.UnmaskResponse{Round: r.Round, FromIndex: r.From, Shares: make([]*pb.Share, 0, len(r.SelfMaskShares)+len(r.MaskKeyShares))}
	for _, s := range r.SelfMaskShares {
		m.Shares = append(m.Shares, &pb.Share{OwnerIndex: s.Owner, Kind: pb.ShareKind_SHARE_KIND_SELF_MASK_SEED, Value: s.Value})
	}
	for _, s := range r.MaskKeyShares {
		m.Shares = append(m.Shares, &pb.Share{OwnerIndex: s.Owner, Kind: pb.ShareKind_SHARE_KIND_MASK_KEY, Value: s.Value})
	}
	return m
}

// UnmaskResponseFromPB decodes stage-3 shares of round (0: any) from node
// from (0: any). Every share has secagg.ShareSize bytes and a known kind.
func UnmaskResponseFromPB(m *pb.UnmaskResponse, round uint64, from uint32) (secagg.UnmaskResponse, error) {
	const msg = "UnmaskResponse"
	if m == nil {
		return secagg.UnmaskResponse{}, invalid(msg, "", "missing")
	}
	if err := checkRound(msg, m.Round, round); err != nil {
		return secagg.UnmaskResponse{}, err
	}
	if err := checkIndex(msg, "from_index", m.FromIndex); err != nil {
		return secagg.UnmaskResponse{}, err
	}
	if from != 0 && m.FromIndex != from {
		return secagg.UnmaskResponse{}, invalid(msg, "from_index", "%d, expected node %d", m.FromIndex, from)
	}
	if len(m.Shares) > 2*secagg.MaxClients {
		return secagg.UnmaskResponse{}, invalid(msg, "shares", "%d entries, at most %d", len(m.Shares), 2*secagg.MaxClients)
	}
	r := secagg.UnmaskResponse{Round: m.Round, From: m.FromIndex}
	for i, s := range m.Shares {
		f := fmt.Sprintf("shares[%d]", i)
		if s == nil {
			return secagg.UnmaskResponse{}, invalid(msg, f, "missing")
		}
		if err := checkIndex(msg, f+".owner_index", s.OwnerIndex); err != nil {
			return secagg.UnmaskResponse{}, err
		}
		if len(s.Value) != secagg.ShareSize {
			return secagg.UnmaskResponse{}, invalid(msg, f+".value", "%d bytes, want %d", len(s.Value), secagg.ShareSize)
		}
		sh := secagg.Share{Owner: s.OwnerIndex, Value: append([]byte(nil), s.Value...)}
		switch s.Kind {
		case pb.ShareKind_SHARE_KIND_SELF_MASK_SEED:
			r.SelfMaskShares = append(r.SelfMaskShares, sh)
		case pb.ShareKind_SHARE_KIND_MASK_KEY:
			r.MaskKeyShares = append(r.MaskKeyShares, sh)
		default:
			return secagg.UnmaskResponse{}, invalid(msg, f+".kind", "unknown share kind %d", int32(s.Kind))
		}
	}
	return r, nil
}

// ---- survivor confirmation (security review L4) ----

// AnnounceDigest is the SHA-256 of a's RoundAnnounce encoding
// (deterministic protobuf): the coordinator replicas and the worker compute
// it from their own copies of the announcement, so a worker can check that
// the announcement it answers is the one Raft committed.
func AnnounceDigest(a *Announce) ([32]byte, error) {
	m, err := AnnounceToPB(a)
	if err != nil {
		return [32]byte{}, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return [32]byte{}, fmt.Errorf("wire: announce digest: %w", err)
	}
	return sha256.Sum256(b), nil
}

// SurvivorAnswerToPB encodes a replica's committed survivors of round
// (peer IDs in string form); known false means it has none.
func SurvivorAnswerToPB(round uint64, known bool, survivors []string) (*pb.SurvivorAnswer, error) {
	m := &pb.SurvivorAnswer{Round: round, Known: known}
	for i, s := range survivors {
		id, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("wire: SurvivorAnswer.survivors[%d] %q: %w", i, s, err)
		}
		m.Survivors = append(m.Survivors, []byte(id))
	}
	return m, nil
}

// SurvivorAnswerFromPB decodes a replica's answer for round: the survivors
// as peer ID strings, sorted and distinct, and whether it knows them.
func SurvivorAnswerFromPB(m *pb.SurvivorAnswer, round uint64) (survivors []string, known bool, err error) {
	const msg = "SurvivorAnswer"
	if m == nil {
		return nil, false, invalid(msg, "", "missing")
	}
	if err := checkRound(msg, m.Round, round); err != nil {
		return nil, false, err
	}
	if len(m.Survivors) > secagg.MaxClients {
		return nil, false, invalid(msg, "survivors", "%d entries, at most %d", len(m.Survivors), secagg.MaxClients)
	}
	if !m.Known && len(m.Survivors) > 0 {
		return nil, false, invalid(msg, "survivors", "%d entries with known unset", len(m.Survivors))
	}
	if n := len(m.AnnounceSha256); n != 0 && n != 32 {
		return nil, false, invalid(msg, "announce_sha256", "%d bytes, want 0 or 32", n)
	}
	out := make([]string, 0, len(m.Survivors))
	for i, b := range m.Survivors {
		id, err := peer.IDFromBytes(b)
		if err != nil {
			return nil, false, invalid(msg, fmt.Sprintf("survivors[%d]", i), "not a peer ID: %v", err)
		}
		out = append(out, id.String())
	}
	slices.Sort(out)
	for i := 1; i < len(out); i++ {
		if out[i] == out[i-1] {
			return nil, false, invalid(msg, "survivors", "%s listed twice", out[i])
		}
	}
	return out, m.Known, nil
}

// ---- evaluation ----

// Metrics is a decoded MetricsReport.
type Metrics struct {
	Examples int
	Loss     float64
	Accuracy float64
	// Binary is set by a worker whose model has two classes.
	Binary *BinaryReport
}

// ScoreBins is the number of equal bins of [0, 1] a BinaryReport counts
// P(class 1) in.
const ScoreBins = 20

// BinaryReport is one worker's two-class evaluation: the confusion matrix
// at the argmax decision (class 1 positive) and the histograms of
// P(class 1) of its positive and negative test examples. Sums of reports
// are the federation's; BinaryAUC turns them into a ROC AUC.
type BinaryReport struct {
	TP, FP, TN, FN int
	Pos, Neg       [ScoreBins]uint64
}

// Add adds o to r.
func (r *BinaryReport) Add(o *BinaryReport) {
	r.TP, r.FP, r.TN, r.FN = r.TP+o.TP, r.FP+o.FP, r.TN+o.TN, r.FN+o.FN
	for i := range r.Pos {
		r.Pos[i] += o.Pos[i]
		r.Neg[i] += o.Neg[i]
	}
}

// AUC is the area under the ROC curve of the histograms (Mann–Whitney U,
// Hanley & McNeil 1982): P(score of a positive > score of a negative), pairs
// in one bin counting one half. It is NaN when a class is absent; binning
// changes it by at most the share of pairs that fall in one bin.
func (r *BinaryReport) AUC() float64 {
	var p, n, u float64
	var below float64 // negatives in lower bins
	for i := range ScoreBins {
		pos, neg := float64(r.Pos[i]), float64(r.Neg[i])
		u += pos * (below + neg/2)
		below += neg
		p += pos
		n += neg
	}
	if p == 0 || n == 0 {
		return math.NaN()
	}
	return u / (p * n)
}

// ScoreBin is the bin of a probability.
func ScoreBin(p float64) int {
	return min(ScoreBins-1, max(0, int(p*ScoreBins)))
}

// MetricsFromPB decodes a worker's evaluation of round's model: examples
// bounded, loss finite and ≥ 0, accuracy in [0, 1].
func MetricsFromPB(m *pb.MetricsReport, round uint64) (Metrics, error) {
	const msg = "MetricsReport"
	if m == nil {
		return Metrics{}, invalid(msg, "", "missing")
	}
	if m.Round != round {
		return Metrics{}, invalid(msg, "round", "%d, expected round %d", m.Round, round)
	}
	if m.Examples > 1<<40 {
		return Metrics{}, invalid(msg, "examples", "%d implausibly large", m.Examples)
	}
	if err := finite(msg, "loss", m.Loss, 0); err != nil {
		return Metrics{}, err
	}
	if err := finite(msg, "accuracy", m.Accuracy, 0); err != nil {
		return Metrics{}, err
	}
	if m.Accuracy > 1 {
		return Metrics{}, invalid(msg, "accuracy", "%v above 1", m.Accuracy)
	}
	out := Metrics{Examples: int(m.Examples), Loss: m.Loss, Accuracy: m.Accuracy}
	if len(m.Confusion) == 0 && len(m.PositiveScores) == 0 && len(m.NegativeScores) == 0 {
		return out, nil
	}
	if len(m.Confusion) != 4 || len(m.PositiveScores) != ScoreBins || len(m.NegativeScores) != ScoreBins {
		return Metrics{}, invalid(msg, "confusion", "%d confusion counts and %d+%d score bins, want 4 and %d+%d", len(m.Confusion), len(m.PositiveScores), len(m.NegativeScores), ScoreBins, ScoreBins)
	}
	var b BinaryReport
	var total, pos, neg uint64
	for _, v := range m.Confusion {
		total += v
	}
	for i := range ScoreBins {
		b.Pos[i], b.Neg[i] = m.PositiveScores[i], m.NegativeScores[i]
		pos += b.Pos[i]
		neg += b.Neg[i]
	}
	if total != m.Examples || pos+neg != m.Examples || m.Confusion[0]+m.Confusion[3] != pos {
		return Metrics{}, invalid(msg, "confusion", "counts %v and %d+%d scored examples do not add up to the %d examples (tp+fn must be the positives)", m.Confusion, pos, neg, m.Examples)
	}
	b.TP, b.FP, b.TN, b.FN = int(m.Confusion[0]), int(m.Confusion[1]), int(m.Confusion[2]), int(m.Confusion[3])
	out.Binary = &b
	return out, nil
}

// MetricsToPB encodes a worker's evaluation of round's model.
func MetricsToPB(round uint64, m Metrics) *pb.MetricsReport {
	out := &pb.MetricsReport{Round: round, Examples: uint64(m.Examples), Loss: m.Loss, Accuracy: m.Accuracy}
	if b := m.Binary; b != nil {
		out.Confusion = []uint64{uint64(b.TP), uint64(b.FP), uint64(b.TN), uint64(b.FN)}
		out.PositiveScores = append([]uint64(nil), b.Pos[:]...)
		out.NegativeScores = append([]uint64(nil), b.Neg[:]...)
	}
	return out
}

// EvaluateFromPB decodes an evaluation request.
func EvaluateFromPB(m *pb.EvaluateRequest) (round uint64, hash [32]byte, epsilon float64, err error) {
	const msg = "EvaluateRequest"
	if m == nil {
		return 0, hash, 0, invalid(msg, "", "missing")
	}
	if len(m.ModelSha256) != 32 {
		return 0, hash, 0, invalid(msg, "model_sha256", "%d bytes, want 32", len(m.ModelSha256))
	}
	if err := finite(msg, "epsilon", m.Epsilon, 0); err != nil {
		return 0, hash, 0, err
	}
	if len(m.ModelSpec) > MaxSpecLen {
		return 0, hash, 0, invalid(msg, "model_spec", "length %d above %d", len(m.ModelSpec), MaxSpecLen)
	}
	copy(hash[:], m.ModelSha256)
	return m.Round, hash, m.Epsilon, nil
}

// RefusalReason returns the reason of a set refusal and whether one is set.
func RefusalReason(r *pb.Refusal) (string, bool) {
	if r == nil {
		return "", false
	}
	reason := r.Reason
	if len(reason) > MaxReasonLen {
		reason = reason[:MaxReasonLen]
	}
	if reason == "" {
		reason = "no reason given"
	}
	return reason, true
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
