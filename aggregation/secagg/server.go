package secagg

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/sovereign-fl/sovereign/aggregation/internal/vsum"
)

// Server is the coordinator's side of a SecAgg+ round: a pure state machine.
// Messages are fed with Receive as they arrive; Advance closes the current
// stage once every expected message arrived or the stage deadline passed,
// and returns the messages to deliver for the next stage. Time only enters
// through the now arguments; the first call (Receive or Advance) opens stage
// 0 and each stage's deadline is StageTimeout after the time it opened.
//
// The server never holds an individual unmasked update: masked inputs are
// added into one running sum, maskedBatch at a time as they arrive, and a client's self-mask seed is
// only rebuilt when it is listed as a survivor, while its mask key is only
// rebuilt when it is listed as dropped. Not safe for concurrent use.
type Server struct {
	cfg   Config
	graph *Graph
	quant *Quantizer

	stage    Stage
	opened   bool
	deadline time.Time

	expected map[uint32]bool // senders expected in the current stage
	got      map[uint32]bool // senders heard from in the current stage

	ads     map[uint32]AdvertiseKeys
	u1, u2  map[uint32]bool
	batches map[uint32][]EncryptedShare
	sum     []uint32
	pending [][]uint32 // masked inputs accepted but not yet in sum (< maskedBatch)
	// recycle, when set (by Simulate), gets each masked vector back once
	// it is in the sum.
	recycle func([]uint32)
	u3      []uint32 // survivors, sorted
	dropped []uint32 // U2 \ U3, sorted
	needKey []uint32 // dropped clients with a surviving neighbour, sorted
	resp    map[uint32]bool
	bShares map[uint32][]heldShare // self-mask seed shares by owner
	sShares map[uint32][]heldShare // mask key shares by owner

	complaints map[uint32][]uint32 // accuser -> neighbours whose share did not open
	sigs       map[uint32]ConsistencyResponse
	u4         []uint32        // survivors that signed the consistency check, sorted
	culprits   map[uint32]bool // holders that revealed bad shares
	auth       Authenticator

	result      []float64
	totalWeight float64
	err         error

	exp maskExpander
	lag lagrangeCache
}

// NewServer creates the server for the round described by cfg.
func NewServer(cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Clients = slices.Clone(cfg.Clients)
	g, err := NewGraph(cfg.Clients, cfg.Degree, cfg.GraphSeed)
	if err != nil {
		return nil, err
	}
	q, err := NewQuantizer(cfg.Bits, cfg.ClipRange, cfg.MaxWeight, len(cfg.Clients))
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, graph: g, quant: q, ads: map[uint32]AdvertiseKeys{}, lag: lagrangeCache{}}
	s.expected = make(map[uint32]bool, len(cfg.Clients))
	for _, id := range cfg.Clients {
		s.expected[id] = true
	}
	s.got = map[uint32]bool{}
	return s, nil
}

// SetAuthenticator makes the server refuse advertisements and consistency
// signatures that do not verify (only Verify is used), so that one lying
// client cannot make honest clients refuse the relayed keys.
func (s *Server) SetAuthenticator(a Authenticator) { s.auth = a }

// Culprits returns, sorted, the clients that revealed a share that does not
// match the owner's commitment (known once the round is done). The round
// completes without their shares when enough verified shares remain.
func (s *Server) Culprits() []uint32 {
	var c []uint32
	for id := range s.culprits {
		c = append(c, id)
	}
	slices.Sort(c)
	return c
}

// Complaint says that Accuser could not open the share Accused sent it.
type Complaint struct {
	Accuser, Accused uint32
}

// Complaints returns the complaints of the survivors' masked inputs, sorted
// by accuser then accused. The accuser kept its pairwise mask with the
// accused but holds none of its shares.
func (s *Server) Complaints() []Complaint {
	var out []Complaint
	for _, u := range s.cfg.Clients {
		for _, v := range s.complaints[u] {
			out = append(out, Complaint{Accuser: u, Accused: v})
		}
	}
	return out
}

// Accused returns, sorted and distinct, the clients named by complaints.
func (s *Server) Accused() []uint32 {
	var out []uint32
	for _, c := range s.Complaints() {
		out = append(out, c.Accused)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Config returns the round's configuration with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Graph returns the round's neighbour graph.
func (s *Server) Graph() *Graph { return s.graph }

// Stage returns the current stage (StageDone once the round finished).
func (s *Server) Stage() Stage { return s.stage }

// Deadline returns the current stage's deadline (zero before the first call).
func (s *Server) Deadline() time.Time { return s.deadline }

// Pending returns, sorted, the clients whose message for the current stage
// has not arrived yet.
func (s *Server) Pending() []uint32 {
	var p []uint32
	for id := range s.expected {
		if !s.got[id] {
			p = append(p, id)
		}
	}
	slices.Sort(p)
	return p
}

// Survivors returns the clients whose masked inputs are in the sum (known
// from stage 3 on).
func (s *Server) Survivors() []uint32 { return slices.Clone(s.u3) }

func (s *Server) open(now time.Time) {
	if !s.opened {
		s.opened = true
		s.deadline = now.Add(s.cfg.StageTimeout)
	}
}

// Receive accepts one client message for the current stage: AdvertiseKeys
// (stage 0), []EncryptedShare — one client's whole batch — (stage 1),
// MaskedInput (stage 2) or UnmaskResponse (stage 3); pointers to them are
// accepted too. It refuses, with an error naming the round, the client and
// the field, messages for another round or stage, from unknown or inactive
// clients, duplicates and wrong sizes; a refused message changes nothing.
//
// An accepted MaskedInput's Vector is kept and read until the masked-input
// stage closes (at most maskedBatch-1 of them at a time): the caller must
// not modify it after Receive returns nil. Nothing else is retained.
func (s *Server) Receive(msg any, now time.Time) error {
	s.open(now)
	switch m := msg.(type) {
	case AdvertiseKeys:
		return s.recvAdvertise(m)
	case *AdvertiseKeys:
		return s.recvAdvertise(*m)
	case []EncryptedShare:
		return s.recvShares(m)
	case MaskedInput:
		return s.recvMasked(m)
	case *MaskedInput:
		return s.recvMasked(*m)
	case ConsistencyResponse:
		return s.recvConsistency(m)
	case *ConsistencyResponse:
		return s.recvConsistency(*m)
	case UnmaskResponse:
		return s.recvUnmask(m)
	case *UnmaskResponse:
		return s.recvUnmask(*m)
	}
	return fmt.Errorf("%w: round %d: unsupported message type %T", ErrMalformed, s.cfg.Round, msg)
}

// admit runs the checks common to all messages.
func (s *Server) admit(round uint64, from uint32, st Stage, kind string) error {
	if round != s.cfg.Round {
		return fmt.Errorf("%w: %s from client %d is for round %d, server is in round %d", ErrStaleRound, kind, from, round, s.cfg.Round)
	}
	if !s.graph.Contains(from) {
		return fmt.Errorf("%w: round %d: %s from client %d, which is not sampled", ErrUnknownPeer, s.cfg.Round, kind, from)
	}
	if s.stage != st {
		return fmt.Errorf("%w: round %d: %s from client %d arrived in %v", ErrWrongStage, s.cfg.Round, kind, from, s.stage)
	}
	if !s.expected[from] {
		return fmt.Errorf("%w: round %d: %s from client %d, which dropped out or was excluded before %v", ErrNotActive, s.cfg.Round, kind, from, st)
	}
	if s.got[from] {
		return fmt.Errorf("%w: round %d: second %s from client %d", ErrDuplicate, s.cfg.Round, kind, from)
	}
	return nil
}

func (s *Server) recvAdvertise(m AdvertiseKeys) error {
	if err := s.admit(m.Round, m.From, StageAdvertise, "AdvertiseKeys"); err != nil {
		return err
	}
	if _, err := parsePublicKey(m.EncKey, fmt.Sprintf("EncKey of client %d (round %d)", m.From, m.Round)); err != nil {
		return err
	}
	if _, err := parsePublicKey(m.MaskKey, fmt.Sprintf("MaskKey of client %d (round %d)", m.From, m.Round)); err != nil {
		return err
	}
	if len(m.SeedCommit) != KeySize {
		return fmt.Errorf("%w: round %d: SeedCommit of client %d has %d bytes, want %d", ErrMalformed, m.Round, m.From, len(m.SeedCommit), KeySize)
	}
	if s.auth != nil {
		if err := s.auth.Verify(m.From, AdvertiseMessage(m), m.Signature); err != nil {
			return fmt.Errorf("%w: round %d: AdvertiseKeys of client %d: %v", ErrBadSignature, m.Round, m.From, err)
		}
	}
	m.EncKey, m.MaskKey = slices.Clone(m.EncKey), slices.Clone(m.MaskKey)
	m.SeedCommit, m.Signature = slices.Clone(m.SeedCommit), slices.Clone(m.Signature)
	s.ads[m.From] = m
	s.got[m.From] = true
	return nil
}

func (s *Server) recvShares(batch []EncryptedShare) error {
	if len(batch) == 0 {
		return fmt.Errorf("%w: round %d: empty share batch", ErrMalformed, s.cfg.Round)
	}
	from := batch[0].From
	if err := s.admit(batch[0].Round, from, StageShareKeys, "share batch"); err != nil {
		return err
	}
	seen := map[uint32]bool{}
	for i, e := range batch {
		if e.Round != s.cfg.Round {
			return fmt.Errorf("%w: round %d: share batch of client %d: entry %d is for round %d", ErrStaleRound, s.cfg.Round, from, i, e.Round)
		}
		if e.From != from {
			return fmt.Errorf("%w: round %d: share batch of client %d: entry %d claims sender %d", ErrMalformed, s.cfg.Round, from, i, e.From)
		}
		if !s.graph.AreNeighbours(from, e.To) || !s.u1[e.To] {
			return fmt.Errorf("%w: round %d: share batch of client %d: entry %d addressed to client %d, not an active neighbour", ErrNotNeighbour, s.cfg.Round, from, i, e.To)
		}
		if seen[e.To] {
			return fmt.Errorf("%w: round %d: share batch of client %d: two shares for client %d", ErrDuplicate, s.cfg.Round, from, e.To)
		}
		seen[e.To] = true
		if len(e.Ciphertext) != CiphertextSize {
			return fmt.Errorf("%w: round %d: share from client %d to client %d has %d bytes, want %d", ErrMalformed, s.cfg.Round, from, e.To, len(e.Ciphertext), CiphertextSize)
		}
	}
	for _, v := range s.graph.Neighbours(from) {
		if s.u1[v] && !seen[v] {
			return fmt.Errorf("%w: round %d: share batch of client %d lacks a share for active neighbour %d", ErrMalformed, s.cfg.Round, from, v)
		}
	}
	s.batches[from] = slices.Clone(batch)
	s.got[from] = true
	return nil
}

func (s *Server) recvMasked(m MaskedInput) error {
	if err := s.admit(m.Round, m.From, StageMaskedInput, "MaskedInput"); err != nil {
		return err
	}
	if len(m.Vector) != s.cfg.Dim+1 {
		return fmt.Errorf("%w: round %d: masked input of client %d has %d words, want Dim+1 = %d", ErrMalformed, s.cfg.Round, m.From, len(m.Vector), s.cfg.Dim+1)
	}
	if s.cfg.Bits < 32 {
		lim := uint32(1) << s.cfg.Bits
		for i, v := range m.Vector {
			if v >= lim {
				return fmt.Errorf("%w: round %d: masked input of client %d: word %d = %d exceeds 2^%d", ErrMalformed, s.cfg.Round, m.From, i, v, s.cfg.Bits)
			}
		}
	}
	for i, v := range m.Complaints {
		if i > 0 && v <= m.Complaints[i-1] {
			return fmt.Errorf("%w: round %d: masked input of client %d: complaints must be sorted and distinct (%d after %d)", ErrMalformed, s.cfg.Round, m.From, v, m.Complaints[i-1])
		}
		if !s.graph.AreNeighbours(m.From, v) || !s.u2[v] {
			return fmt.Errorf("%w: round %d: masked input of client %d complains about client %d, which sent it no share", ErrNotNeighbour, s.cfg.Round, m.From, v)
		}
	}
	// sum += y_u mod 2^32, maskedBatch inputs per pass over sum (AVX-512
	// where the CPU has it, BenchmarkMaskedSum1M).
	s.pending = append(s.pending, m.Vector)
	if len(s.pending) == maskedBatch {
		s.flushMasked()
	}
	if len(m.Complaints) > 0 {
		s.complaints[m.From] = slices.Clone(m.Complaints)
	}
	s.got[m.From] = true
	return nil
}

// maskedBatch is how many masked inputs are summed in one pass over the
// running sum. One input at a time moves the 4·(Dim+1)-byte sum through
// the memory bus (a read and a write) for every input; eight at a time
// reads each input once and the sum once per eight, within about 0.8 of a
// plain read of the inputs' bytes (docs/bench-aggregation.md). It bounds
// the inputs held: eight vectors of Dim+1 words.
const maskedBatch = 8

// parallelSumWords is the smallest running sum split across goroutines.
const parallelSumWords = 1 << 16

// flushMasked adds the pending masked inputs into the running sum, split
// over GOMAXPROCS goroutines by coordinate range when the sum is large
// (each range is summed as on one goroutine, so the bits do not change).
func (s *Server) flushMasked() {
	if len(s.pending) == 0 {
		return
	}
	p := runtime.GOMAXPROCS(0)
	if n := len(s.sum); p > 1 && n >= parallelSumWords {
		var wg sync.WaitGroup
		for w := range p {
			lo, hi := n*w/p&^127, n*(w+1)/p&^127
			if w == p-1 {
				hi = n
			}
			part := make([][]uint32, len(s.pending))
			for i, v := range s.pending {
				part[i] = v[lo:hi]
			}
			wg.Go(func() { vsum.AddU32Many(s.sum[lo:hi], part) })
		}
		wg.Wait()
	} else {
		vsum.AddU32Many(s.sum, s.pending)
	}
	if s.recycle != nil {
		for _, v := range s.pending {
			s.recycle(v)
		}
	}
	clear(s.pending)
	s.pending = s.pending[:0]
}

func (s *Server) recvConsistency(m ConsistencyResponse) error {
	if err := s.admit(m.Round, m.From, StageConsistency, "ConsistencyResponse"); err != nil {
		return err
	}
	if s.auth != nil {
		if err := s.auth.Verify(m.From, ConsistencyMessage(m.Round, m.From, s.u3), m.Signature); err != nil {
			return fmt.Errorf("%w: round %d: consistency signature of client %d: %v", ErrBadSignature, m.Round, m.From, err)
		}
	}
	m.Signature = slices.Clone(m.Signature)
	s.sigs[m.From] = m
	s.got[m.From] = true
	return nil
}

// complained reports whether holder h said it could not open owner's share.
func (s *Server) complained(h, owner uint32) bool {
	_, ok := slices.BinarySearch(s.complaints[h], owner)
	return ok
}

func (s *Server) recvUnmask(m UnmaskResponse) error {
	if err := s.admit(m.Round, m.From, StageUnmask, "UnmaskResponse"); err != nil {
		return err
	}
	seen := map[uint32]bool{}
	for i, sh := range m.SelfMaskShares {
		if _, surv := slices.BinarySearch(s.u3, sh.Owner); !surv || (sh.Owner != m.From && !s.graph.AreNeighbours(m.From, sh.Owner)) {
			return fmt.Errorf("%w: round %d: client %d sent self-mask share %d of client %d, not a surviving neighbour", ErrNotNeighbour, s.cfg.Round, m.From, i, sh.Owner)
		}
		if seen[sh.Owner] {
			return fmt.Errorf("%w: round %d: client %d sent two self-mask shares of client %d", ErrDuplicate, s.cfg.Round, m.From, sh.Owner)
		}
		seen[sh.Owner] = true
		if len(sh.Value) != ShareSize {
			return fmt.Errorf("%w: round %d: client %d: self-mask share of client %d has %d bytes, want %d", ErrMalformed, s.cfg.Round, m.From, sh.Owner, len(sh.Value), ShareSize)
		}
	}
	for i, sh := range m.MaskKeyShares {
		if _, drop := slices.BinarySearch(s.dropped, sh.Owner); !drop || !s.graph.AreNeighbours(m.From, sh.Owner) {
			return fmt.Errorf("%w: round %d: client %d sent mask-key share %d of client %d, not a dropped neighbour", ErrNotNeighbour, s.cfg.Round, m.From, i, sh.Owner)
		}
		if seen[sh.Owner] {
			return fmt.Errorf("%w: round %d: client %d sent two shares of client %d", ErrDuplicate, s.cfg.Round, m.From, sh.Owner)
		}
		seen[sh.Owner] = true
		if len(sh.Value) != ShareSize {
			return fmt.Errorf("%w: round %d: client %d: mask-key share of client %d has %d bytes, want %d", ErrMalformed, s.cfg.Round, m.From, sh.Owner, len(sh.Value), ShareSize)
		}
	}
	for _, sh := range append(slices.Clone(m.SelfMaskShares), m.MaskKeyShares...) {
		if sh.Owner != m.From && s.complained(m.From, sh.Owner) {
			return fmt.Errorf("%w: round %d: client %d reveals a share of client %d after complaining it could not open it", ErrMalformed, s.cfg.Round, m.From, sh.Owner)
		}
	}
	for _, sh := range m.SelfMaskShares {
		s.bShares[sh.Owner] = append(s.bShares[sh.Owner], heldShare{m.From, slices.Clone(sh.Value)})
	}
	for _, sh := range m.MaskKeyShares {
		s.sShares[sh.Owner] = append(s.sShares[sh.Owner], heldShare{m.From, slices.Clone(sh.Value)})
	}
	s.resp[m.From] = true
	s.got[m.From] = true
	return nil
}

// Advance closes the current stage if every expected message arrived or the
// stage deadline has passed at now (stage 3 also closes as soon as every
// needed secret has Threshold shares). When a stage closes it returns the
// messages for the next stage. done is true once the round finished; err is
// then nil on success (see Result) or an *InsufficientError when too few
// clients remained, naming them.
func (s *Server) Advance(now time.Time) (out []Outbound, done bool, err error) {
	s.open(now)
	if s.stage == StageDone {
		return nil, true, s.err
	}
	// Unmask waits for every survivor (or the deadline), not just for t
	// shares per secret: extra shares are what lets a bad share be found.
	all := len(s.got) == len(s.expected)
	if !all && now.Before(s.deadline) {
		return nil, false, nil
	}
	switch s.stage {
	case StageAdvertise:
		out, err = s.closeAdvertise()
	case StageShareKeys:
		out, err = s.closeShareKeys()
	case StageMaskedInput:
		out, err = s.closeMaskedInput()
	case StageConsistency:
		out, err = s.closeConsistency()
	case StageUnmask:
		err = s.closeUnmask()
	}
	if err != nil || s.stage == StageUnmask && out == nil {
		s.stage, s.err = StageDone, err
		s.expected, s.got = map[uint32]bool{}, map[uint32]bool{}
		return nil, true, err
	}
	s.stage = s.stage.Next(s.cfg.ConsistencyCheck)
	s.expected, s.got = s.got, map[uint32]bool{}
	switch {
	case s.stage == StageUnmask && s.u4 != nil:
		s.expected = make(map[uint32]bool, len(s.u4))
		for _, u := range s.u4 {
			s.expected[u] = true
		}
	case s.stage == StageUnmask || s.stage == StageConsistency:
		s.expected = make(map[uint32]bool, len(s.u3))
		for _, u := range s.u3 {
			s.expected[u] = true
		}
	}
	s.deadline = now.Add(s.cfg.StageTimeout)
	return out, false, nil
}

// missing returns the sampled clients not in have, sorted.
func (s *Server) missing(have map[uint32]bool) []uint32 {
	var m []uint32
	for _, id := range s.cfg.Clients {
		if !have[id] {
			m = append(m, id)
		}
	}
	return m
}

// prune removes, until none is left, the clients of active with fewer than
// Threshold-1 active neighbours: their secrets could never be rebuilt (and
// the client itself refuses to go on). It returns the removed clients.
func (s *Server) prune(active map[uint32]bool) []uint32 {
	var removed []uint32
	for changed := true; changed; {
		changed = false
		for _, u := range s.cfg.Clients {
			if !active[u] {
				continue
			}
			// u's mask key is shared among its active neighbours (its
			// self-mask seed among them and u): both need Threshold.
			n := 0
			for _, v := range s.graph.Neighbours(u) {
				if active[v] {
					n++
				}
			}
			if n < s.cfg.Threshold {
				delete(active, u)
				removed = append(removed, u)
				changed = true
			}
		}
	}
	slices.Sort(removed)
	return removed
}

func (s *Server) closeAdvertise() ([]Outbound, error) {
	active := maps2set(s.got)
	removed := s.prune(active)
	if len(active) < s.cfg.Threshold {
		return nil, &InsufficientError{Round: s.cfg.Round, Stage: StageAdvertise, Threshold: s.cfg.Threshold,
			Missing: s.missing(s.got), Unrecoverable: removed}
	}
	s.u1 = active
	s.got = maps2set(active)
	s.batches = make(map[uint32][]EncryptedShare, len(active))
	out := make([]Outbound, 0, len(active))
	for _, u := range s.cfg.Clients {
		if !active[u] {
			continue
		}
		var keys []AdvertiseKeys
		for _, v := range s.graph.Neighbours(u) {
			if active[v] {
				keys = append(keys, s.ads[v])
			}
		}
		out = append(out, Outbound{To: u, Msg: KeyBroadcast{Round: s.cfg.Round, To: u, Keys: keys}})
	}
	return out, nil
}

func (s *Server) closeShareKeys() ([]Outbound, error) {
	active := maps2set(s.got)
	removed := s.prune(active)
	if len(active) < s.cfg.Threshold {
		return nil, &InsufficientError{Round: s.cfg.Round, Stage: StageShareKeys, Threshold: s.cfg.Threshold,
			Missing: s.missing(s.got), Unrecoverable: removed}
	}
	s.u2 = active
	s.got = maps2set(active)
	bundles := make(map[uint32][]EncryptedShare, len(active))
	for _, v := range s.cfg.Clients {
		if !active[v] {
			continue
		}
		for _, e := range s.batches[v] {
			if active[e.To] {
				bundles[e.To] = append(bundles[e.To], e)
			}
		}
	}
	s.batches = nil
	out := make([]Outbound, 0, len(active))
	for _, u := range s.cfg.Clients {
		if active[u] {
			out = append(out, Outbound{To: u, Msg: ShareBundle{Round: s.cfg.Round, To: u, Shares: bundles[u]}})
		}
	}
	s.sum = make([]uint32, s.cfg.Dim+1)
	s.complaints = map[uint32][]uint32{}
	return out, nil
}

func (s *Server) closeMaskedInput() ([]Outbound, error) {
	s.flushMasked()
	s.pending = nil
	s.u3, s.dropped, s.needKey = nil, nil, nil
	for _, u := range s.cfg.Clients {
		switch {
		case s.got[u]:
			s.u3 = append(s.u3, u)
		case s.u2[u]:
			s.dropped = append(s.dropped, u)
		}
	}
	var bad []uint32
	for _, u := range s.u3 {
		if s.holders(u, true) < s.cfg.Threshold {
			bad = append(bad, u)
		}
	}
	for _, v := range s.dropped {
		if h := s.holders(v, false); h > 0 {
			s.needKey = append(s.needKey, v)
			if h < s.cfg.Threshold {
				bad = append(bad, v)
			}
		}
	}
	if comps := s.graph.components(s.u3); len(comps) > 1 {
		// Honest clients refuse such a set (M6): fail now, naming the
		// survivors outside the largest component.
		for _, c := range comps[1:] {
			bad = append(bad, c...)
		}
	}
	if len(bad) > 0 && len(s.complaints) > 0 {
		// Complaints cost the accused their holders (security review M3):
		// name them; the caller retries without them.
		slices.Sort(bad)
		return nil, &CheatingError{Round: s.cfg.Round, Culprits: s.Accused(), Owners: bad}
	}
	if len(s.u3) < s.cfg.Threshold || len(bad) > 0 {
		slices.Sort(bad)
		return nil, &InsufficientError{Round: s.cfg.Round, Stage: StageMaskedInput, Threshold: s.cfg.Threshold,
			Missing: s.missing(s.got), Unrecoverable: bad}
	}
	s.resp = make(map[uint32]bool, len(s.u3))
	s.bShares, s.sShares = map[uint32][]heldShare{}, map[uint32][]heldShare{}
	out := make([]Outbound, 0, len(s.u3))
	if s.cfg.ConsistencyCheck {
		s.sigs = map[uint32]ConsistencyResponse{}
		for _, u := range s.u3 {
			out = append(out, Outbound{To: u, Msg: ConsistencyRequest{Round: s.cfg.Round, To: u, Survivors: slices.Clone(s.u3)}})
		}
		return out, nil
	}
	for _, u := range s.u3 {
		out = append(out, Outbound{To: u, Msg: UnmaskRequest{Round: s.cfg.Round, To: u, Survivors: slices.Clone(s.u3), Dropped: slices.Clone(s.dropped)}})
	}
	return out, nil
}

// closeConsistency closes the consistency check: the survivors that signed
// (U4 of Bonawitz et al. 2017) get the unmask request with every signature.
// Each needed secret must have Threshold holders among the signers, the
// same rule every client checks before revealing a share.
func (s *Server) closeConsistency() ([]Outbound, error) {
	var sigs []ConsistencyResponse
	s.u4 = []uint32{}
	for _, u := range s.u3 {
		if m, ok := s.sigs[u]; ok {
			s.u4 = append(s.u4, u)
			sigs = append(sigs, m)
		}
	}
	signed := func(v uint32, self bool) int {
		n := 0
		if _, ok := s.sigs[v]; self && ok {
			n++
		}
		for _, h := range s.graph.Neighbours(v) {
			if _, ok := s.sigs[h]; ok && !s.complained(h, v) {
				n++
			}
		}
		return n
	}
	var bad []uint32
	for _, u := range s.u3 {
		if signed(u, true) < s.cfg.Threshold {
			bad = append(bad, u)
		}
	}
	for _, v := range s.needKey {
		if signed(v, false) < s.cfg.Threshold {
			bad = append(bad, v)
		}
	}
	if len(s.u4) < s.cfg.Threshold || len(bad) > 0 {
		slices.Sort(bad)
		return nil, &InsufficientError{Round: s.cfg.Round, Stage: StageConsistency, Threshold: s.cfg.Threshold,
			Missing: s.missing(s.got), Unrecoverable: bad}
	}
	out := make([]Outbound, 0, len(s.u4))
	for _, u := range s.u4 {
		out = append(out, Outbound{To: u, Msg: UnmaskRequest{Round: s.cfg.Round, To: u, Survivors: slices.Clone(s.u3),
			Dropped: slices.Clone(s.dropped), Signatures: slices.Clone(sigs)}})
	}
	return out, nil
}

// holders counts the surviving holders of u's self-mask seed (self=true:
// u itself and its neighbours in U2) or of its mask key (its neighbours).
func (s *Server) holders(u uint32, self bool) int {
	n := 0
	if self {
		n = 1
	}
	for _, v := range s.graph.Neighbours(u) {
		if _, ok := slices.BinarySearch(s.u3, v); ok && s.u2[v] && !s.complained(v, u) {
			n++
		}
	}
	return n
}

// recoverable returns nil if every needed secret has Threshold shares, or
// the sorted clients whose secret has not.
func (s *Server) recoverable() []uint32 {
	var bad []uint32
	for _, u := range s.u3 {
		if len(s.bShares[u]) < s.cfg.Threshold {
			bad = append(bad, u)
		}
	}
	for _, v := range s.needKey {
		if len(s.sShares[v]) < s.cfg.Threshold {
			bad = append(bad, v)
		}
	}
	slices.Sort(bad)
	return bad
}

// heldShare is a share together with the index of the client that held it.
type heldShare struct {
	holder uint32
	value  []byte
}

// maxRebuildTries bounds the subsets tried per secret when some shares are
// bad (the first try, from the t smallest holder indices, succeeds in an
// honest round).
const maxRebuildTries = 4096

// rebuild returns the secret that the shares in list rebuild and that ok
// accepts (ok checks the owner's commitment), or nil. It first tries the t
// smallest holder indices (so that, in classic SecAgg, all secrets share
// one holder set and one set of Lagrange coefficients); if that secret
// fails ok, it leaves out e = 1, 2, … of the first t+e holders in turn
// (bounded by maxRebuildTries) until a subset verifies. The verified
// subset fixes the sharing polynomial of each limb, so every other share is
// checked against it and each holder whose share differs is recorded as a
// culprit (security review H3).
func (s *Server) rebuild(list []heldShare, ok func([]byte) bool) []byte {
	t := s.cfg.Threshold
	slices.SortFunc(list, func(a, b heldShare) int { return cmpU32(a.holder, b.holder) })
	if len(list) < t {
		return nil
	}
	try := func(idx []int) []byte {
		xs := make([]uint32, len(idx))
		ys := make([][]byte, len(idx))
		for i, j := range idx {
			xs[i], ys[i] = list[j].holder, list[j].value
		}
		lam, err := s.lag.get(xs)
		if err != nil {
			return nil
		}
		sec, err := combineShares(xs, ys, lam)
		if err != nil || !ok(sec) {
			return nil
		}
		s.blame(list, idx)
		return sec
	}
	first := make([]int, t)
	for i := range first {
		first[i] = i
	}
	if sec := try(first); sec != nil {
		return sec
	}
	tries := 1
	for e := 1; t+e <= len(list) && tries < maxRebuildTries; e++ {
		// Leave out each e-subset of the first t+e holders.
		out := make([]int, e)
		for i := range out {
			out[i] = i
		}
		for tries < maxRebuildTries {
			idx := make([]int, 0, t)
			for j, k := 0, 0; j < t+e; j++ {
				if k < e && out[k] == j {
					k++
					continue
				}
				idx = append(idx, j)
			}
			tries++
			if sec := try(idx); sec != nil {
				return sec
			}
			// Next e-combination of 0..t+e-1.
			i := e - 1
			for i >= 0 && out[i] == t+i {
				i--
			}
			if i < 0 {
				break
			}
			out[i]++
			for j := i + 1; j < e; j++ {
				out[j] = out[j-1] + 1
			}
		}
	}
	// No subset verified: every holder outside a verifying set is suspect,
	// but none is proven; name the holders whose shares are not field
	// elements or inconsistent with all others only when a subset verified.
	return nil
}

// blame checks every share of list outside the verified subset good
// against the polynomials that subset fixes, and records each holder whose
// share differs.
func (s *Server) blame(list []heldShare, good []int) {
	in := make(map[int]bool, len(good))
	xs := make([]uint32, len(good))
	for i, j := range good {
		in[j] = true
		xs[i] = list[j].holder
	}
	for j, h := range list {
		if in[j] {
			continue
		}
		lam := s.lag.at(xs, uint64(h.holder))
		for l := 0; l < secretLimbs; l++ {
			acc := uint64(0)
			for i, g := range good {
				acc = fAdd(acc, fMul(lam[i], binary.BigEndian.Uint64(list[g].value[8*l:])))
			}
			if binary.BigEndian.Uint64(h.value[8*l:]) != acc {
				if s.culprits == nil {
					s.culprits = map[uint32]bool{}
				}
				s.culprits[h.holder] = true
				break
			}
		}
	}
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Server) closeUnmask() error {
	if bad := s.recoverable(); len(bad) > 0 {
		return &InsufficientError{Round: s.cfg.Round, Stage: StageUnmask, Threshold: s.cfg.Threshold,
			Missing: s.missing(s.got), Unrecoverable: bad}
	}
	var seeds [][KeySize]byte
	var neg []bool
	var lost []uint32
	rebuilt := map[uint32][]byte{}
	for _, u := range s.u3 {
		commit := s.ads[u].SeedCommit
		b := s.rebuild(s.bShares[u], func(sec []byte) bool { return bytes.Equal(seedCommit(s.cfg.Round, u, sec), commit) })
		if b == nil {
			lost = append(lost, u)
		}
		rebuilt[u] = b
	}
	keys := map[uint32][KeySize]byte{}
	for _, v := range s.needKey {
		adv := s.ads[v].MaskKey
		skb := s.rebuild(s.sShares[v], func(sec []byte) bool {
			return len(sec) == KeySize && bytes.Equal(publicKeys([KeySize]byte(sec))[0][:], adv)
		})
		if skb == nil {
			lost = append(lost, v)
			continue
		}
		keys[v] = [KeySize]byte(skb)
	}
	if len(lost) > 0 {
		slices.Sort(lost)
		// No t of the shares rebuild the committed secret: some holder lied
		// (honest shares always do). With no spare share it cannot be told
		// which one; Culprits then lists only those proven elsewhere.
		return &CheatingError{Round: s.cfg.Round, Culprits: s.Culprits(), Owners: lost}
	}
	for _, u := range s.u3 {
		b := rebuilt[u]
		var seed [KeySize]byte
		copy(seed[:], b)
		seeds = append(seeds, seed)
		neg = append(neg, true)
	}
	for _, v := range s.needKey {
		sk := keys[v]
		var us []uint32
		for _, u := range s.graph.Neighbours(v) {
			if _, ok := slices.BinarySearch(s.u3, u); ok {
				us = append(us, u)
			}
		}
		pubs, err := peerKeys(us, func(u uint32) []byte { return s.ads[u].MaskKey }, "MaskKey", s.cfg.Round)
		if err != nil {
			return err
		}
		pairwise, err := agreeKeys(&sk, pubs, s.cfg.Round, v, us, purposeMaskSeed)
		if err != nil {
			return err
		}
		for i, u := range us {
			// Survivor u added +PRG(s_uv) if u < v and -PRG(s_uv) otherwise.
			seeds = append(seeds, pairwise[i])
			neg = append(neg, u < v)
		}
		clear(pairwise)
	}
	clear(keys)
	s.exp.AddMany(s.sum, seeds, neg)
	clear(seeds)
	reduceBits(s.sum, s.cfg.Bits)
	s.result, s.totalWeight = s.quant.Dequantize(s.sum)
	s.sum = nil
	return nil
}

// Result returns the dequantized weighted sum Σ w_i·x_i over the survivors,
// the total weight Σ w_i and the survivors. It fails with ErrNotDone before
// the round finished, and with the round's error if it failed.
func (s *Server) Result() (sum []float64, totalWeight float64, survivors []uint32, err error) {
	if s.stage != StageDone {
		return nil, 0, nil, fmt.Errorf("%w: round %d is in %v", ErrNotDone, s.cfg.Round, s.stage)
	}
	if s.err != nil {
		return nil, 0, nil, s.err
	}
	return s.result, s.totalWeight, slices.Clone(s.u3), nil
}

func maps2set(m map[uint32]bool) map[uint32]bool {
	c := make(map[uint32]bool, len(m))
	for k, v := range m {
		if v {
			c[k] = true
		}
	}
	return c
}
