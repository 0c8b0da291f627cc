"""Timing and memory measurement: medians of interleaved repeats after warm-up.

The machine is shared and noisy, so implementations that are compared are timed in interleaved
rounds (A, B, C, A, B, C, ...): a burst of load from elsewhere hits all of them alike, and the
ratio of their medians stays meaningful even when the absolute times do not.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
import tracemalloc
from typing import Callable, NamedTuple

import numpy as np


class Timing(NamedTuple):
    median: float   # seconds per call, median over the repeats
    best: float     # fastest repeat, seconds
    repeats: int    # how many timed calls the median is over


MIN_SAMPLE_SECONDS = 2e-3   # calls shorter than this are batched so one sample lasts this long
SLOW_SECONDS = 0.5          # a call slower than this needs no second warm-up
BUDGET_SECONDS = 30.0       # timed seconds per implementation and comparison, roughly ...
MIN_REPEATS = 3             # ... but never fewer samples than this


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def use_clock(name: str) -> None:
    """Time with "wall" (perf_counter, the default) or "cpu" (process_time: the CPU seconds of
    every thread of this process; with one thread per library it ignores the time spent waiting
    for a core that other processes hold: the steadier clock on a shared machine)."""
    global _clock
    if name not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {name!r}")
    _clock = CLOCKS[name]


def _time_calls(fn: Callable[[], object], inner: int) -> float:
    start = _clock()
    for _ in range(inner):
        fn()
    return (_clock() - start) / inner


def interleaved(fns: dict, repeats: dict, warmup: int = 1) -> dict:
    """Time each `fns[name]()` `repeats[name]` times, in interleaved rounds, after `warmup` calls.

    fns: name -> zero-argument callable; repeats: name -> number of timed samples (>= 1).
    A call shorter than MIN_SAMPLE_SECONDS (judged on the last warm-up call) is repeated within
    one sample, and the sample is the mean over those calls. A slow call (judged the same way)
    gets one warm-up only and fewer samples: as many as fit in BUDGET_SECONDS, but at least
    min(MIN_REPEATS, repeats[name]).
    Returns name -> Timing. The garbage collector is off while timing (as `timeit` does).
    """
    inner, counts = {}, {}
    for name, fn in fns.items():
        t = 0.0
        for _ in range(warmup):
            t = _time_calls(fn, 1)
            if t > SLOW_SECONDS:
                break
        inner[name] = max(1, math.ceil(MIN_SAMPLE_SECONDS / t)) if t > 0 else 1
        fit = math.ceil(BUDGET_SECONDS / t) if t > 0 else repeats[name]
        counts[name] = max(min(MIN_REPEATS, repeats[name]), min(repeats[name], fit))
    samples = {name: [] for name in fns}
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in range(max(counts.values())):
            for name, fn in fns.items():
                if round_ < counts[name]:
                    samples[name].append(_time_calls(fn, inner[name]))
    finally:
        if was_enabled:
            gc.enable()
    return {name: Timing(statistics.median(s), min(s), len(s)) for name, s in samples.items()}


def matmul_call(m: int, k: int, n: int, seed: int = 0) -> Callable[[], object]:
    """A call computing one float64 product (m, k) @ (k, n) into a preallocated output:
    2 m k n flops."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    out = np.empty((m, n))
    return lambda: np.matmul(a, b, out=out)


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes traced by tracemalloc during one call of `fn` (numpy reports its buffers).

    Arrays that exist before the call (inputs, parameters) are not counted; the result of the
    call is (it is alive at the peak).
    """
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak - base
