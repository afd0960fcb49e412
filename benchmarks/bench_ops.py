"""Kernel benchmarks: convolution forward/backward, depthwise conv, max-pool, and the Python cost of a layer call.

Each visionkit case has peers (torch, onnxruntime) measured in the same run on the same inputs; the closing table
(benchmarks/conftest.py) reports GFLOP/s or GB/s, the share of this run's sgemm rate, and the ratios.
"""

import numpy as np
import pytest

from visionkit import ops
from _harness import median_time, record, run_benchmark

# (name, input shape, out channels, kernel, padding, groups)
CONVS = [
    ("conv 1x64x56x56 -> 64 3x3 pad 1", (1, 64, 56, 56), 64, 3, 1, 1),
    ("conv 32x32x28x28 -> 64 3x3 pad 1", (32, 32, 28, 28), 64, 3, 1, 1),
    ("conv 256x1x28x28 -> 6 5x5", (256, 1, 28, 28), 6, 5, 0, 1),
    ("depthwise 1x144x56x56 3x3 pad 1", (1, 144, 56, 56), 144, 3, 1, 144),
]
IDS = [c[0] for c in CONVS]


def _conv_inputs(shape, out_ch, k, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((out_ch, shape[1] // groups, k, k), dtype=np.float32) * 0.1
    return x, w


def _flops(shape, out_ch, k, pad, groups):
    n, c, h, w = shape
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    return 2 * n * out_ch * oh * ow * (c // groups) * k * k


@pytest.mark.parametrize("case", CONVS, ids=IDS)
def test_conv2d_forward(benchmark, case, sgemm_gflops):
    name, shape, out_ch, k, pad, groups = case
    x, w = _conv_inputs(shape, out_ch, k, groups)
    run_benchmark(benchmark, name + " fwd", "visionkit",
                  lambda: ops.conv2d(x, w, None, 1, pad, 1, groups), (_flops(shape, out_ch, k, pad, groups), "GFLOP"))


@pytest.mark.parametrize("case", CONVS, ids=IDS)
def test_conv2d_backward(benchmark, case, sgemm_gflops):
    name, shape, out_ch, k, pad, groups = case
    x, w = _conv_inputs(shape, out_ch, k, groups)
    gy = np.ones_like(ops.conv2d(x, w, None, 1, pad, 1, groups))
    run_benchmark(benchmark, name + " bwd", "visionkit",
                  lambda: ops.conv2d_backward(gy, x, w, None, 1, pad, 1, groups),
                  (2 * _flops(shape, out_ch, k, pad, groups), "GFLOP"))


@pytest.mark.parametrize("case", CONVS, ids=IDS)
def test_conv2d_torch(case, torch_mod):
    torch = torch_mod
    name, shape, out_ch, k, pad, groups = case
    x, w = _conv_inputs(shape, out_ch, k, groups)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    with torch.no_grad():
        y = torch.nn.functional.conv2d(xt, wt, None, 1, pad, 1, groups)
        record(name + " fwd", "torch", median_time(lambda: torch.nn.functional.conv2d(xt, wt, None, 1, pad, 1, groups)))
        gy = torch.ones_like(y)
        back = lambda: torch.ops.aten.convolution_backward(  # noqa: E731  (input and weight grads, no bias)
            gy, xt, wt, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], groups, [True, True, False])
        record(name + " bwd", "torch", median_time(back))


@pytest.mark.parametrize("case", CONVS, ids=IDS)
def test_conv2d_onnxruntime(case, ort_mod):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    name, shape, out_ch, k, pad, groups = case
    x, w = _conv_inputs(shape, out_ch, k, groups)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[pad] * 4, group=groups, kernel_shape=[k, k])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort_mod.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    sess = ort_mod.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    assert onnx is not None
    record(name + " fwd", "onnxruntime", median_time(lambda: sess.run(None, {"x": x})))


POOL_SHAPE = (32, 64, 28, 28)


def test_max_pool2d(benchmark):
    x = np.random.default_rng(0).standard_normal(POOL_SHAPE, dtype=np.float32)
    moved = x.nbytes * 1.25  # read the input, write a quarter as much
    run_benchmark(benchmark, "max_pool2d 2x2 on 32x64x28x28", "visionkit", lambda: ops.max_pool2d(x, 2),
                  (moved, "GB"))


def test_max_pool2d_torch(torch_mod):
    x = torch_mod.from_numpy(np.random.default_rng(0).standard_normal(POOL_SHAPE, dtype=np.float32))
    with torch_mod.no_grad():
        record("max_pool2d 2x2 on 32x64x28x28", "torch",
               median_time(lambda: torch_mod.nn.functional.max_pool2d(x, 2)))


def test_layer_call_overhead(benchmark):
    """The Python cost of calling a layer: a ReLU on one element is nothing but that cost."""
    from visionkit import layers as L

    layer = L.Activation("relu")
    x = np.ones((1, 1), np.float32)
    layer(x)
    run_benchmark(benchmark, "layer call overhead (ReLU on 1 element)", "visionkit", lambda: layer(x))
