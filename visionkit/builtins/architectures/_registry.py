"""The architecture registry: a decorator on small builder functions, one model family per module (timm's style).

    @architecture("lenet5", input_shape=(1, 32, 32), num_classes=10, description="...", reference="...")
    def lenet5(num_classes=10, in_channels=1, input_size=None, seed=None) -> vk.Model: ...

Every builder takes the same four keywords: ``num_classes`` and ``in_channels`` (default: the registered
``num_classes`` and ``input_shape[0]``), ``input_size`` ((H, W), or an int for a square; None: the registered
size) and ``seed`` (None: visionkit's global generator, ``vk.set_seed``). It returns a built ``vk.Model``.

``build_model`` is the helper the builders end with. It declares the layers without drawing any weight
(``initializers.deferred()``), then draws every weight once, in graph order, from ``default_rng(seed)`` (exactly
what ``vk.Model(..., seed=seed)`` draws) or from the global generator. Declaring first halves the build time of
the big models (a Model with a seed would otherwise draw every weight twice: once per layer, once again for the
seed). A builder called inside ``deferred()`` itself returns a model whose parameters are only declared (shapes
known, nothing allocated): enough for ``summary`` and ``count_params``, and what a model-file loader wants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

ARCHITECTURES: dict = {}


@dataclass(frozen=True)
class ArchitectureSpec:
    """What the registry knows about one architecture (the builder and its defaults)."""

    name: str
    builder: Callable
    task: str = "classify"
    input_shape: tuple = (3, 224, 224)
    num_classes: int = 1000
    description: str = ""
    reference: str = ""
    family: str = field(default="")

    def build(self, **kwargs):
        return self.builder(**kwargs)


def architecture(name, task="classify", input_shape=(3, 224, 224), num_classes=1000, description="", reference=""):
    """Register the decorated builder under ``name`` (a second builder under the same name is an error)."""
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"architecture {name!r}: input_shape must be (C, H, W), got {input_shape}")

    def register(fn):
        if name in ARCHITECTURES and ARCHITECTURES[name].builder is not fn:
            raise ValueError(
                f"architecture {name!r} is registered twice ({ARCHITECTURES[name].builder.__module__} and "
                f"{fn.__module__})"
            )
        ARCHITECTURES[name] = ArchitectureSpec(
            name=name,
            builder=fn,
            task=task,
            input_shape=input_shape,
            num_classes=int(num_classes),
            description=description,
            reference=reference,
            family=fn.__module__.rsplit(".", 1)[-1],
        )
        fn.architecture_name = name
        return fn

    return register


# ---- helpers shared by the builders ------------------------------------------------------------------------------


def resolve_input_size(input_size, default):
    """``input_size`` as an (H, W) pair of ints (None: ``default``)."""
    if input_size is None:
        return tuple(default)
    if isinstance(input_size, (int, np.integer)):
        input_size = (input_size, input_size)
    hw = tuple(int(d) for d in input_size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"input_size must be (H, W) with positive sizes, got {input_size!r}")
    return hw


def check_counts(num_classes, in_channels):
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
    return int(num_classes), int(in_channels)


def dropout_seed(seed, k):
    """A dropout layer's own seed, derived from the builder's (None stays None: the global generator)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), 1 + int(k)]).generate_state(1)[0] & 0x7FFFFFFF)


def build_model(graph, name, seed=None, metadata=None):
    """Run ``graph()`` (which makes the layers and returns ``(inputs, outputs)``) with the weights only declared,
    wrap it in a ``vk.Model`` and draw the weights once (see the module docstring)."""
    import visionkit as vk
    from visionkit.layers import initializers

    outer_deferred = initializers.is_deferred()
    with initializers.deferred():
        inputs, outputs = graph()
        model = vk.Model(inputs, outputs, name=name)
    if not outer_deferred:
        rng = np.random.default_rng(seed) if seed is not None else initializers.global_rng()
        model.initialize(rng)
    model.metadata = dict(metadata or {})
    return model


def classify_metadata(arch, in_channels, hw, num_classes):
    """The model card every classification builder attaches (``model.metadata``; saved with the model)."""
    return {
        "architecture": arch,
        "task": "classify",
        "input_shape": [int(in_channels), int(hw[0]), int(hw[1])],
        "num_classes": int(num_classes),
    }
