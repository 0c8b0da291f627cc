"""The tutorial's published backward pass (`handgrad.tutorial_code`) as an oracle candidate.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

The tutorial trains one record at a time from h_0 = 0, so the candidate loops over the batch,
adds the per-record losses and gradients, and refuses a nonzero h0 (check it with `h0=False`).
"""
from __future__ import annotations

import numpy as np


def tutorial_rnn(bptt_truncate: int = 5):
    """The published backward pass for Spec.tutorial() (sigmoid, no bias, many-to-one)."""
    from ..tutorial_code import published_backward

    def candidate(params, xs, ys, h0):
        if h0 is not None and np.any(h0 != 0):
            raise ValueError("the tutorial's code always starts from h0 = 0")
        total, grads = 0.0, None
        for x, y in zip(xs, ys):                      # x (T, D): per-step inputs, y (O,)
            loss, g = published_backward(params.U, params.W, params.V, x, y, bptt_truncate)
            total += loss
            grads = g if grads is None else grads._replace(
                U=grads.U + g.U, W=grads.W + g.W, V=grads.V + g.V)
        return total, grads

    candidate.__name__ = "tutorial_published_backward"
    return candidate
