"""One metric set for every gradient estimator: truncations (Window, Chunks), ARTBP, UORO,
SnAp-n and RTRL, measured against the exact (full BPTT) gradient on the same problem.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, S seeds.

Every estimate g_s (s = 1..S seeds; one for a deterministic method) is compared with the exact
gradient g of all parameters (U, W, V, b, c as one vector):

- rel_bias  ||mean_s g_s - g|| / ||g||. Deterministic methods: their bias, exactly. Stochastic
  ones: a Monte Carlo estimate whose own noise is bias_se = sqrt(tr Cov / S) / ||g|| (an unbiased
  method shows rel_bias of the order of bias_se; ARTBP and UORO are proven unbiased exactly in
  the tests, by enumeration);
- rel_std   sqrt(mean_s ||g_s - mean g||^2 * S / (S - 1)) / ||g||: the noise of one estimate;
- rel_rmse  sqrt(rel_bias^2 + rel_std^2): the typical error of one estimate;
- cosine    mean_s cos(g_s, g);
- us_per_step  wall time of one gradient of the whole batch divided by T (microseconds), with one
  BLAS thread for every estimator (on a shared machine a second thread mostly waits);
- peak_kb   peak memory traced (tracemalloc) while computing one gradient, in KiB: grows with T
  for BPTT-based methods, not for the forward-mode ones.
"""
from __future__ import annotations

import math
import time
import tracemalloc
from typing import NamedTuple

import numpy as np

from ..params import Params
from ..spec import Spec, parse_truncation
from .artbp import artbp_grads, sample_passes
from .rtrl import rtrl_grads
from .snap import snap_grads
from .uoro import uoro_grads

STOCHASTIC = ("artbp", "uoro")


def parse_estimator(text: str):
    """'bptt' (exact), 'window:K', 'chunks:K', 'tbptt:K1,K2', 'artbp:C', 'uoro', 'snap:N' or
    'rtrl' -> (kind, value)."""
    t = str(text).strip().lower()
    kind, _, arg = t.partition(":")
    if t in ("bptt", "full"):
        return "bptt", None
    if t in ("uoro", "rtrl"):
        return t, None
    if kind == "artbp":
        try:
            c = float(arg)
        except ValueError:
            c = math.nan
        if not 0 < c < 1:
            raise ValueError(f"estimator 'artbp:C' needs a cut probability C in (0, 1), got {text!r}")
        return "artbp", c
    if kind == "snap":
        try:
            n = int(arg)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"estimator 'snap:N' needs an integer N >= 1, got {text!r}")
        return "snap", n
    if kind in ("window", "chunks", "tbptt"):
        return "truncation", parse_truncation(t)
    raise ValueError(f"estimator must be 'bptt', 'window:K', 'chunks:K', 'tbptt:K1,K2', "
                     f"'artbp:C', 'uoro', 'snap:N' or 'rtrl', got {text!r}")


def estimator_grads(name: str, params, xs, ys, spec, h0=None, rng=None) -> Params:
    """One gradient estimate of `name` (see `parse_estimator`) for the problem; rng: a numpy
    Generator for the stochastic ones. spec.truncation is replaced by the estimator's."""
    from .. import loss_and_grads
    kind, value = parse_estimator(name)
    full = Spec(**{**spec.__dict__, "truncation": None})
    if kind == "bptt":
        return loss_and_grads(params, xs, ys, full, h0=h0)[1]
    if kind == "truncation":
        return loss_and_grads(params, xs, ys, Spec(**{**spec.__dict__, "truncation": value}),
                              h0=h0)[1]
    if kind == "artbp":
        T = np.shape(xs)[1]
        probs = np.full(T, value)
        return artbp_grads(params, xs, ys, full, sample_passes(rng, probs), probs, h0=h0)[1]
    if kind == "uoro":
        return uoro_grads(params, xs, ys, full, h0=h0, seed=rng)[1]
    if kind == "snap":
        return snap_grads(params, xs, ys, full, n=value, h0=h0)[1]
    return rtrl_grads(params, xs, ys, full, h0=h0)[1]


def flat(g: Params) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in g.arrays().values()])


class Row(NamedTuple):
    task: str
    estimator: str
    rel_bias: float
    bias_se: float            # Monte Carlo standard error of rel_bias (0 when deterministic)
    rel_std: float
    rel_rmse: float
    cosine: float
    us_per_step: float
    peak_kb: float
    seeds: int


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def peak_bytes(fn) -> int:
    """Peak memory traced while fn() runs (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(task: str, params, xs, ys, spec, estimators, seeds: int = 32, h0=None,
            seed: int = 0, min_seconds: float = 0.05) -> list[Row]:
    """The metric set (module docstring) of every estimator in `estimators` on one problem.

    params, xs (B, T, D), ys, spec, h0 as for `hg.loss_and_grads` (spec.truncation is ignored);
    seeds: estimates per stochastic estimator. The first estimate runs under tracemalloc (the
    peak); the time is the fastest untraced call, repeated until `min_seconds` have run.
    """
    from .._threads import blas_threads
    with blas_threads(0):                 # one BLAS thread for every estimator: like against like
        return _measure(task, params, xs, ys, spec, estimators, seeds, h0, seed, min_seconds)


def _measure(task, params, xs, ys, spec, estimators, seeds, h0, seed, min_seconds):
    from .. import loss_and_grads
    full = Spec(**{**spec.__dict__, "truncation": None})
    _, exact = loss_and_grads(params, xs, ys, full, h0=h0)
    g = flat(exact)
    gnorm = float(np.linalg.norm(g))
    T = np.shape(xs)[1]
    rows = []
    for name in estimators:
        kind, _ = parse_estimator(name)
        rng = np.random.default_rng(seed)
        call = lambda: estimator_grads(name, params, xs, ys, full, h0, rng)   # noqa: E731
        n = seeds if kind in STOCHASTIC else 1
        box = []
        peak = peak_bytes(lambda: box.append(call()))             # the first estimate, traced
        draws = [flat(box[0])]
        times = []
        for _ in range(n - 1):                                     # the other seeds, timed
            est, sec = _timed(call)
            draws.append(flat(est))
            times.append(sec)
        while not times or sum(times) < min_seconds:               # untraced timings
            times.append(_timed(call)[1])
        G = np.array(draws)                                        # (S, P)
        mean = G.mean(axis=0)
        bias = float(np.linalg.norm(mean - g)) / gnorm
        if n > 1:
            var = float(np.sum((G - mean) ** 2)) / (n - 1)           # E||g_s - E g||^2
            std, se = math.sqrt(var) / gnorm, math.sqrt(var / n) / gnorm
        else:
            std = se = 0.0
        cos = float(np.mean(G @ g / (np.linalg.norm(G, axis=1) * gnorm)))
        rows.append(Row(task, name, bias, se, std, math.hypot(bias, std), cos,
                        1e6 * min(times) / T, peak / 1024, n))
    return rows


def uoro_noise(params, xs, ys, spec, Ts, seeds: int = 32, h0=None, seed: int = 0):
    """UORO's relative standard deviation sqrt(E||g_s - g||^2) / ||g|| (g exact) on the first T
    steps of the problem, for each T in Ts. xs (B, T_max, D); ys (B, T_max, O) (with
    spec.output="last", the loss is on step T's target ys[:, T - 1]). Returns (len(Ts),)."""
    from .. import loss_and_grads
    full = Spec(**{**spec.__dict__, "truncation": None})
    out = []
    rng = np.random.default_rng(seed)
    for T in Ts:
        xs_T = xs[:, :T]
        ys_T = ys[:, T - 1] if spec.output == "last" else ys[:, :T]
        g = flat(loss_and_grads(params, xs_T, ys_T, full, h0=h0)[1])
        err = [float(np.sum((flat(uoro_grads(params, xs_T, ys_T, full, h0=h0, seed=rng)[1]) - g)
                            ** 2)) for _ in range(seeds)]
        out.append(math.sqrt(np.mean(err)) / float(np.linalg.norm(g)))
    return np.array(out)


def format_rows(rows: list[Row]) -> str:
    """The printed table, one block per task."""
    lines, task = [], None
    for r in rows:
        if r.task != task:
            task = r.task
            lines.append(f"[{task}]")
            lines.append(f"  {'estimator':<11} {'rel bias':>10} {'(MC se)':>9} {'rel std':>9} "
                         f"{'rel rmse':>9} {'cosine':>8} {'us/step':>9} {'peak KiB':>9}")
        se = f"{r.bias_se:9.2g}" if r.seeds > 1 else f"{'-':>9}"
        std = f"{r.rel_std:9.3g}" if r.seeds > 1 else f"{'0':>9}"
        lines.append(f"  {r.estimator:<11} {r.rel_bias:10.3g} {se} {std} {r.rel_rmse:9.3g} "
                     f"{r.cosine:8.4f} {r.us_per_step:9.1f} {r.peak_kb:9.0f}")
    return "\n".join(lines)
