"""The RNN family: forward pass and the hand-derived backward pass (BPTT), for every cell.

Size letters: B batch, T time steps, D input features, H hidden units, O outputs (O = H without
an output head), S output steps (T for `output="all"`, 1 for `"last"`), G gate blocks of the cell,
W the cell's state width (H; 2H for the LSTM's [h, c]).

    P_t = W_in x_t + b_in          (U x_t + b for the Elman cell; all t in one product)
    s_t = cell(P_t, s_{t-1})       (handgrad.cells: Elman, GRU, LSTM)
    o_t = V h_t + c                (h_t = the hidden part of s_t; o_t = h_t without a head)

Internally everything is time-major: `xs_tm` is (T, B, D) and the states (T + 1, B, W) with
states[0] = s_0 and states[t] = s_t, so one time step is one contiguous block. The public
functions take and return the contract's batch-major arrays.

The backward pass is written once for every cell and every truncation: a truncation is a list of
backward sweeps (`spec.segments`); each sweep carries dL/ds back from its last loss step to its
cut through the cell's backward step (`cell.back`). The input side of every step and the time
sums of the weight gradients are single matrix products at the end.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import check_h0, check_inputs, check_params, check_spec, check_xs
from .cells import cell_for, cell_grads, outer_sum, weights_of
from .params import tree_map
from .losses import loss_and_output_grad
from .spec import Window, segments


class Forward(NamedTuple):
    states: np.ndarray   # (T + 1, B, W) s_0 .. s_T
    cache: object        # what the cell's backward step needs (None when not asked for);
                         # Elman: act'(a_t), (T, B, H)


def forward_states(params, xs_tm, state0, spec, derivative: bool = True) -> Forward:
    """Run the recurrence over `xs_tm` (T, B, D) from the state `state0` (B, W).

    Works for real and complex arrays alike (complex-step differentiation uses it). With
    `derivative=False` (prediction, numerical differentiation) the cache is None.
    """
    w = weights_of(params)
    T, B, D = xs_tm.shape
    dtype = np.result_type(xs_tm, state0, *params.arrays().values())
    P = (xs_tm.reshape(T * B, D) @ w.W_in.T).reshape(T, B, -1).astype(dtype, copy=False)
    if w.b_in is not None:
        P += w.b_in                                       # P_t = W_in x_t + b_in, every t
    states, cache = cell_for(spec).run(w, P, state0, derivative)
    return Forward(states, cache)


def hidden_states(states, spec):
    """h_0 .. h_T (T + 1, B, H) from the states (the LSTM's are [h, c])."""
    return cell_for(spec).hidden(states)


def outputs(params, hs_steps):
    """o_t = V h_t + c for the given states (..., B, H) -> (..., B, O); o_t = h_t without a head."""
    if params.V is None:
        return hs_steps
    os = hs_steps @ params.V.T
    return os if params.c is None else os + params.c


def output_states(hs, output: str):
    """The hidden states that feed a loss term: h_1..h_T (`"all"`) or h_T alone (`"last"`),
    (S, B, H), from h_0..h_T (T + 1, B, H)."""
    return hs[1:] if output == "all" else hs[-1:]


class Backward(NamedTuple):
    grads: object        # Params or GatedParams
    dstate0: np.ndarray  # (B, W) dL/ds_0
    dxs_tm: object       # (T, B, D) dL/dx_t, or None when not asked for


def backward(params, xs_tm, fwd: Forward, dos, spec, wrt_xs: bool = False,
             cell=None) -> Backward:
    """Hand-derived BPTT under `spec.truncation`.

    xs_tm: (T, B, D); fwd: the forward pass; dos: dL/do_t of shape (S, B, O).
    `cell`: the cell object (default `cell_for(spec)`); the oracle's round-off model passes one
    that wraps it (`oracle.conditioning`).
    """
    cell = cell_for(spec) if cell is None else cell
    w = weights_of(params)
    T, B, D = xs_tm.shape
    dV, dc, ds_loss = output_side(params, cell, fwd.states, dos, spec.output)

    # the recurrence: dL/dP_t (and dL/dR_t) for every t, summed over the sweeps of the truncation
    window = spec.truncation.k if isinstance(spec.truncation, Window) else None
    if spec.output == "all" and window is not None and window < T - 1:
        dP, dR, ds0 = window_sweeps(cell, w, fwd, ds_loss, window)
        lo = 0
    else:
        sweeps = segments(spec.truncation, T, spec.output)
        first_loss_step = 1 if spec.output == "all" else T
        dP, dR, ds0 = segment_sweeps(cell, w, fwd, ds_loss, sweeps, first_loss_step)
        lo = min(seg.cut for seg in sweeps)                        # no sweep reaches steps 1..lo

    grads = assemble_grads(params, cell, xs_tm, fwd, dP[lo:], None if dR is None else dR[lo:],
                           lo, T, dV, dc)
    dxs_tm = None
    if wrt_xs:                                                     # x_t enters through P_t only
        dxs_tm = (dP.reshape(T * B, -1) @ w.W_in).reshape(T, B, D)
    return Backward(grads, ds0, dxs_tm)


class OutputSide(NamedTuple):
    dV: object               # (O, H) sum_t do_t h_t^T, or None without a head
    dc: object               # (O,) sum_t do_t, or None without a head or bias
    ds_loss: np.ndarray      # (S, B, W) dL/ds_t through o_t alone (zero on the LSTM's c_t)


def output_side(params, cell, states, dos, output: str) -> OutputSide:
    """The output layer's gradients and what the loss sends into the states.

    states: (T + 1, B, W) s_0 .. s_T; dos: dL/do_t (S, B, O) of the output steps (`output`).
    """
    hs_out = output_states(cell.hidden(states), output)            # (S, B, H)
    H = hs_out.shape[-1]
    # o_t = V h_t + c: the output layer sees every loss term directly (never truncated)
    if params.V is not None:
        dV = outer_sum(dos, hs_out)                                # sum_t do_t h_t^T
        dc = dos.sum(axis=(0, 1)) if params.c is not None else None  # sum_t do_t
        dh_loss = (dos.reshape(-1, dos.shape[-1]) @ params.V).reshape(hs_out.shape)  # V^T do_t
    else:
        dV = dc = None
        dh_loss = dos                                              # o_t = h_t
    # the loss enters the state through its hidden part h_t
    ds_loss = dh_loss if cell.width(H) == H else np.concatenate(
        [dh_loss, np.zeros(dh_loss.shape[:-1] + (cell.width(H) - H,))], axis=-1)
    return OutputSide(dV, dc, ds_loss)


def assemble_grads(params, cell, xs_tm, fwd: Forward, dP, dR, lo: int, hi: int, dV=None,
                   dc=None):
    """The gradient, as `params`' type, of the terms dL/dP_t (and dL/dR_t) of steps lo+1..hi.

    dP, dR: (hi - lo, B, G H), dR None when it equals dP (see handgrad.cells); xs_tm (T, B, D);
    dV, dc: the output layer's gradients (None without a head). Linear in dP and dR: the
    gradient of a sum of sweeps is this of their summed terms.
    """
    w = weights_of(params)
    states, cache = fwd
    if hi < states.shape[0] - 1:                                   # the cell sums up to the end
        states, cache = states[:hi + 1], tree_map(lambda a: a[:hi], cache)
    # P_t = W_in x_t + b_in and the recurrent terms: time sums as single matrix products
    dW_in = outer_sum(dP, xs_tm[lo:hi])                            # sum_t dP_t x_t^T
    db_in = dP.sum(axis=(0, 1)) if w.b_in is not None else None
    dW_rec, db_rec = cell.recurrent_grads(w, cache, states, dP if dR is None else dR, lo)
    return cell_grads(params, dW_in, dW_rec, db_in, db_rec, dV, dc)


def segment_sweeps(cell, w, fwd: Forward, ds_loss, sweeps, first_loss_step: int):
    """dL/dP_t (T, B, G H), dL/dR_t (or None when it is dL/dP_t) and dL/ds_0 (B, W), one
    backward sweep (spec.Segment) at a time.

    ds_loss: (S, B, W) the loss's gradient of the state at each output step, ds_loss[0]
    belonging to step first_loss_step.
    """
    states, cache = fwd
    T, B, Wd = states.shape[0] - 1, states.shape[1], states.shape[2]
    dP, dR = np.zeros((T, B, w.W_in.shape[0])), None       # dR: only if the cell has its own
    ds0 = np.zeros((B, Wd))
    for seg in sweeps:
        ds = np.zeros((1, B, Wd))                          # dL/ds_t carried from step t + 1
        for t in range(seg.last, seg.cut, -1):
            if t >= seg.first:
                ds = ds + ds_loss[t - first_loss_step]     # the loss term at step t
            dp, dr, ds = cell.back(w, cache, states, t - 1, t, ds)   # back through step t
            dP[t - 1] += dp[0]
            if dr is not None:
                dR = np.zeros_like(dP) if dR is None else dR
                dR[t - 1] += dr[0]
        if seg.cut == 0:
            ds0 += ds[0]                                   # s_0 is an input, never cut
        # else s_cut is a constant of the surrogate: its gradient stops here
    return dP, dR, ds0


def window_sweeps(cell, w, fwd: Forward, ds_loss, k: int):
    """`Window(k)` with a loss at every step, all T sweeps at once, one lag at a time
    (`window_lags`): dL/dP_t (T, B, G H), dL/dR_t (or None) and dL/ds_0 (B, W).

    ds_loss: (T, B, W); 0 <= k <= T - 1 (k = T - 1 is full BPTT; `backward` takes this path for
    k < T - 1 only, the streaming gradients of handgrad.research for any k).
    """
    T = fwd.states.shape[0] - 1
    dP, dR = np.zeros((T,) + ds_loss.shape[1:2] + w.W_in.shape[:1]), None
    ds0 = np.zeros(ds_loss.shape[1:])
    for dp, dr, ds_prev in window_lags(cell, w, fwd, ds_loss, k):
        n = dp.shape[0]
        dP[:n] += dp
        if dr is not None:
            dR = np.zeros_like(dP) if dR is None else dR
            dR[:n] += dr
        ds0 += ds_prev[0]                                  # sweep t = i+1 has reached s_0
    # after k+1 steps each remaining sweep stops at its cut s_{t-k-1}, a constant
    return dP, dR, ds0


def window_lags(cell, w, fwd: Forward, ds_loss, k: int):
    """The lags i = 0..k of every sweep of a many-to-many `Window(k)`, one backward step each.

    The sweep of loss step t covers steps t, t-1, ..., max(1, t-k). At lag i it is at step
    s = t - i, so the sweeps of t = i+1..T sit on the steps s = 1..T-i: one backward step of
    n = T - i steps side by side per lag, instead of T sweeps of k + 1 small steps each.
    Yields (dp, dr, ds_prev) per lag: the backward step's dP (n, B, G H) and dR (or None) of
    steps s = 1..n, and ds_prev (n, B, W) = dL_t/ds_{t-i-1} for t = i+1..T (ds_prev[0] reaches
    s_0), a view valid until the next lag. ds_loss: (T, B, W); 0 <= k <= T - 1.
    """
    states, cache = fwd
    T = states.shape[0] - 1
    carry = ds_loss.copy()                                 # carry[t-1]: sweep t's dL_t/ds_s
    for i in range(k + 1):
        n = T - i                                          # sweeps t = i+1..T, at steps s = 1..n
        dp, dr, carry[i:] = cell.back(w, cache, states, 0, n, carry[i:])
        yield dp, dr, carry[i:]


def time_major(xs, ys, spec):
    """(B, T, D) -> (T, B, D) contiguous; ys -> (S, B, O) or (S, B)."""
    xs_tm = np.ascontiguousarray(np.swapaxes(xs, 0, 1))
    ys_tm = ys[None] if spec.output == "last" else np.swapaxes(ys, 0, 1)
    return xs_tm, ys_tm


def initial_state(h0, B: int, H: int, spec=None):
    """s_0 (B, W): zeros when h0 is None; for the LSTM the pair (h_0, c_0) side by side."""
    width = 2 * H if spec is not None and spec.cell == "lstm" else H
    if h0 is None:
        return np.zeros((B, width))
    if isinstance(h0, tuple):
        return np.concatenate(h0, axis=-1)
    return h0


def state_gradient(ds0, spec):
    """dL/ds_0 in the shape of h0: (B, H), or the pair (dh_0, dc_0) for the LSTM (any leading
    axes: (..., B, W) -> (..., B, H) or a pair of them)."""
    if spec.cell == "lstm":
        H = ds0.shape[-1] // 2
        return ds0[..., :H].copy(), ds0[..., H:].copy()
    return ds0


def loss_and_grads(params, xs, ys, spec, h0=None, wrt_h0: bool = False, wrt_xs: bool = False):
    """Loss and its hand-derived gradient (BPTT under `spec.truncation`).

    params: `Params` (U (H, D), W (H, H), V (O, H), b (H,), c (O,)) or, for `spec.cell` "gru" /
    "lstm", `GatedParams`; xs: (B, T, D); ys: (B, O) | (B, T, O) floats, or (B,) | (B, T) int
    class ids for cross-entropy; h0: (B, H) or None (zeros); for the LSTM the pair (h_0, c_0).
    Returns (loss, grads[, dh0][, dxs]): dh0 of h0's shape (a pair for the LSTM) with
    `wrt_h0=True`, dxs (B, T, D) with `wrt_xs=True`. Truncation changes the gradient, never the
    loss; under truncation dxs is the gradient of the same surrogate.
    """
    for name, value in (("wrt_h0", wrt_h0), ("wrt_xs", wrt_xs)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
    return loss_and_grads_trusted(params, xs, ys, spec, h0, wrt_h0, wrt_xs)


def loss_and_grads_trusted(params, xs, ys, spec, h0=None, wrt_h0: bool = False,
                           wrt_xs: bool = False):
    """`loss_and_grads` without the argument checks, for callers that validated their arrays
    once (a training loop calls it thousands of times). Arrays must be float64 and of the
    contract's shapes; anything else gives wrong answers or numpy errors, not clear ones."""
    xs_tm, ys_tm = time_major(xs, ys, spec)
    B = xs.shape[0]
    H = params.sizes[1]
    fwd = forward_states(params, xs_tm, initial_state(h0, B, H, spec), spec)
    os = outputs(params, output_states(hidden_states(fwd.states, spec), spec.output))
    loss, dos = loss_and_output_grad(os, ys_tm, spec.loss, spec.reduction)
    back = backward(params, xs_tm, fwd, dos, spec, wrt_xs)
    out = (loss, back.grads)
    if wrt_h0:
        out += (state_gradient(back.dstate0, spec),)
    if wrt_xs:
        out += (np.ascontiguousarray(np.swapaxes(back.dxs_tm, 0, 1)),)
    return out


def predict(params, xs, spec, h0=None):
    """Outputs o_t and hidden states, batch-major.

    Returns (os, hs): os (B, O) for `output="last"` or (B, T, O) for `"all"`; hs (B, T, H) = h_1..h_T.
    """
    spec = check_spec(spec)
    params = check_params(params, spec)
    D, H, _ = params.sizes
    xs = check_xs(xs, D)
    B = xs.shape[0]
    h0 = check_h0(h0, B, H, spec)
    xs_tm = np.ascontiguousarray(np.swapaxes(xs, 0, 1))
    fwd = forward_states(params, xs_tm, initial_state(h0, B, H, spec), spec, derivative=False)
    hs = hidden_states(fwd.states, spec)
    os = outputs(params, output_states(hs, spec.output))
    os = os[0] if spec.output == "last" else np.swapaxes(os, 0, 1)
    return os, np.swapaxes(hs[1:], 0, 1)
