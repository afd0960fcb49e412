"""Everything a user can name: architectures, tasks, pretrained models and datasets, collected from the plugins.

The records are gathered lazily from the current plugin set (``visionkit.plugins``) the first time one is asked
for, and cached with it; ``reset()`` forgets them. Each plugin's hook runs on its own: if it raises, what it had
registered is dropped and the failure is reported by ``visionkit plugins``. Two plugins registering the same name
(of one kind) make every lookup raise ``DuplicateNameError`` naming both; ``conflicts()`` lists them without raising.

    >>> from visionkit import registry
    >>> model = registry.build("resnet18", num_classes=10)
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable


class Task:
    """The protocol of a task: a ``name``, a one-line ``description`` and ``run(model, images, **options)``, which
    takes a model and a list of images (H x W x C uint8 arrays, RGB or single-channel, as visionkit.io.read_image returns them) and returns the results.
    Subclass it, or register any object with the same three attributes."""

    name: str = ""
    description: str = ""

    def run(self, model, images, **options):
        raise NotImplementedError(f"task {self.name!r} does not implement run()")

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


class UnknownNameError(ValueError):
    """A name that nothing registered; ``matches`` holds the close ones."""

    def __init__(self, kind, name, known):
        self.kind, self.name = kind, name
        self.matches = difflib.get_close_matches(name, list(known), n=5, cutoff=0.6)
        if self.matches:
            hint = "did you mean " + ", ".join(self.matches) + "?"
        elif known:
            hint = f"known: {', '.join(sorted(known))}"
        else:
            hint = "none are registered (see `visionkit plugins`)"
        super().__init__(f"unknown {kind} {name!r}; {hint}")


@dataclass(frozen=True)
class Conflict:
    kind: str
    name: str
    plugins: tuple

    def describe(self):
        a, b = self.plugins
        if a == b:
            return f"{self.kind} {self.name!r} is registered twice by plugin {a!r}"
        return (f"{self.kind} {self.name!r} is registered by two plugins, {a!r} and {b!r} "
                f"(disable one with VISIONKIT_DISABLE_PLUGINS={b})")

    def to_dict(self):
        return {"kind": self.kind, "name": self.name, "plugins": list(self.plugins)}


class DuplicateNameError(ValueError):
    def __init__(self, conflicts):
        self.conflicts = list(conflicts)
        super().__init__("; ".join(c.describe() for c in self.conflicts))


def _check_name(name):
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"a registered name must be a non-empty string without surrounding spaces, got {name!r}")
    return name


def _check_text(what, value):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class ArchitectureSpec:
    """A registered architecture: ``builder(num_classes=, in_channels=, input_size=(H, W) or None, seed=)`` builds
    it; ``input_shape`` (C, H, W) and ``num_classes`` are its defaults."""

    name: str
    builder: Callable
    task: str
    input_shape: tuple
    num_classes: int
    description: str = ""
    reference: str | None = None
    plugin: str = ""

    @classmethod
    def from_register(cls, plugin, name, builder, *, task="classify", input_shape, num_classes, description="",
                      reference=None):
        if not callable(builder):
            raise TypeError(f"architecture {name!r}: builder must be callable, got {type(builder).__name__}")
        shape = tuple(input_shape)
        if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(f"architecture {name!r}: input_shape must be (C, H, W) positive ints, got {input_shape!r}")
        if not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"architecture {name!r}: num_classes must be a positive int, got {num_classes!r}")
        return cls(_check_name(name), builder, _check_text("task", task), shape, num_classes,
                   _check_text("description", description) or "", _check_text("reference", reference), plugin)

    def build(self, *, num_classes=None, in_channels=None, input_size=None, seed=None):
        """Call the builder (num_classes and in_channels default to the registered ones) and check it returned a
        visionkit Model."""
        from .model import Model

        model = self.builder(
            num_classes=self.num_classes if num_classes is None else num_classes,
            in_channels=self.input_shape[0] if in_channels is None else in_channels,
            input_size=None if input_size is None else tuple(input_size),
            seed=seed,
        )
        if not isinstance(model, Model):
            raise TypeError(f"architecture {self.name!r} (plugin {self.plugin!r}): its builder returned "
                            f"{type(model).__name__}, not a visionkit Model")
        return model

    def count_params(self):
        """(total, trainable) parameters of the default build, counted from declared shapes (nothing allocated)
        and cached for the process."""
        key = (self.plugin, self.name, self.builder)
        if key not in _PARAM_CACHE:
            from .layers import initializers

            try:
                with initializers.deferred():
                    model = self.build(seed=0)
            except Exception:  # a builder that touches its weights while building: build it for real
                model = self.build(seed=0)
            params = model.parameters()
            _PARAM_CACHE[key] = (sum(p.size for p in params), sum(p.size for p in params if p.trainable))
        return _PARAM_CACHE[key]


_PARAM_CACHE: dict = {}


@dataclass(frozen=True)
class TaskSpec:
    """A registered task; ``task`` is the object whose ``run(model, images, **options)`` does the work."""

    name: str
    task: Any
    description: str = ""
    plugin: str = ""

    @classmethod
    def from_register(cls, plugin, name, task):
        if isinstance(task, type):
            task = task()
        if not callable(getattr(task, "run", None)):
            raise TypeError(f"task {name!r}: expected an object with run(model, images, **options), "
                            f"got {type(task).__name__}")
        return cls(_check_name(name), task, str(getattr(task, "description", "") or ""), plugin)

    def run(self, model, images, **options):
        return self.task.run(model, images, **options)


@dataclass(frozen=True)
class ModelSpec:
    """A registered pretrained model: a visionkit model file shipped by a plugin."""

    name: str
    path: str
    architecture: str
    task: str
    description: str = ""
    license: str = ""
    source: str = ""
    plugin: str = ""

    @classmethod
    def from_register(cls, plugin, name, path, *, architecture, task, description="", license="", source=""):
        return cls(_check_name(name), os.fspath(path), _check_text("architecture", architecture),
                   _check_text("task", task), _check_text("description", description) or "",
                   _check_text("license", license) or "", _check_text("source", source) or "", plugin)

    @property
    def weights_available(self):
        return os.path.isfile(self.path)

    def load(self):
        from .weights import load_model

        return load_model(self.path)

    def card(self):
        """The file's metadata (preprocessing, class names, provenance, evaluation), read from its header only."""
        from .weights import inspect_model_file

        header, _ = inspect_model_file(self.path)
        meta = header.get("metadata") if isinstance(header, dict) else None
        return meta if isinstance(meta, dict) else {}

    def count_params(self):
        """Parameters stored in the file, read from its header (no tensor data is read)."""
        from .weights import inspect_model_file

        _, shapes = inspect_model_file(self.path, require_metadata=False)
        return sum(math.prod(s) for s in shapes.values())


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: ``reader(**options)`` returns its data."""

    name: str
    reader: Callable
    description: str = ""
    plugin: str = ""

    @classmethod
    def from_register(cls, plugin, name, reader, description=""):
        if not callable(reader):
            raise TypeError(f"dataset {name!r}: reader must be callable, got {type(reader).__name__}")
        return cls(_check_name(name), reader, _check_text("description", description) or "", plugin)


# kind -> (hook, record class)
_KINDS = {
    "architecture": ("register_architectures", ArchitectureSpec),
    "task": ("register_tasks", TaskSpec),
    "model": ("register_models", ModelSpec),
    "dataset": ("register_datasets", DatasetSpec),
}


@dataclass
class _Registry:
    tables: dict = field(default_factory=lambda: {kind: {} for kind in _KINDS})
    conflicts: list = field(default_factory=list)


def _collect(ps):
    reg = _Registry()
    for kind, (hook, record) in _KINDS.items():
        table = reg.tables[kind]
        for plugin_name, impl in ps.hook_impls(hook):
            staged = []

            def register(*args, _plugin=plugin_name, _record=record, _staged=staged, **kwargs):
                _staged.append(_record.from_register(_plugin, *args, **kwargs))

            if not ps.call(plugin_name, hook, impl, register=register):
                continue  # the hook raised: drop everything it registered
            for rec in staged:
                if rec.name in table:
                    reg.conflicts.append(Conflict(kind, rec.name, (table[rec.name].plugin, plugin_name)))
                else:
                    table[rec.name] = rec
    for table in reg.tables.values():
        items = sorted(table.items())
        table.clear()
        table.update(items)
    return reg


def _registry(strict=True):
    from .plugins import plugin_set

    ps = plugin_set()
    reg = ps.cache.get("registry")
    if reg is None:
        reg = ps.cache["registry"] = _collect(ps)
    if strict and reg.conflicts:
        raise DuplicateNameError(reg.conflicts)
    return reg


def reset():
    """Forget the collected records (and parameter counts); the next lookup runs the hooks again."""
    from .plugins import plugin_set

    plugin_set().cache.pop("registry", None)
    _PARAM_CACHE.clear()


def conflicts():
    """Names registered by more than one plugin (``Conflict`` records), without raising."""
    return list(_registry(strict=False).conflicts)


def architectures():
    """{name: ArchitectureSpec}, sorted by name."""
    return dict(_registry().tables["architecture"])


def tasks():
    """{name: TaskSpec}, sorted by name."""
    return dict(_registry().tables["task"])


def models():
    """{name: ModelSpec} (pretrained models), sorted by name."""
    return dict(_registry().tables["model"])


def datasets():
    """{name: DatasetSpec}, sorted by name."""
    return dict(_registry().tables["dataset"])


def _get(kind, name):
    table = _registry().tables[kind]
    if name not in table:
        raise UnknownNameError(kind, name, table)
    return table[name]


def get_architecture(name):
    """The ArchitectureSpec registered as ``name``; ``UnknownNameError`` (a ValueError) lists close matches."""
    return _get("architecture", name)


def get_task(name):
    return _get("task", name)


def get_model(name):
    return _get("model", name)


def get_dataset(name):
    return _get("dataset", name)


def build(name, **kwargs):
    """Build architecture ``name``: ``build("resnet18", num_classes=10, in_channels=3, input_size=(224, 224),
    seed=0)``; omitted arguments take the architecture's defaults."""
    return get_architecture(name).build(**kwargs)


# --------------------------------------------------------------------------------------------------------------
# the MODEL a command names


class ModelNotFound(LookupError):
    """MODEL names nothing the command accepts (the message lists close names), or a pretrained model whose
    weights file is missing (WeightsMissing)."""


class WeightsMissing(ModelNotFound):
    """A registered pretrained model whose weights file is not there (a broken install, not a typo)."""


@dataclass(frozen=True)
class ModelRef:
    """What a MODEL argument names: ``kind`` "pretrained" (``spec`` a ModelSpec), "file" or "architecture"
    (``spec`` an ArchitectureSpec). ``path`` is the weights file (None for an architecture); ``label`` the
    pretrained or architecture name, or the file's stem."""

    kind: str
    label: str
    path: str | None
    spec: Any = None


_KIND_WORDS = {"file": "a model file", "pretrained": "a pretrained model", "architecture": "an architecture"}


def locate_model(arg, kinds=("file", "pretrained", "architecture"), what="MODEL"):
    """The ModelRef for ``arg``: a registered pretrained model first, then an existing file, then an architecture,
    among ``kinds``. Raises ModelNotFound, worded for the command (``what``: "MODEL" or "--model"), for anything
    else, for a directory, and for a pretrained model whose weights file is missing. The commands share this, and
    each decides what to do with an architecture (build it with random weights, or refuse it)."""
    models = _registry().tables["model"]
    archs = _registry().tables["architecture"]
    if "pretrained" in kinds and arg in models:
        spec = models[arg]
        if not spec.weights_available:
            raise WeightsMissing(f"pretrained model {arg!r} (plugin {spec.plugin!r}) has no weights file at "
                                 f"{spec.path}")
        return ModelRef("pretrained", arg, spec.path, spec)
    if "file" in kinds and os.path.isfile(arg):
        return ModelRef("file", os.path.splitext(os.path.basename(arg))[0], arg)
    if "architecture" in kinds and arg in archs:
        return ModelRef("architecture", arg, None, archs[arg])
    if os.path.isdir(arg):
        raise ModelNotFound(f"{arg}: is a directory, not a model file")
    words = [_KIND_WORDS[k] for k in ("file", "pretrained", "architecture") if k in kinds]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " nor " + words[-1]
    close = difflib.get_close_matches(arg, list(models) + list(archs), n=5, cutoff=0.6)  # a typo of any name
    hint = f"; did you mean {', '.join(close)}?" if close else " (see `visionkit models`)"
    raise ModelNotFound(f"{what} {arg!r} is neither {listed}{hint}")
