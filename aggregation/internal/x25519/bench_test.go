package x25519

import (
	"crypto/ecdh"
	"fmt"
	"testing"
)

// BenchmarkAgree times batches of n key agreements with one scalar (ns/op
// is per agreement) against crypto/ecdh's X25519 on the same inputs, in the
// same run: the baseline is one PrivateKey.ECDH per agreement with the
// private key parsed once (as a SecAgg+ client holds it).
func BenchmarkAgree(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8, 20, 64} {
		scalar := [Size]byte{7, 5: 7}
		points := make([][Size]byte, n)
		for i := range points {
			points[i] = Basepoint
			points[i][3] = byte(i)
		}
		dst := make([][Size]byte, n)
		b.Run(fmt.Sprintf("n=%d/%s", n, Path()), func(b *testing.B) {
			for b.Loop() {
				Agree(dst, &scalar, points)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/agreement")
		})
		if n != 8 {
			continue
		}
		b.Run(fmt.Sprintf("n=%d/crypto-ecdh", n), func(b *testing.B) {
			priv, _ := ecdh.X25519().NewPrivateKey(scalar[:])
			pubs := make([]*ecdh.PublicKey, n)
			for i := range pubs {
				pubs[i], _ = ecdh.X25519().NewPublicKey(points[i][:])
			}
			for b.Loop() {
				for i := range pubs {
					if _, err := priv.ECDH(pubs[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/agreement")
		})
	}
}

// BenchmarkPublicKeys times a client's two key pairs (n=2, the four-lane
// kernel) against crypto/ecdh's NewPrivateKey, which computes the public
// key, in the same run.
func BenchmarkPublicKeys(b *testing.B) {
	scalars := [][Size]byte{{1, 2}, {3, 4}}
	dst := make([][Size]byte, 2)
	b.Run("n=2/"+Path(), func(b *testing.B) {
		for b.Loop() {
			PublicKeys(dst, scalars)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2), "ns/key")
	})
	b.Run("n=2/crypto-ecdh", func(b *testing.B) {
		for b.Loop() {
			for i := range scalars {
				if _, err := ecdh.X25519().NewPrivateKey(scalars[i][:]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2), "ns/key")
	})
}
