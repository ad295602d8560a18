// Package coordinator drives federated rounds: it samples workers, runs the
// server side of SecAgg+ (Bell et al. 2020) with stage deadlines, applies
// the server optimizer to the unmasked sum, stores models by hash and keeps
// a hash-chained ledger. Every state change is a command applied through
// one Apply function, the shape of a Raft FSM, so the same state machine
// runs on one node or replicated.
package coordinator

import (
	"context"

	"github.com/sovereign-fl/sovereign/aggregation/secagg"
	"github.com/sovereign-fl/sovereign/wire"
)

// WorkerID names a worker: the string form of its libp2p peer ID.
type WorkerID string

// TrainParams are the local-training settings a round asks workers to use.
type TrainParams struct {
	Epochs int     `json:"epochs"`
	Batch  int     `json:"batch"`
	LR     float64 `json:"lr"`
	ProxMu float64 `json:"prox_mu"` // FedProx μ (Li et al. 2020); 0 = FedAvg
}

// DPParams are the differential-privacy settings of a round. Noise 0 means
// off. With secure aggregation each worker adds N(0, σ²C²/MinClients)
// (distributed DP); the fewest clients an unmasked sum may contain is the
// SecAgg+ threshold.
type DPParams struct {
	Clip       float64 `json:"clip"`
	Noise      float64 `json:"noise"`
	MinClients int     `json:"min_clients"`
}

// Announce opens a round for one worker: which model to start from, how to
// train, and the SecAgg+ configuration shared by the round's cohort.
type Announce struct {
	Round        uint64
	ModelHash    [32]byte // SHA-256 of the global model's bytes (little-endian float32)
	ModelVersion uint64   // the round that produced the model (0 = initial)
	ModelSpec    string   // architecture, e.g. "2nn" or "mlp:32"
	NumParams    int
	Train        TrainParams
	DP           DPParams
	// SecAgg is the round's SecAgg+ configuration. Clients are the sampled
	// workers' node indices: Sampled[i] has index i+1.
	SecAgg secagg.Config
	// Sampled lists the round's workers, sorted.
	Sampled []WorkerID
	// Epsilon is the privacy the round will have spent when it commits,
	// so a worker can refuse a round beyond its budget.
	Epsilon float64
	// Purpose is "" for a model round, wire.PurposeStatistics for the
	// statistics round of a data schema (stats.go).
	Purpose string
	// SchemaHash is the SHA-256 of the study's data schema file (zero:
	// none); Stats the committed federation statistics (JSON of
	// data.Stats) on model rounds after the statistics round.
	SchemaHash [32]byte
	Stats      []byte
	// StatsMaxRows is the statistics round's public bound on a site's
	// rows (data.SumScales); 0 on model rounds.
	StatsMaxRows int
	// Study names the round's study ("" = the default study).
	Study string
}

// NodeIndex returns w's SecAgg+ node index in a (1-based), or 0 if w was not
// sampled.
func (a *Announce) NodeIndex(w WorkerID) uint32 {
	for i, s := range a.Sampled {
		if s == w {
			return uint32(i + 1)
		}
	}
	return 0
}

// Metrics is a worker's federated evaluation of a committed model on its
// local test split.
type Metrics struct {
	Examples int
	Loss     float64
	Accuracy float64
	// Binary is a two-class model's confusion matrix and score histograms.
	Binary *wire.BinaryReport
}

// Cohort is how the round driver reaches workers: over libp2p in the
// coordinator process, by direct calls in the in-process cluster of tests.
//
// Every call is idempotent per (round, stage): a worker asked again returns
// what it returned the first time (it keeps keys, shares and its masked
// input in its store until the round commits). That is what lets a new
// leader resume a round without retraining. A worker signs (ConsistencyCheck)
// and answers Unmask for one survivor set per round only and refuses a
// different one.
//
// Calls may block until ctx ends; they must be safe for concurrent use.
// A worker's refusal (policy, budget, equivocation) is returned as a
// *RefusalError.
type Cohort interface {
	// Online lists the workers reachable now, sorted.
	Online() []WorkerID
	// Advertise sends the round announcement (stage 0) and returns the
	// worker's public keys.
	Advertise(ctx context.Context, w WorkerID, a *Announce) (secagg.AdvertiseKeys, error)
	// ShareKeys relays the neighbours' keys (stage 1) and returns the
	// worker's encrypted shares for them.
	ShareKeys(ctx context.Context, w WorkerID, kb secagg.KeyBroadcast) ([]secagg.EncryptedShare, error)
	// MaskedInput relays the shares addressed to the worker (stage 2); the
	// worker trains, clips, noises, quantizes and masks, and returns its
	// masked vector.
	MaskedInput(ctx context.Context, w WorkerID, sb secagg.ShareBundle, dim int) (secagg.MaskedInput, error)
	// ConsistencyCheck sends the committed survivor set for the worker to
	// sign (Bonawitz et al. 2017, round 4) and returns its signature. A
	// worker signs one set per round and refuses another.
	ConsistencyCheck(ctx context.Context, w WorkerID, req secagg.ConsistencyRequest) (secagg.ConsistencyResponse, error)
	// Unmask sends the committed survivor set (stage 3), with the
	// committed consistency signatures, and returns the worker's shares.
	Unmask(ctx context.Context, w WorkerID, req secagg.UnmaskRequest) (secagg.UnmaskResponse, error)
	// Evaluate asks the worker to evaluate the model committed in round on
	// its local test split.
	Evaluate(ctx context.Context, w WorkerID, round uint64, modelHash [32]byte) (Metrics, error)
}

// RefusalError is a worker's reasoned refusal to take part in a round.
type RefusalError struct {
	Worker WorkerID
	Round  uint64
	Reason string
}

func (e *RefusalError) Error() string {
	return "worker " + string(e.Worker) + " refused round " + itoa(e.Round) + ": " + e.Reason
}

func itoa(u uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			return string(b[i:])
		}
	}
}
