"""How fast the backpropagated gradient decays with the lag, and what truncation that allows.

Size letters: B batch, T time steps, D inputs, H hidden units, L lags measured.

For the loss term at step t, the gradient with respect to the state j steps earlier is

    dL_t/dh_{t-j} = dL_t/dh_t  J_t J_{t-1} ... J_{t-j+1},   J_s = diag(act'(a_s)) W,

so ||dL_t/dh_{t-j}|| <= ||dL_t/dh_t|| (sigma_max(W) max act')^j: when sigma_max(W) max act' < 1
(max act' = 1/4 for the sigmoid, 1 for tanh) the gradient must vanish geometrically, and
truncation after k lags loses at most a geometric tail (Aicher, Foti & Fox 2019).

`decay_profile` measures, for every lag j:
- `dh_norm[j]`: ||dL/dh_{T-j}|| (many-to-one) or the root mean square over the loss terms t of
  ||dL_t/dh_{t-j}|| (many-to-many), each a Frobenius norm over the batch;
- `piece_norm[j]`: the norm of the lag-j piece of the (U, W, b) gradient, the part that
  Window(j - 1) drops and Window(j) keeps;
and fits a geometric rate `rate` to dh_norm (least squares on log dh_norm against j).

The bias bound: ||g - g_k|| = ||sum_{j>k} piece_j|| <= sum_{j>k} ||piece_j||. Over the lags
measured this is the triangle inequality on measured pieces; beyond them (a probe of L < T lags)
the pieces are extrapolated geometrically at `rate` from the last one measured. Relative to the
norm of the whole gradient (U, W, V, b, c) it is what `truncation_sweep`'s `l2_error` measures,
so `bias_bound(k) >= sweep.l2_error[k]` whenever every lag is measured. `adaptive_k(tol)` is
the smallest k whose bound is at most `tol` (the adaptive truncation of Aicher et al.).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._validate import check_h0, check_params, check_spec, check_xs
from ..bptt import forward_states, initial_state
from .sweep import lag_pieces_all, lag_pieces_last, output_layer_grads, prepare, require_elman_with_head

MAX_DERIVATIVE = {"sigmoid": 0.25, "tanh": 1.0}   # max over a of act'(a)
SATURATED = 1e-2                                  # act'(a) / max act' below this: saturated


class DecayProfile(NamedTuple):
    """Gradient norm against lag, its geometric fit, and the truncation-bias bound it gives."""

    lags: np.ndarray          # (L,) 0..L-1
    dh_norm: np.ndarray       # (L,) ||dL/dh_{t-j}|| (RMS over loss terms t for many-to-many)
    piece_norm: np.ndarray    # (L,) ||lag-j piece of (dU, dW, db)||_F
    rate: float               # fitted geometric rate beta: dh_norm[j] ~ scale * beta^j (nan: no fit)
    scale: float              # the fit's dh_norm at lag 0
    grad_norm: float          # ||full gradient (U, W, V, b, c)|| (an estimate when L < T)
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

    params: `Params`; xs: (B, T, D); ys as for `loss_and_grads`; spec: a `Spec` (its truncation
    is ignored); h0: (B, H) or None; max_lag: int >= 0. Many-to-one measures every lag for the
    price of one backward pass; many-to-many costs one (T B, H) x (H, H) product per lag.
    """
    return profile_prepared(prepare(params, xs, ys, spec, h0), max_lag)


def profile_prepared(prep, max_lag=None) -> DecayProfile:
    """`decay_profile` on a problem already through `sweep.prepare` (shared by the study)."""
    T = prep.fwd.cache.shape[0]
    if max_lag is None:
        max_lag = T - 1
    if isinstance(max_lag, bool) or not isinstance(max_lag, (int, np.integer)) or max_lag < 0:
        raise ValueError(f"max_lag must be an integer >= 0, got {max_lag!r}")
    L = min(int(max_lag), T - 1) + 1
    # V and c are never truncated: they enter the bias bound's denominator only
    dV, dc = output_layer_grads(prep)
    vc_sq = float(np.sum(dV * dV)) + (float(dc @ dc) if dc is not None else 0.0)
    if prep.spec.output == "last":
        pieces = lag_pieces_last(prep)           # time order: lag j is entry T - 1 - j
        sq = np.zeros(T)
        total = 0.0
        for name in ("U", "W", "b"):
            a = getattr(pieces, name)
            if a is not None:
                flat = a.reshape(T, -1)
                sq += np.einsum("tp,tp->t", flat, flat)
                s = flat.sum(axis=0)
                total += float(s @ s)
        piece_norm = np.sqrt(sq[::-1])[:L]
        dh_norm = pieces.dh_norm[:L]
        grad_sq = total + vc_sq
    else:
        dh_norm, piece_norm = np.empty(L), np.empty(L)
        acc = None
        carry0_sq = 0.0                           # ||dL_j/dh_0||^2, the lag-j term reaching h_0
        for step in lag_pieces_all(prep, L - 1):
            n_terms = step.dh.shape[0] + (1 if step.j > 0 else 0)
            dh_norm[step.j] = math.sqrt((float(np.sum(step.dh * step.dh)) + carry0_sq) / n_terms)
            carry0_sq = float(np.sum(step.h0 * step.h0))
            parts = [step.U, step.W] + ([step.b] if step.b is not None else [])
            piece_norm[step.j] = math.sqrt(sum(float(np.sum(p * p)) for p in parts))
            acc = [p.copy() for p in parts] if acc is None else [a + p for a, p in zip(acc, parts)]
        grad_sq = sum(float(np.sum(a * a)) for a in acc) + vc_sq
    rate, scale = fit_rate(dh_norm)
    return DecayProfile(np.arange(L), dh_norm, piece_norm, rate, scale, math.sqrt(grad_sq), T,
                        L == T)


class JacobianFacts(NamedTuple):
    """Why gradients vanish (or may explode): the one-step Jacobian J_t = diag(act'(a_t)) W."""

    sigma_max_W: float        # largest singular value of W
    max_derivative: float     # max over a of act'(a): 1/4 (sigmoid), 1 (tanh)
    jacobian_bound: float     # sigma_max_W * max_derivative >= ||J_t||_2 for every t
    observed_bound: float     # sigma_max_W * the largest act'(a_t) actually seen
    saturated_fraction: float  # share of (t, b, unit) with act'(a_t) < SATURATED * max act'

    def as_dict(self) -> dict:
        return self._asdict()


def jacobian_facts(params, xs, spec, h0=None) -> JacobianFacts:
    """The Jacobian bound and saturation of `params` on the inputs `xs` (B, T, D)."""
    spec = check_spec(spec)
    require_elman_with_head(spec)
    params = check_params(params, spec)
    xs = check_xs(xs, params.sizes[0])
    h0 = check_h0(h0, xs.shape[0], params.sizes[1])
    xs_tm = np.ascontiguousarray(np.swapaxes(xs, 0, 1))
    dact = forward_states(params, xs_tm, initial_state(h0, xs.shape[0], params.sizes[1]),
                          spec).cache                                   # Elman: act'(a_t)
    return facts_from(params.W, dact, spec.activation)


def facts_from(W, dact, activation: str) -> JacobianFacts:
    """`JacobianFacts` from W (H, H) and the activation derivatives dact (T, B, H)."""
    top = MAX_DERIVATIVE[activation]
    smax = float(np.linalg.norm(W, 2))
    return JacobianFacts(smax, top, smax * top, smax * float(dact.max()),
                         float(np.mean(dact < SATURATED * top)))
