"""``visionkit eval``: a model scored on a dataset's test split, by the task its card names.

    classify   accuracy, per-class precision / recall / f1, the confusion matrix (printed and saved as a PNG)
    detect     AP at IoU 0.5 and COCO mAP@[.5:.95], per class; precision and recall; precision-recall curves PNG
    segment    pixel accuracy, per-class IoU, mean IoU, frequency-weighted IoU; the confusion matrix PNG
"""

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
@click.option("--conf", type=click.FloatRange(0, 1), default=None, help="detect: the score threshold.")
@click.option("--iou", type=click.FloatRange(0, 1), default=None, help="detect: the NMS IoU threshold.")
@click.option("--min-size", type=click.FloatRange(min=1), default=None, help="detect: smallest object, pixels.")
@click.option("--max-size", type=click.FloatRange(min=1), default=None, help="detect: largest object, pixels.")
@click.option("--agnostic-nms/--no-agnostic-nms", "agnostic", default=None,
              help="detect: suppress boxes across classes.")
@click.option("--votes", type=click.IntRange(min=0), default=None,
              help="detect, sliding window: weigh box scores by the windows agreeing (about N keep 63%; 0: off).")
@click.option("--merge/--no-merge", default=None,
              help="detect, sliding window: move kept boxes to the score-weighted mean of their windows.")
@click.option("--contain", type=click.FloatRange(0, 1), default=None,
              help="detect, sliding window: also drop a box overlapping a better one by more than this fraction "
                   "of the smaller box (0: any overlap, 1: off).")
def eval_command(model_arg, data_spec, split_name, batch_size, out_dir, as_json, conf, iou, min_size, max_size,
                 agnostic, votes, merge, contain):
    """Score MODEL (a model file or a pretrained model name) on --data, by the task its card names.

    The detect options default to the model card's (`visionkit run --help` says more); one given overrides it.
    """
    from .. import registry
    from ..data.transforms import Preprocessing
    from ..io import write_image
    from ..metrics import classification_report
    from ..metrics.plots import confusion_matrix_image
    from ..tasks.runs import next_run_dir
    from ..train.trainer import Trainer
    from ..weights import load_model

    try:
        path = registry.locate_model(model_arg, kinds=("file", "pretrained")).path
    except registry.WeightsMissing as e:
        fail(e)
    except registry.ModelNotFound as e:
        fail(e, EXIT_USAGE)
    try:
        model = load_model(path)
    except (OSError, ValueError) as e:
        fail(f"cannot load model {model_arg!r}: {e}")
    data = read_data(data_spec, split_name)
    if data is None:
        fail(f"--data {data_spec!r} has no {split_name!r} split; try --split train", EXIT_USAGE)
    task = (getattr(model, "metadata", None) or {}).get("task", "classify")
    save_dir = out_dir or next_run_dir("eval", os.path.splitext(os.path.basename(path))[0], create=False)
    if task in ("detect", "segment"):
        given = dict(conf=conf, iou=iou, min_size=min_size, max_size=max_size, agnostic=agnostic, votes=votes,
                     merge=merge, contain=contain)
        options = {k: v for k, v in given.items() if v is not None}  # False is kept: it overrides a card's true
        _eval_dense(task, model, model_arg, data, data_spec, split_name, save_dir, options, as_json)
        return
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


def _eval_dense(task, model, model_arg, data, data_spec, split_name, save_dir, options, as_json):
    """detect / segment: run the registered task on every image, then score it."""
    from .. import registry
    from ..io import write_image
    from ..metrics.evaluate import evaluate_detector, evaluate_segmenter
    from ..metrics.plots import confusion_matrix_image, precision_recall_image
    from ..progress import Progress

    runner = registry.get_task(task).task
    bar = Progress(total=len(data), desc=f"{task} {len(data)} images", unit="img")
    head = f"{model_arg} on {data_spec} ({split_name}, {len(data):,} images)"
    if task == "detect":
        if not hasattr(data, "to_ground_truth"):
            fail(f"--data {data_spec!r} holds no boxes: a detector needs a detection dataset", EXIT_USAGE)
        r = evaluate_detector(lambda img: runner.run(model, [img], **options)[0].boxes, data, progress=bar)
        bar.close()
        image_path = os.path.join(save_dir, "precision_recall.png")
        write_image(image_path, precision_recall_image(r["voc"]))
        doc = {k: v for k, v in r.items() if k not in ("voc", "coco")}
        if not as_json:
            click.echo(f"{head}: AP@0.5 {_f(r['map50'])}, mAP@[.5:.95] {_f(r['map'])}, precision "
                       f"{r['precision']:.4f}, recall {r['recall']:.4f} ({r['detections']} boxes found, "
                       f"{r['ground_truth']} true)\n")
            click.echo(f"{'class':<14}{'AP@0.5':>9}{'AP@.5:.95':>11}{'objects':>9}")
            for name, row in r["per_class"].items():
                click.echo(f"{name[:13]:<14}{_f(row['ap50']):>9}{_f(row['ap']):>11}{row['truth']:>9}")
    else:
        if data.labels.ndim != 3:
            fail(f"--data {data_spec!r} holds no masks: a segmenter needs a segmentation dataset", EXIT_USAGE)
        k = len(data.class_names)
        r = evaluate_segmenter(lambda img: runner.run(model, [img], **options)[0].mask, data, k, progress=bar)
        bar.close()
        image_path = os.path.join(save_dir, "confusion_matrix.png")
        write_image(image_path, confusion_matrix_image(r["confusion"], data.class_names))
        doc = dict(r, confusion=r["confusion"].tolist())
        if not as_json:
            click.echo(f"{head}: pixel accuracy {_f(r['pixel_accuracy'])}, mean IoU {_f(r['mean_iou'])}, "
                       f"frequency-weighted IoU {_f(r['frequency_weighted_iou'])}\n")
            click.echo(f"{'class':<14}{'IoU':>9}")
            for name, v in r["per_class_iou"].items():
                click.echo(f"{name[:13]:<14}{_f(v):>9}")
    doc.update(model=model_arg, data=data_spec, split=split_name, task=task, image=image_path)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(f"\nimage: {image_path}")


def _f(v):
    return "-" if v is None else f"{v:.4f}"
