"""Hidden nonlinearities and the log-softmax, numerically stable and analytic.

Every function here is built from exp, tanh, log and rational operations on the *same* branch of a
piecewise-constant sign, so it never overflows for pre-activations of any size and it stays
analytic: the complex-step derivative Im f(x + ih) / h of code using it is exact to round-off.
"""
from __future__ import annotations

import numpy as np


def _sign(a):
    """+1 where Re a >= 0, else -1 (a constant: it does not depend on the imaginary part)."""
    return np.where(np.real(a) >= 0, 1.0, -1.0)


def activate(activation: str, a):
    """h = act(a) and its derivative act'(a), both accurate where the unit saturates.

    Computing act'(a) from the output (h(1 - h), 1 - h^2) cancels catastrophically when h is near
    +-1; here it comes from e = exp(-|a|) (or exp(-2|a|)), so a saturated unit gets its true tiny
    derivative instead of round-off.

    a: any shape, real or complex. Returns (h, dh_da) of the same shape.
    """
    s = _sign(a)
    if activation == "sigmoid":
        e = np.exp(-s * a)                    # in (0, 1]: never overflows
        r = 1.0 / (1.0 + e)
        h = np.where(s > 0, r, e * r)         # 1/(1+e^-a) for a >= 0, e^a/(1+e^a) below
        return h, e * r * r                   # sigma'(a) = sigma(a) sigma(-a)
    if activation == "tanh":
        e = np.exp(-2.0 * s * a)              # in (0, 1]
        return np.tanh(a), 4.0 * e / (1.0 + e) ** 2   # sech^2(a)
    raise ValueError(f"activation must be 'sigmoid' or 'tanh', got {activation!r}")


def log_softmax(o):
    """log softmax(o) over the last axis, shifted by the max of the real part (analytic)."""
    z = o - np.max(np.real(o), axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
