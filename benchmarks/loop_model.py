"""The per-record loop in the tutorial's style, with correct maths: one sample at a time, column
vectors, Python loops over t. It is the baseline the issue asks handgrad to beat.

Size letters: B batch, T time steps, D input features, H hidden units, O outputs.
Full BPTT is one reverse sweep carrying dL/dh (as in min-char-rnn); Window(k) is the tutorial's
structure: every loss step t runs its own inner loop back over steps t, t-1, ..., max(1, t-k).
Squared losses only (the tutorial's), h_0 = 0.
"""
from __future__ import annotations

import numpy as np

import handgrad as hg


def _act(activation: str, a):
    """h = act(a) and act'(a) taken from the output h (column vectors (H, 1))."""
    if activation == "sigmoid":
        h = 1.0 / (1.0 + np.exp(-a))
        return h, h * (1.0 - h)
    h = np.tanh(a)
    return h, 1.0 - h * h


def _record_forward(params, x, activation):
    """States h_0..h_T and act'(a_1..a_T) of one record x (T, D), as lists of (H, 1) columns."""
    U, W, _, b, _ = params
    T, D = x.shape
    h = np.zeros((W.shape[0], 1))
    hs, dacts = [h], [None]
    for t in range(T):
        a = U @ x[t].reshape(D, 1) + W @ h          # a_t = U x_t + W h_{t-1}
        if b is not None:
            a = a + b.reshape(-1, 1)
        h, dact = _act(activation, a)               # h_t = act(a_t)
        hs.append(h)
        dacts.append(dact)
    return hs, dacts


def loss_and_grads(params: hg.Params, xs, ys, spec: hg.Spec):
    """Loss and gradients of the batch `xs` (B, T, D), `ys` (B, O) | (B, T, O), one record at a
    time. Same contract as `hg.loss_and_grads` for squared losses, full BPTT or Window(k)."""
    if spec.loss == "cross_entropy" or not (spec.truncation is None
                                            or isinstance(spec.truncation, hg.Window)):
        raise ValueError("the loop baseline supports squared losses with full BPTT or Window(k), "
                         f"got loss={spec.loss!r}, truncation={spec.truncation!r}")
    U, W, V, b, c = params
    B, T, D = xs.shape
    O = V.shape[0]
    steps = list(range(1, T + 1)) if spec.output == "all" else [T]
    n = B * len(steps) * O if spec.reduction == "mean" else 1
    coef = 0.5 if spec.loss == "half_squared" else 1.0
    k = None if spec.truncation is None else spec.truncation.k
    dU, dW, dV = np.zeros_like(U), np.zeros_like(W), np.zeros_like(V)
    db = None if b is None else np.zeros((W.shape[0], 1))
    dc = None if c is None else np.zeros((O, 1))
    total = 0.0
    for i in range(B):
        x = xs[i]
        hs, dacts = _record_forward(params, x, spec.activation)
        dh_out = {}
        for t in steps:
            o = V @ hs[t]                                         # o_t = V h_t + c
            if c is not None:
                o = o + c.reshape(-1, 1)
            y = (ys[i, t - 1] if spec.output == "all" else ys[i]).reshape(O, 1)
            err = o - y
            total += coef * float(np.sum(err * err))
            do = (2.0 * coef / n) * err                           # dL/do_t
            dV += do @ hs[t].T
            if dc is not None:
                dc += do
            dh_out[t] = V.T @ do                                  # dL/dh_t through o_t
        if k is None:                                             # one reverse sweep
            dh = np.zeros((W.shape[0], 1))
            for t in range(T, 0, -1):
                dh = dh + dh_out.get(t, 0.0)
                da = dh * dacts[t]                                # h_t = act(a_t)
                dU += da @ x[t - 1].reshape(1, D)                 # a_t = U x_t + ...
                dW += da @ hs[t - 1].T                            # ... + W h_{t-1}
                if db is not None:
                    db += da
                dh = W.T @ da                                     # carry to h_{t-1}
        else:                                                     # a window per loss step
            for t in steps:
                dh = dh_out[t]
                for j in range(t, max(1, t - k) - 1, -1):
                    da = dh * dacts[j]
                    dU += da @ x[j - 1].reshape(1, D)
                    dW += da @ hs[j - 1].T
                    if db is not None:
                        db += da
                    dh = W.T @ da
    db = None if db is None else db[:, 0]
    dc = None if dc is None else dc[:, 0]
    grads = hg.Params(dU, dW, dV, db, dc)
    return total / n, grads


def predict_last(params: hg.Params, xs, activation: str):
    """o_T of every record, one at a time: (B, O)."""
    U, W, V, b, c = params
    out = []
    for x in xs:
        hs, _ = _record_forward(params, x, activation)
        o = V @ hs[-1]
        out.append(o[:, 0] if c is None else o[:, 0] + c)
    return np.array(out)
