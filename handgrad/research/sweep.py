"""The Window(k) gradient for every k at once: `truncation_sweep`.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, K truncations swept,
P parameter elements.

Under `Window(k)` the loss at step t reaches a_s only for lags j = t - s <= k, so every truncated
gradient is a partial sum over lags of one set of per-lag pieces:

    dU_k = sum_{j<=k} dU^(j),   dU^(j) = sum_t dL_t/da_{t-j} x_{t-j}^T       (W, b, h_0 alike)

- many-to-one (`output="last"`): one loss term, so dL/da_{T-j} is exactly the full backward
  pass's da at step T - j. One backward pass, the per-step outer products as one batched
  product, a cumulative sum over the lag: every k for about the price of one full gradient.
- many-to-many (`output="all"`): the lag-j pieces of all loss terms are computed together,
  vectorised over t: G_j[s] = dL_{s+j}/da_s, G_{j+1}[s-1] = (G_j[s] W) * act'(a_{s-1}).
  One (T B, H) x (H, H) product per lag, up to the largest k asked for.

V and c are never truncated; their curves are zero error and cosine one, listed for completeness.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from .._validate import check_inputs
from ..bptt import (Forward, backward, forward_states, initial_state, output_states, outputs,
                    time_major)
from ..losses import loss_and_output_grad
from ..params import Params
from ..spec import Spec

PARAM_NAMES = ("U", "W", "V", "b", "c")


class Curve(NamedTuple):
    """How far the Window(k) gradient of one array is from full BPTT, for every k swept."""

    rel_error: np.ndarray   # (K,) max|g_k - g| / max|g|   (the project's normwise metric)
    cosine: np.ndarray      # (K,) cos angle(g_k, g)
    l2_error: np.ndarray    # (K,) ||g_k - g||_2 / ||g||_2 (the relative bias of Aicher et al.)


class TruncationSweep(NamedTuple):
    """`truncation_sweep`'s answer. Overall = all parameters (U, W, V, b, c) as one vector."""

    ks: np.ndarray                   # (K,) the window lengths k
    rel_error: np.ndarray            # (K,) overall normwise relative error against full BPTT
    cosine: np.ndarray               # (K,) overall cosine against full BPTT
    l2_error: np.ndarray             # (K,) overall ||g_k - g|| / ||g||
    per_param: dict                  # name -> Curve, for U, W, V, (b, c) and "h0"
    grads: Optional[Params]          # Window(k) gradients, each array with a leading K axis
    dh0: Optional[np.ndarray]        # (K, B, H) Window(k) gradients of h_0
    full: Params                     # the full BPTT gradient
    full_dh0: np.ndarray             # (B, H)
    loss: float                      # the loss (truncation never changes it)


class LagPieces(NamedTuple):
    """Per-lag pieces of the gradient, stacked over the lag j = 0..J-1."""

    U: np.ndarray                    # (J, H, D)
    W: np.ndarray                    # (J, H, H)
    b: Optional[np.ndarray]          # (J, H)
    dh0: np.ndarray                  # (B, H) dL/dh_0: only the full window (lag T - 1) has it
    dh_norm: np.ndarray              # (J,) ||dL/dh_{T-j}||_F over the batch, by lag j


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

    params: Params
    spec: Spec
    xs_tm: np.ndarray                # (T, B, D)
    fwd: Forward
    dos: np.ndarray                  # (S, B, O) dL/do_t
    dh_loss: np.ndarray              # (S, B, H) dL/dh_t through o_t alone
    loss: float


def prepare(params, xs, ys, spec, h0=None) -> Prepared:
    """Validate, run the forward pass and the loss: what every research tool starts from."""
    params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
    require_elman_with_head(spec)
    xs_tm, ys_tm = time_major(xs, ys, spec)
    fwd = forward_states(params, xs_tm, initial_state(h0, xs.shape[0], params.W.shape[0]),
                         spec)
    os = outputs(params, output_states(fwd.states, spec.output))
    loss, dos = loss_and_output_grad(os, ys_tm, spec.loss, spec.reduction)
    return Prepared(params, spec, xs_tm, fwd, dos, dos @ params.V, loss)


def require_elman_with_head(spec) -> None:
    """The research tools are written for the Elman cell with an output head (for now)."""
    if spec.cell != "elman" or not spec.head:
        raise ValueError("the truncation research tools support cell='elman' with head=True, "
                         f"got cell={spec.cell!r}, head={spec.head}")


def output_layer_grads(prep: Prepared):
    """o_t = V h_t + c is never truncated: dV = sum_t do_t h_t^T (O, H), dc = sum_t do_t (O,)."""
    hs_out = output_states(prep.fwd.states, prep.spec.output)                 # (S, B, H)
    O, H = prep.params.V.shape
    dV = prep.dos.reshape(-1, O).T @ hs_out.reshape(-1, H)
    dc = prep.dos.sum(axis=(0, 1)) if prep.params.c is not None else None
    return dV, dc


def _outer_sum(a, b):
    """sum_b a[t, b, :, None] * b[t, b, None, :] for every t: (T, B, M), (T, B, N) -> (T, M, N)."""
    if a.shape[1] == 1:                           # one sample: plain outer products, no BLAS call
        return a[:, 0, :, None] * b[:, 0, None, :]
    return np.ascontiguousarray(a.transpose(0, 2, 1)) @ b


def lag_pieces_last(prep: Prepared) -> LagPieces:
    """Many-to-one: the per-step pieces of one full backward pass, in time order.

    The lag-j piece is entry T - 1 - j (step t = T - j). Returns arrays with a leading T axis.
    """
    W, b = prep.params.W, prep.params.b
    hs, dact = prep.fwd
    T, B, H = dact.shape
    das = np.empty((T, B, H))                   # das[t - 1] = dL/da_t
    dh_norm = np.empty(T)                       # by lag j = T - t
    dh = prep.dh_loss[0]                        # dL/dh_T through o_T
    for t in range(T, 0, -1):
        dh_norm[T - t] = np.sqrt(np.vdot(dh, dh))
        das[t - 1] = dh * dact[t - 1]           # h_t = act(a_t)
        dh = das[t - 1] @ W                     # a_t = ... + W h_{t-1}: carry to h_{t-1}
    # a_t = U x_t + W h_{t-1} + b: step t pairs da_t with x_t and h_{t-1}
    pW = _outer_sum(das, hs[:-1])                                    # (T, H, H)
    pU = _outer_sum(das, prep.xs_tm)                                 # (T, H, D)
    pb = das.sum(axis=1) if b is not None else None                  # (T, H)
    return LagPieces(pU, pW, pb, dh, dh_norm)    # dh: the full window (lag T - 1) reaches h_0


def reverse_cumsum_inplace(a):
    """a[t] <- sum_{s >= t} a[s] over axis 0, in place: one vector add per row (np.cumsum over
    the leading axis of a 3-D array is several times slower). Returns a."""
    for t in range(a.shape[0] - 2, -1, -1):
        np.add(a[t], a[t + 1], out=a[t])
    return a


class LagStep(NamedTuple):
    """The lag-j part of every loss term of a many-to-many problem at once."""

    j: int
    dh: np.ndarray        # (T - j, B, H) dh[s - 1] = dL_{s+j} / dh_s
    da: np.ndarray        # (T - j, B, H) da[s - 1] = dL_{s+j} / da_s
    U: np.ndarray         # (H, D) dU^(j) = sum_s da[s - 1] x_s^T
    W: np.ndarray         # (H, H) dW^(j) = sum_s da[s - 1] h_{s-1}^T
    b: Optional[np.ndarray]  # (H,)
    h0: np.ndarray        # (B, H) dL_{j+1} / dh_0: loss term j + 1 reaches h_0 at lag j


def lag_pieces_all(prep: Prepared, max_lag: int, pieces: bool = True):
    """Many-to-many: yield a `LagStep` for j = 0..min(max_lag, T - 1), vectorised over t.

    pieces=False skips the per-lag parameter pieces (U, W, b are None): for callers that add
    up `da` over the lags and form the parameter gradient once.
    """
    W, b = prep.params.W, prep.params.b
    hs, dact = prep.fwd
    T, H = dact.shape[0], W.shape[0]
    dh = prep.dh_loss                            # lag 0: dL_t/dh_t through o_t alone
    for j in range(min(max_lag, T - 1) + 1):
        n = T - j                                # steps s = 1..n receive a lag-j piece
        da = dh * dact[:n]                       # h_s = act(a_s)
        pU = pW = pb = None
        if pieces:
            flat = da.reshape(-1, H)             # (n B, H)
            pW = flat.T @ hs[:n].reshape(-1, H)  # a_s = ... + W h_{s-1}: sum_s da_s h_{s-1}^T
            pU = flat.T @ prep.xs_tm[:n].reshape(-1, prep.xs_tm.shape[-1])   # sum_s da_s x_s^T
            pb = flat.sum(axis=0) if b is not None else None
        carry = da @ W                           # carry every term one step back, to h_{s-1}
        yield LagStep(j, dh, da, pU, pW, pb, carry[0])
        dh = carry[1:]                           # h_0 is not a step: carry[0] went to dh0


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
    """The Window(k) gradients of U, W, b, h_0 for every k in ks, each (K, ...).

    Returns (stacks, totals): many-to-one also gives the full gradients of U, W, b, h_0 (the sum
    over every lag); many-to-many gives None (the lag loop stops at max(ks)).
    """
    T = prep.fwd.cache.shape[0]
    kk = np.minimum(ks, T - 1)                    # Window(k >= T - 1) is full BPTT
    if prep.spec.output == "last":
        pieces = lag_pieces_last(prep)
        # Window(k) = the steps t >= T - k: a cumulative sum from the end, read at T - 1 - k
        cum = {n: reverse_cumsum_inplace(getattr(pieces, n)) for n in ("U", "W", "b")
               if getattr(pieces, n) is not None}
        every = len(kk) == T and np.array_equal(kk, np.arange(T))      # no copy for the default
        stacks = {n: c[::-1] if every else c[T - 1 - kk] for n, c in cum.items()}
        totals = {n: c[0] for n, c in cum.items()}
        # h_0: zero below the full window, the whole dL/dh_0 from k = T - 1 on
        stacks["h0"] = np.zeros((len(kk),) + pieces.dh0.shape)
        stacks["h0"][kk >= T - 1] = pieces.dh0
        totals["h0"] = pieces.dh0
        return stacks, totals
    params = prep.params
    B, H = prep.fwd.states.shape[1:]
    order = np.argsort(kk, kind="stable")
    out = {"U": np.empty((len(kk),) + params.U.shape), "W": np.empty((len(kk),) + params.W.shape),
           "h0": np.empty((len(kk), B, H))}
    if params.b is not None:
        out["b"] = np.empty((len(kk), H))
    acc = {n: np.zeros(a.shape[1:]) for n, a in out.items()}
    pos = 0
    for step in lag_pieces_all(prep, int(kk.max())):
        acc["U"] += step.U
        acc["W"] += step.W
        acc["h0"] += step.h0
        if step.b is not None:
            acc["b"] += step.b
        while pos < len(kk) and kk[order[pos]] == step.j:
            for n in out:
                out[n][order[pos]] = acc[n]
            pos += 1
    return out, None


def truncation_sweep(params, xs, ys, spec, ks=None, h0=None, keep_grads: bool = True
                     ) -> TruncationSweep:
    """The `Window(k)` gradient for every k in `ks` (default 0..T-1), against full BPTT.

    params: `Params`; xs: (B, T, D); ys as for `loss_and_grads`; spec: a `Spec` whose
    `truncation` is ignored (the sweep is over Window(k)); ks: window lengths k >= 0
    (k >= T - 1 is full BPTT); h0: (B, H) or None.
    keep_grads: return the K gradients themselves (K * (H D + H H + ...) floats).
    Cost: many-to-one about one full gradient for all k; many-to-many one (T B, H) x (H, H)
    product per lag up to max(ks).
    """
    return sweep_prepared(prepare(params, xs, ys, spec, h0), ks, keep_grads)


def sweep_prepared(prep: Prepared, ks=None, keep_grads: bool = True) -> TruncationSweep:
    """`truncation_sweep` on a problem already through `prepare` (shared by the study)."""
    prep = prep._replace(spec=Spec(**{**prep.spec.__dict__, "truncation": None}))
    T = prep.fwd.cache.shape[0]
    ks = check_ks(ks, T)
    stacks, totals = window_stacks(prep, ks)
    if totals is None:
        full, full_dh0, _ = backward(prep.params, prep.xs_tm, prep.fwd, prep.dos, prep.spec)
    else:
        # many-to-one: the full gradient is the sum over every lag
        dV, dc = output_layer_grads(prep)
        full = Params(totals["U"], totals["W"], dV, totals.get("b"), dc)
        full_dh0 = totals["h0"]
    K = len(ks)
    stacks["V"] = np.broadcast_to(full.V, (K,) + full.V.shape)       # never truncated
    if full.c is not None:
        stacks["c"] = np.broadcast_to(full.c, (K,) + full.c.shape)
    stats, per_param = {}, {}
    for name in (*PARAM_NAMES, "h0"):
        if name not in stacks:
            continue
        ref = full_dh0 if name == "h0" else getattr(full, name)
        if name == "h0" and totals is not None:
            # many-to-one: dh0 is 0 below the full window and exact from it on; no pass needed
            per_param[name] = _all_or_nothing(np.minimum(ks, T - 1) >= T - 1, bool(np.any(ref)))
            continue
        stats[name] = _stats(stacks[name], ref)
        per_param[name] = _curve(stats[name])
    overall = _overall([stats[n] for n in PARAM_NAMES if n in stats])
    grads = dh0 = None
    if keep_grads:
        real = {n: a if n in ("U", "W", "b") else np.array(a) for n, a in stacks.items()}
        grads = Params(*(real.get(n) for n in PARAM_NAMES))  # V, c: broadcast views made real
        dh0 = stacks["h0"]
    return TruncationSweep(ks, overall.rel_error, overall.cosine, overall.l2_error, per_param,
                           grads, dh0, full, full_dh0, prep.loss)
