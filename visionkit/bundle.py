"""A bundle: several named models that work together, kept and shipped as one file (e.g. MTCNN's P-Net, R-Net and
O-Net cascade).

    bundle = vk.load_model("mtcnn.vk")     # a ModelBundle when the file is a bundle, a Model otherwise
    pnet = bundle["pnet"]                   # the members are ordinary visionkit Models
    for name, model in bundle.items(): ...
    bundle.metadata["class_names"]          # the bundle's own metadata (task, preprocessing, provenance)
    bundle.summary()                        # each member's table under a heading
    bundle.save("copy.vk")                  # visionkit.weights.save_bundle

The file format (one safetensors file, tensors named "<member>:<layer>/<weight>") is described in
``visionkit.weights``.
"""

from __future__ import annotations

from collections.abc import Mapping


def check_member_name(name):
    """A member name is a non-empty string without ':' (the separator in tensor names) or surrounding spaces."""
    if not isinstance(name, str) or not name or name != name.strip() or ":" in name or "/" in name:
        raise ValueError(f"a bundle member name must be a non-empty string without ':', '/' or surrounding spaces, "
                         f"got {name!r}")
    return name


class ModelBundle(Mapping):
    """Named models (``{"pnet": Model, ...}``, kept in the given order) with one ``metadata`` dict and a ``name``.

    Mapping-like: ``bundle["pnet"]``, ``"pnet" in bundle``, ``len(bundle)``, iteration over the member names,
    ``keys()`` / ``values()`` / ``items()``; ``members`` is a copy of the name -> model dict.
    """

    def __init__(self, members, metadata=None, name=None):
        from .model import Model

        members = dict(members)
        if not members:
            raise ValueError("a ModelBundle needs at least one member model")
        for k, m in members.items():
            check_member_name(k)
            if not isinstance(m, Model):
                raise TypeError(f"bundle member {k!r} must be a visionkit Model, got {type(m).__name__}")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        self._members = members
        self.metadata = dict(metadata or {})
        self.name = name if name is not None else "bundle"

    # ---- the mapping ----------------------------------------------------------------------------------------
    def __getitem__(self, key):
        try:
            return self._members[key]
        except KeyError:
            raise KeyError(f"bundle {self.name!r} has no member {key!r}; it has: {', '.join(self._members)}") from None

    def __iter__(self):
        return iter(self._members)

    def __len__(self):
        return len(self._members)

    @property
    def members(self):
        """A copy of the name -> Model dict, in the bundle's order."""
        return dict(self._members)

    # ---- the model-like parts -------------------------------------------------------------------------------
    @property
    def device(self):
        """The members' device ("cpu" | "cuda"); "mixed" if they differ."""
        devices = {getattr(m, "device", "cpu") for m in self._members.values()}
        return devices.pop() if len(devices) == 1 else "mixed"

    def to(self, device="auto"):
        """Move every member to ``device`` ("cpu" | "cuda" | "auto"); returns the bundle."""
        for m in self._members.values():
            m.to(device)
        return self

    def parameters(self):
        """Every Parameter of every member, member by member."""
        return [p for m in self._members.values() for p in m.parameters()]

    def count_params(self):
        return sum(m.count_params() for m in self._members.values())

    def summary(self, print_fn=print, batch=1, line_length=None):
        """Print each member's ``summary`` table under a heading, then the bundle's total; returns the tables
        (a dict member name -> table)."""
        tables = {}
        for k, m in self._members.items():
            if print_fn is not None:
                print_fn(f'Member "{k}" of bundle "{self.name}"')
            tables[k] = m.summary(batch=batch, print_fn=print_fn, line_length=line_length)
            if print_fn is not None:
                print_fn("")
        if print_fn is not None:
            print_fn(f'Bundle "{self.name}": {len(self)} models, {self.count_params():,} params in all')
        return tables

    def save(self, path, metadata=None):
        """Write the bundle to ``path`` (see ``visionkit.weights.save_bundle``)."""
        from .weights import save_bundle

        save_bundle(self, path, metadata=metadata)

    def __repr__(self):
        parts = ", ".join(f"{k}: {m.count_params():,} params" for k, m in self._members.items())
        return f"<ModelBundle {self.name!r}: {parts}>"
