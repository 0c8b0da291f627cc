"""Decay profile and truncation-bias curve of one very long sequence, in bounded memory.

Size letters: B batch, T time steps (10^6 and more), n steps per block, L lags measured,
D inputs, H hidden units, O outputs, Z = H + D (+ 1 with a bias).

`decay_profile` and `truncation_sweep` hold every state and measure every lag up to T: O(T B H)
memory and O(T^2) time (over 120 s at T = 100,000). Here, for a many-to-many loss:

1. Forward, block by block (n steps), keeping only the last L steps of states between blocks and
   one checkpoint state per block. For the loss terms of each block, all at once, the backward
   sweep is run L lags deep (vectorised over the block's steps, as `truncation_sweep` does):
   lag j gives ||dL_t/dh_{t-j}|| for every t (the decay profile) and adds dL_t/da_{t-j} into the
   Window(j) sums, from which the Window(k) gradient of each k in `ks` is formed (one product
   per k and block).
2. Backward, block by block from the end, each block's states recomputed from its checkpoint:
   the exact full-BPTT gradient (checkpointed BPTT, O((n + T/n) B H) memory).

Every loss step is used and nothing is sampled: the bias ||g_k - g|| / ||g|| is exact for
every k <= L, up to float64 round-off (the two passes sum the same products in another order).
The one choice is L: lags beyond it are not in the profile, and `bias[-1]` (k = L) says exactly
how much of the gradient lies beyond lag L (`tail_bias`). The tests prove equality with
`truncation_sweep` and `decay_profile` on sequences short enough for those.

Memory: O((n + L) B (H + D) + (T / n) B H + L) floats, independent of T but for the checkpoints.
Time: O(T B H^2 (L + 3)), in blocks large enough that numpy's per-call overhead is amortised.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import numpy as np

from .._threads import blas_threads
from .._validate import check_h0, check_inputs
from ..losses import loss_and_output_grad, loss_count
from ..nonlin import act_derivative, act_function
from ._online import check_family, split_theta, theta
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
    bias: np.ndarray          # (K,) ||g_k - g|| / ||g||, all parameters (U, W, V, b, c), exact
    cosine: np.ndarray        # (K,) cos(g_k, g)
    tail_bias: float          # ||g_L - g|| / ||g||: the gradient beyond the lags measured
    grad_norm: float          # ||g||
    loss: float
    seconds: float
    block: int
    max_steps_held: int       # time steps of states held at once (block + L + 1)
    checkpoints: int          # states kept for the backward pass (one per block)

    def as_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self._asdict().items()}

    def summary(self) -> str:
        shown = ", ".join(f"k={int(k)}: {b:.3g}" for k, b in zip(self.ks, self.bias))
        return (f"long sequence T = {self.T:,}: loss {self.loss:.4g}, gradient norm "
                f"{self.grad_norm:.3g}, decay rate {self.rate:.3g} per step over {len(self.lags)} "
                f"lags; Window(k) bias {shown}; beyond lag {len(self.lags) - 1}: "
                f"{self.tail_bias:.3g}; {self.max_steps_held} steps of states held, "
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
                 block: int = 4096, h0=None) -> LongProfile:
    """The decay profile (lags 0..max_lag) and the exact Window(k) bias of one long sequence.

    params: `Params`; source(lo, hi) -> (xs (B, hi - lo, D), ys (B, hi - lo, O) | (B, hi - lo)),
    steps lo..hi-1 (0-based), the same values whenever asked (it is read twice);
    spec: an Elman `Spec` with output="all" (spec.truncation is ignored); T: sequence length;
    max_lag: L, the deepest lag measured; ks: window lengths (default DEFAULT_KS, capped at L);
    block: n, steps per block; h0: (B, H) or None.
    """
    t0 = time.perf_counter()
    check_family(spec, "long_profile", truncation_ok=True)
    if spec.output != "all":
        raise ValueError(f"long_profile profiles a loss at every step (spec.output='all'), got "
                         f"{spec.output!r}; a many-to-one loss is one backward pass: use "
                         "hg.decay_profile")
    for name, value, lowest in (("T", T, 1), ("max_lag", max_lag, 0), ("block", block, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
            raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")
    L = min(int(max_lag), T - 1)
    ks = _check_ks(ks, L)
    H = np.shape(getattr(params, "W", np.zeros((1, 1))))[0]
    with blas_threads(block * H * H):
        return _profile(params, source, spec, int(T), L, ks, int(block), h0, t0)


def _read(source, params, spec, h0, lo, hi):
    """A validated block: (params, xs_tm (n, B, D), ys time-major)."""
    xs, ys = source(lo, hi)
    p, xs, ys, _, _ = check_inputs(params, xs, ys, spec, None)
    if xs.shape[1] != hi - lo:
        raise ValueError(f"source({lo}, {hi}) must give {hi - lo} steps, got xs of shape {xs.shape}")
    return p, np.ascontiguousarray(np.swapaxes(xs, 0, 1)), np.swapaxes(ys, 0, 1)


def _profile(params, source, spec, T, L, ks, block, h0, t0):
    starts = list(range(0, T, block))
    p, xs_tm, ys_tm = _read(source, params, spec, h0, 0, min(block, T))
    B = xs_tm.shape[1]
    D, H, O = p.sizes
    h_start = np.zeros((B, H)) if h0 is None else check_h0(h0, B, H)
    Th = theta(p)
    Z = Th.shape[1]
    W, V, c = p.W, p.V, p.c
    count = loss_count(spec.loss, spec.reduction, (T, B, O))
    dh_sq = np.zeros(L + 1)
    win = np.zeros((len(ks), H, Z))                      # Window(k) sums of dL/da_s z_s^T
    dV, dc = np.zeros_like(V), (np.zeros_like(c) if c is not None else None)
    total = 0.0
    checkpoints = []
    tail = None                                          # (dact, zs) of the last <= L steps
    held = 0
    # ---- pass 1: forward, the lag sweeps of each block's loss terms ----
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
        # rows r = 0..m+n-1 are steps lo-m+1 .. hi (1-based); loss terms only on the last n rows
        dh = np.zeros((m + n, B, H))
        dh[m:] = _rows(dos, V)                           # lag 0: dL_t/dh_t through o_t
        das = np.zeros((m + n, B, H))                    # Window(j) sum of dL_t/da_s, by step s
        da_buf = np.empty((m + n, B, H))
        ki = 0
        start_sq = None
        for j in range(L + 1):
            rows = dh.shape[0]                           # steps s = first .. first + rows - 1
            if rows == 0:                                # every term has reached h_0
                break
            sq = float(np.vdot(dh, dh))
            dh_sq[j] += sq
            start_sq = sq if start_sq is None else start_sq
            if sq <= STOP ** 2 * start_sq:               # below round-off of what it adds to
                break
            da = np.multiply(dh, dact_c[:rows], out=da_buf[:rows])   # h_s = act(a_s)
            das[:rows] += da
            while ki < len(ks) and ks[ki] == j:          # Window(j): a_s = Theta z_s
                win[ki] += das.reshape(-1, H).T @ zs_c.reshape(-1, Z)
                ki += 1
            if j == L:
                break
            carry = _rows(da, W)                         # a_s = W h_{s-1} + ...: to h_{s-1}
            if lo - m == 0:                              # row 0 is step 1: carry[0] reaches h_0
                dh_sq[j + 1] += float(np.vdot(carry[0], carry[0]))
            dh = carry[1:]
        while ki < len(ks):                              # the sequence is shorter than k here
            win[ki] += das.reshape(-1, H).T @ zs_c.reshape(-1, Z)
            ki += 1
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
    gnorm = float(np.linalg.norm(g))
    bias, cos = np.empty(len(ks)), np.empty(len(ks))
    for i in range(len(ks)):
        gk = np.concatenate([win[i].ravel()] + vc) / count
        bias[i] = float(np.linalg.norm(gk - g)) / gnorm if gnorm > 0 else 0.0
        cos[i] = float(gk @ g) / (float(np.linalg.norm(gk)) * gnorm) if gnorm > 0 else 1.0
    terms = np.array([T - j + (1 if j > 0 else 0) for j in range(L + 1)], dtype=float)
    dh_norm = np.sqrt(dh_sq / terms) / count
    rate, scale = fit_rate(dh_norm)
    tail_bias = float(bias[-1]) if ks[-1] == L else math.nan
    return LongProfile(T, np.arange(L + 1), dh_norm, rate, scale, ks, bias, cos, tail_bias,
                       gnorm, total / count, time.perf_counter() - t0, block, held,
                       len(checkpoints))


def long_demo(T: int = 1_000_000, H: int = 32, delay: int = 6, max_lag: int = 200,
              seed: int = 0) -> LongProfile:
    """The profile of one delayed-recall sequence of T steps (B = 1, D = 1, a tanh RNN with
    H units at its LeCun initialisation), as `handgrad estimators --long T` runs it."""
    from ..params import init_params
    from ..spec import Spec
    spec = Spec(activation="tanh", bias=True, output="all", loss="half_squared", reduction="mean")
    params = init_params(spec, 1, H, 1, seed=seed)
    return long_profile(params, recall_source(1, delay, seed=seed), spec, T, max_lag=max_lag)


def plot_long(prof: LongProfile, size=(11, 4.2), dpi: int = 100) -> bytes:
    """Left: the decay profile with its geometric fit. Right: the exact Window(k) bias."""
    from .study import _figure, _plain_log_labels, png_bytes
    fig, ax = _figure(1, 2, size, dpi)
    left, right = ax[0]
    pos = np.where(prof.dh_norm > 0, prof.dh_norm, np.nan)
    left.plot(prof.lags, pos, "o", ms=2.5, label="measured (RMS over every loss term)")
    if np.isfinite(prof.rate):
        left.plot(prof.lags, prof.scale * prof.rate ** prof.lags.astype(float), "-",
                  label=f"fit: rate {prof.rate:.3g} per step")
    left.set(yscale="log", xlabel="lag j", ylabel="||dL_t/dh_{t-j}||", title="gradient decay")
    left.legend(fontsize=7)
    b = np.where(prof.bias > 0, prof.bias, np.nan)
    right.plot(prof.ks, b, "s-", color="tab:orange")
    right.axhline(np.finfo(float).eps, color="grey", lw=0.8, ls=":")
    right.set(yscale="log", xlabel="k (Window(k))", ylabel="||g_k - g|| / ||g|| (exact)",
              title="truncation bias")
    _plain_log_labels(left, right)
    fig.suptitle(f"one sequence of T = {prof.T:,} steps in bounded memory ({prof.seconds:.0f} s)")
    return png_bytes(fig)
