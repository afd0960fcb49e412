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

Loading an untrusted file is safe and cheap: the header is read first (safetensors gives every tensor's shape
and dtype without reading data); a file whose tensors would need more bytes than the file holds is refused; the
architecture is rebuilt with its parameters only declared (``initializers.deferred()``: no allocation, no
random initialisation); the declared shapes are compared with the file's; only then are the tensors read. A corrupt
config (wrong types, unknown classes, dangling references, runaway nesting) is reported as a ValueError naming the
file and the problem.
"""

from __future__ import annotations

import json
import math
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


_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
_CONFIG_ERRORS = (KeyError, TypeError, ValueError, RecursionError, IndexError, AttributeError, OverflowError)


def _check_path(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a visionkit model file")


def inspect_model_file(path, require_metadata=True):
    """(header dict or None, {name: shape tuple}) of a model file, reading no tensor data.

    Refuses (ValueError naming the file) a file that is not safetensors, whose tensors would need more bytes than
    the file holds, or whose visionkit metadata is missing (when required), malformed or of a newer format.
    """
    from safetensors import safe_open

    path = os.fspath(path)
    _check_path(path)
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            shapes, need = {}, 0
            for k in f.keys():
                sl = f.get_slice(k)
                shape = tuple(int(d) for d in sl.get_shape())
                dtype = sl.get_dtype()
                shapes[k] = shape
                need += math.prod(shape) * _DTYPE_BYTES.get(dtype, 8)
    except Exception as e:  # safetensors raises its own error types for garbage
        raise ValueError(f"{path}: not a visionkit model file (not a readable safetensors file: {e})") from None
    size = os.path.getsize(path)
    if need > size:
        raise ValueError(f"{path}: corrupt model file: its tensors declare {need:,} bytes but the file has {size:,}")
    raw = meta.get(METADATA_KEY)
    if raw is None:
        if require_metadata:
            raise ValueError(f"{path}: not a visionkit model file (a safetensors file without visionkit metadata)")
        return None, shapes
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt visionkit metadata (invalid JSON: {e})") from None
    except RecursionError:
        raise ValueError(f"{path}: corrupt visionkit metadata (JSON nested too deeply)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("config"), dict):
        raise ValueError(f"{path}: not a visionkit model file (its metadata lacks the visionkit format and config)")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: model format version {version!r} is not supported by this visionkit "
            f"(it reads up to {FORMAT_VERSION}); upgrade visionkit"
        )
    return header, shapes


def _read_tensors(path, names):
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            return {k: f.get_tensor(k) for k in names}
    except Exception as e:
        raise ValueError(f"{path}: cannot read the tensors: {e}") from None


def read_model_file(path, require_metadata=True):
    """(header dict or None, {name: array}) of a model file; ValueError naming the file if it is not one."""
    header, shapes = inspect_model_file(path, require_metadata)
    return header, _read_tensors(os.fspath(path), list(shapes))


def _check_shapes(model, shapes, path):
    """Compare the model's (declared) parameters with the file's tensor names and shapes; allocates nothing."""
    params = model.parameters()
    by_name = {p.name: p for p in params}
    for p in params:
        t = shapes.get(p.name)
        if t is not None and tuple(t) != p.shape:
            layer, _, short = p.name.rpartition("/")
            raise ValueError(
                f"{path}: layer {layer!r}: weight {short!r} has shape {p.shape} in the model's architecture but "
                f"{tuple(t)} in the file"
            )
    missing = [n for n in by_name if n not in shapes]
    if missing:
        raise ValueError(f"{path}: the file lacks weight(s) {', '.join(missing)} that the architecture needs")
    extra = [n for n in shapes if n not in by_name]
    if extra:
        raise ValueError(f"{path}: the file holds weight(s) {', '.join(extra)} that match no layer of the model")
    return by_name


def _assign(model, by_name, path):
    tensors = _read_tensors(path, list(by_name))
    device = getattr(model, "device", "cpu")
    for name, p in by_name.items():
        a = np.ascontiguousarray(tensors.pop(name), dtype=np.float32)
        p.value = ops.to_device(a, device) if device != "cpu" else a
        p.grad = None


def _reserve_names(model, depth=0):
    from .layers.naming import reserve_name

    reserve_name(model.name)
    for layer in getattr(model, "layers", ()):
        reserve_name(layer.name)
        if depth < 64 and hasattr(layer, "layers"):
            _reserve_names(layer, depth + 1)


def load_model(path, device="cpu", custom_objects=None):
    """Rebuild the model saved at ``path`` on ``device`` ("cpu" | "cuda" | "auto").

    ``custom_objects`` maps class names to layer classes not registered with ``@register_layer``. The file's
    user metadata is ``model.metadata``. The automatic-name counters move past the loaded layers' names, so a
    layer created afterwards (``Conv2D(...)``) gets a fresh name. See the module docstring for the checks made
    before anything is allocated.
    """
    from .layers import initializers
    from .layers.registry import get_layer_class

    header, shapes = inspect_model_file(path)
    path = os.fspath(path)
    config = header["config"]
    class_name = header.get("class_name") or ("Sequential" if "nodes" not in config else "Model")
    try:
        cls = get_layer_class(class_name, custom_objects)
        if not hasattr(cls, "from_config") or not getattr(cls, "_from_config_takes_custom_objects", False):
            raise ValueError(f"class {class_name!r} is not a model class")
        with initializers.deferred():
            model = cls.from_config(config, custom_objects=custom_objects)
    except _CONFIG_ERRORS as e:
        what = "config nested too deeply" if isinstance(e, RecursionError) else f"{type(e).__name__}: {e}"
        raise ValueError(f"{path}: cannot rebuild the architecture ({what})") from None
    by_name = _check_shapes(model, shapes, path)
    _assign(model, by_name, path)
    model.metadata = header.get("metadata") or {}
    if not isinstance(model.metadata, dict):
        model.metadata = {}
    model._last = None
    _reserve_names(model)
    if device is not None and device != "cpu":
        model.to(device)
    return model


def load_weights(model, path):
    """Load the tensors of ``path`` into ``model`` (names and shapes must match exactly; checked before reading)."""
    path = os.fspath(path)
    _, shapes = inspect_model_file(path, require_metadata=False)
    _assign(model, _check_shapes(model, shapes, path), path)
