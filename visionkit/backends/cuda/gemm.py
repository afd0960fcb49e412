"""Tiled shared-memory GEMM, batched and strided, the engine under conv and linear.

    C[z][i, j] = sum_k A[z][i, k] * B[z][k, j]  (+ C[z][i, j] if accumulate) (+ bias[i] or bias[j])

Every operand is a flat device array addressed through (offset, two batch strides, row stride, column stride),
as BLAS leading dimensions are, so transposes and sub-matrices (a group's weights, one image's columns, a
slice of an NCHW output) cost nothing: A^T is A with its two strides swapped. The batch index z = blockIdx.z
splits into (z1, z2) = divmod(z, nz2), each with its own stride, so "image n, group g" is one launch.

Tiling: a block of 16x16 threads computes a 64x64 tile of C, each thread a 4x4 register micro-tile whose rows
and columns are 16 apart (so shared-memory reads are broadcast/conflict-free and the stores of a warp are
contiguous). The K loop steps by 16: the block stages a 64x16 slice of A and a 16x64 slice of B in shared
memory (padded by one column against bank conflicts), each thread loading 4 elements of each. The loader
picks its thread-to-element map from the operand's unit stride, so global reads stay coalesced whether an
operand is transposed or not. Out-of-range elements load as zero, so any M, N, K works.
"""

import functools

import numba
import numpy as np
from numba import cuda

BM = 64  # rows of C per block
BN = 64  # columns of C per block
BK = 16  # K step staged in shared memory
TY = 16  # threads per block, y
TX = 16  # threads per block, x
RM = BM // TY  # micro-tile rows per thread
RN = BN // TX  # micro-tile columns per thread
NT = TX * TY
LA = BM * BK // NT  # A elements each thread stages per K step
LB = BK * BN // NT
BMP = BM + 1  # shared tiles padded by a column against bank conflicts (a literal, as cuda.shared.array wants)
BNP = BN + 1


@functools.cache
def _kernel(dtype):
    nb = numba.from_dtype(np.dtype(dtype))
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def gemm(A, a_off, a_s1, a_s2, a_rs, a_cs,
             B, b_off, b_s1, b_s2, b_rs, b_cs,
             C, c_off, c_s1, c_s2, c_rs,
             bias, bias_mode, bias_s2,
             M, N, K, nz2, accumulate):
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * TX + tx
        z = cuda.blockIdx.z
        z1 = z // nz2
        z2 = z - z1 * nz2
        a0 = a_off + z1 * a_s1 + z2 * a_s2
        b0 = b_off + z1 * b_s1 + z2 * b_s2
        c0 = c_off + z1 * c_s1 + z2 * c_s2
        row0 = cuda.blockIdx.y * BM
        col0 = cuda.blockIdx.x * BN

        As = cuda.shared.array((BK, BMP), nb)
        Bs = cuda.shared.array((BK, BNP), nb)
        acc = cuda.local.array((RM, RN), nb)
        ra = cuda.local.array(RM, nb)
        rb = cuda.local.array(RN, nb)
        for i in range(RM):
            for j in range(RN):
                acc[i, j] = zero

        a_k_fast = a_cs == 1  # A's unit stride runs along k: let consecutive threads walk k
        b_n_fast = b_cs == 1  # B's unit stride runs along n: let consecutive threads walk n
        for k0 in range(0, K, BK):
            for l in range(LA):
                e = tid + l * NT
                if a_k_fast:
                    kk = e % BK
                    m = e // BK
                else:
                    m = e % BM
                    kk = e // BM
                r = row0 + m
                k = k0 + kk
                if r < M and k < K:
                    As[kk, m] = A[a0 + r * a_rs + k * a_cs]
                else:
                    As[kk, m] = zero
            for l in range(LB):
                e = tid + l * NT
                if b_n_fast:
                    n = e % BN
                    kk = e // BN
                else:
                    kk = e % BK
                    n = e // BK
                c = col0 + n
                k = k0 + kk
                if c < N and k < K:
                    Bs[kk, n] = B[b0 + k * b_rs + c * b_cs]
                else:
                    Bs[kk, n] = zero
            cuda.syncthreads()
            for kk in range(BK):
                for i in range(RM):
                    ra[i] = As[kk, ty + i * TY]
                for j in range(RN):
                    rb[j] = Bs[kk, tx + j * TX]
                for i in range(RM):
                    for j in range(RN):
                        acc[i, j] += ra[i] * rb[j]
            cuda.syncthreads()

        for i in range(RM):
            r = row0 + ty + i * TY
            if r >= M:
                continue
            for j in range(RN):
                c = col0 + tx + j * TX
                if c >= N:
                    continue
                v = acc[i, j]
                at = c0 + r * c_rs + c
                if accumulate:
                    v += C[at]
                if bias_mode == 1:
                    v += bias[z2 * bias_s2 + r]
                elif bias_mode == 2:
                    v += bias[c]
                C[at] = v

    return gemm


def gemm(A, a, B, b, C, c, M, N, K, nz1=1, nz2=1, bias=None, bias_mode=0, bias_s2=0, accumulate=False):
    """Launch the batched GEMM on flat device arrays A, B, C.

    a, b: (offset, batch stride 1, batch stride 2, row stride, column stride) of the logical (M, K) and
    (K, N) operands; c: (offset, batch stride 1, batch stride 2, row stride) of C (unit column stride).
    bias_mode 0: none; 1: bias[z2 * bias_s2 + row] (conv, per output channel); 2: bias[col] (linear).
    """
    M, N, K = int(M), int(N), int(K)
    if M == 0 or N == 0 or nz1 * nz2 == 0:
        return C
    if bias is None:
        bias = C  # never read: bias_mode is 0
        bias_mode = 0
    k = _kernel(C.dtype)
    grid = ((N + BN - 1) // BN, (M + BM - 1) // BM, int(nz1) * int(nz2))
    k[grid, (TX, TY)](A, *(int(v) for v in a), B, *(int(v) for v in b), C, *(int(v) for v in c),
                      bias, int(bias_mode), int(bias_s2), M, N, K, int(nz2), bool(accumulate))
    return C
