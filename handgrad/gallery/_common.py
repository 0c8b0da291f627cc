"""What every gallery style shares: the supported specs and the loss on the outputs.

Size letters: B batch, T time steps, S output steps (T or 1), O outputs.
"""
from __future__ import annotations

import numpy as np


def supported(spec, truncations=(type(None),)) -> None:
    """The gallery's styles implement the squared losses; raise ValueError for anything else."""
    if spec.loss not in ("half_squared", "squared"):
        raise ValueError(f"gallery candidates implement the squared losses, got {spec.loss!r}")
    if not isinstance(spec.truncation, truncations):
        raise ValueError(f"this gallery style does not implement {spec.truncation!r}")


def squared_loss(os, ys, spec):
    """os, ys: (B, S, O). Returns (loss, dL/do of shape (B, S, O))."""
    err = os - ys
    n = err.size if spec.reduction == "mean" else 1           # PyTorch's MSELoss mean
    k = 0.5 if spec.loss == "half_squared" else 1.0
    return k * np.sum(err * err) / n, (2 * k / n) * err


def act(activation: str, a):
    """h = act(a) for tanh / sigmoid (plain formulas, as a tutorial would write them)."""
    return np.tanh(a) if activation == "tanh" else 1.0 / (1.0 + np.exp(-a))


def act_grad_from_output(activation: str, h):
    """act'(a) computed from h = act(a): 1 - h^2 or h (1 - h)."""
    return 1.0 - h * h if activation == "tanh" else h * (1.0 - h)
