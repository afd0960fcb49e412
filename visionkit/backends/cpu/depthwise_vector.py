"""A 3x3 depthwise convolution's inner loop over channels-last data, written as explicit 64-byte vectors (16 float32
or 8 float64 channels) for the fused inverted residual block (conv_block.py).

Why: the block's per-pixel loop over the channels reads nine inputs and nine weights for every output vector, and
LLVM keeps none of the weights in registers from one pixel to the next (it cannot tell the output from the inputs
apart, so each pixel also pays its alias checks): 20-26 GMAC/s on two threads, a tenth of the machine's peak. Here
one call runs a row of pixels for one vector of channels: its nine weight vectors and the epilogue's rows are
loaded once, and each pixel costs nine loads, the nine products and their sum, the epilogue and one store.

The arithmetic is the per-pixel loop's, operation for operation (products summed left to right, no fused
multiply-add, then ``(v + bias) * scale + shift`` and the activation with the same comparisons), so the outputs are
bitwise the same. LLVM lowers the vectors to whatever the processor has (two 32-byte halves without AVX-512).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

VECTOR_BYTES = 64


def lanes(dtype):
    """Channels per vector for a numpy dtype."""
    return VECTOR_BYTES // dtype.itemsize


@intrinsic
def dw3x3_row(typingctx, E, D, wt, ep, src, step, W, dst, n, c, affine, act):
    """For m < n: D[dst + m, c:c+V] = act(epilogue(sum over i, j < 3 of E[src + m*step + i*W + j, c:c+V] *
    wt[3*i + j, c:c+V])), V = lanes(dtype). E (pixels, channels) and D channels-last and C-contiguous, wt the
    (9, channels) weights, ep the (3, channels) rows bias, scale, shift; ``affine`` applies scale and shift; act 0
    (relu), 9 (relu6) or anything else (none). Every window must lie inside E: the caller keeps to the interior."""
    if not all(isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C" and a.dtype == E.dtype
               for a in (E, D, wt, ep)) or E.dtype not in (types.float32, types.float64):
        return None
    sig = types.none(E, D, wt, ep, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp,
                     types.boolean, types.intp)

    def codegen(context, builder, signature, args):
        E_, D_, wt_, ep_, src_, step_, W_, dst_, n_, c_, affine_, act_ = args
        aty = signature.args[0]
        V = VECTOR_BYTES // context.get_abi_sizeof(context.get_data_type(aty.dtype))
        fty = context.get_data_type(aty.dtype)
        vty = ir.VectorType(fty, V)
        align = context.get_abi_sizeof(fty)
        arrays = [context.make_array(t)(context, builder, v) for t, v in zip(signature.args[:4], (E_, D_, wt_, ep_))]
        e_data, d_data, w_data, p_data = (a.data for a in arrays)
        Ce = builder.extract_value(arrays[0].shape, 1)
        intp = Ce.type

        def load(data, index):
            ptr = builder.bitcast(builder.gep(data, [index]), vty.as_pointer())
            return builder.load(ptr, align=align)

        def row(r):  # element index of channel c in row r
            return builder.add(builder.mul(r, Ce), c_)

        weights = [load(w_data, row(intp(t))) for t in range(9)]
        bias, scale, shift = (load(p_data, row(intp(t))) for t in range(3))
        zero, six = ir.Constant(vty, [0.0] * V), ir.Constant(vty, [6.0] * V)
        is_relu = builder.icmp_signed("==", act_, intp(0))
        is_relu6 = builder.icmp_signed("==", act_, intp(9))
        W = W_
        with cgutils.for_range(builder, n_) as loop:
            m = loop.index
            top = builder.add(src_, builder.mul(m, step_))
            acc = None
            for i in range(3):
                r = builder.add(top, builder.mul(intp(i), W))
                for j in range(3):
                    p = builder.fmul(load(e_data, row(builder.add(r, intp(j)))), weights[3 * i + j])
                    acc = p if acc is None else builder.fadd(acc, p)
            v = builder.fadd(acc, bias)
            v = builder.select(affine_, builder.fadd(builder.fmul(v, scale), shift), v)
            below = builder.fcmp_ordered("<", v, zero)
            relu = builder.select(below, zero, v)
            relu6 = builder.select(below, zero, builder.select(builder.fcmp_ordered(">", v, six), six, v))
            v = builder.select(is_relu, relu, builder.select(is_relu6, relu6, v))
            out = builder.bitcast(builder.gep(d_data, [row(builder.add(dst_, m))]), vty.as_pointer())
            builder.store(v, out, align=align)
        return context.get_dummy_value()

    return sig, codegen
