"""The training loop: epochs over batches, validation, early stopping, the best weights kept, exact resume.

    trainer = Trainer(model, optimizer="adam", lr=1e-3, seed=0)
    history = trainer.fit(train, val, epochs=20, batch_size=128, augment=Augment("flip,shift"), patience=5,
                          out="fashion.vk")
    trainer = Trainer.from_checkpoint("fashion.last.vk")      # after an interruption: the same run goes on
    trainer.fit(train, val, epochs=20, batch_size=128, augment=..., patience=5, out="fashion.vk")

``train`` and ``val`` are ``visionkit.data`` Datasets (uint8 images). Each epoch: the loader's batches (shuffled
per seed and epoch, augmented, preprocessed with the model's card) go through ``model(x, training=True)`` (dropout
on, BatchNorm on batch statistics), the loss's gradient through ``model.backward``, then the optimizer steps; the
validation set is scored with ``model.predict`` (inference mode). A progress bar shows loss, accuracy, images/s
and the ETA.

Files, written atomically after every epoch when ``out`` is given:
    out                  the best epoch's model (by ``monitor``) with its card: preprocessing, class names, how it
                         was made (``metadata["training"]``): what ``visionkit run`` and ``eval`` take
    <stem>.last.vk       the last epoch's checkpoint: the model plus optimizer slots, schedule, history, the epoch,
                         the early-stopping counters and every random state: ``Trainer.from_checkpoint`` goes on
                         from it and ends with bitwise the same weights as a run that was never interrupted
    <stem>.history.csv / .json / .png    loss and accuracy per epoch, and their curves

Random states: the batch order and augmentation derive from (seed, epoch, batch) alone; Dropout layers without a
seed get one derived from the trainer's seed, and their call counters are checkpointed.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import time

import numpy as np

from .. import ops
from ..layers import Dropout
from .losses import PixelCrossEntropy, SoftmaxCrossEntropy, WindowDetectionLoss, accuracy
from .optim import SGD, Adam, AdamW, RMSprop, clip_grad_norm
from .schedules import CosineAnnealingLR, ReduceLROnPlateau, StepLR

OPTIMIZERS = {"adam": Adam, "adamw": AdamW, "sgd": SGD, "rmsprop": RMSprop}
MONITORS = {"val_accuracy": "max", "val_loss": "min", "train_loss": "min", "train_accuracy": "max"}


GEOMETRIC_AUGMENTATIONS = {"flip", "vflip", "crop", "shift", "rotate", "scale"}


def ends_in_softmax(model):
    """True when the model's (first) output is a softmax: its loss then takes probabilities, not logits."""
    return getattr(model.outputs[0].node.layer, "activation", None) == "softmax"


def make_optimizer(name, params, lr, weight_decay=0.0, momentum=0.9):
    name = name.lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    kwargs = {"lr": lr, "weight_decay": weight_decay}
    if name in ("sgd", "rmsprop"):
        kwargs["momentum"] = momentum
    return OPTIMIZERS[name](params, **kwargs)


def make_schedule(spec, optimizer, epochs):
    """"step:N[:gamma]", "cosine", "plateau[:patience[:factor]]" or None."""
    if not spec:
        return None
    kind, *args = str(spec).split(":")
    try:
        if kind == "step":
            return StepLR(optimizer, int(args[0]) if args else 10, float(args[1]) if len(args) > 1 else 0.1)
        if kind == "cosine":
            return CosineAnnealingLR(optimizer, max(1, int(epochs)))
        if kind == "plateau":
            return ReduceLROnPlateau(optimizer, mode="min", patience=int(args[0]) if args else 3,
                                     factor=float(args[1]) if len(args) > 1 else 0.1)
    except (ValueError, IndexError):
        pass
    raise ValueError(f"learning-rate schedule {spec!r}: expected step:N[:gamma], cosine or plateau[:patience"
                     f"[:factor]]")


class History:
    """One dict per epoch: epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr, seconds."""

    def __init__(self, rows=None):
        self.rows = [dict(r) for r in rows or []]

    def append(self, row):
        self.rows.append(dict(row))

    def __len__(self):
        return len(self.rows)

    def series(self):
        keys = [k for k in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr")
                if any(k in r for r in self.rows)]
        return {k: [r.get(k, float("nan")) for r in self.rows] for k in keys}

    def to_csv(self):
        buf = _io.StringIO()
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        return buf.getvalue()

    def save(self, stem):
        """<stem>.history.csv, .history.json and .history.png (the curves), each written atomically."""
        from ..io import write_bytes_atomically, write_image

        write_bytes_atomically(stem + ".history.csv", self.to_csv().encode())
        write_bytes_atomically(stem + ".history.json", json.dumps(self.rows, indent=1).encode())
        try:
            from ..metrics.plots import training_curves_image
        except ImportError:  # the plots module is optional for the loop itself
            return
        write_image(stem + ".history.png", training_curves_image(self.series()))


class Trainer:
    """Trains a classifier (see the module docstring). ``optimizer``: a name (adam, adamw, sgd, rmsprop) or an
    Optimizer; ``schedule``: see ``make_schedule``, or a scheduler; ``clip_norm``: clip the global gradient norm."""

    def __init__(self, model, *, optimizer="adam", lr=1e-3, loss=None, weight_decay=0.0, momentum=0.9,
                 schedule=None, clip_norm=None, seed=0, progress=True):
        self.model = model
        self.seed = int(seed)
        self.loss = loss  # None: chosen from the data at the first fit / evaluate (see loss_for)
        if isinstance(optimizer, str):
            self.optimizer_name = optimizer.lower()
            self.optimizer = make_optimizer(optimizer, model.parameters(), lr, weight_decay, momentum)
        else:
            self.optimizer_name, self.optimizer = type(optimizer).__name__.lower(), optimizer
        self.schedule_spec = schedule if isinstance(schedule, str) else None
        self._schedule_arg = schedule
        self.schedule = None
        self.clip_norm = clip_norm
        self.progress = progress
        self.config = {"optimizer": self.optimizer_name, "lr": float(lr), "weight_decay": float(weight_decay),
                       "momentum": float(momentum), "schedule": self.schedule_spec, "clip_norm": clip_norm,
                       "seed": self.seed}
        self.epoch = 0                      # epochs completed
        self.history = History()
        self.best = {"score": None, "epoch": None}
        self.bad_epochs = 0
        self.stopped_early = False
        self._seed_dropouts()

    # ---- randomness ---------------------------------------------------------------------------------------
    def _dropouts(self):
        return [layer for layer in self.model.layers if isinstance(layer, Dropout)]

    def _seed_dropouts(self):
        for i, layer in enumerate(self._dropouts()):
            if layer.seed is None:
                layer.seed = int(np.random.SeedSequence([self.seed, 7919, i]).generate_state(1)[0] & 0x7FFFFFFF)

    # ---- data ---------------------------------------------------------------------------------------------
    def loss_for(self, dataset):
        """The loss a dataset asks for: softmax cross-entropy for class labels, per-pixel cross-entropy (255
        ignored) for masks, and for labels with box targets on a two-output model the window detector's loss."""
        if self.loss is None:
            logits = not ends_in_softmax(self.model)
            if getattr(dataset, "targets", None) is not None and len(self.model.outputs) == 2:
                names = [n.lower() for n in dataset.class_names]
                bg = names.index("background") if "background" in names else len(names) - 1
                self.loss = WindowDetectionLoss(bg, from_logits=logits)
            elif dataset.labels.ndim == 3:
                self.loss = PixelCrossEntropy(ignore_index=255)
            else:
                self.loss = SoftmaxCrossEntropy(from_logits=logits)
        return self.loss

    def task_of(self, dataset):
        if dataset.labels.ndim == 3:
            return "segment"
        return "detect" if getattr(dataset, "targets", None) is not None else "classify"

    def preprocessing_for(self, dataset, preprocessing=None):
        """The preprocessing card for this model and data: the one given, or scale to [0, 1] at the model's input
        size and channels."""
        from ..data.transforms import Preprocessing

        if preprocessing is not None:
            pre = preprocessing
        else:
            c, h, w = self.model.built_input_shape
            size = None if (h, w) == tuple(dataset.images.shape[1:3]) else (h, w)
            pre = Preprocessing(input_size=size, channels=c)
        if pre.channels is None:
            pre.channels = self.model.built_input_shape[0]
        if dataset.labels.ndim == 3 and (pre.input_size not in (None, tuple(dataset.images.shape[1:3]))
                                         or pre.center_crop is not None):
            raise ValueError("segmentation masks are not resized or cropped: give images of the model's input size")
        return pre

    def _loader(self, dataset, batch_size, shuffle, transform, state=None):
        from ..data.splits import DataLoader

        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, seed=self.seed, transform=transform,
                          state=state)

    # ---- one epoch ----------------------------------------------------------------------------------------
    def _train_epoch(self, loader, desc):
        from ..progress import Progress

        bar = Progress(total=len(loader.dataset), desc=desc, unit="img", live=None if self.progress else False)
        total_loss, correct, seen = 0.0, 0.0, 0
        for x, y in loader:
            out = self.model(x, training=True)
            loss = self.loss(out, y)
            labels = y[0] if isinstance(y, tuple) else y
            scores = out[0] if isinstance(out, list) else out
            if not math.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss} at epoch {self.epoch + 1}; lower the learning "
                                         f"rate (now {self.optimizer.lr:g}) or clip gradients (--clip-norm)")
            self.model.backward(self.loss.backward(), input_grads=False)
            if self.clip_norm:
                clip_grad_norm(self.model.parameters(), self.clip_norm)
            self.optimizer.step()
            n = len(labels)
            total_loss += loss * n
            correct += accuracy(ops.to_numpy(scores) if not isinstance(scores, np.ndarray) else scores, labels,
                                ignore_index=255 if labels.ndim == 3 else None) * n
            seen += n
            bar.update(n, loss=total_loss / seen, acc=correct / seen)
        return bar, total_loss / max(seen, 1), correct / max(seen, 1)

    def evaluate(self, dataset, batch_size=256, preprocessing=None):
        """{"loss", "accuracy"} of the model on ``dataset`` (inference mode; pixel accuracy for masks), the
        predictions (``"pred"``: argmax of the first output) and the raw ``"scores"`` (a list for two outputs)."""
        pre = self.preprocessing_for(dataset, preprocessing)
        loss_fn = self.loss_for(dataset)
        loader = self._loader(dataset, batch_size, False, pre)
        if dataset.labels.ndim == 3 and isinstance(loss_fn, PixelCrossEntropy):
            return self._evaluate_masks(loader, loss_fn, batch_size)
        outs = []
        for x, _ in loader:
            o = self.model.predict(x, batch_size=batch_size)
            outs.append(o if isinstance(o, list) else [o])
        if not outs:
            return {"loss": float("nan"), "accuracy": float("nan"), "pred": np.zeros(0, np.int64), "scores": None}
        full = [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]
        target = dataset.labels if dataset.targets is None or len(full) == 1 else (dataset.labels, dataset.targets)
        loss = loss_fn(full if len(full) > 1 else full[0], target)
        ignore = 255 if dataset.labels.ndim == 3 else None
        return {"loss": loss, "accuracy": accuracy(full[0], dataset.labels, ignore_index=ignore),
                "pred": full[0].argmax(axis=1), "scores": full if len(full) > 1 else full[0]}

    def _evaluate_masks(self, loader, loss_fn, batch_size):
        """evaluate() for masks, batch by batch: the summed loss and its divisor, the hits and the pixels counted
        add up to exactly the whole set's mean loss and pixel accuracy, while whole-set score maps would not fit
        (10,000 images of 64x64 with 11 classes: 1.8 GB of scores, and the loss's float64 copies of them killed a
        24 GB machine). The predictions come back as uint8 masks (N, H, W); "scores" is None."""
        total = count = hits = pixels = 0.0
        preds = []
        for x, y in loader:
            o = self.model.predict(x, batch_size=batch_size)
            o = ops.to_numpy(o[0] if isinstance(o, list) else o)
            t, c, _ = loss_fn._forward(o.astype(np.float64), y)
            total, count = total + t, count + c
            pred = o.argmax(axis=1)
            keep = y != loss_fn.ignore_index if loss_fn.ignore_index is not None else np.ones(y.shape, bool)
            hits += float(np.count_nonzero((pred == y) & keep))
            pixels += float(np.count_nonzero(keep))
            preds.append(pred.astype(np.uint8 if o.shape[1] <= 256 else np.int64))
        if not preds:
            return {"loss": float("nan"), "accuracy": float("nan"), "pred": np.zeros((0,), np.uint8), "scores": None}
        return {"loss": total / count if count > 0 else 0.0, "accuracy": hits / pixels if pixels else 0.0,
                "pred": np.concatenate(preds), "scores": None}

    # ---- the loop -----------------------------------------------------------------------------------------
    def fit(self, train, val=None, *, epochs=10, batch_size=32, augment=None, preprocessing=None, patience=None,
            monitor="val_accuracy", out=None, metadata=None, log=None):
        """Train until ``epochs`` epochs are done in all (a resumed trainer counts the ones before), or until
        ``monitor`` has not improved for ``patience`` epochs. Returns the History."""
        from ..data.transforms import Compose

        log = log or (lambda line: None)
        if monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")
        if val is None and monitor.startswith("val_"):
            monitor = "train_" + monitor[4:]
        mode = MONITORS[monitor]
        self.loss_for(train)
        if augment is not None and self.task_of(train) != "classify":
            moving = GEOMETRIC_AUGMENTATIONS & set(getattr(augment, "ops", ()))
            if moving:
                raise ValueError(f"augmentation {', '.join(sorted(moving))} moves pixels but not the masks or boxes "
                                 f"of this {self.task_of(train)} data; use colour augmentations only")
        pre = self.preprocessing_for(train, preprocessing)
        self.card = pre.to_card()
        if self.schedule is None and self._schedule_arg is not None:
            self.schedule = (make_schedule(self._schedule_arg, self.optimizer, epochs)
                             if isinstance(self._schedule_arg, str) else self._schedule_arg)
            if getattr(self, "_pending_schedule_state", None):  # resuming: the schedule's and the rate's state
                self.schedule.load_state_dict(self._pending_schedule_state)
                self.optimizer.lr = self._pending_lr
        loader = self._loader(train, batch_size, True, Compose([augment, pre]),
                              state={"epoch": self.epoch, "position": 0})
        stem = os.path.splitext(out)[0] if out else None
        self._meta = dict(metadata or {})
        self._meta_extra = {"augment": str(augment) if augment is not None else None, "batch_size": batch_size,
                            "monitor": monitor, "patience": patience, "train": getattr(train, "name", ""),
                            "val": getattr(val, "name", "") if val is not None else None}
        self.stopped_early = False
        while self.epoch < epochs:
            t0 = time.perf_counter()
            bar, train_loss, train_acc = self._train_epoch(loader, f"epoch {self.epoch + 1}/{epochs}")
            row = {"epoch": self.epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
                   "lr": self.optimizer.lr}
            if val is not None:
                ev = self.evaluate(val, preprocessing=pre)
                row.update(val_loss=ev["loss"], val_accuracy=ev["accuracy"])
            row["seconds"] = round(time.perf_counter() - t0, 3)
            if self.progress:
                bar.close(**{short: row[k] for k, short in (("val_loss", "val_loss"), ("val_accuracy", "val_acc"))
                             if k in row})
            self.history.append(row)
            self.epoch += 1
            if isinstance(self.schedule, ReduceLROnPlateau):
                self.schedule.step(row.get("val_loss", train_loss))
            elif self.schedule is not None:
                self.schedule.step()
            score = row[monitor]
            improved = self.best["score"] is None or (score > self.best["score"] if mode == "max"
                                                      else score < self.best["score"])
            if improved:
                self.best, self.bad_epochs = {"score": float(score), "epoch": self.epoch}, 0
                if out:
                    self.model.save(out, metadata=self.model_card(train))
            else:
                self.bad_epochs += 1
            if patience is not None and self.bad_epochs >= patience and self.epoch < epochs:
                self.stopped_early = True
            if out:
                self.save_checkpoint(stem + ".last.vk", train)
                self.history.save(stem)
            if self.stopped_early:
                log(f"early stop: {monitor} has not improved for {patience} epochs (best {self.best['score']:.4f} "
                    f"at epoch {self.best['epoch']})")
                break
        return self.history

    # ---- files --------------------------------------------------------------------------------------------
    def model_card(self, train):
        """The metadata written with the best model: the architecture's own card (its defaults), then the
        preprocessing, class names, task and how it was made."""
        meta = {k: v for k, v in (getattr(self.model, "metadata", None) or {}).items()
                if k not in ("training", "evaluation")}
        meta.update(self._meta)
        meta["task"] = self.task_of(train)  # what the data trained it for
        if meta["task"] == "detect" and isinstance(self.loss, WindowDetectionLoss):
            meta.setdefault("background_class", int(self.loss.background))
        meta["preprocessing"] = dict(self.card)
        names = getattr(train, "class_names", None)
        if names:
            meta["class_names"] = list(names)
        training = dict(meta.get("training") or {})
        training.update(self.config)
        training.update(self._meta_extra)
        training.update(epochs=self.epoch, best_epoch=self.best["epoch"], best_score=self.best["score"],
                        history=self.history.rows)
        meta["training"] = training
        return meta

    def save_checkpoint(self, path, train):
        arrays, scalars = self.optimizer.flat_state()
        state = {
            "epoch": self.epoch, "history": self.history.rows, "best": self.best, "bad_epochs": self.bad_epochs,
            "config": self.config, "optimizer_state": scalars, "lr": self.optimizer.lr,
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "dropout_calls": [layer.calls for layer in self._dropouts()],
            "card": self.card, "meta": self._meta, "meta_extra": self._meta_extra,
        }
        from ..weights import save_checkpoint

        save_checkpoint(self.model, path, metadata=self.model_card(train), arrays=arrays, state=state)

    @classmethod
    def from_checkpoint(cls, path, *, progress=True):
        """The trainer of a ``<stem>.last.vk`` checkpoint, ready to ``fit`` on from where it stopped."""
        from ..weights import load_checkpoint

        model, arrays, state = load_checkpoint(path)
        cfg = state["config"]
        trainer = cls(model, optimizer=cfg["optimizer"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                      momentum=cfg["momentum"], schedule=cfg.get("schedule"), clip_norm=cfg.get("clip_norm"),
                      seed=cfg["seed"], progress=progress)
        trainer.optimizer.load_flat_state(arrays, state["optimizer_state"])
        trainer.optimizer.lr = float(state["lr"])
        trainer._pending_schedule_state, trainer._pending_lr = state.get("schedule"), float(state["lr"])
        for layer, calls in zip(trainer._dropouts(), state.get("dropout_calls", [])):
            layer.calls = int(calls)
        trainer.epoch = int(state["epoch"])
        trainer.history = History(state["history"])
        trainer.best = dict(state["best"])
        trainer.bad_epochs = int(state["bad_epochs"])
        trainer.card = state.get("card")
        trainer._meta = state.get("meta") or {}
        return trainer
