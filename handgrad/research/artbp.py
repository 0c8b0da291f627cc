"""Unbiased randomized truncation: ARTBP (Tallec & Ollivier 2017, "Unbiasing truncated
backpropagation through time").

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, W the state width
(H; 2H for the LSTM's [h, c]), P parameter elements.

At every step s the backward pass is cut between step s and the state s_{s-1} with probability
c_s; when it is not cut, the carried gradient is multiplied by the compensation 1 / (1 - c_s):

    dL/ds_{s-1} = Z_s / (1 - c_s) * (dL/ds_{s-1} through step s),   Z_s ~ Bernoulli(1 - c_s),

independent; the backward step is the cell's own (`cell.back`), so this holds for every cell, a
cut holding the whole state (the LSTM's h and c) constant, as truncation does.

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

from ..bptt import assemble_grads, state_gradient
from ..cells import weights_of
from .sweep import lag_pieces, prepare, sweep_prepared

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
    """The compensated gradient for one outcome. Returns (loss, grads, dh0).

    params, xs, ys, h0: as for `hg.loss_and_grads` (any cell, head or not, any loss and
    reduction); grads come back as `params`' type, dh0 (B, H) (the LSTM: the pair (dh_0, dc_0)).
    passes: (T,) bool, passes[s - 1] = the backward pass crosses from step s to s_{s-1};
    probs: cut probabilities c_s (see `check_probs`). spec.truncation is ignored.
    """
    prep = prepare(params, xs, ys, spec, h0)
    grads, ds0 = compensated(prep, passes, probs)
    return prep.loss, grads, state_gradient(ds0, prep.spec)


def compensated(prep, passes, probs):
    """The compensated gradient of one outcome on a prepared problem: (grads, dL/ds_0 (B, W))."""
    cell, fwd = prep.cell, prep.fwd
    w = weights_of(prep.params)
    T = prep.T
    probs = check_probs(probs, T)
    passes = np.asarray(passes)
    if passes.shape != (T,):
        raise ValueError(f"passes must have shape (T,) = ({T},), got {passes.shape}")
    gain = np.where(passes.astype(bool), 1.0 / (1.0 - probs), 0.0)   # Z_s / (1 - c_s)
    ds_loss = prep.side.ds_loss                          # (S, B, W) through o_t alone
    first_loss_step = 1 if prep.spec.output == "all" else T
    dP = dR = None
    ds = np.zeros((1,) + ds_loss.shape[1:])             # dL/ds_t carried from step t + 1
    for t in range(T, 0, -1):
        if t >= first_loss_step:
            ds = ds + ds_loss[t - first_loss_step]       # the loss term at step t
        dp, dr, ds = cell.back(w, fwd.cache, fwd.states, t - 1, t, ds)   # back through step t
        if dP is None:
            dP = np.zeros((T,) + dp.shape[1:])
        dP[t - 1] = dp[0]
        if dr is not None:
            dR = np.zeros_like(dP) if dR is None else dR
            dR[t - 1] = dr[0]
        ds = ds * gain[t - 1]                            # cut, or compensate, the carry to s_{t-1}
    grads = assemble_grads(prep.params, cell, prep.xs_tm, fwd, dP, dR, 0, T, prep.side.dV,
                           prep.side.dc)
    return grads, ds[0]


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
    mean: object              # Params | GatedParams: sum over outcomes of prob * gradient
    mean_dh0: object          # (B, H); the LSTM: the pair (dh_0, dc_0)
    variance: float           # E ||g_Z - E g_Z||^2 over all parameters
    total_prob: float         # 1 up to round-off
    n_outcomes: int


def artbp_expectation(params, xs, ys, spec, probs, h0=None) -> Expectation:
    """The exact expectation (and total variance) of the ARTBP gradient over its finite
    distribution, one compensated backward pass per outcome (one forward pass for all).
    Arguments as for `artbp_grads`."""
    prep = prepare(params, xs, ys, spec, h0)
    probs = check_probs(probs, prep.T)
    acc, acc2, ds0_acc = None, 0.0, None
    total, n = 0.0, 0
    for out in outcomes(probs, prep.spec.output):
        g, ds0 = compensated(prep, out.passes, probs)
        arrays = g.arrays()
        flat = np.concatenate([np.ravel(a) for a in arrays.values()])
        if acc is None:
            acc = {name: np.zeros_like(a) for name, a in arrays.items()}
            ds0_acc = np.zeros_like(ds0)
        for name, a in arrays.items():
            acc[name] += out.prob * a
        ds0_acc += out.prob * ds0
        acc2 += out.prob * float(flat @ flat)
        total += out.prob
        n += 1
    mflat = np.concatenate([np.ravel(a) for a in acc.values()])
    var = max(acc2 - float(mflat @ mflat), 0.0)     # E||g||^2 - ||E g||^2
    mean = type(prep.params)(*(acc.get(f) for f in type(prep.params)._fields))
    return Expectation(mean, state_gradient(ds0_acc, prep.spec), var, total, n)


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
    T = prep.T
    flat = np.stack([np.concatenate([np.ravel(a) for a in piece.grads.values()])
                     for piece in lag_pieces(prep, T - 1)])          # (T, P) by lag j
    if sweep is None:
        sweep = sweep_prepared(prep, keep_grads=False)
    full_flat = flat.sum(axis=0)
    vc = [np.ravel(a) for a in (prep.side.dV, prep.side.dc) if a is not None]
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
