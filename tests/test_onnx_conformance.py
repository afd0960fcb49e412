"""ONNX backend node tests (onnx/backend/test/data/node/) run through visionkit's ONNX importer.

Each test folder holds model.onnx (one operator), test_data_set_0/input_*.pb and output_*.pb. A folder is in scope
when its model is ONE operator of the importer's list (Constant nodes aside); the "_expanded" variants (several
operators) are not. For each: ``load_onnx`` the model, feed the inputs, compare with the outputs at rtol 1e-3,
atol 1e-5 (what onnx's backend runner uses for float32).

Harness rules (visionkit models take float32 tensors with a batch axis, and hold weights as parameters):
    * a graph input that only feeds a parameter slot (a Conv's weight and bias, BatchNormalization's statistics,
      a Reshape's shape, Resize's scales, Pad's pads, Clip's bounds, ...) and every rank-0 input is baked into
      the model as an initializer with the test's value (``PARAM_SLOTS``);
    * outputs are compared by value (visionkit computes in float32, so an int8 result is compared as floats).

Where the data come from: the env var ONNX_NODE_TEST_DIR, else the installed onnx package if it ships the data
(onnx <= 1.22), else /tmp/onnx122/data/onnx/backend/test/data/node (``pip download onnx==1.22.0 --no-deps`` and
unzip that folder). Without any of them the module is skipped.

Every test skipped on purpose is in ``SKIPS`` (test name -> reason), the one place that says what is not supported.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper

from visionkit.onnx.importer import SUPPORTED_OPS, load_onnx


def node_test_dir():
    env = os.environ.get("ONNX_NODE_TEST_DIR")
    candidates = [env] if env else []
    candidates += [
        os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node"),
        "/tmp/onnx122/data/onnx/backend/test/data/node",
    ]
    for c in candidates:
        if c and os.path.isdir(c):
            return c
    return None


ROOT = node_test_dir()

# the operators this suite covers (the importer's list; Shape/Gather/Slice/Cast/ConstantOfShape as the importer
# runs them: folded at load time, or on a run-time tensor with constant parameters)
OPS = SUPPORTED_OPS

# ONNX input slots that hold parameters rather than data: a graph input feeding only these is baked as a constant
PARAM_SLOTS = {
    "Conv": {1, 2}, "ConvTranspose": {1, 2}, "BatchNormalization": {1, 2, 3, 4}, "Reshape": {1}, "Squeeze": {1},
    "Unsqueeze": {1}, "Slice": {1, 2, 3, 4}, "Pad": {1, 2, 3}, "Clip": {1, 2}, "Resize": {1, 2, 3},
    "Upsample": {1}, "Gather": {1}, "Dropout": {1, 2},
}

_CUBIC = "Resize mode 'cubic' is not implemented (nearest and linear are)"
_ANTIALIAS = "Resize antialias=1 is not implemented"
_CAST = "Cast of a run-time tensor between non-float32 types: visionkit tensors are float32 (Cast is folded at load)"
_INTDIV = "integer Div truncates; visionkit tensors are float32"
_TRAIN_DROPOUT = "training-mode Dropout is random (visionkit imports inference graphs)"
_MASK = "Dropout's mask output is not supported"

SKIPS = {
    # Resize
    **{f"test_resize_{k}": _CUBIC for k in (
        "downsample_scales_cubic", "downsample_scales_cubic_A_n0p5_exclude_outside",
        "downsample_scales_cubic_align_corners", "downsample_sizes_cubic", "upsample_scales_cubic",
        "upsample_scales_cubic_A_n0p5_exclude_outside", "upsample_scales_cubic_align_corners",
        "upsample_scales_cubic_asymmetric", "upsample_sizes_cubic")},
    **{f"test_resize_{k}": _ANTIALIAS for k in (
        "downsample_scales_cubic_antialias", "downsample_scales_linear_antialias",
        "downsample_sizes_cubic_antialias", "downsample_sizes_linear_antialias")},
    # BatchNormalization
    "test_batchnorm_epsilon_training_mode": "BatchNormalization training_mode=1 (batch statistics) is not supported",
    "test_batchnorm_example_training_mode": "BatchNormalization training_mode=1 (batch statistics) is not supported",
    # MaxPool
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's Indices output is not supported",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's Indices output is not supported",
    # Div on integers
    **{f"test_div_{k}": _INTDIV for k in ("int16", "int32_trunc", "int8", "uint16", "uint32", "uint64", "uint8")},
    # Dropout
    "test_training_dropout": _TRAIN_DROPOUT,
    "test_training_dropout_default": _TRAIN_DROPOUT,
    "test_training_dropout_mask": _MASK,
    "test_training_dropout_default_mask": _MASK,
    "test_training_dropout_zero_ratio_mask": _MASK,
    "test_dropout_default_mask": _MASK,
    "test_dropout_default_mask_ratio": _MASK,
    # Reshape
    "test_reshape_allowzero_reordered": "the input has an empty batch (shape (0, 3, 4)); visionkit refuses empty batches",
    # Identity on non-tensor types
    "test_identity_opt": "optional types are not supported (tensors only)",
    "test_identity_sequence": "sequence types are not supported (tensors only)",
    # graphs without a tensor input
    "test_constant": "the graph has no input: a visionkit model needs at least one",
    "test_constantofshape_float_ones": "ConstantOfShape of a run-time shape: the graph computes no tensor from an input",
    "test_constantofshape_int_shape_zero": "ConstantOfShape of a run-time shape: the graph computes no tensor from an "
                                           "input",
    "test_constantofshape_int_zeros": "ConstantOfShape of a run-time shape: the graph computes no tensor from an input",
}



def test_op(model):
    """The operator a single-operator test exercises (Constant nodes aside), or None for a composite graph."""
    ops = {n.op_type for n in model.graph.node if n.op_type != "Constant"}
    if not ops:
        ops = {n.op_type for n in model.graph.node}
    if len(ops) != 1 or any(n.domain not in ("", "ai.onnx") for n in model.graph.node):
        return None
    return next(iter(ops))


test_op.__test__ = False


def collect(root=ROOT):
    """[(test name, operator)] for every in-scope folder."""
    if root is None:
        return []
    out = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "model.onnx")
        if not os.path.isfile(path):
            continue
        op = test_op(onnx.load(path, load_external_data=False))
        if op in OPS:
            out.append((name, op))
    return out


CASES = collect()


def skip_reason(name, op):
    if name in SKIPS:
        return SKIPS[name]
    if op == "Cast":
        return _CAST
    return None


def prepare(folder):
    """(model with parameter inputs baked, {input name: array}, [expected outputs])."""
    model = onnx.load(os.path.join(folder, "model.onnx"))
    data = os.path.join(folder, "test_data_set_0")
    ins = [numpy_helper.to_array(onnx.load_tensor(p)) for p in sorted(glob.glob(os.path.join(data, "input_*.pb")))]
    outs = [numpy_helper.to_array(onnx.load_tensor(p)) for p in sorted(glob.glob(os.path.join(data, "output_*.pb")))]
    inits = {t.name for t in model.graph.initializer}
    real = [v for v in model.graph.input if v.name not in inits]
    feed, bake = {}, []
    for v, a in zip(real, ins):
        uses = [(n.op_type, i) for n in model.graph.node for i, x in enumerate(n.input) if x == v.name]
        if np.ndim(a) == 0 or (uses and all(i in PARAM_SLOTS.get(op, ()) for op, i in uses)):
            bake.append((v, a))
        else:
            feed[v.name] = a
    for v, a in bake:
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(a), v.name))
        model.graph.input.remove(v)
    return model, feed, outs


def run_case(name):
    """Load, run, compare; raises AssertionError / ValueError on a failure."""
    model, feed, outs = prepare(os.path.join(ROOT, name))
    shapes = {k: v.shape for k, v in feed.items()}
    vk = load_onnx(model, input_shape=shapes or None)
    xs = [feed[v.name] for v in model.graph.input if v.name in feed]
    y = vk(xs if len(xs) > 1 else xs[0])
    ys = y if isinstance(y, list) else [y]
    assert len(ys) >= len(outs)
    for got, want in zip(ys, outs):
        want = np.asarray(want)
        assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
        np.testing.assert_allclose(got, want.astype(np.float32) if want.dtype.kind in "fiub" else want,
                                   rtol=1e-3, atol=1e-5)


@pytest.mark.skipif(ROOT is None, reason="ONNX backend node test data not found (see the module docstring)")
@pytest.mark.parametrize("name,op", CASES, ids=[c[0] for c in CASES])
def test_node(name, op):
    reason = skip_reason(name, op)
    if reason:
        pytest.skip(reason)
    run_case(name)


def test_skips_name_real_tests():
    """Every entry of SKIPS names a test folder in scope (no stale entries)."""
    if ROOT is None:
        pytest.skip("ONNX backend node test data not found")
    names = {c[0] for c in CASES}
    stale = sorted(set(SKIPS) - names)
    assert not stale, stale
