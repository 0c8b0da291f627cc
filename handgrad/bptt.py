"""The Elman RNN family: forward pass and the hand-derived backward pass (BPTT).

Size letters: B batch, T time steps, D input features, H hidden units, O outputs,
S output steps (T for `output="all"`, 1 for `"last"`).

    a_t = U x_t + W h_{t-1} + b      h_t = act(a_t)      o_t = V h_t + c      t = 1..T

Internally everything is time-major: `xs_tm` is (T, B, D) and the hidden states `hs` are
(T + 1, B, H) with hs[0] = h_0 and hs[t] = h_t, so one time step is one contiguous (B, H) block.
The public functions take and return the contract's batch-major arrays.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import check_h0, check_inputs, check_params, check_spec, check_xs
from .losses import loss_and_output_grad
from .nonlin import act_derivative, act_function
from .params import Params
from .spec import Window, segments


class Forward(NamedTuple):
    hs: np.ndarray    # (T + 1, B, H) h_0 .. h_T
    dact: np.ndarray  # (T, B, H)     act'(a_t) for t = 1..T, at index t - 1 (None if not asked)


def forward_states(params: Params, xs_tm, h_start, activation: str,
                   derivative: bool = True) -> Forward:
    """Run the recurrence over `xs_tm` (T, B, D) from the state `h_start` (B, H).

    Works for real and complex arrays alike (complex-step differentiation uses it). With
    `derivative=False` (prediction, numerical differentiation) `dact` is None.
    """
    U, W, _, b, _ = params
    T, B, D = xs_tm.shape
    H = W.shape[0]
    dtype = np.result_type(xs_tm, h_start, *params.arrays().values())
    hs = np.empty((T + 1, B, H), dtype)
    hs[0] = h_start
    pre = (xs_tm.reshape(T * B, D) @ U.T).reshape(T, B, H)   # U x_t for every t in one product
    if b is not None:
        pre += b
    WT = np.ascontiguousarray(W.T)
    f = act_function(activation, np.iscomplexobj(hs))
    Wh = np.empty((B, H), dtype)
    with np.errstate(over="ignore"):                  # sigmoid's exp(-a) -> inf is exact (see act)
        for t in range(1, T + 1):
            np.dot(hs[t - 1], WT, out=Wh)             # (np.dot: less call overhead than matmul)
            pre[t - 1] += Wh                          # a_t = U x_t + b + W h_{t-1}
            f(pre[t - 1], out=hs[t])                  # h_t = act(a_t)
    if not derivative:
        return Forward(hs, None)
    return Forward(hs, act_derivative(activation, pre, out=pre))   # act'(a_t), in place of a_t


def outputs(params: Params, hs_steps):
    """o_t = V h_t + c for the given states (..., B, H) -> (..., B, O)."""
    os = hs_steps @ params.V.T
    return os if params.c is None else os + params.c


def output_states(hs, output: str):
    """The states that feed a loss term: h_1..h_T (`"all"`) or h_T alone (`"last"`), (S, B, H)."""
    return hs[1:] if output == "all" else hs[-1:]


def backward(params: Params, xs_tm, fwd: Forward, dos, spec):
    """Hand-derived BPTT under `spec.truncation`.

    xs_tm: (T, B, D); fwd: the forward pass; dos: dL/do_t of shape (S, B, O).
    Returns (grads: Params, dh0: (B, H)).
    """
    U, W, V, b, c = params
    hs, dact = fwd
    T, B, H = dact.shape
    O = V.shape[0]

    # o_t = V h_t + c: the output layer sees every loss term directly (never truncated)
    hs_out = output_states(hs, spec.output)
    dV = dos.reshape(-1, O).T @ hs_out.reshape(-1, H)      # sum_t do_t h_t^T
    dc = dos.sum(axis=(0, 1)) if c is not None else None  # sum_t do_t

    # the recurrence: dL/da_t for every t, summed over the backward sweeps of the truncation
    window = spec.truncation.k if isinstance(spec.truncation, Window) else None
    if spec.output == "all" and window is not None and window < T - 1:
        das, dh0 = window_sweeps(dos, V, dact, W, window)
        lo = 0
    else:
        sweeps = segments(spec.truncation, T, spec.output)
        first_loss_step = 1 if spec.output == "all" else T
        das, dh0 = segment_sweeps(dos, V, dact, W, sweeps, first_loss_step)
        lo = min(seg.cut for seg in sweeps)                # no sweep reaches steps 1..lo: da = 0

    # a_t = U x_t + W h_{t-1} + b: the time sums are single matrix products (over reached steps)
    flat_da = das[lo:].reshape(-1, H)
    dW = flat_da.T @ hs[lo:-1].reshape(-1, H)              # sum_t da_t h_{t-1}^T
    dU = flat_da.T @ xs_tm[lo:].reshape(len(flat_da), -1)  # sum_t da_t x_t^T
    db = flat_da.sum(axis=0) if b is not None else None    # sum_t da_t
    return Params(dU, dW, dV, db, dc), dh0


def segment_sweeps(dos, V, dact, W, sweeps, first_loss_step: int):
    """dL/da_t (T, B, H) and dL/dh_0 (B, H), one backward sweep (spec.Segment) at a time.

    dos: (S, B, O) dL/do_t, dos[0] belonging to step first_loss_step; V: (O, H);
    dact: (T, B, H) act'(a_t); W: (H, H).
    """
    T, B, H = dact.shape
    das = np.zeros((T, B, H))                              # dL/da_t, summed over the sweeps
    dh0 = np.zeros((B, H))
    dh, da = np.empty((B, H)), np.empty((B, H))
    for seg in sweeps:
        dh[...] = 0.0                                      # dL/dh_t carried from step t + 1
        for t in range(seg.last, seg.cut, -1):
            if t >= seg.first:
                dh += dos[t - first_loss_step] @ V         # o_t = V h_t + c: loss term t
            np.multiply(dh, dact[t - 1], out=da)           # h_t = act(a_t): da = dh * act'(a_t)
            das[t - 1] += da
            np.matmul(da, W, out=dh)                       # a_t = ... + W h_{t-1}: carry to h_{t-1}
        if seg.cut == 0:
            dh0 += dh                                      # h_0 is an input, never cut
        # else h_cut is a constant of the surrogate: its gradient stops here
    return das, dh0


def window_sweeps(dos, V, dact, W, k: int):
    """`Window(k)` with a loss at every step, all T sweeps at once, one lag at a time.

    The sweep of loss step t covers steps t, t-1, ..., max(1, t-k). At lag i it is at step
    s = t - i, so the sweeps of t = i+1..T sit on the steps s = 1..T-i: one (T-i, B, H) block and
    one matrix product per lag, instead of T sweeps of k+1 small products each.
    dos: (T, B, O); V: (O, H); dact: (T, B, H); W: (H, H); 0 <= k < T - 1.
    """
    T, B, H = dact.shape
    das = np.zeros((T, B, H))                              # dL/da_s, summed over the sweeps
    dh0 = np.zeros((B, H))
    carry = (dos.reshape(T * B, -1) @ V).reshape(T, B, H)  # o_t = V h_t + c; carry[t-1]: sweep t's dL_t/dh_s
    da = np.empty((T, B, H))
    for i in range(k + 1):
        n = T - i                                          # sweeps t = i+1..T, at steps s = 1..n
        np.multiply(carry[i:], dact[:n], out=da[:n])       # h_s = act(a_s): da = dh * act'(a_s)
        das[:n] += da[:n]
        np.matmul(da[:n].reshape(n * B, H), W,             # a_s = ... + W h_{s-1}: carry to h_{s-1}
                  out=carry[i:].reshape(n * B, H))
        dh0 += carry[i]                                    # sweep t = i+1 has reached h_0
    # after k+1 steps each remaining sweep stops at its cut h_{t-k-1}, a constant
    return das, dh0


def time_major(xs, ys, spec):
    """(B, T, D) -> (T, B, D) contiguous; ys -> (S, B, O) or (S, B)."""
    xs_tm = np.ascontiguousarray(np.swapaxes(xs, 0, 1))
    ys_tm = ys[None] if spec.output == "last" else np.swapaxes(ys, 0, 1)
    return xs_tm, ys_tm


def initial_state(h0, B: int, H: int):
    return np.zeros((B, H)) if h0 is None else h0


def loss_and_grads(params, xs, ys, spec, h0=None, wrt_h0: bool = False):
    """Loss and its hand-derived gradient (BPTT under `spec.truncation`).

    params: `Params` with U (H, D), W (H, H), V (O, H), b (H,), c (O,);
    xs: (B, T, D); ys: (B, O) | (B, T, O) floats, or (B,) | (B, T) int class ids for
    cross-entropy; h0: (B, H) or None (zeros).
    Returns (loss, grads) or, with `wrt_h0=True`, (loss, grads, dh0) with dh0 of shape (B, H).
    Truncation changes the gradient, never the loss.
    """
    if not isinstance(wrt_h0, (bool, np.bool_)):
        raise ValueError(f"wrt_h0 must be True or False, got {wrt_h0!r}")
    params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
    return loss_and_grads_trusted(params, xs, ys, spec, h0, wrt_h0)


def loss_and_grads_trusted(params: Params, xs, ys, spec, h0=None, wrt_h0: bool = False):
    """`loss_and_grads` without the argument checks, for callers that validated their arrays
    once (a training loop calls it thousands of times). Arrays must be float64 and of the
    contract's shapes; anything else gives wrong answers or numpy errors, not clear ones."""
    xs_tm, ys_tm = time_major(xs, ys, spec)
    B, _, _ = xs.shape
    fwd = forward_states(params, xs_tm, initial_state(h0, B, params.W.shape[0]), spec.activation)
    os = outputs(params, output_states(fwd.hs, spec.output))
    loss, dos = loss_and_output_grad(os, ys_tm, spec.loss, spec.reduction)
    grads, dh0 = backward(params, xs_tm, fwd, dos, spec)
    return (loss, grads, dh0) if wrt_h0 else (loss, grads)


def predict(params, xs, spec, h0=None):
    """Outputs o_t and hidden states, batch-major.

    Returns (os, hs): os (B, O) for `output="last"` or (B, T, O) for `"all"`; hs (B, T, H) = h_1..h_T.
    """
    spec = check_spec(spec)
    params = check_params(params, spec)
    xs = check_xs(xs, params.sizes[0])
    B = xs.shape[0]
    h0 = check_h0(h0, B, params.sizes[1])
    xs_tm = np.ascontiguousarray(np.swapaxes(xs, 0, 1))
    fwd = forward_states(params, xs_tm, initial_state(h0, B, params.W.shape[0]), spec.activation,
                         derivative=False)
    os = outputs(params, output_states(fwd.hs, spec.output))
    os = os[0] if spec.output == "last" else np.swapaxes(os, 0, 1)
    return os, np.swapaxes(fwd.hs[1:], 0, 1)
