"""Transfer learning: a trained model's classifier head replaced for new classes, the rest frozen.

    model = replace_head(vk.load_model("fashion.vk"), num_classes=5)   # a new Dense head, same activation
    freeze_all_but_head(model)                                         # train the head first ...
    for layer in model.layers: layer.trainable = True                  # ... then everything, at a lower rate
"""

from __future__ import annotations

from ..layers import Dense
from ..model import Model


def head_layer(model):
    """The Dense layer that produces the model's (single) output."""
    if len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(model.outputs)} outputs; transfer needs a single head")
    layer = model.outputs[0].node.layer
    if not isinstance(layer, Dense):
        raise ValueError(f"model {model.name!r} ends in {type(layer).__name__} {layer.name!r}, not a Dense head")
    return layer


def replace_head(model, num_classes, seed=None):
    """A model sharing every layer of ``model`` but its last Dense, which becomes a fresh Dense(num_classes) with
    the same activation (initialised from ``seed``). The card's class names are dropped (the classes changed)."""
    old = head_layer(model)
    features = model.outputs[0].node.inbound[0]
    new_head = Dense(num_classes, activation=old.activation, use_bias=old.bias is not None, name=f"{old.name}_new")
    out = new_head(features)
    new = Model(model.inputs[0], out, name=model.name, seed=seed)
    meta = dict(getattr(model, "metadata", None) or {})
    meta.pop("class_names", None)
    meta["transfer"] = {"from": model.name, "old_head": old.name, "num_classes": int(num_classes)}
    new.metadata = meta
    return new


def freeze_all_but_head(model):
    """Mark every layer but the output Dense as not trainable (optimizers skip their parameters)."""
    head = head_layer(model)
    for layer in model.layers:
        layer.trainable = layer is head
    return model
