"""The fused inverted residual block's (conv_block.py) per-pixel loops over channels-last data, written as explicit
64-byte vectors (16 float32 or 8 float64 channels) in LLVM IR through Numba intrinsics:

- ``dw3x3_row``: a 3x3 depthwise conv over a row of output pixels, one vector of channels;
- ``finish_rows``: the expansion's epilogue over a run of pixels, one vector of channels;
- ``transpose_finish``: a V x V tile of the projection's channels-last product stored NCHW through its epilogue.

Why: written as Numba loops over the channels, each pixel's loop reloads what does not change from pixel to pixel
(the depthwise conv's nine weight vectors, the epilogue's rows) and pays its own alias checks, because LLVM cannot
tell the output from the inputs apart; with few channels that setup is most of the time. The depthwise conv ran at
20-26 GMAC/s on two threads, a tenth of the machine's peak. Here the invariants are loaded once per call and each
pixel costs its loads, its arithmetic and one store.

The arithmetic is the loops', operation for operation (products summed left to right, no fused multiply-add, then
``(v + bias) * scale + shift`` and the activation with the same comparisons, NaN kept), so the outputs are bitwise
the same. LLVM lowers the vectors to whatever the processor has (two 32-byte halves without AVX-512).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

VECTOR_BYTES = 64


def lanes(dtype):
    """Channels per vector for a numpy dtype."""
    return VECTOR_BYTES // dtype.itemsize


class _Vectors:
    """Helpers for one codegen: V-lane vectors of the arrays' dtype, loads and stores at element indices, and the
    epilogue as conv_epilogue applies it."""

    def __init__(self, context, builder, types_, arrays, act):
        self.b = builder
        fty = context.get_data_type(types_[0].dtype)
        self.V = VECTOR_BYTES // context.get_abi_sizeof(fty)
        self.vty = ir.VectorType(fty, self.V)
        self.align = context.get_abi_sizeof(fty)
        self.arrays = [context.make_array(t)(context, builder, v) for t, v in zip(types_, arrays)]
        self.data = [a.data for a in self.arrays]
        self.zero, self.six = ir.Constant(self.vty, [0.0] * self.V), ir.Constant(self.vty, [6.0] * self.V)
        self.is_relu = builder.icmp_signed("==", act, act.type(0))
        self.is_relu6 = builder.icmp_signed("==", act, act.type(9))

    def columns(self, i):
        """The second dimension of the i-th array (its row length)."""
        return self.b.extract_value(self.arrays[i].shape, 1)

    def _ptr(self, data, index):
        return self.b.bitcast(self.b.gep(data, [index]), self.vty.as_pointer())

    def load(self, data, index):
        return self.b.load(self._ptr(data, index), align=self.align)

    def store(self, value, data, index):
        self.b.store(value, self._ptr(data, index), align=self.align)

    def finish(self, v, bias, scale, shift, affine):
        """act((v + bias) * scale + shift), or act(v + bias) when not ``affine``: _store_channels's operations."""
        b = self.b
        v = b.fadd(v, bias)
        v = b.select(affine, b.fadd(b.fmul(v, scale), shift), v)
        below = b.fcmp_ordered("<", v, self.zero)
        relu = b.select(below, self.zero, v)
        relu6 = b.select(below, self.zero, b.select(b.fcmp_ordered(">", v, self.six), self.six, v))
        return b.select(self.is_relu, relu, b.select(self.is_relu6, relu6, v))


def _arrays_ok(ndim, *arrays):
    """True for C-contiguous float32 or float64 arrays of ``ndim`` dimensions, all of the first one's dtype."""
    first = arrays[0]
    return first.dtype in (types.float32, types.float64) and all(
        isinstance(a, types.Array) and a.ndim == ndim and a.layout == "C" and a.dtype == first.dtype for a in arrays)


@intrinsic
def dw3x3_row(typingctx, E, D, wt, ep, src, step, W, dst, n, c, affine, act):
    """For m < n: D[dst + m, c:c+V] = act(epilogue(sum over i, j < 3 of E[src + m*step + i*W + j, c:c+V] *
    wt[3*i + j, c:c+V])), V = lanes(dtype). E (pixels, channels) and D channels-last and C-contiguous, wt the
    (9, channels) weights, ep the (3, channels) rows bias, scale, shift; ``affine`` applies scale and shift; act 0
    (relu), 9 (relu6) or anything else (none). Every window must lie inside E: the caller keeps to the interior."""
    if not _arrays_ok(2, E, D, wt, ep):
        return None
    sig = types.none(E, D, wt, ep, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp,
                     types.boolean, types.intp)

    def codegen(context, builder, signature, args):
        src, step, W, dst, n, c, affine, act = args[4:]
        vec = _Vectors(context, builder, signature.args[:4], args[:4], act)
        e_data, d_data, w_data, p_data = vec.data
        Ce = vec.columns(0)
        intp = Ce.type

        def at(r):  # element index of channel c in row r
            return builder.add(builder.mul(r, Ce), c)

        weights = [vec.load(w_data, at(intp(t))) for t in range(9)]
        bias, scale, shift = (vec.load(p_data, at(intp(t))) for t in range(3))
        with cgutils.for_range(builder, n) as loop:
            top = builder.add(src, builder.mul(loop.index, step))
            acc = None
            for i in range(3):
                r = builder.add(top, builder.mul(intp(i), W))
                for j in range(3):
                    p = builder.fmul(vec.load(e_data, at(builder.add(r, intp(j)))), weights[3 * i + j])
                    acc = p if acc is None else builder.fadd(acc, p)
            vec.store(vec.finish(acc, bias, scale, shift, affine), d_data, at(builder.add(dst, loop.index)))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def finish_rows(typingctx, E, ep, q0, n, c, affine, act):
    """For m < n: E[q0 + m, c:c+V] = act(epilogue(E[q0 + m, c:c+V])) in place (E channels-last, ep the (3,
    channels) rows bias, scale, shift): _store_channels over a run of pixels, the epilogue rows in registers."""
    if not _arrays_ok(2, E, ep):
        return None
    sig = types.none(E, ep, types.intp, types.intp, types.intp, types.boolean, types.intp)

    def codegen(context, builder, signature, args):
        q0, n, c, affine, act = args[2:]
        vec = _Vectors(context, builder, signature.args[:2], args[:2], act)
        e_data, p_data = vec.data
        Ce = vec.columns(0)
        intp = Ce.type
        bias, scale, shift = (vec.load(p_data, builder.add(builder.mul(intp(t), Ce), c)) for t in range(3))
        with cgutils.for_range(builder, n) as loop:
            at = builder.add(builder.mul(builder.add(q0, loop.index), Ce), c)
            vec.store(vec.finish(vec.load(e_data, at), bias, scale, shift, affine), e_data, at)
        return context.get_dummy_value()

    return sig, codegen


def _transpose(builder, rows):
    """The V x V matrix held as V row vectors, transposed: log2(V) rounds of two-input shuffles, each swapping
    the off-diagonal blocks of size d between rows i and i + d."""
    V = len(rows)
    mask = ir.VectorType(ir.IntType(32), V)
    d = 1
    while d < V:
        lo = ir.Constant(mask, [j if not j & d else V + j - d for j in range(V)])
        hi = ir.Constant(mask, [j + d if not j & d else V + j for j in range(V)])
        out = list(rows)
        for i in range(V):
            if not i & d:
                out[i] = builder.shuffle_vector(rows[i], rows[i + d], lo)
                out[i + d] = builder.shuffle_vector(rows[i], rows[i + d], hi)
        rows, d = out, 2 * d
    return rows


@intrinsic
def transpose_finish(typingctx, Z, N, m0, j0, yf, ybase, OHW, ep, o0, affine, act, xf, residual):
    """A V x V tile of the projection's channels-last product, stored NCHW through the epilogue: for i, j < V,
    yf[ybase + (o0 + j0 + j) * OHW + m0 + i] = act(epilogue(Z[(m0 + i) * N + j0 + j], channel o0 + j0 + j)), then
    + xf at the same index with ``residual``. Z, yf and xf flat; ep the (3, channels) rows bias, scale, shift.
    The tile is transposed in registers (what _project's scalar store does one element at a time)."""
    if not (_arrays_ok(1, Z, yf, xf) and _arrays_ok(2, ep) and ep.dtype == Z.dtype):
        return None
    sig = types.none(Z, types.intp, types.intp, types.intp, yf, types.intp, types.intp, ep, types.intp,
                     types.boolean, types.intp, xf, types.boolean)

    def codegen(context, builder, signature, args):
        Z_, N, m0, j0, yf_, ybase, OHW, ep_, o0, affine, act, xf_, residual = args
        vec = _Vectors(context, builder, (signature.args[0], signature.args[4], signature.args[7],
                                          signature.args[11]), (Z_, yf_, ep_, xf_), act)
        z_data, y_data, p_data, x_data = vec.data
        O = vec.columns(2)
        intp = O.type
        V = vec.V
        rows = [vec.load(z_data, builder.add(builder.mul(builder.add(m0, intp(i)), N), j0)) for i in range(V)]
        cols = _transpose(builder, rows)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), V), [0] * V)

        def broadcast(r, o):
            s = builder.load(builder.gep(p_data, [builder.add(builder.mul(intp(r), O), o)]))
            return builder.shuffle_vector(builder.insert_element(ir.Constant(vec.vty, ir.Undefined), s, intp(0)),
                                          ir.Constant(vec.vty, ir.Undefined), zeros)

        for j in range(V):
            o = builder.add(builder.add(o0, j0), intp(j))
            v = vec.finish(cols[j], broadcast(0, o), broadcast(1, o), broadcast(2, o), affine)
            at = builder.add(builder.add(ybase, builder.mul(o, OHW)), m0)
            with builder.if_else(residual) as (add, plain):
                with add:
                    vec.store(builder.fadd(v, vec.load(x_data, at)), y_data, at)
                with plain:
                    vec.store(v, y_data, at)
        return context.get_dummy_value()

    return sig, codegen
