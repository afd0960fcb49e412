"""``visionkit bench MODEL``: visionkit against onnxruntime, torch and OpenCV DNN on the same weights.

Thin: parse, call ``visionkit.bench.run_bench``, print its header and table (or one JSON document).
"""

from __future__ import annotations

import json

import click

from .common import EXIT_USAGE, fail, parse_chw


def _parse_vs(ctx, param, value):
    from ..bench import PEERS, check_engines

    names = [v for v in (value or "").split(",") if v.strip()]
    try:
        return check_engines(names)
    except ValueError:
        bad = [n.strip() for n in names if n.strip().lower() not in PEERS + ("visionkit",)]
        raise click.BadParameter(f"unknown engine(s) {', '.join(map(repr, bad))}; valid: {', '.join(PEERS)}")


@click.command()
@click.argument("model_arg", metavar="MODEL")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="Images per forward pass.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True)
@click.option("--vs", "engines", default="onnxruntime,torch,opencv", show_default=True, callback=_parse_vs,
              help="Comma-separated peers to compare with (onnxruntime, torch, opencv).")
@click.option("--repeat", default=10, show_default=True, type=click.IntRange(min=1), help="Timed runs per engine.")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0), help="Untimed runs first.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Peers' threads (default: visionkit's numba thread count).")
@click.option("--input", "input_shape", callback=parse_chw, metavar="C,H,W",
              help="Input channels and size (an architecture is built for it).")
@click.option("--profile", is_flag=True,
              help="Also show where visionkit's time goes: per-layer medians, and the total per layer kind.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def bench(model_arg, batch, device, engines, repeat, warmup, threads, input_shape, profile, as_json):
    """Time MODEL (a model file, a pretrained model or an architecture) in visionkit and in the installed peers.

    Same weights, same input, one process; prints the machine (CPU, threads, BLAS, versions), then per engine:
    ms per batch (median, min-max), images/s, GFLOP/s, speed relative to visionkit and the largest output
    difference. Engines not installed are listed as skipped, with the reason. For a fair comparison run it as
    `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE visionkit bench ...`.
    """
    from ..bench import (
        ModelNotFound,
        header_lines,
        resolve_model,
        run_bench,
        table_lines,
    )
    from ..device import resolve_device

    try:
        resolve_device(device)
    except Exception as e:  # noqa: BLE001  (CUDA asked for but not there)
        fail(f"--device {device}: {e}", EXIT_USAGE)
    try:
        model, label, random = resolve_model(model_arg, input_shape=input_shape)
    except ModelNotFound as e:
        fail(e, EXIT_USAGE)
    except (ValueError, TypeError, OSError, KeyError) as e:
        fail(f"cannot load model {model_arg!r}: {e}")
    if random:
        click.echo(f"Note: {model_arg!r} is an architecture without trained weights: random weights (seed 0)",
                   err=True)
    log = (lambda line: click.echo(line, err=True)) if not as_json else None
    shape = None if random else input_shape  # an architecture was already built for --input
    try:
        report = run_bench(model, name=label, batch=batch, device=device, engines=engines, repeat=repeat,
                           warmup=warmup, threads=threads, input_shape=shape, random_weights=random, log=log)
    except ValueError as e:
        fail(e, EXIT_USAGE)
    rows = _profile(model, batch, shape, repeat, warmup) if profile else None
    if as_json:
        doc = report.to_dict()
        if rows is not None:
            doc["profile"] = [vars(r) for r in rows]
        click.echo(json.dumps(doc, indent=2))
        return
    for line in header_lines(report):
        click.echo(line)
    click.echo("")
    for line in table_lines(report):
        click.echo(line)
    if rows is not None:
        from ..profile import profile_lines

        click.echo("")
        click.echo(f"Where visionkit's time goes (batch {batch}, median of {repeat} runs per step; fused "
                   "conv -> BatchNorm -> activation chains count as one step):")
        for line in profile_lines(rows):
            click.echo(line)


def _profile(model, batch, input_shape, repeat, warmup):
    from ..bench import bench_input
    from ..profile import profile_layers

    return profile_layers(model, bench_input(model, batch, input_shape), repeat=repeat, warmup=warmup)
