"""How fast the backpropagated gradient decays with the lag, and what truncation that allows.

Size letters: B batch, T time steps, D inputs, H hidden units, W the state width (H; 2H for the
LSTM's [h, c]), L lags measured, N (t, b) pairs whose Jacobian is measured.

For the loss term at step t, the gradient with respect to the state j steps earlier is

    dL_t/ds_{t-j} = dL_t/ds_t  J_t J_{t-1} ... J_{t-j+1},   J_s = ds_s/ds_{s-1} (W, W),

the state being the whole recurrent state s_t: h_t for the Elman cell and the GRU, the pair
[h_t, c_t] for the LSTM (its c_t carries gradient as much as h_t). For the Elman cell
J_s = diag(act'(a_s)) W, so ||dL_t/dh_{t-j}|| <= ||dL_t/dh_t|| (sigma_max(W) max act')^j: when
sigma_max(W) max act' < 1 (max act' = 1/4 for the sigmoid, 1 for tanh) the gradient must vanish
geometrically, and truncation after k lags loses at most a geometric tail (Aicher, Foti & Fox
2019). The gated cells' Jacobians have no such simple bound; `jacobian_facts` measures them.

`decay_profile` measures, for every lag j, for every cell (through the cell seam, like
`truncation_sweep`):
- `dh_norm[j]`: ||dL/ds_{T-j}|| (many-to-one) or the root mean square over the loss terms t of
  ||dL_t/ds_{t-j}|| (many-to-many), each a Frobenius norm over the batch and the whole state
  (for the LSTM h and c together; the name is kept from the Elman-only version);
- `piece_norm[j]`: the norm of the lag-j piece of the cell weights' gradient (U, W, b; or W_ih,
  W_hh, b_ih, b_hh), the part that Window(j - 1) drops and Window(j) keeps;
and fits a geometric rate `rate` to dh_norm (least squares on log dh_norm against j).

The bias bound: ||g - g_k|| = ||sum_{j>k} piece_j|| <= sum_{j>k} ||piece_j||. Over the lags
measured this is the triangle inequality on measured pieces; beyond them (a probe of L < T lags)
the pieces are extrapolated geometrically at `rate` from the last one measured. Relative to the
norm of the whole gradient (the cell's weights and V, c) it is what `truncation_sweep`'s
`l2_error` measures, so `bias_bound(k) >= sweep.l2_error[k]` whenever every lag is measured.
`adaptive_k(tol)` is the smallest k whose bound is at most `tol` (the adaptive truncation of
Aicher et al.).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._validate import check_h0, check_params, check_spec, check_xs
from ..bptt import Forward, forward_states, initial_state
from ..cells import cell_for, weights_of
from ..params import tree_map
from .sweep import lag_pieces, prepare

MAX_DERIVATIVE = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "identity": 1.0}   # max of act'(a)
SATURATED = 1e-2                                  # act'(a) / max act' below this: saturated


class DecayProfile(NamedTuple):
    """Gradient norm against lag, its geometric fit, and the truncation-bias bound it gives."""

    lags: np.ndarray          # (L,) 0..L-1
    dh_norm: np.ndarray       # (L,) ||dL/ds_{t-j}|| over the whole state (the LSTM: [h, c]);
                              # RMS over the loss terms t for many-to-many
    piece_norm: np.ndarray    # (L,) ||lag-j piece of the cell weights' gradient||_F
    rate: float               # fitted geometric rate beta: dh_norm[j] ~ scale * beta^j (nan: no fit)
    scale: float              # the fit's dh_norm at lag 0
    grad_norm: float          # ||full gradient (every array)|| (many-to-many: an estimate
                              # when L < T)
    T: int                    # sequence length: lags 0..T-1 exist
    complete: bool            # every lag measured (L == T): the bound is rigorous

    def bias_bound(self, k) -> np.ndarray:
        """Bound on ||g_k - g|| / ||g|| for Window(k), k an int or array of ints >= 0."""
        k = np.asarray(k)
        tail = np.array([self._tail(int(kk)) for kk in np.ravel(k)])
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(tail == 0, 0.0, tail / self.grad_norm if self.grad_norm > 0 else np.inf)
        return out.reshape(k.shape)

    def _tail(self, k: int) -> float:
        """sum_{j>k} ||piece_j||: measured pieces, then the geometric extrapolation."""
        L = len(self.lags)
        measured = float(np.sum(self.piece_norm[k + 1:L])) if k + 1 < L else 0.0
        first = max(L, k + 1)                      # first lag not measured (and beyond k)
        n = self.T - first                         # lags first..T-1 are extrapolated
        if n <= 0:
            return measured
        beta = self.rate
        if not np.isfinite(beta):
            return math.inf
        last = self.piece_norm[L - 1]
        # sum_{j=first}^{T-1} last * beta^(j - (L-1))
        ratio = beta ** (first - (L - 1))
        geom = n if beta == 1 else (1 - beta ** n) / (1 - beta)
        return measured + last * ratio * geom

    def estimated_bias(self, k) -> np.ndarray:
        """The rate alone (Aicher et al.'s estimate): the share of a geometric profile beyond lag
        k, (beta^(k+1) - beta^T) / (1 - beta^T)."""
        k = np.minimum(np.asarray(k, dtype=float), self.T - 1)
        b, T = self.rate, self.T
        if not np.isfinite(b):
            return np.full(k.shape, np.nan)
        if b == 1:
            return (T - 1 - k) / T
        return (b ** (k + 1) - b ** T) / (1 - b ** T)


def adaptive_k(profile: DecayProfile, tol: float) -> int:
    """The smallest k whose bias bound is at most `tol` (T - 1, full BPTT, when none is)."""
    if not isinstance(profile, DecayProfile):
        raise ValueError(f"profile must be a DecayProfile (from decay_profile), got "
                         f"{type(profile).__name__}")
    if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and tol >= 0
                                     and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    bounds = profile.bias_bound(np.arange(profile.T))
    ok = np.nonzero(bounds <= tol)[0]
    return int(ok[0]) if len(ok) else profile.T - 1


def fit_rate(dh_norm) -> tuple[float, float]:
    """Least-squares fit log dh_norm[j] = log scale + j log rate over the positive entries
    (lag 0 left out when there are 3 or more lags: it carries the output layer's own transient).
    Returns (rate, scale); (nan, nan) when fewer than two usable lags."""
    g = np.asarray(dh_norm, dtype=float)
    j = np.arange(len(g))
    use = (g > 0) & np.isfinite(g)
    if len(g) >= 3:
        use[0] = False
    if use.sum() < 2:
        return math.nan, math.nan
    slope, icept = np.polyfit(j[use], np.log(g[use]), 1)
    return float(np.exp(slope)), float(np.exp(icept))


def decay_profile(params, xs, ys, spec, h0=None, max_lag=None) -> DecayProfile:
    """Measure the gradient decay over lags 0..max_lag (default: every lag, 0..T-1).

    params, xs, ys, h0: as for `hg.loss_and_grads` (any cell, head or not, any loss and
    reduction); spec: a `Spec` (its truncation is ignored); max_lag: int >= 0. Many-to-one
    measures every lag for the price of one backward pass; many-to-many costs one backward step
    of the whole sequence per lag.
    """
    return profile_prepared(prepare(params, xs, ys, spec, h0), max_lag)


def _sq(a) -> float:
    return float(np.vdot(a, a))


def profile_prepared(prep, max_lag=None) -> DecayProfile:
    """`decay_profile` on a problem already through `sweep.prepare` (shared by the study)."""
    T = prep.T
    if max_lag is None:
        max_lag = T - 1
    if isinstance(max_lag, bool) or not isinstance(max_lag, (int, np.integer)) or max_lag < 0:
        raise ValueError(f"max_lag must be an integer >= 0, got {max_lag!r}")
    L = min(int(max_lag), T - 1) + 1
    # V and c are never truncated: they enter the bias bound's denominator only
    vc_sq = sum(_sq(a) for a in (prep.side.dV, prep.side.dc) if a is not None)
    ds_loss = prep.side.ds_loss                    # (S, B, W): lag 0 of every loss term
    dh_norm, piece_norm = np.empty(L), np.empty(L)
    dh_norm[0] = math.sqrt(_sq(ds_loss) / ds_loss.shape[0])
    acc = None
    # many-to-one: every lag costs nothing more (one backward pass) and gives the exact ||g||
    last = T - 1 if prep.spec.output == "last" else L - 1
    for piece in lag_pieces(prep, last):
        parts = list(piece.grads.values())
        if piece.j < L:
            piece_norm[piece.j] = math.sqrt(sum(_sq(p) for p in parts))
        if piece.j + 1 < L:                        # the terms still going, one lag further back
            dh_norm[piece.j + 1] = math.sqrt(_sq(piece.ds_prev) / piece.ds_prev.shape[0])
        if acc is None:
            acc = [p.copy() for p in parts]
        else:
            for a, p in zip(acc, parts):
                a += p
    grad_sq = sum(_sq(a) for a in acc) + vc_sq
    rate, scale = fit_rate(dh_norm)
    return DecayProfile(np.arange(L), dh_norm, piece_norm, rate, scale, math.sqrt(grad_sq), T,
                        L == T)


class JacobianFacts(NamedTuple):
    """Why gradients vanish (or may explode): the one-step Jacobian J_t = ds_t/ds_{t-1} (W, W).

    The a-priori fields are the Elman cell's, J_t = diag(act'(a_t)) W; they are nan for the GRU
    and the LSTM, whose Jacobians mix gates, W_hh and the direct paths (z_t h_{t-1}, f_t c_{t-1})
    with no bound as simple. `jacobian_max` is measured the same way for every cell.
    """

    sigma_max_W: float        # largest singular value of W (gated cells: of W_hh, (G H, H))
    max_derivative: float     # max over a of act'(a): 1/4 (sigmoid), 1 (tanh); gated: nan
    jacobian_bound: float     # sigma_max_W * max_derivative >= ||J_t||_2 for every t; gated: nan
    observed_bound: float     # sigma_max_W * the largest act'(a_t) actually seen; gated: nan
    saturated_fraction: float  # share of (t, b, unit) with act'(a_t) < SATURATED * max act';
                               # gated: nan
    jacobian_max: float       # the largest exact ||J_t||_2 over the (t, b) pairs measured
    pairs: int                # (t, b) pairs measured: all of them up to MAX_PAIRS, else evenly
                              # spaced (then jacobian_max is a lower bound of the maximum)

    def as_dict(self) -> dict:
        return self._asdict()


MAX_PAIRS = 64                # Jacobians measured exactly by `jacobian_facts` (each W x W)


def jacobian_facts(params, xs, spec, h0=None, max_pairs: int = MAX_PAIRS) -> JacobianFacts:
    """The Jacobian facts of `params` on the inputs `xs` (B, T, D), any cell; h0 as for
    `hg.loss_and_grads`. max_pairs: how many (t, b) Jacobians to measure exactly (>= 1)."""
    spec = check_spec(spec)
    params = check_params(params, spec)
    xs = check_xs(xs, params.sizes[0])
    h0 = check_h0(h0, xs.shape[0], params.sizes[1], spec)
    xs_tm = np.ascontiguousarray(np.swapaxes(xs, 0, 1))
    fwd = forward_states(params, xs_tm, initial_state(h0, xs.shape[0], params.sizes[1], spec),
                         spec)
    return facts_from(params, spec, fwd, max_pairs)


def facts_from(params, spec, fwd: Forward, max_pairs: int = MAX_PAIRS) -> JacobianFacts:
    """`JacobianFacts` from the parameters and a forward pass (states (T + 1, B, W), cache)."""
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, (int, np.integer)) or max_pairs < 1:
        raise ValueError(f"max_pairs must be an integer >= 1, got {max_pairs!r}")
    cell = cell_for(spec)
    w = weights_of(params)
    smax = float(np.linalg.norm(w.W_rec, 2))
    T, B = fwd.states.shape[0] - 1, fwd.states.shape[1]
    n = min(T * B, int(max_pairs))
    flat = np.unique(np.linspace(0, T * B - 1, n).round().astype(np.int64))   # evenly spaced
    J = state_jacobians(cell, w, fwd, flat // B + 1, flat % B)
    jmax = float(np.linalg.norm(J, 2, axis=(1, 2)).max())
    if spec.cell != "elman":
        nan = math.nan
        return JacobianFacts(smax, nan, nan, nan, nan, jmax, len(flat))
    dact = fwd.cache                                             # Elman: act'(a_t) (T, B, H)
    top = MAX_DERIVATIVE[spec.activation]
    return JacobianFacts(smax, top, smax * top, smax * float(dact.max()),
                         float(np.mean(dact < SATURATED * top)), jmax, len(flat))


def state_jacobians(cell, w, fwd: Forward, ts, bs) -> np.ndarray:
    """The exact one-step Jacobians J = ds_t/ds_{t-1} (N, W, W) at the steps ts (N,) in 1..T of
    the batch elements bs (N,), through the cell's backward step alone.

    `cell.back` maps a row dL/ds_t to dL/ds_{t-1} = dL/ds_t J_t, so the unit rows e_i give the
    rows of J_t. Each pair becomes one step of a batch of N W one-step problems (pair p, unit i
    at batch position p W + i), gathered from the forward pass: the cache is an array or a
    NamedTuple of arrays indexed (t, b, ...), as every cell's is.
    """
    Wd = fwd.states.shape[-1]
    ts, bs = np.asarray(ts), np.asarray(bs)

    def gather(a, steps):                        # (len(steps), N W, ...): each pair W times
        return np.repeat(np.stack([a[t, bs] for t in steps]), Wd, axis=1)

    states = gather(fwd.states, (ts - 1, ts))                    # s_{t-1}, s_t of every pair
    cache = tree_map(lambda a: gather(a, (ts - 1,)), fwd.cache)  # step t's cache entry
    units = np.tile(np.eye(Wd), (len(ts), 1))[None]              # (1, N W, W)
    _, _, rows = cell.back(w, cache, states, 0, 1, units)        # e_i J_t for every pair
    return rows[0].reshape(len(ts), Wd, Wd)
