//go:build !amd64 || purego

package x25519

const hasIFMA = false

func scalarMultVector(dst, scalars, points [][Size]byte) { panic("x25519: no vector path") }
