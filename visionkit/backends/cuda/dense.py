"""CUDA fully connected layer: three launches of the tiled GEMM (gemm.py); transposes are stride swaps.

    forward   y  = x (N x IN) @ w^T (IN x OUT) + b      (bias fused in the GEMM epilogue, per column)
    backward  gx = gy (N x OUT) @ w (OUT x IN)
              gw = gy^T (OUT x N) @ x (N x IN)
              gb = column sums of gy (a per-column parallel reduction)
"""

from . import gemm as _g
from .tensor import empty, flat, sum_except_channels


def linear_forward(x, w, b):
    N, IN = (int(v) for v in x.shape)
    OUT = int(w.shape[0])
    y = empty((N, OUT), x.dtype)
    _g.gemm(flat(x), (0, 0, 0, IN, 1), flat(w), (0, 0, 0, 1, IN), flat(y), (0, 0, 0, OUT), N, OUT, IN,
            bias=b, bias_mode=2 if b is not None else 0)
    return y


def linear_backward(gy, x, w):
    N, IN = (int(v) for v in x.shape)
    OUT = int(w.shape[0])
    gx = empty((N, IN), gy.dtype)
    gw = empty((OUT, IN), gy.dtype)
    _g.gemm(flat(gy), (0, 0, 0, OUT, 1), flat(w), (0, 0, 0, IN, 1), flat(gx), (0, 0, 0, IN), N, IN, OUT)
    _g.gemm(flat(gy), (0, 0, 0, 1, OUT), flat(x), (0, 0, 0, IN, 1), flat(gw), (0, 0, 0, IN), OUT, IN, N)
    return gx, gw, sum_except_channels(gy)
