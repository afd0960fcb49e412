"""Splitting a dataset and feeding it in batches.

``split(dataset, [0.9, 0.1], seed=0)`` cuts a Dataset into parts, the same parts for the same seed (optionally
stratified: every part gets each class in the dataset's proportions).

``DataLoader`` yields ``(x, y)`` batches: x float32 NCHW (whatever ``transform`` makes of the uint8 NHWC images),
y int64. Batches are prepared in a background thread ``prefetch`` batches ahead (a bounded queue); an exception in
the worker is raised in the consumer, and a consumer that stops early (``break``) stops the worker.

Determinism: the order of epoch ``e`` is a permutation drawn from ``numpy.random.default_rng([seed, e])``, and
batch ``b`` of it gets its own generator ``default_rng([seed, e, b])`` (passed to ``transform``, for
augmentation). So a batch depends only on (seed, epoch, batch index): not on threads, not on what ran before, and
``loader.state`` -- a dict of plain ints -- is all it takes to resume exactly where a run stopped.
"""

from __future__ import annotations

import queue
import threading
import weakref

import numpy as np

from .readers import Dataset

__all__ = ["DataLoader", "split", "split_indices", "to_nchw_float"]


# --------------------------------------------------------------------------------------------------- split


def _part_sizes(n, sizes):
    """Integer part sizes from fractions (floats) or counts (ints); fractions summing to 1 use every item."""
    sizes = list(sizes)
    if not sizes:
        raise ValueError("split: give at least one size")
    if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sizes):
        counts = [int(s) for s in sizes]
        if any(c < 0 for c in counts) or sum(counts) > n:
            raise ValueError(f"split: sizes {counts} do not fit {n} items")
        return counts
    fr = np.asarray(sizes, dtype=np.float64)
    if np.any(fr < 0) or np.any(fr > 1) or fr.sum() > 1 + 1e-9:
        raise ValueError(f"split: fractions must be in [0, 1] and sum to at most 1, got {sizes}")
    return _allocate(n, fr)


def _allocate(n, fractions):
    """Largest-remainder rounding of n * fractions; when the fractions sum to 1 the counts sum to n."""
    exact = n * np.asarray(fractions, np.float64)
    counts = np.floor(exact + 1e-9).astype(np.int64)
    total = round(n * min(1.0, float(np.sum(fractions))))
    order = np.argsort(-(exact - counts), kind="stable")
    for i in order[:max(0, total - int(counts.sum()))]:
        counts[i] += 1
    return [int(c) for c in counts]


def split_indices(labels_or_n, sizes, seed=0, stratify=False):
    """Index arrays (each sorted) of the parts: ``labels_or_n`` is the number of items, or the labels when
    ``stratify`` is set. Stratified parts take their share of every class (largest-remainder rounding per class,
    so a part's total may differ by a few items from the unstratified size)."""
    rng = np.random.default_rng(seed)
    if not stratify:
        n = int(labels_or_n) if np.ndim(labels_or_n) == 0 else len(labels_or_n)
        counts = _part_sizes(n, sizes)
        perm = rng.permutation(n)
        bounds = np.cumsum([0] + counts)
        return [np.sort(perm[bounds[i]:bounds[i + 1]]) for i in range(len(counts))]
    labels = np.asarray(labels_or_n)
    if labels.ndim != 1:
        raise ValueError("split: stratify needs the labels")
    n = len(labels)
    counts = _part_sizes(n, sizes)
    fractions = np.asarray(counts, np.float64) / max(n, 1)
    parts = [[] for _ in counts]
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(len(members))]
        cls_counts = _allocate(len(members), fractions)
        bounds = np.cumsum([0] + cls_counts)
        for i in range(len(counts)):
            parts[i].append(members[bounds[i]:bounds[i + 1]])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def split(dataset, sizes, seed=0, stratify=False, names=None):
    """Disjoint parts of ``dataset`` (Datasets, items in their original order): ``sizes`` are fractions
    (``[0.8, 0.1, 0.1]``; if they sum to 1 every item is used) or counts (``[50000, 10000]``). The same seed
    gives the same parts. ``stratify`` applies to class labels; masks (segmentation) are split at random."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"split: expected a Dataset, got {type(dataset).__name__}")
    stratify = stratify and dataset.labels.ndim == 1
    idx = split_indices(dataset.labels if stratify else len(dataset), sizes, seed, stratify)
    if names is None:
        names = [f"{dataset.name}[part {i + 1}/{len(idx)}]" for i in range(len(idx))]
    return [dataset.subset(ix, name=nm) for ix, nm in zip(idx, names)]


# --------------------------------------------------------------------------------------------------- loader


def to_nchw_float(images, rng=None):
    """The default transform: uint8 NHWC -> float32 NCHW in [0, 1]."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


_DONE = object()


class _Failure:
    def __init__(self, exc):
        self.exc = exc


class DataLoader:
    """Batches of a Dataset: ``for x, y in loader:`` runs over the rest of the current epoch, then moves on to the
    next epoch (so a second ``for`` gives the next epoch).

    dataset     a Dataset (images uint8 NHWC, labels int64)
    batch_size  items per batch; the last one is smaller unless ``drop_last``
    shuffle     a new order every epoch (from seed and epoch); False: dataset order
    seed        int: the order and every batch's random generator derive from it
    transform   ``transform(images uint8 NHWC, rng) -> float32 NCHW`` (augmentation + preprocessing, see
                ``visionkit.data.transforms.Compose``); default: scale to [0, 1] and transpose
    prefetch    batches prepared ahead in a background thread; 0: prepared in the consumer's thread
    state       a ``loader.state`` dict to resume from
    """

    # a batch is (x, labels), or (x, (labels, targets)) when the dataset carries regression targets
    def __init__(self, dataset, batch_size=32, shuffle=True, seed=0, transform=None, drop_last=False, prefetch=2,
                 state=None):
        if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.transform = transform if transform is not None else to_nchw_float
        self.drop_last = bool(drop_last)
        self.prefetch = int(prefetch)
        self.epoch = 0
        self.position = 0  # batches of this epoch already handed out
        self._active = None
        if state is not None:
            self.load_state(state)

    def __len__(self):
        """Batches per epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch):
        """Start epoch ``epoch`` from its first batch at the next iteration."""
        self._close_active()
        self.epoch, self.position = int(epoch), 0

    def order(self, epoch=None):
        """The item order of an epoch (int64 indices)."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        e = self.epoch if epoch is None else int(epoch)
        return np.random.default_rng([self.seed, e]).permutation(n).astype(np.int64)

    def batch_rng(self, epoch, batch):
        """The generator batch ``batch`` of ``epoch`` hands to ``transform``."""
        return np.random.default_rng([self.seed, int(epoch), int(batch)])

    def make_batch(self, epoch, batch, order=None):
        """Batch ``batch`` of ``epoch`` as (x, y), computed directly (what iteration yields for it)."""
        order = self.order(epoch) if order is None else order
        idx = order[batch * self.batch_size:(batch + 1) * self.batch_size]
        images = self.dataset.images[idx]
        y = np.ascontiguousarray(self.dataset.labels[idx], dtype=np.int64)
        targets = getattr(self.dataset, "targets", None)
        if targets is not None:  # labels and regression targets: (y, t)
            y = (y, np.ascontiguousarray(targets[idx], dtype=np.float32))
        x = self.transform(images, self.batch_rng(epoch, batch))
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[0] != len(idx):
            raise ValueError(f"transform returned shape {x.shape} for a batch of {len(idx)} images; expected "
                             "N x C x H x W")
        return np.ascontiguousarray(x, dtype=np.float32), y

    @property
    def state(self):
        """Where the loader stands, as plain ints: the epoch, the batches of it already handed out, the seed (the
        random state of every later batch derives from seed, epoch and batch index), and the sizes resuming
        checks."""
        return {"epoch": int(self.epoch), "position": int(self.position), "seed": self.seed,
                "batch_size": self.batch_size, "num_samples": len(self.dataset), "shuffle": self.shuffle,
                "drop_last": self.drop_last}

    def state_dict(self):
        return self.state

    def load_state(self, state):
        """Resume from ``state`` (a ``loader.state`` dict): the next batch is the one after the last handed out."""
        for key in ("batch_size", "num_samples", "shuffle", "drop_last"):
            mine = self.state[key]
            if key in state and state[key] != mine:
                raise ValueError(f"cannot resume: the saved loader had {key}={state[key]!r}, this one has {mine!r}")
        self._close_active()
        self.seed = int(state.get("seed", self.seed))
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        if self.position > len(self):
            raise ValueError(f"cannot resume: position {self.position} beyond the {len(self)} batches of an epoch")

    def _close_active(self):
        ref, self._active = self._active, None
        gen = ref() if ref is not None else None
        if gen is not None:
            gen.close()

    def __iter__(self):
        self._close_active()
        if self.position >= len(self):  # a finished epoch: move on
            self.epoch, self.position = self.epoch + 1, 0
        gen = self._iterate(self.epoch, self.position)
        self._active = weakref.ref(gen)  # weak: a consumer that drops the iterator (break) stops the worker
        return gen

    def _iterate(self, epoch, start):
        order = self.order(epoch)
        batches = range(start, len(self))
        source = self._threaded(epoch, batches, order) if self.prefetch > 0 else (
            self.make_batch(epoch, b, order) for b in batches)
        try:
            for b, item in zip(batches, source):
                self.position = b + 1
                yield item
        finally:
            close = getattr(source, "close", None)
            if close:
                close()
        if self.position >= len(self):
            self.epoch, self.position = epoch + 1, 0

    def _threaded(self, epoch, batches, order):
        q = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item):
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def work():
            try:
                for b in batches:
                    if stop.is_set() or not put(self.make_batch(epoch, b, order)):
                        return
            except BaseException as e:  # noqa: BLE001  (handed to the consumer, raised there)
                put(_Failure(e))
                return
            put(_DONE)

        worker = threading.Thread(target=work, name="visionkit-data-loader", daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            stop.set()
            while True:  # unblock a worker waiting to put
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
            worker.join(timeout=10)

    def __repr__(self):
        return (f"<DataLoader {getattr(self.dataset, 'name', '')!r} batch_size={self.batch_size} "
                f"epoch={self.epoch} position={self.position}/{len(self)}>")
