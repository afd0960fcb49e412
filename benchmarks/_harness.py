"""Timing helpers shared by the benchmark files: medians, and a registry the closing table reads."""

import time

import numpy as np

THREADS = 2
RESULTS = {}  # case -> {engine: median seconds, "work": (amount, unit)}


def median_time(fn, repeat=7, min_time=0.2):
    """Median of `repeat` timings of fn (called enough times per timing to last ~min_time/repeat)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / repeat / once))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return float(np.median(times))


def record(case, engine, seconds, work=None):
    entry = RESULTS.setdefault(case, {})
    entry[engine] = seconds
    if work is not None:
        entry["work"] = work


def run_benchmark(benchmark, case, engine, fn, work=None):
    """Time fn with pytest-benchmark and remember its median for the closing table."""
    benchmark.group = case
    benchmark.extra_info["engine"] = engine
    result = benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        med = stats.stats.median
        record(case, engine, med, work)
        if work:
            amount, unit = work
            benchmark.extra_info[unit + "/s"] = round(amount / med / 1e9, 2)
    return result


