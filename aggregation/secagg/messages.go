package secagg

// Messages are plain structs with exported fields; a transport package
// encodes them. Every message carries the round and its sender or recipient
// (client indices; the server has no index). WireSize gives the payload size
// used for the bandwidth accounting of benchmarks: the sum of the fields'
// fixed-size encodings (8 bytes per round, 4 per index, 4 per list length,
// 4 per uint32 word, raw bytes for keys, shares and ciphertexts).

// AdvertiseKeys is stage 0, client → server (and relayed, stage 1 input):
// the client's two X25519 public keys for this round.
type AdvertiseKeys struct {
	Round uint64
	From  uint32
	// EncKey is c_u^PK, used to encrypt the shares sent to this client.
	EncKey []byte
	// MaskKey is s_u^PK, used to derive pairwise masks.
	MaskKey []byte
	// SeedCommit is SHA-256(domain ‖ round ‖ from ‖ b_u), a commitment to
	// the self-mask seed: the server checks every rebuilt seed against it,
	// so a holder that reveals a bad share is found and named (the mask key
	// needs no commitment: its public key MaskKey is one).
	SeedCommit []byte
	// Signature, when the round authenticates its clients, signs round,
	// from, EncKey, MaskKey and SeedCommit with the client's long-term
	// identity (Bonawitz et al. 2017, §4, active adversary: keys under a
	// PKI). See Authenticator.
	Signature []byte
}

// WireSize returns the payload size in bytes.
func (m AdvertiseKeys) WireSize() int {
	return 8 + 4 + 4 + len(m.EncKey) + 4 + len(m.MaskKey) + 4 + len(m.SeedCommit) + 4 + len(m.Signature)
}

// KeyBroadcast is the server's stage-1 message to one client: the keys of
// that client's neighbours that advertised. Feed Keys to Client.ShareKeys.
type KeyBroadcast struct {
	Round uint64
	To    uint32
	Keys  []AdvertiseKeys
}

// EncryptedShare is stage 1, client → server → client: the sender's shares of
// its self-mask seed and mask key for one neighbour, encrypted for it.
type EncryptedShare struct {
	Round      uint64
	From, To   uint32
	Ciphertext []byte
}

// WireSize returns the payload size in bytes.
func (m EncryptedShare) WireSize() int { return 8 + 4 + 4 + 4 + len(m.Ciphertext) }

// ShareBundle is the server's stage-2 message to one client: the encrypted
// shares addressed to it by neighbours that completed stage 1. Feed Shares to
// Client.MaskedInput.
type ShareBundle struct {
	Round  uint64
	To     uint32
	Shares []EncryptedShare
}

// MaskedInput is stage 2, client → server: the masked quantized vector of
// Dim+1 words in Z_(2^Bits) (the weighted update, then the weight).
type MaskedInput struct {
	Round  uint64
	From   uint32
	Vector []uint32
	// Complaints lists, sorted, the neighbours whose encrypted share did not
	// open (or named the wrong pair). The client kept its pairwise mask with
	// them but holds none of their shares; the server names them.
	Complaints []uint32
}

// WireSize returns the payload size in bytes.
func (m MaskedInput) WireSize() int { return 8 + 4 + 4 + 4*len(m.Vector) + 4 + 4*len(m.Complaints) }

// ConsistencyRequest is the consistency-check stage (Bonawitz et al. 2017,
// round 4, ConsistencyCheck), server → client: the survivor set U3 the
// server claims. The client signs the set it was told.
type ConsistencyRequest struct {
	Round     uint64
	To        uint32
	Survivors []uint32
}

// ConsistencyResponse is the client's signature over (round, survivors).
type ConsistencyResponse struct {
	Round     uint64
	From      uint32
	Signature []byte
}

// WireSize returns the payload size in bytes.
func (m ConsistencyResponse) WireSize() int { return 8 + 4 + 4 + len(m.Signature) }

// UnmaskRequest is stage 3, server → client: the survivors (clients whose
// masked input is in the sum) and the dropped clients (those that sent
// shares but no masked input).
type UnmaskRequest struct {
	Round     uint64
	To        uint32
	Survivors []uint32
	Dropped   []uint32
	// Signatures are the consistency-check responses over Survivors (set
	// when the round runs the consistency check): the client unmasks a
	// neighbour's secret only if at least Threshold holders of that secret
	// signed this very set.
	Signatures []ConsistencyResponse
}

// Share is one Shamir share (ShareSize bytes) of Owner's secret, held by the
// sender of the message that carries it.
type Share struct {
	Owner uint32
	Value []byte
}

// UnmaskResponse is stage 3, client → server: shares of the self-mask seeds
// of surviving neighbours (and of the sender itself) and shares of the mask
// keys of dropped neighbours.
type UnmaskResponse struct {
	Round          uint64
	From           uint32
	SelfMaskShares []Share
	MaskKeyShares  []Share
}

// WireSize returns the payload size in bytes.
func (m UnmaskResponse) WireSize() int {
	n := 8 + 4 + 4 + 4
	for _, s := range m.SelfMaskShares {
		n += 4 + len(s.Value)
	}
	for _, s := range m.MaskKeyShares {
		n += 4 + len(s.Value)
	}
	return n
}

// Outbound is a message the server wants delivered to client To. Msg is a
// KeyBroadcast, a ShareBundle, a ConsistencyRequest or an UnmaskRequest.
type Outbound struct {
	To  uint32
	Msg any
}
