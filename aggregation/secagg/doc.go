// Package secagg implements secure aggregation so that a coordinator can add
// the clients' model updates without being able to read any single one.
//
// The protocol is SecAgg+ (Bell, Bonawitz, Gascón, Lepoint, Raykova 2020,
// "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS'20)
// run over the four stages of SecAgg (Bonawitz et al. 2017, "Practical Secure
// Aggregation for Privacy-Preserving Machine Learning", CCS'17):
//
//	stage 0  AdvertiseKeys   each client publishes two X25519 public keys
//	stage 1  ShareKeys       each client Shamir-shares its self-mask seed b_u and
//	                         its mask private key s_u among its graph neighbours,
//	                         encrypted so that only the neighbour can read them
//	stage 2  MaskedInput     each client sends y_u = x_u + PRG(b_u) + Σ ±PRG(s_uv)
//	stage 3  Unmask          survivors reveal shares of b_v for survivors and of
//	                         s_v for clients that dropped after stage 1
//
// With Config.ConsistencyCheck the consistency-check stage of Bonawitz et
// al. (their round 4) runs between masked input and unmask: each survivor
// signs the survivor set it was told, and reveals a neighbour's share only
// if Threshold holders of that secret signed the same set. An
// Authenticator binds advertisements and these signatures to long-term
// identities; each advertisement also commits to the self-mask seed, so a
// holder revealing a bad share is found and named (Server.Culprits). See
// docs/secagg-security.md for the adversary this resists.
//
// Unlike SecAgg, where every pair of clients shares a mask, SecAgg+ only pairs
// the clients that are neighbours in a sparse random regular graph of degree
// k = O(log n); shares are exchanged between neighbours only. Setting
// Degree = n-1 gives classic SecAgg.
//
// Both sides are pure state machines: messages and the current time go in,
// messages to send come out. There is no network, no clock and no global
// randomness; every random choice comes from an io.Reader given by the
// caller, so the same code runs in a simulator, over a network and inside
// a replicated coordinator, and tests are deterministic. The only goroutines
// are internal and end before the call returns: the server splits its sum of
// masked inputs (eight at a time) over GOMAXPROCS by coordinate range, with
// bit-identical results. Simulate runs the clients' work on GOMAXPROCS
// goroutines and feeds the server in client order; SimulateInputs asks for
// each update only when its client masks it, so a simulated round need not
// hold every update.
//
// Primitives, each in its own file: X25519 + HKDF-SHA256 key agreement
// (keyagree.go; a client's agreements of a stage in one batch, eight
// ladders at a time with AVX-512 IFMA in aggregation/internal/x25519;
// public keys of small order refused where keys are parsed), AES-256-GCM for the encrypted shares (aead.go), Shamir
// secret sharing over GF(2^61-1) with 32-bit limbs (shamir.go), an
// AES-128-CTR pseudo-random generator expanding into uint32 words
// (prg.go; with AVX-512 vector AES in ctr.go and ctr_amd64.s where the CPU
// has it, crypto/cipher otherwise), fixed-point quantization with
// stochastic rounding (quant.go, its rounding loop also in AVX-512) and the
// neighbour graph (graph.go).
package secagg
