"""How far a *correct* implementation in a given precision can be from the exact gradient.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, S output steps.

The error model and its constants are derived in `handgrad.tolerances` (the one table); this
module evaluates that model on one case. A correct candidate differs from the hand BPTT by at
most, per element and to first order in the unit round-off,

    floor = [G_abs(|h| + e_h, |act'| + delta, |do| + e_do) - G_abs(|h|, |act'|, |do|)]
            + gamma(n_b) G_abs(|h|, |act'|, |do|)

where G_abs is the hand backward pass run on absolute values (|U|, |W|, |V|, |x_t|), e_h the
bound on the error of the hidden states (forward recursion below), delta the error of act'
computed from a perturbed h, e_do that of dL/do, and n_b the number of roundings on the longest
path through the backward pass. Both the candidate's and the hand BPTT's own round-off are
covered: the model is evaluated at eps = eps(candidate's dtype) + eps(float64).

Only `_reference_pass` and `_abs_backward` call the BPTT internals, and only
`_state_errors` / `_derivative_errors` know the Elman cell: porting the model to another cell
means porting those four small functions.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..bptt import Forward, backward, forward_states, initial_state, output_states, outputs, time_major
from ..losses import loss_and_output_grad, loss_count
from ..tolerances import TOLERANCES, gamma, sum_depth


class _Pass(NamedTuple):
    """The hand BPTT's forward quantities for one case (time-major)."""

    xs_tm: np.ndarray    # (T, B, D)
    ys_tm: np.ndarray    # (S, B, O) or (S, B) class ids
    hs: np.ndarray       # (T + 1, B, H) h_0 .. h_T
    dact: np.ndarray     # (T, B, H) act'(a_t)
    os: np.ndarray       # (S, B, O)
    dos: np.ndarray      # (S, B, O) dL/do_t
    loss: float


def _reference_pass(case) -> _Pass:
    """Forward pass, outputs and dL/do of the hand BPTT (bptt internals: port with the cell)."""
    xs_tm, ys_tm = time_major(case.xs, case.ys, case.spec)
    B, H = case.xs.shape[0], case.params.sizes[1]
    fwd = forward_states(case.params, xs_tm, initial_state(case.h0, B, H, case.spec), case.spec)
    os = outputs(case.params, output_states(fwd.states, case.spec.output))
    loss, dos = loss_and_output_grad(os, ys_tm, case.spec.loss, case.spec.reduction)
    return _Pass(xs_tm, ys_tm, fwd.states, fwd.cache, os, dos, loss)


def _abs_backward(case, xs_tm, hs, dact, dos) -> dict:
    """G_abs: the hand backward pass on absolute weights and inputs, with the given nonnegative
    states (T + 1, B, H), derivatives (T, B, H) and output gradients (S, B, O).
    Returns name -> array for U, W, V (b, c) and h0 (bptt internals: port with the cell)."""
    absolute = case.params._replace(**{k: np.abs(v) for k, v in case.params.arrays().items()})
    grads, dh0, dxs_tm = backward(absolute, np.abs(xs_tm), Forward(hs, dact), dos, case.spec,
                                  wrt_xs=True)
    out = grads.arrays()
    out["h0"] = dh0
    out["xs"] = np.swapaxes(dxs_tm, 0, 1)                            # (B, T, D)
    return out


def _state_errors(case, p: _Pass, eps: float, ulps: float) -> np.ndarray:
    """e_h (T + 1, B, H): bound on |h~_t - h_t| of a correct candidate (Elman cell).

        e_a_t = gamma(D + H + 3) (|U| |x_t| + |W| |h_{t-1}| + |b|) + |W| e_h_{t-1}
        e_h_t = |act'(a_t)| e_a_t + ulps eps |h_t|,      e_h_0 = eps |h_0| / 2 (rounding h_0)
    """
    U, W, _, b, _ = case.params
    D, H = U.shape[1], W.shape[0]
    g = gamma(D + H + 3, eps)
    absU, absW = np.abs(U), np.abs(W)
    e_h = np.empty_like(p.hs)
    e_h[0] = 0.5 * eps * np.abs(p.hs[0])
    local = np.abs(p.xs_tm) @ absU.T                                 # (T, B, H) |U| |x_t|
    if b is not None:
        local += np.abs(b)
    for t in range(1, len(p.hs)):
        e_a = g * (local[t - 1] + np.abs(p.hs[t - 1]) @ absW.T) + e_h[t - 1] @ absW.T
        e_h[t] = np.abs(p.dact[t - 1]) * e_a + ulps * eps * np.abs(p.hs[t])
    return e_h


def _derivative_errors(activation: str, hs, dact, e_h, eps: float, ulps: float):
    """delta (T, B, H): bound on the error of act'(a_t) computed from a perturbed h_t, as real
    code does (1 - h^2 or (1 - h)(1 + h) for tanh, h (1 - h) for sigmoid), or from a_t.

    tanh:    |d(1 - h^2)/dh| e_h + eps h^2 + (ulps + 2) eps act'
    sigmoid: |d(h - h^2)/dh| e_h           + (ulps + 2) eps act'
    """
    h, e = np.abs(hs[1:]), e_h[1:]
    if activation == "tanh":
        return 2 * h * e + eps * h * h + (ulps + 2) * eps * dact
    if activation == "sigmoid":
        return np.abs(1 - 2 * hs[1:]) * e + (ulps + 2) * eps * dact
    return np.zeros_like(dact)          # relu' (0 or 1) and identity' (1) are exact


def _output_errors(case, p: _Pass, e_h, eps: float, ulps: float):
    """(e_o, e_do), each (S, B, O): bounds on the errors of o_t = V h_t + c and of dL/do_t."""
    spec = case.spec
    V, c = case.params.V, case.params.c
    hs_out, e_out = output_states(p.hs, spec.output), output_states(e_h, spec.output)
    if V is None:                                                    # no head: o_t = h_t
        e_o = e_out
    else:
        H, O = V.shape[1], V.shape[0]
        e_o = gamma(H + 3, eps) * (np.abs(hs_out) @ np.abs(V).T + (0 if c is None else np.abs(c)))
        e_o += e_out @ np.abs(V).T
    O = p.os.shape[-1]
    n = loss_count(spec.loss, spec.reduction, p.os.shape)
    if spec.loss == "linear":                                        # do = y / n: o plays no part
        return e_o, eps * np.abs(p.dos)
    if spec.loss == "cross_entropy":
        # p = softmax(o): shift-invariant; exp within `ulps`, a sum of O terms, one division
        z = p.os - p.os.max(axis=-1, keepdims=True)
        prob = np.exp(z)
        prob /= prob.sum(axis=-1, keepdims=True)
        e_p = prob * (e_o + e_o.max(axis=-1, keepdims=True) + eps * np.abs(z)
                      + (ulps + O + 2) * eps)
        return e_o, (e_p + eps * np.abs(p.dos) * n) / n
    scale = (1.0 if spec.loss == "half_squared" else 2.0) / n        # do = scale (o - y)
    return e_o, scale * (e_o + eps * (np.abs(p.ys_tm) + np.abs(p.os - p.ys_tm)))


def _loss_error(case, p: _Pass, e_o, eps: float, ulps: float) -> float:
    """Bound on |L~ - L|: the output errors through dL/do, plus the round-off of the loss terms
    and of their sum (N terms)."""
    spec = case.spec
    N = p.dos.size if spec.loss != "cross_entropy" else p.dos[..., 0].size
    n = loss_count(spec.loss, spec.reduction, p.os.shape)
    through_o = float(np.sum(np.abs(p.dos) * e_o))
    if spec.loss == "cross_entropy":
        # l = log sum exp(z) - z_y, z = o - max o: rounding of z, exp, the sum, log, subtraction
        O = p.os.shape[-1]
        z = p.os - p.os.max(axis=-1, keepdims=True)
        lse = np.log(np.sum(np.exp(z), axis=-1))
        zy = np.take_along_axis(z, p.ys_tm[..., None], axis=-1)[..., 0]
        terms = ((ulps + O + 2) * eps + (ulps + 1) * eps * lse + eps * np.abs(zy)
                 + eps * np.abs(z).max(axis=-1))
    elif spec.loss == "linear":                                      # l = <y, o>: O products
        terms = gamma(p.os.shape[-1], eps) * np.sum(np.abs(p.ys_tm * p.os), axis=-1)
    else:
        k = 0.5 if spec.loss == "half_squared" else 1.0
        err = p.os - p.ys_tm
        terms = k * 2 * np.abs(err) * eps * (np.abs(p.ys_tm) + np.abs(err)) + k * eps * err * err
        terms = terms.sum(axis=-1)
    return through_o + float(np.sum(terms)) / n + gamma(N + 2, eps) * abs(p.loss)


def roundoff_floor(case, dtype) -> dict:
    """name -> the largest difference round-off can explain between the hand BPTT and a correct
    candidate computing in `dtype`: "loss", U, W, V (b, c) and h0 (the max over elements)."""
    with np.errstate(over="ignore", invalid="ignore"):    # an inf floor is a valid answer
        return _floor(case, float(np.finfo(dtype_of(dtype)).eps) + float(np.finfo(np.float64).eps))


def _floor(case, eps: float) -> dict:
    ulps = TOLERANCES["ulps"]
    if case.spec.cell != "elman":
        # not derived yet for the gated cells: no floor (every difference beyond rtol counts)
        return {k: 0.0 for k in ("loss", *case.params.arrays(), "h0", "c0", "xs")}
    p = _reference_pass(case)
    B, T, D = case.xs.shape
    _, H, O = case.params.sizes
    e_h = _state_errors(case, p, eps, ulps)
    delta = _derivative_errors(case.spec.activation, p.hs, p.dact, e_h, eps, ulps)
    e_o, e_do = _output_errors(case, p, e_h, eps, ulps)
    base = _abs_backward(case, p.xs_tm, np.abs(p.hs), np.abs(p.dact), np.abs(p.dos))
    bumped = _abs_backward(case, p.xs_tm, np.abs(p.hs) + e_h, np.abs(p.dact) + delta,
                           np.abs(p.dos) + e_do)
    g = gamma(sum_depth(B, T, D, H, O), eps)
    out = {"loss": _loss_error(case, p, e_o, eps, ulps)}
    for k in base:
        value = float(np.max(bumped[k] - base[k] + g * base[k], initial=0.0))
        out[k] = value if np.isfinite(value) else float("inf")       # inf - inf: unbounded
    return out


def dtype_of(dtype) -> np.dtype:
    """The floating dtype a candidate's array is judged in (integers: float64)."""
    d = np.dtype(dtype)
    return d if d.kind == "f" else np.dtype(np.float64)
