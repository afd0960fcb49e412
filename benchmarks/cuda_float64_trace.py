"""Where does a model's GPU gradient leave the float64 one? Two checks that a whole-model comparison cannot make.

    NUMBA_ENABLE_CUDASIM=0 python benchmarks/cuda_float64_trace.py mobilenet_v2 --batch 2

1. Replay: every ``visionkit.ops`` call of the model's CPU forward and backward is recorded with its arrays, then
   run again in float64 on the CPU and on the GPU. Same inputs, so the two must agree to ~1e-10 whatever ReLU
   masks do: a larger gap is a kernel bug at that real shape.
2. Trace: the model runs forward and backward on the GPU twice, float32 and float64, recording every op's output;
   the first calls where the two part by more than 1e-4 show where the float32 gradient goes its own way, and how
   many elements differ (one element of a ReLU6 backward is a mask flip, not a bug).

On the CPU a model converts float64 input to float32, so the float64 model run needs the GPU; the replay's
float64 ops run on both.
"""

import argparse
import types

import numpy as np

from visionkit import ops, registry

NOT_OPS = {"to_device", "to_numpy", "is_device_array", "resolve_device"}


def _flat(out):
    if out is None:
        return []
    if isinstance(out, (tuple, list)):
        return [v for e in out for v in _flat(e)]
    return [out] if hasattr(out, "dtype") else []


def _map(a, f):
    """a with f applied to every array in it (tuples and lists followed)."""
    if isinstance(a, np.ndarray) or hasattr(a, "copy_to_host"):
        return f(a)
    if isinstance(a, (tuple, list)):
        return type(a)(_map(v, f) for v in a)
    return a


def _record(on_call):
    """Patch every public op of visionkit.ops so that top-level calls (not an op's own inner calls) reach
    on_call(name, args, kwargs, out); returns the function that undoes it."""
    names = [n for n in dir(ops) if not n.startswith("_") and n not in NOT_OPS
             and isinstance(getattr(ops, n), types.FunctionType)]
    orig = {n: getattr(ops, n) for n in names}
    depth = [0]

    def wrap(n):
        def op(*a, **k):
            depth[0] += 1
            try:
                out = orig[n](*a, **k)
            finally:
                depth[0] -= 1
            if depth[0] == 0 and _flat(list(a) + list(k.values())):
                on_call(n, a, k, out)
            return out
        return op

    for n in names:
        setattr(ops, n, wrap(n))
    return lambda: [setattr(ops, n, f) for n, f in orig.items()]


def _inputs(arch, batch):
    model = registry.build(arch, seed=0)
    rng = np.random.default_rng(1)
    x = rng.random((batch,) + tuple(model.inputs[0].shape[1:]), dtype=np.float32)
    gy = rng.standard_normal(model(x).shape).astype(np.float32)
    return model, x, gy


def _rel(a, ref):
    scale = max(float(np.max(np.abs(ref))), 1e-300)
    return float(np.max(np.abs(a.astype(np.float64) - ref))) / scale, scale


def replay(arch, batch):
    model, x, gy = _inputs(arch, batch)
    calls = []
    undo = _record(lambda n, a, k, out: calls.append((n, _map(a, np.copy), _map(k, np.copy))))
    try:
        model(x)
        model.backward(gy)
    finally:
        undo()
    f64 = lambda v: v.astype(np.float64) if v.dtype == np.float32 else v  # noqa: E731
    gpu = lambda v: ops.to_device(f64(v), "cuda")  # noqa: E731
    worst, bad = 0.0, 0
    for i, (n, a, k) in enumerate(calls):
        cpu_out = [ops.to_numpy(v) for v in _flat(getattr(ops, n)(*_map(a, f64), **_map(k, f64)))]
        gpu_out = [ops.to_numpy(v) for v in _flat(getattr(ops, n)(*_map(a, gpu), **_map(k, gpu)))]
        for j, (c, g) in enumerate(zip(cpu_out, gpu_out)):
            if not c.size:
                continue
            e, _ = _rel(g, c)
            worst = max(worst, e)
            if e > 1e-9 or g.dtype != c.dtype:
                bad += 1
                shapes = [tuple(v.shape) for v in _flat(list(a))]
                print(f"  replay call {i} {n} output {j}: GPU vs CPU float64 {e:.1e} ({g.dtype}) inputs {shapes}")
    print(f"replay {arch} b{batch}: {len(calls)} op calls in float64, GPU vs CPU worst {worst:.1e}, "
          f"{bad} outputs above 1e-9")
    return bad


def trace(arch, batch, shown=12):
    model0, x, gy = _inputs(arch, batch)

    def run(dtype):
        log = []
        model = registry.build(arch, seed=0)
        for p in model.parameters():
            p.value = p.value.astype(dtype)
        model.to("cuda")
        undo = _record(lambda n, a, k, out: log.append((n, [ops.to_numpy(v).astype(np.float64) for v in _flat(out)])))
        try:
            model(ops.to_device(x.astype(dtype), "cuda"))
            model.backward(ops.to_device(gy.astype(dtype), "cuda"))
        finally:
            undo()
        return log

    lo, hi = run(np.float32), run(np.float64)
    print(f"trace {arch} b{batch}: {len(lo)} op calls; float32 against float64 on the GPU, first departures:")
    for i, ((n, outs32), (_, outs64)) in enumerate(zip(lo, hi)):
        for j, (u, v) in enumerate(zip(outs32, outs64)):
            if not v.size:
                continue
            e, scale = _rel(u, v)
            if e > 1e-4 and shown:
                shown -= 1
                count = int(np.sum(np.abs(u - v) > 1e-4 * scale))
                print(f"  call {i} {n} output {j}: {e:.1e} relative, {count} of {v.size} elements")
    if shown == 12:
        print("  none above 1e-4")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("arch", nargs="?", default="mobilenet_v2")
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    bad = replay(args.arch, args.batch)
    trace(args.arch, args.batch)
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
