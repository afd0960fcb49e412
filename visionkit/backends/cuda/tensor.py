"""CUDA tensor plumbing: launch-grid helpers, allocation, padding, add, channel concat/split, channel sums.

Every function takes and returns Numba device arrays; nothing is copied to the host except by ``to_host``.
Kernels are written once and specialised lazily by ``cuda.jit`` on the argument dtypes (float32 and float64).
Accumulators start from a typed ``zero`` argument so a float32 kernel stays in float32 arithmetic; reductions
accumulate in float64 (like the CPU twin) in shared memory.

Reductions over a long axis (per-channel sums over N*H*W, batch-norm statistics, thin-conv weight gradients)
are two-stage, so that a layer with few channels and a large batch still fills the GPU: the first kernel runs
one block per (row, chunk of RED_CHUNK items) and writes a float64 partial per block, the second runs one
block per row over its partials (``red_plan`` picks the chunks; ``finish_sums`` is the usual second stage).
"""

import numpy as np
from numba import cuda, float64

# threads per block for flat (1-D) launches, and for the per-channel reduction blocks
TPB = 256
RED_TPB = 256
# items per first-stage block of a two-stage reduction (16 per thread at RED_TPB threads), and the most chunks
# a row is cut into (gridDim.y <= 65535; more than a few thousand partials per row buys nothing)
RED_CHUNK = 4096
RED_MAX_CHUNKS = 4096


# ----------------------------------------------------------------------------------------------- launch helpers


@cuda.jit(device=True, inline=True)
def unravel4(t, C, H, W):
    """Flat index t of a C-contiguous (N, C, H, W) array -> (n, c, h, w): one thread per element."""
    w = t % W
    u = t // W
    h = u % H
    u = u // H
    return u // C, u % C, h, w


def grid1d(n, tpb=TPB):
    """(blocks, threads) covering n items, one item per thread; small problems get a small block (>= 1 warp)."""
    n = int(n)
    threads = min(tpb, max(32, (n + 31) // 32 * 32))
    return max(1, (n + threads - 1) // threads), threads


def grid2d(ny, nx, by=16, bx=16):
    """((blocks_x, blocks_y), (bx, by)) covering an ny x nx index space (x fastest)."""
    return (max(1, (int(nx) + bx - 1) // bx), max(1, (int(ny) + by - 1) // by)), (bx, by)


def grid3d(nz, ny, nx, by=16, bx=16):
    """Like grid2d, with blockIdx.z running over nz independent problems (images, groups, ...)."""
    blocks, threads = grid2d(ny, nx, by, bx)
    return (blocks[0], blocks[1], max(1, int(nz))), threads


def empty(shape, dtype):
    return cuda.device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))


@cuda.jit
def _fill(a, v):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = v


def full(shape, dtype, value):
    a = empty(shape, dtype)
    if a.size:
        flat = a.reshape(a.size)
        b, t = grid1d(a.size)
        _fill[b, t](flat, np.dtype(dtype).type(value))
    return a


def zeros(shape, dtype):
    return full(shape, dtype, 0)


def flat(a):
    """A 1-D view of a C-contiguous device array."""
    return a.reshape(a.size)


def zero_of(a):
    """A scalar zero of a's dtype, passed to kernels to type their accumulators."""
    return a.dtype.type(0)


def to_device(a):
    """numpy (or a scalar, list) -> a C-contiguous device array of the same dtype; device arrays pass through."""
    if isinstance(a, np.ndarray) or np.isscalar(a) or isinstance(a, (list, tuple)):
        return cuda.to_device(np.ascontiguousarray(a))
    return a


def to_host(a):
    """A device array -> numpy of the same dtype and shape; numpy passes through."""
    if isinstance(a, np.ndarray):
        return a
    return a.copy_to_host()


# ----------------------------------------------------------------------------------------------- pad


@cuda.jit(device=True, inline=True)
def _src(o, p0, n, mode):
    """Input index that output index o reads (pad p0 in front, size n); -1 for constant padding."""
    i = o - p0
    if i >= 0 and i < n:
        return i
    if mode == 0:
        return -1
    if mode == 1:  # reflect, edge not repeated; periodic for pads wider than the input, as the CPU twin
        if n == 1:
            return 0
        period = 2 * (n - 1)
        m = abs(i) % period
        return m if m < n else period - m
    if i < 0:  # replicate
        return 0
    return n - 1


@cuda.jit
def _pad_forward(x, y, pt, pl, mode, value):
    i = cuda.grid(1)
    if i >= y.size:
        return
    OH, OW = y.shape[2], y.shape[3]
    H, W = x.shape[2], x.shape[3]
    ow = i % OW
    t = i // OW
    oh = t % OH
    nc = t // OH
    C = x.shape[1]
    n = nc // C
    c = nc - n * C
    ih = _src(oh, pt, H, mode)
    iw = _src(ow, pl, W, mode)
    if ih < 0 or iw < 0:
        y[n, c, oh, ow] = value
    else:
        y[n, c, oh, ow] = x[n, c, ih, iw]


@cuda.jit
def _pad_backward(gy, gx, pt, pb, pl, pr, mode, zero):
    """Gather: each input pixel sums the outputs that read it: itself and any pad cells mapped onto it."""
    i = cuda.grid(1)
    if i >= gx.size:
        return
    H, W = gx.shape[2], gx.shape[3]
    OH, OW = gy.shape[2], gy.shape[3]
    iw = i % W
    t = i // W
    ih = t % H
    nc = t // H
    C = gx.shape[1]
    n = nc // C
    c = nc - n * C
    acc = zero
    # candidate output rows: the interior one, then the pad rows (few)
    for a in range(pt + pb + 1):
        if a == 0:
            oh = ih + pt
        elif a <= pt:
            oh = a - 1
        else:
            oh = pt + H + (a - pt - 1)
        if oh >= OH or _src(oh, pt, H, mode) != ih:
            continue
        for b in range(pl + pr + 1):
            if b == 0:
                ow = iw + pl
            elif b <= pl:
                ow = b - 1
            else:
                ow = pl + W + (b - pl - 1)
            if ow >= OW or _src(ow, pl, W, mode) != iw:
                continue
            acc += gy[n, c, oh, ow]
    gx[n, c, ih, iw] = acc


def pad_forward(x, pads, mode, value):
    pt, pb, pl, pr = (int(p) for p in pads)
    N, C, H, W = x.shape
    y = empty((N, C, H + pt + pb, W + pl + pr), x.dtype)
    if y.size:
        b, t = grid1d(y.size)
        _pad_forward[b, t](x, y, pt, pl, int(mode), x.dtype.type(value))
    return y


def pad_backward(gy, x_shape, pads, mode):
    pt, pb, pl, pr = (int(p) for p in pads)
    gx = empty(x_shape, gy.dtype)
    if gx.size:
        b, t = grid1d(gx.size)
        _pad_backward[b, t](gy, gx, pt, pb, pl, pr, int(mode), zero_of(gy))
    return gx


# ----------------------------------------------------------------------------------------------- add, concat, split


@cuda.jit
def _add(a, b, y):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = a[i] + b[i]


def add(a, b):
    if a.shape != b.shape:
        raise ValueError(f"add: shapes differ: {a.shape} and {b.shape}")
    y = empty(a.shape, a.dtype)
    if y.size:
        bl, t = grid1d(y.size)
        _add[bl, t](flat(a), flat(b), flat(y))
    return y


@cuda.jit
def _add_channel_bias(y3, b):
    i = cuda.grid(1)
    N, C, P = y3.shape
    if i >= N * C * P:
        return
    p = i % P
    u = i // P
    c = u % C
    n = u // C
    y3[n, c, p] += b[c]


def add_channel_bias(y, b):
    """y[:, c, ...] += b[c], in place (any rank >= 2); returns y."""
    if y.ndim < 2 or tuple(b.shape) != (y.shape[1],):
        raise ValueError(f"add_channel_bias: bias of shape {tuple(b.shape)} for an array of shape {tuple(y.shape)}")
    if y.size:
        bl, t = grid1d(y.size)
        _add_channel_bias[bl, t](_as3d(y), b)
    return y


@cuda.jit
def _copy_channels(src, dst, c_src0, c_dst0, nc):
    """dst[n, c_dst0 + c, p] = src[n, c_src0 + c, p] for c < nc (3-D views (N, C, P))."""
    i = cuda.grid(1)
    P = src.shape[2]
    N = src.shape[0]
    if i >= N * nc * P:
        return
    p = i % P
    t = i // P
    c = t % nc
    n = t // nc
    dst[n, c_dst0 + c, p] = src[n, c_src0 + c, p]


def _as3d(a):
    if a.ndim == 2:
        return a.reshape(a.shape[0], a.shape[1], 1)
    P = 1
    for s in a.shape[2:]:
        P *= s
    return a.reshape(a.shape[0], a.shape[1], P)


def concat_channels(xs):
    xs = list(xs)
    x0 = xs[0]
    C = sum(int(x.shape[1]) for x in xs)
    y = empty((x0.shape[0], C) + tuple(x0.shape[2:]), x0.dtype)
    y3 = _as3d(y)
    c0 = 0
    for x in xs:
        nc = int(x.shape[1])
        if x.size:
            b, t = grid1d(x.size)
            _copy_channels[b, t](_as3d(x), y3, 0, c0, nc)
        c0 += nc
    return y


def split_channels(g, sizes):
    g3 = _as3d(g)
    out = []
    c0 = 0
    for s in sizes:
        s = int(s)
        part = empty((g.shape[0], s) + tuple(g.shape[2:]), g.dtype)
        if part.size:
            b, t = grid1d(part.size)
            _copy_channels[b, t](g3, _as3d(part), c0, 0, s)
        out.append(part)
        c0 += s
    return out


# ----------------------------------------------------------------------------------------------- channel sums


@cuda.jit(device=True, inline=True)
def block_sum(buf, tid, nt, v):
    """Sum v over a block of nt threads (a power of two >= 32) through the shared buffer buf; all get the total.

    A tree with a barrier per level down to one warp's 32 partials, which thread 0 adds up: the last five
    levels would cost five barriers for almost no work.
    """
    cuda.syncthreads()  # buf may still be read by a previous reduction
    buf[tid] = v
    cuda.syncthreads()
    s = nt // 2
    while s >= 32:
        if tid < s:
            buf[tid] += buf[tid + s]
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        acc = buf[0]
        for i in range(1, min(nt, 32)):
            acc += buf[i]
        buf[0] = acc
    cuda.syncthreads()
    return buf[0]


def red_threads(m):
    """Threads for a one-block-per-row reduction over m items: a power of two in [32, RED_TPB]."""
    t = 32
    while t < RED_TPB and t < m:
        t *= 2
    return t


def red_plan(m):
    """(chunks, chunk length) for the first stage of a two-stage reduction over m >= 0 items: no empty chunk."""
    m = int(m)
    k = max(1, min(RED_MAX_CHUNKS, -(-m // RED_CHUNK)))
    length = max(1, -(-m // k))
    return max(1, -(-m // length)), length


@cuda.jit
def _finish_sums(part, out):
    """Second stage: out[r] = sum_k part[r, k] (float64 partials), one block per row."""
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    acc = 0.0
    for k in range(tid, part.shape[1], nt):
        acc += part[r, k]
    buf = cuda.shared.array(RED_TPB, float64)
    tot = block_sum(buf, tid, nt, acc)
    if tid == 0:
        out[r] = tot


def finish_sums(part, out):
    """out (flat, rows of part) = row sums of the float64 partials ``part`` (rows, chunks)."""
    if part.shape[0]:
        _finish_sums[int(part.shape[0]), red_threads(part.shape[1])](part, out)
    return out


@cuda.jit
def _channel_sum_part(g3, length, part):
    """First stage: part[c, k] = sum of items k*length .. (k+1)*length-1 of channel c's (N, P) walk."""
    c = cuda.blockIdx.x
    k = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    N, P = g3.shape[0], g3.shape[2]
    q1 = min((k + 1) * length, N * P)
    acc = 0.0
    for q in range(k * length + tid, q1, nt):
        n = q // P
        acc += g3[n, c, q - n * P]
    buf = cuda.shared.array(RED_TPB, float64)
    tot = block_sum(buf, tid, nt, acc)
    if tid == 0:
        part[c, k] = tot


def sum_except_channels(g):
    g3 = _as3d(g)
    C = int(g3.shape[1])
    out = empty((C,), g.dtype)
    if C:
        k, length = red_plan(g3.shape[0] * g3.shape[2])
        part = empty((C, k), np.float64)
        _channel_sum_part[(C, k), red_threads(length)](g3, length, part)
        finish_sums(part, out)
    return out


# ----------------------------------------------------------------------------------------------- channel scaling


@cuda.jit
def _scale_channels(x, s, y, C, P):
    i = cuda.grid(1)
    if i < x.size:
        q = i // P
        y[i] = x[i] * s[q // C, q % C]


@cuda.jit
def _scale_channels_grad(gy3, x3, s, gx3, gs):
    """One block per (n, c): gx = gy * s over the plane, gs = the plane's sum of gy * x."""
    nc = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    C, P = x3.shape[1], x3.shape[2]
    n = nc // C
    c = nc - n * C
    v = s[n, c]
    acc = 0.0
    for p in range(tid, P, nt):
        g = gy3[n, c, p]
        gx3[n, c, p] = g * v
        acc += g * x3[n, c, p]
    buf = cuda.shared.array(RED_TPB, float64)
    tot = block_sum(buf, tid, nt, acc)
    if tid == 0:
        gs[n, c] = tot


def scale_channels(x, s):
    """y[n, c] = x[n, c] * s[n, c] (s is (N, C)): squeeze-and-excitation's rescaling."""
    y = empty(tuple(x.shape), x.dtype)
    if x.size:
        P = x.size // max(1, x.shape[0] * x.shape[1])
        _scale_channels[grid1d(x.size), TPB](flat(x), s, flat(y), int(x.shape[1]), int(P))
    return y


def scale_channels_backward(gy, x, s):
    gx = empty(tuple(x.shape), x.dtype)
    gs = empty(tuple(s.shape), x.dtype)
    x3 = _as3d(x)
    if x.size:
        _scale_channels_grad[int(x3.shape[0] * x3.shape[1]), red_threads(x3.shape[2])](_as3d(gy), x3, s, _as3d(gx),
                                                                                          gs)
    return gx, gs
