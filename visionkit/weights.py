"""Model files: one safetensors file holding the weights and, as JSON metadata, the architecture and more.

Layout of a ``.vk`` file (a plain safetensors file; nothing is pickled, so loading never runs code):
    tensors          one float32 tensor per parameter, named "<layer name>/<weight>" (e.g. "conv2d/kernel"), in
                     the PyTorch layouts of visionkit.layers (OIHW kernels, (out, in) dense kernels)
    __metadata__     {"visionkit": JSON string} with
                        format           "visionkit"
                        format_version   1
                        visionkit_version
                        class_name       "Sequential" | "Model"
                        config           model.get_config(): layers (class names and configs) and connections
                        metadata         free-form user dict: preprocessing (input size, channels, mean/std),
                                         class names, task, provenance (training command and data, or the source
                                         and license of converted weights); comes back as ``model.metadata``

Files are written atomically: a temporary file in the same directory, then ``os.replace``.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from . import ops

FORMAT = "visionkit"
FORMAT_VERSION = 1
METADATA_KEY = "visionkit"


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"metadata value of type {type(o).__name__} is not JSON-serialisable: {o!r}")


def _version():
    try:
        from . import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def save_model(model, path, metadata=None):
    """Write ``model`` (architecture, weights, ``metadata`` or else ``model.metadata``) to ``path``."""
    from safetensors.numpy import save

    path = os.fspath(path)
    tensors = {}
    for p in model.parameters():
        if p.name in tensors:
            raise ValueError(f"two parameters share the name {p.name!r}; give the layers distinct names")
        tensors[p.name] = np.ascontiguousarray(ops.to_numpy(p.value), dtype=np.float32)
    meta = metadata if metadata is not None else getattr(model, "metadata", None) or {}
    if not isinstance(meta, dict):
        raise TypeError(f"metadata must be a dict, got {type(meta).__name__}")
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "visionkit_version": _version(),
        "class_name": type(model).__name__,
        "config": model.get_config(),
        "metadata": meta,
    }
    text = json.dumps(header, default=_json_default)
    data = save(tensors, metadata={METADATA_KEY: text})

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if metadata is not None:
        model.metadata = dict(metadata)


def read_model_file(path, require_metadata=True):
    """(header dict or None, {name: float32 array}) of a model file; ValueError naming the file if it is not one."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a visionkit model file")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for garbage
        raise ValueError(f"{path}: not a visionkit model file (not a readable safetensors file: {e})") from None
    raw = meta.get(METADATA_KEY)
    if raw is None:
        if require_metadata:
            raise ValueError(f"{path}: not a visionkit model file (a safetensors file without visionkit metadata)")
        return None, tensors
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt visionkit metadata (invalid JSON: {e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or "config" not in header:
        raise ValueError(f"{path}: not a visionkit model file (its metadata lacks the visionkit format and config)")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: model format version {version!r} is not supported by this visionkit "
            f"(it reads up to {FORMAT_VERSION}); upgrade visionkit"
        )
    return header, tensors


def _assign(model, tensors, path):
    params = model.parameters()
    by_name = {p.name: p for p in params}
    for p in params:
        t = tensors.get(p.name)
        if t is not None and tuple(t.shape) != p.shape:
            layer, _, short = p.name.rpartition("/")
            raise ValueError(
                f"{path}: layer {layer!r}: weight {short!r} has shape {p.shape} in the model's architecture but "
                f"{tuple(t.shape)} in the file"
            )
    missing = [n for n in by_name if n not in tensors]
    if missing:
        raise ValueError(f"{path}: the file lacks weight(s) {', '.join(missing)} that the architecture needs")
    extra = [n for n in tensors if n not in by_name]
    if extra:
        raise ValueError(f"{path}: the file holds weight(s) {', '.join(extra)} that match no layer of the model")
    for name, p in by_name.items():
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        p.value = ops.to_device(a, model.device) if getattr(model, "device", "cpu") != "cpu" else a
        p.grad = None


def load_model(path, device="cpu", custom_objects=None):
    """Rebuild the model saved at ``path`` on ``device`` ("cpu" | "cuda" | "auto").

    ``custom_objects`` maps class names to layer classes not registered with ``@register_layer``. The file's
    user metadata is ``model.metadata``.
    """
    from .layers.base import get_layer_class

    header, tensors = read_model_file(path)
    path = os.fspath(path)
    config = header["config"]
    class_name = header.get("class_name") or ("Sequential" if "nodes" not in config else "Model")
    try:
        cls = get_layer_class(class_name, custom_objects)
        model = cls.from_config(config, custom_objects=custom_objects)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: cannot rebuild the architecture: {e}") from None
    _assign(model, tensors, path)
    model.metadata = header.get("metadata") or {}
    model._last = None
    if device is not None and device != "cpu":
        model.to(device)
    return model


def load_weights(model, path):
    """Load the tensors of ``path`` into ``model`` (names and shapes must match exactly)."""
    _, tensors = read_model_file(path, require_metadata=False)
    _assign(model, tensors, os.fspath(path))
