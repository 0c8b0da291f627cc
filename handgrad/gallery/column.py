"""Correct, in the style of most tutorials: one sample at a time, column vectors.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

Each sample runs its own loop with h of shape (H, 1), a_t = U x_t + W h_{t-1} + b, and the
backward pass of Window(k) goes one loss step at a time, k transitions back (k = T for full
BPTT), exactly the loop structure of `bptt_truncate` tutorials, but right. `dtype=np.float32`
computes in single precision (and is judged as such by the oracle).
"""
from __future__ import annotations

import numpy as np

from ..spec import Window
from ._common import act, act_grad_from_output, squared_loss, supported


def column_rnn(spec, dtype=np.float64):
    """A correct per-sample candidate for `spec` (squared losses; full BPTT or Window(k))."""
    supported(spec, (type(None), Window))

    def candidate(params, xs, ys, h0):
        U, W, V, b, c = (None if p is None else np.asarray(p, dtype) for p in params)
        xs = np.asarray(xs, dtype)
        B, T, _ = xs.shape
        H = W.shape[0]
        k = T if spec.truncation is None else spec.truncation.k
        bias = (lambda v: v[:, None]) if b is not None else (lambda v: 0)
        # outputs first, to get dL/do for every (sample, step) from one loss call
        states = []
        for i in range(B):
            s = [np.zeros((H, 1), dtype) if h0 is None else np.asarray(h0[i], dtype)[:, None]]
            for t in range(T):
                s.append(act(spec.activation, U @ xs[i, t][:, None] + W @ s[-1] + bias(b)))
            states.append(s)
        hs = np.stack([np.hstack(s[1:]).T for s in states])              # (B, T, H)
        used = hs if spec.output == "all" else hs[:, -1:]
        os = used @ V.T + (c if c is not None else 0)
        loss, dos = squared_loss(os, np.asarray(ys, dtype) if spec.output == "all"
                                 else np.asarray(ys, dtype)[:, None], spec)
        grads = {n: np.zeros(p.shape, dtype) for n, p in zip("UWVbc", (U, W, V, b, c))
                 if p is not None}
        grads["h0"] = np.zeros((B, H), dtype)
        steps = range(1, T + 1) if spec.output == "all" else [T]
        for i in range(B):
            s = states[i]
            for j, t in enumerate(steps):
                do = dos[i, j][:, None]                                   # (O, 1)
                grads["V"] += do @ s[t].T                                 # o_t = V h_t + c
                if c is not None:
                    grads["c"] += do[:, 0]
                dh = V.T @ do                                             # (H, 1)
                for r in range(t, max(0, t - k - 1), -1):                 # steps t, t-1, ..., t-k
                    da = dh * act_grad_from_output(spec.activation, s[r])   # h_r = act(a_r)
                    grads["U"] += da @ xs[i, r - 1][None, :]
                    grads["W"] += da @ s[r - 1].T
                    if b is not None:
                        grads["b"] += da[:, 0]
                    dh = W.T @ da                                         # carry to h_{r-1}
                    if r == 1:
                        grads["h0"][i] += dh[:, 0]                        # reached h_0
        return loss, grads

    candidate.__name__ = f"column_rnn_{np.dtype(dtype).name}"
    return candidate
