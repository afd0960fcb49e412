"""What a convolution layer looks for, and what it sees: grids of its filters and of its feature maps.

    from visionkit import visualize as viz
    img = viz.filter_grid(model.get_layer("conv1"), label="conv1")        # H x W x 3 uint8, one tile per filter
    acts = viz.activation_maps(model, "cat.jpg", layer="conv1")           # (pre, post): float32 (C, H, W) each
    pre, post = acts
    panel = viz.activation_grid(pre, label="conv1 pre-activation")        # H x W x 3 uint8 with a caption band

Filters (``filter_grid``)
    A kernel is OIHW (filters, input channels, kh, kw). Three layouts, picked so a grid stays readable:
    - RGB: a layer that reads the model's 3-channel input (or any (O, 3, kh, kw) kernel given as an array) shows
      each filter as one colour tile: channel 0 is red, as the Preprocessor feeds the image's RGB planes in order.
    - filters x channels: otherwise, when filters * channels <= ``max_tiles``, one grey tile per (filter, input
      channel), one row per filter and one column per input channel.
    - mean over channels: when that would exceed ``max_tiles`` tiles (32 filters x 32 channels = 1024 tiles), one
      grey tile per filter holding the mean of its kernel over the input channels (only the first ``max_tiles``
      filters are shown). The caption says so. A depthwise kernel has one channel per filter: one tile each.
    Values map to grey levels symmetrically around zero: 0 is mid-grey (128), -r black, +r white (per channel in
    an RGB tile). By default r is the largest |weight| of the whole layer (``normalize="layer"``): zero is then the
    same grey in every tile, and a weak or dead filter looks weak instead of being stretched into loud noise, so
    filters can be compared with each other. ``normalize="tile"`` uses each tile's own largest |value| (still
    symmetric), for looking at the shape of weak filters. Kernels are enlarged by an integer factor with
    nearest-neighbour sampling (a 3x3 kernel becomes 11 x 11 blocks of 3x3), so each weight stays a sharp square.

Feature maps (``activation_maps`` / ``activation_grid``)
    ``activation_maps`` preprocesses one image with the model's card (``Preprocessor.from_model``), runs the model
    up to the layer (inference mode: dropout off, BatchNorm on its running statistics) and returns the layer's
    output before ("pre") and after ("post") its activation:
    - a layer with a fused activation (``Conv2D(..., activation="relu")``): pre is the layer's linear part
      (convolution + bias), computed by the layer's own forward with the activation switched off on a shallow
      copy (the model is not changed); post is the layer's output.
    - a layer without one, followed by BatchNorm layer(s) and then an Activation layer (conv -> BN -> ReLU, as in
      ResNet): pre is the Activation's input (after BatchNorm) and post its output. ``acts.activation_layer``
      names the Activation layer.
    - an Activation layer: pre is its input, post its output.
    - anything else: pre and post are both the layer's output (``acts.activation`` is None).
    ``activation_grid`` draws at most ``max_maps`` maps on one scale per panel (stated in the caption): a panel
    with negative values in grey symmetric around zero like the filters (0 = mid-grey, +/- its largest |value|
    black/white), a panel of values >= 0 (after a ReLU) from black = 0 to white = its largest value, so the
    half of the grey levels a ReLU cannot reach is not wasted. One scale per panel, not per map, so maps can be
    compared: a map that barely responds stays dark (or grey) instead of being stretched.

Layout of a grid without a caption (``label=None``; handy for tests): tile k sits at row k // cols, column
k % cols, its top-left pixel at (pad + row * (t + pad), pad + col * (t + pad)) where t is the tile side; the gaps
are dark blue-grey ``GAP_COLOR``. With a label, a caption band of ``caption_height(...)`` rows sits on top.
"""

from __future__ import annotations

import copy
import difflib
import math
import os

import cv2
import numpy as np

__all__ = [
    "CONV_TYPES",
    "ActivationMaps",
    "NotConvolutionError",
    "UnknownLayerError",
    "activation_grid",
    "activation_maps",
    "conv_layers",
    "filter_grid",
    "find_layer",
    "layer_kernel",
    "stack_panels",
]

GAP_COLOR = (40, 44, 52)
BAND_COLOR = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.5
_BAND_H = 22


def _conv_types():
    from .layers import Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D

    return (Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose)


CONV_TYPES = _conv_types()


class UnknownLayerError(ValueError):
    """A layer name the model does not have; ``matches`` holds close ones, ``conv_layers`` the convolutions."""

    def __init__(self, model, name):
        names = [layer.name for layer in model.layers]
        self.name = name
        self.matches = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        self.conv_layers = [layer.name for layer in conv_layers(model)]
        hint = f"did you mean {', '.join(self.matches)}? " if self.matches else ""
        super().__init__(f"model {model.name!r} has no layer named {name!r}; {hint}"
                         f"convolution layers: {_name_list(self.conv_layers)}")


class NotConvolutionError(ValueError):
    """A layer that is not a convolution where one is needed."""


def _name_list(names, limit=20):
    if not names:
        return "(none)"
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


def conv_layers(model):
    """The convolution layers of ``model`` (top level of its graph), in graph order."""
    return [layer for layer in model.layers if isinstance(layer, CONV_TYPES)]


def find_layer(model, name=None, conv_only=True):
    """The layer called ``name``, or the first convolution when ``name`` is None.

    Raises UnknownLayerError (close matches and the convolution layers in the message) for a name the model lacks,
    NotConvolutionError for a layer that is not a convolution when ``conv_only``, ValueError for a model without
    any convolution when ``name`` is None."""
    if name is None:
        convs = conv_layers(model)
        if not convs:
            raise NotConvolutionError(f"model {model.name!r} has no convolution layer")
        return convs[0]
    for layer in model.layers:
        if layer.name == name:
            if conv_only and not isinstance(layer, CONV_TYPES):
                raise NotConvolutionError(
                    f"layer {name!r} is a {type(layer).__name__}, not a convolution; convolution layers: "
                    f"{_name_list([c.name for c in conv_layers(model)])}")
            return layer
    raise UnknownLayerError(model, name)


def layer_kernel(layer):
    """The kernel of a convolution layer as a float32 numpy array (filters, in_channels, kh, kw).

    Conv2D: its kernel; DepthwiseConv2D and SeparableConv2D: the depthwise kernel (one input channel per
    filter); Conv2DTranspose (IOHW): its kernel with the first two axes swapped (groups of 1; with groups, each
    group's channels are shown as if they were the only ones)."""
    from . import ops
    from .layers import Conv2DTranspose, DepthwiseConv2D, SeparableConv2D

    if not isinstance(layer, CONV_TYPES):
        raise NotConvolutionError(f"layer {layer.name!r} is a {type(layer).__name__}, not a convolution")
    if isinstance(layer, (DepthwiseConv2D, SeparableConv2D)):
        param = layer.depthwise_kernel
    else:
        param = layer.kernel
    if param.value is None:
        raise ValueError(f"layer {layer.name!r}: its weights are only declared, not loaded")
    k = np.asarray(ops.to_numpy(param.value), dtype=np.float32)
    if isinstance(layer, Conv2DTranspose):
        k = k.transpose(1, 0, 2, 3)
    return k


def _reads_model_input(layer):
    from .input_layer import InputLayer

    nodes = getattr(layer, "_nodes", [])
    return bool(nodes) and all(
        len(n.inbound) == 1 and isinstance(n.inbound[0].node.layer, InputLayer) for n in nodes)


# ---- drawing helpers -----------------------------------------------------------------------------------------
def _to_grey(values, r, signed=True):
    """float array -> uint8. signed: 0 -> 128, -r -> 0, +r -> 255; unsigned: 0 -> 0, r -> 255."""
    r = float(r) if r and np.isfinite(r) and r > 0 else 1.0
    v = np.nan_to_num(np.asarray(values, np.float64)) / r
    g = 127.5 + 127.5 * v if signed else 255.0 * v
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


def _absmax(a):
    a = np.asarray(a)
    return float(np.max(np.abs(a))) if a.size else 0.0


def caption_height(text_lines=1):
    return _BAND_H * text_lines


def _text_width(text):
    (w, _), _ = cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)
    return w


def _with_caption(grid, text):
    """The grid with a white caption band on top; the canvas widens (gap colour) if the text is wider."""
    if not text:
        return grid
    need = _text_width(text) + 12
    h, w = grid.shape[:2]
    if need > w:
        wide = np.empty((h, need, 3), np.uint8)
        wide[:] = GAP_COLOR
        wide[:, :w] = grid
        grid, w = wide, need
    band = np.empty((_BAND_H, w, 3), np.uint8)
    band[:] = BAND_COLOR
    cv2.putText(band, text, (6, _BAND_H - 7), _FONT, _FONT_SCALE, TEXT_COLOR, 1, cv2.LINE_AA)
    return np.concatenate([band, grid], axis=0)


def _layout(tiles, cols, pad):
    """Tiles (n, t_h, t_w, 3) uint8 in a grid of ``cols`` columns, ``pad`` gap pixels around each."""
    n, th, tw = tiles.shape[:3]
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    out = np.empty((pad + rows * (th + pad), pad + cols * (tw + pad), 3), np.uint8)
    out[:] = GAP_COLOR
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        out[y:y + th, x:x + tw] = tiles[k]
    return out


def _square_cols(n):
    return max(1, math.ceil(math.sqrt(n)))


def _upscale(tiles, factor):
    """Nearest-neighbour enlargement of (n, h, w, 3) tiles by an integer factor."""
    if factor <= 1:
        return tiles
    return np.repeat(np.repeat(tiles, factor, axis=1), factor, axis=2)


def _check_pad(pad):
    pad = int(pad)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    return pad


# ---- filters -------------------------------------------------------------------------------------------------
def filter_grid(layer_or_kernel, *, as_rgb=None, tile=32, pad=1, normalize="layer", max_tiles=64, label=None):
    """One tile per filter of a convolution layer (or an OIHW kernel array) -> H x W x 3 uint8 RGB image.

    ``as_rgb``     None: automatic (RGB tiles for a 3-input-channel layer fed by the model's input, or for any
                   (O, 3, kh, kw) array); True forces RGB tiles (needs 3 input channels); False forces grey tiles.
    ``tile``       smallest tile side in pixels: kernels are enlarged by the integer factor ceil(tile / k) with
                   nearest-neighbour sampling (3x3 -> 33 x 33 pixels at the default 32).
    ``pad``        gap pixels around tiles.
    ``normalize``  "layer": grey 128 is 0 and the layer's largest |weight| is black/white (default);
                   "tile": each tile scaled to its own largest |value|.
    ``max_tiles``  at most this many tiles; see the module docstring for the layouts.
    ``label``      with a label, a caption band on top: "<label>: 32 filters 3x3x3, RGB, grey = 0, +/-0.41".
    """
    if normalize not in ("layer", "tile"):
        raise ValueError(f"normalize must be 'layer' or 'tile', got {normalize!r}")
    pad = _check_pad(pad)
    max_tiles = int(max_tiles)
    if max_tiles < 1:
        raise ValueError(f"max_tiles must be >= 1, got {max_tiles}")
    if isinstance(layer_or_kernel, np.ndarray) or not hasattr(layer_or_kernel, "name"):
        kernel = np.asarray(layer_or_kernel, dtype=np.float32)
        if kernel.ndim == 3:
            kernel = kernel[:, None]
        if kernel.ndim != 4:
            raise ValueError(f"a kernel must be (filters, in_channels, kh, kw), got shape {kernel.shape}")
        auto_rgb = kernel.shape[1] == 3
    else:
        kernel = layer_kernel(layer_or_kernel)
        auto_rgb = kernel.shape[1] == 3 and _reads_model_input(layer_or_kernel)
    o, i, kh, kw = kernel.shape
    if as_rgb is None:
        as_rgb = auto_rgb
    if as_rgb and i != 3:
        raise ValueError(f"RGB tiles need 3 input channels, the kernel has {i}")
    r_layer = _absmax(kernel)
    factor = max(1, math.ceil(int(tile) / max(kh, kw)))
    shown = min(o, max_tiles)
    note = ""

    def scale(a):
        return r_layer if normalize == "layer" else _absmax(a)

    if as_rgb:
        tiles = np.stack([_to_grey(kernel[f].transpose(1, 2, 0), scale(kernel[f])) for f in range(shown)])
        cols, mode = _square_cols(shown), "RGB"
    elif i == 1 or o * i <= max_tiles:
        if i == 1:
            flat = kernel[:shown, 0]
            cols, mode = _square_cols(shown), None
        else:
            flat = kernel.reshape(o * i, kh, kw)
            cols, mode = i, "rows = filters, columns = input channels"
        grey = [_to_grey(k, scale(k)) for k in flat]
        tiles = np.stack([np.repeat(g[:, :, None], 3, axis=2) for g in grey])
    else:
        mean = kernel[:shown].mean(axis=1)
        r_mean = _absmax(kernel.mean(axis=1))
        grey = [_to_grey(k, r_mean if normalize == "layer" else _absmax(k)) for k in mean]
        tiles = np.stack([np.repeat(g[:, :, None], 3, axis=2) for g in grey])
        cols, mode = _square_cols(shown), f"mean over {i} input channels"
        r_layer = r_mean
    grid = _layout(_upscale(tiles, factor), cols, pad)
    if label is None:
        return grid
    if shown < o:
        note = f", first {shown} of {o}"
    count = f"{o} filters {kh}x{kw}" + (f"x{i}" if i > 1 else "")
    rng = f"grey = 0, +/-{r_layer:.3g}" if normalize == "layer" else "grey = 0, each tile to its own range"
    parts = [f"{label}: {count}{note}"] + ([mode] if mode else []) + [rng]
    return _with_caption(grid, ", ".join(parts))


# ---- activations ---------------------------------------------------------------------------------------------
class ActivationMaps(tuple):
    """``(pre, post)``: float32 (C, H, W) arrays, with what produced them as attributes.

    ``layer``             the layer asked for
    ``activation``        the activation applied between pre and post (None: pre and post are the same map)
    ``activation_layer``  the separate Activation layer used, when the activation is not fused into ``layer``
    ``pre_layer``         the layer whose output ``pre`` is, when not ``layer`` itself (e.g. the BatchNorm
                          between a convolution and its ReLU); None otherwise
    ``input``             the preprocessed image, float32 (C, H, W), as the model saw it
    """

    def __new__(cls, pre, post, layer, activation, activation_layer=None, pre_layer=None, input=None):
        self = super().__new__(cls, (pre, post))
        self.layer, self.activation, self.activation_layer = layer, activation, activation_layer
        self.pre_layer, self.input = pre_layer, input
        return self

    @property
    def pre(self):
        return self[0]

    @property
    def post(self):
        return self[1]


def _graph_nodes(model):
    return list(getattr(model, "_order", []))


def _node_of(model, layer):
    for node in _graph_nodes(model):
        if node.layer is layer:
            return node
    raise ValueError(f"layer {layer.name!r} is not part of model {model.name!r}'s graph")


def _consumers(model, tensor):
    return [n for n in _graph_nodes(model) if any(t is tensor for t in n.inbound)]


def _following_activation(model, node):
    """The Activation node reached from ``node`` through single-consumer BatchNorm layers, or None."""
    from .layers import Activation, BatchNorm

    current = node
    for _ in range(8):
        nxt = _consumers(model, current.outputs[0])
        if len(nxt) != 1 or nxt[0].multi_input:
            return None
        layer = nxt[0].layer
        if isinstance(layer, Activation):
            return nxt[0] if layer.activation is not None else None
        if not isinstance(layer, BatchNorm):
            return None
        current = nxt[0]
    return None


def _prepare_image(model, image):
    from .io import read_image
    from .tasks.preprocess import Preprocessor

    prep = Preprocessor.from_model(model)
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image, channels=prep.channels)
    return prep([np.asarray(image)])


def activation_maps(model, image, layer=None):
    """The feature maps of ``layer`` (a name or a layer; default: the first convolution) for one image.

    ``image``: an H x W x C uint8 array (RGB or gray, as visionkit.io.read_image returns) or a path. Returns an
    ActivationMaps, i.e. ``(pre, post)`` float32 arrays (C, H, W) of the layer's output before and after its
    activation; see the module docstring for how pre and post are found."""
    from .layers import Activation
    from .model import Model

    if len(getattr(model, "inputs", [])) != 1:
        raise ValueError(f"model {model.name!r}: activation maps need a model with one image input")
    target = find_layer(model, layer, conv_only=False) if not hasattr(layer, "name") else layer
    node = _node_of(model, target)
    out_shape = node.outputs[0].shape
    if len(out_shape) != 4:
        raise ValueError(f"layer {target.name!r} outputs shape {tuple(out_shape[1:])}, not feature maps (C, H, W)")
    x = _prepare_image(model, image)
    activation, act_layer, pre_layer = getattr(target, "activation", None), None, None
    if isinstance(target, Activation):
        pre_t, post_t = node.inbound[0], node.outputs[0]
        act_layer = target.name if activation is not None else None
        pre_layer = pre_t.node.layer.name
    elif activation is not None and isinstance(target, CONV_TYPES):
        # the same layer with its activation switched off: a shallow copy sharing the parameters
        linear = copy.copy(target)
        linear.activation = None
        linear._nodes = []
        linear.name = f"{target.name}/pre-activation"
        pre_t, post_t = linear(node.inbound[0]), node.outputs[0]
    elif activation is not None:
        raise ValueError(f"layer {target.name!r} ({type(target).__name__}): cannot split off its fused activation")
    else:
        act_node = _following_activation(model, node)
        if act_node is not None:
            pre_t, post_t = act_node.inbound[0], act_node.outputs[0]
            activation, act_layer = act_node.layer.activation, act_node.layer.name
            if act_node.inbound[0].node is not node:
                pre_layer = act_node.inbound[0].node.layer.name
        else:
            pre_t = post_t = node.outputs[0]
    probe = Model(model.inputs[0], [pre_t, post_t], name=f"{model.name}/probe")
    probe.device = getattr(model, "device", "cpu")
    pre, post = probe.predict(x)
    return ActivationMaps(np.asarray(pre[0], np.float32), np.asarray(post[0], np.float32), target.name,
                          activation, act_layer, pre_layer, x[0])


def _map_tile_size(h, w, tile):
    """(height, width) of a map's tile: ``tile`` = the target longer side (None: auto, 48..160 px)."""
    longest = max(h, w)
    if tile is None:
        if longest < 48:
            f = math.ceil(48 / longest)
            return h * f, w * f
        target = min(longest, 160)
    else:
        target = int(tile)
        if target < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
    if longest < target and target % longest == 0:
        return h * (target // longest), w * (target // longest)
    s = target / longest
    return max(1, round(h * s)), max(1, round(w * s))


def activation_grid(maps, label=None, *, max_maps=64, tile=None, pad=1, vrange=None, signed=None):
    """Feature maps (C, H, W) as a grid of grey tiles -> H x W x 3 uint8 RGB image.

    ``label``     caption prefix, e.g. "conv2d_1 pre-activation"; the caption adds the map count and the range:
                  "conv2d_1 pre-activation, 32 maps, grey = 0, +/-2.4". None: no caption band.
    ``max_maps``  at most this many tiles (the first ones; the caption says "64 of 256 maps").
    ``tile``      tile side in pixels for the longer map side (None: small maps enlarged by an integer factor to
                  >= 48 px with nearest-neighbour sampling, large ones shrunk to 160 px by area averaging).
    ``vrange``    the |value| shown as white (and, signed, -vrange as black); None: the largest |value| of the
                  maps drawn. Give it to put two panels on one scale.
    ``signed``    True: 0 is mid-grey, -r black, +r white (for maps with negative values: pre-activations);
                  False: 0 is black, r white (for maps >= 0, e.g. after a ReLU: all 256 levels for what is
                  there); None (default): signed exactly when some drawn value is negative.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or 0 in maps.shape:
        raise ValueError(f"maps must be (C, H, W), got shape {maps.shape}")
    pad = _check_pad(pad)
    max_maps = int(max_maps)
    if max_maps < 1:
        raise ValueError(f"max_maps must be >= 1, got {max_maps}")
    if signed not in (None, True, False):
        raise ValueError(f"signed must be None, True or False, got {signed!r}")
    c, h, w = maps.shape
    shown = maps[:max_maps]
    if signed is None:
        signed = bool(np.nanmin(shown) < 0)
    r = _absmax(shown) if vrange is None else float(vrange)
    th, tw = _map_tile_size(h, w, tile)
    grey = _to_grey(shown, r, signed)
    if (th, tw) != (h, w):
        if th % h == 0 and tw % w == 0 and th // h == tw // w:
            grey = np.repeat(np.repeat(grey, th // h, axis=1), tw // w, axis=2)
        else:
            interp = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_NEAREST
            grey = np.stack([cv2.resize(g, (tw, th), interpolation=interp) for g in grey])
    tiles = np.repeat(grey[..., None], 3, axis=3)
    grid = _layout(tiles, _square_cols(len(shown)), pad)
    if label is None:
        return grid
    count = f"{c} maps" if len(shown) == c else f"{len(shown)} of {c} maps"
    scale = f"grey = 0, +/-{r:.3g}" if signed else f"black = 0, white = {r:.3g}"
    return _with_caption(grid, f"{label}, {count} {h}x{w}, {scale}")


def stack_panels(panels, gap=4):
    """Images (H x W x 3 uint8) one above the other, left-aligned, ``gap`` rows of the gap colour between."""
    width = max(p.shape[1] for p in panels)
    parts = []
    for k, p in enumerate(panels):
        if k:
            g = np.empty((gap, width, 3), np.uint8)
            g[:] = GAP_COLOR
            parts.append(g)
        row = np.empty((p.shape[0], width, 3), np.uint8)
        row[:] = GAP_COLOR
        row[:, :p.shape[1]] = p
        parts.append(row)
    return np.concatenate(parts, axis=0)
