"""Unbiased randomized truncation: ARTBP (Tallec & Ollivier 2017, "Unbiasing truncated
backpropagation through time").

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, P parameter elements.

At every step s the backward pass is cut between a_s and h_{s-1} with probability c_s; when it is
not cut, the carried gradient is multiplied by the compensation 1 / (1 - c_s):

    dL/dh_{s-1} = Z_s / (1 - c_s) * (dL/da_s W),      Z_s ~ Bernoulli(1 - c_s), independent.

Each path from a loss term t back to a step s < t crosses the steps s+1..t once each, so its
weight is a product of independent factors of mean 1: the expected gradient is exactly the full
BPTT gradient. The distribution of Z in {0, 1}^T is finite, so `artbp_expectation` computes the
expectation exactly (a weighted sum over every outcome), no Monte Carlo.

For many-to-one only the first cut going back from T matters: K passes then a cut, K = 0..T, and
the compensated gradient is sum_{j <= K} w_j piece_j (w_j = 1 / prod of the j pass
probabilities). `artbp_tradeoff` uses that to give, for a family of cut probabilities, the exact
variance against the expected number of steps backpropagated, beside the bias of Window(k).
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from ..params import Params
from .sweep import lag_pieces_last, output_layer_grads, prepare, sweep_prepared

MAX_ENUMERATED_T = 16         # 2^T outcomes for many-to-many


def check_probs(probs, T: int) -> np.ndarray:
    """Cut probabilities c_s, s = 1..T: a scalar (the same at every step) or shape (T,), in [0, 1)."""
    arr = np.asarray(probs, dtype=float)
    if arr.ndim == 0:
        arr = np.full(T, float(arr))
    if arr.shape != (T,) or not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() >= 1:
        raise ValueError(f"probs must be a number or an array of shape (T,) = ({T},) with values "
                         f"in [0, 1) (a cut that always happens cannot be compensated), got "
                         f"{probs!r}")
    return arr


def artbp_grads(params, xs, ys, spec, passes, probs, h0=None):
    """The compensated gradient for one outcome. Returns (loss, grads: Params, dh0 (B, H)).

    passes: (T,) bool, passes[s - 1] = the backward pass crosses from a_s to h_{s-1};
    probs: cut probabilities c_s (see `check_probs`). spec.truncation is ignored.
    """
    prep = prepare(params, xs, ys, spec, h0)
    U, W, V, b, c = prep.params
    hs, dact = prep.fwd
    T, B, H = dact.shape
    probs = check_probs(probs, T)
    passes = np.asarray(passes)
    if passes.shape != (T,):
        raise ValueError(f"passes must have shape (T,) = ({T},), got {passes.shape}")
    gain = np.where(passes.astype(bool), 1.0 / (1.0 - probs), 0.0)   # Z_s / (1 - c_s)
    dV, dc = output_layer_grads(prep)                    # o_t = V h_t + c: never truncated
    first_loss_step = 1 if prep.spec.output == "all" else T
    das = np.empty((T, B, H))
    dh = np.zeros((B, H))                               # dL/dh_t carried from step t + 1
    for t in range(T, 0, -1):
        if t >= first_loss_step:
            dh = dh + prep.dh_loss[t - first_loss_step]  # h_t -> o_t -> loss term t
        das[t - 1] = dh * dact[t - 1]                   # h_t = act(a_t)
        dh = (das[t - 1] @ W) * gain[t - 1]             # a_t = ... + W h_{t-1}: cut or compensate
    flat = das.reshape(T * B, H)
    dW = flat.T @ hs[:-1].reshape(T * B, H)             # sum_t da_t h_{t-1}^T
    dU = flat.T @ prep.xs_tm.reshape(T * B, -1)         # sum_t da_t x_t^T
    db = flat.sum(axis=0) if b is not None else None
    return prep.loss, Params(dU, dW, dV, db, dc), dh


def sample_passes(rng, probs) -> np.ndarray:
    """One outcome: passes[s - 1] = True with probability 1 - c_s. probs: (T,)."""
    probs = np.asarray(probs, dtype=float)
    return rng.random(probs.shape) >= probs


class Outcome(NamedTuple):
    passes: np.ndarray    # (T,) bool
    prob: float


def outcomes(probs, output: str):
    """Every distinct outcome with its probability. Many-to-one: the first cut from the end
    (T + 1 outcomes; steps before it do not matter). Many-to-many: all 2^T patterns."""
    probs = np.asarray(probs, dtype=float)
    T = len(probs)
    if output == "last":
        for K in range(T + 1):                       # K passes back from T, then a cut
            passes = np.ones(T, bool)
            p = float(np.prod(1 - probs[T - K:]))
            if K < T:
                passes[T - 1 - K] = False
                p *= probs[T - 1 - K]
            yield Outcome(passes, p)
        return
    if T > MAX_ENUMERATED_T:
        raise ValueError(f"exact enumeration of many-to-many ARTBP needs T <= {MAX_ENUMERATED_T} "
                         f"(2^T outcomes), got T = {T}")
    for bits in itertools.product((False, True), repeat=T):
        passes = np.array(bits)
        yield Outcome(passes, float(np.prod(np.where(passes, 1 - probs, probs))))


class Expectation(NamedTuple):
    mean: Params              # sum over outcomes of prob * compensated gradient
    mean_dh0: np.ndarray      # (B, H)
    variance: float           # E ||g_Z - E g_Z||^2 over all parameters
    total_prob: float         # 1 up to round-off
    n_outcomes: int


def artbp_expectation(params, xs, ys, spec, probs, h0=None) -> Expectation:
    """The exact expectation (and total variance) of the ARTBP gradient over its finite
    distribution, one `artbp_grads` per outcome."""
    T = np.shape(xs)[1] if np.ndim(xs) == 3 else None
    if T is None:
        prepare(params, xs, ys, spec, h0)           # raises the usual shape error
    probs = check_probs(probs, T)
    acc = acc2 = None
    total, n, dh0_acc = 0.0, 0, None
    for out in outcomes(probs, spec.output):
        _, g, dh0 = artbp_grads(params, xs, ys, spec, out.passes, probs, h0)
        flat = np.concatenate([np.ravel(a) for a in g.arrays().values()])
        if acc is None:
            acc, acc2 = [np.zeros_like(a) for a in g.arrays().values()], 0.0
            dh0_acc = np.zeros_like(dh0)
        for a, gi in zip(acc, g.arrays().values()):
            a += out.prob * gi
        dh0_acc += out.prob * dh0
        acc2 += out.prob * float(flat @ flat)
        total += out.prob
        n += 1
    names = list(params.arrays()) if hasattr(params, "arrays") else list(Params._fields)
    mean = dict(zip(names, acc))
    mflat = np.concatenate([np.ravel(a) for a in acc])
    var = max(acc2 - float(mflat @ mflat), 0.0)     # E||g||^2 - ||E g||^2
    return Expectation(Params(*(mean.get(f) for f in Params._fields)), dh0_acc, var, total, n)


class TradeoffRow(NamedTuple):
    cut_prob: float           # c, the same at every step
    expected_steps: float     # E[number of steps backpropagated] (many-to-one)
    rel_std: float            # sqrt(E||g_Z - g||^2) / ||g||: noise of one ARTBP gradient
    window_k: int             # the Window(k) of the same cost: k + 1 steps
    window_rel_bias: float    # ||g_k - g|| / ||g|| of that window (deterministic)


def artbp_tradeoff(params, xs, ys, spec, cut_probs=(0.5, 0.3, 0.2, 0.1, 0.05), h0=None):
    """Many-to-one: exact ARTBP variance against expected cost, beside Window(k)'s bias.

    cut_probs: constant per-step cut probabilities c in (0, 1). Returns a list of `TradeoffRow`.
    All outcomes come from one backward pass: outcome K's gradient is sum_{j<=K} w_j piece_j.
    """
    return tradeoff_prepared(prepare(params, xs, ys, spec, h0), cut_probs)


def tradeoff_prepared(prep, cut_probs=(0.5, 0.3, 0.2, 0.1, 0.05), sweep=None):
    """`artbp_tradeoff` on a problem already through `sweep.prepare`; `sweep` (its
    `sweep_prepared` over every k) is computed when not given."""
    if prep.spec.output != "last":
        raise ValueError("artbp_tradeoff is for many-to-one (spec.output='last'); for "
                         "many-to-many use artbp_expectation on a short sequence")
    T = prep.fwd.cache.shape[0]
    pieces = lag_pieces_last(prep)               # time order; lag j is entry T - 1 - j
    flat = np.concatenate([getattr(pieces, n).reshape(T, -1)[::-1]
                           for n in ("U", "W", "b") if getattr(pieces, n) is not None], axis=1)
    if sweep is None:
        sweep = sweep_prepared(prep, keep_grads=False)
    full_flat = flat.sum(axis=0)
    vc = [np.ravel(a) for n, a in sweep.full.arrays().items() if n in ("V", "c")]
    gnorm2 = float(full_flat @ full_flat) + sum(float(a @ a) for a in vc)
    rows = []
    for c in cut_probs:
        if not 0 < c < 1:
            raise ValueError(f"cut_probs must lie in (0, 1), got {c!r}")
        probs = np.full(T, float(c))
        w = (1.0 - c) ** -np.arange(T)              # compensation after j passes
        cum = np.cumsum(flat * w[:, None], axis=0)  # (T, P): gradient when the first cut is at lag j+1
        var, steps = 0.0, 0.0
        for out in outcomes(probs, "last"):
            K = int(out.passes[::-1].argmin()) if not out.passes.all() else T   # passes before the cut
            g = cum[min(K, T - 1)]
            d = g - full_flat
            var += out.prob * float(d @ d)
            steps += out.prob * min(K + 1, T)
        k = int(min(max(round(steps) - 1, 0), T - 1))
        rows.append(TradeoffRow(float(c), steps, math.sqrt(var / gnorm2) if gnorm2 else 0.0, k,
                                float(sweep.l2_error[k])))
    return rows
