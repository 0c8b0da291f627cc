"""Truncated gradients computed while the sequence streams through, in O(k) memory.

Size letters: B batch, T time steps (unknown until the stream ends), n steps in one block,
k the truncation length, D inputs, H hidden units, O outputs, W the state width (H; 2H for the
LSTM's [h, c]). Every cell, head or not, every loss and reduction: the backward steps are the
cell's own (`cell.back` through `bptt.window_sweeps` and `bptt.backward`), the weight gradients
`bptt.assemble_grads`'.

The sequence arrives as blocks (an iterable): for `output="all"` each block is a pair
(xs (B, n, D), ys (B, n, O) or (B, n) int); for `output="last"` each block is xs (B, n, D) and
the single target ys (B, O) or (B,) is passed separately. Only the last k (+1) steps of states are
kept between blocks (the states and the cell's cache of those steps), so memory is O((k + n) B H)
whatever T is, where the batch computation holds all T + 1 states.

Every (loss term t, step s) pair of the truncated gradient is added exactly once, in the block
where loss term t arrives, and the gradient is linear in those pairs; so the result equals
`loss_and_grads` with the same truncation, up to the round-off of summing in another order.

- `Window(k)`, many-to-many: the block's loss terms, with the kept k steps in front of them, go
  through the lag-vectorised sweeps of `bptt.window_sweeps` for lags 0..k.
- `Chunks(k)`, many-to-many: complete chunks (aligned at multiples of k) are backpropagated
  together, stacked along the batch; the last, partial chunk reaches back k steps from T
  (`TBPTT(k, k)`), so it waits for the end of the stream.
- many-to-one: the loss sits at the end; the kept steps are backpropagated when the stream ends.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np

from .._validate import check_h0, check_params, check_spec, check_xs, check_ys
from ..bptt import (Forward, assemble_grads, backward, forward_states, initial_state,
                    output_side, outputs, state_gradient, window_sweeps)
from ..cells import cell_for, weights_of
from ..losses import loss_and_output_grad, loss_count
from ..params import tree_map
from ..spec import Chunks, Spec, Window


class StreamResult(NamedTuple):
    loss: float
    grads: object            # Params | GatedParams, as the params given
    dh0: object              # (B, H); the LSTM: the pair (dh_0, dc_0)
    T: int                   # steps seen
    max_steps_held: int      # the most time steps of states held at once (tail + one block)


class _Tail(NamedTuple):
    """The last steps kept between blocks, time-major; `start` is the global step of xs[0]."""

    xs: np.ndarray           # (m, B, D)
    states: np.ndarray       # (m + 1, B, W) s_{start-1} .. s_{start+m-1}
    cache: object            # the cell's cache of those m steps (None before the first block)
    dos: np.ndarray          # (m, B, O) dL/do of loss terms not yet backpropagated (Chunks)
    start: int


def _cat(a, b):
    """Two caches (an array or a NamedTuple of arrays with a leading step axis) joined in time;
    None is empty."""
    if a is None:
        return b
    if isinstance(a, np.ndarray):
        return np.concatenate([a, b])
    return type(a)(*(np.concatenate([x, y]) for x, y in zip(a, b)))


def _window_grads(params, cell, xs, fwd: Forward, dos, k: int):
    """The Window(k) gradient of the loss terms `dos` (m, B, O) over the steps xs (m, B, D) (zero
    rows: kept steps whose loss terms were done in their own block), and dL/ds of the state
    before xs[0] (B, W)."""
    side = output_side(params, cell, fwd.states, dos, "all")
    m = xs.shape[0]
    dP, dR, ds_start = window_sweeps(cell, weights_of(params), fwd, side.ds_loss, min(k, m - 1))
    return assemble_grads(params, cell, xs, fwd, dP, dR, 0, m, side.dV, side.dc), ds_start


def _stack_chunks(a, n_chunks, k):
    """(n_chunks k, B, ...) -> (k, n_chunks B, ...): chunks side by side along the batch."""
    rest = a.shape[1:]
    return a.reshape((n_chunks, k) + rest).swapaxes(0, 1).reshape((k, n_chunks * rest[0]) + rest[1:])


def _add(acc: dict, grads):
    for name, g in grads.arrays().items():
        acc[name] = acc[name] + g


def streaming_loss_and_grads(params, blocks: Iterable, spec, ys=None, h0=None) -> StreamResult:
    """The `spec.truncation` (Window(k) or Chunks(k)) gradient of a sequence given in blocks.

    params: `Params` or `GatedParams` (any cell, head or not, any loss and reduction, as for
    `hg.loss_and_grads`); blocks: an iterable of (xs (B, n, D), ys (B, n, O) | (B, n)) pairs for
    `output="all"`, or of xs (B, n, D) for `output="last"` with the target `ys` (B, O) | (B,)
    given here; h0: (B, H), the LSTM's pair (h_0, c_0), or None. Block lengths n may vary.
    Returns a `StreamResult` (grads as `params`' type, dh0 in h0's shape).
    """
    spec = check_spec(spec)
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Iterable):
        raise ValueError(f"blocks must be an iterable of blocks (arrays, or (xs, ys) pairs), "
                         f"got {type(blocks).__name__}")
    trunc = spec.truncation
    if not isinstance(trunc, (Window, Chunks)):
        raise ValueError("streaming needs spec.truncation = Window(k) or Chunks(k) (full BPTT "
                         f"must hold every state), got {trunc!r}")
    params = check_params(params, spec)
    cell = cell_for(spec)
    D, H, O = params.sizes
    last = spec.output == "last"
    if last and ys is None:
        raise ValueError("output='last' needs the target ys (B, O) (or (B,) class ids) passed "
                         "to streaming_loss_and_grads")
    if not last and ys is not None:
        raise ValueError("output='all' takes its targets from the blocks; ys must be None")
    k = trunc.k
    keep = k + 1 if isinstance(trunc, Window) else k          # steps the last loss term reaches
    sum_spec = Spec(**{**spec.__dict__, "reduction": "sum"})   # scale by the count at the end
    full = Spec(**{**sum_spec.__dict__, "truncation": None})
    acc = {name: np.zeros_like(a) for name, a in params.arrays().items()}
    ds0 = None
    tail = None
    T, max_held, loss_total = 0, 0, 0.0
    for block in blocks:
        xs_b, ys_b = (block, None) if last else _pair(block)
        xs_b = check_xs(xs_b, D)
        B, n, _ = xs_b.shape
        if tail is None:
            s_start = initial_state(check_h0(h0, B, H, spec), B, H, spec)
            ds0 = np.zeros(s_start.shape)
            tail = _Tail(np.zeros((0, B, D)), s_start[None], None, np.zeros((0, B, O)), 1)
        elif B != tail.states.shape[1]:
            raise ValueError(f"every block must have the same batch size B = "
                             f"{tail.states.shape[1]}, got a block of shape {xs_b.shape}")
        xs_tm = np.ascontiguousarray(np.swapaxes(xs_b, 0, 1))            # (n, B, D)
        fwd = forward_states(params, xs_tm, tail.states[-1], spec)
        # the kept steps in front of the new block, as one short sequence
        xs_c = np.concatenate([tail.xs, xs_tm])
        states_c = np.concatenate([tail.states, fwd.states[1:]])
        cache_c = _cat(tail.cache, fwd.cache)
        m = tail.xs.shape[0]
        max_held = max(max_held, states_c.shape[0])
        if last:
            dos_c = np.zeros((m + n, B, O))
        else:
            ys_b = check_ys(ys_b, spec, B, n, O)
            os_ = outputs(params, cell.hidden(fwd.states[1:]))
            loss_b, dos_b = loss_and_output_grad(os_, np.swapaxes(ys_b, 0, 1), spec.loss, "sum")
            loss_total += loss_b
            if isinstance(trunc, Window):
                dos_c = np.concatenate([np.zeros((m, B, O)), dos_b])
                grads, ds_start = _window_grads(params, cell, xs_c, Forward(states_c, cache_c),
                                                dos_c, k)
                _add(acc, grads)                                         # includes V and c
                if tail.start == 1:
                    ds0 += ds_start                                      # the sweeps reach s_0
            else:
                p = tail.dos.shape[0]                                    # pending kept steps
                dos_c = np.concatenate([np.zeros((m - p, B, O)), tail.dos, dos_b])
                # complete chunks: the pending steps up to the last multiple of k
                lo = m - p                                               # first pending index
                first = tail.start + lo                                  # ... as a global step
                n_done = ((tail.start + m + n - 1) // k) * k - first + 1
                if n_done > 0:
                    nc = n_done // k                                     # whole chunks, side by side
                    sl = slice(lo, lo + n_done)
                    states_k = np.concatenate([
                        _stack_chunks(states_c[lo:lo + n_done], nc, k)[:1],
                        _stack_chunks(states_c[lo + 1:lo + n_done + 1], nc, k)])
                    fwd_k = Forward(states_k, tree_map(lambda a: _stack_chunks(a[sl], nc, k),
                                                       cache_c))
                    grads, dstart, _ = backward(params, _stack_chunks(xs_c[sl], nc, k), fwd_k,
                                                _stack_chunks(dos_c[sl], nc, k), full)
                    _add(acc, grads)                                     # includes V and c
                    if first == 1:
                        ds0 += dstart[:B]                                # chunk 1 starts at s_0
                    lo += n_done
                dos_c = dos_c[lo:]                                       # still pending
        T += n
        # keep the last `keep` steps (and, for Chunks, the loss terms still pending)
        r = min(keep, m + n)
        cut = m + n - r
        tail = _Tail(xs_c[cut:], states_c[cut:], tree_map(lambda a: a[cut:], cache_c),
                     dos_c if not last and isinstance(trunc, Chunks) else np.zeros((0, B, O)),
                     tail.start + cut)
    if tail is None:
        raise ValueError("blocks must hold at least one block of at least one step, got none")
    m = tail.xs.shape[0]
    B = tail.states.shape[1]
    r = 0
    if last:
        ys = check_ys(ys, spec, B, T, O)
        os_ = outputs(params, cell.hidden(tail.states[-1:]))
        loss_total, dos = loss_and_output_grad(os_, ys[None], spec.loss, "sum")
        # the loss at T reaches the last r steps: k + 1 for Window(k); for Chunks(k) the steps of
        # the last chunk, which ends at T or is a short one (the chunk end is not clamped at T)
        r = min(k + 1, T) if isinstance(trunc, Window) else T - k * ((T - 1) // k)
        end_spec = full
    elif isinstance(trunc, Chunks) and tail.dos.shape[0]:
        # the last, short chunk: its loss terms backpropagate within it (as after h.detach())
        r = tail.dos.shape[0]
        dos = tail.dos
        end_spec = Spec(**{**full.__dict__, "output": "all"})
    if r:
        fwd_r = Forward(tail.states[m - r:], tree_map(lambda a: a[m - r:], tail.cache))
        grads, dstart, _ = backward(params, tail.xs[m - r:], fwd_r, dos, end_spec)
        _add(acc, grads)
        if T == r:                                   # the sweep reaches s_0
            ds0 += dstart
    count = loss_count(spec.loss, spec.reduction, (1 if last else T, B, O))
    grads = type(params)(*(acc[n] / count if n in acc else None for n in type(params)._fields))
    return StreamResult(loss_total / count, grads, state_gradient(ds0 / count, spec), T, max_held)


def _pair(block):
    if not isinstance(block, (tuple, list)) or len(block) != 2:
        raise ValueError("for output='all' every block must be a pair (xs (B, n, D), "
                         f"ys (B, n, O) or (B, n)), got {type(block).__name__}")
    return block[0], block[1]


def array_blocks(xs, ys=None, block: int = 64):
    """Cut whole arrays into blocks for `streaming_loss_and_grads` (for tests and examples).

    xs: (B, T, D); ys: (B, T, O) | (B, T) for many-to-many, or None (many-to-one).
    """
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be an integer >= 1, got {block!r}")
    T = np.shape(xs)[1]
    for lo in range(0, T, block):
        if ys is None:
            yield xs[:, lo:lo + block]
        else:
            yield xs[:, lo:lo + block], ys[:, lo:lo + block]
