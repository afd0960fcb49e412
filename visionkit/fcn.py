"""Fully convolutional conversion: a classifier's dense head turned into convolutions.

The textbooks' sliding-window detector: a classifier trained on fixed-size windows becomes, once its Flatten+Dense
head is rewritten as a convolution whose kernel covers the whole feature map (and each later Dense as a 1x1
convolution), a network that takes an image of any size and returns a map of class scores, one per window
position, in ONE pass, sharing the convolutions of overlapping windows. Position (i, j) of the map scores the
window whose top-left corner is (i * s, j * s) in the image, s being the product of the strides before the head.

The scores equal those of running the classifier on each window exactly when the layers before the head use
"valid" padding; "same" padding pads a lone window with zeros where the large image has real pixels, so windows
near features computed from padding differ at their borders.

    fcn = model.to_fully_convolutional()   # shares the classifier's weights (a view, not a copy)
    scores = fcn(image)                    # (N, classes, rows, cols)
"""

from .input_layer import Input, InputLayer
from .layers import Activation, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D
from .model import Model

# layers that act per position / per channel and so mean the same on a (N, C, h, w) map as on (N, C) features
_POINTWISE = (Activation, Dropout, BatchNorm)
# elementwise ones may even sit between Flatten and Dense (Keras models often put Dropout there)
_ELEMENTWISE = (Activation, Dropout)


def to_fully_convolutional(model, name=None):
    """A new Model taking (C, any H, any W) whose Dense layers became equivalent Conv2D layers."""
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r}: fully convolutional conversion takes a single-input model")
    in_shape = tuple(model.inputs[0].shape[1:])
    if len(in_shape) != 3:
        raise ValueError(f"model {model.name!r}: the input must be an image (C, H, W), got {in_shape}")
    new_in = Input((in_shape[0], None, None), name=f"{model.name}_fcn_input")
    tensors = {}   # node position -> new symbolic tensor
    flat = {}      # node position -> (C, H, W) of the map a Flatten collapsed there (for the Dense that follows)
    for pos, node in enumerate(model._order):
        if isinstance(node.layer, InputLayer):
            tensors[pos] = new_in
            continue
        layer = node.layer
        ins = model._inbound[pos]
        if len(ins) != 1:
            if any(i in flat for i in ins):
                raise ValueError(f"layer {layer.name!r} merges features after the head began: not convertible")
            tensors[pos] = layer([tensors[i] for i in ins])
            continue
        src = ins[0]
        x = tensors[src]
        in_shape = tuple(node.inbound[0].shape[1:])
        if isinstance(layer, Flatten):
            if len(in_shape) != 3 or None in in_shape:
                raise ValueError(f"layer {layer.name!r}: Flatten of {in_shape} has no fixed window to convert")
            tensors[pos], flat[pos] = x, in_shape   # the next Dense absorbs it
        elif isinstance(layer, GlobalAvgPool2D) and not layer.keepdims:
            c, h, w = in_shape
            if h is None or w is None:
                raise ValueError(f"layer {layer.name!r}: global pooling over an unknown size has no window")
            tensors[pos] = AvgPool2D((h, w), strides=1, name=f"{layer.name}_window")(x)
        elif isinstance(layer, Dense):
            tensors[pos] = _dense_as_conv(layer, flat.get(src), x)
        elif src in flat:
            if not isinstance(layer, _ELEMENTWISE):
                raise ValueError(f"layer {layer.name!r} sits between Flatten and Dense: not convertible")
            tensors[pos], flat[pos] = layer(x), flat[src]
        elif isinstance(layer, _POINTWISE) or len(in_shape) == 3:
            tensors[pos] = layer(x)
        else:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no fully convolutional form")
    outs = [tensors[i] for i in model._output_idx]
    fcn = Model(new_in, outs if len(outs) > 1 else outs[0], name=name or f"{model.name}_fcn")
    if model.device != "cpu":
        fcn.to(model.device)
    return fcn


def _dense_as_conv(dense, window, x):
    """Dense(units) as Conv2D(units, kernel = the flattened window (C, H, W), or 1x1 on features), sharing the
    weight values: a Dense weight (units, C*H*W) in C, H, W order is a conv weight (units, C, H, W)."""
    units, fan_in = dense.kernel.value.shape
    kernel = window[1:] if window is not None else (1, 1)
    conv = Conv2D(units, kernel, activation=dense.activation, use_bias=dense.bias is not None,
                  name=f"{dense.name}_conv")
    y = conv(x)
    c = fan_in // (kernel[0] * kernel[1])
    conv.kernel.value = dense.kernel.value.reshape(units, c, kernel[0], kernel[1])
    if dense.bias is not None:
        conv.bias.value = dense.bias.value
    return y
