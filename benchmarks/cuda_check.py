"""The CUDA backend on a real GPU: every op against its CPU twin on realistic shapes, whole models and a training
step against the CPU, then timings against PyTorch CUDA (cuDNN) measured in the same run.

    NUMBA_ENABLE_CUDASIM=0 python benchmarks/cuda_check.py --out cuda_check.json      # on a machine with a GPU
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/cuda_check.py --tiny --no-timing         # dry run on the simulator

The unit tests (tests/test_cuda_backend.py) run the same kernels under Numba's simulator on tiny shapes, where a
block never has more than a few threads and a race cannot show; this script is the check on hardware. It prints
one line per case and exits non-zero if any case disagrees with the CPU beyond float32 rounding.
"""

# ruff: noqa: B023  (twin() calls each case's lambda at once, inside the loop that binds its variables)

import argparse
import json
import os
import statistics
import sys
import time
import traceback

import numpy as np

from visionkit import ops
from visionkit.device import is_device_array

RNG = np.random.default_rng(0)
RESULTS = {"ops": [], "models": [], "timings": [], "failures": 0}
# max |cuda - cpu| / max |cpu|: float32 sums in another order differ by a few ulps of the largest term
REL_TOL = 2e-4


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _flat(out):
    if isinstance(out, (tuple, list)):
        for o in out:
            yield from _flat(o)
    elif out is not None:
        yield out


def _host(a):
    return ops.to_numpy(a) if is_device_array(a) else a


def compare(name, cpu_out, gpu_out, kind="ops", tol=REL_TOL):
    """Record the worst relative difference of every array in two (nested) results."""
    worst, err = 0.0, None
    try:
        a_all, b_all = list(_flat(cpu_out)), [_host(o) for o in _flat(gpu_out)]
        if len(a_all) != len(b_all):
            raise AssertionError(f"{len(a_all)} results on the CPU, {len(b_all)} on CUDA")
        for a, b in zip(a_all, b_all):
            if not isinstance(a, np.ndarray):
                if a != b:
                    raise AssertionError(f"{a!r} != {b!r}")
                continue
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape or a.dtype != b.dtype:
                raise AssertionError(f"CPU {a.shape} {a.dtype}, CUDA {b.shape} {b.dtype}")
            if a.dtype.kind in "iub":
                mismatch = int(np.count_nonzero(a != b))
                if mismatch:
                    raise AssertionError(f"{mismatch} of {a.size} integers differ")
                continue
            if not np.array_equal(np.isnan(a), np.isnan(b)):
                raise AssertionError("NaN in different places")
            fin = np.isfinite(a)
            if not np.array_equal(a[~fin & ~np.isnan(a)], b[~fin & ~np.isnan(a)]):
                raise AssertionError("infinities differ")
            scale = float(np.max(np.abs(a[fin]))) if fin.any() else 0.0
            diff = float(np.max(np.abs(a[fin].astype(np.float64) - b[fin]))) if fin.any() else 0.0
            worst = max(worst, diff / max(scale, 1e-30))
        if worst > tol:
            raise AssertionError(f"relative difference {worst:.2e} > {tol:.0e}")
    except Exception as e:  # noqa: BLE001 - every case reports, none stops the run
        err = f"{type(e).__name__}: {e}"
    ok = err is None
    RESULTS[kind].append({"case": name, "ok": ok, "rel_err": worst, "error": err})
    RESULTS["failures"] += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {kind:6s} {name:55s} rel err {worst:.1e}" + ("" if ok else f"  {err}"),
          flush=True)


def twin(name, fn, *arrays, tol=REL_TOL):
    """Run fn on numpy inputs (CPU backend) and on device copies (CUDA backend); compare the results."""
    try:
        dev = [ops.to_device(a, "cuda") if isinstance(a, np.ndarray) else a for a in arrays]  # before fn
        cpu_out = fn(*arrays)  # may update arrays in place (batch-norm running statistics)
        gpu_out = fn(*dev)
    except Exception as e:  # noqa: BLE001
        RESULTS["ops"].append({"case": name, "ok": False, "rel_err": None, "error": repr(e)})
        RESULTS["failures"] += 1
        print(f"FAIL ops    {name:55s} raised {e!r}", flush=True)
        traceback.print_exc()
        return
    compare(name, cpu_out, gpu_out, tol=tol)


# ------------------------------------------------------------------------------------------------------ ops


def check_ops(s):
    """s: spatial scale (1 on a GPU; the dry run on the simulator uses tiny shapes)."""
    n, c, hw = (8, 64, 56) if s else (2, 3, 6)
    x = rand(n, c, hw, hw)
    convs = [  # (name, cin, cout, k, stride, pad, dil, groups)
        ("3x3 pad 1", c, c, 3, 1, 1, 1, 1),
        ("1x1", c, 2 * c, 1, 1, 0, 1, 1),
        ("3x3 stride 2", c, c, 3, 2, 1, 1, 1),
        ("7x7 stride 2 pad 3 (ResNet stem)", c, c, 7, 2, 3, 1, 1),
        ("3x3 dilation 2", c, c, 3, 1, 2, 2, 1),
        ("depthwise 3x3", c, c, 3, 1, 1, 1, c),
        ("depthwise x2 multiplier", c, 2 * c, 3, 2, 1, 1, c),
        ("grouped 4", c, c, 3, 1, 1, 1, 4 if c % 4 == 0 else 1),
    ]
    for name, cin, cout, k, st, pd, dl, g in convs:
        w, b = rand(cout, cin // g, k, k, scale=0.1), rand(cout)
        y = ops.conv2d(x, w, b, st, pd, dl, g)
        gy = rand(*y.shape)
        twin(f"conv2d {name}", lambda x, w, b: ops.conv2d(x, w, b, st, pd, dl, g), x, w, b)
        twin(f"conv2d_backward {name}",
             lambda gy, x, w, b: ops.conv2d_backward(gy, x, w, b, st, pd, dl, g), gy, x, w, b)
    w, b = rand(c, c, 3, 3, scale=0.1), rand(c)
    twin("conv2d_relu 3x3", lambda x, w, b: ops.conv2d_relu(x, w, b, 1, 1), x, w, b)
    wt = rand(c, c // 2, 4, 4, scale=0.1)
    xt = x[:, :, : hw // 2, : hw // 2].copy()
    twin("conv_transpose2d 4x4 stride 2 pad 1", lambda x, w: ops.conv_transpose2d(x, w, None, 2, 1), xt, wt)
    yt = ops.conv_transpose2d(xt, wt, None, 2, 1)
    twin("conv_transpose2d_backward", lambda gy, x, w: ops.conv_transpose2d_backward(gy, x, w, None, 2, 1),
         rand(*yt.shape), xt, wt)
    # wide 1-channel input with a big batch (LeNet's first layer): the thin-conv paths and two-stage reductions
    x1, w1 = rand(16 * n, 1, 28, 28) if s else rand(4, 1, 8, 8), rand(6, 1, 5, 5, scale=0.2)
    twin("conv2d 1->6 5x5 big batch", lambda x, w: ops.conv2d(x, w), x1, w1)
    twin("conv2d_backward 1->6 5x5 big batch", lambda gy, x, w: ops.conv2d_backward(gy, x, w),
         rand(*ops.conv2d(x1, w1).shape), x1, w1)

    # pooling
    for k, st, pd, ceil in [(2, 2, 0, False), (3, 2, 1, False), (3, 2, 0, True)]:
        y, idx = ops.max_pool2d(x, k, st, pd, ceil_mode=ceil, return_indices=True)
        twin(f"max_pool2d {k}/{st} pad {pd} ceil {ceil}",
             lambda x: ops.max_pool2d(x, k, st, pd, ceil_mode=ceil, return_indices=True), x)
        twin(f"max_pool2d_backward {k}/{st}", lambda gy, i: ops.max_pool2d_backward(gy, i, x.shape), rand(*y.shape),
             idx)
        twin(f"avg_pool2d {k}/{st} pad {pd}", lambda x: ops.avg_pool2d(x, k, st, pd, ceil), x)
        ya = ops.avg_pool2d(x, k, st, pd, ceil)
        twin(f"avg_pool2d_backward {k}/{st}",
             lambda gy: ops.avg_pool2d_backward(gy, x.shape, k, st, pd, ceil), rand(*ya.shape))
    twin("adaptive_avg_pool2d 7", lambda x: ops.adaptive_avg_pool2d(x, 7), x)
    twin("adaptive_avg_pool2d_backward 7", lambda gy: ops.adaptive_avg_pool2d_backward(gy, x.shape),
         rand(n, c, 7, 7))
    twin("global_avg_pool2d", lambda x: ops.global_avg_pool2d(x), x)
    twin("global_max_pool2d", lambda x: ops.global_max_pool2d(x, return_indices=True), x)
    twin("channel_max_pool 4", lambda x: ops.channel_max_pool(x, 4 if c % 4 == 0 else 1, return_indices=True), x)

    # normalisation
    mean, var = rand(c, scale=0.1), np.abs(rand(c)) + 0.5
    gamma, beta = rand(c), rand(c)
    twin("batch_norm eval", lambda x, m, v, g, b: ops.batch_norm(x, m, v, g, b, False), x, mean, var, gamma, beta)
    twin("batch_norm train (+running stats)",
         lambda x, m, v, g, b: (ops.batch_norm(x, m, v, g, b, True), m, v),
         x, mean.copy(), var.copy(), gamma, beta)
    for training in (False, True):
        twin(f"batch_norm_backward training={training}",
             lambda gy, x, m, v, g: ops.batch_norm_backward(gy, x, m, v, g, training), rand(*x.shape), x, mean, var,
             gamma)
    twin("local_response_norm 5", lambda x: ops.local_response_norm(x, 5, 1e-4, 0.75, 2.0), x)
    twin("local_response_norm_backward 5",
         lambda gy, x: ops.local_response_norm_backward(gy, x, 5, 1e-4, 0.75, 2.0), rand(*x.shape), x)

    # dense, activations, softmax, dropout
    xf, wf, bf = rand(256, 3136) if s else rand(4, 20), rand(64, 3136 if s else 20, scale=0.05), rand(64)
    twin("linear 256x3136 -> 64", lambda x, w, b: ops.linear(x, w, b), xf, wf, bf)
    twin("linear_backward", lambda gy, x, w, b: ops.linear_backward(gy, x, w, b), rand(xf.shape[0], 64), xf, wf, bf)
    for act in ("relu", "relu6", "leaky_relu", "elu", "selu", "tanh", "sigmoid", "hardsigmoid", "hardswish"):
        f = getattr(ops, act)
        y = f(x)
        twin(f"{act}", f, x)
        arg2 = y if act in ("tanh", "sigmoid") else x
        twin(f"{act}_backward", lambda gy, a: getattr(ops, act + "_backward")(gy, a), rand(*x.shape), arg2)
    logits = rand(256, 1000) if s else rand(3, 7)
    twin("softmax", lambda z: ops.softmax(z), logits)
    twin("log_softmax", lambda z: ops.log_softmax(z), logits)
    sm = ops.softmax(logits)
    twin("softmax_backward", lambda gy, y: ops.softmax_backward(gy, y), rand(*logits.shape), sm)
    twin("dropout 0.3 seeded (same mask)", lambda x: ops.dropout(x, 0.3, True, seed=7, return_mask=True), x)
    a = rand(c, scale=0.1)
    twin("prelu", lambda x, a: ops.prelu(x, a), x, a)
    twin("prelu_backward", lambda gy, x, a: ops.prelu_backward(gy, x, a), rand(*x.shape), x, a)
    sc = rand(n, c)
    twin("scale_channels (SE)", lambda x, s_: ops.scale_channels(x, s_), x, sc)
    twin("scale_channels_backward", lambda gy, x, s_: ops.scale_channels_backward(gy, x, s_), rand(*x.shape), x, sc)

    # resampling and tensor plumbing
    for mode, align in [("nearest", None), ("bilinear", False), ("bilinear", True)]:
        twin(f"interpolate x2 {mode} align={align}",
             lambda x: ops.interpolate(x, scale_factor=2, mode=mode, align_corners=align), x)
        twin(f"interpolate_backward x2 {mode} align={align}",
             lambda gy: ops.interpolate_backward(gy, x.shape, scale_factor=2, mode=mode, align_corners=align),
             rand(n, c, 2 * hw, 2 * hw))
    for mode in ("constant", "reflect", "replicate"):
        twin(f"pad {mode}", lambda x: ops.pad(x, (1, 2, 3, 1), mode), x)
    twin("add", lambda a, b: ops.add(a, b), x, rand(*x.shape))
    for act in ("relu", "relu6"):
        twin(f"add_act {act}", lambda a, b: ops.add_act(a, b, act), x, rand(*x.shape))
    _check_blocks(x, c)
    twin("concat", lambda a, b: ops.concat([a, b]), x, rand(n, 3, hw, hw))
    twin("concat_backward", lambda gy: ops.concat_backward(gy, [c, 3]), rand(n, c + 3, hw, hw))


def _stage(o, c, k, bn=True, activation="relu6"):
    """(weight, bias, bn, activation) as ops.expand_depthwise_project takes each stage."""
    stats = (rand(o, scale=0.2), np.abs(rand(o)) + 0.5, rand(o), rand(o), 1e-3) if bn else None
    return rand(o, c, k, k, scale=1 / np.sqrt(c * k * k)), rand(o, scale=0.1), stats, activation


def _check_blocks(x, c):
    """MobileNetV2's inverted residual block (one kernel on the CPU, three convs on CUDA): plain, strided, and the
    stem form whose first conv is a 3x3/2."""
    e = 4 * c
    cases = [("expand 4x, residual", _stage(e, c, 1), {}, c, True),
             ("expand 4x, depthwise stride 2", _stage(e, c, 1), {"stride": 2}, c // 2, False),
             ("3x3/2 first conv (stem)", _stage(c, c, 3),
              {"expand_stride": 2, "expand_padding": 1}, c, False)]
    for name, expand, kw, out, residual in cases:
        ce = expand[0].shape[0]
        dw, pj = _stage(ce, 1, 3), _stage(out, ce, 1, activation=None)
        twin(f"expand_depthwise_project {name}",
             lambda x: ops.expand_depthwise_project(x, expand, dw, pj, padding=1, residual=residual, **kw), x)


# --------------------------------------------------------------------------------------------------- models


def _build(arch, **kw):
    from visionkit import registry

    return registry.build(arch, seed=0, **kw)


def check_models(tiny):
    cases = [("keras-mnist-cnn", 64, {}), ("lenet5", 64, {}), ("cifar10-bn", 16, {}),
             ("resnet18", 2, {}), ("mobilenet_v2", 2, {}), ("googlenet", 1, {}), ("digits-fcn", 4, {})]
    if tiny:
        cases = [("keras-mnist-cnn", 2, {})]
    for arch, batch, kw in cases:
        try:
            model = _build(arch, **kw)
            x = RNG.random((batch,) + tuple(model.inputs[0].shape[1:]), dtype=np.float32)
            y_cpu = model(x)
            gy = rand(*y_cpu.shape)  # not ones: through a softmax the gradient of a sum is zero
            g_cpu = model.backward(gy)
            pg_cpu = {p.name: np.array(p.grad) for p in model.parameters() if p.grad is not None}
            model.to("cuda")
            y_gpu = model(x)
            compare(f"{arch} b{batch} forward", y_cpu, y_gpu, "models")
            g_gpu = model.backward(gy)
            named = [("input", g_cpu, g_gpu)] + [
                (p.name, pg_cpu[p.name], ops.to_numpy(p.grad)) for p in model.parameters() if p.name in pg_cpu]
            grads_against_float64(f"{arch} b{batch} backward ({len(named)} grads)", model, x, gy, named)
            pred = model.predict(x, batch_size=max(1, batch // 2))
            model.to("cpu")
            compare(f"{arch} b{batch} predict (inference fusion)", model.predict(x, batch_size=max(1, batch // 2)),
                    pred, "models")
        except Exception as e:  # noqa: BLE001
            RESULTS["models"].append({"case": arch, "ok": False, "error": repr(e)})
            RESULTS["failures"] += 1
            print(f"FAIL models {arch} raised {e!r}", flush=True)
            traceback.print_exc()


def grads_against_float64(name, model, x, gy, named):
    """Judge the float32 gradients of both devices against the same model run in float64 on the GPU.

    In a deep network, float32 gradients of the CPU and the GPU differ by more than rounding wherever a ReLU's input
    sits near 0 and the two sum in different orders; a float64 run is the referee. A kernel bug shows as the GPU's
    float32 error far above the CPU's (or, when the bug is in both GPU dtypes, as the CPU's error alone).
    """
    saved = [(p, p.value) for p in model.parameters()]
    try:
        for p in model.parameters():
            p.value = ops.to_device(ops.to_numpy(p.value).astype(np.float64), "cuda")
        model(ops.to_device(x.astype(np.float64), "cuda"))
        g64 = model.backward(ops.to_device(gy.astype(np.float64), "cuda"))
        ref = {"input": ops.to_numpy(g64)}
        ref.update({p.name: ops.to_numpy(p.grad) for p in model.parameters() if p.grad is not None})
    finally:
        for p, v in saved:
            p.value = v

    def rel(a, r):
        return float(np.max(np.abs(a.astype(np.float64) - r)) / max(float(np.max(np.abs(r))), 1e-30))

    rows = [(n, rel(c, ref[n]), rel(g, ref[n])) for n, c, g in named if n in ref]
    e_cpu, e_gpu = max(r[1] for r in rows), max(r[2] for r in rows)
    worst = max(rows, key=lambda r: r[2] / max(r[1], 1e-7))
    ok = e_gpu <= max(10 * e_cpu, 1e-4)
    RESULTS["models"].append({"case": name, "ok": ok, "rel_err": e_gpu, "cpu_rel_err": e_cpu,
                              "worst": {"array": worst[0], "cpu": worst[1], "gpu": worst[2]}})
    RESULTS["failures"] += not ok
    print(f"{'ok  ' if ok else 'FAIL'} models {name:55s} vs float64: CPU {e_cpu:.1e}, GPU {e_gpu:.1e} "
          f"(GPU/CPU worst: {worst[0]} {worst[2]:.1e} / {worst[1]:.1e})", flush=True)


def check_training(tiny):
    """Two identical models train 3 Adam steps on the same batches, one per device: the weights must agree."""
    from visionkit.train.losses import SoftmaxCrossEntropy
    from visionkit.train.optim import Adam

    batch = 4 if tiny else 128
    models = {dev: _build("keras-mnist-cnn").to(dev) for dev in ("cpu", "cuda")}
    opts = {dev: Adam(m.parameters(), lr=1e-3) for dev, m in models.items()}
    for step in range(3):
        x = RNG.random((batch, 1, 28, 28), dtype=np.float32)
        t = RNG.integers(0, 10, batch)
        for dev, m in models.items():
            loss = SoftmaxCrossEntropy()
            opts[dev].zero_grad()
            loss(m(x, training=True), t)
            m.backward(loss.backward())
            opts[dev].step()
    compare("keras-mnist-cnn 3 Adam steps: weights", [p.value for p in models["cpu"].parameters()],
            [p.value for p in models["cuda"].parameters()], "models", tol=1e-3)


# -------------------------------------------------------------------------------------------------- timings


def _median_ms(fn, sync, repeat=30, warmup=3):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _record(case, vk_ms, torch_ms, work=None):
    row = {"case": case, "visionkit_ms": vk_ms, "torch_ms": torch_ms}
    if torch_ms:
        row["visionkit_over_torch"] = vk_ms / torch_ms
    if work:
        row["visionkit_" + work[1] + "/s"] = work[0] / vk_ms / 1e6
    RESULTS["timings"].append(row)
    extra = f"  torch {torch_ms:8.3f} ms  ratio {vk_ms / torch_ms:6.2f}x" if torch_ms else ""
    rate = f"  {work[0] / vk_ms / 1e6:8.1f} {work[1]}/s" if work else ""
    print(f"time  {case:58s} visionkit {vk_ms:8.3f} ms{extra}{rate}", flush=True)


def _torch():
    """torch with CUDA, TF32 off (visionkit computes in true float32), or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, TF32 off", flush=True)
    return torch


CONVS = [("conv 1x64x56x56 -> 64 3x3 pad 1", (1, 64, 56, 56), 64, 3, 1, 1),
         ("conv 32x32x28x28 -> 64 3x3 pad 1", (32, 32, 28, 28), 64, 3, 1, 1),
         ("conv 256x1x28x28 -> 6 5x5", (256, 1, 28, 28), 6, 5, 0, 1),
         ("depthwise 1x144x56x56 3x3 pad 1", (1, 144, 56, 56), 144, 3, 1, 144),
         ("conv 32x128x28x28 -> 128 3x3 pad 1", (32, 128, 28, 28), 128, 3, 1, 1)]
MODELS = [("keras-mnist-cnn", 256), ("lenet5", 256), ("resnet18", 1), ("resnet18", 32), ("mobilenet_v2", 1),
          ("mobilenet_v2", 32)]


def time_conv(torch, name, shape, cout, k, pad, g):
    from numba import cuda

    x, w = rand(*shape), rand(cout, shape[1] // g, k, k, scale=0.1)
    oh = shape[2] + 2 * pad - k + 1
    flops = 2 * shape[0] * cout * oh * oh * (shape[1] // g) * k * k
    dx, dw = cuda.to_device(x), cuda.to_device(w)
    dy = ops.conv2d(dx, dw, None, 1, pad, 1, g)
    dgy = cuda.to_device(np.ones(dy.shape, np.float32))
    vk_f = _median_ms(lambda: ops.conv2d(dx, dw, None, 1, pad, 1, g), cuda.synchronize)
    vk_b = _median_ms(lambda: ops.conv2d_backward(dgy, dx, dw, None, 1, pad, 1, g), cuda.synchronize)
    t_f = t_b = None
    if torch:
        tx = torch.from_numpy(x).cuda().requires_grad_(True)
        tw = torch.from_numpy(w).cuda().requires_grad_(True)
        tgy = torch.ones(dy.shape, device="cuda")
        with torch.no_grad():
            t_f = _median_ms(lambda: torch.nn.functional.conv2d(tx, tw, None, 1, pad, 1, g), torch.cuda.synchronize)

        def fwd_bwd():
            y = torch.nn.functional.conv2d(tx, tw, None, 1, pad, 1, g)
            return torch.autograd.grad(y, (tx, tw), tgy)
        t_b = _median_ms(fwd_bwd, torch.cuda.synchronize) - t_f  # its backward alone: fwd+bwd less fwd
    _record(name + " fwd", vk_f, t_f, (flops, "GFLOP"))
    _record(name + " bwd", vk_b, t_b, (2 * flops, "GFLOP"))


def time_max_pool(torch):
    from numba import cuda

    x = rand(32, 64, 28, 28)
    dx = cuda.to_device(x)
    t_mp = None
    if torch:
        tx = torch.from_numpy(x).cuda()
        t_mp = _median_ms(lambda: torch.nn.functional.max_pool2d(tx, 2), torch.cuda.synchronize)
    _record("max_pool2d 2x2 32x64x28x28", _median_ms(lambda: ops.max_pool2d(dx, 2), cuda.synchronize), t_mp,
            (x.nbytes * 1.25, "GB"))


def time_forward(torch, arch, batch):
    """A whole forward, input already on the device, against torch's twin (same architecture, random weights)."""
    from numba import cuda

    model = _build(arch).to("cuda")
    shape = (batch,) + tuple(model.inputs[0].shape[1:])
    dx = cuda.to_device(RNG.random(shape, dtype=np.float32))
    vk = _median_ms(lambda: model(dx, keep_tape=False), cuda.synchronize, repeat=20)
    tm = None
    net = _torch_net(arch) if torch else None
    if net is not None:
        tx = torch.rand(shape, device="cuda")
        with torch.no_grad():
            tm = _median_ms(lambda: net(tx), torch.cuda.synchronize, repeat=20)
    _record(f"{arch} forward b{batch}", vk, tm)


def time_train_step(torch):
    """One training step (forward, loss, backward, Adam) of the MNIST CNN at batch 128, batch from host memory."""
    from numba import cuda

    from visionkit.train.losses import SoftmaxCrossEntropy
    from visionkit.train.optim import Adam

    model = _build("keras-mnist-cnn").to("cuda")
    opt, loss = Adam(model.parameters(), lr=1e-3), SoftmaxCrossEntropy()
    xb = RNG.random((128, 1, 28, 28), dtype=np.float32)
    tb = RNG.integers(0, 10, 128)

    def vk_step():
        opt.zero_grad()
        loss(model(xb, training=True), tb)
        model.backward(loss.backward())
        opt.step()
    vk = _median_ms(vk_step, cuda.synchronize, repeat=20)
    tm = None
    if torch:
        net = _torch_net("keras-mnist-cnn").train()
        topt = torch.optim.Adam(net.parameters(), lr=1e-3)
        txb, ttb = torch.from_numpy(xb), torch.from_numpy(tb)

        def t_step():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(net(txb.cuda()), ttb.cuda()).backward()
            topt.step()
        tm = _median_ms(t_step, torch.cuda.synchronize, repeat=20)
    _record("keras-mnist-cnn train step b128 (Adam)", vk, tm)


def timings(only=None):
    """Every timing case, or those whose name contains one of the strings in ``only``."""
    torch = _torch()
    jobs = [(c[0], lambda c=c: time_conv(torch, *c)) for c in CONVS]
    jobs += [("max_pool2d", lambda: time_max_pool(torch))]
    jobs += [(f"{m[0]} forward b{m[1]}", lambda m=m: time_forward(torch, *m)) for m in MODELS]
    jobs += [("train step", lambda: time_train_step(torch))]
    for name, job in jobs:
        if only and not any(o in name for o in only):
            continue
        try:
            job()
        except Exception:  # noqa: BLE001 - one broken case must not hide the others
            traceback.print_exc()


def _torch_net(arch):
    import torch

    nn = torch.nn
    if arch == "keras-mnist-cnn":
        net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(3136, 64), nn.ReLU(), nn.Linear(64, 10))
    elif arch == "lenet5":
        net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
                            nn.AvgPool2d(2), nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84),
                            nn.Tanh(), nn.Linear(84, 10))
    else:
        try:
            import torchvision
        except ImportError:
            return None
        net = getattr(torchvision.models, arch)()
    return net.cuda().eval()


def overheads():
    """What a launch and an allocation cost on the host, and where a small model's forward spends its time."""
    import cProfile
    import pstats

    from numba import cuda

    from visionkit.backends.cuda import memory

    @cuda.jit
    def one_arg(a):
        pass

    @cuda.jit
    def many_args(a, b, c, i0, i1, i2, i3, i4, i5, i6, i7, i8, i9, j0, j1, j2, j3, j4, j5, j6):
        pass

    d = cuda.device_array(1024, np.float32)
    one_arg[1, 32](d)
    many_args[1, 32](d, d, d, *range(17))
    cuda.synchronize()
    rows = {
        "launch, 1 array argument": lambda: one_arg[1, 32](d),
        "launch, 3 arrays + 17 integers": lambda: many_args[1, 32](d, d, d, *range(17)),
        "device_array 1.6 MB (alloc + free)": lambda: cuda.device_array(400_000, np.float32),
    }
    print(f"allocator: {type(cuda.current_context().memory_manager).__name__} "
          f"(caching installed: {memory.caching_manager_class() is type(cuda.current_context().memory_manager)})")
    for what, fn in rows.items():
        _record(what, _median_ms(fn, cuda.synchronize, repeat=200), None)

    model = _build("resnet18").to("cuda")
    dx = cuda.to_device(RNG.random((1, 3, 224, 224), dtype=np.float32))
    model(dx, keep_tape=False)
    cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(5):
        model(dx, keep_tape=False)
    cuda.synchronize()
    prof.disable()
    print("resnet18 b1 forward x5 under cProfile, top 25 by own time:")
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (the simulator dry run)")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--timing-only", action="store_true", help="skip the checks against the CPU")
    ap.add_argument("--overheads", action="store_true", help="also time launches, allocations and a profile")
    ap.add_argument("--only", help="time only the cases whose names contain one of these comma-separated strings")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    from numba import cuda

    import visionkit.backends.cuda  # noqa: F401  (installs visionkit's allocator before Numba's first context)

    sim = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    print("simulator" if sim else f"GPU: {cuda.get_current_device().name}", flush=True)
    t0 = time.perf_counter()
    if not args.timing_only:
        check_ops(0 if args.tiny else 1)
        check_models(args.tiny)
        check_training(args.tiny)
        print(f"checks took {time.perf_counter() - t0:.0f} s, {RESULTS['failures']} failures", flush=True)
    if args.overheads:
        overheads()
    if not args.no_timing:
        timings(args.only.split(",") if args.only else None)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(RESULTS, f, indent=1)
        os.replace(tmp, args.out)
    sys.exit(1 if RESULTS["failures"] else 0)


if __name__ == "__main__":
    main()
