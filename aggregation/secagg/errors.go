package secagg

import (
	"errors"
	"fmt"
)

// Sentinel errors; the errors returned by this package wrap them (use
// errors.Is) and add the round, peer and field concerned.
var (
	// ErrStaleRound marks a message for a round other than the configured one.
	ErrStaleRound = errors.New("secagg: wrong round")
	// ErrUnknownPeer marks a message from or about a client that is not sampled.
	ErrUnknownPeer = errors.New("secagg: unknown peer")
	// ErrNotNeighbour marks a message from or about a client that is not a
	// neighbour of the recipient in the SecAgg+ graph.
	ErrNotNeighbour = errors.New("secagg: not a neighbour")
	// ErrDuplicate marks a second message from the same sender in one stage.
	ErrDuplicate = errors.New("secagg: duplicate message")
	// ErrMalformed marks a message with wrong sizes or undecodable contents.
	ErrMalformed = errors.New("secagg: malformed message")
	// ErrWrongStage marks a message or call that does not belong to the
	// current stage.
	ErrWrongStage = errors.New("secagg: wrong stage")
	// ErrNotActive marks a message from a client that dropped out (or was
	// excluded) at an earlier stage of this round.
	ErrNotActive = errors.New("secagg: client not active in this stage")
	// ErrBothShares marks a request that would reveal both the self-mask share
	// and the mask-key share of one peer in one round.
	ErrBothShares = errors.New("secagg: refusing to reveal both shares of a peer")
	// ErrEquivocation marks an unmask request whose survivor set differs from
	// the one already answered in this round.
	ErrEquivocation = errors.New("secagg: conflicting survivor sets in one round")
	// ErrInvalidInput marks a bad update vector or weight given by the caller.
	ErrInvalidInput = errors.New("secagg: invalid input")
	// ErrNotDone marks a Result call before the round finished.
	ErrNotDone = errors.New("secagg: round not finished")
	// ErrBadSignature marks an advertisement or consistency signature that
	// does not verify under the claimed client's identity.
	ErrBadSignature = errors.New("secagg: bad signature")
	// ErrInconsistent marks an unmask request that the consistency check
	// does not back: a survivor set other than the one signed, or too few
	// holders' signatures over it.
	ErrInconsistent = errors.New("secagg: survivor set not confirmed by the consistency check")
	// ErrDisconnected marks a survivor set whose induced neighbour graph is
	// not connected: its sum could be unmasked component by component.
	ErrDisconnected = errors.New("secagg: survivor graph not connected")
	// ErrCheating marks a round in which some holder revealed a share that
	// does not match the committed secret.
	ErrCheating = errors.New("secagg: bad share revealed")
)

// CheatingError reports holders that revealed shares inconsistent with the
// owner's commitment (SeedCommit or MaskKey), found by rebuilding the
// secret from other holders' shares (Shamir 1979 shares are points of one
// polynomial of degree t-1: any t verified ones fix all others).
type CheatingError struct {
	// Round is the round concerned.
	Round uint64
	// Culprits lists, sorted, the holders whose shares did not verify (or,
	// at the masked-input stage, the clients whose shares did not open).
	// It may be empty when only Threshold shares of a secret arrived: one of
	// them is bad but none is spare to tell which.
	Culprits []uint32
	// Owners lists, sorted, the clients whose secret could not be rebuilt
	// from verified shares (empty when the round could still complete).
	Owners []uint32
}

// Error implements error.
func (e *CheatingError) Error() string {
	return fmt.Sprintf("secagg: round %d: clients %v sent shares that do not verify (against the owners' commitments, or that their neighbours could not open); secrets of clients %v cannot be rebuilt without them",
		e.Round, e.Culprits, e.Owners)
}

// Unwrap lets errors.Is(err, ErrCheating) match.
func (e *CheatingError) Unwrap() error { return ErrCheating }

// InsufficientError reports that a round cannot complete because too few
// clients remained for some secret (or some client's neighbourhood) to reach
// the threshold. The caller can retry with a new sample.
type InsufficientError struct {
	// Round is the round that failed.
	Round uint64
	// Stage is the stage at whose close the failure was detected.
	Stage Stage
	// Missing lists, sorted, the sampled clients that did not deliver the
	// message of that stage (or of an earlier one).
	Missing []uint32
	// Unrecoverable lists, sorted, the clients whose secret (or whose
	// neighbourhood) fell below the threshold.
	Unrecoverable []uint32
	// Threshold is the number of shares needed per secret.
	Threshold int
}

// Error implements error.
func (e *InsufficientError) Error() string {
	return fmt.Sprintf("secagg: round %d cannot complete at stage %v: fewer than %d shares for clients %v; missing clients %v",
		e.Round, e.Stage, e.Threshold, e.Unrecoverable, e.Missing)
}

// EquivocationError reports an unmask request for a survivor set different
// from the one the client already answered in the same round.
type EquivocationError struct {
	// Round is the round concerned.
	Round uint64
	// Client is the refusing client.
	Client uint32
	// Answered is the survivor set already answered.
	Answered []uint32
	// Requested is the conflicting survivor set.
	Requested []uint32
}

// Error implements error.
func (e *EquivocationError) Error() string {
	return fmt.Sprintf("secagg: client %d in round %d already answered survivor set %v, refusing different set %v",
		e.Client, e.Round, e.Answered, e.Requested)
}

// Unwrap lets errors.Is(err, ErrEquivocation) match.
func (e *EquivocationError) Unwrap() error { return ErrEquivocation }
