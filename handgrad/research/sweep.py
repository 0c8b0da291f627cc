"""The Window(k) gradient for every k at once: `truncation_sweep`, for every cell of the family.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, G gate blocks, W the
state width (H; 2H for the LSTM's [h, c]), K truncations swept, L lags measured.

Under `Window(k)` the loss at step t reaches step s only for lags j = t - s <= k, so every
truncated gradient is a partial sum over lags of one set of per-lag pieces:

    g_k = sum_{j<=k} g^(j),   g^(j) = the weight gradient of the terms dL_t/dP_{t-j}
                                      (and dL_t/dR_{t-j}) of every loss term t    (s_0 alike)

for the cell's weights (U, W, b for the Elman cell; W_ih, W_hh, b_ih, b_hh for the GRU and the
LSTM). The pieces come through the cell seam (`handgrad.cells`: `back`, `recurrent_grads`) and
`bptt.assemble_grads`; no cell's equations are written here.

- many-to-one (`output="last"`): one loss term, so the lag-j piece is step T - j of one full
  backward pass: `cell.back` one step at a time, each step's gradient kept and added to the
  Window(k) stack as the pass goes: every k for about the price of one full gradient.
- many-to-many (`output="all"`): the lag-j pieces of all loss terms together, vectorised over t
  (`bptt.window_lags`): one backward step of T - j steps side by side per lag, up to the
  largest k asked for.

V and c are never truncated; their curves are zero error and cosine one, listed for completeness.
The initial state's gradient is dL/ds_0: (B, H), and for the LSTM the pair (dh_0, dc_0) as
`hg.loss_and_grads` gives it; its curve ("h0") is over the whole state (h_0 and c_0 together).
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import numpy as np

from .._validate import check_inputs
from ..bptt import (Forward, OutputSide, assemble_grads, backward, forward_states, initial_state,
                    output_side, output_states, outputs, state_gradient, time_major, window_lags)
from ..cells import cell_for, weights_of
from ..losses import loss_and_output_grad
from ..spec import Spec


class Curve(NamedTuple):
    """How far the Window(k) gradient of one array is from full BPTT, for every k swept."""

    rel_error: np.ndarray   # (K,) max|g_k - g| / max|g|   (the project's normwise metric)
    cosine: np.ndarray      # (K,) cos angle(g_k, g)
    l2_error: np.ndarray    # (K,) ||g_k - g||_2 / ||g||_2 (the relative bias of Aicher et al.)


class TruncationSweep(NamedTuple):
    """`truncation_sweep`'s answer. Overall = all parameters (the cell's and V, c) as one
    vector; the initial state is not part of it."""

    ks: np.ndarray                   # (K,) the window lengths k
    rel_error: np.ndarray            # (K,) overall normwise relative error against full BPTT
    cosine: np.ndarray               # (K,) overall cosine against full BPTT
    l2_error: np.ndarray             # (K,) overall ||g_k - g|| / ||g||
    per_param: dict                  # name -> Curve, for every array of params and "h0"
    grads: object                    # Params | GatedParams of the Window(k) gradients, each
                                     # array with a leading K axis (None with keep_grads=False)
    dh0: object                      # (K, B, H) Window(k) gradients of h_0; the LSTM: the pair
                                     # ((K, B, H), (K, B, H)) of h_0 and c_0
    full: object                     # the full BPTT gradient, Params | GatedParams
    full_dh0: object                 # (B, H); the LSTM: the pair (dh_0, dc_0)
    loss: float                      # the loss (truncation never changes it)


def check_ks(ks, T: int) -> np.ndarray:
    """`ks` as a 1-D int array of window lengths k >= 0 (default 0..T-1)."""
    if ks is None:
        return np.arange(T)
    arr = np.asarray(ks)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        raise ValueError(f"ks must be a non-empty 1-D sequence of integers k >= 0, got {ks!r}")
    if arr.min() < 0:
        raise ValueError(f"ks must be integers k >= 0, got a minimum of {arr.min()}")
    return arr.astype(np.int64)


class Prepared(NamedTuple):
    """A validated problem with its forward pass and output gradients, time-major."""

    params: object                   # Params | GatedParams
    spec: Spec
    cell: object                     # the cell (handgrad.cells.cell_for(spec))
    xs_tm: np.ndarray                # (T, B, D)
    fwd: Forward                     # states (T + 1, B, W) and the cell's cache
    dos: np.ndarray                  # (S, B, O) dL/do_t
    side: OutputSide                 # dV, dc and ds_loss (S, B, W): dL/ds_t through o_t alone
    loss: float

    @property
    def T(self) -> int:
        return self.xs_tm.shape[0]


def prepare(params, xs, ys, spec, h0=None) -> Prepared:
    """Validate, run the forward pass and the loss: what every research tool starts from.
    Any cell, head or not, any loss and reduction (the arguments of `hg.loss_and_grads`)."""
    params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
    cell = cell_for(spec)
    xs_tm, ys_tm = time_major(xs, ys, spec)
    fwd = forward_states(params, xs_tm, initial_state(h0, xs.shape[0], params.sizes[1], spec),
                         spec)
    os = outputs(params, output_states(cell.hidden(fwd.states), spec.output))
    loss, dos = loss_and_output_grad(os, ys_tm, spec.loss, spec.reduction)
    side = output_side(params, cell, fwd.states, dos, spec.output)
    return Prepared(params, spec, cell, xs_tm, fwd, dos, side, loss)


class LagPiece(NamedTuple):
    """The lag-j part of the gradient (every loss term's step t - j), from `lag_pieces`."""

    j: int
    grads: dict              # name -> array: the lag-j piece of each cell weight's gradient
    h0: Optional[np.ndarray]  # (B, W) the lag-j piece of dL/ds_0, None when none reaches s_0
    ds_prev: np.ndarray      # (n, B, W) the gradients carried past lag j: dL_t/ds_{t-j-1} for
                             # the n loss terms t still going (a view, valid until the next lag)


def lag_pieces(prep: Prepared, max_lag: int) -> Iterator[LagPiece]:
    """Yield the `LagPiece`s j = 0..min(max_lag, T - 1), through the cell seam.

    Many-to-one: step T - j of one full backward pass (`cell.back` one step at a time; n = 1).
    Many-to-many: lag j of every loss term at once (`bptt.window_lags`; n = T - j).
    """
    cell, params, fwd = prep.cell, prep.params, prep.fwd
    w = weights_of(params)
    T = prep.T
    L = min(int(max_lag), T - 1) + 1
    if prep.spec.output == "all":
        for j, (dp, dr, ds_prev) in enumerate(window_lags(cell, w, fwd, prep.side.ds_loss, L - 1)):
            piece = assemble_grads(params, cell, prep.xs_tm, fwd, dp, dr, 0, T - j)
            yield LagPiece(j, piece.arrays(), ds_prev[0], ds_prev)   # term j + 1 reaches s_0
        return
    ds = prep.side.ds_loss                        # (1, B, W) dL/ds_T through o_T
    for j in range(L):
        t = T - j
        dp, dr, ds = cell.back(w, fwd.cache, fwd.states, t - 1, t, ds)   # back through step t
        piece = assemble_grads(params, cell, prep.xs_tm, fwd, dp, dr, t - 1, t)
        yield LagPiece(j, piece.arrays(), ds[0] if t == 1 else None, ds)


class _Stats(NamedTuple):
    """Vectorised comparison pieces of a stack (K, P) against the full gradient (P,)."""

    maxdiff: np.ndarray   # (K,)
    sqdiff: np.ndarray    # (K,) ||g_k - g||^2
    dot: np.ndarray       # (K,) <g_k, g>
    sqnorm: np.ndarray    # (K,) ||g_k||^2
    fullmax: float
    fullsq: float


def _stats(stack, full, rows: int = 64) -> _Stats:
    """Compare every row of `stack` with `full`, a few rows at a time (a small buffer that stays
    in cache instead of a (K, P) temporary)."""
    K = stack.shape[0]
    s = stack.reshape(K, -1)
    f = np.ravel(full)
    rows = max(1, min(K, (1 << 15) // max(f.size, 1)))
    maxdiff, sqdiff = np.empty(K), np.empty(K)
    for i in range(0, K, rows):
        diff = s[i:i + rows] - f
        maxdiff[i:i + rows] = np.maximum(diff.max(axis=1, initial=0.0), -diff.min(axis=1, initial=0.0))
        sqdiff[i:i + rows] = np.einsum("kp,kp->k", diff, diff)
    return _Stats(maxdiff, sqdiff, s @ f, np.einsum("kp,kp->k", s, s),
                  float(np.abs(f).max(initial=0.0)), float(f @ f))


def _curve(st: _Stats) -> Curve:
    """rel_error and cosine with the conventions of `tolerances.rel_error` / `cosine`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(st.maxdiff == 0, 0.0,
                       st.maxdiff / st.fullmax if st.fullmax > 0 else np.inf)
        l2 = np.where(st.sqdiff == 0, 0.0,
                      np.sqrt(st.sqdiff / st.fullsq) if st.fullsq > 0 else np.inf)
        denom = np.sqrt(st.sqnorm * st.fullsq)
        cos = np.where(denom > 0, st.dot / np.where(denom > 0, denom, 1.0), 0.0)
    cos = np.where((st.sqnorm == 0) & (st.fullsq == 0), 1.0, cos)
    return Curve(rel, cos, l2)


def _all_or_nothing(exact: np.ndarray, nonzero: bool) -> Curve:
    """The curve of a stack that is either zero or exactly the reference, row by row."""
    miss = (~exact).astype(float) if nonzero else np.zeros(exact.shape)
    return Curve(miss, 1.0 - miss, miss.copy())


def _overall(stats: list) -> Curve:
    """The curve of all arrays concatenated, from their per-array pieces."""
    total = _Stats(np.max([s.maxdiff for s in stats], axis=0), sum(s.sqdiff for s in stats),
                   sum(s.dot for s in stats), sum(s.sqnorm for s in stats),
                   max(s.fullmax for s in stats), sum(s.fullsq for s in stats))
    return _curve(total)


def window_stacks(prep: Prepared, ks: np.ndarray):
    """The Window(k) gradients of the cell's weights and of s_0 ("h0", (K, B, W)) for every k in
    ks, each (K, ...).

    Returns (stacks, totals): many-to-one also gives the full gradients (the sum over every
    lag); many-to-many gives None (the lag loop stops at max(ks)).
    """
    T = prep.T
    kk = np.minimum(ks, T - 1)                    # Window(k >= T - 1) is full BPTT
    if prep.spec.output == "last":
        cum, ds0 = None, None
        for piece in lag_pieces(prep, T - 1):
            if cum is None:
                cum = {n: np.empty((T,) + a.shape) for n, a in piece.grads.items()}
            for n, a in piece.grads.items():      # Window(j) = Window(j - 1) + the lag-j piece
                if piece.j == 0:
                    cum[n][0] = a
                else:
                    np.add(cum[n][piece.j - 1], a, out=cum[n][piece.j])
            if piece.h0 is not None:
                ds0 = piece.h0
        every = len(kk) == T and np.array_equal(kk, np.arange(T))      # no copy for the default
        stacks = {n: c if every else c[kk] for n, c in cum.items()}
        totals = {n: c[T - 1] for n, c in cum.items()}
        # s_0: zero below the full window, the whole dL/ds_0 from k = T - 1 on
        stacks["h0"] = np.zeros((len(kk),) + ds0.shape)
        stacks["h0"][kk >= T - 1] = ds0
        totals["h0"] = ds0
        return stacks, totals
    order = np.argsort(kk, kind="stable").tolist()
    wanted = kk[order].tolist()                   # the lags to keep, ascending
    out = acc = None
    pos = 0
    for piece in lag_pieces(prep, wanted[-1]):
        parts = piece.grads
        parts["h0"] = piece.h0
        if acc is None:
            acc = {n: np.zeros(a.shape) for n, a in parts.items()}
            out = {n: np.empty((len(kk),) + a.shape) for n, a in parts.items()}
        for n, a in parts.items():
            acc[n] += a                           # Window(j) = Window(j - 1) + the lag-j piece
        while pos < len(wanted) and wanted[pos] == piece.j:
            for n in out:
                out[n][order[pos]] = acc[n]
            pos += 1
    return out, None


def truncation_sweep(params, xs, ys, spec, ks=None, h0=None, keep_grads: bool = True
                     ) -> TruncationSweep:
    """The `Window(k)` gradient for every k in `ks` (default 0..T-1), against full BPTT.

    params, xs, ys, h0: as for `hg.loss_and_grads` (any cell, head or not, any loss and
    reduction): `Params` or `GatedParams`; xs (B, T, D); h0 (B, H), the LSTM's pair (h_0, c_0),
    or None. spec: a `Spec` whose `truncation` is ignored (the sweep is over Window(k)); ks:
    window lengths k >= 0 (k >= T - 1 is full BPTT).
    keep_grads: return the K gradients themselves (K times the parameter count, in floats).
    Cost: many-to-one about one full gradient for all k (plus filling the K stacks);
    many-to-many one backward step of the whole sequence per lag up to max(ks).
    """
    return sweep_prepared(prepare(params, xs, ys, spec, h0), ks, keep_grads)


def sweep_prepared(prep: Prepared, ks=None, keep_grads: bool = True) -> TruncationSweep:
    """`truncation_sweep` on a problem already through `prepare` (shared by the study)."""
    prep = prep._replace(spec=Spec(**{**prep.spec.__dict__, "truncation": None}))
    T = prep.T
    ks = check_ks(ks, T)
    stacks, totals = window_stacks(prep, ks)
    fields = type(prep.params)._fields
    if totals is None:
        full, full_ds0, _ = backward(prep.params, prep.xs_tm, prep.fwd, prep.dos, prep.spec)
    else:
        # many-to-one: the full gradient is the sum over every lag
        whole = {**totals, "V": prep.side.dV, "c": prep.side.dc}
        full = type(prep.params)(*(whole.get(n) for n in fields))
        full_ds0 = totals["h0"]
    K = len(ks)
    for name in ("V", "c"):                                          # never truncated
        if getattr(full, name) is not None:
            stacks[name] = np.broadcast_to(getattr(full, name), (K,) + getattr(full, name).shape)
    stats, per_param = {}, {}
    for name in (*fields, "h0"):
        if name not in stacks:
            continue
        ref = full_ds0 if name == "h0" else getattr(full, name)
        if name == "h0" and totals is not None:
            # many-to-one: ds0 is 0 below the full window and exact from it on; no pass needed
            per_param[name] = _all_or_nothing(np.minimum(ks, T - 1) >= T - 1, bool(np.any(ref)))
            continue
        stats[name] = _stats(stacks[name], ref)
        per_param[name] = _curve(stats[name])
    overall = _overall([stats[n] for n in fields if n in stats])
    grads = dh0 = None
    if keep_grads:
        real = {n: np.array(a) if n in ("V", "c") else a for n, a in stacks.items()}
        grads = type(prep.params)(*(real.get(n) for n in fields))    # V, c: broadcasts made real
        dh0 = state_gradient(stacks["h0"], prep.spec)
    return TruncationSweep(ks, overall.rel_error, overall.cosine, overall.l2_error, per_param,
                           grads, dh0, full, state_gradient(full_ds0, prep.spec), prep.loss)
