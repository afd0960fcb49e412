"""Convolution and transposed convolution (torch.nn.functional.conv2d / conv_transpose2d semantics)."""


from ..backends import ACTIVATIONS
from ..device import backend_of
from ._args import _arr, _check_bias, _check_rank, _expect_shape, _match, _pair, _resolve_padding, conv_output_size


def _conv_args(x, weight, stride, padding, dilation, groups, op):
    _check_rank(x, 4, op)
    if len(weight.shape) != 4:
        raise ValueError(f"{op}: weight must be 4-D (out, in/groups, kh, kw), got shape {tuple(weight.shape)}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    groups = int(groups)
    if min(stride) < 1 or min(dilation) < 1 or groups < 1:
        raise ValueError(f"{op}: stride, dilation and groups must be >= 1")
    kernel = tuple(weight.shape[2:])
    pads = _resolve_padding(padding, x.shape[2:], kernel, stride, dilation)
    return stride, pads, dilation, groups, kernel


def _check_conv(x_shape, w_shape, stride, pads, dilation, groups, op):
    C, (O, Cg) = x_shape[1], w_shape[:2]
    if C % groups or O % groups:
        raise ValueError(f"{op}: in_channels={C} and out_channels={O} must be divisible by groups={groups}")
    if Cg != C // groups:
        raise ValueError(f"{op}: weight {tuple(w_shape)} expects {Cg * groups} input channels "
                         f"(groups={groups}), got {C} (input shape {tuple(x_shape)})")
    for n, k, s, p, d, axis in ((x_shape[2], w_shape[2], stride[0], pads[0] + pads[1], dilation[0], "height"),
                                (x_shape[3], w_shape[3], stride[1], pads[2] + pads[3], dilation[1], "width")):
        if conv_output_size(n, k, s, p, d) < 1:
            raise ValueError(f"{op}: kernel {k} (dilation {d}) is larger than the padded input {axis} {n + p}")


# the activations the convolution's epilogue applies itself, with their backend codes
FUSABLE_ACTIVATIONS = {name: ACTIVATIONS[name] for name in ("relu", "relu6")}


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _conv2d(x, weight, bias, stride, padding, dilation, groups, "conv2d")


def conv2d_relu(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """relu(conv2d(x, ...)) in one pass over the output: the CPU applies the ReLU where it adds the bias (what
    ``Conv2D(..., activation="relu")`` runs). Its backward is conv2d_backward of relu_backward(grad, y)."""
    return _conv2d(x, weight, bias, stride, padding, dilation, groups, "conv2d_relu", "relu")


def conv2d_bn_act(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, bn=None, activation=None):
    """activation(batch_norm(conv2d(x, ...), *bn, training=False)) in one pass over the output, for inference:
    bn = (running_mean, running_var, weight, bias, eps) or None, activation None, "relu" or "relu6". What the
    three ops give one after the other, to float32 rounding (the model's inference runs fuse such chains)."""
    return _conv2d(x, weight, bias, stride, padding, dilation, groups, "conv2d_bn_act", activation, bn)


def _check_activation(activation, op):
    if activation is not None and activation not in FUSABLE_ACTIVATIONS:
        raise ValueError(f"{op}: activation must be one of {sorted(FUSABLE_ACTIVATIONS)} or None, got {activation!r}")


def _check_bn(bn, C, op):
    """bn = (running_mean, running_var, weight, bias, eps) of a BatchNorm over C channels, or None."""
    if bn is None:
        return None
    mean, var, gamma, beta, eps = bn
    for name, v in (("running_mean", mean), ("running_var", var), ("weight", gamma), ("bias", beta)):
        if v is not None and tuple(v.shape) != (C,):
            raise ValueError(f"{op}: batch norm {name} must have shape ({C},), got {tuple(v.shape)}")
    return (mean, var, gamma, beta, float(eps))


def _epilogue_args(x, weight, bias, bn, activation, op):
    """A fused stage's (weight, bias, bn, activation code), each array matched to x's device and dtype."""
    _check_activation(activation, op)
    bn = _check_bn(bn, weight.shape[0], op)
    w, b = _match(weight, x, "weight"), _match(bias, x, "bias")
    _check_bias(b, w.shape[0], op)
    if bn is not None:
        mean, var, gamma, beta, eps = bn
        what = "batch norm statistics"
        bn = (_match(mean, x, what), _match(var, x, what), _match(gamma, x, what), _match(beta, x, what), eps)
    return w, b, bn, FUSABLE_ACTIVATIONS[activation] if activation is not None else -1


def expand_depthwise_project(x, expand, depthwise, project, stride=1, padding=0, residual=False, expand_stride=1,
                             expand_padding=0, expand_dilation=1):
    """MobileNetV2's inverted residual block, for inference: a 1x1 conv (expansion), a depthwise KxK conv with
    ``stride`` and ``padding`` (dilation 1), and a 1x1 conv (projection), each stage a tuple (weight, bias, bn,
    activation) as conv2d_bn_act takes them, with weights (Ce, C, 1, 1), (Ce, 1, KH, KW) and (P, Ce, 1, 1); then,
    with ``residual``, + x (whose shape the output must have). The first conv may be any ungrouped conv, with
    ``expand_stride``, ``expand_padding`` and ``expand_dilation`` (MobileNetV2's 3x3/2 stem before its first
    block, which does not expand). Equal to the three conv2d_bn_act calls (and add) to float32 rounding; the CPU
    runs it as one kernel whose intermediates stay channels-last (visionkit/backends/cpu/conv_block.py), other
    backends as the separate calls. The model's inference runs fuse such blocks."""
    op = "expand_depthwise_project"
    x = _arr(x)
    (we, *e), (wd, *d), (wp, *p) = expand, depthwise, project
    s1, pads1, d1, _, k1 = _conv_args(x, we, expand_stride, expand_padding, expand_dilation, 1, op)
    _check_conv(x.shape, we.shape, s1, pads1, d1, 1, op)
    Ce = we.shape[0]
    h1 = (x.shape[0], Ce, conv_output_size(x.shape[2], k1[0], s1[0], pads1[0] + pads1[1], d1[0]),
          conv_output_size(x.shape[3], k1[1], s1[1], pads1[2] + pads1[3], d1[1]))
    for name, w, shape in (("depthwise", wd, (Ce, 1)), ("projection", wp, (None, Ce, 1, 1))):
        if len(w.shape) != 4 or any(want is not None and got != want for got, want in zip(w.shape, shape)):
            want = ", ".join("*" if v is None else str(v) for v in shape + (None,) * (4 - len(shape)))
            raise ValueError(f"{op}: the {name} weight must have shape ({want}), got {tuple(w.shape)}")
    stride = _pair(stride, "stride")
    if min(stride) < 1:
        raise ValueError(f"{op}: stride must be >= 1, got {stride}")
    pads = _resolve_padding(padding, h1[2:], tuple(wd.shape[2:]), stride, (1, 1))
    _check_conv(h1, wd.shape, stride, pads, (1, 1), Ce, op)
    stages = [_epilogue_args(x, w, *rest, op) for w, rest in ((we, e), (wd, d), (wp, p))]
    if residual:
        out = (x.shape[0], wp.shape[0], conv_output_size(h1[2], wd.shape[2], stride[0], pads[0] + pads[1]),
               conv_output_size(h1[3], wd.shape[3], stride[1], pads[2] + pads[3]))
        if out != tuple(x.shape):
            raise ValueError(f"{op}: a residual block's output {out} must have the input's shape {tuple(x.shape)}")
    return backend_of(x).conv.expand_depthwise_project(x, *stages, stride, pads, bool(residual), (s1, pads1, d1))


def _conv2d(x, weight, bias, stride, padding, dilation, groups, op, activation=None, bn=None):
    x = _arr(x)
    stride, pads, dilation, groups, _ = _conv_args(x, weight, stride, padding, dilation, groups, op)
    w, b, bn, act = _epilogue_args(x, weight, bias, bn, activation, op)
    _check_conv(x.shape, w.shape, stride, pads, dilation, groups, op)
    return backend_of(x).conv.conv2d_forward(x, w, b, stride, pads, dilation, groups, act, bn)


def conv2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, input_grad=True):
    """(grad_input, grad_weight, grad_bias); grad_bias is None when bias is None, grad_input None when
    input_grad is False (a network's first layer: nobody needs the gradient of the image)."""
    x, gy = _arr(x), _arr(grad_out)
    stride, pads, dilation, groups, _ = _conv_args(x, weight, stride, padding, dilation, groups, "conv2d")
    w, gy = _match(weight, x, "weight"), _match(gy, x, "grad_out")
    _check_conv(x.shape, w.shape, stride, pads, dilation, groups, "conv2d")
    out = (x.shape[0], w.shape[0], conv_output_size(x.shape[2], w.shape[2], stride[0], pads[0] + pads[1], dilation[0]),
           conv_output_size(x.shape[3], w.shape[3], stride[1], pads[2] + pads[3], dilation[1]))
    _expect_shape(gy.shape, out, "conv2d backward")
    B = backend_of(x)
    gx = B.conv.conv2d_backward_input(gy, w, tuple(x.shape), stride, pads, dilation, groups) if input_grad else None
    gw = B.conv.conv2d_backward_weight(x, gy, tuple(w.shape), stride, pads, dilation, groups)
    gb = B.tensor.sum_except_channels(gy) if bias is not None else None
    return gx, gw, gb


def _transpose_geometry(x, weight, stride, padding, output_padding, groups, dilation):
    _check_rank(x, 4, "conv_transpose2d")
    if len(weight.shape) != 4:
        raise ValueError(f"conv_transpose2d: weight must be 4-D (in, out/groups, kh, kw), got {tuple(weight.shape)}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    ph, pw = _pair(padding, "padding")
    oph, opw = _pair(output_padding, "output_padding")
    groups = int(groups)
    if oph >= max(stride[0], dilation[0]) or opw >= max(stride[1], dilation[1]) or min(oph, opw) < 0:
        raise ValueError(f"conv_transpose2d: output_padding {(oph, opw)} must be smaller than stride or dilation")
    C, (Ci, Og, KH, KW) = x.shape[1], weight.shape
    if C != Ci:
        raise ValueError(f"conv_transpose2d: weight {tuple(weight.shape)} expects {Ci} input channels, got {C}")
    if C % groups:
        raise ValueError(f"conv_transpose2d: in_channels={C} must be divisible by groups={groups}")
    H, W = x.shape[2:]
    OH = (H - 1) * stride[0] - 2 * ph + dilation[0] * (KH - 1) + oph + 1
    OW = (W - 1) * stride[1] - 2 * pw + dilation[1] * (KW - 1) + opw + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"conv_transpose2d: padding {(ph, pw)} leaves an empty output")
    out_shape = (x.shape[0], Og * groups, OH, OW)
    # output_padding only enlarges the output at the bottom/right: rows no window of the adjoint conv reaches
    return out_shape, stride, (ph, ph, pw, pw), dilation, groups


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The adjoint of conv2d: weight is IOHW (in, out/groups, kh, kw)."""
    x = _arr(x)
    out_shape, stride, pads, dilation, groups = _transpose_geometry(
        x, weight, stride, padding, output_padding, groups, dilation)
    w = _match(weight, x, "weight")
    _check_bias(bias, out_shape[1], "conv_transpose2d")
    B = backend_of(x)
    # the forward of the transposed conv is conv2d's input gradient, with output_padding as extra bottom/right pad
    y = B.conv.conv2d_backward_input(x, w, out_shape, stride, pads, dilation, groups)
    if bias is not None:
        y = _add_channel_bias(y, _match(bias, x, "bias"))
    return y


def conv_transpose2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1):
    x, gy = _arr(x), _arr(grad_out)
    out_shape, stride, pads, dilation, groups = _transpose_geometry(
        x, weight, stride, padding, output_padding, groups, dilation)
    w, gy = _match(weight, x, "weight"), _match(gy, x, "grad_out")
    _expect_shape(gy.shape, out_shape, "conv_transpose2d backward")
    B = backend_of(x)
    gx = B.conv.conv2d_forward(gy, w, None, stride, pads, dilation, groups)
    if tuple(gx.shape) != tuple(x.shape):  # output_padding >= stride (allowed when dilation > stride): crop,
        # which is the adjoint of zero-padding at the bottom/right, on whichever device gx lives
        extra = (0, gx.shape[2] - x.shape[2], 0, gx.shape[3] - x.shape[3])
        gx = B.tensor.pad_backward(gx, tuple(x.shape), extra, 0)
    gw = B.conv.conv2d_backward_weight(gy, x, tuple(w.shape), stride, pads, dilation, groups)
    gb = B.tensor.sum_except_channels(gy) if bias is not None else None
    return gx, gw, gb


def _add_channel_bias(y, b):
    return backend_of(y).tensor.add_channel_bias(y, b)
