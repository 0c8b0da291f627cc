"""Decay profile and truncation-bias curve of one very long sequence, in bounded memory.

Size letters: B batch, T time steps (10^6 and more), n steps per block, L lags measured,
D inputs, H hidden units, O outputs, Z = H + D (+ 1 with a bias), m loss terms swept.

`decay_profile` and `truncation_sweep` hold every state and measure every lag up to T: O(T B H)
memory and O(T^2) time (over 120 s at T = 100,000). Here, for a many-to-many loss:

1. Forward, block by block (n steps), keeping only the last L steps of (act', z) between blocks
   and one checkpoint state per block. The loss terms of each block are swept backwards L lags
   deep all at once (vectorised over the terms); lag j gives ||dL_t/dh_{t-j}|| (the decay
   profile) and the lag-j pieces P_j = sum_t dL_t/da_{t-j} z_{t-j}^T, so that the Window(k)
   gradient is g_k = g - sum_{j>k} P_j.
2. Backward, block by block from the end, each block's states recomputed from its checkpoint:
   the exact full-BPTT gradient g (checkpointed BPTT).

How the error is controlled:
- `every=1` sweeps every loss term: bias ||g_k - g|| / ||g|| and the profile are exact up to
  float64 round-off (the tests prove them equal to `truncation_sweep` and `decay_profile`).
- `every=s` sweeps every s-th loss term from a random offset and weighs it by s (Horvitz-Thompson:
  unbiased for each P_j), at 1/s of the sweep's cost. The bias is estimated from the *tail*
  sum_{j>k} P_j directly, so its sampling error shrinks with the bias itself (no noise floor
  from the large early lags); `bias_se` is its standard error from `groups` interleaved
  subsamples (each an unbiased estimate on its own). g is always exact.
- Lags beyond L are not swept; a block's sweep also stops once its carried gradient falls below
  STOP = 1e-20 of where it started (round-off of the sums it would add to). `residual` =
  ||g - (V, c part + sum_{j<=L} P_j)|| / ||g|| is what that left out: exactly, with every=1
  (and then `bias` includes it: it is ||g - g_k|| whatever L); with every > 1 it also holds the
  sampling error of the whole sum, and `blocks_cut_at_L` = 0 says nothing beyond L was material.

Memory: the block and its L kept steps, the
swept terms' carries (n / every of them), one checkpoint per block and the (L + 1) H Z pieces:
independent of T but for the T / n checkpoints of B H floats.
Time: O(T B H^2 (3 + L / every)); the per-step loops of the two passes dominate at every >= 16.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import numpy as np

from .._threads import blas_threads
from .._validate import check_h0, check_inputs
from ..losses import loss_and_output_grad, loss_count
from ..nonlin import act_derivative, act_function
from ._online import check_family, theta
from .decay import fit_rate

STOP = 1e-20        # a block's lag sweep stops when its carried gradient falls below this share
DEFAULT_KS = (0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500)


class LongProfile(NamedTuple):
    T: int
    lags: np.ndarray          # (L + 1,) 0..L
    dh_norm: np.ndarray       # (L + 1,) RMS over loss terms t of ||dL_t/dh_{t-j}|| (as decay_profile)
    rate: float               # fitted geometric rate of dh_norm (decay.fit_rate)
    scale: float
    ks: np.ndarray            # (K,) window lengths measured
    bias: np.ndarray          # (K,) ||g_k - g|| / ||g||, all parameters (U, W, V, b, c)
    bias_se: np.ndarray       # (K,) its standard error (0 when every loss term is swept)
    cosine: np.ndarray        # (K,) cos(g_k, g)
    residual: float           # ||g - g_L|| / ||g|| with g exact: beyond lag L (+ sampling error)
    grad_norm: float          # ||g||
    loss: float
    seconds: float
    block: int
    max_steps_held: int       # time steps of states held at once (block + L + 1)
    checkpoints: int          # states kept for the backward pass (one per block)
    every: int                # every `every`-th loss term swept
    groups: int               # interleaved subsamples behind bias_se (1: exact)
    blocks_cut_at_L: int      # blocks whose sweep was still above STOP at lag L (0: nothing lost)

    def as_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self._asdict().items()}

    def summary(self) -> str:
        shown = ", ".join(f"k={int(k)}: {b:.3g}" + (f" +- {e:.1g}" if self.groups > 1 else "")
                          for k, b, e in zip(self.ks, self.bias, self.bias_se))
        how = ("every loss term" if self.every == 1 else
               f"one loss term in {self.every} ({self.groups} subsamples for the errors)")
        return (f"long sequence T = {self.T:,} ({how}): loss {self.loss:.4g}, gradient norm "
                f"{self.grad_norm:.3g}, decay rate {self.rate:.3g} per step over "
                f"{len(self.lags)} lags; Window(k) bias {shown}; ||g - g_L|| / ||g|| = "
                f"{self.residual:.2g}; {self.max_steps_held} steps of states held, "
                f"{self.checkpoints} checkpoints; {self.seconds:.1f} s")


def array_source(xs, ys) -> Callable:
    """A source over whole arrays: xs (B, T, D), ys (B, T, O) | (B, T)."""
    return lambda lo, hi: (xs[:, lo:hi], ys[:, lo:hi])


def recall_source(B: int, delay: int, seed: int = 0, chunk: int = 4096) -> Callable:
    """The delayed-recall sequence (x_t = +-1, y_t = x_{t-delay}, 0 before) of any length, made on
    demand: (lo, hi) -> (xs (B, hi - lo, 1), ys (B, hi - lo, 1)), the same values on every call."""
    def x_range(lo, hi):
        parts = []
        for c in range(max(lo, 0) // chunk, (hi - 1) // chunk + 1):
            rng = np.random.default_rng([seed, c])
            xc = rng.integers(0, 2, (B, chunk, 1)) * 2.0 - 1.0
            a, b = max(lo, c * chunk) - c * chunk, min(hi, (c + 1) * chunk) - c * chunk
            parts.append(xc[:, a:b])
        return np.concatenate(parts, axis=1)

    def source(lo, hi):
        xs = x_range(lo, hi)
        ys = np.zeros_like(xs)
        start = max(lo - delay, 0)
        if hi - delay > start:
            past = x_range(start, hi - delay)
            ys[:, hi - lo - past.shape[1]:] = past
        return xs, ys
    return source


def _block_forward(Th, h_start, xs_tm, activation):
    """States and act' over a block: xs_tm (n, B, D) from h_start (B, H) -> hs (n + 1, B, H),
    dact (n, B, H), zs (n, B, Z)."""
    n, B, D = xs_tm.shape
    H = Th.shape[0]
    Z = Th.shape[1]
    zs = np.empty((n, B, Z))
    zs[:, :, H:H + D] = xs_tm
    if Z > H + D:
        zs[:, :, H + D] = 1.0
    Wt = np.ascontiguousarray(Th[:, :H].T)
    pre = (xs_tm.reshape(n * B, D) @ Th[:, H:H + D].T).reshape(n, B, H)   # U x_t for every t
    if Z > H + D:
        pre += Th[:, H + D]                                                # + b
    hs = np.empty((n + 1, B, H))
    hs[0] = h_start
    Wh = np.empty((B, H))
    f = act_function(activation)                          # chosen once, outside the loop
    with np.errstate(over="ignore"):
        for t in range(n):
            np.dot(hs[t], Wt, out=Wh)
            pre[t] += Wh                                  # a_t = W h_{t-1} + U x_t + b
            f(pre[t], out=hs[t + 1])                      # h_t = act(a_t)
    zs[:, :, :H] = hs[:-1]
    return hs, act_derivative(activation, pre, out=pre), zs


def _rows(a, M):
    """a (n, B, K) @ M (K, N) -> (n, B, N) as one 2-D product (a 3-D @ is n small products)."""
    n, B, K = a.shape
    return (a.reshape(n * B, K) @ M).reshape(n, B, M.shape[1])


def _check_ks(ks, L: int) -> np.ndarray:
    arr = np.asarray(DEFAULT_KS if ks is None else ks)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0:
        raise ValueError(f"ks must be a non-empty 1-D sequence of integers k >= 0, got {ks!r}")
    return np.unique(np.minimum(arr, L))


def long_profile(params, source: Callable, spec, T: int, max_lag: int = 200, ks=None,
                 block: int = 4096, h0=None, every: int = 1, groups: int = 8,
                 seed: int = 0) -> LongProfile:
    """The decay profile (lags 0..max_lag) and the exact Window(k) bias of one long sequence.

    params: `Params`; source(lo, hi) -> (xs (B, hi - lo, D), ys (B, hi - lo, O) | (B, hi - lo)),
    steps lo..hi-1 (0-based), the same values whenever asked (it is read twice);
    spec: an Elman `Spec` with output="all" (spec.truncation is ignored); T: sequence length;
    max_lag: L, the deepest lag measured; ks: window lengths (default DEFAULT_KS, capped at L);
    block: n, steps per block; h0: (B, H) or None;
    every: sweep every `every`-th loss term only (from a random offset drawn from `seed`); 1
    sweeps them all (exact); groups: how many interleaved subsamples give the standard errors.
    """
    t0 = time.perf_counter()
    check_family(spec, "long_profile", truncation_ok=True)
    if spec.output != "all":
        raise ValueError(f"long_profile profiles a loss at every step (spec.output='all'), got "
                         f"{spec.output!r}; a many-to-one loss is one backward pass: use "
                         "hg.decay_profile")
    for name, value, lowest in (("T", T, 1), ("max_lag", max_lag, 0), ("block", block, 1),
                                ("every", every, 1), ("groups", groups, 2), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
            raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")
    L = min(int(max_lag), T - 1)
    ks = _check_ks(ks, L)
    H = np.shape(getattr(params, "W", np.zeros((1, 1))))[0]
    with blas_threads(block * H * H):
        offset = int(np.random.default_rng(seed).integers(every))
        return _profile(params, source, spec, int(T), L, ks, int(block), h0, t0, int(every),
                        offset, int(groups))


def _read(source, params, spec, h0, lo, hi):
    """A validated block: (params, xs_tm (n, B, D), ys time-major)."""
    xs, ys = source(lo, hi)
    p, xs, ys, _, _ = check_inputs(params, xs, ys, spec, None)
    if xs.shape[1] != hi - lo:
        raise ValueError(f"source({lo}, {hi}) must give {hi - lo} steps, got xs of shape {xs.shape}")
    return p, np.ascontiguousarray(np.swapaxes(xs, 0, 1)), np.swapaxes(ys, 0, 1)


def _profile(params, source, spec, T, L, ks, block, h0, t0, every, offset, groups):
    starts = list(range(0, T, block))
    p, xs_tm, ys_tm = _read(source, params, spec, h0, 0, min(block, T))
    B = xs_tm.shape[1]
    D, H, O = p.sizes
    h_start = np.zeros((B, H)) if h0 is None else check_h0(h0, B, H)
    Th = theta(p)
    Z = Th.shape[1]
    W, V, c = p.W, p.V, p.c
    count = loss_count(spec.loss, spec.reduction, (T, B, O))
    G = 1 if every == 1 else groups
    dh_sq, n_terms = np.zeros(L + 1), np.zeros(L + 1)
    pieces = np.zeros((G, L + 1, H, Z))                  # per group, lag j: sum_t dL_t/da_{t-j} z^T
    dV, dc = np.zeros_like(V), (np.zeros_like(c) if c is not None else None)
    total = 0.0
    checkpoints = []
    tail = None                                          # (dact, zs) of the last <= L steps
    held = cut = 0
    # ---- pass 1: forward, the lag sweeps of each block's (sampled) loss terms ----
    for lo in starts:
        hi = min(lo + block, T)
        if lo > 0:
            _, xs_tm, ys_tm = _read(source, params, spec, h0, lo, hi)
        checkpoints.append(h_start)
        hs, dact, zs = _block_forward(Th, h_start, xs_tm, spec.activation)
        os_ = _rows(hs[1:], V.T) + (c if c is not None else 0.0)      # o_t = V h_t + c
        value, dos = loss_and_output_grad(os_, ys_tm, spec.loss, "sum")
        total += value
        n = hi - lo
        dV += dos.reshape(-1, O).T @ hs[1:].reshape(-1, H)
        if dc is not None:
            dc += dos.sum(axis=(0, 1))
        m = 0 if tail is None else tail[0].shape[0]
        dact_c = dact if m == 0 else np.concatenate([tail[0], dact])
        zs_c = zs if m == 0 else np.concatenate([tail[1], zs])
        held = max(held, m + n + 1)
        cut += _sweep_block(lo, hi, m, every, offset, G, _rows(dos, V), dact_c, zs_c, W, L,
                            pieces, dh_sq, n_terms)
        keep = min(L, m + n)
        tail = (dact_c[m + n - keep:], zs_c[m + n - keep:])
        h_start = hs[-1].copy()                          # not a view: the block is freed
    # ---- pass 2: backward from the end, each block recomputed from its checkpoint ----
    full = np.zeros((H, Z))
    carry = np.zeros((B, H))                             # dL/dh_hi from the loss terms after hi
    for lo, h_lo in zip(reversed(starts), reversed(checkpoints)):
        hi = min(lo + block, T)
        _, xs_tm, ys_tm = _read(source, params, spec, h0, lo, hi)
        hs, dact, zs = _block_forward(Th, h_lo, xs_tm, spec.activation)
        os_ = _rows(hs[1:], V.T) + (c if c is not None else 0.0)
        _, dos = loss_and_output_grad(os_, ys_tm, spec.loss, "sum")
        dhl = _rows(dos, V)
        das = np.empty_like(dact)
        for t in range(hi - lo - 1, -1, -1):
            carry += dhl[t]                              # o_t = V h_t + c: loss term t
            np.multiply(carry, dact[t], out=das[t])      # h_t = act(a_t)
            np.dot(das[t], W, out=carry)                 # a_t = W h_{t-1} + ...: to h_{t-1}
        full += das.reshape(-1, H).T @ zs.reshape(-1, Z)
    # ---- compare: everything divided by the reduction's count ----
    vc = [dV.ravel()] + ([dc] if dc is not None else [])
    g = np.concatenate([full.ravel()] + vc) / count
    gnorm = float(np.linalg.norm(g)) or 1.0
    est = pieces.reshape(G, L + 1, -1) * (every * G / count)   # each group: an estimate of P_j
    # tail_k = sum_{j > k} P_j = g - g_k (every lag up to L; beyond it: see `residual`)
    tails = np.cumsum(est[:, ::-1], axis=1)[:, ::-1]           # tails[:, j] = sum_{i >= j} P_i
    tails = np.concatenate([tails[:, 1:], np.zeros_like(tails[:, :1])], axis=1)
    sel = tails[:, ks]                                          # (G, K, P_rec)
    mean = sel.mean(axis=0)
    rec = g[:full.size]                                         # the recurrent part (U, W, b)
    beyond = rec - est.mean(axis=0).sum(axis=0)                 # lags > L (+ sampling error)
    residual = float(np.linalg.norm(beyond)) / gnorm
    if every == 1:
        mean = mean + beyond                                    # exact: g - g_k, every lag
    bias = np.linalg.norm(mean, axis=1) / gnorm
    se = (np.sqrt(np.sum(sel.var(axis=0, ddof=1), axis=1) / G) / gnorm if G > 1
          else np.zeros(len(ks)))
    pad = np.zeros((len(ks), g.size - rec.size))
    gk = g - np.concatenate([mean, pad], axis=1)                # g_k = g - tail_k (V, c exact)
    cos = gk @ g / (np.linalg.norm(gk, axis=1) * gnorm)
    with np.errstate(invalid="ignore", divide="ignore"):
        dh_norm = np.where(n_terms > 0, np.sqrt(dh_sq / n_terms), 0.0) / count
    rate, scale = fit_rate(dh_norm)
    return LongProfile(T, np.arange(L + 1), dh_norm, rate, scale, ks, bias, se, cos, residual,
                       gnorm, total / count, time.perf_counter() - t0, block, held,
                       len(checkpoints), every, G, int(cut))


def _sweep_block(lo, hi, m, every, offset, G, dhl, dact_c, zs_c, W, L, pieces, dh_sq, n_terms):
    """The backward sweeps, L lags deep, of the sampled loss terms t in lo+1..hi (1-based), all
    at once; adds into pieces (G, L+1, H, Z), dh_sq and n_terms (L+1,). Returns whether the
    sweep reached lag L still above STOP.

    dhl: (n, B, H) dL_t/dh_t through o_t for the block's steps; dact_c, zs_c: (m + n, B, .) the
    kept m steps and the block's, row r = step lo - m + 1 + r. The terms sampled are
    t = offset + 1 + every i; term i belongs to group i mod G (G groups of equal size, the last
    padded with terms that never count).
    """
    B, H = dhl.shape[1:]
    Z = zs_c.shape[2]
    first = lo + 1 + (offset - lo) % every                       # first sampled step > lo
    ts = np.arange(first, hi + 1, every)
    if ts.size == 0:
        return False
    idx = (ts - 1 - offset) // every                             # the term's number i
    mg = -(-ts.size // G) + 1                                    # room for every group
    tg = np.full((G, mg), -10 ** 9, dtype=np.int64)              # padding: never valid
    pos = np.zeros(G, dtype=np.int64)
    for t, i in zip(ts, idx):                                    # deal the terms to groups
        g = int(i % G)
        tg[g, pos[g]] = t
        pos[g] += 1
    real = tg > 0
    dh = np.zeros((G, mg, B, H))
    dh[real] = dhl[tg[real] - lo - 1]                            # lag 0: dL_t/dh_t through o_t
    start_sq = None
    for j in range(L + 1):
        step = tg - j                                            # the step s each term is at
        valid = step >= 1
        at_h0 = step == 0                                        # arrived at h_0 (not a step)
        sq = np.einsum("gmbh,gmbh->gm", dh, dh)
        dh_sq[j] += float(sq[valid | at_h0].sum())
        n_terms[j] += int(valid.sum() + (at_h0.sum() if j > 0 else 0))
        if not valid.any():
            break
        now = float(sq[valid].sum())
        start_sq = now if start_sq is None else start_sq
        if now <= STOP ** 2 * start_sq:                          # below round-off of its sums
            break
        dh[~valid] = 0.0
        rows = np.where(valid, step - (lo + 1 - m), 0)           # row of step s in the block
        da = dh * dact_c[rows]                                   # h_s = act(a_s)
        z = zs_c[rows]                                           # a_s = Theta z_s
        pieces[:, j] += np.matmul(da.reshape(G, -1, H).transpose(0, 2, 1), z.reshape(G, -1, Z))
        if j == L:
            return True                                          # still above STOP at lag L
        dh = (da.reshape(-1, H) @ W).reshape(dh.shape)           # a_s = W h_{s-1} + ...
    return False


def long_demo(T: int = 1_000_000, H: int = 32, delay: int = 6, max_lag: int = 200,
              every: int = 32, seed: int = 0) -> LongProfile:
    """The profile of one delayed-recall sequence of T steps (B = 1, D = 1, a tanh RNN with
    H units at its LeCun initialisation), as `handgrad estimators --long T` runs it: every 32nd
    loss term swept (errors from 8 subsamples), the full gradient exact."""
    from ..params import init_params
    from ..spec import Spec
    spec = Spec(activation="tanh", bias=True, output="all", loss="half_squared", reduction="mean")
    params = init_params(spec, 1, H, 1, seed=seed)
    return long_profile(params, recall_source(1, delay, seed=seed), spec, T, max_lag=max_lag,
                        every=min(every, T), seed=seed)


def plot_long(prof: LongProfile, size=(11, 4.2), dpi: int = 100) -> bytes:
    """Left: the decay profile with its geometric fit. Right: the exact Window(k) bias."""
    from .study import _figure, _plain_log_labels, png_bytes
    fig, ax = _figure(1, 2, size, dpi)
    left, right = ax[0]
    pos = np.where(prof.dh_norm > 0, prof.dh_norm, np.nan)
    left.plot(prof.lags, pos, "o", ms=2.5, label="measured (RMS over every loss term)")
    if np.isfinite(prof.rate):
        seen = prof.lags[prof.dh_norm > 0]
        left.plot(seen, prof.scale * prof.rate ** seen.astype(float), "-",
                  label=f"fit: rate {prof.rate:.3g} per step")
    left.set(yscale="log", xlabel="lag j", ylabel="||dL_t/dh_{t-j}||", title="gradient decay")
    left.legend(fontsize=7)
    b = np.where(prof.bias > 0, prof.bias, np.nan)
    right.plot(prof.ks, b, "s-", color="tab:orange", label="||g_k - g|| / ||g||")
    if prof.groups > 1:
        # 2 standard errors: the upper bar in full; the lower one shown down to b / 10 at most
        right.errorbar(prof.ks, b, yerr=[np.minimum(2 * prof.bias_se, 0.9 * b), 2 * prof.bias_se],
                       fmt="none", ecolor="tab:orange", alpha=0.6, capsize=2,
                       label="2 standard errors (sampled loss terms)")
    right.legend(fontsize=7)
    right.axhline(np.finfo(float).eps, color="grey", lw=0.8, ls=":")
    right.set(yscale="log", xlabel="k (Window(k))", ylabel="||g_k - g|| / ||g||",
              title="truncation bias")
    _plain_log_labels(left, right)
    fig.suptitle(f"one sequence of T = {prof.T:,} steps in bounded memory ({prof.seconds:.0f} s)")
    return png_bytes(fig)
