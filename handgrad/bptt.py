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

import math
from typing import NamedTuple

import numpy as np

from ._validate import check_h0, check_inputs, check_params, check_spec, check_xs
from .cells import cell_for, cell_grads, matmul_into, outer_sum, weights_of
from .params import tree_map
from .losses import loss_and_output_grad
from .spec import Segment, Window, segments


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
    if params.c is not None:
        os += params.c
    return os


def output_states(hs, output: str):
    """The hidden states that feed a loss term: h_1..h_T (`"all"`) or h_T alone (`"last"`),
    (S, B, H), from h_0..h_T (T + 1, B, H)."""
    return hs[1:] if output == "all" else hs[-1:]


class Backward(NamedTuple):
    grads: object        # Params or GatedParams
    dstate0: np.ndarray  # (B, W) dL/ds_0 (zeros when not asked for)
    dxs_tm: object       # (T, B, D) dL/dx_t, or None when not asked for


class LossTerms(NamedTuple):
    """dL/dh_t of the loss terms, taken a step (or a block of steps) at a time, so that no
    (S, B, H) array is needed: dL/dh_t = V^T dL/do_t (dL/do_t itself without a head)."""

    dos: np.ndarray      # (S, B, O) dL/do_t; dos[0] belongs to step `first`
    V: object            # (O, H) or None (no head: o_t = h_t)
    first: int           # the step of dos[0]: 1 (output="all") or T ("last")

    def add_into(self, ds, t: int):
        """ds[..., :H] += dL/dh_t at step t (ds (B, S); the LSTM's c part gets nothing)."""
        H = self.V.shape[1] if self.V is not None else self.dos.shape[-1]
        do = self.dos[t - self.first]
        ds[..., :H] += do if self.V is None else do @ self.V

    def block(self, out):
        """out[..., :H] = dL/dh_t for every loss step (out (S, B, S_w)), one product."""
        H = self.V.shape[1] if self.V is not None else self.dos.shape[-1]
        if out.shape[-1] != H:
            out[..., H:] = 0.0
        if self.V is None:
            out[..., :H] = self.dos
        else:
            matmul_into(self.dos, self.V, out[..., :H])
        return out


def backward(params, xs_tm, fwd: Forward, dos, spec, wrt_xs: bool = False,
             wrt_h0: bool = True, consume: bool = False, cell=None) -> Backward:
    """Hand-derived BPTT under `spec.truncation`.

    xs_tm: (T, B, D); fwd: the forward pass; dos: dL/do_t of shape (S, B, O).
    wrt_h0=False skips the products that only dL/ds_0 needs (dstate0 is then zeros).
    consume=True lets the backward write dL/dP_t over `fwd.cache` where each step is visited
    once (full BPTT, Chunks): one (T, B, G H) array less; the cache is garbage afterwards.
    `cell`: the cell object (default `cell_for(spec)`); the oracle's round-off model passes one
    that wraps it (`oracle.conditioning`).
    """
    cell = cell_for(spec) if cell is None else cell
    w = weights_of(params)
    T, B, D = xs_tm.shape
    hs_out = output_states(cell.hidden(fwd.states), spec.output)   # (S, B, H)

    # o_t = V h_t + c: the output layer sees every loss term directly (never truncated)
    if params.V is not None:
        dV = outer_sum(dos, hs_out)                                # sum_t do_t h_t^T
        dc = dos.sum(axis=(0, 1)) if params.c is not None else None  # sum_t do_t
    else:
        dV = dc = None
    # the loss enters the state through its hidden part h_t: dL/dh_t = V^T do_t (o_t = h_t
    # without a head), taken per step by the sweeps
    loss = LossTerms(dos, params.V, 1 if spec.output == "all" else T)

    # the recurrence: dL/dP_t (and dL/dR_t) for every t, summed over the sweeps of the truncation
    window = spec.truncation.k if isinstance(spec.truncation, Window) else None
    if spec.output == "all" and window is not None and window < T - 1:
        dP, dR, ds0 = window_sweeps(cell, w, fwd, loss, window, wrt_h0)
        lo = 0
    else:
        sweeps = segments(spec.truncation, T, spec.output)
        dP, dR, ds0 = segment_sweeps(cell, w, fwd, loss, sweeps, wrt_h0, consume)
        lo = min(seg.cut for seg in sweeps)                        # no sweep reaches steps 1..lo

    grads = assemble_grads(params, cell, xs_tm, fwd, dP[lo:], None if dR is None else dR[lo:],
                           lo, T, dV, dc)
    dxs_tm = None
    if wrt_xs:                                                     # x_t enters through P_t only
        dxs_tm = np.zeros((T, B, D))
        dxs_tm[lo:] = dP[lo:] @ w.W_in
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


def visited_once(sweeps, T: int) -> bool:
    """Whether the sweeps visit every step from the earliest cut + 1 to T exactly once."""
    count = np.zeros(T + 1, dtype=np.int64)
    for seg in sweeps:
        count[seg.cut + 1:seg.last + 1] += 1
    lo = min(seg.cut for seg in sweeps)
    return bool(np.all(count[lo + 1:] == 1))


def segment_sweeps(cell, w, fwd: Forward, loss: LossTerms, sweeps, wrt_h0: bool = True,
                   consume: bool = False, ds_in=None):
    """dL/dP_t (T, B, G H), dL/dR_t (or None when it is dL/dP_t) and dL/ds_0 (B, W), one
    backward sweep (spec.Segment) at a time, one step at a time.

    With `consume` and every step visited once, dL/dP_t is written over the cache; otherwise
    it is summed over the sweeps in an array of its own. ds_in (B, W): a gradient of s_T
    arriving from beyond the last step (checkpointing: the stretches after), for one sweep.
    """
    states, cache = fwd
    T, B, Wd = states.shape[0] - 1, states.shape[1], states.shape[2]
    GH = w.W_in.shape[0]
    in_place = consume and visited_once(sweeps, T)
    dP = cell.dP_slot(cache, 0, T) if in_place else np.zeros((T, B, GH))
    dR = np.zeros((T, B, GH)) if cell.own_dR else None
    dp = np.empty((B, GH))                                 # one step's dL/dP_t (and dL/dR_t)
    dr = np.empty((B, GH)) if cell.own_dR else None
    ds0 = np.zeros((B, Wd))
    ds = np.empty((B, Wd))                                 # dL/ds_t carried from step t + 1
    back = cell.step_back
    for seg in sweeps:
        if ds_in is None:
            ds.fill(0.0)
        else:
            ds[...] = ds_in
        for t in range(seg.last, seg.cut, -1):
            if t >= seg.first:
                loss.add_into(ds, t)                       # the loss term at step t
            # s_{t-1} = s_cut is a constant of the surrogate: nothing to carry past a cut
            carry = ds if t - 1 > seg.cut or (seg.cut == 0 and wrt_h0) else None
            if in_place:                                   # back through step t
                back(w, cache, states, t, ds, dP[t - 1], carry, None if dR is None else dR[t - 1])
            else:
                back(w, cache, states, t, ds, dp, carry, dr)
                dP[t - 1] += dp
                if dR is not None:
                    dR[t - 1] += dr
        if seg.cut == 0 and wrt_h0:
            ds0 += ds                                      # s_0 is an input, never cut
    return dP, dR, ds0


BLOCK_ELEMENTS = 1 << 16   # the Window(k) lags run in blocks of steps of about this many numbers


def window_sweeps(cell, w, fwd: Forward, loss, k: int, wrt_h0: bool = True):
    """`Window(k)` with a loss at every step, all T sweeps at once, one lag at a time.

    The sweep of loss step t covers steps t, t-1, ..., max(1, t-k). At lag i it is at step
    s = t - i, so the sweeps of t = i+1..T sit on the steps s = 1..T-i: one backward step of
    T - i steps side by side per lag, instead of T sweeps of k + 1 small steps each. The lag
    runs in blocks of steps (its carry updated in place, a block at a time, in cache); at the
    last lag only the sweep that reaches s_0 needs its carry.
    loss: `LossTerms`, or ds_loss (T, B, W) the loss's gradient of every state (not changed);
    0 <= k <= T - 1 (k = T - 1 is full BPTT; `backward` takes this path for k < T - 1 only).
    """
    states, cache = fwd
    T, B, Wd = states.shape[0] - 1, states.shape[1], states.shape[2]
    GH = w.W_in.shape[0]
    carry = loss.block(np.empty((T, B, Wd))) if isinstance(loss, LossTerms) else loss.copy()
    # carry[t-1]: sweep t's dL_t/ds_s
    dP = np.zeros((T, B, GH))
    dR = np.zeros((T, B, GH)) if cell.own_dR else None
    rows = max(1, BLOCK_ELEMENTS // (B * max(GH, Wd)))
    dp = np.empty((rows, B, GH))
    dr = np.empty((rows, B, GH)) if cell.own_dR else None
    ds0 = np.zeros((B, Wd))
    for i in range(0, k + 1):
        n = T - i                                          # sweeps t = i+1..T, at steps s = 1..n
        for s0 in range(0, n, rows):
            s1 = min(n, s0 + rows)
            m = s1 - s0
            ds = carry[i + s0:i + s1]
            # after this lag each sweep but t = i+1 (at s = 1) stops at its cut s_{t-k-1}
            if i < k:
                cell.back_into(w, cache, states, s0, s1, ds, dp[:m], ds, None if dr is None else dr[:m])
            else:
                if s0 == 0 and wrt_h0:
                    cell.back_into(w, cache, states, 0, 1, ds[:1], dp[:1], ds[:1],
                              None if dr is None else dr[:1])
                    first = 1
                else:
                    first = 0
                if first < m:
                    cell.back_into(w, cache, states, s0 + first, s1, ds[first:], dp[first:m], None,
                              None if dr is None else dr[first:m])
            dP[s0:s1] += dp[:m]
            if dR is not None:
                dR[s0:s1] += dr[:m]
        if wrt_h0:
            ds0 += carry[i]                                # sweep t = i+1 has reached s_0
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


def loss_and_grads(params, xs, ys, spec, h0=None, wrt_h0: bool = False, wrt_xs: bool = False,
                   memory=None):
    """Loss and its hand-derived gradient (BPTT under `spec.truncation`).

    params: `Params` (U (H, D), W (H, H), V (O, H), b (H,), c (O,)) or, for `spec.cell` "gru" /
    "lstm", `GatedParams`; xs: (B, T, D); ys: (B, O) | (B, T, O) floats, or (B,) | (B, T) int
    class ids for cross-entropy; h0: (B, H) or None (zeros); for the LSTM the pair (h_0, c_0).
    Returns (loss, grads[, dh0][, dxs]): dh0 of h0's shape (a pair for the LSTM) with
    `wrt_h0=True`, dxs (B, T, D) with `wrt_xs=True`. Truncation changes the gradient, never the
    loss; under truncation dxs is the gradient of the same surrogate.
    memory: None (keep every state and the cell's cache for the backward pass: fastest), or a
    budget in bytes for what the backward keeps (states and caches, `memory_needed`): full
    BPTT then stores every L-th state only and recomputes each stretch of L steps from it
    during the backward pass (checkpointing, Gruslys et al. 2016 section 3), with L the largest
    stretch that fits; it costs one more forward pass and gives the same numbers to round-off.
    The outputs and their gradients (S, B, O) and dxs are kept whole either way.
    """
    for name, value in (("wrt_h0", wrt_h0), ("wrt_xs", wrt_xs)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
    if memory is not None:
        stretch = checkpoint_stretch(memory, spec, xs.shape[0], xs.shape[1], params.sizes[1])
        if stretch is not None:
            return checkpointed_loss_and_grads(params, xs, ys, spec, h0, wrt_h0, wrt_xs, stretch)
    return loss_and_grads_trusted(params, xs, ys, spec, h0, wrt_h0, wrt_xs)


CACHE_WIDTH = {"elman": 1, "gru": 8, "lstm": 10}   # cache floats per step, in units of B H


def memory_needed(spec, B: int, T: int, H: int, stretch=None) -> int:
    """Bytes of states and cache the backward pass keeps: all T steps (stretch None), or with
    checkpoints every `stretch` steps (ceil(T / stretch) + 1 states, and one stretch whole)."""
    state = B * (2 * H if spec.cell == "lstm" else H) * 8
    step = state + B * H * CACHE_WIDTH[spec.cell] * 8
    if stretch is None or stretch >= T:
        return state + T * step
    return (math.ceil(T / stretch) + 1) * state + state + stretch * step


def checkpoint_stretch(memory, spec, B: int, T: int, H: int):
    """The stretch L (steps recomputed from one stored state) for a budget of `memory` bytes:
    None when everything fits; ValueError when even the best L (about sqrt(T state / step))
    does not fit, or when the truncation is not full BPTT."""
    if isinstance(memory, bool) or not isinstance(memory, (int, float, np.integer, np.floating)) \
            or not memory > 0:
        raise ValueError(f"memory must be None or a positive number of bytes, got {memory!r}")
    if memory >= memory_needed(spec, B, T, H):
        return None
    if spec.truncation is not None:
        raise ValueError(f"memory (checkpointing) needs full BPTT (truncation=None), got "
                         f"truncation={spec.truncation!r}; a truncated gradient keeps all T "
                         f"steps ({memory_needed(spec, B, T, H)} bytes here)")
    best = min(range(1, T + 1), key=lambda L: memory_needed(spec, B, T, H, L))
    fits = [L for L in range(1, T + 1) if memory_needed(spec, B, T, H, L) <= memory]
    if not fits:
        raise ValueError(f"memory must be at least {memory_needed(spec, B, T, H, best)} bytes "
                         f"for B={B}, T={T}, H={H} ({spec.cell}; checkpoints every {best} "
                         f"steps), got {memory!r}")
    return max(fits)


def checkpointed_loss_and_grads(params, xs, ys, spec, h0, wrt_h0: bool, wrt_xs: bool,
                                stretch: int):
    """`loss_and_grads_trusted` for full BPTT keeping only every `stretch`-th state.

    Pass 1 runs forward stretch by stretch without the cache, storing s_0, s_L, s_2L, ... and
    the outputs; pass 2 walks the stretches from the last, recomputes each one's states and
    cache from its stored state, and carries dL/ds back through it (`segment_sweeps` with the
    gradient arriving from the stretch after), adding its share of every gradient.
    xs (B, T, D); ys as for `loss_and_grads`.
    """
    cell = cell_for(spec)
    w = weights_of(params)
    B, T, D = xs.shape
    H = params.sizes[1]
    bounds = [(lo, min(T, lo + stretch)) for lo in range(0, T, stretch)]

    def xs_of(lo, hi):                                     # (n, B, D), time-major
        return np.ascontiguousarray(np.swapaxes(xs[:, lo:hi], 0, 1))

    starts = [initial_state(h0, B, H, spec)]               # s_lo of every stretch
    hs_parts = []
    for lo, hi in bounds:
        states = forward_states(params, xs_of(lo, hi), starts[-1], spec, derivative=False).states
        if spec.output == "all":
            hs_parts.append(outputs(params, cell.hidden(states[1:])))
        starts.append(states[-1].copy())
    os = np.concatenate(hs_parts) if spec.output == "all" else \
        outputs(params, cell.hidden(starts[-1])[None])
    _, ys_tm = time_major(xs[:, :0], ys, spec)
    loss, dos = loss_and_output_grad(os, ys_tm, spec.loss, spec.reduction)
    del os, hs_parts

    GH = w.W_in.shape[0]
    dW_in, dW_rec = np.zeros((GH, D)), np.zeros(w.W_rec.shape)
    db_in = np.zeros(GH) if w.b_in is not None else None
    db_rec = np.zeros(GH) if w.b_rec is not None else None
    dV = np.zeros(params.V.shape) if params.V is not None else None
    dc = np.zeros(params.c.shape) if params.c is not None else None
    dxs = np.zeros((B, T, D)) if wrt_xs else None
    ds = np.zeros((B, cell.width(H)))                      # dL/ds_hi from the stretches after
    for k in range(len(bounds) - 1, -1, -1):
        lo, hi = bounds[k]
        n = hi - lo
        xs_tm = xs_of(lo, hi)
        fwd = forward_states(params, xs_tm, starts[k], spec)
        hs_seg = cell.hidden(fwd.states[1:])               # h_lo+1 .. h_hi, (n, B, H)
        if spec.output == "all":
            seg_dos, first, hs_out = dos[lo:hi], 1, hs_seg
        elif hi == T:
            seg_dos, first, hs_out = dos, n, hs_seg[-1:]
        else:                                              # no loss term in this stretch
            seg_dos, first, hs_out = dos[:0], n + 1, hs_seg[:0]
        if dV is not None:                                 # o_t = V h_t + c
            dV += outer_sum(seg_dos, hs_out)
            if dc is not None:
                dc += seg_dos.sum(axis=(0, 1))
        loss_terms = LossTerms(seg_dos, params.V, first)
        dP, dR, ds = segment_sweeps(cell, w, fwd, loss_terms, [Segment(first, n, 0)],
                                    wrt_h0=True, consume=True, ds_in=ds)
        dW_in += outer_sum(dP, xs_tm)                      # sum_t dP_t x_t^T
        if db_in is not None:
            db_in += dP.sum(axis=(0, 1))
        dW, db = cell.recurrent_grads(w, fwd.cache, fwd.states, dP if dR is None else dR, 0)
        dW_rec += dW
        if db_rec is not None:
            db_rec += db
        if wrt_xs:
            dxs[:, lo:hi] = np.swapaxes(dP @ w.W_in, 0, 1)  # x_t enters through P_t only
    out = (loss, cell_grads(params, dW_in, dW_rec, db_in, db_rec, dV, dc))
    if wrt_h0:
        out += (state_gradient(ds, spec),)
    if wrt_xs:
        out += (dxs,)
    return out


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
    back = backward(params, xs_tm, fwd, dos, spec, wrt_xs, wrt_h0, consume=True)
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
