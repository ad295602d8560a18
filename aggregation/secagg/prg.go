package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"unsafe"

	"github.com/sovereign-fl/sovereign/aggregation/internal/vsum"
)

// Pseudo-random generator for masks (Bonawitz et al. 2017, §3 "Pseudorandom
// Generator"): AES-128-CTR keyed by the two halves of the 256-bit seed
// XORed together (prgKey: uniform when the seed is, and every seed bit
// counts), with a zero IV (every seed is used for exactly one expansion),
// read as little-endian uint32 words. 128-bit keys match the security of the X25519
// agreement the pairwise seeds come from (about 2^128 work); AES-128 has 10
// rounds to AES-256's 14, and mask expansion is most of a SecAgg+ client's
// work. Masks are added or subtracted with uint32 wrap-around, i.e.
// in Z_(2^32); reducing mod 2^b afterwards gives arithmetic in Z_(2^b).

// prgChunk is the keystream block generated at a time (fits in L1/L2).
const prgChunk = 16 << 10

var prgZeros [prgChunk]byte

// maskExpander expands seeds into masks; it owns a scratch buffer so that
// repeated expansions allocate nothing. Not safe for concurrent use.
type maskExpander struct {
	buf  [prgChunk]byte
	conv [prgChunk / 4]uint32 // used on big-endian machines only
}

// prgKeySize is the size of the PRG's AES-128 key.
const prgKeySize = 16

// prgKey folds a 256-bit seed into the PRG's 128-bit key.
func prgKey(seed *[KeySize]byte) [prgKeySize]byte {
	var k [prgKeySize]byte
	for i := range k {
		k[i] = seed[i] ^ seed[prgKeySize+i]
	}
	return k
}

func newPRGStream(seed *[KeySize]byte) cipher.Stream {
	key := prgKey(seed)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		// Unreachable: a 16-byte key is always valid for AES-128.
		panic("secagg: aes.NewCipher with 16-byte key: " + err.Error())
	}
	var iv [aes.BlockSize]byte
	return cipher.NewCTR(block, iv[:])
}

// littleEndian reports whether uint32 words in memory are little-endian,
// in which case the keystream bytes are read as words in place.
var littleEndian = func() bool {
	x := uint32(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// words returns the keystream block b (a multiple of 4 bytes) as words.
// On little-endian machines it is a view of b; otherwise the bytes are
// converted into dst.
func words(b []byte, dst []uint32) []uint32 {
	if littleEndian {
		return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
	}
	for i := range dst {
		dst[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return dst
}

// unsafeBytes and unsafeWords view rb's memory as bytes and as uint32
// words (little-endian machines read the keystream words in place).
func unsafeBytes(rb []uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(rb))), 8*len(rb))
}

func unsafeWords(rb []uint64) []uint32 {
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(rb))), 2*len(rb))
}

// op selects what Expand/Add/Sub do with each keystream word.
type op int

const (
	opSet op = iota
	opAdd
	opSub
)

func (m *maskExpander) apply(acc []uint32, seed *[KeySize]byte, o op) {
	if haveVAES && littleEndian {
		ctrApply(expandKey128(seed), acc, 0, o)
		return
	}
	s := newPRGStream(seed)
	for len(acc) > 0 {
		n := min(len(acc), prgChunk/4)
		b := m.buf[:4*n]
		s.XORKeyStream(b, prgZeros[:4*n])
		w := words(b, m.conv[:n])
		d := acc[:n]
		w = w[:len(d)]
		switch o {
		case opSet:
			copy(d, w)
		case opAdd:
			vsum.AddU32(d, w)
		case opSub:
			vsum.SubU32(d, w)
		}
		acc = acc[n:]
	}
}

// maskGroup is how many PRG streams are kept open at once by AddMany.
const maskGroup = 64

// AddMany adds PRG(seeds[i]) (or subtracts it where neg[i]) to acc. It walks
// acc in L1-sized blocks and applies up to maskGroup masks to each block
// before moving on, so acc crosses the memory bus once per group instead of
// once per mask; the result equals calling Add/Sub for each seed.
func (m *maskExpander) AddMany(acc []uint32, seeds [][KeySize]byte, neg []bool) {
	const blk = prgChunk / 4
	if haveVAES && littleEndian {
		// The vector-AES kernel adds the keystream in place: no stream
		// state but the round keys, so all masks are applied to each block.
		rks := make([]*roundKeys, len(seeds))
		for i := range seeds {
			rks[i] = expandKey128(&seeds[i])
		}
		for off := 0; off < len(acc); off += blk {
			d := acc[off:min(off+blk, len(acc))]
			for i, rk := range rks {
				o := opAdd
				if neg[i] {
					o = opSub
				}
				ctrApply(rk, d, uint64(off/4), o)
			}
		}
		return
	}
	streams := make([]cipher.Stream, 0, maskGroup)
	for g := 0; g < len(seeds); g += maskGroup {
		end := min(g+maskGroup, len(seeds))
		streams = streams[:0]
		for i := g; i < end; i++ {
			streams = append(streams, newPRGStream(&seeds[i]))
		}
		for off := 0; off < len(acc); off += blk {
			d := acc[off:min(off+blk, len(acc))]
			b := m.buf[:4*len(d)]
			for si, s := range streams {
				s.XORKeyStream(b, prgZeros[:len(b)])
				w := words(b, m.conv[:len(d)])
				w = w[:len(d)]
				if neg[g+si] {
					vsum.SubU32(d, w)
				} else {
					vsum.AddU32(d, w)
				}
			}
		}
	}
}

// Expand writes PRG(seed) into dst.
func (m *maskExpander) Expand(dst []uint32, seed *[KeySize]byte) { m.apply(dst, seed, opSet) }

// Add adds PRG(seed) to acc word by word (mod 2^32).
func (m *maskExpander) Add(acc []uint32, seed *[KeySize]byte) { m.apply(acc, seed, opAdd) }

// Sub subtracts PRG(seed) from acc word by word (mod 2^32).
func (m *maskExpander) Sub(acc []uint32, seed *[KeySize]byte) { m.apply(acc, seed, opSub) }

// reduceBits reduces every word of v modulo 2^b.
func reduceBits(v []uint32, b int) {
	if b >= 32 {
		return
	}
	mask := uint32(1)<<b - 1
	for i := range v {
		v[i] &= mask
	}
}
