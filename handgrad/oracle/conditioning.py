"""How far a *correct* implementation in a given precision can be from the hand BPTT's answer.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, S output steps,
G gate blocks (1 Elman, 3 GRU, 4 LSTM), W the state width (H; 2H for the LSTM's [h, c]).

The error model and its constants are derived in `handgrad.tolerances` (the one table); this
module evaluates it on one case. The round-off floor of an answer is the smaller of two bounds
on the difference between a correct candidate and the hand BPTT (both evaluated at
eps = eps(candidate's dtype) + eps(float64), so both implementations' round-off is covered):

- the worst case (`_worst_case`): every local error at its bound with the worst sign, carried
  through the recursions by |W|:
      [G_abs(bumped) - G_abs(base)] + gamma(n_b) G_abs(base)
  where G_abs is the hand backward pass on magnitudes (|weights|, |states|, |gates|, ...) and
  "bumped" adds the forward error bounds of the states and of the cached gate values and
  derivatives. Rigorous to first order, but it grows like (|W| act')^T;
- the probabilistic bound (`_probable`): the local errors (rounding of each sum, in the
  model of independent mean-zero roundings, Higham & Mary 2019; elementary functions up to
  TOLERANCES["ulps"] ulps) are added with random signs, scaled to stay linear, to the states,
  the cache, the outputs and each backward step of the hand BPTT itself, so they travel the
  *signed* recursions; the spread of the answers over TOLERANCES["probes"] probes and one
  coherent probe (every sigmoid and tanh rounded up: a biased library), with the final sums'
  round-off, times TOLERANCES["probe_safety"] is the bound. It grows like the gradient.

Cell-specific code is only the local error analysis of one step (`_elman_step`, `_gru_step`,
`_lstm_step`: which gate feeds which, what is computed from an output; `_rounded_up`: how a
biased library moves each step) and the sign of the GRU's n_t in the magnitude pass
(`_magnitudes`: dz = ds (h_{t-1} - n_t) is the only difference of two terms in the cells'
backward steps). Everything else runs the cells' own `run` / `back` / `recurrent_grads`, and
`bptt.backward` with a wrapping cell (`_Noisy`).
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

from ..bptt import (
    Backward,
    Forward,
    backward,
    forward_states,
    hidden_states,
    initial_state,
    output_states,
    outputs,
    state_gradient,
    time_major,
)
from ..cells import cell_for, cell_grads, outer_sum, weights_of
from ..losses import loss_and_output_grad, loss_count
from ..tolerances import TOLERANCES, gamma, sum_depth

STATE_NAMES = ("h0", "c0")
PROBE_SIZE = 1e-7     # the probes' local errors, relative to the values they perturb: small
                      # enough to stay linear (second-order terms ~1e-14), large enough that
                      # the probe's own float64 round-off is ~1e-9 of its result


class _Pass(NamedTuple):
    """The hand BPTT's forward quantities for one case (time-major)."""

    xs_tm: np.ndarray    # (T, B, D)
    ys_tm: np.ndarray    # (S, B, O) or (S, B) class ids
    states: np.ndarray   # (T + 1, B, W) s_0 .. s_T
    cache: object        # the cell's cache (Elman: act'(a_t) (T, B, H); GRU, LSTM: a Cache)
    P: np.ndarray        # (T, B, G H) the input side W_in x_t + b_in
    os: np.ndarray       # (S, B, O)
    dos: np.ndarray      # (S, B, O) dL/do_t
    loss: float


def _reference_pass(case) -> _Pass:
    xs_tm, ys_tm = time_major(case.xs, case.ys, case.spec)
    B, H = case.xs.shape[0], case.params.sizes[1]
    fwd = forward_states(case.params, xs_tm, initial_state(case.h0, B, H, case.spec), case.spec)
    w = weights_of(case.params)
    P = _mm(xs_tm, w.W_in.T) + (0 if w.b_in is None else w.b_in)
    os = outputs(case.params, output_states(hidden_states(fwd.states, case.spec), case.spec.output))
    loss, dos = loss_and_output_grad(os, ys_tm, case.spec.loss, case.spec.reduction)
    return _Pass(xs_tm, ys_tm, fwd.states, fwd.cache, P, os, dos, loss)


# ----------------------------------------------------------------- the cache, field by field

def _map(fn, *caches):
    """fn applied field by field to caches of one structure (an array or a NamedTuple)."""
    if isinstance(caches[0], tuple):
        return type(caches[0])(*(fn(*fields) for fields in zip(*caches)))
    return fn(*caches)


def _at(cache, t):
    return _map(lambda f: f[t], cache)


def _store(cache, t, values):
    """cache[t] = values, field by field."""
    fields = cache if isinstance(cache, tuple) else (cache,)
    for f, v in zip(fields, values if isinstance(cache, tuple) else (values,)):
        f[t] = v


def _magnitudes(spec, cache, bump=None, power: int = 1):
    """(|cache| + bump)^power field by field, for the magnitude passes; the GRU's n_t is
    negated, so that its backward step's h_{t-1} - n_t becomes |h_{t-1}| + |n_t| (the one
    difference of two terms in the cells' backward steps; every other step is a sum of
    products, which the magnitude pass bounds term by term)."""
    if bump is None:
        out = _map(lambda f: np.abs(f) ** power, cache)
    else:
        out = _map(lambda f, e: (np.abs(f) + e) ** power, cache, bump)
    if spec.cell == "gru":
        H = out.gates.shape[-1] // 3
        gates = out.gates.copy()
        gates[..., 2 * H:] *= -1
        out = out._replace(gates=gates)
    return out


# ----------------------------------------------------------------- local error models of sums

def _worst_sums(eps):
    """A sum of n terms: off by at most gamma(n) * (the sum of the terms' magnitudes)."""
    return lambda n, value, mag, sq: gamma(n, eps) * mag


def _probable_sums(eps):
    """A sum of n terms, with independent mean-zero roundings (|delta| <= u) at each of its
    partial sums s_k: the error sum_k delta_k s_k has standard deviation at most
    u sqrt(sum_k s_k^2) <= u sqrt(n) sqrt(value^2 + sum of the terms' squares) for any order
    of the terms that is not correlated with their signs (see `handgrad.tolerances`)."""
    u = eps / 2
    return lambda n, value, mag, sq: u * np.sqrt(n) * np.sqrt(value * value + sq)


# ----------------------------------------------------------------- one step of each cell

class _Step(NamedTuple):
    """The quantities of steps t (leading axes (..., B)) that the local analysis needs."""

    prev: np.ndarray     # s_{t-1} (..., W)
    state: np.ndarray    # s_t (..., W)
    cache: object        # the cell's cache at t
    P: np.ndarray        # W_in x_t + b_in (..., G H)
    in_mag: np.ndarray   # |W_in| |x_t| + |b_in|
    in_sq: np.ndarray    # W_in^2 x_t^2 + b_in^2


def _mm(x, M):
    """x (..., K) @ M (K, N) as one 2-D product (numpy's stacked products are slow on views)."""
    return (x.reshape(-1, x.shape[-1]) @ M).reshape(x.shape[:-1] + (M.shape[-1],))


def _recurrent(w, h_prev, rows=slice(None)):
    """(signed, magnitude, squares) of W_rec[rows] h_{t-1} + b_rec[rows]."""
    W = w.W_rec[rows]
    b = 0 if w.b_rec is None else w.b_rec[rows]
    return (_mm(h_prev, W.T) + b, _mm(np.abs(h_prev), np.abs(W).T) + np.abs(b),
            _mm(h_prev * h_prev, (W * W).T) + b * b)


def _propagated(e_prev, w, rows=slice(None)):
    """|W_rec[rows]| e_{t-1}: how far the earlier state's error moves the recurrent sum."""
    return 0 if e_prev is None else _mm(e_prev, np.abs(w.W_rec[rows]).T)


def _sigmoid_grad_error(s, ds_, e_s, eps, ulps):
    """sigmoid'(a) computed as s (1 - s) from s + e_s (or from a, `ulps` off)."""
    return np.abs(1 - 2 * s) * e_s + (ulps + 2) * eps * np.abs(ds_)


def _tanh_grad_error(h, dh_, e_h, eps, ulps):
    """tanh'(a) computed as 1 - h^2 or (1 - h)(1 + h) from h + e_h (or from a, `ulps` off)."""
    return 2 * np.abs(h) * e_h + eps * h * h + (ulps + 2) * eps * np.abs(dh_)


def _elman_step(spec, w, q: _Step, e_prev, sums, eps, ulps):
    """Elman: a = U x + W h_{t-1} + b, h = act(a) (`ulps` off), act' from h.
    Returns (e_state, e_cache) (..., H) each."""
    H = w.W_rec.shape[0]
    D = w.W_in.shape[1]
    rec, mag, sq = _recurrent(w, q.prev)
    e_a = sums(D + H + 3, q.P + rec, q.in_mag + mag, q.in_sq + sq) + _propagated(e_prev, w)
    h, dact = q.state, q.cache
    e_h = np.abs(dact) * e_a + ulps * eps * np.abs(h)
    if spec.activation == "tanh":
        return e_h, _tanh_grad_error(h, dact, e_h, eps, ulps)
    if spec.activation == "sigmoid":
        return e_h, _sigmoid_grad_error(h, dact, e_h, eps, ulps)
    return e_h, np.zeros_like(dact)      # relu' (0 or 1), identity' (1): exact


def _gru_step(spec, w, q: _Step, e_prev, sums, eps, ulps):
    """GRU (PyTorch's r, z, n): gates `ulps` off, their derivatives from the outputs, 1 - z
    by a subtraction (or as sigmoid(-a_z)), h = (1 - z) n + z h_{t-1} or n + z (h_{t-1} - n).
    Returns (e_state (..., H), e_cache: a gru.Cache of bounds)."""
    H = w.W_rec.shape[1]
    D = w.W_in.shape[1]
    g, d, inner, keep = q.cache
    r, z, n = g[..., :H], g[..., H:2 * H], g[..., 2 * H:]
    h_prev = q.prev
    rz = slice(0, 2 * H)
    rec, mag, sq = _recurrent(w, h_prev, rz)
    e_a = sums(D + H + 4, q.P[..., rz] + rec, q.in_mag[..., rz] + mag, q.in_sq[..., rz] + sq)
    e_a = e_a + _propagated(e_prev, w, rz)
    e_r = np.abs(d[..., :H]) * e_a[..., :H] + ulps * eps * r
    e_z = np.abs(d[..., H:2 * H]) * e_a[..., H:] + ulps * eps * z
    e_keep = np.abs(d[..., H:2 * H]) * e_a[..., H:] + ulps * eps * (z + keep) + eps * keep
    nb = slice(2 * H, 3 * H)
    if spec.gru_reset == "after":            # a_n = W_in x + b_in + r (W_hn h_{t-1} + b_hn)
        _, mag, sq = _recurrent(w, h_prev, nb)
        e_inner = sums(H + 2, inner, mag, sq) + _propagated(e_prev, w, nb)
        a_n = q.P[..., nb] + r * inner
        e_an = sums(D + 3, a_n, q.in_mag[..., nb] + np.abs(r * inner),
                    q.in_sq[..., nb] + (r * inner) ** 2)
        e_an = e_an + r * e_inner + np.abs(inner) * e_r
    else:                                    # a_n = W_in x + b_in + W_hn (r h_{t-1}) + b_hn
        e_inner = np.abs(h_prev) * e_r + eps * np.abs(inner)
        if e_prev is not None:
            e_inner = e_inner + r * e_prev
        W_n, b_n = w.W_rec[nb], (0 if w.b_rec is None else w.b_rec[nb])
        a_n = q.P[..., nb] + _mm(inner, W_n.T) + b_n
        e_an = sums(D + H + 3, a_n, q.in_mag[..., nb] + _mm(np.abs(inner), np.abs(W_n).T)
                    + np.abs(b_n), q.in_sq[..., nb] + _mm(inner * inner, (W_n * W_n).T) + b_n * b_n)
        e_an = e_an + _mm(e_inner, np.abs(W_n).T)
    e_n = np.abs(d[..., nb]) * e_an + ulps * eps * np.abs(n)
    # h = keep n + z h_prev, or n + z (h_prev - n): each operand's error, two roundings each
    e_h = keep * e_n + np.abs(n) * e_keep + np.abs(h_prev) * e_z
    e_h = e_h + 2 * eps * (np.abs(h_prev) + np.abs(n) + np.abs(q.state))
    if e_prev is not None:
        e_h = e_h + z * e_prev
    e_d = np.concatenate([_sigmoid_grad_error(r, d[..., :H], e_r, eps, ulps),
                          _sigmoid_grad_error(z, d[..., H:2 * H], e_z, eps, ulps),
                          _tanh_grad_error(n, d[..., nb], e_n, eps, ulps)], axis=-1)
    cache = type(q.cache)(np.concatenate([e_r, e_z, e_n], axis=-1), e_d, e_inner, e_keep)
    return e_h, cache


def _lstm_step(spec, w, q: _Step, e_prev, sums, eps, ulps):
    """LSTM (PyTorch's i, f, g, o): gates `ulps` off, c = f c_{t-1} + i g, h = o tanh(c),
    every derivative from an output (s (1 - s), 1 - t^2).
    Returns (e_state (..., 2H) for [h, c], e_cache: an lstm.Cache of bounds)."""
    H = w.W_rec.shape[1]
    D = w.W_in.shape[1]
    g, d, tc, dtc = q.cache
    h_prev, c_prev, c = q.prev[..., :H], q.prev[..., H:], q.state[..., H:]
    rec, mag, sq = _recurrent(w, h_prev)
    e_a = sums(D + H + 4, q.P + rec, q.in_mag + mag, q.in_sq + sq)
    e_a = e_a + (0 if e_prev is None else _propagated(e_prev[..., :H], w))
    e_g = np.abs(d) * e_a + ulps * eps * np.abs(g)              # every gate
    i, f, gg, o = (g[..., k * H:(k + 1) * H] for k in range(4))
    e_i, e_f, e_gg, e_o = (e_g[..., k * H:(k + 1) * H] for k in range(4))
    e_c = np.abs(c_prev) * e_f + np.abs(gg) * e_i + i * e_gg   # c = f c_prev + i g
    e_c = e_c + eps * (np.abs(f * c_prev) + np.abs(i * gg) + np.abs(c))
    if e_prev is not None:
        e_c = e_c + f * e_prev[..., H:]
    e_tc = np.abs(dtc) * e_c + ulps * eps * np.abs(tc)          # tanh(c), `ulps` off
    e_h = np.abs(tc) * e_o + o * e_tc + eps * np.abs(q.state[..., :H])   # h = o tanh(c)
    e_d = np.concatenate([_sigmoid_grad_error(i, d[..., :H], e_i, eps, ulps),
                          _sigmoid_grad_error(f, d[..., H:2 * H], e_f, eps, ulps),
                          _tanh_grad_error(gg, d[..., 2 * H:3 * H], e_gg, eps, ulps),
                          _sigmoid_grad_error(o, d[..., 3 * H:], e_o, eps, ulps)], axis=-1)
    cache = type(q.cache)(e_g, e_d, e_tc, _tanh_grad_error(tc, dtc, e_tc, eps, ulps))
    return np.concatenate([e_h, e_c], axis=-1), cache


_STEPS = {"elman": _elman_step, "gru": _gru_step, "lstm": _lstm_step}


def _rounded_up(spec, p: _Pass, eps: float, ulps: float):
    """(state change (T, B, W), cache change) when every sigmoid and tanh is `ulps` ulps too
    high (a biased library), to first order and with their signs, within each step: a gate
    s + d moves s (1 - s) by (1 - 2s) d, a tanh t + d moves 1 - t^2 by -2t d; the state moves
    as the cell combines them (the earlier states' errors are the probe's to carry)."""
    up = ulps * eps
    h = p.states[1:]
    if spec.cell == "elman":
        if spec.activation not in ("tanh", "sigmoid"):
            return np.zeros_like(h), np.zeros_like(p.cache)          # relu, identity: exact
        d_h = up * np.abs(h)
        return d_h, (-2 * h if spec.activation == "tanh" else 1 - 2 * h) * d_h
    g = p.cache.gates
    d_g = up * np.abs(g)                                             # every gate, up
    H = g.shape[-1] // (3 if spec.cell == "gru" else 4)
    blocks = [g[..., k * H:(k + 1) * H] for k in range(g.shape[-1] // H)]
    moves = [d_g[..., k * H:(k + 1) * H] for k in range(g.shape[-1] // H)]
    if spec.cell == "gru":
        (r, z, n), (d_r, d_z, d_n) = blocks, moves
        h_prev = p.states[:-1]
        d_inner = h_prev * d_r if spec.gru_reset == "before" else np.zeros_like(r)
        d_h = p.cache.keep * d_n + (h_prev - n) * d_z                # h = n + z (h_prev - n)
        d_deriv = np.concatenate([(1 - 2 * r) * d_r, (1 - 2 * z) * d_z, -2 * n * d_n], axis=-1)
        return d_h, type(p.cache)(d_g, d_deriv, d_inner, -d_z)
    (i, f, gg, o), (d_i, d_f, d_gg, d_o) = blocks, moves
    c_prev, tc = p.states[:-1, ..., H:], p.cache.tanh_c
    d_c = c_prev * d_f + gg * d_i + i * d_gg                         # c = f c_prev + i g
    d_tc = p.cache.dtanh_c * d_c + up * np.abs(tc)                   # tanh(c), up
    d_h = tc * d_o + o * d_tc                                        # h = o tanh(c)
    d_deriv = np.concatenate([(1 - 2 * i) * d_i, (1 - 2 * f) * d_f, -2 * gg * d_gg,
                              (1 - 2 * o) * d_o], axis=-1)
    return (np.concatenate([d_h, d_c], axis=-1),
            type(p.cache)(d_g, d_deriv, d_tc, -2 * tc * d_tc))


def _steps(case, p: _Pass, t=slice(None)) -> _Step:
    """The local quantities of steps t (an index, or all steps at once by default)."""
    w = weights_of(case.params)
    xs = p.xs_tm[t]
    b = 0 if w.b_in is None else w.b_in
    in_mag = _mm(np.abs(xs), np.abs(w.W_in).T) + np.abs(b)
    in_sq = _mm(xs * xs, (w.W_in * w.W_in).T) + b * b
    prev = p.states[:-1][t]
    return _Step(prev, p.states[1:][t], _at(p.cache, t), p.P[t], in_mag, in_sq)


# ----------------------------------------------------------------- outputs and the loss

def _output_local(case, p: _Pass, hs_out, sums):
    """Local error of o_t = V h_t + c (S, B, O), given exact h_t (0 without a head)."""
    V, c = case.params.V, case.params.c
    if V is None:
        return np.zeros_like(p.os)
    c = 0 if c is None else c
    H = V.shape[1]
    return sums(H + 3, p.os, _mm(np.abs(hs_out), np.abs(V).T) + np.abs(c),
                _mm(hs_out * hs_out, (V * V).T) + c * c)


def _softmax(os):
    z = os - os.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return z, e / e.sum(axis=-1, keepdims=True)


def _dos_local(case, p: _Pass, eps, ulps):
    """Error of dL/do_t (S, B, O) computed from exact o_t (the loss's own arithmetic)."""
    spec = case.spec
    n = loss_count(spec.loss, spec.reduction, p.os.shape)
    if spec.loss == "linear":                                        # do = y / n
        return eps * np.abs(p.dos)
    if spec.loss == "cross_entropy":   # p = softmax(o): exp `ulps` off, a sum of O, a division
        O = p.os.shape[-1]
        z, prob = _softmax(p.os)
        return (prob * (eps * np.abs(z) + (ulps + O + 2) * eps) + eps * np.abs(p.dos) * n) / n
    scale = (1.0 if spec.loss == "half_squared" else 2.0) / n        # do = scale (o - y)
    return scale * eps * (np.abs(p.ys_tm) + np.abs(p.os - p.ys_tm))


def _dos_through(case, p: _Pass, e_o):
    """Bound on the change of dL/do_t (S, B, O) when o_t moves by at most e_o."""
    spec = case.spec
    n = loss_count(spec.loss, spec.reduction, p.os.shape)
    if spec.loss == "linear":
        return np.zeros_like(e_o)
    if spec.loss == "cross_entropy":        # d softmax = p (do - <p, do>)
        return softmax_of(p) * (e_o + e_o.max(axis=-1, keepdims=True)) / n
    return (1.0 if spec.loss == "half_squared" else 2.0) / n * e_o


def softmax_of(p: _Pass):
    return _softmax(p.os)[1]


def _loss_terms(case, p: _Pass, eps, ulps):
    """(values, local error bounds) of the loss terms, one per (output step, sample) (S, B),
    before the reduction, from exact o_t."""
    spec = case.spec
    if spec.loss == "cross_entropy":
        # l = log sum exp(z) - z_y, z = o - max o: rounding of z, exp, the sum, log, subtraction
        O = p.os.shape[-1]
        z, _ = _softmax(p.os)
        lse = np.log(np.sum(np.exp(z), axis=-1))
        zy = np.take_along_axis(z, p.ys_tm[..., None], axis=-1)[..., 0]
        err = ((ulps + O + 2) * eps + (ulps + 1) * eps * lse + eps * np.abs(zy)
               + eps * np.abs(z).max(axis=-1))
        return lse - zy, err
    if spec.loss == "linear":                                        # l = <y, o>: O products
        prod = p.ys_tm * p.os
        return prod.sum(axis=-1), gamma(p.os.shape[-1], eps) * np.abs(prod).sum(axis=-1)
    k = 0.5 if spec.loss == "half_squared" else 1.0
    err = p.os - p.ys_tm
    local = k * 2 * np.abs(err) * eps * (np.abs(p.ys_tm) + np.abs(err)) + k * eps * err * err
    return k * np.sum(err * err, axis=-1), local.sum(axis=-1)


# ----------------------------------------------------------------- the worst case

def _worst_case(case, p: _Pass, eps: float, ulps: float) -> dict:
    """[G_abs(bumped) - G_abs(base)] + gamma(n_b) G_abs(base) for every answer, and the loss's
    bound: every local error at its bound, carried through the recursions by |W|."""
    spec = case.spec
    step = _STEPS[spec.cell]
    w = weights_of(case.params)
    sums = _worst_sums(eps)
    T = p.xs_tm.shape[0]
    e_s = np.empty_like(p.states)
    e_s[0] = 0.5 * eps * np.abs(p.states[0])                       # rounding s_0 to the dtype
    e_cache = _map(np.empty_like, p.cache)
    for t in range(T):
        e_s[t + 1], e_c = step(spec, w, _steps(case, p, t), e_s[t], sums, eps, ulps)
        _store(e_cache, t, e_c)
    cell = cell_for(spec)
    hs_out = output_states(cell.hidden(p.states), spec.output)
    e_o = _output_local(case, p, hs_out, sums)
    if case.params.V is None:
        e_o = e_o + output_states(cell.hidden(e_s), spec.output)
    else:
        e_o = e_o + _mm(output_states(cell.hidden(e_s), spec.output), np.abs(case.params.V).T)
    e_do = _dos_through(case, p, e_o) + _dos_local(case, p, eps, ulps)
    absolute = case.params._replace(**{k: np.abs(v) for k, v in case.params.arrays().items()})
    xs = np.abs(p.xs_tm)
    base = backward(absolute, xs, Forward(np.abs(p.states), _magnitudes(spec, p.cache)),
                    np.abs(p.dos), spec, wrt_xs=True)
    bumped = backward(absolute, xs, Forward(np.abs(p.states) + e_s,
                                            _magnitudes(spec, p.cache, e_cache)),
                      np.abs(p.dos) + e_do, spec, wrt_xs=True)
    B, T, D = case.xs.shape
    _, H, O = case.params.sizes
    g = gamma(sum_depth(B, T, D, H, O, cell.G), eps)
    out = {}
    for k, lo, hi in zip(*_named(spec, base), *_named(spec, bumped)[1:]):
        out[k] = float(np.max(hi - lo + g * lo, initial=0.0))
    values, local = _loss_terms(case, p, eps, ulps)
    n = loss_count(spec.loss, spec.reduction, p.os.shape)
    out["loss"] = (float(np.sum(np.abs(p.dos) * e_o)) + float(np.sum(local)) / n
                   + gamma(values.size + 2, eps) * float(np.sum(np.abs(values))) / n)
    return out


def _named(spec, back: Backward):
    """(names, arrays) of a backward pass: the parameters' gradients, h0 (c0) and xs."""
    grads = back.grads.arrays()
    ds0 = state_gradient(back.dstate0, spec)
    states = dict(zip(STATE_NAMES, ds0)) if isinstance(ds0, tuple) else {"h0": ds0}
    named = {**grads, **states, "xs": back.dxs_tm}
    return list(named), list(named.values())


# ----------------------------------------------------------------- the probabilistic bound

class _Noisy:
    """The cell of a probe: its backward step adds, to the gradient it carries to s_{t-1}, a
    random-sign perturbation of the standard deviation of that step's own round-off. The first
    probe computes those standard deviations
    (from the squares of the step's terms) and records the squares of its dP, dR terms (for
    the round-off of the time sums that follow); later probes reuse them (`sigmas`: the list
    shared by the probes, in call order)."""

    def __init__(self, cell, squares, sums, nudge, depth: int, T: int, shape, sigmas: list):
        self.cell, self.sums, self.nudge, self.depth = cell, sums, nudge, depth
        self.G, self.name = cell.G, cell.name
        self.width, self.hidden = cell.width, cell.hidden
        self.w_sq, self.cache_sq, self.states_sq = squares
        self.sigmas, self.calls = sigmas, 0
        self.dP_sq = np.zeros((T,) + shape)
        self.dR_sq = None

    def back(self, w, cache, states, lo, hi, ds):
        dp, dr, ds_prev = self.cell.back(w, cache, states, lo, hi, ds)
        if self.calls == len(self.sigmas):                 # the first probe
            real = np.real(ds)
            _, _, sq = self.cell.back(self.w_sq, self.cache_sq, self.states_sq, lo, hi,
                                      real * real)
            self.sigmas.append(self.sums(self.depth, np.real(ds_prev), None, sq))
            self.dP_sq[lo:hi] += np.real(dp) ** 2
            if dr is not None:
                self.dR_sq = np.zeros_like(self.dP_sq) if self.dR_sq is None else self.dR_sq
                self.dR_sq[lo:hi] += np.real(dr) ** 2
        sigma = self.sigmas[self.calls]
        self.calls += 1
        return dp, dr, self.nudge(ds_prev, sigma)

    def recurrent_grads(self, w, cache, states, dR, lo):
        return self.cell.recurrent_grads(w, cache, states, dR, lo)

    # the engine's buffer forms of `back` (handgrad.bptt): the same step, written into arrays
    @property
    def own_dR(self):
        return self.cell.own_dR

    def dP_slot(self, cache, lo, hi):
        return self.cell.dP_slot(cache, lo, hi)

    def back_into(self, w, cache, states, lo, hi, ds, dP, ds_prev=None, dR=None):
        dp, dr, prev = self.back(w, cache, states, lo, hi, ds)
        dP[...] = dp
        if ds_prev is not None:
            ds_prev[...] = prev
        if dR is not None and dr is not None:
            dR[...] = dr
        return dP, (dR if dr is not None else None), ds_prev

    def step_back(self, w, cache, states, t, ds, dP, ds_prev=None, dR=None):
        self.back_into(w, cache, states, t - 1, t, ds[None], dP[None],
                       None if ds_prev is None else ds_prev[None],
                       None if dR is None else dR[None])


def _case_rng(case) -> np.random.Generator:
    """The probes' generator, seeded by the case's arrays: the same case, the same floor."""
    digest = hashlib.sha1(repr(case.spec).encode())
    for a in (case.xs, case.ys, *case.params.arrays().values(),
              *(case.h0 if isinstance(case.h0, tuple) else (case.h0,))):
        if a is not None:
            digest.update(np.ascontiguousarray(a).tobytes())
    return np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))


def _signs(rng, shape) -> np.ndarray:
    """Independent random signs +-1 (float64) of the given shape."""
    n = int(np.prod(shape, dtype=np.int64))
    bits = np.unpackbits(np.frombuffer(rng.bytes((n + 7) // 8), np.uint8))[:n]
    return (2.0 * bits - 1.0).reshape(shape)


def _probe(case, p: _Pass, local, sums, u: float, scale: float, rng, squares, sigmas):
    """One probe: the hand BPTT with every local error (rounding the inputs and weights to the
    dtype, each step's sums, gates and states, the outputs, dL/do, each backward step) added
    with a random sign, times `scale`; with `rng` None, the coherent probe: only the errors in
    `local`, each with the sign it carries (`_rounded_up`), the backward steps' left out.
    Returns (name -> answer, o_t (S, B, O), the _Noisy cell)."""
    spec = case.spec
    cell = cell_for(spec)
    e_state, e_cache, e_o, e_do = local

    def nudge(x, sigma):
        return x + scale * sigma * (1.0 if rng is None else _signs(rng, np.shape(x)))

    params = case.params._replace(**{k: nudge(v, u * np.abs(v))
                                     for k, v in case.params.arrays().items()})
    w = weights_of(params)
    xs = nudge(p.xs_tm, u * np.abs(p.xs_tm))
    P = _mm(xs, w.W_in.T) + (0 if w.b_in is None else w.b_in)
    states = np.empty_like(p.states)
    states[0] = nudge(p.states[0], u * np.abs(p.states[0]))
    cache = _map(np.empty_like, p.cache)
    with np.errstate(over="ignore"):
        for t in range(P.shape[0]):                    # one step at a time: nudge each state
            s, c = cell.run(w, P[t:t + 1], states[t], True)
            states[t + 1] = nudge(s[1], e_state[t])
            _store(cache, t, _at(_map(nudge, c, _at(e_cache, slice(t, t + 1))), 0))
    os = nudge(outputs(params, output_states(cell.hidden(states), spec.output)), e_o)
    _, dos = loss_and_output_grad(os, p.ys_tm, spec.loss, spec.reduction)
    B, T, _ = case.xs.shape
    _, H, O = case.params.sizes
    noisy = _Noisy(cell, squares, sums, nudge if rng is not None else (lambda x, sigma: x),
                   cell.G * H + O + 8, T, (B, cell.G * H), sigmas)
    back = backward(params, xs, Forward(states, cache), nudge(dos, e_do), spec, wrt_xs=True,
                    cell=noisy)
    names, arrays = _named(spec, back)
    return dict(zip(names, arrays)), os, noisy


def _exact(case, p: _Pass) -> dict:
    """name -> the hand BPTT's answer: the gradients, h0 (c0) and xs."""
    names, values = _named(case.spec, backward(case.params, p.xs_tm, Forward(p.states, p.cache),
                                               p.dos, case.spec, wrt_xs=True))
    return dict(zip(names, values))


def _probable(case, p: _Pass, eps: float, ulps: float, ref: dict) -> dict:
    """TOLERANCES["probe_safety"] times the standard deviation of a correct candidate's error,
    per element (the largest over the elements), in the model of independent roundings."""
    spec = case.spec
    sums = _probable_sums(eps)
    u = eps / 2
    cell = cell_for(spec)
    step = _STEPS[spec.cell]
    w = weights_of(case.params)
    e_state, e_cache = step(spec, w, _steps(case, p), None, sums, eps, ulps)
    hs_out = output_states(cell.hidden(p.states), spec.output)
    e_o = _output_local(case, p, hs_out, sums)
    e_do = _dos_local(case, p, eps, ulps)
    if case.params.V is not None:        # V^T do_t: a sum of O terms per element, for every t
        O = p.dos.shape[-1]
        e_do = np.sqrt(e_do ** 2 + u * u * O * (O + 1) * p.dos ** 2)
    squares = (type(w)(*(None if a is None else a * a for a in w)),
               _magnitudes(spec, p.cache, power=2), p.states ** 2)
    local = (e_state, e_cache, e_o, e_do)
    rng = _case_rng(case)                # ref: the same operations as a probe, without errors
    scale = PROBE_SIZE / eps             # local errors of relative size ~1e-7: linear, and far
    n_probes = int(TOLERANCES["probes"])  # above the probe's own round-off (float64)
    total, loss_sq, sigmas, noisy = {}, 0.0, [], None
    for _ in range(n_probes):
        got, os, last = _probe(case, p, local, sums, u, scale, rng, squares, sigmas)
        noisy = noisy or last
        for k, v in got.items():
            total[k] = total.get(k, 0.0) + ((v - ref[k]) / scale) ** 2 / n_probes
        loss_sq += float(np.sum(p.dos * (os - p.os)) / scale) ** 2 / n_probes
    # the coherent probe: every elementary function rounded up at once (a biased library)
    got, os, _ = _probe(case, p, (*_rounded_up(spec, p, eps, ulps), 0.0, 0.0), sums, 0.0,
                        scale, None, squares, sigmas)
    for k, v in got.items():
        total[k] += ((v - ref[k]) / scale) ** 2
    loss_sq += float(np.sum(p.dos * (os - p.os)) / scale) ** 2
    leaf = _leaf_sums(case, p, noisy, sums, squares, ref)
    kappa = TOLERANCES["probe_safety"]
    out = {}
    for k, v in total.items():
        sd = np.sqrt(v + leaf.get(k, 0.0) ** 2)
        out[k] = kappa * float(np.max(sd, initial=0.0))
    values, local_loss = _loss_terms(case, p, eps, ulps)
    n = loss_count(spec.loss, spec.reduction, p.os.shape)
    sum_sd = sums(values.size + 2, float(np.sum(values)), None, float(np.sum(values ** 2)))
    out["loss"] = kappa * float(np.sqrt(loss_sq + np.sum(local_loss ** 2) / n ** 2
                                        + (sum_sd / n) ** 2))
    return out


def _leaf_sums(case, p: _Pass, noisy: _Noisy, sums, squares, exact) -> dict:
    """Standard deviations of the round-off of the final sums over samples and steps (dW_in,
    db_in, dW_rec, db_rec, dV, dc) and of dxs = W_in^T dP, from the probe's recorded terms;
    `exact`: name -> the hand BPTT's answer."""
    spec = case.spec
    cell = cell_for(spec)
    B, T, _ = case.xs.shape
    H = case.params.sizes[1]
    w = weights_of(case.params)
    n = B * T + T + 4                                      # samples, steps, sweeps
    x_sq = p.xs_tm ** 2
    dR_sq = noisy.dP_sq if noisy.dR_sq is None else noisy.dR_sq
    w_sq, cache_sq, states_sq = squares
    dW_rec, db_rec = cell.recurrent_grads(w_sq, cache_sq, states_sq, dR_sq, 0)
    hs_out = output_states(cell.hidden(p.states), spec.output)
    dV = dc = None
    if case.params.V is not None:
        dV = outer_sum(p.dos ** 2, hs_out ** 2)
        dc = None if case.params.c is None else (p.dos ** 2).sum(axis=(0, 1))
    db_in = None if w.b_in is None else noisy.dP_sq.sum(axis=(0, 1))
    sq = cell_grads(case.params, outer_sum(noisy.dP_sq, x_sq), dW_rec, db_in, db_rec, dV, dc)
    out = {k: sums(n, exact[k], None, v) for k, v in sq.arrays().items()}
    out["xs"] = sums(cell.G * H + 2, exact["xs"], None,
                     _mm(noisy.dP_sq, w_sq.W_in))
    return out


# ----------------------------------------------------------------- the floor

def roundoff_floor(case, dtype) -> dict:
    """name -> the largest difference round-off can explain between the hand BPTT and a correct
    candidate computing in `dtype`: "loss", every parameter's gradient, h0 (c0) and xs (the max
    over elements). inf: the model cannot bound this case (see `handgrad.tolerances`)."""
    worst, probable, scales = roundoff_bounds(case, dtype, shortcut=True, scales=True)
    out = {}
    for k, value in worst.items():
        if not np.isfinite(probable[k]) and not value < scales[k]:
            value = np.inf       # no estimate, and the worst case allows a 100% error: no bound
        value = float(np.fmin(value, probable[k]))    # a nan (inf - inf) bound is no bound
        out[k] = value if np.isfinite(value) else float("inf")   # inf, nan: cannot bound
    return out


def roundoff_bounds(case, dtype, shortcut: bool = False, scales: bool = False) -> tuple:
    """(worst case, probabilistic bound), each name -> the largest difference it allows; the
    floor is the smaller of the two. `shortcut`: skip the worst case where it cannot be the
    smaller (it is at least gamma(n_b) max|answer| for every answer), and return the
    probabilistic bound in its place. `scales`: also return name -> max|answer|."""
    eps = float(np.finfo(dtype_of(dtype)).eps) + float(np.finfo(np.float64).eps)
    ulps = TOLERANCES["ulps"]
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        p = _reference_pass(case)
        ref = _exact(case, p)
        probable = _probable(case, p, eps, ulps, ref)
        size = {k: float(np.max(np.abs(v), initial=0.0)) for k, v in ref.items()}
        size["loss"] = abs(p.loss)
        if shortcut and _worst_case_loses(case, p, eps, ref, probable):
            worst = probable
        else:
            worst = _worst_case(case, p, eps, ulps)
        return (worst, probable, size) if scales else (worst, probable)


def _worst_case_loses(case, p: _Pass, eps: float, ref: dict, probable: dict) -> bool:
    """Whether the worst case is at least the probabilistic bound for every answer, by its
    lower bound gamma(n_b) max|answer| (G_abs >= |G|; the loss: gamma(N + 2) |L|)."""
    B, T, D = case.xs.shape
    _, H, O = case.params.sizes
    g = gamma(sum_depth(B, T, D, H, O, cell_for(case.spec).G), eps)
    if not gamma(p.dos[..., 0].size + 2, eps) * abs(p.loss) >= probable["loss"]:
        return False
    return all(g * float(np.max(np.abs(v), initial=0.0)) >= probable[k] for k, v in ref.items())


def dtype_of(dtype) -> np.dtype:
    """The floating dtype a candidate's array is judged in (integers: float64)."""
    d = np.dtype(dtype)
    return d if d.kind == "f" else np.dtype(np.float64)
