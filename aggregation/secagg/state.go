package secagg

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"io"
)

// MarshalState encodes everything the client needs to resume after a
// restart: its private keys and self-mask seed, the shares it holds, the
// cached messages (including the masked input) and the survivor set it
// answered. The encoding contains secrets: store it as such.
func (c *Client) MarshalState() ([]byte, error) {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&c.st); err != nil {
		return nil, fmt.Errorf("secagg: encoding state of client %d round %d: %w", c.st.ID, c.st.Cfg.Round, err)
	}
	return b.Bytes(), nil
}

// MarshalStateWithoutMasked is MarshalState less the words of the cached
// masked input (its round and sender are kept): a caller that stores the
// masked input anyway (to resend it) keeps the client state small — a few
// kilobytes instead of four bytes per coordinate — and hands the vector
// back to RestoreClientWithMasked.
func (c *Client) MarshalStateWithoutMasked() ([]byte, error) {
	st := c.st
	st.Masked.Vector = nil
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&st); err != nil {
		return nil, fmt.Errorf("secagg: encoding state of client %d round %d: %w", c.st.ID, c.st.Cfg.Round, err)
	}
	return b.Bytes(), nil
}

// RestoreClient rebuilds a client from MarshalState's output. rand supplies
// the randomness of the stages still to run.
func RestoreClient(data []byte, rand io.Reader) (*Client, error) {
	return RestoreClientWithMasked(data, nil, rand)
}

// RestoreClientWithMasked rebuilds a client from the output of
// MarshalStateWithoutMasked (or MarshalState). masked is the masked input
// the client computed in stage 2, stored apart from the state; it is
// needed (and checked against the state's round and sender and the
// configured length) only when the state is past stage 2 and holds no
// vector of its own, and may be nil otherwise. The client adopts masked:
// do not modify it afterwards.
func RestoreClientWithMasked(data []byte, masked *MaskedInput, rand io.Reader) (*Client, error) {
	if rand == nil {
		return nil, fmt.Errorf("secagg: RestoreClient: nil random source")
	}
	c := &Client{rand: rand}
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&c.st); err != nil {
		return nil, fmt.Errorf("%w: client state: %v", ErrMalformed, err)
	}
	if c.st.Stage > StageMaskedInput && len(c.st.Masked.Vector) == 0 && masked != nil {
		if masked.Round != c.st.Masked.Round || masked.From != c.st.Masked.From {
			return nil, fmt.Errorf("%w: client %d state: masked input of round %d from node %d given for the cached one of round %d from node %d",
				ErrMalformed, c.st.ID, masked.Round, masked.From, c.st.Masked.Round, c.st.Masked.From)
		}
		c.st.Masked.Vector = masked.Vector
	}
	if c.st.Version != 1 {
		return nil, fmt.Errorf("%w: client state version %d, want 1", ErrMalformed, c.st.Version)
	}
	if c.st.Stage < StageAdvertise || c.st.Stage > StageDone {
		return nil, fmt.Errorf("%w: client state stage %d", ErrMalformed, int(c.st.Stage))
	}
	if err := c.init(); err != nil {
		return nil, fmt.Errorf("secagg: restoring client %d: %w", c.st.ID, err)
	}
	if c.st.Peers == nil {
		c.st.Peers = map[uint32]peerRec{}
	}
	if c.st.Released == nil {
		c.st.Released = map[uint32]uint8{}
	}
	if c.st.Stage > StageMaskedInput && len(c.st.Masked.Vector) != c.st.Cfg.Dim+1 {
		return nil, fmt.Errorf("%w: client %d state: cached masked input has %d words, want %d", ErrMalformed, c.st.ID, len(c.st.Masked.Vector), c.st.Cfg.Dim+1)
	}
	c.setPublicKeys()
	return c, nil
}
