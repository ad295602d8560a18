package secagg

import (
	"bytes"
	"crypto/ecdh"
	"fmt"
	"slices"
	"time"
)

// Server is the coordinator's side of a SecAgg+ round: a pure state machine.
// Messages are fed with Receive as they arrive; Advance closes the current
// stage once every expected message arrived or the stage deadline passed,
// and returns the messages to deliver for the next stage. Time only enters
// through the now arguments; the first call (Receive or Advance) opens stage
// 0 and each stage's deadline is StageTimeout after the time it opened.
//
// The server never holds an individual unmasked update: masked inputs are
// added into one running sum as they arrive, and a client's self-mask seed is
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
	u3      []uint32 // survivors, sorted
	dropped []uint32 // U2 \ U3, sorted
	needKey []uint32 // dropped clients with a surviving neighbour, sorted
	resp    map[uint32]bool
	bShares map[uint32][]heldShare // self-mask seed shares by owner
	sShares map[uint32][]heldShare // mask key shares by owner

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
	m.EncKey, m.MaskKey = slices.Clone(m.EncKey), slices.Clone(m.MaskKey)
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
	sum := s.sum[:len(m.Vector)]
	for i, v := range m.Vector {
		sum[i] += v
	}
	s.got[m.From] = true
	return nil
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
	all := len(s.got) == len(s.expected)
	if !all && now.Before(s.deadline) && !(s.stage == StageUnmask && s.recoverable() == nil) {
		return nil, false, nil
	}
	switch s.stage {
	case StageAdvertise:
		out, err = s.closeAdvertise()
	case StageShareKeys:
		out, err = s.closeShareKeys()
	case StageMaskedInput:
		out, err = s.closeMaskedInput()
	case StageUnmask:
		err = s.closeUnmask()
	}
	if err != nil || s.stage == StageUnmask && out == nil {
		s.stage, s.err = StageDone, err
		s.expected, s.got = map[uint32]bool{}, map[uint32]bool{}
		return nil, true, err
	}
	s.stage++
	s.expected, s.got = s.got, map[uint32]bool{}
	if s.stage == StageUnmask {
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
			n := 1
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
	return out, nil
}

func (s *Server) closeMaskedInput() ([]Outbound, error) {
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
	if len(s.u3) < s.cfg.Threshold || len(bad) > 0 {
		slices.Sort(bad)
		return nil, &InsufficientError{Round: s.cfg.Round, Stage: StageMaskedInput, Threshold: s.cfg.Threshold,
			Missing: s.missing(s.got), Unrecoverable: bad}
	}
	s.resp = make(map[uint32]bool, len(s.u3))
	s.bShares, s.sShares = map[uint32][]heldShare{}, map[uint32][]heldShare{}
	out := make([]Outbound, 0, len(s.u3))
	for _, u := range s.u3 {
		out = append(out, Outbound{To: u, Msg: UnmaskRequest{Round: s.cfg.Round, To: u, Survivors: slices.Clone(s.u3), Dropped: slices.Clone(s.dropped)}})
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
		if _, ok := slices.BinarySearch(s.u3, v); ok && s.u2[v] {
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

// collect returns Threshold shares of a secret, those of the smallest holder
// indices (so that, in classic SecAgg, all secrets share one holder set and
// one set of Lagrange coefficients).
func (s *Server) collect(list []heldShare) ([]uint32, [][]byte) {
	slices.SortFunc(list, func(a, b heldShare) int { return cmpU32(a.holder, b.holder) })
	list = list[:s.cfg.Threshold]
	xs := make([]uint32, len(list))
	ys := make([][]byte, len(list))
	for i, h := range list {
		xs[i], ys[i] = h.holder, h.value
	}
	return xs, ys
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
	for _, u := range s.u3 {
		xs, ys := s.collect(s.bShares[u])
		lam, err := s.lag.get(xs)
		if err != nil {
			return err
		}
		b, err := combineShares(xs, ys, lam)
		if err != nil {
			return fmt.Errorf("round %d: rebuilding self-mask seed of client %d: %w", s.cfg.Round, u, err)
		}
		var seed [KeySize]byte
		copy(seed[:], b)
		seeds = append(seeds, seed)
		neg = append(neg, true)
	}
	for _, v := range s.needKey {
		xs, ys := s.collect(s.sShares[v])
		lam, err := s.lag.get(xs)
		if err != nil {
			return err
		}
		skb, err := combineShares(xs, ys, lam)
		if err != nil {
			return fmt.Errorf("round %d: rebuilding mask key of client %d: %w", s.cfg.Round, v, err)
		}
		sk, err := ecdh.X25519().NewPrivateKey(skb)
		if err != nil {
			return fmt.Errorf("%w: round %d: rebuilt mask key of client %d: %v", ErrMalformed, s.cfg.Round, v, err)
		}
		if !bytes.Equal(sk.PublicKey().Bytes(), s.ads[v].MaskKey) {
			return fmt.Errorf("%w: round %d: rebuilt mask key of client %d does not match its advertised key (a holder among %v sent a bad share)", ErrMalformed, s.cfg.Round, v, xs)
		}
		for _, u := range s.graph.Neighbours(v) {
			if _, ok := slices.BinarySearch(s.u3, u); !ok {
				continue
			}
			pub, err := parsePublicKey(s.ads[u].MaskKey, "")
			if err != nil {
				return err
			}
			seed, err := agreeKey(sk, pub, s.cfg.Round, u, v, purposeMaskSeed)
			if err != nil {
				return err
			}
			// Survivor u added +PRG(s_uv) if u < v and -PRG(s_uv) otherwise.
			seeds = append(seeds, seed)
			neg = append(neg, u < v)
		}
	}
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
