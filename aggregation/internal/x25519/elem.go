//go:build amd64 && !purego

package x25519

import "encoding/binary"

// elem is one lane of the kernels' field elements: GF(2^255-19) in radix
// 2^51, five limbs each below 2^52, the value Σ l[i]·2^(51i) mod p. Only
// the conversions to and from bytes happen outside the kernels.
type elem [5]uint64

const mask51 = 1<<51 - 1

// setBytes decodes a little-endian u-coordinate, ignoring its top bit
// (RFC 7748 §5). The value may be ≥ p; the arithmetic does not mind.
func (e *elem) setBytes(b *[Size]byte) {
	e[0] = binary.LittleEndian.Uint64(b[0:8]) & mask51
	e[1] = binary.LittleEndian.Uint64(b[6:14]) >> 3 & mask51
	e[2] = binary.LittleEndian.Uint64(b[12:20]) >> 6 & mask51
	e[3] = binary.LittleEndian.Uint64(b[19:27]) >> 1 & mask51
	e[4] = binary.LittleEndian.Uint64(b[24:32]) >> 12 & mask51
}

// bytes writes the canonical (fully reduced) little-endian encoding of e.
func (e *elem) bytes(out *[Size]byte) {
	l := *e
	l.carry()
	l.carry()
	// l < 2^255 + 2^13 now; q = 1 when l ≥ p, that is when l + 19 ≥ 2^255.
	q := (l[0] + 19) >> 51
	q = (l[1] + q) >> 51
	q = (l[2] + q) >> 51
	q = (l[3] + q) >> 51
	q = (l[4] + q) >> 51
	l[0] += 19 * q
	l[1] += l[0] >> 51
	l[0] &= mask51
	l[2] += l[1] >> 51
	l[1] &= mask51
	l[3] += l[2] >> 51
	l[2] &= mask51
	l[4] += l[3] >> 51
	l[3] &= mask51
	l[4] &= mask51 // drops the 2^255 that q subtracted with its 19
	binary.LittleEndian.PutUint64(out[0:8], l[0]|l[1]<<51)
	binary.LittleEndian.PutUint64(out[8:16], l[1]>>13|l[2]<<38)
	binary.LittleEndian.PutUint64(out[16:24], l[2]>>26|l[3]<<25)
	binary.LittleEndian.PutUint64(out[24:32], l[3]>>39|l[4]<<12)
}

// carry does one carry pass: every limb keeps 51 bits, the carry out of
// limb 4 returns to limb 0 times 19.
func (e *elem) carry() {
	c0, c1, c2, c3, c4 := e[0]>>51, e[1]>>51, e[2]>>51, e[3]>>51, e[4]>>51
	e[0] = e[0]&mask51 + 19*c4
	e[1] = e[1]&mask51 + c0
	e[2] = e[2]&mask51 + c1
	e[3] = e[3]&mask51 + c2
	e[4] = e[4]&mask51 + c3
}
