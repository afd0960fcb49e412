"""Engine benchmark: one model, the same weights, run by visionkit and by the peers that are installed
(onnxruntime and OpenCV DNN on the exported ONNX file, torch on a translation of the graph), in one process.

    from visionkit.bench import run_bench, resolve_model
    model, label, random = resolve_model("resnet18")
    report = run_bench(model, name=label, batch=1, engines=("onnxruntime", "torch", "opencv"), repeat=10)
    for r in report.results: print(r.engine, r.median_ms, r.max_abs_diff)

Every engine gets the same input batch (float32 NCHW, standard normal, seed 0), ``warmup`` untimed calls (JIT
compiles, caches, allocations), then ``repeat`` timed calls, one batch each; the figures are the median, min and max
of those. Peers get the same thread count as visionkit (Numba's, ``numba.get_num_threads()``) unless ``threads`` says
otherwise: onnxruntime's intra-op pool, ``torch.set_num_threads`` and ``cv2.setNumThreads`` (each restored after).
Outputs are checked against visionkit's (max |diff|; "agree" within 1e-4 * max(1, output scale)).
GFLOP/s counts 2 FLOPs per multiply-accumulate of ``Layer.count_macs`` (the figures of ``model.summary()``).

A peer that is not installed, or cannot take this model, is reported as skipped with the reason; one that fails
while running is reported as failed. Nothing here asserts a timing.

The machine section (``system_info``) records what decides the numbers: CPU model, thread counts, the BLAS
libraries loaded (threadpoolctl), library versions and the OpenBLAS environment variables (DESIGN.md: compare
engines with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import registry
from .registry import ModelNotFound

ENGINES = ("visionkit", "onnxruntime", "torch", "opencv")
PEERS = ENGINES[1:]
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS",
            "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")


# --------------------------------------------------------------------------------------------------------------
# results


@dataclass
class SystemInfo:
    """The machine and the libraries a benchmark ran with."""

    cpu: str
    logical_cores: int | None
    numba_threads: int
    numba_threading_layer: str
    torch_threads: int | None
    onnxruntime_threads: int | None
    opencv_threads: int | None
    threads_source: str
    blas: list = field(default_factory=list)  # threadpoolctl.threadpool_info() entries (BLAS and OpenMP)
    versions: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)


@dataclass
class EngineResult:
    """One engine's run. ``status``: "ok", "skipped" (not installed / cannot take the model) or "failed"."""

    engine: str
    status: str
    reason: str = ""
    device: str = "cpu"
    threads: int | None = None
    times_ms: list = field(default_factory=list)
    median_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    images_per_s: float | None = None
    gflops: float | None = None
    speed_vs_visionkit: float | None = None  # visionkit median / this median: > 1 is faster than visionkit
    max_abs_diff: float | None = None
    agrees: bool | None = None
    note: str = ""


@dataclass
class BenchReport:
    model: str
    batch: int
    input_shape: tuple
    device: str
    repeat: int
    warmup: int
    macs_per_image: int | None
    random_weights: bool
    system: SystemInfo
    results: list

    def result(self, engine):
        for r in self.results:
            if r.engine == engine:
                return r
        return None

    def to_dict(self):
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


# --------------------------------------------------------------------------------------------------------------
# the model a command names


def resolve_model(model_arg, input_shape=None, seed=0):
    """(model, label, random_weights) for a model file, a registered pretrained model or an architecture name.

    An architecture is built with random weights (``seed``); ``input_shape`` (C, H, W) then sets its channels and
    size. For a model file or a pretrained model, ``input_shape`` is left to the caller. Raises ModelNotFound
    (with close names as a hint) or the loader's ValueError / OSError.
    """
    from .weights import load_model

    ref = registry.locate_model(model_arg)
    if ref.kind == "architecture":
        kwargs = {"seed": seed}
        if input_shape is not None:
            kwargs["in_channels"], kwargs["input_size"] = int(input_shape[0]), tuple(input_shape[1:])
        model, random = ref.spec.build(**kwargs), True
    else:
        model, random = load_model(ref.path), False
    from .model import Model

    if not isinstance(model, Model):
        raise TypeError(f"{model_arg!r} holds a {type(model).__name__}, not a single model")
    return model, ref.label, random


# --------------------------------------------------------------------------------------------------------------
# the machine


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _loaded(module_name):
    """The module is imported (a None entry in sys.modules marks one blocked from importing)."""
    return sys.modules.get(module_name) is not None


def _version(module_name):
    mod = sys.modules.get(module_name)
    if mod is None:
        try:
            mod = __import__(module_name)
        except Exception:  # noqa: BLE001  (not installed, or broken: either way no version)
            return None
    return getattr(mod, "__version__", None)


def system_info(threads=None, threads_source=None):
    """SystemInfo for this process (call it after the engines are imported, so their BLAS/OpenMP show)."""
    import numba

    try:
        layer = numba.threading_layer()
    except Exception:  # noqa: BLE001  (no parallel kernel has run yet)
        layer = f"{numba.config.THREADING_LAYER} (not started)"
    torch_threads = ort_threads = cv_threads = None
    if _loaded("torch"):
        torch_threads = int(sys.modules["torch"].get_num_threads())
    if _loaded("cv2"):
        cv_threads = int(sys.modules["cv2"].getNumThreads())
    if _loaded("onnxruntime"):
        ort_threads = threads if threads is not None else int(numba.get_num_threads())
    try:
        from threadpoolctl import threadpool_info

        blas = [{k: v for k, v in d.items() if k in ("user_api", "internal_api", "version", "num_threads",
                                                       "threading_layer", "architecture", "filepath")}
                for d in threadpool_info()]
    except Exception as e:  # noqa: BLE001
        blas = [{"error": f"threadpoolctl unavailable: {e}"}]
    versions = {"python": platform.python_version()}
    for name, mod in (("visionkit", "visionkit"), ("numpy", "numpy"), ("numba", "numba"), ("onnx", "onnx"),
                      ("onnxruntime", "onnxruntime"), ("torch", "torch"), ("opencv", "cv2"),
                      ("threadpoolctl", "threadpoolctl")):
        if _loaded(mod) or name in ("visionkit", "numpy", "numba"):
            versions[name] = _version(mod)
    return SystemInfo(
        cpu=cpu_model(),
        logical_cores=os.cpu_count(),
        numba_threads=int(numba.get_num_threads()),
        numba_threading_layer=str(layer),
        torch_threads=torch_threads,
        onnxruntime_threads=ort_threads,
        opencv_threads=cv_threads,
        threads_source=threads_source or "visionkit's thread count (numba.get_num_threads())",
        blas=blas,
        versions=versions,
        env={k: os.environ.get(k) for k in ENV_VARS},
    )


# --------------------------------------------------------------------------------------------------------------
# measuring


def count_macs(model, input_shape):
    """Multiply-accumulates per image of ``model`` at ``input_shape`` (C, H, W); None if a layer cannot say."""
    from .input_layer import InputLayer

    shapes = {}
    for i in model._input_idx:
        shapes[i] = tuple(input_shape)
    total = 0
    for k, node in enumerate(model._order):
        if k in shapes or isinstance(node.layer, InputLayer):
            continue
        ins = [shapes[j] for j in model._inbound[k]]
        arg = list(ins) if node.multi_input else ins[0]
        out = tuple(node.layer.compute_output_shape(arg))
        shapes[k] = out
        m = node.layer.count_macs(arg, out)
        if m is None:
            return None
        total += int(m)
    return total


def _time(fn, repeat, warmup):
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def _first(out):
    if isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out, dtype=np.float32)


def _finish(result, times, out, ref, batch, macs):
    ms = [t * 1e3 for t in times]
    med = float(np.median(ms))
    result.status = "ok"
    result.times_ms = [round(t, 4) for t in ms]
    result.median_ms, result.min_ms, result.max_ms = med, float(min(ms)), float(max(ms))
    result.images_per_s = batch / (med / 1e3)
    if macs is not None:
        result.gflops = 2.0 * macs * batch / (med / 1e3) / 1e9
    if ref is not None and out is not None:
        out = _first(out)
        if out.shape != ref.shape:
            result.agrees = False
            result.note = (result.note + "; " if result.note else "") + f"output shape {out.shape} != {ref.shape}"
        else:
            diff = float(np.abs(out - ref).max()) if out.size else 0.0
            result.max_abs_diff = diff
            result.agrees = bool(diff <= 1e-4 * max(1.0, float(np.abs(ref).max()) if ref.size else 1.0))
    return result


def _reason(e):
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"[:300]


class _OnnxFile:
    """The model exported once, lazily, into a temporary folder shared by onnxruntime and OpenCV."""

    def __init__(self, model, input_shape, folder):
        self.model, self.input_shape, self.folder = model, input_shape, folder
        self.path = None
        self.error = None

    def get(self):
        if self.path is None and self.error is None:
            try:
                from .onnx import export_onnx

                path = os.path.join(self.folder, "model.onnx")
                export_onnx(self.model, path, input_shape=self.input_shape)
                self.path = path
            except (ImportError, NotImplementedError, ValueError) as e:
                self.error = e
        if self.error is not None:
            raise EngineSkipped(f"ONNX export: {_reason(self.error)}")
        return self.path


class EngineSkipped(Exception):
    """A peer engine that is not installed or cannot take the model; the message is the reason."""


@dataclass
class PreparedEngine:
    """A peer ready to run one batch: ``fn()`` returns its output; ``close()`` restores its thread setting and
    removes the temporary ONNX file."""

    engine: str
    fn: object
    note: str
    _restore: object = None
    _tmp: object = None

    def close(self):
        if self._restore is not None:
            self._restore()
            self._restore = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def prepare_engine(engine, model, x, *, device="cpu", threads=None, onnx_path=None):
    """``engine`` ("visionkit", "onnxruntime", "torch", "opencv") set up to run ``model`` on batch ``x``.

    The peers get ``threads`` threads (default: visionkit's numba thread count). ``onnx_path``: an exported file
    to reuse (else the model is exported to a temporary folder, removed by ``close()``). Raises EngineSkipped with
    the reason when the engine is not installed or cannot take the model.
    """
    import numba

    from .device import resolve_device

    dev = resolve_device(device)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if engine == "visionkit":
        return PreparedEngine("visionkit", lambda: model.predict(x, batch_size=len(x)),
                              f"numba threads {numba.get_num_threads()}")
    check_engines([engine])
    source = "set by the caller"
    if threads is None:
        threads, source = int(numba.get_num_threads()), "= visionkit's numba thread count"
    tmp = None
    onnx_file = _OnnxFile(model, tuple(x.shape[1:]), None)
    if onnx_path is not None:
        onnx_file.path = os.fspath(onnx_path)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="visionkit-bench-")
        onnx_file.folder = tmp.name
    ctx = {"model": model, "x": x, "device": dev, "threads": int(threads), "threads_source": source,
           "onnx": onnx_file}
    try:
        fn, note, hooks = _PEER_RUNNERS[engine](ctx)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    return PreparedEngine(engine, fn, note, hooks.get("restore"), tmp)


def _run_onnxruntime(ctx):
    try:
        import onnxruntime as ort
    except ImportError:
        raise EngineSkipped("onnxruntime is not installed (pip install onnxruntime)") from None
    path = ctx["onnx"].get()
    providers = ["CPUExecutionProvider"]
    if ctx["device"] == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EngineSkipped("this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
        providers = ["CUDAExecutionProvider"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = ctx["threads"]
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=providers)
    feed = {sess.get_inputs()[0].name: ctx["x"]}
    note = f"intra-op threads {ctx['threads']} ({ctx['threads_source']}), {providers[0]}"
    return (lambda: sess.run(None, feed)), note, {}


def _run_opencv(ctx):
    try:
        import cv2
    except ImportError:
        raise EngineSkipped("OpenCV is not installed (pip install opencv-python-headless)") from None
    if ctx["device"] == "cuda":
        raise EngineSkipped("OpenCV DNN's CUDA backend is not compared (CPU build)")
    path = ctx["onnx"].get()
    try:
        net = cv2.dnn.readNetFromONNX(path)
    except Exception as e:  # noqa: BLE001  (cv2.error: an op or attribute its importer does not take)
        raise EngineSkipped(f"cv2.dnn.readNetFromONNX cannot load the file: {_reason(e)}") from None
    prev = cv2.getNumThreads()
    cv2.setNumThreads(ctx["threads"])
    x = ctx["x"]

    def fn():
        net.setInput(x)
        return net.forward()

    return fn, f"cv2.setNumThreads({ctx['threads']})", {"restore": lambda: cv2.setNumThreads(prev)}


def _run_torch(ctx):
    try:
        import torch
    except ImportError:
        raise EngineSkipped("torch is not installed (CPU build: pip install torch)") from None
    from .onnx.torch_ref import to_torch

    dev = "cpu"
    if ctx["device"] == "cuda":
        if not torch.cuda.is_available():
            raise EngineSkipped("torch has no CUDA device")
        dev = "cuda"
    try:
        net = to_torch(ctx["model"], device=dev)
    except NotImplementedError as e:
        raise EngineSkipped(_reason(e)) from None
    prev = torch.get_num_threads()
    torch.set_num_threads(ctx["threads"])
    xt = torch.from_numpy(ctx["x"]).to(dev)

    def fn():
        with torch.inference_mode():
            y = net(xt)
            if dev == "cuda":
                torch.cuda.synchronize()
        return y[0].cpu().numpy() if isinstance(y, tuple) else y.cpu().numpy()

    note = f"torch.set_num_threads({ctx['threads']}), graph translated by visionkit.onnx.torch_ref"
    return fn, note, {"restore": lambda: torch.set_num_threads(prev)}


_PEER_RUNNERS = {"onnxruntime": _run_onnxruntime, "opencv": _run_opencv, "torch": _run_torch}


def check_engines(engines):
    """The peers named in ``engines`` (visionkit itself is always run); ValueError for an unknown name."""
    out = []
    for e in engines:
        e = str(e).strip().lower()
        if not e or e == "visionkit":
            continue
        if e not in PEERS:
            raise ValueError(f"unknown engine {e!r}; valid: {', '.join(PEERS)}")
        if e not in out:
            out.append(e)
    return out


def bench_input(model, batch, input_shape=None, seed=0):
    """The batch every engine (and ``visionkit bench --profile``) runs: standard normal float32 of the model's
    input shape, or of ``input_shape`` (C, H, W) where the model leaves sizes open."""
    shape = tuple(model.inputs[0].shape[1:]) if input_shape is None else tuple(int(d) for d in input_shape)
    if len(model.inputs) != 1:
        raise ValueError("the engine benchmark takes models with one input")
    if any(d is None for d in shape):
        raise ValueError(f"the model's input size is open {shape}: give input_shape (C, H, W)")
    return np.random.default_rng(seed).standard_normal((int(batch),) + shape, dtype=np.float32)


def run_bench(model, *, name=None, batch=1, device="cpu", engines=PEERS, repeat=10, warmup=2, threads=None,
              input_shape=None, seed=0, random_weights=False, log=None):
    """Run ``model`` in visionkit and in each installed peer of ``engines``; returns a BenchReport.

    ``input_shape`` (C, H, W) is needed only where the model leaves sizes open. ``threads``: the peers' thread
    count (default: visionkit's, ``numba.get_num_threads()``). ``log``: a callable taking progress lines.
    """
    import numba

    from .device import resolve_device

    peers = check_engines(engines)
    batch, repeat, warmup = int(batch), int(repeat), int(warmup)
    if batch < 1 or repeat < 1 or warmup < 0:
        raise ValueError("batch and repeat must be >= 1, warmup >= 0")
    dev = resolve_device(device)
    x = bench_input(model, batch, input_shape, seed)
    shape = tuple(x.shape[1:])
    if threads is None:
        threads, source = int(numba.get_num_threads()), "= visionkit's numba thread count"
    else:
        threads, source = int(threads), "set by the caller"
    macs = count_macs(model, shape)
    say = log or (lambda line: None)

    results = []
    if dev != getattr(model, "device", "cpu"):
        model.to(dev)
    say(f"visionkit: {repeat} runs of batch {batch} on {dev}")
    vk = EngineResult("visionkit", "ok", device=dev, threads=int(numba.get_num_threads()),
                      note=f"numba threads {numba.get_num_threads()}")
    out, times = _time(lambda: model.predict(x, batch_size=batch), repeat, warmup)
    ref = _first(out)
    _finish(vk, times, None, None, batch, macs)
    vk.speed_vs_visionkit = 1.0
    results.append(vk)

    with tempfile.TemporaryDirectory(prefix="visionkit-bench-") as folder:
        ctx = {"model": model, "x": x, "device": dev, "threads": threads, "threads_source": source,
               "onnx": _OnnxFile(model, shape, folder)}
        if dev != "cpu":  # peers read the weights from the host copy
            model.to("cpu")
        try:
            for engine in peers:
                r = EngineResult(engine, "skipped", device=dev, threads=threads)
                results.append(r)
                hooks = {}
                try:
                    fn, r.note, hooks = _PEER_RUNNERS[engine](ctx)
                except EngineSkipped as e:
                    r.reason = str(e)
                    say(f"{engine}: skipped ({r.reason})")
                    continue
                except Exception as e:  # noqa: BLE001  (a peer failing to set up: reported, the rest still run)
                    r.status, r.reason = "failed", _reason(e)
                    say(f"{engine}: failed ({r.reason})")
                    continue
                say(f"{engine}: {repeat} runs of batch {batch}")
                try:
                    out, times = _time(fn, repeat, warmup)
                    _finish(r, times, out, ref, batch, macs)
                    r.speed_vs_visionkit = vk.median_ms / r.median_ms if r.median_ms else None
                except Exception as e:  # noqa: BLE001
                    r.status, r.reason = "failed", _reason(e)
                    say(f"{engine}: failed ({r.reason})")
                finally:
                    if "restore" in hooks:
                        hooks["restore"]()
        finally:
            if dev != "cpu":
                model.to(dev)
        system = system_info(threads, f"peers: {threads} threads {source}")
    return BenchReport(model=name or model.name, batch=batch, input_shape=shape, device=dev, repeat=repeat,
                       warmup=warmup, macs_per_image=macs, random_weights=bool(random_weights), system=system,
                       results=results)


# --------------------------------------------------------------------------------------------------------------
# text


def _blas_line(d):
    if "error" in d:
        return d["error"]
    path = d.get("filepath") or ""
    where = ""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            where = path.split(marker, 1)[1].split("/", 1)[0]
            break
    parts = [str(d.get("internal_api")), str(d.get("version") or "")]
    extra = ", ".join(str(v) for v in (d.get("architecture"), d.get("threading_layer")) if v)
    text = " ".join(p for p in parts if p)
    if extra:
        text += f" ({extra})"
    text += f", {d.get('num_threads')} threads"
    if where:
        text += f" [{where}]"
    return text


def header_lines(report):
    """The lines describing the run and the machine (what a table printed after them depends on)."""
    s = report.system
    shape = "x".join(str(d) for d in report.input_shape)
    lines = [
        (f"Model: {report.model} ({'random weights, seed 0' if report.random_weights else 'file weights'}), "
        f"input {shape}, batch {report.batch}, device {report.device}, {report.repeat} timed runs after "
        f"{report.warmup} warm-up"),
        f"CPU: {s.cpu} ({s.logical_cores} logical cores)",
        f"Threads: numba {s.numba_threads} ({s.numba_threading_layer} layer)"
        + (f", onnxruntime intra-op {s.onnxruntime_threads}" if s.onnxruntime_threads is not None else "")
        + (f", torch {s.torch_threads}" if s.torch_threads is not None else "")
        + (f", opencv {s.opencv_threads}" if s.opencv_threads is not None else "")
        + f"; {s.threads_source}",
    ]
    lines += [f"BLAS/OpenMP: {_blas_line(d)}" for d in s.blas if d.get("user_api") in ("blas", None)]
    omp = [d for d in s.blas if d.get("user_api") == "openmp"]
    if omp:
        lines.append("OpenMP: " + "; ".join(_blas_line(d) for d in omp))
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in s.versions.items() if v))
    lines.append("Env: " + " ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in s.env.items()
                                    if k.startswith(("OPENBLAS", "OMP_WAIT", "GOMP_SPIN"))))
    macs = report.macs_per_image
    lines.append(f"MACs per image: {macs:,}" if macs is not None else "MACs per image: unknown")
    return lines


def table_lines(report):
    """The results table: engine, ms per batch (median, min-max), images/s, GFLOP/s, speed vs visionkit, max |diff|."""
    head = ("ENGINE", "MS/BATCH (MEDIAN)", "MIN-MAX", "IMAGES/S", "GFLOP/S", "VS VISIONKIT", "MAX|DIFF|", "NOTE")
    rows = []
    for r in report.results:
        if r.status != "ok":
            rows.append((r.engine, r.status, "", "", "", "", "", r.reason))
            continue
        diff = "-" if r.engine == "visionkit" else (
            "?" if r.max_abs_diff is None else f"{r.max_abs_diff:.2e}" + ("" if r.agrees else " MISMATCH"))
        rows.append((
            r.engine,
            f"{r.median_ms:.3f}",
            f"{r.min_ms:.3f}-{r.max_ms:.3f}",
            f"{r.images_per_s:,.1f}",
            "?" if r.gflops is None else f"{r.gflops:.1f}",
            f"{r.speed_vs_visionkit:.2f}x" if r.speed_vs_visionkit else "-",
            diff,
            r.note,
        ))
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) for i in range(len(head))]
    out = []
    for row in (head, *rows):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    out.append("VS VISIONKIT = visionkit's median / the engine's median (>1: faster than visionkit); "
               "GFLOP/S = 2 x MACs x batch / median")
    return out


__all__ = [
    "ENGINES",
    "PEERS",
    "BenchReport",
    "EngineResult",
    "EngineSkipped",
    "ModelNotFound",
    "PreparedEngine",
    "SystemInfo",
    "bench_input",
    "check_engines",
    "count_macs",
    "cpu_model",
    "header_lines",
    "prepare_engine",
    "resolve_model",
    "run_bench",
    "system_info",
    "table_lines",
]
