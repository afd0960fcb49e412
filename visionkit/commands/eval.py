"""``visionkit eval``: a classifier's accuracy, per-class precision and recall, and its confusion matrix (printed
and saved as an image) on a dataset's test split."""

from __future__ import annotations

import json
import os

import click

from .common import EXIT_USAGE, fail
from .train import read_data


@click.command(name="eval")
@click.argument("model_arg", metavar="MODEL")
@click.option("--data", "data_spec", required=True, metavar="NAME:PATH", help="A registered dataset and its path.")
@click.option("--split", "split_name", default="test", show_default=True,
              help="Which split (a reader without splits gives all its data).")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Where the confusion matrix image goes [runs/eval/<model>N].")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def eval_command(model_arg, data_spec, split_name, batch_size, out_dir, as_json):
    """Score MODEL (a model file or a pretrained model name) on --data."""
    from .. import registry
    from ..data.transforms import Preprocessing
    from ..io import write_image
    from ..metrics import classification_report
    from ..metrics.plots import confusion_matrix_image
    from ..tasks.runs import next_run_dir
    from ..train.trainer import Trainer
    from ..weights import load_model

    if model_arg in registry.models():
        path = registry.get_model(model_arg).path
    elif os.path.isfile(model_arg):
        path = model_arg
    else:
        fail(f"MODEL {model_arg!r} is neither a model file nor a pretrained model (see `visionkit models`)",
             EXIT_USAGE)
    try:
        model = load_model(path)
    except (OSError, ValueError) as e:
        fail(f"cannot load model {model_arg!r}: {e}")
    data = read_data(data_spec, split_name)
    if data is None:
        fail(f"--data {data_spec!r} has no {split_name!r} split; try --split train", EXIT_USAGE)
    card = (getattr(model, "metadata", None) or {}).get("preprocessing")
    pre = Preprocessing.from_card(card) if card else None
    names = (model.metadata or {}).get("class_names") or data.class_names
    try:
        ev = Trainer(model, progress=False).evaluate(data, batch_size=batch_size, preprocessing=pre)
    except ValueError as e:
        fail(f"model {model_arg!r} does not fit the data: {e}")
    k = ev["scores"].shape[1]
    if len(names) != k:
        names = [str(i) for i in range(k)]
    report = classification_report(data.labels, ev["pred"], names)
    save_dir = out_dir or next_run_dir("eval", os.path.splitext(os.path.basename(path))[0], create=False)
    image_path = os.path.join(save_dir, "confusion_matrix.png")
    write_image(image_path, confusion_matrix_image(report.confusion, names))
    doc = {"model": model_arg, "data": data_spec, "split": split_name, "images": len(data),
           "loss": ev["loss"], **report.to_dict(), "confusion_matrix": report.confusion.tolist(),
           "confusion_matrix_image": image_path}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{model_arg} on {data_spec} ({split_name}, {len(data):,} images): accuracy {report.accuracy:.4f}, "
               f"loss {ev['loss']:.4f}\n")
    click.echo(report.to_text(digits=4))
    click.echo("confusion matrix (rows: true class, columns: predicted)")
    width = max(len(str(int(report.confusion.max()))), 3)
    short = [n[:width] for n in names]
    click.echo(" " * 14 + " ".join(s.rjust(width) for s in short))
    for name, row in zip(names, report.confusion):
        click.echo(f"{name[:13]:<13} " + " ".join(str(int(v)).rjust(width) for v in row))
    click.echo(f"\nconfusion matrix image: {image_path}")
