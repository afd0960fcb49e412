"""Convert facenet-pytorch's MTCNN weights into visionkit's format: one bundle file with P-Net, R-Net and O-Net.

    pip install --no-deps facenet-pytorch==2.6.0      # only its data files are read; torchvision is not needed
    python scripts/convert_mtcnn.py [--out visionkit/builtins/models/mtcnn.vk] [--facenet-dir DIR]

Reads ``facenet_pytorch/data/{pnet,rnet,onet}.pt`` (plain state dicts) with ``torch.load(weights_only=True)``,
without importing facenet_pytorch (its __init__ imports torchvision). Builds the three networks as visionkit models
(``visionkit.detectors.mtcnn.build_*``), copies the weights, checks each network against an independent torch
implementation of facenet's forward on random inputs (max abs difference < 1e-4 on every output), and writes the
bundle with the provenance and license in its metadata.

Layouts: convolution kernels (OIHW), dense kernels (out, in), biases and PReLU slopes move unchanged. R-Net's and
O-Net's first dense layer read, in facenet's code, the conv map permuted to (N, W, H, C) and flattened; visionkit's
Flatten reads (N, C, H, W). The converter therefore reorders that layer's input columns, from (w, h, c) order to
(c, h, w) order: the same function, computed exactly as facenet does.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(ROOT, "visionkit", "builtins", "models", "mtcnn.vk")
FACENET_VERSION = "2.6.0"

METADATA = {
    "task": "detect",
    "detector": "mtcnn",
    "class_names": ["face"],
    "source": "facenet-pytorch 2.6.0 (PyPI), facenet_pytorch/data/{pnet,rnet,onet}.pt, converted by "
              "scripts/convert_mtcnn.py",
    "license": "MIT (facenet-pytorch, Copyright (c) 2019 Timothy Esler); original MTCNN weights by Kaipeng Zhang "
               "et al.",
    "preprocessing": {
        "channels": "RGB",
        "layout": "NCHW",
        "mean": [127.5, 127.5, 127.5],
        "std": [128.0, 128.0, 128.0],
        "formula": "(pixel - 127.5) * 0.0078125",
        "resize": "area averaging (torch interpolate mode='area' = adaptive average pooling)",
        "input_sizes": {"pnet": "any (>= 12x12)", "rnet": [24, 24], "onet": [48, 48]},
    },
    "outputs": {
        "pnet": ["reg (N, 4, h, w)", "prob (N, 2, h, w)"],
        "rnet": ["reg (N, 4)", "prob (N, 2)"],
        "onet": ["reg (N, 4)", "landmarks (N, 10): x1..x5, y1..y5", "prob (N, 2)"],
    },
    "defaults": {"min_size": 20, "factor": 0.709, "thresholds": [0.6, 0.7, 0.7], "nms_thresholds": [0.7, 0.7, 0.7]},
    "reference": "K. Zhang, Z. Zhang, Z. Li, Y. Qiao: Joint Face Detection and Alignment using Multi-task Cascaded "
                 "Convolutional Networks, IEEE Signal Processing Letters 23(10), 2016",
}

# the dense layer that reads the last conv map, and that map's (C, H, W)
_FLATTEN_DENSE = {"rnet": ("dense4", (64, 3, 3)), "onet": ("dense5", (128, 3, 3))}


def facenet_data_dir():
    """facenet_pytorch/data of the installed package, found without importing it."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("facenet-pytorch is not installed (pip install --no-deps facenet-pytorch==2.6.0)")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def load_state_dicts(data_dir=None):
    """{"pnet": {name: numpy array}, "rnet": ..., "onet": ...} from facenet's .pt files."""
    import torch

    data_dir = data_dir or facenet_data_dir()
    out = {}
    for net in ("pnet", "rnet", "onet"):
        sd = torch.load(os.path.join(data_dir, f"{net}.pt"), map_location="cpu", weights_only=True)
        out[net] = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in sd.items()}
    return out


def to_visionkit(net, model, state):
    """Copy facenet's state dict ``state`` into the visionkit ``model`` (names and shapes checked)."""
    used = set()
    flatten = _FLATTEN_DENSE.get(net)
    for layer in model.layers:
        for p in layer.parameters():
            short = p.name.rpartition("/")[2]
            key = f"{layer.name}." + {"kernel": "weight", "bias": "bias", "alpha": "weight"}[short]
            if key not in state:
                raise KeyError(f"{net}: facenet's state dict has no {key!r} for {p.name}")
            a = state[key]
            if flatten and layer.name == flatten[0] and short == "kernel":
                C, Hh, Ww = flatten[1]
                a = a.reshape(a.shape[0], Ww, Hh, C).transpose(0, 3, 2, 1).reshape(a.shape[0], -1)
            if a.shape != p.shape:
                raise ValueError(f"{net}: {key} has shape {a.shape}, {p.name} needs {p.shape}")
            p.value = np.ascontiguousarray(a, np.float32)
            used.add(key)
    left = set(state) - used
    if left:
        raise ValueError(f"{net}: facenet weights not used: {sorted(left)}")
    return model


def torch_forward(net, state, x):
    """facenet-pytorch's forward of ``net`` written with torch.nn.functional on the state dict (numpy in/out)."""
    import torch
    import torch.nn.functional as F

    t = {k: torch.from_numpy(v) for k, v in state.items()}
    h = torch.from_numpy(np.ascontiguousarray(x, np.float32))

    def conv(h, name):
        return F.prelu(F.conv2d(h, t[f"conv{name}.weight"], t[f"conv{name}.bias"]), t[f"prelu{name}.weight"])

    def pool(h, k, s):
        return F.max_pool2d(h, k, s, ceil_mode=True)

    def dense(h, name):
        return F.linear(h, t[f"{name}.weight"], t[f"{name}.bias"])

    with torch.no_grad():
        if net == "pnet":
            h = conv(pool(conv(h, "1"), 2, 2), "2")
            h = conv(h, "3")
            prob = F.softmax(F.conv2d(h, t["conv4_1.weight"], t["conv4_1.bias"]), dim=1)
            reg = F.conv2d(h, t["conv4_2.weight"], t["conv4_2.bias"])
            outs = [reg, prob]
        elif net == "rnet":
            h = pool(conv(h, "1"), 3, 2)
            h = pool(conv(h, "2"), 3, 2)
            h = conv(h, "3").permute(0, 3, 2, 1).contiguous()
            h = F.prelu(dense(h.view(h.shape[0], -1), "dense4"), t["prelu4.weight"])
            outs = [dense(h, "dense5_2"), F.softmax(dense(h, "dense5_1"), dim=1)]
        else:
            h = pool(conv(h, "1"), 3, 2)
            h = pool(conv(h, "2"), 3, 2)
            h = pool(conv(h, "3"), 2, 2)
            h = conv(h, "4").permute(0, 3, 2, 1).contiguous()
            h = F.prelu(dense(h.view(h.shape[0], -1), "dense5"), t["prelu5.weight"])
            outs = [dense(h, "dense6_2"), dense(h, "dense6_3"), F.softmax(dense(h, "dense6_1"), dim=1)]
    return [o.numpy() for o in outs]


def parity(net, model, state, seed=0):
    """Max abs difference between the visionkit model and the torch forward on random inputs in the normalised
    pixel range (a batch of 3; P-Net also on a non-square size)."""
    rng = np.random.default_rng(seed)
    sizes = {"pnet": [(37, 53), (12, 12)], "rnet": [(24, 24)], "onet": [(48, 48)]}[net]
    worst = 0.0
    for hw in sizes:
        x = rng.uniform(-1.0, 1.0, (3, 3) + hw).astype(np.float32)
        ours = model.predict(x)
        ref = torch_forward(net, state, x)
        for a, b in zip(ours, ref):
            assert a.shape == b.shape, (net, a.shape, b.shape)
            worst = max(worst, float(np.abs(a - b).max()))
    return worst


def convert(data_dir=None):
    """(ModelBundle, {net: max abs diff}); raises AssertionError when a net misses the 1e-4 parity bar."""
    from visionkit.bundle import ModelBundle
    from visionkit.detectors.mtcnn import build_onet, build_pnet, build_rnet

    states = load_state_dicts(data_dir)
    builders = {"pnet": build_pnet, "rnet": build_rnet, "onet": build_onet}
    members, diffs = {}, {}
    for net, build in builders.items():
        model = to_visionkit(net, build(), states[net])
        diffs[net] = parity(net, model, states[net])
        if not diffs[net] < 1e-4:
            raise AssertionError(f"{net}: max abs difference {diffs[net]:.3g} vs torch (needs < 1e-4)")
        members[net] = model
    return ModelBundle(members, metadata=dict(METADATA), name="mtcnn"), diffs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="where to write the bundle (default: %(default)s)")
    ap.add_argument("--facenet-dir", default=None, help="facenet_pytorch/data (default: the installed package's)")
    args = ap.parse_args(argv)

    from visionkit.weights import load_model, save_bundle

    bundle, diffs = convert(args.facenet_dir)
    for net, d in diffs.items():
        print(f"{net}: {bundle[net].count_params():,} params, max abs diff vs torch {d:.3g}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_bundle(bundle, args.out)
    back = load_model(args.out)
    for net in bundle:
        for p, q in zip(bundle[net].parameters(), back[net].parameters()):
            assert p.name == q.name and np.array_equal(p.value, q.value), (net, p.name)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {size:,} bytes, {bundle.count_params():,} params")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
