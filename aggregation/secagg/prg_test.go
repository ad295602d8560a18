package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"testing"
)

// naiveExpand is the plain definition: AES-256-CTR keystream, zero IV, read
// as little-endian uint32 words.
func naiveExpand(seed [KeySize]byte, n int) []uint32 {
	block, _ := aes.NewCipher(seed[:])
	ks := make([]byte, 4*n)
	cipher.NewCTR(block, make([]byte, 16)).XORKeyStream(ks, ks)
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(ks[4*i:])
	}
	return out
}

func TestPRGMatchesDefinition(t *testing.T) {
	var m maskExpander
	for _, n := range []int{1, 7, prgChunk / 4, prgChunk/4 + 3, 3*prgChunk/4 + 1} {
		var seed [KeySize]byte
		seed[0], seed[31] = byte(n), 1
		want := naiveExpand(seed, n)
		got := make([]uint32, n)
		m.Expand(got, &seed)
		acc := make([]uint32, n)
		for i := range acc {
			acc[i] = uint32(i * 2654435761)
		}
		base := append([]uint32(nil), acc...)
		m.Add(acc, &seed)
		for i := range got {
			if got[i] != want[i] || acc[i] != base[i]+want[i] {
				t.Fatalf("n=%d word %d: expand %d add %d, want %d", n, i, got[i], acc[i]-base[i], want[i])
			}
		}
		m.Sub(acc, &seed)
		for i := range acc {
			if acc[i] != base[i] {
				t.Fatalf("n=%d: Sub does not undo Add at %d", n, i)
			}
		}
	}
	// Different seeds give different streams.
	var s1, s2 [KeySize]byte
	s2[31] = 1
	a, b := make([]uint32, 8), make([]uint32, 8)
	m.Expand(a, &s1)
	m.Expand(b, &s2)
	if a[0] == b[0] && a[1] == b[1] {
		t.Fatal("seeds differing in the last byte give the same stream")
	}
}

func TestReduceBits(t *testing.T) {
	v := []uint32{0xffffffff, 0x12345, 1 << 16}
	reduceBits(v, 16)
	if v[0] != 0xffff || v[1] != 0x2345 || v[2] != 0 {
		t.Fatalf("reduceBits: %x", v)
	}
	w := []uint32{0xffffffff}
	reduceBits(w, 32)
	if w[0] != 0xffffffff {
		t.Fatal("reduceBits(32) changed the value")
	}
}

// TestAddManyMatchesAddSub checks the blocked multi-mask path against the
// plain one, across group and block boundaries.
func TestAddManyMatchesAddSub(t *testing.T) {
	var m maskExpander
	const n = prgChunk/4*2 + 5
	seeds := make([][KeySize]byte, maskGroup+3)
	neg := make([]bool, len(seeds))
	for i := range seeds {
		seeds[i][0], seeds[i][1] = byte(i), 7
		neg[i] = i%3 == 0
	}
	a := make([]uint32, n)
	b := make([]uint32, n)
	for i := range a {
		a[i] = uint32(i)
		b[i] = uint32(i)
	}
	m.AddMany(a, seeds, neg)
	for i := range seeds {
		if neg[i] {
			m.Sub(b, &seeds[i])
		} else {
			m.Add(b, &seeds[i])
		}
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("word %d: AddMany %d, Add/Sub %d", i, a[i], b[i])
		}
	}
}
