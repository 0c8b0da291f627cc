"""Loss terms and their gradient with respect to the outputs.

Size letters: S output steps (T for `output="all"`, 1 for `"last"`), B batch, O outputs.
Outputs are time-major here: `os` of shape (S, B, O); targets `ys` (S, B, O) float or (S, B) int.
"""
from __future__ import annotations

import numpy as np

from .nonlin import log_softmax


def loss_sum(os, ys, loss: str):
    """Sum of all loss terms (before reduction). Analytic in `os` (complex input allowed)."""
    if loss == "cross_entropy":
        logp = log_softmax(os)
        return -np.sum(np.take_along_axis(logp, ys[..., None], axis=-1))
    err = os - ys
    total = np.sum(err * err)                 # not |err|^2: stays analytic for complex steps
    return 0.5 * total if loss == "half_squared" else total


def loss_count(loss: str, reduction: str, n_terms_shape: tuple) -> int:
    """What `reduction="mean"` divides by: every element for squared losses (PyTorch's MSELoss),
    every (sample, step) for cross-entropy (CrossEntropyLoss). 1 for `"sum"`.

    n_terms_shape: the shape of `os`, (S, B, O).
    """
    if reduction == "sum":
        return 1
    S, B, O = n_terms_shape
    return S * B if loss == "cross_entropy" else S * B * O


def loss_and_output_grad(os, ys, loss: str, reduction: str):
    """The reduced loss and dL/do_t for every output step.

    os: (S, B, O); ys: (S, B, O) float or (S, B) int. Returns (float, (S, B, O)).
    """
    n = loss_count(loss, reduction, os.shape)
    value = float(loss_sum(os, ys, loss)) / n
    if loss == "cross_entropy":
        dos = np.exp(log_softmax(os))                          # softmax(o_t) ...
        rows = np.take_along_axis(dos, ys[..., None], axis=-1)
        np.put_along_axis(dos, ys[..., None], rows - 1.0, axis=-1)   # ... - onehot(y_t)
        return value, dos / n
    scale = 1.0 if loss == "half_squared" else 2.0             # d/do c||o - y||^2 = 2c (o - y)
    return value, (scale / n) * (os - ys)
