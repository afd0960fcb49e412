"""From a model's raw outputs to named class probabilities, shared by the tasks.

Some architectures end in a softmax and return probabilities already; others return logits. ``to_probabilities``
tells them apart so every task reports probabilities whatever the model ends with.
"""

import numpy as np


def class_names(model, n):
    """The model card's ``class_names`` when it names all ``n`` outputs, else "class 0" .. "class n-1"."""
    names = (getattr(model, "metadata", None) or {}).get("class_names")
    if isinstance(names, (list, tuple)) and len(names) == n:
        return [str(x) for x in names]
    return [f"class {i}" for i in range(n)]


def to_probabilities(scores):
    """Rows of class scores -> rows of probabilities.

    A row set is taken as probabilities when no value is negative and every row sums to 1 (within 1e-3);
    otherwise a (numerically stable) softmax is applied. One output per row is a binary classifier: a sigmoid is
    applied unless the values already lie in [0, 1], and the two classes are (1 - p, p).
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s.reshape(s.shape[0], -1)
    if s.shape[1] == 1:
        p = s[:, 0]
        if p.size and (p.min() < 0 or p.max() > 1):
            p = 1.0 / (1.0 + np.exp(-p))
        return np.stack([1 - p, p], axis=1)
    if s.size and s.min() >= -1e-6 and np.allclose(s.sum(axis=1), 1.0, atol=1e-3):
        return np.clip(s, 0.0, 1.0)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def background_index(model, names):
    """The index of the background (no object) class: the card's ``background_class`` (an index or a name), else
    a class named "background"; None when the model has none."""
    meta = getattr(model, "metadata", None) or {}
    bg = meta.get("background_class")
    if isinstance(bg, bool):
        bg = None
    if isinstance(bg, int):
        if not 0 <= bg < len(names):
            raise ValueError(f"model card: background_class {bg} is not one of the {len(names)} classes")
        return bg
    if isinstance(bg, str):
        if bg not in names:
            raise ValueError(f"model card: background_class {bg!r} is not among the class names")
        return names.index(bg)
    lowered = [n.lower() for n in names]
    return lowered.index("background") if "background" in lowered else None
