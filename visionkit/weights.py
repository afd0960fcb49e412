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

A training checkpoint (``save_checkpoint``) is a model file with two extras that ``load_model`` ignores: tensors
named "train:<key>" (optimizer slots) and a "training_state" JSON entry in the header (epoch, history, RNG states).

A bundle (``save_bundle``; loads as a ``visionkit.bundle.ModelBundle``) holds several named models in one file:
    tensors          named "<member>:<layer name>/<weight>" (e.g. "pnet:conv1/kernel")
    __metadata__     {"visionkit": JSON string} with
                        format           "visionkit"
                        format_version   2 (a visionkit that reads only single models says "upgrade")
                        kind             "bundle"
                        visionkit_version, name
                        members          {member name: {"class_name", "config", "metadata"}}, in order
                        metadata         the bundle's free-form user dict (``bundle.metadata``)

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

import numpy as np

from . import ops
from .io import write_bytes_atomically

FORMAT = "visionkit"
FORMAT_VERSION = 2          # the newest version this module reads
MODEL_FORMAT_VERSION = 1    # what save_model writes (single models)
BUNDLE_FORMAT_VERSION = 2   # what save_bundle writes
BUNDLE_SEP = ":"            # "<member>:<layer>/<weight>"
TRAINING_PREFIX = "train:"  # a checkpoint's optimizer tensors: "train:<key>"
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


def _model_tensors(model, prefix=""):
    tensors = {}
    for p in model.parameters():
        key = prefix + p.name
        if key in tensors:
            raise ValueError(f"two parameters share the name {p.name!r}; give the layers distinct names")
        tensors[key] = np.ascontiguousarray(ops.to_numpy(p.value), dtype=np.float32)
    return tensors


def _write_atomic(path, tensors, header):
    """Serialise ``tensors`` with ``header`` as the visionkit metadata; write to ``path`` through a temporary file
    in the same directory and ``os.replace`` (a reader never sees half a file)."""
    from safetensors.numpy import save

    text = json.dumps(header, default=_json_default)
    data = save(tensors, metadata={METADATA_KEY: text})

    write_bytes_atomically(path, data)


def _model_header(model, metadata):
    """The JSON header of a single-model file: format, version, architecture config and the user metadata
    (``metadata``, else ``model.metadata``)."""
    meta = metadata if metadata is not None else getattr(model, "metadata", None) or {}
    if not isinstance(meta, dict):
        raise TypeError(f"metadata must be a dict, got {type(meta).__name__}")
    return {
        "format": FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "visionkit_version": _version(),
        "class_name": type(model).__name__,
        "config": model.get_config(),
        "metadata": meta,
    }


def save_model(model, path, metadata=None):
    """Write ``model`` (architecture, weights, ``metadata`` or else ``model.metadata``) to ``path``."""
    path = os.fspath(path)
    _write_atomic(path, _model_tensors(model), _model_header(model, metadata))
    if metadata is not None:
        model.metadata = dict(metadata)


def save_bundle(models, path, metadata=None):
    """Write several named models as one bundle file (see the module docstring), atomically.

    ``models``: a dict member name -> Model (order kept) or a ``ModelBundle``. ``metadata``: the bundle's user
    dict (default: the ModelBundle's ``metadata``, else {}). Each member's own ``model.metadata`` is kept too.
    Member names are non-empty and contain no ':' or '/'.
    """
    from .bundle import ModelBundle, check_member_name
    from .model import Model

    path = os.fspath(path)
    name = None
    if isinstance(models, ModelBundle):
        name = models.name
        if metadata is None:
            metadata = models.metadata
        models = models.members
    if not isinstance(models, dict) or not models:
        raise ValueError("save_bundle: give a non-empty dict of member name -> Model (or a ModelBundle)")
    meta = metadata if metadata is not None else {}
    if not isinstance(meta, dict):
        raise TypeError(f"metadata must be a dict, got {type(meta).__name__}")
    tensors, members = {}, {}
    for k, m in models.items():
        check_member_name(k)
        if not isinstance(m, Model):
            raise TypeError(f"save_bundle: member {k!r} must be a visionkit Model, got {type(m).__name__}")
        tensors.update(_model_tensors(m, prefix=k + BUNDLE_SEP))
        mm = getattr(m, "metadata", None) or {}
        members[k] = {"class_name": type(m).__name__, "config": m.get_config(), "metadata": dict(mm)}
    header = {
        "format": FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "kind": "bundle",
        "visionkit_version": _version(),
        "name": name if name is not None else os.path.splitext(os.path.basename(path))[0],
        "members": members,
        "metadata": meta,
    }
    _write_atomic(path, tensors, header)


def save_checkpoint(model, path, metadata=None, arrays=None, state=None):
    """A model file that also holds what resuming a training run needs: ``arrays`` (optimizer slots and the like,
    stored as tensors named "train:<key>", any dtype) and ``state`` (JSON-able: epoch, history, RNG states...,
    stored in the header as "training_state"). ``load_model`` reads it as the plain model it also is."""
    path = os.fspath(path)
    tensors = _model_tensors(model)
    for k, v in (arrays or {}).items():
        tensors[TRAINING_PREFIX + k] = np.ascontiguousarray(ops.to_numpy(v))
    _write_atomic(path, tensors, _model_header(model, metadata) | {"training_state": state or {}})


def load_checkpoint(path, device="cpu"):
    """(model, arrays, state) of a ``save_checkpoint`` file; ValueError naming the file if it holds no training
    state."""
    path = os.fspath(path)
    header, shapes = inspect_model_file(path)
    if is_bundle_header(header) or "training_state" not in header:
        raise ValueError(f"{path}: a model file without training state, not a checkpoint to resume from")
    model = load_model(path, device=device)
    names = [k for k in shapes if k.startswith(TRAINING_PREFIX)]
    arrays = {k[len(TRAINING_PREFIX):]: v for k, v in _read_tensors(path, names).items()}
    return model, arrays, header["training_state"]


def is_bundle_header(header):
    return isinstance(header, dict) and header.get("kind") == "bundle"


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
    if is_bundle_header(header):
        if header.get("format") != FORMAT or not isinstance(header.get("members"), dict) or not header["members"]:
            raise ValueError(f"{path}: corrupt visionkit bundle (its metadata lacks the format or the members)")
    elif not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("config"), dict):
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


def _assign(model, by_name, path, prefix=""):
    tensors = _read_tensors(path, [prefix + n for n in by_name])
    device = getattr(model, "device", "cpu")
    for name, p in by_name.items():
        a = np.ascontiguousarray(tensors.pop(prefix + name), dtype=np.float32)
        p.value = ops.to_device(a, device) if device != "cpu" else a
        p.grad = None


def _reserve_names(model, depth=0):
    from .layers.naming import reserve_name

    reserve_name(model.name)
    for layer in getattr(model, "layers", ()):
        reserve_name(layer.name)
        if depth < 64 and hasattr(layer, "layers"):
            _reserve_names(layer, depth + 1)


def _rebuild(class_name, config, custom_objects, label):
    """The architecture of ``config`` with its parameters only declared; ValueError starting with ``label``."""
    from .layers import initializers
    from .layers.registry import get_layer_class

    try:
        cls = get_layer_class(class_name, custom_objects)
        if not hasattr(cls, "from_config") or not getattr(cls, "_from_config_takes_custom_objects", False):
            raise ValueError(f"class {class_name!r} is not a model class")
        if not isinstance(config, dict):
            raise TypeError(f"the config is a {type(config).__name__}, not a dict")
        with initializers.deferred():
            return cls.from_config(config, custom_objects=custom_objects)
    except _CONFIG_ERRORS as e:
        what = "config nested too deeply" if isinstance(e, RecursionError) else f"{type(e).__name__}: {e}"
        raise ValueError(f"{label}: cannot rebuild the architecture ({what})") from None


def _finish(model, metadata):
    model.metadata = metadata if isinstance(metadata, dict) else {}
    model._last = None
    _reserve_names(model)


def _load_onnx(path, device):
    from .onnx.importer import load_onnx

    model = load_onnx(path)
    side = path + ".json"
    model.metadata = {}
    if os.path.isfile(side):
        with open(side, encoding="utf-8") as f:
            try:
                card = json.load(f)
            except ValueError as e:
                raise ValueError(f"{side}: not valid JSON ({e})") from None
        if not isinstance(card, dict):
            raise ValueError(f"{side}: expected a JSON object (the model card), got {type(card).__name__}")
        model.metadata = card
    if device is not None and device != "cpu":
        model.to(device)
    return model


def load_model(path, device="cpu", custom_objects=None):
    """Rebuild the model saved at ``path`` on ``device`` ("cpu" | "cuda" | "auto").

    Returns a ``Model`` (or ``Sequential``), or a ``visionkit.bundle.ModelBundle`` when the file is a bundle
    (``save_bundle``). ``custom_objects`` maps class names to layer classes not registered with
    ``@register_layer``. The file's user metadata is ``model.metadata``. The automatic-name counters move past the
    loaded layers' names, so a layer created afterwards (``Conv2D(...)``) gets a fresh name. See the module
    docstring for the checks made before anything is allocated (for a bundle: every member's architecture is
    rebuilt and checked against the file before any tensor is read).

    An ``.onnx`` file is imported (``visionkit.onnx.importer.load_onnx``, needs the ``onnx`` package); its card
    (preprocessing, class names) comes from a JSON side file ``<file>.onnx.json`` when there is one.
    """
    if os.fspath(path).lower().endswith(".onnx"):
        return _load_onnx(os.fspath(path), device)
    # the generic layers an imported ONNX model may hold once saved as a .vk file
    from .onnx import layers as _onnx_layers  # noqa: F401
    header, shapes = inspect_model_file(path)
    path = os.fspath(path)
    if is_bundle_header(header):
        return _load_bundle(header, shapes, path, device, custom_objects)
    config = header["config"]
    class_name = header.get("class_name") or ("Sequential" if "nodes" not in config else "Model")
    model = _rebuild(class_name, config, custom_objects, path)
    shapes = {k: v for k, v in shapes.items() if not k.startswith(TRAINING_PREFIX)}  # a checkpoint's extras
    by_name = _check_shapes(model, shapes, path)
    _assign(model, by_name, path)
    _finish(model, header.get("metadata") or {})
    if device is not None and device != "cpu":
        model.to(device)
    return model


def _load_bundle(header, shapes, path, device, custom_objects):
    from .bundle import ModelBundle, check_member_name

    members = header["members"]
    parts = {}
    for k in members:
        try:
            check_member_name(k)
        except ValueError as e:
            raise ValueError(f"{path}: corrupt visionkit bundle ({e})") from None
        parts[k] = {}
    for t, shape in shapes.items():
        member, sep, rest = t.partition(BUNDLE_SEP)
        if not sep or member not in parts:
            raise ValueError(f"{path}: the bundle holds tensor {t!r}, which belongs to none of its members "
                             f"({', '.join(parts)})")
        parts[member][rest] = shape
    plan = []
    for k, spec in members.items():
        label = f"{path} (bundle member {k!r})"
        if not isinstance(spec, dict):
            raise ValueError(f"{label}: corrupt visionkit bundle (the member's entry is not a dict)")
        model = _rebuild(spec.get("class_name"), spec.get("config"), custom_objects, label)
        plan.append((k, model, _check_shapes(model, parts[k], label), spec.get("metadata") or {}))
    loaded = {}
    for k, model, by_name, meta in plan:  # every shape checked: only now read the tensors
        _assign(model, by_name, path, prefix=k + BUNDLE_SEP)
        _finish(model, meta)
        loaded[k] = model
    meta = header.get("metadata")
    name = header.get("name")
    if not isinstance(name, str) or not name:
        name = os.path.splitext(os.path.basename(path))[0]
    bundle = ModelBundle(loaded, metadata=meta if isinstance(meta, dict) else {}, name=name)
    if device is not None and device != "cpu":
        bundle.to(device)
    return bundle


def load_weights(model, path):
    """Load the tensors of ``path`` into ``model`` (names and shapes must match exactly; checked before reading)."""
    path = os.fspath(path)
    header, shapes = inspect_model_file(path, require_metadata=False)
    if is_bundle_header(header):
        raise ValueError(f"{path}: a bundle of models ({', '.join(header['members'])}), not one model's weights; "
                         "load it with visionkit.load_model")
    _assign(model, _check_shapes(model, shapes, path), path)
