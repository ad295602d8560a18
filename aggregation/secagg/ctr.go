package secagg

import "encoding/binary"

// AES-128-CTR keystream with the AVX-512 vector-AES instructions (VAES),
// added to or subtracted from the mask words directly, without a keystream
// buffer: the same PRG as newPRGStream (AES-128, zero IV, 128-bit
// big-endian block counter, keystream read as little-endian words), four
// to eight times the speed of crypto/cipher's CTR on CPUs that have VAES
// (BenchmarkPRG). The round keys are expanded here (FIPS-197 §5.2) because
// crypto/aes does not expose them; TestCTRVAESMatchesCipher checks the
// kernel against crypto/cipher for every mode, length and start block.

// aesSbox is the AES S-box (FIPS-197 §5.1.1), computed at start-up: the
// inverse of x in GF(2^8) from the powers of the generator 3 (x = 3^i has
// inverse 3^(255-i)), then the affine map.
var aesSbox = func() (s [256]byte) {
	var exp [255]byte
	var log [256]int
	p := byte(1)
	for i := range exp {
		exp[i], log[p] = p, i
		// p·3 = p·2 ⊕ p, modulo x^8+x^4+x^3+x+1
		hi := p & 0x80
		p2 := p << 1
		if hi != 0 {
			p2 ^= 0x1b
		}
		p ^= p2
	}
	rotl := func(x byte, k uint) byte { return x<<k | x>>(8-k) }
	for x := range 256 {
		inv := byte(0)
		if x != 0 {
			inv = exp[(255-log[x])%255]
		}
		s[x] = inv ^ rotl(inv, 1) ^ rotl(inv, 2) ^ rotl(inv, 3) ^ rotl(inv, 4) ^ 0x63
	}
	return s
}()

// roundKeys are the 11 round keys of AES-128, each in the byte order
// AESENC takes.
type roundKeys [11][16]byte

// expandKey128 returns the round keys of AES-128 for the PRG key of seed
// (prgKey).
func expandKey128(seed *[KeySize]byte) *roundKeys {
	key := prgKey(seed)
	var w [44]uint32
	for i := range 4 {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	sub := func(t uint32) uint32 {
		return uint32(aesSbox[t>>24])<<24 | uint32(aesSbox[t>>16&0xff])<<16 | uint32(aesSbox[t>>8&0xff])<<8 | uint32(aesSbox[t&0xff])
	}
	rcon := uint32(1)
	for i := 4; i < 44; i++ {
		t := w[i-1]
		if i%4 == 0 {
			t = sub(t<<8|t>>24) ^ rcon<<24
			rcon <<= 1
			if rcon == 0x100 {
				rcon = 0x1b // x^8 mod x^8+x^4+x^3+x+1
			}
		}
		w[i] = w[i-4] ^ t
	}
	rk := new(roundKeys)
	for r := range rk {
		for c := range 4 {
			binary.BigEndian.PutUint32(rk[r][4*c:], w[4*r+c])
		}
	}
	return rk
}

// ctrApply applies the keystream of rk from counter block first on (four
// words per block) to dst: op opSet stores it, opAdd adds it, opSub
// subtracts it. Only with haveVAES.
func ctrApply(rk *roundKeys, dst []uint32, first uint64, o op) {
	groups := len(dst) / 64
	if groups > 0 {
		ctrVAES(rk, &dst[0], groups, first, int(o))
	}
	tail := dst[64*groups:]
	if len(tail) == 0 {
		return
	}
	var ks [64]uint32
	ctrVAES(rk, &ks[0], 1, first+16*uint64(groups), int(opSet))
	switch o {
	case opSet:
		copy(tail, ks[:])
	case opAdd:
		for i := range tail {
			tail[i] += ks[i]
		}
	case opSub:
		for i := range tail {
			tail[i] -= ks[i]
		}
	}
}

// ctrWords is a continuous AES-128-CTR keystream (zero IV) read as
// little-endian uint64 words: the random words of a client's stochastic
// rounding, keyed by a seed the client draws from its random source. With
// VAES it is generated 64 words at a time by ctrVAES, otherwise by
// crypto/cipher; both give the same words (TestCTRWordsPaths).
type ctrWords struct {
	rk     *roundKeys
	stream interface{ XORKeyStream(dst, src []byte) }
	block  uint64     // next counter block (VAES path)
	buf    [64]uint32 // keystream generated but not yet read (VAES path)
	have   int        // words of buf not yet read, at its end
}

func newCTRWords(seed *[KeySize]byte) *ctrWords {
	if haveVAES && littleEndian {
		return &ctrWords{rk: expandKey128(seed)}
	}
	return &ctrWords{stream: newPRGStream(seed)}
}

// fill sets rb to the next len(rb) words of the stream.
func (c *ctrWords) fill(rb []uint64) {
	if len(rb) == 0 {
		return
	}
	b := unsafeBytes(rb)
	if c.stream != nil {
		clear(b)
		c.stream.XORKeyStream(b, b)
		if !littleEndian {
			for i := range rb {
				rb[i] = binary.LittleEndian.Uint64(b[8*i:])
			}
		}
		return
	}
	w := unsafeWords(rb)
	n := copy(w, c.buf[64-c.have:])
	c.have -= n
	w = w[n:]
	if g := len(w) &^ 63; g > 0 {
		ctrApply(c.rk, w[:g], c.block, opSet)
		c.block += uint64(g / 4)
		w = w[g:]
	}
	if len(w) > 0 {
		ctrApply(c.rk, c.buf[:], c.block, opSet)
		c.block += 16
		c.have = 64 - copy(w, c.buf[:])
	}
}
