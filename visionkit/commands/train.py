"""``visionkit train`` and the data argument every training command shares (``--data NAME:PATH``).

Thin: read the data through a registered dataset reader, build or load the model, hand both to
``visionkit.train.trainer.Trainer``, and record in the model file how it was made.
"""

from __future__ import annotations

import inspect
import os
import shlex
import sys
import time

import click

from .common import EXIT_INTERRUPTED, EXIT_USAGE, fail


def read_data(spec, split, required=True):
    """``NAME[:PATH]`` -> the registered reader's Dataset for ``split`` ("train" / "test"). A reader without
    splits gives its whole data for "train" and None for any other. An unreadable split fails the command when
    ``required``, else gives None (with a note)."""
    from .. import registry

    name, _, path = spec.partition(":")
    try:
        reader = registry.get_dataset(name).reader
    except registry.UnknownNameError as e:
        fail(f"--data {spec!r}: {e}", EXIT_USAGE)
    params = inspect.signature(reader).parameters
    kwargs = {"path": path} if path else {}
    if "split" in params:
        kwargs["split"] = split
    elif split != "train":
        return None
    try:
        return reader(**kwargs)
    except (OSError, ValueError) as e:
        if required:
            fail(f"--data {spec!r}: {e}")
        click.echo(f"note: no {split} split: {e}", err=True)
        return None


def _command_line():
    return "visionkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _build(arch, train, seed):
    from .. import registry

    if os.path.isfile(arch):
        from ..weights import load_model

        return load_model(arch), None
    try:
        spec = registry.get_architecture(arch)
    except registry.UnknownNameError as e:
        fail(e, EXIT_USAGE)
    n, h, w, c = train.images.shape
    return spec.build(num_classes=train.num_classes, in_channels=c, input_size=(h, w), seed=seed), spec.name


@click.command()
@click.argument("arch", metavar="ARCH")
@click.option("--data", "data_spec", required=True, metavar="NAME:PATH",
              help="A registered dataset and where it is, e.g. fashion-mnist:/usr/share/datasets/fashion-mnist.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0))
@click.option("--optimizer", default="adam", show_default=True,
              type=click.Choice(["adam", "adamw", "sgd", "rmsprop"]))
@click.option("--weight-decay", default=0.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--schedule", default=None, help="Learning-rate schedule: step:N[:gamma], cosine, plateau[:patience].")
@click.option("--clip-norm", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Clip the global gradient norm.")
@click.option("--augment", default=None, metavar="OPS", help="On-the-fly augmentation, e.g. flip,shift,rotate=10.")
@click.option("--normalize", is_flag=True, help="Standardise with the training set's per-channel mean and std.")
@click.option("--val-split", default=0.1, show_default=True, type=click.FloatRange(0, 0.9),
              help="Fraction of the training data held out for validation (stratified).")
@click.option("--test-split", default=0.0, show_default=True, type=click.FloatRange(0, 0.5),
              help="For data without a test split: a fraction held out (stratified, never trained on or validated "
                   "with) to report the test accuracy on.")
@click.option("--patience", default=None, type=click.IntRange(min=1), help="Early stopping after N bad epochs.")
@click.option("--monitor", default="val_accuracy", show_default=True,
              type=click.Choice(["val_accuracy", "val_loss", "train_loss", "train_accuracy"]))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--out", "out", default=None, metavar="FILE.vk", help="Where the best model goes [ARCH.vk].")
@click.option("--resume", default=None, metavar="CHECKPOINT", help="Go on from a <stem>.last.vk checkpoint.")
@click.option("--freeze-backbone", is_flag=True,
              help="With a model file as ARCH: train only a new head, then --fine-tune-epochs with all layers.")
@click.option("--fine-tune-epochs", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--fine-tune-lr", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Learning rate of the fine-tuning epochs [lr / 10].")
@click.option("--test/--no-test", default=True, show_default=True,
              help="Score the best model on the dataset's test split and record it in the file.")
def train(arch, data_spec, epochs, batch_size, lr, optimizer, weight_decay, schedule, clip_norm, augment, normalize,
          val_split, test_split, patience, monitor, seed, device, out, resume, freeze_backbone, fine_tune_epochs,
          fine_tune_lr, test):
    """Train ARCH (a registered architecture, or a model file to go on from / transfer) on --data.

    Writes the best epoch's model to --out (with its preprocessing card, class names, the exact command, data,
    seed, epochs, time and test accuracy), the last epoch's checkpoint to <stem>.last.vk (resume it with
    --resume), and the history as <stem>.history.csv/.json/.png. Ctrl-C stops after writing nothing half:
    the last finished epoch's files stay and --resume goes on from there.
    """
    try:
        _train(arch, data_spec, epochs, batch_size, lr, optimizer, weight_decay, schedule, clip_norm, augment,
               normalize, val_split, test_split, patience, monitor, seed, device, out, resume, freeze_backbone,
               fine_tune_epochs, fine_tune_lr, test)
    except KeyboardInterrupt:
        click.echo("Interrupted; the last finished epoch is saved (go on with --resume <stem>.last.vk).", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _train(arch, data_spec, epochs, batch_size, lr, optimizer, weight_decay, schedule, clip_norm, augment,
           normalize, val_split, test_split, patience, monitor, seed, device, out, resume, freeze_backbone,
           fine_tune_epochs, fine_tune_lr, test):
    from ..data import Augment, split
    from ..train.trainer import Trainer
    from ..train.transfer import freeze_all_but_head, replace_head

    started = time.time()
    data = read_data(data_spec, "train")
    click.echo(f"data: {data.describe() if hasattr(data, 'describe') else len(data)}", err=True)
    held_out = None
    if test_split > 0:  # carved first, with its own seed, so a resumed or re-run training sees the same parts
        data, held_out = split(data, [1 - test_split, test_split], seed=seed + 1_000_003, stratify=True,
                               names=[f"{data.name} (train part)", f"{data.name} (held-out test part)"])
    parts = split(data, [1 - val_split, val_split], seed=seed, stratify=True) if val_split > 0 else [data, None]
    train_set, val_set = parts[0], parts[1]
    try:
        aug = Augment(augment) if augment else None
    except ValueError as e:
        fail(f"--augment: {e}", EXIT_USAGE)
    arch_name = None
    if resume:
        trainer = Trainer.from_checkpoint(resume)
        model = trainer.model
    else:
        model, arch_name = _build(arch, train_set, seed)
        if arch_name is None and freeze_backbone:  # transfer learning from a model file
            model = replace_head(model, train_set.num_classes, seed=seed)
            freeze_all_but_head(model)
        trainer = Trainer(model, optimizer=optimizer, lr=lr, weight_decay=weight_decay, schedule=schedule,
                          clip_norm=clip_norm, seed=seed)
    if device != "cpu":
        from ..device import resolve_device

        model.to(resolve_device(device))
    pre = trainer.preprocessing_for(train_set)
    if normalize:
        pre.fit(train_set)
    out = out or f"{arch_name or os.path.splitext(os.path.basename(arch))[0]}.vk"
    meta = {"training": {"command": _command_line(), "data": data_spec, "architecture": arch_name or arch}}
    fit = {"batch_size": batch_size, "augment": aug, "preprocessing": pre, "patience": patience,
           "monitor": monitor, "out": out, "metadata": meta, "log": lambda line: click.echo(line, err=True)}
    try:
        trainer.fit(train_set, val_set, epochs=epochs, **fit)
        if freeze_backbone and fine_tune_epochs:
            for layer in model.layers:
                layer.trainable = True
            tuned = Trainer(model, optimizer=trainer.optimizer_name, lr=fine_tune_lr or lr / 10,
                            weight_decay=weight_decay, seed=seed)
            tuned.epoch, tuned.history, tuned.best = trainer.epoch, trainer.history, trainer.best
            tuned.fit(train_set, val_set, epochs=trainer.epoch + fine_tune_epochs, **fit)
    except FloatingPointError as e:
        fail(e)
    seconds = time.time() - started
    _finish(out, data_spec, test, seconds, (tuned if freeze_backbone and fine_tune_epochs else trainer).history,
            held_out, test_split)


def _finish(out, data_spec, test, seconds, history, held_out=None, test_split=0.0):
    """Add the wall time and the test split's score to the best model's card, and say where everything is."""
    from ..train.trainer import Trainer
    from ..weights import load_model

    model = load_model(out)
    meta = dict(model.metadata)
    # the best epoch's file was written mid-run: record the whole run
    meta["training"] = dict(meta.get("training") or {}, seconds=round(seconds, 1), epochs=len(history),
                            history=history.rows)
    test_set, what = None, f"{data_spec} (test split)"
    if test and held_out is not None:
        test_set, what = held_out, f"{data_spec} ({test_split:g} held out, stratified)"
    elif test:
        test_set = read_data(data_spec, "test", required=False)
    if test_set is not None:
        from ..data.transforms import Preprocessing

        pre = Preprocessing.from_card(meta["preprocessing"])
        ev = Trainer(model, progress=False).evaluate(test_set, preprocessing=pre)
        meta["evaluation"] = {"data": what, "images": len(test_set),
                              "accuracy": round(float(ev["accuracy"]), 6), "loss": round(float(ev["loss"]), 6)}
        click.echo(f"test accuracy {ev['accuracy']:.4f} on {len(test_set):,} images", err=True)
    model.save(out, metadata=meta)
    best = meta["training"].get("best_epoch")
    click.echo(f"best epoch {best}: saved to {out}; checkpoint {os.path.splitext(out)[0]}.last.vk; "
               f"{seconds:.0f} s", err=True)

