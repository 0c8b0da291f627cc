"""Truncated gradients computed while the sequence streams through, in O(k) memory.

Size letters: B batch, T time steps (unknown until the stream ends), n steps in one block,
k the truncation length, D inputs, H hidden units, O outputs.

The sequence arrives as blocks (an iterable): for `output="all"` each block is a pair
(xs (B, n, D), ys (B, n, O) or (B, n) int); for `output="last"` each block is xs (B, n, D) and
the single target ys (B, O) or (B,) is passed separately. Only the last k (+1) steps of states are
kept between blocks, so memory is O((k + n) B H) whatever T is, where the batch computation holds
all T + 1 states.

Every (loss term t, step s) pair of the truncated gradient is added exactly once, in the block
where loss term t arrives, and the gradient is linear in those pairs; so the result equals
`loss_and_grads` with the same truncation, up to the round-off of summing in another order.

- `Window(k)`, many-to-many: the block's loss terms, with the kept k steps in front of them, go
  through the lag-vectorised sweep of `truncation_sweep` for lags 0..k.
- `Chunks(k)`, many-to-many: complete chunks (aligned at multiples of k) are backpropagated
  together, stacked along the batch; the last, partial chunk reaches back k steps from T
  (`TBPTT(k, k)`), so it waits for the end of the stream.
- many-to-one: the loss sits at the end; the kept steps are backpropagated when the stream ends.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np

from .._validate import check_h0, check_params, check_spec, check_xs, check_ys
from ..bptt import Forward, backward, forward_states, outputs
from ..losses import loss_and_output_grad, loss_count
from ..params import Params
from ..spec import Chunks, Spec, Window
from .sweep import Prepared, lag_pieces_all, require_elman_with_head


class StreamResult(NamedTuple):
    loss: float
    grads: Params
    dh0: np.ndarray          # (B, H)
    T: int                   # steps seen
    max_steps_held: int      # the most time steps of states held at once (tail + one block)


class _Tail(NamedTuple):
    """The last steps kept between blocks, time-major; `start` is the global step of xs[0]."""

    xs: np.ndarray           # (m, B, D)
    hs: np.ndarray           # (m + 1, B, H) h_{start-1} .. h_{start+m-1}
    dact: np.ndarray         # (m, B, H)
    dos: np.ndarray          # (m, B, O) dL/do of loss terms not yet backpropagated (Chunks)
    start: int


def _window_pieces(params, spec, xs, hs, dact, dos, k, from_step_one):
    """Window(k) contributions of the loss terms in `dos` over the steps xs (m, B, D): grads of
    U, W, b, and of the state before xs[0] (counted only when that state is h_0)."""
    prep = Prepared(params, spec, xs, Forward(hs, dact), dos, dos @ params.V, 0.0)
    das = np.zeros(dact.shape)                 # dL/da_s summed over the lags 0..k
    dstart = np.zeros(hs.shape[1:])
    for step in lag_pieces_all(prep, k, pieces=False):
        das[:das.shape[0] - step.j] += step.da
        if from_step_one:
            dstart += step.h0                  # loss term j + 1 reaches h_0 at lag j <= k
    # a_s = U x_s + W h_{s-1} + b: the sums over s as single products
    flat = das.reshape(-1, das.shape[-1])
    dW = flat.T @ hs[:-1].reshape(flat.shape)
    dU = flat.T @ xs.reshape(flat.shape[0], -1)
    db = flat.sum(axis=0) if params.b is not None else None
    return dU, dW, db, dstart


def _stack_chunks(a, n_chunks, k):
    """(n_chunks k, B, ...) -> (k, n_chunks B, ...): chunks side by side along the batch."""
    rest = a.shape[1:]
    return a.reshape((n_chunks, k) + rest).swapaxes(0, 1).reshape((k, n_chunks * rest[0]) + rest[1:])


def _add(acc: dict, grads: Params):
    for name, g in grads.arrays().items():
        acc[name] = acc[name] + g


def streaming_loss_and_grads(params, blocks: Iterable, spec, ys=None, h0=None) -> StreamResult:
    """The `spec.truncation` (Window(k) or Chunks(k)) gradient of a sequence given in blocks.

    params: `Params`; blocks: an iterable of (xs (B, n, D), ys (B, n, O) | (B, n)) pairs for
    `output="all"`, or of xs (B, n, D) for `output="last"` with the target `ys` (B, O) | (B,)
    given here; h0: (B, H) or None. Block lengths n may vary. Returns a `StreamResult`.
    """
    spec = check_spec(spec)
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Iterable):
        raise ValueError(f"blocks must be an iterable of blocks (arrays, or (xs, ys) pairs), "
                         f"got {type(blocks).__name__}")
    trunc = spec.truncation
    if not isinstance(trunc, (Window, Chunks)):
        raise ValueError("streaming needs spec.truncation = Window(k) or Chunks(k) (full BPTT "
                         f"must hold every state), got {trunc!r}")
    require_elman_with_head(spec)
    params = check_params(params, spec)
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
    acc = {name: np.zeros_like(a) for name, a in params.arrays().items()}
    dh0 = None
    tail = None
    T, max_held, loss_total = 0, 0, 0.0
    for block in blocks:
        xs_b, ys_b = (block, None) if last else _pair(block)
        xs_b = check_xs(xs_b, D)
        B, n, _ = xs_b.shape
        if tail is None:
            h_start = np.zeros((B, H)) if h0 is None else check_h0(h0, B, H)
            dh0 = np.zeros((B, H))
            tail = _Tail(np.zeros((0, B, D)), h_start[None], np.zeros((0, B, H)),
                         np.zeros((0, B, O)), 1)
        elif B != tail.hs.shape[1]:
            raise ValueError(f"every block must have the same batch size B = {tail.hs.shape[1]}, "
                             f"got a block of shape {xs_b.shape}")
        xs_tm = np.ascontiguousarray(np.swapaxes(xs_b, 0, 1))            # (n, B, D)
        fwd = forward_states(params, xs_tm, tail.hs[-1], spec)
        # the kept steps in front of the new block, as one short sequence
        xs_c = np.concatenate([tail.xs, xs_tm])
        hs_c = np.concatenate([tail.hs, fwd.states[1:]])
        dact_c = np.concatenate([tail.dact, fwd.cache])
        m = tail.xs.shape[0]
        max_held = max(max_held, hs_c.shape[0])
        if last:
            dos_c = np.zeros((m + n, B, O))
        else:
            ys_b = check_ys(ys_b, spec, B, n, O)
            os_ = outputs(params, fwd.states[1:])
            loss_b, dos_b = loss_and_output_grad(os_, np.swapaxes(ys_b, 0, 1), spec.loss, "sum")
            loss_total += loss_b
            if isinstance(trunc, Window):
                # o_t = V h_t + c: every loss term once
                acc["V"] += np.einsum("nbo,nbh->oh", dos_b, fwd.states[1:])
                if "c" in acc:
                    acc["c"] += dos_b.sum(axis=(0, 1))
                dos_c = np.concatenate([np.zeros((m, B, O)), dos_b])
                dU, dW, db, dstart = _window_pieces(params, sum_spec, xs_c, hs_c, dact_c, dos_c,
                                                    k, tail.start == 1)
                acc["U"] += dU
                acc["W"] += dW
                if db is not None:
                    acc["b"] += db
                dh0 += dstart
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
                    hs_k = np.concatenate([_stack_chunks(hs_c[lo:lo + n_done], nc, k)[:1],
                                           _stack_chunks(hs_c[lo + 1:lo + n_done + 1], nc, k)])
                    fwd_k = Forward(hs_k, _stack_chunks(dact_c[sl], nc, k))
                    full = Spec(**{**sum_spec.__dict__, "truncation": None})
                    grads, dstart, _ = backward(params, _stack_chunks(xs_c[sl], nc, k), fwd_k,
                                             _stack_chunks(dos_c[sl], nc, k), full)
                    _add(acc, grads)                                     # includes V and c
                    if first == 1:
                        dh0 += dstart[:B]                                # chunk 1 starts at h_0
                    lo += n_done
                dos_c = dos_c[lo:]                                       # still pending
        T += n
        # keep the last `keep` steps (and, for Chunks, the loss terms still pending)
        r = min(keep, m + n)
        tail = _Tail(xs_c[m + n - r:], hs_c[m + n - r:], dact_c[m + n - r:],
                     dos_c if not last and isinstance(trunc, Chunks) else np.zeros((0, B, O)),
                     tail.start + m + n - r)
    if tail is None:
        raise ValueError("blocks must hold at least one block of at least one step, got none")
    m = tail.xs.shape[0]
    B = tail.hs.shape[1]
    if last:
        ys = check_ys(ys, spec, B, T, O)
        os_ = outputs(params, tail.hs[-1:])
        loss_total, dos = loss_and_output_grad(os_, ys[None], spec.loss, "sum")
        # the loss at T reaches the last r steps: k + 1 for Window(k); for Chunks(k) the steps of
        # the last chunk, which ends at T or is a short one (the chunk end is not clamped at T)
        r = min(k + 1, T) if isinstance(trunc, Window) else T - k * ((T - 1) // k)
        full = Spec(**{**sum_spec.__dict__, "truncation": None})
        grads, dstart, _ = backward(params, tail.xs[m - r:],
                                 Forward(tail.hs[m - r:], tail.dact[m - r:]), dos, full)
        _add(acc, grads)
        if T == r:                                   # the sweep reaches h_0
            dh0 += dstart
    elif isinstance(trunc, Chunks) and tail.dos.shape[0]:
        # the last, short chunk: its loss terms backpropagate within it (as after h.detach())
        r = tail.dos.shape[0]
        full = Spec(**{**sum_spec.__dict__, "truncation": None, "output": "all"})
        grads, dstart, _ = backward(params, tail.xs[m - r:],
                                 Forward(tail.hs[m - r:], tail.dact[m - r:]), tail.dos, full)
        _add(acc, grads)
        if T == r:
            dh0 += dstart
    count = loss_count(spec.loss, spec.reduction, (1 if last else T, B, O))
    grads = Params(*(acc[n] / count if n in acc else None for n in Params._fields))
    return StreamResult(loss_total / count, grads, dh0 / count, T, max_held)


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
