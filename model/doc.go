// Package model implements the neural networks trained by Sovereign workers:
// softmax regression, multi-layer perceptrons with ReLU, and the convolutional
// network of the FedAvg paper (McMahan et al. 2017, "Communication-Efficient
// Learning of Deep Networks from Decentralized Data", Section 3).
//
// All parameters of a network live in ONE flat []float32 vector; every layer's
// weights and biases are views into it, and the gradients are laid out the same
// way in a second flat vector. Aggregation, clipping, noising and masking only
// ever see these flat vectors.
//
// Forward and backward passes (and so evaluation) run on whole minibatches
// through the SGEMM of model/internal/gemm: packed, cache-blocked AVX-512 or
// AVX2+FMA micro-kernels in Go assembly chosen by CPU features at start-up,
// gonum's pure-Go blas32.Gemm elsewhere (SOVEREIGN_GEMM=avx512|avx2|go forces
// a path); convolutions use im2col + GEMM (Chellapilla et al. 2006,
// "High Performance Convolutional Neural Networks for Document Processing").
// Buffers are sized once for the largest batch seen and reused, so a training
// step does not allocate.
//
// Parameter layout, layer after layer in forward order:
//
//   - dense layer in→out: weights in×out row-major (W[i][j] at i·out+j), then
//     out biases;
//   - convolution inC→outC with k×k kernels: weights outC×(k·k·inC)
//     row-major, column ((ky·k)+kx)·inC+c, then outC biases.
//
// The network's input rows are CHW; inside the CNN activations are HWC
// (channels innermost), so the first dense layer after the last pool reads
// its inputs in (y, x, c) order. Every convolution is followed by ReLU and
// then 2x2 max-pooling (the paper names the ReLU only for the FC layer; a
// ReLU after each convolution is the usual reading and adds no parameters,
// so the paper's count of 1,663,370 holds).
//
// The package does no I/O and imports only gonum, golang.org/x/sys/cpu (for
// the kernel choice) and the standard library.
// A Network is not safe for concurrent use: give each goroutine its own.
package model
