//go:build openblas && cgo

// Package openblas binds Debian's OpenBLAS cblas_sgemm for the SGEMM
// benchmark of model/internal/gemm; it is built only with -tags openblas.
package openblas

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
extern void openblas_set_num_threads(int);
*/
import "C"

import (
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Sgemm is cblas_sgemm on row-major operands with OpenBLAS set to threads.
func Sgemm(threads int, tA, tB blas.Transpose, alpha float32, a, b blas32.General, beta float32, c blas32.General) {
	C.openblas_set_num_threads(C.int(threads))
	ta, tb := C.enum_CBLAS_TRANSPOSE(C.CblasNoTrans), C.enum_CBLAS_TRANSPOSE(C.CblasNoTrans)
	k := a.Cols
	if tA == blas.Trans {
		ta = C.CblasTrans
		k = a.Rows
	}
	if tB == blas.Trans {
		tb = C.CblasTrans
	}
	C.cblas_sgemm(C.CblasRowMajor, ta, tb, C.blasint(c.Rows), C.blasint(c.Cols), C.blasint(k),
		C.float(alpha), (*C.float)(unsafe.Pointer(&a.Data[0])), C.blasint(a.Stride),
		(*C.float)(unsafe.Pointer(&b.Data[0])), C.blasint(b.Stride),
		C.float(beta), (*C.float)(unsafe.Pointer(&c.Data[0])), C.blasint(c.Stride))
}
