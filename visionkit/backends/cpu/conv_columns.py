"""im2col / col2im for the CPU convolution's GEMM path: the plain tiles (one copy per output row) and the pitched
ones (stride 1: the input rows copied once, padded, so each column row is one contiguous slice per image, the GEMM
then working at the padded row pitch Wp). Serial kernels: the tiles of ``conv.py`` are the unit of parallelism."""

from numba import njit


@njit(cache=True, inline="always")
def _valid_cols(j, sw, dw, pl, W, OW):
    """For kernel column j: the input column offset, and the output columns [lo, hi) whose input column
    ow*sw + off lies inside [0, W)."""
    off = j * dw - pl
    lo = 0 if off >= 0 else min((-off + sw - 1) // sw, OW)  # clamped: an empty range must stay lo == hi, as
    hi = (W - 1 - off) // sw + 1 if W - 1 - off >= 0 else 0  # slices with lo > hi would wrap or spill
    return off, lo, min(max(hi, lo), OW)


@njit(nogil=True, cache=True)
def _im2col_tile(x, n0, nb, c0, cg, kh, kw, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, col):
    """col[(c, i, j), b*R*OW + (oh-oh0)*OW + ow] = x[n0+b, c0+c, oh*sh-pt+i*dh, ow*sw-pl+j*dw] (0 outside),
    for images n0..n0+nb-1 and output rows oh0..oh1-1 (R = oh1-oh0). Serial: tiles are the unit of parallelism."""
    H = x.shape[2]
    W = x.shape[3]
    R = oh1 - oh0
    for c in range(cg):
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                off, lo, hi = _valid_cols(j, sw, dw, pl, W, OW)
                for b in range(nb):
                    xc = x[n0 + b, c0 + c]
                    for oh in range(oh0, oh1):
                        ih = oh * sh - pt + i * dh
                        row = (b * R + oh - oh0) * OW
                        if ih < 0 or ih >= H:
                            col[r, row:row + OW] = 0
                            continue
                        col[r, row:row + lo] = 0
                        xr = xc[ih]
                        if sw == 1:
                            col[r, row + lo:row + hi] = xr[lo + off:hi + off]
                        else:
                            for ow in range(lo, hi):
                                col[r, row + ow] = xr[ow * sw + off]
                        col[r, row + hi:row + OW] = 0


@njit(nogil=True, cache=True)
def _im2col_pitch_tile(x, n0, nb, c0, cg, kh, kw, pt, pl, dh, dw, oh0, oh1, Wp, tp, col):
    """Stride-1 im2col for output rows oh0..oh1-1 of images n0..n0+nb-1, at row pitch Wp = W + left + right
    padding.

    The rows the band reads are first copied, padded, into tp (Cg, nb*Rin*Wp); then every column row is ONE
    contiguous slice of tp per image, where the plain tile needs one per output row (4x faster on 14x14
    images). The GEMM's output comes out at the same pitch, each image's L = (R-1)*Wp + OW columns after the
    previous one's: the (Wp - OW) extra columns per row are dropped by _rows_out."""
    H = x.shape[2]
    W = x.shape[3]
    R = oh1 - oh0
    Rin = R + (kh - 1) * dh
    L = col.shape[1] // nb
    for c in range(cg):
        for b in range(nb):
            t = tp[c, b * Rin * Wp:(b + 1) * Rin * Wp]
            for r in range(Rin):
                ih = oh0 - pt + r
                row = t[r * Wp:(r + 1) * Wp]
                if ih < 0 or ih >= H:
                    row[:] = 0
                else:
                    row[:pl] = 0
                    row[pl:pl + W] = x[n0 + b, c0 + c, ih]
                    row[pl + W:] = 0
            for i in range(kh):
                for j in range(kw):
                    s = i * dh * Wp + j * dw
                    col[(c * kh + i) * kw + j, b * L:(b + 1) * L] = t[s:s + L]


@njit(nogil=True, cache=True)
def _im2col_phase_tile(x, n0, nb, c0, cg, kh, kw, sh, sw, pt, pl, oh0, oh1, Wq, tp, col):
    """Strided, undilated im2col for output rows oh0..oh1-1 of images n0..n0+nb-1, at row pitch
    Wq = OW + (kw - 1) // sw: _im2col_pitch_tile's one slice per column row, for strides.

    Tap (i, j) reads input row oh*sh + i and column ow*sw + j (padded coordinates). The band's padded rows are
    first split into sh*sw phase planes in tp, plane (a, b) holding the rows = a and columns = b modulo the
    stride; tap (i, j) then reads plane (i % sh, j % sw) from offset (i // sh, j // sw) with stride 1, one
    contiguous slice per image. The split is the only strided read, once per input element, where the plain tile
    reads kh*kw strided runs per output row (a 7x7 stride-2 stem: each input element ~12 times)."""
    H = x.shape[2]
    W = x.shape[3]
    R = oh1 - oh0
    Ru = R + (kh - 1) // sh
    plane = Ru * Wq
    L = col.shape[1] // nb
    for c in range(cg):
        for b in range(nb):
            t = tp[c, b * sh * sw * plane:(b + 1) * sh * sw * plane]
            xc = x[n0 + b, c0 + c]
            for a in range(sh):
                for u in range(Ru):
                    ih = (oh0 + u) * sh + a - pt
                    for q in range(sw):
                        start = ((a * sw + q) * Ru + u) * Wq
                        row = t[start:start + Wq]
                        if ih < 0 or ih >= H:
                            row[:] = 0
                            continue
                        # plane column v holds input column q + sw * v - pl: those inside the image are v0..v1-1
                        v0 = 0 if pl <= q else min(Wq, (pl - q + sw - 1) // sw)
                        last = W - 1 + pl - q
                        v1 = max(v0, min(Wq, last // sw + 1)) if last >= 0 else v0
                        row[:v0] = 0
                        if v0 < v1:
                            i0 = q + sw * v0 - pl
                            row[v0:v1] = xc[ih, i0:i0 + sw * (v1 - v0 - 1) + 1:sw]
                        row[v1:] = 0
            for i in range(kh):
                for j in range(kw):
                    s = ((i % sh) * sw + j % sw) * plane + (i // sh) * Wq + j // sw
                    col[(c * kh + i) * kw + j, b * L:(b + 1) * L] = t[s:s + L]


@njit(nogil=True, cache=True)
def _pitch_rows(gy, n0, nb, o0, og, oh0, oh1, Wp, out):
    """out[o, b*L + r*Wp + ow] = gy[n0+b, o0+o, oh0+r, ow], zeros in the Wp-OW columns between rows: a band of
    gy laid out at the pitch of the padded input (L columns per image), for the pitched col2im."""
    OW = gy.shape[3]
    R = oh1 - oh0
    L = out.shape[1] // nb
    for o in range(og):
        for b in range(nb):
            for r in range(R):
                base = b * L + r * Wp
                out[o, base:base + OW] = gy[n0 + b, o0 + o, oh0 + r]
                if r < R - 1:
                    out[o, base + OW:base + Wp] = 0


@njit(nogil=True, cache=True)
def _col2im_pitch_tile(gcol, n0, nb, c0, cg, kh, kw, pt, pl, dh, dw, oh0, oh1, Wp, tp, gx):
    """Adjoint of _im2col_pitch_tile: each column row adds into the image's padded band tp as ONE slice, then
    the band's real pixels are added into gx."""
    H = gx.shape[2]
    W = gx.shape[3]
    Rin = oh1 - oh0 + (kh - 1) * dh
    L = gcol.shape[1] // nb
    for c in range(cg):
        for b in range(nb):
            t = tp[c]
            t[:] = 0
            for i in range(kh):
                for j in range(kw):
                    s = i * dh * Wp + j * dw
                    t[s:s + L] += gcol[(c * kh + i) * kw + j, b * L:(b + 1) * L]
            for r in range(Rin):
                ih = oh0 - pt + r
                if 0 <= ih < H:
                    gx[n0 + b, c0 + c, ih] += t[r * Wp + pl:r * Wp + pl + W]


@njit(nogil=True, cache=True)
def _col2im_tile(col, n0, nb, c0, cg, kh, kw, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, gx):
    """Adjoint of _im2col_tile: gx[n0+b, c0+c, ...] += col[...]."""
    H = gx.shape[2]
    W = gx.shape[3]
    R = oh1 - oh0
    for c in range(cg):
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                off, lo, hi = _valid_cols(j, sw, dw, pl, W, OW)
                for b in range(nb):
                    plane = gx[n0 + b, c0 + c]
                    for oh in range(oh0, oh1):
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        row = (b * R + oh - oh0) * OW
                        xr = plane[ih]
                        if sw == 1:
                            xr[lo + off:hi + off] += col[r, row + lo:row + hi]
                        else:
                            for ow in range(lo, hi):
                                xr[ow * sw + off] += col[r, row + ow]
