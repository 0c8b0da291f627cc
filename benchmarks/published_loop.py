"""The tutorial's own training program, operation for operation, as the speed baseline of
`handgrad train --faithful` (the tutorial is in ../shared/seed/; this is written here, in this project's names, following
its published algorithm step by step with the same numpy operations per step, wasted ones
included, so that its cost is the published program's cost; its maths is the published maths, bugs included: see
handgrad/tutorial_code.py for what they are).

Size letters: N records, T time steps (50, the window; also the input width: one-hot position
input), H hidden units (100), O outputs (1).

One epoch, as published: the loss on every training record (a forward pass of T steps each, the
input of step t a (T, 1) column of zeros holding the value at row t), the same on every
validation record, then for every training record a forward pass keeping each step's state, the
published backward pass (for each of the T steps an inner loop of up to `bptt_truncate` steps),
every gradient element clipped to [-10, 10], and the SGD update.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Weights(NamedTuple):
    U: np.ndarray   # (H, T)
    W: np.ndarray   # (H, H)
    V: np.ndarray   # (O, H)


def init_weights(seed: int, T: int = 50, H: int = 100, O: int = 1) -> Weights:
    """uniform(0, 1) weights, the tutorial's initialisation."""
    rng = np.random.default_rng(seed)
    return Weights(rng.uniform(0, 1, (H, T)), rng.uniform(0, 1, (H, H)), rng.uniform(0, 1, (O, H)))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _record_loss(w: Weights, x, y):
    """1/2 (y - o_T)^2 of one record x (T, 1), y (O,): the published loss check."""
    h_prev = np.zeros((w.W.shape[0], 1))
    o = None
    for t in range(x.shape[0]):
        x_t = np.zeros(x.shape)              # step t's input: the value at row t
        x_t[t] = x[t]
        ux = np.dot(w.U, x_t)
        wh = np.dot(w.W, h_prev)
        a = wh + ux
        h = _sigmoid(a)
        o = np.dot(w.V, h)
        h_prev = h
    return (y - o) ** 2 / 2


def _record_gradient(w: Weights, x, y, bptt_truncate: int):
    """The published forward and backward pass of one record: (dU, dW, dV)."""
    U, W, V = w
    H = W.shape[0]
    T = x.shape[0]
    kept = []
    h_prev = np.zeros((H, 1))
    dU, dV, dW = np.zeros(U.shape), np.zeros(V.shape), np.zeros(W.shape)
    dU_acc, dV_step, dW_acc = np.zeros(U.shape), np.zeros(V.shape), np.zeros(W.shape)
    dU_k, dW_k = np.zeros(U.shape), np.zeros(W.shape)
    ux = wh = a = o = None
    for t in range(T):                              # forward, keeping every step's state
        x_t = np.zeros(x.shape)
        x_t[t] = x[t]
        ux = np.dot(U, x_t)
        wh = np.dot(W, h_prev)
        a = wh + ux
        h = _sigmoid(a)
        o = np.dot(V, h)
        kept.append({"h": h, "h_prev": h_prev})
        h_prev = h
    do = o - y
    for t in range(T):                              # the published backward pass
        dV_step = np.dot(do, np.transpose(kept[t]["h"]))
        dh_out = np.dot(np.transpose(V), do)
        ds = dh_out
        da = a * (1 - a) * ds
        da_w = da * np.ones_like(wh)
        dh_prev = np.dot(np.transpose(W), da_w)
        for _ in range(t - 1, max(-1, t - bptt_truncate - 1), -1):
            ds = dh_out + dh_prev
            da = a * (1 - a) * ds
            da_w = da * np.ones_like(wh)
            da_u = da * np.ones_like(ux)
            dW_k = np.dot(W, kept[t]["h_prev"])
            dh_prev = np.dot(np.transpose(W), da_w)
            x_t = np.zeros(x.shape)
            x_t[t] = x[t]
            dU_k = np.dot(U, x_t)
            np.dot(np.transpose(U), da_u)          # the published `dx`, computed and unused
            dU_acc += dU_k
            dW_acc += dW_k
        dV += dV_step
        dU += dU_acc
        dW += dW_acc
    return dU, dW, dV


def _clip(g, lo: float, hi: float):
    """The published clipping: elements above hi set to hi, below lo to lo, in place."""
    if g.max() > hi:
        g[g > hi] = hi
    if g.min() < lo:
        g[g < lo] = lo
    return g


def epoch(w: Weights, X, Y, X_val, Y_val, lr: float = 1e-4, bptt_truncate: int = 5,
          clip: float = 10.0):
    """One published epoch on X (N, T, 1), Y (N, O), X_val, Y_val: returns (weights, train
    loss, val loss) (the losses measured before the epoch's updates, as published)."""
    loss = sum(_record_loss(w, X[i], Y[i]) for i in range(Y.shape[0])) / float(Y.shape[1])
    val = sum(_record_loss(w, X_val[i], Y_val[i]) for i in range(Y_val.shape[0])) / float(
        Y_val.shape[1])
    U, W, V = (a.copy() for a in w)
    for i in range(Y.shape[0]):
        dU, dW, dV = _record_gradient(Weights(U, W, V), X[i], Y[i], bptt_truncate)
        for g in (dU, dV, dW):
            _clip(g, -clip, clip)
        U -= lr * dU
        V -= lr * dV
        W -= lr * dW
    return Weights(U, W, V), loss, val


def train(epochs: int, seed: int = 0, X=None, Y=None, X_val=None, Y_val=None) -> Weights:
    """`epochs` published epochs from uniform(0, 1) weights on the tutorial's data."""
    if X is None:
        X, Y, X_val, Y_val = tutorial_arrays()
    w = init_weights(seed, T=X.shape[1])
    for _ in range(epochs):
        w, _, _ = epoch(w, X, Y, X_val, Y_val)
    return w


def tutorial_arrays():
    """The tutorial's arrays: X (100, 50, 1), Y (100, 1), X_val (50, 50, 1), Y_val (50, 1)."""
    from .problems import sine_windows
    values, nxt = sine_windows()
    X, Y = values[:, :, None], nxt[:, None]
    return X[:100], Y[:100], X[100:], Y[100:]
