package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"slices"
	"testing"
)

// naiveExpand is the plain definition: AES-128-CTR keystream under the two
// halves of the seed XORed, zero IV, read as little-endian uint32 words.
func naiveExpand(seed [KeySize]byte, n int) []uint32 {
	var key [16]byte
	for i := range key {
		key[i] = seed[i] ^ seed[16+i]
	}
	block, _ := aes.NewCipher(key[:])
	ks := make([]byte, 4*n)
	cipher.NewCTR(block, make([]byte, 16)).XORKeyStream(ks, ks)
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(ks[4*i:])
	}
	return out
}

// Both paths: the vector-AES kernel (where the CPU has it) and
// crypto/cipher's CTR.
func TestPRGMatchesDefinition(t *testing.T) {
	prev := haveVAES
	defer func() { haveVAES = prev }()
	for _, vaes := range []bool{prev, false} {
		haveVAES = vaes
		testPRGMatchesDefinition(t)
	}
}

func testPRGMatchesDefinition(t *testing.T) {
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

// The vector-AES kernel equals crypto/cipher's AES-128-CTR for every mode,
// for lengths around its 64-word groups and from any start block; and the
// mask expander gives the same words with it and without it.
func TestCTRVAESMatchesCipher(t *testing.T) {
	if !haveVAES {
		t.Skip("this CPU lacks AVX-512 VAES, so ctrApply never runs the vector-AES kernel; the crypto/cipher path it uses instead is checked against the definition by TestPRGMatchesDefinition and TestCTRWordsPaths")
	}
	r := seeded(77)
	for _, n := range []int{1, 3, 4, 63, 64, 65, 127, 1000, 4096 + 7} {
		var seed [KeySize]byte
		r.Read(seed[:])
		first := uint64(r.Uint64() % 1000)
		want := naiveExpand(seed, n+4*int(first))[4*first:]
		rk := expandKey128(&seed)
		got := make([]uint32, n)
		ctrApply(rk, got, first, opSet)
		base := make([]uint32, n)
		for i := range base {
			base[i] = uint32(r.Uint64())
		}
		add := slices.Clone(base)
		ctrApply(rk, add, first, opAdd)
		sub := slices.Clone(base)
		ctrApply(rk, sub, first, opSub)
		for i := range n {
			if got[i] != want[i] || add[i] != base[i]+want[i] || sub[i] != base[i]-want[i] {
				t.Fatalf("n=%d first=%d word %d: set %d add %d sub %d, want keystream %d", n, first, i, got[i], add[i]-base[i], base[i]-sub[i], want[i])
			}
		}
	}
	// AddMany with and without the kernel.
	seeds := make([][KeySize]byte, 70)
	neg := make([]bool, len(seeds))
	for i := range seeds {
		r.Read(seeds[i][:])
		neg[i] = i%3 == 0
	}
	acc := make([]uint32, 3*prgChunk/4+5)
	for i := range acc {
		acc[i] = uint32(i)
	}
	fast := slices.Clone(acc)
	var m maskExpander
	m.AddMany(fast, seeds, neg)
	haveVAES = false
	defer func() { haveVAES = true }()
	slow := slices.Clone(acc)
	m.AddMany(slow, seeds, neg)
	if !slices.Equal(fast, slow) {
		t.Fatal("AddMany differs with and without the vector-AES kernel")
	}
}

// ctrWords reads the AES-128-CTR keystream continuously whatever the fill
// lengths, the same on the vector-AES and the crypto/cipher path.
func TestCTRWordsPaths(t *testing.T) {
	var seed [KeySize]byte
	seed[7] = 3
	want := naiveExpand(seed, 2*5000)
	prev := haveVAES
	defer func() { haveVAES = prev }()
	for _, vaes := range []bool{prev, false} {
		haveVAES = vaes
		c := newCTRWords(&seed)
		var got []uint32
		for _, n := range []int{1, 31, 32, 33, 512, 7, 64, 1000, 3} {
			rb := make([]uint64, n)
			c.fill(rb)
			for _, v := range rb {
				got = append(got, uint32(v), uint32(v>>32))
			}
		}
		if !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("vaes=%v: ctrWords differs from the keystream", vaes)
		}
	}
}
