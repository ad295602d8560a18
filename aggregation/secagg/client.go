package secagg

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"
)

// sharePlainSize is the plaintext of one encrypted share:
// from ‖ to ‖ share of b_u ‖ share of s_u^SK.
const sharePlainSize = 4 + 4 + 2*ShareSize

// CiphertextSize is the size of EncryptedShare.Ciphertext.
const CiphertextSize = sharePlainSize + aeadOverhead

// testHookQuantized, when set by a test, sees each client's quantized
// vector before masking, so tests can check the unmasked sum bit for bit.
// Calls are serialised (Simulate runs clients on several goroutines).
var (
	testHookQuantized func(id uint32, q []uint32)
	testHookMu        sync.Mutex
)

// released kinds, recorded per peer so a client never reveals both.
const (
	releasedSelf uint8 = 1
	releasedKey  uint8 = 2
)

// peerRec is what a client knows about one neighbour.
type peerRec struct {
	EncKey, MaskKey []byte
	// ShareKey is the pairwise share-encryption key (derived once in
	// stage 1, reused to open the neighbour's shares in stage 2).
	ShareKey [KeySize]byte
	// HasShares is set once the neighbour's shares arrived and opened
	// (stage 2).
	HasShares bool
	// Paired is set once the neighbour's shares arrived (stage 2), whether
	// or not they opened: the neighbour is then part of this client's
	// pairwise masks (so the sum stays consistent with the server's view).
	Paired bool
	// SelfShare and KeyShare are this client's shares of the neighbour's
	// self-mask seed b_v and mask private key s_v.
	SelfShare, KeyShare []byte
}

// clientState is everything a client must persist to survive a restart.
type clientState struct {
	Version int
	Cfg     Config
	ID      uint32
	// Stage is the stage whose call comes next (StageDone after Unmask).
	Stage    Stage
	EncSeed  [KeySize]byte // c_u^SK
	MaskSeed [KeySize]byte // s_u^SK
	SelfSeed [KeySize]byte // b_u
	Peers    map[uint32]peerRec
	// OwnSelfShare is this client's own share of b_u.
	OwnSelfShare []byte
	Ads          AdvertiseKeys
	Sent         []EncryptedShare
	Masked       MaskedInput
	Survivors    []uint32
	Dropped      []uint32
	Response     UnmaskResponse
	Released     map[uint32]uint8
	// Signed is the survivor set signed in the consistency check (nil
	// before); the client never signs or unmasks another one.
	Signed []uint32
	// Consistency caches the consistency-check response.
	Consistency ConsistencyResponse
}

// Client is one client's side of a SecAgg+ round: a pure state machine whose
// methods take the previous stage's messages and return the next message.
// It is not safe for concurrent use. Each method is idempotent once its
// stage has passed: it returns the cached message (for resending after a
// coordinator failover) instead of computing a new one.
type Client struct {
	st      clientState
	rand    io.Reader
	graph   *Graph
	quant   *Quantizer
	encPub  [KeySize]byte // c_u^PK
	maskPub [KeySize]byte // s_u^PK
	exp     *maskExpander
	auth    Authenticator
}

// SetAuthenticator makes the client sign its advertisement and its
// consistency-check response, and verify every neighbour's advertisement
// and every consistency signature (Bonawitz et al. 2017, §4). Set it again
// after RestoreClient: it is not part of the persisted state.
func (c *Client) SetAuthenticator(a Authenticator) { c.auth = a }

// NewClient creates client id for the round described by cfg. All its random
// choices (keys, self-mask seed, share polynomials, stochastic rounding) are
// read from rand, which must be a cryptographically secure source in
// production and may be a seeded generator in tests.
func NewClient(cfg Config, id uint32, rand io.Reader) (*Client, error) {
	return newClient(cfg, id, rand, nil)
}

// roundShared is what every client of a round derives identically from the
// public Config: the neighbour graph and the quantizer (both read-only).
// Simulate builds them once for its n clients, where each client would
// otherwise rebuild the same n-node graph.
type roundShared struct {
	graph *Graph
	quant *Quantizer
}

// newClient is NewClient, taking the graph and quantizer from sh when not
// nil (sh must come from the same Config).
func newClient(cfg Config, id uint32, rand io.Reader, sh *roundShared) (*Client, error) {
	if rand == nil {
		return nil, fmt.Errorf("secagg: NewClient: nil random source")
	}
	cfg = cfg.WithDefaults()
	if sh == nil {
		cfg.Clients = slices.Clone(cfg.Clients)
	}
	c := &Client{rand: rand}
	c.st = clientState{Version: 1, Cfg: cfg, ID: id, Peers: map[uint32]peerRec{}, Released: map[uint32]uint8{}}
	if sh != nil {
		if err := c.initShared(sh); err != nil {
			return nil, err
		}
	} else if err := c.init(); err != nil {
		return nil, err
	}
	var err error
	if c.st.EncSeed, err = newScalar(rand); err != nil {
		return nil, err
	}
	if c.st.MaskSeed, err = newScalar(rand); err != nil {
		return nil, err
	}
	c.setPublicKeys()
	// b_u is drawn now so that its commitment goes out with the keys.
	if _, err := io.ReadFull(rand, c.st.SelfSeed[:]); err != nil {
		return nil, fmt.Errorf("secagg: client %d: reading self-mask seed: %w", id, err)
	}
	return c, nil
}

// init builds the derived (non-persisted) fields from c.st.Cfg.
func (c *Client) init() error {
	cfg := c.st.Cfg
	if err := cfg.Validate(); err != nil {
		return err
	}
	if _, ok := slices.BinarySearch(cfg.Clients, c.st.ID); !ok {
		return fmt.Errorf("%w: client %d is not sampled in round %d", ErrUnknownPeer, c.st.ID, cfg.Round)
	}
	g, err := NewGraph(cfg.Clients, cfg.Degree, cfg.GraphSeed)
	if err != nil {
		return err
	}
	q, err := NewQuantizer(cfg.Bits, cfg.ClipRange, cfg.MaxWeight, len(cfg.Clients))
	if err != nil {
		return err
	}
	c.graph, c.quant, c.exp = g, q, new(maskExpander)
	return nil
}

// initShared is init with the graph and quantizer of sh.
func (c *Client) initShared(sh *roundShared) error {
	cfg := c.st.Cfg
	if err := cfg.Validate(); err != nil {
		return err
	}
	if !sh.graph.Contains(c.st.ID) {
		return fmt.Errorf("%w: client %d is not sampled in round %d", ErrUnknownPeer, c.st.ID, cfg.Round)
	}
	c.graph, c.quant, c.exp = sh.graph, sh.quant, new(maskExpander)
	return nil
}

// forgetMasked drops the cached masked vector once the server has it (for
// Simulate, which never resends): CachedMaskedInput then has no vector.
func (c *Client) forgetMasked() { c.st.Masked.Vector = nil }

// ID returns the client's index.
func (c *Client) ID() uint32 { return c.st.ID }

// Round returns the client's round.
func (c *Client) Round() uint64 { return c.st.Cfg.Round }

// Stage returns the stage whose call comes next (StageDone once answered).
func (c *Client) Stage() Stage { return c.st.Stage }

// Quantizer returns the quantizer of the round.
func (c *Client) Quantizer() *Quantizer { return c.quant }

// AnsweredSurvivors returns the survivor set this client answered in stage 3
// (nil if none yet). Persist it: the client never answers another one.
func (c *Client) AnsweredSurvivors() []uint32 {
	if c.st.Stage != StageDone {
		return nil
	}
	return slices.Clone(c.st.Survivors)
}

// SignedSurvivors returns the survivor set this client signed in the
// consistency check (nil if none yet). It never signs another one.
func (c *Client) SignedSurvivors() []uint32 { return slices.Clone(c.st.Signed) }

// CachedMaskedInput returns the masked input computed in stage 2, for
// resending after a failover, and whether there is one.
func (c *Client) CachedMaskedInput() (MaskedInput, bool) {
	if c.st.Stage <= StageMaskedInput {
		return MaskedInput{}, false
	}
	return c.st.Masked, true
}

func (c *Client) wrongStage(call string, want Stage) error {
	return fmt.Errorf("%w: client %d round %d: %s called in %v, needs %v", ErrWrongStage, c.st.ID, c.st.Cfg.Round, call, c.st.Stage, want)
}

// setPublicKeys computes c_u^PK and s_u^PK from the scalars in the state.
func (c *Client) setPublicKeys() {
	pubs := publicKeys(c.st.EncSeed, c.st.MaskSeed)
	c.encPub, c.maskPub = pubs[0], pubs[1]
}

// Advertise runs stage 0: it returns the client's two public keys.
func (c *Client) Advertise() (AdvertiseKeys, error) {
	if c.st.Stage > StageAdvertise {
		return c.st.Ads, nil
	}
	ads := AdvertiseKeys{
		Round:      c.st.Cfg.Round,
		From:       c.st.ID,
		EncKey:     slices.Clone(c.encPub[:]),
		MaskKey:    slices.Clone(c.maskPub[:]),
		SeedCommit: seedCommit(c.st.Cfg.Round, c.st.ID, c.st.SelfSeed[:]),
	}
	if c.auth != nil {
		sig, err := c.auth.Sign(AdvertiseMessage(ads))
		if err != nil {
			return AdvertiseKeys{}, fmt.Errorf("secagg: client %d round %d: signing advertisement: %w", c.st.ID, c.st.Cfg.Round, err)
		}
		ads.Signature = sig
	}
	c.st.Ads = ads
	c.st.Stage = StageShareKeys
	return c.st.Ads, nil
}

// ShareKeys runs stage 1. ads is the server's broadcast of the keys of this
// client's neighbours that advertised (KeyBroadcast.Keys; this client's own
// advertisement may be included). It Shamir-shares b_u and s_u^SK among
// those neighbours and itself and returns one encrypted share per neighbour.
// It refuses keys for another round, from non-neighbours, duplicated or
// malformed, and fails if fewer than Threshold holders remain.
func (c *Client) ShareKeys(ads []AdvertiseKeys) ([]EncryptedShare, error) {
	switch {
	case c.st.Stage > StageShareKeys:
		return c.st.Sent, nil
	case c.st.Stage < StageShareKeys:
		return nil, c.wrongStage("ShareKeys", StageShareKeys)
	}
	cfg, me := c.st.Cfg, c.st.ID
	peers := make(map[uint32]peerRec, len(ads))
	for i, a := range ads {
		if a.Round != cfg.Round {
			return nil, fmt.Errorf("%w: client %d: keys[%d] from client %d are for round %d, expected %d", ErrStaleRound, me, i, a.From, a.Round, cfg.Round)
		}
		if a.From == me {
			if !bytes.Equal(a.EncKey, c.st.Ads.EncKey) || !bytes.Equal(a.MaskKey, c.st.Ads.MaskKey) {
				return nil, fmt.Errorf("%w: client %d round %d: broadcast carries different keys under this client's own index", ErrMalformed, me, cfg.Round)
			}
			continue
		}
		if !c.graph.Contains(a.From) {
			return nil, fmt.Errorf("%w: client %d round %d: keys from client %d, which is not sampled", ErrUnknownPeer, me, cfg.Round, a.From)
		}
		if !c.graph.AreNeighbours(me, a.From) {
			return nil, fmt.Errorf("%w: client %d round %d: keys from client %d, which is not a neighbour", ErrNotNeighbour, me, cfg.Round, a.From)
		}
		if _, dup := peers[a.From]; dup {
			return nil, fmt.Errorf("%w: client %d round %d: keys from client %d twice", ErrDuplicate, me, cfg.Round, a.From)
		}
		if _, err := parsePublicKey(a.EncKey, fmt.Sprintf("encryption key of client %d (round %d)", a.From, cfg.Round)); err != nil {
			return nil, err
		}
		if _, err := parsePublicKey(a.MaskKey, fmt.Sprintf("mask key of client %d (round %d)", a.From, cfg.Round)); err != nil {
			return nil, err
		}
		if len(a.SeedCommit) != KeySize {
			return nil, fmt.Errorf("%w: client %d round %d: seed commitment of client %d has %d bytes, want %d", ErrMalformed, me, cfg.Round, a.From, len(a.SeedCommit), KeySize)
		}
		if c.auth != nil {
			if err := c.auth.Verify(a.From, AdvertiseMessage(a), a.Signature); err != nil {
				return nil, fmt.Errorf("%w: client %d round %d: keys relayed for neighbour %d: %v", ErrBadSignature, me, cfg.Round, a.From, err)
			}
		}
		peers[a.From] = peerRec{EncKey: slices.Clone(a.EncKey), MaskKey: slices.Clone(a.MaskKey)}
	}
	// The mask key is shared among the neighbours only (the self-mask
	// seed among them and this client): it needs Threshold neighbours.
	if len(peers) < cfg.Threshold {
		return nil, &InsufficientError{Round: cfg.Round, Stage: StageShareKeys, Threshold: cfg.Threshold,
			Missing: missingFrom(c.graph.Neighbours(me), peers), Unrecoverable: []uint32{me}}
	}
	ids := make([]uint32, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	holders := append(slices.Clone(ids), me) // b_u: neighbours and itself
	bShares, err := splitSecret(c.st.SelfSeed[:], holders, cfg.Threshold, c.rand)
	if err != nil {
		return nil, err
	}
	sShares, err := splitSecret(c.st.MaskSeed[:], ids, cfg.Threshold, c.rand)
	if err != nil {
		return nil, err
	}
	pubs, err := peerKeys(ids, func(v uint32) []byte { return peers[v].EncKey }, "encryption key", cfg.Round)
	if err != nil {
		return nil, err
	}
	keys, err := agreeKeys(&c.st.EncSeed, pubs, cfg.Round, me, ids, purposeShareKey)
	if err != nil {
		return nil, err
	}
	out := make([]EncryptedShare, len(ids))
	pt := make([]byte, sharePlainSize)
	for i, v := range ids {
		p := peers[v]
		key := keys[i]
		p.ShareKey = key
		peers[v] = p
		binary.BigEndian.PutUint32(pt[0:], me)
		binary.BigEndian.PutUint32(pt[4:], v)
		copy(pt[8:], bShares[i])
		copy(pt[8+ShareSize:], sShares[i])
		ct, err := sealShare(key, cfg.Round, me, v, pt)
		if err != nil {
			return nil, err
		}
		out[i] = EncryptedShare{Round: cfg.Round, From: me, To: v, Ciphertext: ct}
	}
	clear(pt)
	c.st.Peers = peers
	c.st.OwnSelfShare = bShares[len(ids)]
	c.st.Sent = out
	c.st.Stage = StageMaskedInput
	return out, nil
}

func missingFrom(all []uint32, have map[uint32]peerRec) []uint32 {
	var m []uint32
	for _, v := range all {
		if _, ok := have[v]; !ok {
			m = append(m, v)
		}
	}
	return m
}

// MaskedInput runs stage 2. shares are the encrypted shares addressed to this
// client (ShareBundle.Shares); update has Dim coordinates and weight is in
// [0, MaxWeight]. It returns y = q(w·x, w) + PRG(b_u) + Σ_v ±PRG(s_uv) over
// the neighbours v whose shares arrived (+ if u < v, − if u > v).
func (c *Client) MaskedInput(shares []EncryptedShare, update []float32, weight float64) (MaskedInput, error) {
	return c.maskedInput(shares, update, weight, nil)
}

// maskedInput is MaskedInput writing y into buf when it has Dim+1 words
// (Simulate recycles the vectors the server has summed; every word is
// overwritten).
func (c *Client) maskedInput(shares []EncryptedShare, update []float32, weight float64, buf []uint32) (MaskedInput, error) {
	switch {
	case c.st.Stage > StageMaskedInput:
		return c.st.Masked, nil
	case c.st.Stage < StageMaskedInput:
		return MaskedInput{}, c.wrongStage("MaskedInput", StageMaskedInput)
	}
	cfg, me := c.st.Cfg, c.st.ID
	if len(update) != cfg.Dim {
		return MaskedInput{}, fmt.Errorf("%w: client %d round %d: update has %d coordinates, Config.Dim is %d", ErrInvalidInput, me, cfg.Round, len(update), cfg.Dim)
	}
	got := make(map[uint32]peerRec, len(shares))
	var complaints []uint32
	for i, s := range shares {
		if s.Round != cfg.Round {
			return MaskedInput{}, fmt.Errorf("%w: client %d: shares[%d] from client %d are for round %d, expected %d", ErrStaleRound, me, i, s.From, s.Round, cfg.Round)
		}
		if s.To != me {
			return MaskedInput{}, fmt.Errorf("%w: client %d round %d: shares[%d] from client %d is addressed to client %d", ErrMalformed, me, cfg.Round, i, s.From, s.To)
		}
		p, ok := c.st.Peers[s.From]
		if !ok {
			if c.graph.Contains(s.From) {
				return MaskedInput{}, fmt.Errorf("%w: client %d round %d: share from client %d, which is not an advertised neighbour", ErrNotNeighbour, me, cfg.Round, s.From)
			}
			return MaskedInput{}, fmt.Errorf("%w: client %d round %d: share from client %d, which is not sampled", ErrUnknownPeer, me, cfg.Round, s.From)
		}
		if _, dup := got[s.From]; dup {
			return MaskedInput{}, fmt.Errorf("%w: client %d round %d: two shares from client %d", ErrDuplicate, me, cfg.Round, s.From)
		}
		// A share that does not open (or names the wrong pair) comes from a
		// lying sender (security review M3): keep the pairwise mask, so the
		// sum stays consistent, hold none of its shares, and name it.
		p.Paired = true
		pt, err := []byte(nil), error(nil)
		if len(s.Ciphertext) == CiphertextSize {
			pt, err = openShare(p.ShareKey, cfg.Round, s.From, me, s.Ciphertext)
		}
		if len(s.Ciphertext) != CiphertextSize || err != nil ||
			binary.BigEndian.Uint32(pt[0:]) != s.From || binary.BigEndian.Uint32(pt[4:]) != me {
			complaints = append(complaints, s.From)
			got[s.From] = p
			continue
		}
		p.HasShares = true
		p.SelfShare = slices.Clone(pt[8 : 8+ShareSize])
		p.KeyShare = slices.Clone(pt[8+ShareSize:])
		got[s.From] = p
	}
	if len(got)-len(complaints)+1 < cfg.Threshold {
		return MaskedInput{}, &InsufficientError{Round: cfg.Round, Stage: StageMaskedInput, Threshold: cfg.Threshold,
			Missing: missingFrom(c.graph.Neighbours(me), got), Unrecoverable: []uint32{me}}
	}
	var qseed [KeySize]byte // seed of the stochastic rounding words (quantizeCTR)
	if _, err := io.ReadFull(c.rand, qseed[:]); err != nil {
		return MaskedInput{}, fmt.Errorf("secagg: client %d: reading rounding seed: %w", me, err)
	}
	y := buf
	if len(y) != cfg.Dim+1 {
		y = make([]uint32, cfg.Dim+1)
	}
	if err := c.quant.quantizeCTR(y, update, weight, &qseed); err != nil {
		return MaskedInput{}, fmt.Errorf("client %d round %d: %w", me, cfg.Round, err)
	}
	if testHookQuantized != nil {
		testHookMu.Lock()
		testHookQuantized(me, y)
		testHookMu.Unlock()
	}
	ids := make([]uint32, 0, len(got))
	for id := range got {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	pubs, err := peerKeys(ids, func(v uint32) []byte { return got[v].MaskKey }, "mask key", cfg.Round)
	if err != nil {
		return MaskedInput{}, err
	}
	pairwise, err := agreeKeys(&c.st.MaskSeed, pubs, cfg.Round, me, ids, purposeMaskSeed)
	if err != nil {
		return MaskedInput{}, err
	}
	seeds := make([][KeySize]byte, 1, len(ids)+1)
	neg := make([]bool, 1, len(ids)+1)
	seeds[0] = c.st.SelfSeed
	for i, v := range ids {
		seeds = append(seeds, pairwise[i])
		neg = append(neg, me > v)
	}
	clear(pairwise)
	c.exp.AddMany(y, seeds, neg)
	clear(seeds)
	reduceBits(y, cfg.Bits)
	for id, p := range got {
		c.st.Peers[id] = p
	}
	slices.Sort(complaints)
	c.st.Masked = MaskedInput{Round: cfg.Round, From: me, Vector: y, Complaints: complaints}
	c.st.Stage = StageUnmask
	return c.st.Masked, nil
}

// normalizeIDs sorts a copy of ids and checks they are sampled and distinct.
func (c *Client) normalizeIDs(ids []uint32, field string) ([]uint32, error) {
	s := slices.Clone(ids)
	if !slices.IsSorted(s) {
		slices.Sort(s)
	}
	all, j := c.graph.Clients(), 0 // both sorted: one merge walk
	for i, v := range s {
		for j < len(all) && all[j] < v {
			j++
		}
		if j == len(all) || all[j] != v {
			return nil, fmt.Errorf("%w: client %d round %d: %s lists client %d, which is not sampled", ErrUnknownPeer, c.st.ID, c.st.Cfg.Round, field, v)
		}
		if i > 0 && s[i-1] == v {
			return nil, fmt.Errorf("%w: client %d round %d: %s lists client %d twice", ErrDuplicate, c.st.ID, c.st.Cfg.Round, field, v)
		}
	}
	return s, nil
}

// ConsistencyCheck runs the consistency-check stage (Bonawitz et al. 2017,
// round 4): the client signs the survivor set it is told. It signs one set
// per round: the same request again returns the same response, another set
// is refused with an *EquivocationError.
func (c *Client) ConsistencyCheck(req ConsistencyRequest) (ConsistencyResponse, error) {
	cfg, me := c.st.Cfg, c.st.ID
	if req.Round != cfg.Round {
		return ConsistencyResponse{}, fmt.Errorf("%w: client %d: consistency request for round %d, expected %d", ErrStaleRound, me, req.Round, cfg.Round)
	}
	if req.To != me {
		return ConsistencyResponse{}, fmt.Errorf("%w: client %d round %d: consistency request addressed to client %d", ErrMalformed, me, cfg.Round, req.To)
	}
	if c.st.Stage < StageUnmask {
		return ConsistencyResponse{}, c.wrongStage("ConsistencyCheck", StageUnmask)
	}
	surv, err := c.normalizeIDs(req.Survivors, "survivors")
	if err != nil {
		return ConsistencyResponse{}, err
	}
	if c.st.Signed != nil {
		if slices.Equal(surv, c.st.Signed) {
			return c.st.Consistency, nil
		}
		return ConsistencyResponse{}, &EquivocationError{Round: cfg.Round, Client: me, Answered: slices.Clone(c.st.Signed), Requested: surv}
	}
	if _, ok := slices.BinarySearch(surv, me); !ok {
		return ConsistencyResponse{}, fmt.Errorf("%w: client %d round %d: consistency request does not list this client as a survivor", ErrMalformed, me, cfg.Round)
	}
	if len(surv) < cfg.Threshold {
		return ConsistencyResponse{}, &InsufficientError{Round: cfg.Round, Stage: StageConsistency, Threshold: cfg.Threshold, Unrecoverable: surv}
	}
	resp := ConsistencyResponse{Round: cfg.Round, From: me}
	if c.auth != nil {
		if resp.Signature, err = c.auth.Sign(ConsistencyMessage(cfg.Round, me, surv)); err != nil {
			return ConsistencyResponse{}, fmt.Errorf("secagg: client %d round %d: signing survivor set: %w", me, cfg.Round, err)
		}
	}
	c.st.Signed, c.st.Consistency = surv, resp
	return resp, nil
}

// confirmed checks the consistency-check signatures of an unmask request:
// the survivor set must be the one this client signed, and every secret
// this client is about to reveal a share of must have at least Threshold
// holders among the valid signers. An honest holder signs one set per
// round, so a server cannot collect Threshold signatures from the holders
// of one secret over two different sets unless 2t > k+1+c fails, c being
// the colluding holders (this is the bound the threshold is sized for).
func (c *Client) confirmed(surv, dropped []uint32, sigs []ConsistencyResponse) error {
	cfg, me := c.st.Cfg, c.st.ID
	if c.st.Signed == nil || !slices.Equal(surv, c.st.Signed) {
		return fmt.Errorf("%w: client %d round %d: unmask request names survivors %v, this client signed %v", ErrInconsistent, me, cfg.Round, surv, c.st.Signed)
	}
	// Signatures are verified lazily, only those of the holders needed to
	// reach Threshold for each secret this client reveals: a survivor set
	// of n clients would otherwise cost n verifications per client.
	// sigs sorted by sender (the server sends them so; otherwise a sorted
	// copy): lookups by binary search, not a map of every survivor built
	// by every client.
	if !slices.IsSortedFunc(sigs, func(a, b ConsistencyResponse) int { return cmpU32(a.From, b.From) }) {
		sigs = slices.Clone(sigs)
		slices.SortStableFunc(sigs, func(a, b ConsistencyResponse) int { return cmpU32(a.From, b.From) })
	}
	// Both lists are sorted, so membership is one merge walk (j only moves
	// forward), not a search per signature.
	j := 0
	for i, sg := range sigs {
		if sg.Round != cfg.Round {
			return fmt.Errorf("%w: client %d: consistency signature %d from client %d is for round %d, expected %d", ErrStaleRound, me, i, sg.From, sg.Round, cfg.Round)
		}
		for j < len(surv) && surv[j] < sg.From {
			j++
		}
		if j == len(surv) || surv[j] != sg.From {
			return fmt.Errorf("%w: client %d round %d: consistency signature %d from client %d, which is not a survivor", ErrInconsistent, me, cfg.Round, i, sg.From)
		}
		if i > 0 && sigs[i-1].From == sg.From {
			return fmt.Errorf("%w: client %d round %d: two consistency signatures from client %d", ErrDuplicate, me, cfg.Round, sg.From)
		}
	}
	sigOf := func(h uint32) ([]byte, bool) {
		i, ok := slices.BinarySearchFunc(sigs, h, func(a ConsistencyResponse, h uint32) int { return cmpU32(a.From, h) })
		if !ok {
			return nil, false
		}
		return sigs[i].Signature, true
	}
	valid := map[uint32]error{}
	signed := func(h uint32) (bool, error) {
		sig, ok := sigOf(h)
		if !ok {
			return false, nil
		}
		if c.auth == nil {
			return true, nil
		}
		err, done := valid[h]
		if !done {
			err = c.auth.Verify(h, ConsistencyMessage(cfg.Round, h, surv), sig)
			valid[h] = err
		}
		if err != nil {
			// A bad signature relayed by the server is proof it lies.
			return false, fmt.Errorf("%w: client %d round %d: consistency signature of client %d: %v", ErrBadSignature, me, cfg.Round, h, err)
		}
		return true, nil
	}
	check := func(v uint32, self bool) error {
		holders := c.graph.Neighbours(v)
		if self {
			holders = append([]uint32{v}, holders...)
		}
		n := 0
		for _, h := range holders {
			ok, err := signed(h)
			if err != nil {
				return err
			}
			if ok {
				if n++; n >= cfg.Threshold {
					return nil
				}
			}
		}
		return fmt.Errorf("%w: client %d round %d: only %d holders of client %d's secret signed survivors %v, need %d", ErrInconsistent, me, cfg.Round, n, v, surv, cfg.Threshold)
	}
	if err := check(me, true); err != nil {
		return err
	}
	for _, v := range surv {
		if p, ok := c.st.Peers[v]; ok && p.HasShares {
			if err := check(v, true); err != nil {
				return err
			}
		}
	}
	for _, v := range dropped {
		if p, ok := c.st.Peers[v]; ok && p.HasShares {
			if err := check(v, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// Unmask runs stage 3. For the survivor set of req it reveals its shares of
// the self-mask seeds of surviving neighbours (and of its own), and for the
// dropped set its shares of the mask keys of dropped neighbours. It answers
// exactly one survivor set per round: the same request again returns the
// same response, a different one is refused with an *EquivocationError. It
// never reveals both shares of one peer (ErrBothShares).
func (c *Client) Unmask(req UnmaskRequest) (UnmaskResponse, error) {
	cfg, me := c.st.Cfg, c.st.ID
	if req.Round != cfg.Round {
		return UnmaskResponse{}, fmt.Errorf("%w: client %d: unmask request for round %d, expected %d", ErrStaleRound, me, req.Round, cfg.Round)
	}
	if req.To != me {
		return UnmaskResponse{}, fmt.Errorf("%w: client %d round %d: unmask request addressed to client %d", ErrMalformed, me, cfg.Round, req.To)
	}
	if c.st.Stage < StageUnmask {
		return UnmaskResponse{}, c.wrongStage("Unmask", StageUnmask)
	}
	surv, err := c.normalizeIDs(req.Survivors, "survivors")
	if err != nil {
		return UnmaskResponse{}, err
	}
	dropped, err := c.normalizeIDs(req.Dropped, "dropped")
	if err != nil {
		return UnmaskResponse{}, err
	}
	if c.st.Stage == StageDone {
		if slices.Equal(surv, c.st.Survivors) && slices.Equal(dropped, c.st.Dropped) {
			return c.st.Response, nil
		}
		return UnmaskResponse{}, &EquivocationError{Round: cfg.Round, Client: me, Answered: slices.Clone(c.st.Survivors), Requested: surv}
	}
	for _, v := range dropped {
		if _, both := slices.BinarySearch(surv, v); both {
			return UnmaskResponse{}, fmt.Errorf("%w: client %d round %d: client %d is listed both as survivor and as dropped", ErrBothShares, me, cfg.Round, v)
		}
	}
	if _, ok := slices.BinarySearch(surv, me); !ok {
		return UnmaskResponse{}, fmt.Errorf("%w: client %d round %d: unmask request does not list this client as a survivor", ErrMalformed, me, cfg.Round)
	}
	if len(surv) < cfg.Threshold {
		return UnmaskResponse{}, &InsufficientError{Round: cfg.Round, Stage: StageUnmask, Threshold: cfg.Threshold, Unrecoverable: surv}
	}
	if comps := c.graph.components(surv); len(comps) > 1 {
		return UnmaskResponse{}, fmt.Errorf("%w: client %d round %d: survivors %v fall into %d components of the neighbour graph (sizes %d and %d, …)",
			ErrDisconnected, me, cfg.Round, surv, len(comps), len(comps[0]), len(comps[1]))
	}
	if cfg.ConsistencyCheck {
		if err := c.confirmed(surv, dropped, req.Signatures); err != nil {
			return UnmaskResponse{}, err
		}
	}
	resp := UnmaskResponse{Round: cfg.Round, From: me}
	resp.SelfMaskShares = append(resp.SelfMaskShares, Share{Owner: me, Value: slices.Clone(c.st.OwnSelfShare)})
	for _, v := range surv {
		if p, ok := c.st.Peers[v]; ok && p.HasShares {
			if c.st.Released[v]&releasedKey != 0 {
				return UnmaskResponse{}, fmt.Errorf("%w: client %d round %d: mask-key share of client %d already revealed", ErrBothShares, me, cfg.Round, v)
			}
			resp.SelfMaskShares = append(resp.SelfMaskShares, Share{Owner: v, Value: slices.Clone(p.SelfShare)})
		}
	}
	for _, v := range dropped {
		if p, ok := c.st.Peers[v]; ok && p.HasShares {
			if c.st.Released[v]&releasedSelf != 0 {
				return UnmaskResponse{}, fmt.Errorf("%w: client %d round %d: self-mask share of client %d already revealed", ErrBothShares, me, cfg.Round, v)
			}
			resp.MaskKeyShares = append(resp.MaskKeyShares, Share{Owner: v, Value: slices.Clone(p.KeyShare)})
		}
	}
	for _, s := range resp.SelfMaskShares {
		c.st.Released[s.Owner] |= releasedSelf
	}
	for _, s := range resp.MaskKeyShares {
		c.st.Released[s.Owner] |= releasedKey
	}
	c.st.Survivors, c.st.Dropped = surv, dropped
	c.st.Response = resp
	c.st.Stage = StageDone
	return resp, nil
}
