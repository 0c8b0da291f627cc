"""Hidden nonlinearities and the log-softmax, numerically stable and analytic.

Real arrays take a fast in-place path; complex arrays (complex-step differentiation) take a path
built from exp, tanh, log and rational operations on the *same* branch of a piecewise-constant
sign, so it never overflows and stays analytic: Im f(x + ih) / h is exact to round-off.
Both compute the same function.
"""
from __future__ import annotations

import numpy as np


def _sign(a):
    """+1 where Re a >= 0, else -1 (a constant: it does not depend on the imaginary part)."""
    return np.where(np.real(a) >= 0, 1.0, -1.0)


def act(activation: str, a, out=None):
    """h = act(a), elementwise; `out` (same shape) receives the result if given.

    Real sigmoid is 1 / (1 + exp(-a)), which keeps full relative accuracy in both tails; for
    a < -709, exp(-a) overflows to inf and the result is exactly 0 (the true value is below the
    smallest float64). That overflow is expected: call under `np.errstate(over="ignore")`, as
    `bptt.forward_states` does once around its loop (a context per call would cost more than
    the arithmetic).
    """
    if np.iscomplexobj(a):
        h = np.tanh(a) if activation == "tanh" else _sigmoid_analytic(a)
        if out is None:
            return h
        out[...] = h
        return out
    if activation == "tanh":
        return np.tanh(a, out=out)
    if activation == "sigmoid":
        out = np.exp(np.negative(a, out=out), out=out)
        out += 1.0
        return np.reciprocal(out, out=out)
    raise ValueError(f"activation must be 'sigmoid' or 'tanh', got {activation!r}")


def _sigmoid_analytic(a):
    s = _sign(a)
    e = np.exp(-s * a)                        # |e| <= 1: never overflows
    return np.where(s > 0, 1.0, e) / (1.0 + e)   # 1/(1+e^-a) for a >= 0, e^a/(1+e^a) below


def act_derivative(activation: str, a, out=None):
    """act'(a), elementwise, accurate where the unit saturates; `out` may be `a` itself.

    Computing it from the output (h(1 - h), 1 - h^2) cancels catastrophically when h is near its
    limits; these forms keep full relative accuracy for any a (and are analytic):
      tanh'(a)    = sech^2(a)                 = 1 / cosh(a)^2
      sigmoid'(a) = sigma(a) sigma(-a)        = 1 / (2 + 2 cosh(a))
    cosh(a) (or its square) overflows to inf for |a| > 710 (355), where the true derivative is
    below 1e-308: the result is then exactly 0, and that overflow is expected, not reported.
    """
    if activation not in ("sigmoid", "tanh"):
        raise ValueError(f"activation must be 'sigmoid' or 'tanh', got {activation!r}")
    with np.errstate(over="ignore"):
        out = np.cosh(a, out=out)
        if activation == "tanh":
            np.square(out, out=out)
        else:
            out *= 2.0
            out += 2.0
    return np.reciprocal(out, out=out)


def log_softmax(o):
    """log softmax(o) over the last axis, shifted by the max of the real part (analytic)."""
    z = o - np.max(np.real(o), axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
