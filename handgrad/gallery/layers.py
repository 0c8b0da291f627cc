"""Correct, in the style of a layer library (forward/backward pairs with caches, as in CS231n's
assignments): a recurrent *layer* without an output head, whose backward receives the upstream
gradients dh and returns dx too. Written here from the equations.

Size letters: N batch, T time steps, D inputs, H hidden units.

Layout of such libraries: x @ Wx + h @ Wh + b, with Wx (D, H) and Wh (H, H), i.e. U = Wx^T and
W = Wh^T; the LSTM stacks its gates as (i, f, o, g) in Wx (D, 4H), Wh (H, 4H) and one bias b
(4H,) (the sum of PyTorch's b_ih and b_hh, whose gradients are therefore both db).

As oracle candidates they are checked with `Spec(head=False, loss="linear", output="all")`: the
targets `ys` (N, T, H) are the upstream gradients dh, the "loss" is sum(dh * h), and the
gradients include dx (`"xs"`). `elman_layer(spec, mistake)` and `lstm_layer(spec, mistake)` switch
on one classic mistake of `LAYER_MISTAKES` / `LSTM_MISTAKES` (lines marked `# MISTAKE`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

LAYER_MISTAKES = {
    "carry_dropped": "dh_t is only the upstream gradient: the gradient carried back from step "
                     "t + 1 is not added to it",
    "dx_skips_activation": "dx_t = Wx (dh_t) instead of Wx (dh_t * act'(a_t)): the activation's "
                           "derivative is skipped on the way to the input",
}
LSTM_MISTAKES = {
    "cell_path_forgotten": "dc_{t-1} is not carried back: the gradient reaches c_{t-1} only "
                           "through h_{t-1}",
    "tanh_c_derivative_missing": "dc_t = dh_t o_t, without tanh'(c_t)",
    "forget_gate_with_c_t": "df_t = dc_t c_t instead of dc_t c_{t-1}",
    "output_gate_as_tanh": "the output gate's derivative taken as tanh' (1 - o^2) instead of "
                           "o (1 - o)",
}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _act(activation, a):
    return np.tanh(a) if activation == "tanh" else np.maximum(a, 0.0)


def _act_grad(activation, h):
    """act'(a) from h = act(a), as layer code does: 1 - h^2 for tanh, (h > 0) for relu."""
    return 1.0 - h * h if activation == "tanh" else (h > 0).astype(h.dtype)


# --------------------------------------------------------------------- the Elman layer

class StepCache(NamedTuple):
    x: np.ndarray        # (N, D)
    h_prev: np.ndarray   # (N, H)
    h: np.ndarray        # (N, H)
    Wx: np.ndarray       # (D, H)
    Wh: np.ndarray       # (H, H)
    activation: str


def step_forward(x, h_prev, Wx, Wh, b, activation="tanh"):
    """One step: h = act(x @ Wx + h_prev @ Wh + b). x (N, D), h_prev (N, H). Returns (h, cache)."""
    h = _act(activation, x @ Wx + h_prev @ Wh + b)
    return h, StepCache(x, h_prev, h, Wx, Wh, activation)


def step_backward(dh, cache: StepCache, mistake=None):
    """dh (N, H): dL/dh of this step, everything that reaches h. Returns (dx, dh_prev, dWx, dWh,
    db)."""
    da = dh * _act_grad(cache.activation, cache.h)         # through the activation
    dx = da @ cache.Wx.T                                   # a = x Wx + ...
    if mistake == "dx_skips_activation":
        dx = dh @ cache.Wx.T                               # MISTAKE: act' skipped
    return dx, da @ cache.Wh.T, cache.x.T @ da, cache.h_prev.T @ da, da.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b, activation="tanh"):
    """x (N, T, D), h0 (N, H). Returns (h (N, T, H), caches)."""
    N, T, _ = x.shape
    h, caches, prev = np.empty((N, T, Wh.shape[0]), dtype=np.result_type(x, Wx)), [], h0
    for t in range(T):
        prev, cache = step_forward(x[:, t], prev, Wx, Wh, b, activation)
        h[:, t] = prev
        caches.append(cache)
    return h, caches


def rnn_backward(dh, caches, mistake=None):
    """dh (N, T, H): the upstream gradients of every h_t. Returns (dx, dh0, dWx, dWh, db)."""
    N, T, H = dh.shape
    D = caches[0].x.shape[1]
    dx = np.empty((N, T, D))
    dWx, dWh, db = np.zeros((D, H)), np.zeros((H, H)), np.zeros(H)
    carried = np.zeros((N, H))
    for t in range(T - 1, -1, -1):
        total = dh[:, t] + carried                         # upstream + carried from t + 1
        if mistake == "carry_dropped":
            total = dh[:, t]                               # MISTAKE: carry not added
        dx[:, t], carried, dWx_t, dWh_t, db_t = step_backward(total, caches[t], mistake)
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, carried, dWx, dWh, db


def elman_layer(spec, mistake=None):
    """The layer as a candidate for `Spec(head=False, loss="linear", output="all")` (tanh or relu,
    bias, reduction "sum", full BPTT)."""
    _layer_spec(spec, ("tanh", "relu"), LAYER_MISTAKES, mistake)

    def candidate(params, xs, ys, h0):
        U, W, _, b, _ = params
        N, H = xs.shape[0], W.shape[0]
        start = np.zeros((N, H)) if h0 is None else h0
        h, caches = rnn_forward(xs, start, U.T, W.T, b, spec.activation)
        dx, dh0, dWx, dWh, db = rnn_backward(ys, caches, mistake)
        return float(np.sum(ys * h)), {"U": dWx.T, "W": dWh.T, "b": db, "h0": dh0, "xs": dx}

    candidate.__name__ = f"elman_layer_{mistake}" if mistake else "elman_layer"
    return candidate


def _layer_spec(spec, activations, mistakes, mistake):
    if (spec.head or spec.loss != "linear" or spec.output != "all" or not spec.bias
            or spec.reduction != "sum" or spec.truncation is not None):
        raise ValueError("layer candidates are checked as layers: Spec(head=False, "
                         "loss='linear', output='all', bias=True, reduction='sum', full BPTT), "
                         f"got {spec}")
    if spec.cell == "elman" and spec.activation not in activations:
        raise ValueError(f"the Elman layer implements {activations}, got {spec.activation!r}")
    if mistake is not None and mistake not in mistakes:
        raise ValueError(f"mistake must be None or one of {sorted(mistakes)}, got {mistake!r}")


# --------------------------------------------------------------------- the LSTM layer

GATE_ORDER = (0, 1, 3, 2)     # this layout's blocks (i, f, o, g) are PyTorch's blocks 0, 1, 3, 2


def _blocks(a, order):
    """Reorder the four gate blocks of the last axis of `a`."""
    H = a.shape[-1] // 4
    return np.concatenate([a[..., k * H:(k + 1) * H] for k in order], axis=-1)


class LSTMCache(NamedTuple):
    x: np.ndarray        # (N, D)
    h_prev: np.ndarray   # (N, H)
    c_prev: np.ndarray   # (N, H)
    gates: np.ndarray    # (N, 4H) i, f, o, g
    c: np.ndarray        # (N, H)
    Wx: np.ndarray       # (D, 4H)
    Wh: np.ndarray       # (H, 4H)


def lstm_step_forward(x, h_prev, c_prev, Wx, Wh, b):
    """One step. Returns (h, c, cache); gates (i, f, o, g) = (sig, sig, sig, tanh)(x Wx + h Wh + b)."""
    a = x @ Wx + h_prev @ Wh + b
    H = h_prev.shape[1]
    gates = np.concatenate([_sigmoid(a[:, :3 * H]), np.tanh(a[:, 3 * H:])], axis=1)
    i, f, o, g = (gates[:, k * H:(k + 1) * H] for k in range(4))
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    return h, c, LSTMCache(x, h_prev, c_prev, gates, c, Wx, Wh)


def lstm_step_backward(dh, dc, cache: LSTMCache, mistake=None):
    """dh, dc (N, H): everything that reaches h_t and c_t. Returns (dx, dh_prev, dc_prev, dWx,
    dWh, db)."""
    H = dh.shape[1]
    i, f, o, g = (cache.gates[:, k * H:(k + 1) * H] for k in range(4))
    tc = np.tanh(cache.c)
    do = dh * tc                                           # h = o tanh(c)
    dc = dc + dh * o * (1 - tc * tc)
    if mistake == "tanh_c_derivative_missing":
        dc = dc - dh * o * (1 - tc * tc) + dh * o          # MISTAKE: tanh'(c) dropped
    df = dc * (cache.c if mistake == "forget_gate_with_c_t" else cache.c_prev)  # c = f c_prev + i g
    do_gate = o * (1 - o)
    if mistake == "output_gate_as_tanh":
        do_gate = 1 - o * o                                # MISTAKE: tanh' for a sigmoid gate
    da = np.concatenate([dc * g * i * (1 - i), df * f * (1 - f), do * do_gate,
                         dc * i * (1 - g * g)], axis=1)    # through each gate's nonlinearity
    dc_prev = np.zeros_like(dc) if mistake == "cell_path_forgotten" else dc * f
    return (da @ cache.Wx.T, da @ cache.Wh.T, dc_prev, cache.x.T @ da, cache.h_prev.T @ da,
            da.sum(axis=0))


def lstm_forward(x, h0, Wx, Wh, b, c0=None):
    """x (N, T, D), h0 (N, H), c0 (N, H) or None. Returns (h (N, T, H), caches)."""
    N, T, _ = x.shape
    H = h0.shape[1]
    h, caches = np.empty((N, T, H)), []
    prev_h, prev_c = h0, np.zeros((N, H)) if c0 is None else c0
    for t in range(T):
        prev_h, prev_c, cache = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        h[:, t] = prev_h
        caches.append(cache)
    return h, caches


def lstm_backward(dh, caches, mistake=None):
    """dh (N, T, H). Returns (dx, dh0, dc0, dWx, dWh, db)."""
    N, T, H = dh.shape
    D = caches[0].x.shape[1]
    dx = np.empty((N, T, D))
    dWx, dWh, db = np.zeros((D, 4 * H)), np.zeros((H, 4 * H)), np.zeros(4 * H)
    dh_next, dc_next = np.zeros((N, H)), np.zeros((N, H))
    for t in range(T - 1, -1, -1):
        dx[:, t], dh_next, dc_next, dWx_t, dWh_t, db_t = lstm_step_backward(
            dh[:, t] + dh_next, dc_next, caches[t], mistake)
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dh_next, dc_next, dWx, dWh, db


def lstm_layer(spec, mistake=None):
    """The LSTM layer as a candidate for `Spec(cell="lstm", head=False, loss="linear",
    output="all")` (bias, reduction "sum", full BPTT); PyTorch's b_ih + b_hh is this layer's b."""
    _layer_spec(spec, (), LSTM_MISTAKES, mistake)
    if spec.cell != "lstm":
        raise ValueError(f"lstm_layer is an LSTM, got cell={spec.cell!r}")

    def candidate(params, xs, ys, h0):
        N, H = xs.shape[0], params.W_hh.shape[1]
        h_start, c_start = (np.zeros((N, H)), None) if h0 is None else h0
        Wx = _blocks(params.W_ih.T, GATE_ORDER)                # (D, 4H) in (i, f, o, g)
        Wh = _blocks(params.W_hh.T, GATE_ORDER)                # (H, 4H)
        b = _blocks(params.b_ih + params.b_hh, GATE_ORDER)     # (4H,)
        h, caches = lstm_forward(xs, h_start, Wx, Wh, b, c_start)
        dx, dh0, dc0, dWx, dWh, db = lstm_backward(ys, caches, mistake)
        torch_order = np.argsort(GATE_ORDER)                   # back to (i, f, g, o)
        db = _blocks(db, torch_order)
        return float(np.sum(ys * h)), {
            "W_ih": _blocks(dWx, torch_order).T, "W_hh": _blocks(dWh, torch_order).T,
            "b_ih": db, "b_hh": db, "h0": dh0, "c0": dc0, "xs": dx}

    candidate.__name__ = f"lstm_layer_{mistake}" if mistake else "lstm_layer"
    return candidate
