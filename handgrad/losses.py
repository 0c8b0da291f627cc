"""Loss terms and their gradient with respect to the outputs.

Size letters: S output steps (T for `output="all"`, 1 for `"last"`), B batch, O outputs (O = H
without an output head). Outputs are time-major here: `os` of shape (S, B, O); targets `ys`
(S, B, O) float or (S, B) int.

Terms, one per (sample, output step): half_squared 1/2 ||o - y||^2, squared ||o - y||^2,
cross_entropy -log softmax(o)[y], linear <y, o> (y is the upstream gradient dL/do: the loss of a
layer's backward pass). Reductions: "sum"; "mean" divides by the number of elements (S B O for
the squared and linear losses, as PyTorch's MSELoss; S B for cross-entropy, as CrossEntropyLoss);
"batch_mean" divides by B alone (`loss.sum() / B`).
"""
from __future__ import annotations

import numpy as np

from .nonlin import cross_entropy_terms, log_softmax


def loss_sum(os, ys, loss: str):
    """Sum of all loss terms (before reduction). Analytic in `os` (complex input allowed)."""
    if loss == "cross_entropy":
        return np.sum(cross_entropy_terms(os, ys))
    if loss == "linear":
        return np.sum(ys * os)
    err = os - ys
    total = np.sum(err * err)                 # not |err|^2: stays analytic for complex steps
    return 0.5 * total if loss == "half_squared" else total


def loss_count(loss: str, reduction: str, n_terms_shape: tuple) -> int:
    """What the reduction divides the sum of the terms by: 1 for "sum"; B for "batch_mean"; for
    "mean" every element (S B O) for the squared and linear losses (PyTorch's MSELoss), every
    (sample, step) (S B) for cross-entropy (CrossEntropyLoss).

    n_terms_shape: the shape of `os`, (S, B, O).
    """
    S, B, O = n_terms_shape
    if reduction == "sum":
        return 1
    if reduction == "batch_mean":
        return B
    return S * B if loss == "cross_entropy" else S * B * O


def loss_and_output_grad(os, ys, loss: str, reduction: str):
    """The reduced loss and dL/do_t for every output step.

    os: (S, B, O); ys: (S, B, O) float or (S, B) int. Returns (float, (S, B, O)).
    """
    n = loss_count(loss, reduction, os.shape)
    value = float(loss_sum(os, ys, loss)) / n
    if loss == "cross_entropy":
        dos = np.exp(log_softmax(os))                          # softmax(o_t) ...
        # ... - onehot(y_t): at the target p_y - 1 = -(sum of the other classes' p), which
        # keeps its relative accuracy as p_y -> 1 (the subtraction would cancel)
        np.put_along_axis(dos, ys[..., None], 0.0, axis=-1)
        np.put_along_axis(dos, ys[..., None], -dos.sum(axis=-1, keepdims=True), axis=-1)
        return value, dos / n
    if loss == "linear":
        return value, ys / n                                   # d/do <y, o> = y
    scale = 1.0 if loss == "half_squared" else 2.0             # d/do c||o - y||^2 = 2c (o - y)
    return value, (scale / n) * (os - ys)
