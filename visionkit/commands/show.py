"""``visionkit show filters|activations``: pictures of what a convolution layer looks for and what it sees.

Thin: resolve the model, call ``visionkit.visualize``, save the PNG atomically, print its path.
"""

from __future__ import annotations

import os
import re

import click

from .common import EXIT_USAGE, fail

RANDOM_NOTE = "random weights (architecture without training)"


def _load_model(model_arg):
    """(model, stem, random) for MODEL: a model file, a registered pretrained model, or an architecture (built
    with random weights, seed 0)."""
    from .. import registry
    from ..weights import load_model

    try:
        ref = registry.locate_model(model_arg)
    except registry.DuplicateNameError as e:
        fail(e)
    except registry.WeightsMissing as e:
        fail(e)
    except registry.ModelNotFound as e:
        fail(e, EXIT_USAGE)
    if ref.kind == "architecture":
        try:
            return ref.spec.build(seed=0), ref.label, True
        except Exception as e:  # noqa: BLE001  (a plugin's builder failing: one line, not a traceback)
            fail(f"building {model_arg!r} (plugin {ref.spec.plugin!r}) failed: {type(e).__name__}: {e}")
    try:
        return load_model(ref.path), ref.label, False
    except (ValueError, TypeError, OSError, KeyError) as e:
        fail(f"cannot load model {model_arg!r}: {e}")


def _find_layer(model, name, conv_only):
    from ..visualize import NotConvolutionError, UnknownLayerError, find_layer

    try:
        return find_layer(model, name, conv_only=conv_only)
    except (UnknownLayerError, NotConvolutionError) as e:
        fail(e, EXIT_USAGE)


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer"


def _out_path(out, stem, layer, kind):
    if out:
        return out
    return os.path.join("runs", "show", f"{_safe(stem)}_{_safe(layer)}_{kind}.png")


def _save(path, image):
    from ..io import ImageError, write_image

    try:
        write_image(path, image)
    except (ImageError, OSError) as e:
        fail(f"cannot save {path}: {e}")
    click.echo(path)


@click.group(name="show", context_settings={"help_option_names": ["-h", "--help"]})
def show():
    """Show a model's convolution filters, or its feature maps for one image, as a PNG grid."""


_max_maps = click.option("--max-maps", type=click.IntRange(min=1), default=64, show_default=True,
                         help="At most this many tiles per panel.")
_out = click.option("--out", type=click.Path(dir_okay=False), metavar="FILE.png",
                    help="Where to save (default runs/show/<model>_<layer>_<kind>.png).")
_layer = click.option("--layer", metavar="NAME", help="A layer name (default: the first convolution).")


@show.command()
@click.argument("model_arg", metavar="MODEL")
@_layer
@_out
@_max_maps
@click.option("--normalize", type=click.Choice(["layer", "tile"]), default="layer", show_default=True,
              help="Grey scale: the layer's largest |weight|, or each tile's own.")
def filters(model_arg, layer, out, max_maps, normalize):
    """Draw the filters of a convolution layer of MODEL (a model file, pretrained model or architecture).

    One tile per filter: RGB tiles for a first layer reading an RGB image, else grey tiles (0 = mid-grey), one
    per (filter, input channel), or each filter's mean over its input channels when that would be too many.
    """
    from ..visualize import filter_grid

    model, stem, random = _load_model(model_arg)
    if random:
        click.echo(f"Note: {RANDOM_NOTE}", err=True)
    target = _find_layer(model, layer, conv_only=True)
    label = target.name + (" (random weights)" if random else "")
    try:
        image = filter_grid(target, normalize=normalize, max_tiles=max_maps, label=label)
    except ValueError as e:
        fail(e)
    _save(_out_path(out, stem, target.name, "filters"), image)


@show.command()
@click.argument("model_arg", metavar="MODEL")
@click.argument("image_path", metavar="IMAGE")
@_layer
@_out
@_max_maps
def activations(model_arg, image_path, layer, out, max_maps):
    """Draw the feature maps of a layer of MODEL for IMAGE, before and after its activation.

    The image is preprocessed with the model's card; two panels, pre-activation above post-activation, each
    map in grey with 0 at mid-grey, scaled to the panel's largest |value| (given in the caption).
    """
    from ..io import ImageError
    from ..visualize import activation_grid, activation_maps, stack_panels

    model, stem, random = _load_model(model_arg)
    if random:
        click.echo(f"Note: {RANDOM_NOTE}; the maps show what untrained filters respond to", err=True)
    target = _find_layer(model, layer, conv_only=False)
    try:
        acts = activation_maps(model, image_path, target)
    except ImageError as e:
        fail(e)
    except (ValueError, TypeError) as e:
        fail(f"layer {target.name!r}: {e}")
    pre, post = acts
    tag = " (random weights)" if random else ""
    if acts.activation is None:
        panels = [activation_grid(post, f"{target.name} output (no activation){tag}", max_maps=max_maps)]
    else:
        src = f" ({acts.pre_layer} output)" if acts.pre_layer else ""
        separate = acts.activation_layer and acts.activation_layer != target.name
        via = f", layer {acts.activation_layer}" if separate else ""
        panels = [
            activation_grid(pre, f"{target.name} pre-activation{src}{tag}", max_maps=max_maps),
            activation_grid(post, f"{target.name} post-activation ({acts.activation}{via}){tag}", max_maps=max_maps),
        ]
    _save(_out_path(out, stem, target.name, "activations"), stack_panels(panels))
