"""CPU fully connected layer: BLAS GEMMs (numpy's OpenBLAS), run on visionkit's pool with BLAS itself held to one
thread (``threads.gemm``: OpenBLAS's own threads would spin on after the call and slow the next layer)."""

from .threads import gemm


def linear_forward(x, w, b):
    y = gemm(x, w.T)
    if b is not None:
        y += b
    return y


def linear_backward(gy, x, w):
    return gemm(gy, w), gemm(gy.T, x), gy.sum(axis=0)
