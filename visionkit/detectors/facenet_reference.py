"""facenet-pytorch's MTCNN, the reference visionkit's MTCNN is checked against (tests) and timed against (benchmarks).

facenet-pytorch installs with ``--no-deps`` beside torch 2.13, but its package imports torchvision, which cannot be
installed beside that torch here. Its MTCNN uses one torchvision function, ``torchvision.ops.boxes.batched_nms``;
``reference_mtcnn`` imports facenet's MTCNN module with a stand-in for torchvision that provides that function
(plain greedy NMS per index) and leaves the rest of torchvision as empty modules, never called. Everything it put
in ``sys.modules`` is taken out again on exit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types

WEIGHTS = ("pnet", "rnet", "onet")


def find_facenet():
    """(facenet-pytorch's package folder, None), or (None, why not) when it or its weight files are missing."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None, "facenet-pytorch is not installed (pip install --no-deps facenet-pytorch==2.6.0)"
    root = next(iter(spec.submodule_search_locations))
    if not all(os.path.isfile(os.path.join(root, "data", f"{n}.pt")) for n in WEIGHTS):
        return None, "facenet-pytorch's weight files (data/pnet.pt, rnet.pt, onet.pt) are missing"
    return root, None


def batched_nms(torch):
    """torchvision.ops.batched_nms written plainly: greedy NMS per index, best score first, IoU > threshold
    dropped; indices never suppress each other (each gets its own coordinate offset)."""

    def nms(boxes, scores, idxs, threshold):
        if boxes.numel() == 0:
            return torch.empty(0, dtype=torch.long)
        b = boxes.detach().double()
        b = b + (idxs.double() * (b.max() + 1))[:, None]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        order = torch.argsort(scores.detach(), descending=True, stable=True)
        keep = []
        while order.numel():
            i, rest = order[0], order[1:]
            keep.append(int(i))
            iw = (torch.minimum(b[i, 2], b[rest, 2]) - torch.maximum(b[i, 0], b[rest, 0])).clamp(min=0)
            ih = (torch.minimum(b[i, 3], b[rest, 3]) - torch.maximum(b[i, 1], b[rest, 1])).clamp(min=0)
            inter = iw * ih
            order = rest[~(inter / (area[i] + area[rest] - inter) > threshold)]
        return torch.as_tensor(keep, dtype=torch.long)

    return nms


@contextlib.contextmanager
def reference_mtcnn(torch, root):
    """Yields a namespace with facenet's ``pnet``, ``rnet``, ``onet`` (eval mode, its shipped weights),
    ``detect_face``, ``torch`` and ``root``, imported from the package folder ``root``."""
    stubs = {name: types.ModuleType(name) for name in (
        "torchvision", "torchvision.ops", "torchvision.ops.boxes", "torchvision.transforms",
        "torchvision.transforms.functional")}
    stubs["torchvision.ops.boxes"].batched_nms = batched_nms(torch)
    pkg = types.ModuleType("facenet_pytorch")
    pkg.__path__ = [root]
    models = types.ModuleType("facenet_pytorch.models")
    models.__path__ = [os.path.join(root, "models")]
    mine = {**stubs, "facenet_pytorch": pkg, "facenet_pytorch.models": models}
    saved = {name: sys.modules.get(name) for name in mine}
    before = set(sys.modules)
    try:
        sys.modules.update(mine)
        import facenet_pytorch.models.mtcnn as fm

        yield types.SimpleNamespace(torch=torch, pnet=fm.PNet().eval(), rnet=fm.RNet().eval(), onet=fm.ONet().eval(),
                                    detect_face=fm.detect_face, root=root)
    finally:
        for name in list(sys.modules):
            if name not in before and name.startswith(("facenet_pytorch", "torchvision")):
                del sys.modules[name]
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
