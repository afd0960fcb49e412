"""Compute backends: ``cpu`` (Numba ``@njit``) and ``cuda`` (Numba ``@cuda.jit``).

The two backends are twins. Each is a package with the same modules (``conv``, ``pool``, ``norm``, ``dense``,
``act``, ``resize``, ``tensor``) exposing the same functions with the same argument order. ``visionkit.ops``
normalises user arguments (PyTorch semantics, "same"/"valid" padding, ceil_mode, ...) into the plain tuples below
and calls the backend that owns the input array: numpy arrays go to ``cpu``, Numba CUDA device arrays to ``cuda``.
A backend never sees a string padding or a None stride; everything arrives resolved.

Common argument forms:
    x, gy, ...   float32, C-contiguous. NCHW for 4-D tensors.
    stride       (sh, sw) ints >= 1
    pads         (top, bottom, left, right) ints >= 0 (asymmetric to allow TensorFlow "same")
    dilation     (dh, dw) ints >= 1
    kernel       (kh, kw)
    out_hw       (oh, ow): output spatial size, computed by ops (ceil_mode lives there)

The contract, module by module (every function returns new arrays on the backend's device):

conv
    conv2d_forward(x, w, b, stride, pads, dilation, groups, act=-1, bn=None) -> y
        w: (O, C/groups, KH, KW); b: (O,) or None. OH = (H+pt+pb - dh*(KH-1) - 1)//sh + 1.
        bn = (mean, var, weight, bias, eps) applies a following inference-mode BatchNorm, act an activation code
        (0 relu, 9 relu6; -1 none) after it: the CPU does both in the pass that adds the bias (equal to the
        separate ops to float32 rounding).
    expand_depthwise_project(x, expand, depthwise, project, stride, pads, residual=False,
                             expand_geometry=((1, 1), (0, 0, 0, 0), (1, 1))) -> y
        inference only: conv2d_forward three times, an ungrouped conv (stride, pads, dilation = expand_geometry;
        1x1 in an inverted residual block), a depthwise conv (groups = channels, dilation 1, with stride and pads)
        and a 1x1 conv, each stage (w, b, bn, act) as conv2d_forward takes them, then + x when residual (the CPU
        in one kernel whose intermediates are channels-last).
    conv2d_backward_input(gy, w, x_shape, stride, pads, dilation, groups) -> gx with shape x_shape
        (x_shape may be larger than the forward would need: rows/cols no window touches get zero.
        conv_transpose2d's forward is this function.)
    conv2d_backward_weight(x, gy, w_shape, stride, pads, dilation, groups) -> gw with shape w_shape

pool
    max_pool2d_forward(x, kernel, stride, pads, dilation, out_hw, with_indices) -> (y, idx)
        padding counts as -inf; idx int32 (N,C,OH,OW) holds the flat index ih*W+iw of the max in its plane,
        or is None when with_indices is False (inference skips the index bookkeeping, 3x faster).
        NaN propagates: a NaN in the window is the max.
        A window with no element inside the input (possible only with ceil_mode edge cases) gives -inf, idx -1.
    max_pool2d_backward(gy, idx, x_shape) -> gx   (scatter-add of gy at idx; also used for adaptive max)
    avg_pool2d_forward(x, kernel, stride, pads, out_hw, count_include_pad, divisor) -> y
        PyTorch's rule: hstart = oh*sh - pt, hend = min(hstart+kh, H+pb), pool = (hend-hstart)*(wend-wstart);
        then clip to [0, H); divide by `divisor` if divisor > 0, else by pool if count_include_pad, else by the
        number of in-bounds elements.
    avg_pool2d_backward(gy, x_shape, kernel, stride, pads, count_include_pad, divisor) -> gx
    adaptive_avg_pool2d_forward(x, out_hw) -> y
        bin i spans [floor(i*H/OH), ceil((i+1)*H/OH)).
    adaptive_avg_pool2d_backward(gy, x_shape) -> gx
    adaptive_max_pool2d_forward(x, out_hw) -> (y, idx)   (idx as in max_pool2d_forward)
    channel_max_pool_forward(x, k) -> (y, idx)
        y[n, c] = max over channels c*k .. c*k+k-1; idx int32 holds the winning input channel.
    channel_max_pool_backward(gy, idx, x_shape) -> gx

norm
    lrn_forward(x, size, alpha, beta, k) -> y
        PyTorch local_response_norm: y = x / (k + alpha/size * sum_{window} x^2)^beta, window over channels
        c - size//2 .. c + (size-1)//2 (clipped).
    lrn_backward(gy, x, size, alpha, beta, k) -> gx
    batch_norm_stats(x) -> (mean, var)   per channel over N,H,W (or N for 2-D x); var biased; float32 (C,)
    batch_norm_update_running(running_mean, running_var, mean, var, momentum, n) -> None
        in place: running = (1-momentum)*running + momentum*batch; the variance made unbiased by n/(n-1)
    batch_norm_forward(x, mean, var, weight, bias, eps) -> y   (weight/bias may be None)
    batch_norm_backward(gy, x, mean, var, weight, eps, training) -> (gx, gweight, gbias)
        training=True: mean/var are the batch statistics and gx flows through them too.

dense
    linear_forward(x, w, b) -> y      x (N, IN), w (OUT, IN), b (OUT,) or None
    linear_backward(gy, x, w) -> (gx, gw, gb)

act
    act_forward(x, code, a) -> y           elementwise, any shape; code from ACTIVATIONS below, a = its parameter
    act_backward(gy, x, y, code, a) -> gx
    add_act(a, b, code) -> y               act(a + b) for code 0 (relu) or 9 (relu6): inference's residual add
    softmax_forward(x, log) -> y            x is 2-D (rows, classes), softmax along axis 1
    softmax_backward(gy, y, log) -> gx
    dropout_forward(x, p, seed) -> (y, mask)   mask uint8; keep iff hash(seed, flat index) >= p; y = x*mask/(1-p)
    dropout_backward(gy, mask, p) -> gx

resize
    interpolate_forward(x, out_hw, mode, align_corners, scale_hw) -> y
        mode 0 nearest (src = min(floor(dst*scale), in-1); as PyTorch, an output as large as the input copies it
        and one exactly twice as large takes dst // 2), 1 bilinear. scale_hw is PyTorch's source-per-dest
        scale (ops computes it: in/out, or 1/scale_factor when the user gave one). align_corners uses
        (in-1)/(out-1) instead and ignores scale_hw.
    interpolate_backward(gy, x_shape, mode, align_corners, scale_hw) -> gx

tensor
    pad_forward(x, pads, mode, value) -> y    mode 0 constant, 1 reflect, 2 replicate
    pad_backward(gy, x_shape, pads, mode) -> gx
    add(a, b) -> a + b
    add_channel_bias(y, b) -> y               in place: y[:, c] += b[c] (any rank >= 2)
    scale_channels(x, s) -> y                 y[n, c] = x[n, c] * s[n, c], s (N, C) (squeeze-and-excitation)
    scale_channels_backward(gy, x, s) -> (gx, gs)
    concat_channels(xs) -> y                  along axis 1
    split_channels(gy, sizes) -> list of arrays
    sum_except_channels(g) -> (C,)            sum over every axis but 1 (bias gradients)
    to_device(a) / to_host(a)                 numpy <-> this backend's arrays

the package itself
    session()   a context a whole model run (forward or backward) is wrapped in; re-entrant. The CPU backend
                holds BLAS to one thread there (see cpu/threads.py), CUDA does nothing.
"""

ACTIVATIONS = {
    "relu": 0,
    "leaky_relu": 1,
    "elu": 2,
    "selu": 3,
    "tanh": 4,
    "sigmoid": 5,
    "hardsigmoid": 6,
    "hardswish": 7,
    "linear": 8,
    "relu6": 9,
}


def conv_output_size(in_size, kernel, stride, pad_total, dilation=1):
    """Output extent of a convolution or pooling window slid over in_size + pad_total (floor mode); the one
    formula the ops and both backends share."""
    return (in_size + pad_total - dilation * (kernel - 1) - 1) // stride + 1
