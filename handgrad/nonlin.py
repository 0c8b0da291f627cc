"""Hidden nonlinearities and the log-softmax, numerically stable and analytic.

Real arrays take a fast in-place path; complex arrays (complex-step differentiation) take a path
built from exp, tanh, log and rational operations on the *same* branch of a piecewise-constant
sign, so it never overflows and stays analytic: Im f(x + ih) / h is exact to round-off.
Both compute the same function.

relu is piecewise linear: relu(a) = a where a > 0, else 0, with relu'(0) = 0 as in PyTorch and
JAX. Its complex path picks the branch by the sign of the real part, so the complex step is exact
away from a = 0 (at a = 0 it gives the one-sided derivative of the branch taken: 0).
"""
from __future__ import annotations

import numpy as np


def _sign(a):
    """+1 where Re a >= 0, else -1 (a constant: it does not depend on the imaginary part)."""
    return np.where(np.real(a) >= 0, 1.0, -1.0)


def act(activation: str, a, out=None):
    """h = act(a), elementwise; `out` (same shape) receives the result if given."""
    return act_function(activation, np.iscomplexobj(a))(a, out)


def act_function(activation: str, complex_input: bool = False):
    """The elementwise function `f(a, out) -> h` for `activation` (chosen once, outside loops).

    Real sigmoid is 1 / (1 + exp(-a)), which keeps full relative accuracy in both tails; for
    a < -709, exp(-a) overflows to inf and the result is exactly 0 (the true value is below the
    smallest float64). That overflow is expected: call under `np.errstate(over="ignore")`, as
    `bptt.forward_states` does once around its loop (a context per call would cost more than
    the arithmetic).
    """
    _check(activation)
    return (_COMPLEX if complex_input else _REAL)[activation]


ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")


def _check(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, "
                         f"got {activation!r}")


def _tanh_real(a, out=None):
    return np.tanh(a, out=out)


def _sigmoid_real(a, out=None):
    out = np.exp(np.negative(a, out=out), out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def _relu_real(a, out=None):
    return np.maximum(a, 0.0, out=out)


def _identity(a, out=None):
    return _into(a, out) if out is not a else a


def _relu_complex(a, out=None):
    return _into(np.where(np.real(a) > 0, a, 0.0), out)


def _into(h, out):
    if out is None:
        return h
    out[...] = h
    return out


def _tanh_complex(a, out=None):
    return _into(np.tanh(a), out)


def _sigmoid_complex(a, out=None):
    s = _sign(a)
    e = np.exp(-s * a)                            # |e| <= 1: never overflows
    return _into(np.where(s > 0, 1.0, e) / (1.0 + e), out)   # 1/(1+e^-a), or e^a/(1+e^a) below 0


_REAL = {"tanh": _tanh_real, "sigmoid": _sigmoid_real, "relu": _relu_real,
         "identity": _identity}
_COMPLEX = {"tanh": _tanh_complex, "sigmoid": _sigmoid_complex, "relu": _relu_complex,
            "identity": _identity}


def act_derivative(activation: str, a, out=None):
    """act'(a), elementwise, accurate where the unit saturates; `out` may be `a` itself.

    Computing it from the output (h(1 - h), 1 - h^2) cancels catastrophically when h is near its
    limits; these forms keep full relative accuracy for any a (and are analytic):
      tanh'(a)    = sech^2(a)                 = 1 / cosh(a)^2
      sigmoid'(a) = sigma(a) sigma(-a)        = 1 / (2 + 2 cosh(a))
    cosh(a) (or its square) overflows to inf for |a| > 710 (355), where the true derivative is
    below 1e-308: the result is then exactly 0, and that overflow is expected, not reported.
      relu'(a)    = 1 where a > 0, else 0 (relu'(0) = 0)
      identity'(a) = 1
    """
    _check(activation)
    if activation == "relu":
        positive = np.real(a) > 0                 # computed before `out` (maybe `a`) is written
        return positive.astype(np.float64) if out is None else _into(positive, out)
    if activation == "identity":
        return np.ones(np.shape(a)) if out is None else _into(1.0, out)
    if np.iscomplexobj(a):               # complex cosh overflows to inf + nan j: use e = exp(-k|a|)
        k = 1.0 if activation == "sigmoid" else 2.0
        e = np.exp(-k * _sign(a) * a)
        return _into((e if activation == "sigmoid" else 4.0 * e) / (1.0 + e) ** 2, out)
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


def cross_entropy_terms(o, y):
    """-log softmax(o)[y] for every row: o (..., O) real or complex, y (...) int class ids.

    Written as log(sum_j exp(d_j)) with d = o - o_y (d_y = 0), shifted by m = max_j Re d_j:
    when y is the largest (m = 0) that is log1p(sum over j != y of exp(d_j)), so the term keeps
    its relative accuracy as p_y -> 1 instead of rounding log(1 + tiny); and the complex step
    through it has no cancellation either (log_softmax's imaginary part is o'_y - sum p_j o'_j,
    two nearly equal numbers there). Otherwise m + log(exp(-m) + sum over j != y) (p_y <= 1/2,
    nothing to cancel). Analytic: every branch is chosen by real parts only.
    """
    oy = np.take_along_axis(o, y[..., None], axis=-1)
    d = o - oy                                             # d_y = 0
    m = np.max(np.real(d), axis=-1, keepdims=True)         # >= 0
    e = np.exp(d - m)                                      # every |e| <= 1
    np.put_along_axis(e, y[..., None], 0.0, axis=-1)
    others = np.sum(e, axis=-1, keepdims=True)             # sum over j != y
    with np.errstate(divide="ignore"):                     # O = 1: others = 0, the term is 0
        top = np.log1p(others)
        rest = m + np.log(np.exp(-m) + others)
    return np.where(m > 0, rest, top)[..., 0]
