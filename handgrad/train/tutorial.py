"""Measurements behind `handgrad tutorial`: the tutorial's published backward pass
(`handgrad.tutorial_code`, a known-wrong fixture) beside the exact gradient
(`handgrad.loss_and_grads`) on the tutorial's own data, and the measured effect of each bug.

Size letters: M models trained side by side, B windows, T = D = 50 steps (position input),
H = 100 hidden units, O = 1 output.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..bptt import loss_and_grads, predict
from ..params import Params, init_params
from ..spec import Spec
from ..tolerances import cosine, rel_error
from .. import tutorial_code as tc
from .data import Dataset
from .diagnose import saturation

K = 5                 # the tutorial's bptt_truncate
LR = 1e-4             # the tutorial's learning rate
CLIP = 10.0           # the tutorial's clip value
EPOCHS = 25           # the tutorial's epochs
REPORTED_RMSE = 0.127  # what the tutorial reports


class Comparison(NamedTuple):
    """Published against exact gradient of one parameter, summed over the training windows."""

    param: str
    exact_max: float       # max |exact|
    published_max: float   # max |published|
    rel_error: float       # handgrad.rel_error(published, exact)
    cosine: float          # handgrad.cosine(published, exact)


def windows_1d(data: Dataset):
    """The tutorial's records: windows (B, T) of raw values and targets (B,), from the position
    input xs (B, T, T) whose diagonal holds the window."""
    xs = data.train.xs
    return np.einsum("btt->bt", xs), data.train.ys[:, 0]


def published_sum(params: Params, windows, targets, fix=frozenset()) -> Params:
    """The published gradients summed over the records (weights held fixed)."""
    total = None
    for x, y in zip(windows, targets):
        rec = tc.as_record(x, y, params.U.shape[1], 1)
        fwd = tc.published_forward(params.U, params.W, params.V, rec)
        g = tc._backward(params.U, params.W, params.V, rec, fwd, K, fix)
        total = g if total is None else Params(total.U + g.U, total.W + g.W, total.V + g.V)
    return total


def compare(params: Params, data: Dataset, spec: Spec):
    """Per parameter comparison over the training windows; returns (comparisons, exact, published)."""
    windows, targets = windows_1d(data)
    _, exact = loss_and_grads(params, data.train.xs, data.train.ys, spec)
    published = published_sum(params, windows, targets)
    rows = [Comparison(n, float(np.max(np.abs(getattr(exact, n)))),
                       float(np.max(np.abs(getattr(published, n)))),
                       rel_error(getattr(published, n), getattr(exact, n)),
                       cosine(getattr(published, n), getattr(exact, n))) for n in "UWV"]
    return rows, exact, published


class Effects(NamedTuple):
    """Measured facts, one group per bug of `tutorial_code.BUGS` (1-7; 8 is `replicate`)."""

    deriv_published: tuple      # (min, max) of add*(1-add) on the first window
    deriv_true_last: tuple      # (min, max) of the true sigmoid' at the last step
    deriv_true_all: tuple       # (min, max) of the true sigmoid' over all steps
    deriv_repair_identical: bool    # repairing bug 1 alone leaves dU, dW, dV bit-identical
    target_identical: bool      # dU, dW bit-identical when y changes
    target_dv_changes: bool     # dV does change
    exact_u_change: float       # rel. change of the exact dU when y changes
    own_step_change: tuple      # (dU, dW) rel. change when the inner loop reads its own step
    reset_ratio: tuple          # (dU, dW) norm ratio published / with accumulators reset
    dv_ratio: float             # |dV published| / |dV exact|
    dv_cosine: float
    columns_identical: bool     # every column of published dU identical (broadcast of (H, 1))
    h_exactly_one: float        # fraction of h_T entries exactly 1.0 at the uniform init
    sat_fraction: float         # saturated fraction at the uniform init
    exact_uw_max: tuple         # max |dU|, max |dW| exact at the uniform init (summed windows)


def effects(learn_params: Params, tut_params: Params, data: Dataset, spec: Spec) -> Effects:
    """Measure bugs 1-5 and 7 at a learning initialisation `learn_params` (bug 7 at the
    tutorial's uniform(0, 1) `tut_params`)."""
    windows, targets = windows_1d(data)
    U, W, V = learn_params.U, learn_params.W, learn_params.V
    rec = tc.as_record(windows[0], targets[0], U.shape[1], 1)
    fwd = tc.published_forward(U, W, V, rec)
    states = np.concatenate([layer.s for layer in fwd.layers], axis=1)
    true_d = states * (1 - states)
    pub_d = fwd.add * (1 - fwd.add)
    base = tc._backward(U, W, V, rec, fwd, K)
    repaired1 = tc._backward(U, W, V, rec, fwd, K, frozenset({1}))
    same1 = all(np.array_equal(getattr(base, n), getattr(repaired1, n)) for n in "UWV")
    # bug 2: a different target
    rec_y = rec._replace(y=rec.y + 1.0)
    other = tc._backward(U, W, V, rec_y, tc.published_forward(U, W, V, rec_y), K)
    _, ex_a = loss_and_grads(learn_params, data.train.xs[:1], data.train.ys[:1], spec)
    _, ex_b = loss_and_grads(learn_params, data.train.xs[:1], data.train.ys[:1] + 1.0, spec)
    # bugs 3, 4: repair one at a time (the others stay)
    own = tc._backward(U, W, V, rec, fwd, K, frozenset({3}))
    reset = tc._backward(U, W, V, rec, fwd, K, frozenset({4}))
    # bug 7 at the uniform init
    sat = saturation(tut_params, data.train.xs, Spec.tutorial())
    _, hs = predict(tut_params, data.train.xs, spec)
    _, ex_tut = loss_and_grads(tut_params, data.train.xs, data.train.ys, spec)
    return Effects(
        (float(pub_d.min()), float(pub_d.max())),
        (float(true_d[:, -1].min()), float(true_d[:, -1].max())),
        (float(true_d.min()), float(true_d.max())),
        same1,
        np.array_equal(base.U, other.U) and np.array_equal(base.W, other.W),
        not np.array_equal(base.V, other.V),
        rel_error(ex_b.U, ex_a.U),
        (rel_error(own.U, base.U), rel_error(own.W, base.W)),
        (float(np.linalg.norm(base.U) / np.linalg.norm(reset.U)),
         float(np.linalg.norm(base.W) / np.linalg.norm(reset.W))),
        float(np.linalg.norm(base.V) / np.linalg.norm(ex_a.V)), cosine(base.V, ex_a.V),
        bool(np.all(base.U == base.U[:, :1])),
        float(np.mean(hs[:, -1] == 1.0)), sat.fraction,
        (float(np.max(np.abs(ex_tut.U))), float(np.max(np.abs(ex_tut.W)))),
    )


class Replication(NamedTuple):
    seeds: list
    val_rmse: list         # per seed, published training + published prediction, scale 1
    correlation: list      # per seed, correlation of the predictions with the truth


def replicate(data: Dataset, seeds, epochs: int = EPOCHS) -> Replication:
    """Train with the published gradient exactly as the tutorial does (uniform(0, 1) weights,
    SGD one record at a time, lr 1e-4, each element clipped to [-10, 10], 25 epochs) for every
    seed at once, then predict the validation windows with the published prediction code."""
    spec = Spec.tutorial()
    T = data.window
    inits = [init_params(spec, T, 100, 1, seed=s, init="tutorial") for s in seeds]
    U = np.stack([p.U for p in inits])
    W = np.stack([p.W for p in inits])
    V = np.stack([p.V for p in inits])
    windows, targets = windows_1d(data)
    records = [tc.as_record(x, y, T, 1) for x, y in zip(windows, targets)]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(epochs):
            for rec in records:
                _, g = tc.closed_form(U, W, V, rec, K)
                U = U - LR * np.clip(g.U, -CLIP, CLIP)
                W = W - LR * np.clip(g.W, -CLIP, CLIP)
                V = V - LR * np.clip(g.V, -CLIP, CLIP)
    val_x = np.einsum("btt->bt", data.val.xs)
    truth = data.val.ys[:, 0]
    rmse, corr = [], []
    for m in range(len(seeds)):
        with np.errstate(over="ignore", invalid="ignore"):
            preds = np.array([tc.published_predict(U[m], W[m], V[m], x)[0] for x in val_x])
            rmse.append(float(np.sqrt(np.mean((preds - truth) ** 2))))
            corr.append(float(np.corrcoef(preds, truth)[0, 1]) if np.std(preds) > 0 else float("nan"))
    return Replication(list(seeds), rmse, corr)


def published_prediction_rmse(params: Params, data: Dataset) -> float:
    """Validation RMSE of a (correctly trained) model when predicted with the published code."""
    val_x = np.einsum("btt->bt", data.val.xs)
    with np.errstate(over="ignore", invalid="ignore"):
        preds = np.array([tc.published_predict(params.U, params.W, params.V, x)[0] for x in val_x])
    return float(np.sqrt(np.mean((preds - data.val.ys[:, 0]) ** 2)))
