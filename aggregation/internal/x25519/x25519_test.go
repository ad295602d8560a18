package x25519

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
)

// reference is crypto/ecdh's X25519, all zeroes for a low-order point.
func reference(t testing.TB, scalar, point [Size]byte) [Size]byte {
	t.Helper()
	priv, err := ecdh.X25519().NewPrivateKey(scalar[:])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdh.X25519().NewPublicKey(point[:])
	if err != nil {
		t.Fatal(err)
	}
	var out [Size]byte
	shared, err := priv.ECDH(pub)
	if err == nil {
		copy(out[:], shared)
	}
	return out
}

// paths runs f with each implementation this CPU has.
func paths(t *testing.T, f func(t *testing.T)) {
	saved := useVector
	defer func() { useVector = saved }()
	useVector = false
	t.Run("go", f)
	if !hasIFMA {
		t.Log("no AVX-512 IFMA on this CPU: the vector kernels never run here; TestEnvVarForcesPath and the go subtests cover the portable path")
		return
	}
	useVector = true
	t.Run("avx512ifma", f)
}

// specialPoints are u-coordinates at the edges: low-order points (which
// give zero), 0 and 1, non-canonical encodings ≥ p, and the top bit set.
func specialPoints() [][Size]byte {
	hexes := []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p - 1
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p + 1
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // 2^255 - 1
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // top bit set
		"0900000000000000000000000000000000000000000000000000000000000080",
	}
	var out [][Size]byte
	for _, h := range hexes {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != Size {
			panic(h)
		}
		out = append(out, [Size]byte(b))
	}
	return out
}

// TestAgreeMatchesECDH compares batches of every length from 1 to 19
// (full eight-lane batches, four-lane tails, padded lanes) of random and
// special points against crypto/ecdh.
func TestAgreeMatchesECDH(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		special := specialPoints()
		for n := 1; n <= 19; n++ {
			var scalar [Size]byte
			fill(r, scalar[:])
			points := make([][Size]byte, n)
			for i := range points {
				fill(r, points[i][:])
				if r.IntN(3) == 0 {
					points[i] = special[r.IntN(len(special))]
				}
			}
			got := make([][Size]byte, n)
			Agree(got, &scalar, points)
			for i := range got {
				if want := reference(t, scalar, points[i]); got[i] != want {
					t.Fatalf("batch of %d, element %d: scalar %x point %x: got %x, crypto/ecdh %x", n, i, scalar, points[i], got[i], want)
				}
			}
		}
	})
}

func fill(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

// agree1 is Agree for one point.
func agree1(k, u [Size]byte) [Size]byte {
	out := make([][Size]byte, 1)
	Agree(out, &k, [][Size]byte{u})
	return out[0]
}

// TestLowOrderPointsGiveZero: the low-order points of Curve25519 and its
// twist (0, 1, the two of order 8, p-1) and the non-canonical p and p+1
// give the all-zero result that callers reject with IsZero.
func TestLowOrderPointsGiveZero(t *testing.T) {
	paths(t, func(t *testing.T) {
		for _, p := range specialPoints()[:7] {
			if got := agree1([Size]byte{1, 2, 3}, p); !IsZero(&got) {
				t.Errorf("point %x: got %x, want zero", p, got)
			}
		}
	})
}

// TestRFC7748Vectors: the two test vectors of RFC 7748 §5.2 and its
// iterated test at 1 and 1,000 iterations.
func TestRFC7748Vectors(t *testing.T) {
	paths(t, func(t *testing.T) {
		for _, v := range []struct{ k, u, out string }{
			{"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4", "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c", "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
			{"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d", "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493", "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
		} {
			k, _ := hex.DecodeString(v.k)
			u, _ := hex.DecodeString(v.u)
			if got := agree1([Size]byte(k), [Size]byte(u)); hex.EncodeToString(got[:]) != v.out {
				t.Errorf("k=%s: got %x, want %s", v.k, got, v.out)
			}
		}
		k, u := Basepoint, Basepoint
		for i := 1; i <= 1000; i++ {
			u, k = k, agree1(k, u)
			switch i {
			case 1:
				if hex.EncodeToString(k[:]) != "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079" {
					t.Fatalf("after 1 iteration: %x", k)
				}
			case 1000:
				if hex.EncodeToString(k[:]) != "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51" {
					t.Fatalf("after 1,000 iterations: %x", k)
				}
			}
		}
	})
}

// TestPublicKeysMatchECDH: public keys of random scalars, in batches of
// 2 (the four-lane kernel with padded lanes) and 9.
func TestPublicKeysMatchECDH(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, n := range []int{2, 9} {
			scalars := make([][Size]byte, n)
			for i := range scalars {
				fill(r, scalars[i][:])
			}
			got := make([][Size]byte, n)
			PublicKeys(got, scalars)
			for i := range got {
				priv, _ := ecdh.X25519().NewPrivateKey(scalars[i][:])
				if !bytes.Equal(got[i][:], priv.PublicKey().Bytes()) {
					t.Fatalf("public key %d of %d: got %x, crypto/ecdh %x", i, n, got[i], priv.PublicKey().Bytes())
				}
			}
		}
	})
}

// TestEnvVarForcesPath re-runs this test binary with SOVEREIGN_X25519=go
// and checks that it takes the portable path and still agrees.
func TestEnvVarForcesPath(t *testing.T) {
	if os.Getenv(EnvVar) != "" {
		if want := "go"; os.Getenv(EnvVar) == "go" && Path() != want {
			t.Fatalf("%s=go: path %s", EnvVar, Path())
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^(TestEnvVarForcesPath|TestAgreeMatchesECDH)$", "-test.v")
	cmd.Env = append(os.Environ(), EnvVar+"=go")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s=go: %v\n%s", EnvVar, err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestAgreeMatchesECDH")) {
		t.Fatalf("%s=go: the comparison did not run:\n%s", EnvVar, out)
	}
}
