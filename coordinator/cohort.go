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
type WorkerID = string

// Announce, TrainParams and DPParams are the round announcement and its
// settings: one type, wire.Announce, for the coordinator, the wire and the
// worker.
type (
	Announce    = wire.Announce
	TrainParams = wire.TrainParams
	DPParams    = wire.DPParams
)

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
