"""``visionkit export MODEL OUT.onnx``: write a model file, a pretrained model or an architecture as ONNX.

Thin: resolve the model (``visionkit.bench.resolve_model``), call ``visionkit.onnx.export_onnx``, print the path.
"""

from __future__ import annotations

import click

from .common import EXIT_USAGE, fail, parse_chw


@click.command()
@click.argument("model_arg", metavar="MODEL")
@click.argument("out", metavar="OUT.onnx", type=click.Path(dir_okay=False))
@click.option("--opset", default=17, show_default=True, type=click.IntRange(min=1), help="ONNX opset version.")
@click.option("--input", "input_shape", callback=parse_chw, metavar="C,H,W",
              help="Input channels and size (an architecture is built for it; a model file's open sizes are fixed).")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Fix the batch size (default: dynamic).")
def export(model_arg, out, opset, input_shape, batch):
    """Export MODEL (a model file, a pretrained model or an architecture name) to OUT.onnx.

    The batch dimension stays dynamic ("N") unless --batch fixes it. An architecture without trained weights is
    exported with random weights (seed 0), and this is said on stderr.
    """
    from ..bench import ModelNotFound, resolve_model

    try:
        from ..onnx.export import _import_onnx

        _import_onnx()
    except ImportError as e:
        fail(e)
    try:
        model, label, random = resolve_model(model_arg, input_shape=input_shape)
    except ModelNotFound as e:
        fail(e, EXIT_USAGE)
    except (ValueError, TypeError, OSError, KeyError) as e:
        fail(f"cannot load model {model_arg!r}: {e}")
    if random:
        click.echo(f"Note: {model_arg!r} is an architecture without trained weights: exporting random weights "
                   f"(seed 0)", err=True)
    from ..onnx import export_onnx

    try:
        export_onnx(model, out, opset=opset, input_shape=None if random else input_shape, batch=batch)
    except NotImplementedError as e:
        fail(e)
    except ValueError as e:
        fail(e, EXIT_USAGE)
    except OSError as e:
        fail(f"cannot write {out}: {e}")
    click.echo(f"Saved {label} to {out} (opset {opset}, batch {batch if batch else 'dynamic'})")
