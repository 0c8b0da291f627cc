"""UORO, unbiased online recurrent optimization (Tallec & Ollivier 2018): a random rank-one
estimate of RTRL's influence matrix, carried forward in O(B (H + P)) memory and time per step.

Size letters: B batch, T time steps, D inputs, H hidden units, Z = H + D (+ 1 with a bias),
P = H Z. Theta = [W | U | b] and M_t = dh_t/dTheta as in `rtrl`; J_t = diag(act'(a_t)) W is
dh_t/dh_{t-1} and G_t = dh_t/dTheta with h_{t-1} held fixed (G_t[k, i, j] = act'(a_t[k])
delta_ki z_t[j]), so RTRL is M_t = J_t M_{t-1} + G_t.

UORO keeps M_t ~ ht_t (x) tt_t (ht (H,), tt (H, Z); each sample its own pair), from ht_0 = 0,
tt_0 = 0. At every step, with nu a vector of H independent random signs:

    ht_t = rho0 J_t ht_{t-1} + rho1 nu
    tt_t = tt_{t-1} / rho0 + (nu^T G_t) / rho1                  (nu^T G_t)[i, j] = nu_i act'_i z_j
    rho0 = sqrt((||tt_{t-1}|| + eps) / (||J_t ht_{t-1}|| + eps)),
    rho1 = sqrt((||nu^T G_t|| + eps) / (||nu|| + eps))

and the gradient estimate is sum_t (dL_t/dh_t . ht_t) tt_t for (U, W, b) (V and c exact).

Why it is unbiased, exactly: expanding, ht_t tt_t^T = J ht tt^T + G_t (from nu nu^T) plus two
cross terms, each a sign vector nu times a function of nu that is even in nu (rho1 depends on nu
only through |nu^T G|, and |-nu^T G| = |nu^T G|); with E[nu] = 0 and E[nu nu^T] = I they vanish
in expectation, so E[ht_t tt_t^T | past] = J_t ht_{t-1} tt_{t-1}^T + G_t, and by induction
E[ht_t tt_t^T] = M_t for any positive rho0, rho1 (eps included). The signs take finitely many
values, so `uoro_expectation` computes the expectation exactly by summing over every one of the
2^(T B H) sign patterns (tiny sizes only): it equals the full gradient to round-off.

The rho's minimise the variance of the step's new noise, but the noise of every step stays in
the estimate (only the Jacobians can shrink it): the variance grows with T unless the recurrence
contracts (see docs/estimators.md).
"""
from __future__ import annotations

import itertools
from typing import Callable, NamedTuple

import numpy as np

from ._online import Method, Problem, as_params, grouped_pass, problem, split_theta
from ..params import Params

EPS = 1e-7                    # the paper's epsilon in rho0, rho1
MAX_ENUMERATED_SIGNS = 18     # 2^(T B H) sign patterns for the exact expectation


class RankOne(NamedTuple):
    h: np.ndarray             # (B, H)    ht_t
    th: np.ndarray            # (B, H, Z) tt_t


def uoro_method(signs: Callable[[], np.ndarray], eps: float = EPS) -> Method:
    """UORO as a `Method`; signs() returns the next step's (B, H) array of +-1."""

    def init(B, H, Z):
        return RankOne(np.zeros((B, H)), np.zeros((B, H, Z)))

    def advance(carry, W, z, d):
        nu = signs()                                               # (B, H) independent +-1
        Jh = d * (carry.h @ W.T)                                   # J_t ht_{t-1}: through W, act'
        nuG = (nu * d)[:, :, None] * z[:, None, :]                 # nu^T G_t: (B, H, Z)
        rho0 = np.sqrt((_norm(carry.th) + eps) / (_norm(Jh) + eps))[:, None]
        rho1 = np.sqrt((_norm(nuG) + eps) / (_norm(nu) + eps))[:, None]
        h = rho0 * Jh + rho1 * nu
        th = carry.th / rho0[:, :, None] + nuG / rho1[:, :, None]
        return RankOne(h, th)

    def readout(carry, dh):
        # dL_t/dh_t . ht_t, times tt_t, per sample
        return np.einsum("bk,bk->b", dh, carry.h)[:, None, None] * carry.th

    return Method("uoro", init, advance, readout)


def _norm(a) -> np.ndarray:
    """Per-sample Frobenius norm of a (B, ...) array -> (B,)."""
    flat = a.reshape(a.shape[0], -1)
    return np.sqrt(np.einsum("bp,bp->b", flat, flat))


def _check_signs(signs, T: int, B: int, H: int) -> np.ndarray:
    arr = np.asarray(signs, dtype=float)
    if arr.shape != (T, B, H) or not np.all(np.abs(arr) == 1):
        raise ValueError(f"signs must be an array of +-1 of shape (T, B, H) = ({T}, {B}, {H}), "
                         f"got shape {arr.shape}")
    return arr


def _seed(seed):
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be None, a non-negative integer or a numpy Generator, "
                         f"got {seed!r}")
    return np.random.default_rng(int(seed))


def sign_source(signs: np.ndarray) -> Callable[[], np.ndarray]:
    """signs (T, B, H) -> a function returning signs[0], signs[1], ... in turn."""
    rows = iter(signs)
    return lambda: next(rows)


def random_signs(rng, B: int, H: int) -> Callable[[], np.ndarray]:
    """A function returning a fresh (B, H) array of independent, equally likely +-1."""
    return lambda: rng.integers(0, 2, (B, H)) * 2.0 - 1.0


def uoro_pass(prob: Problem, signs: np.ndarray):
    return grouped_pass(prob, uoro_method(sign_source(signs)), group=prob.xs.shape[0])


def uoro_grads(params, xs, ys, spec, h0=None, seed=None, signs=None):
    """One UORO estimate of the full gradient. Returns (loss, grads).

    params: `Params`; xs: (B, T, D); ys as for `hg.loss_and_grads`; spec: an Elman `Spec` with
    truncation None; h0: (B, H) or None; seed: None, an int or a numpy Generator for the signs;
    signs: (T, B, H) of +-1 to use instead (then `seed` is ignored).
    The loss is exact; V and c are exact; (U, W, b) are an unbiased random estimate.
    """
    prob = problem(params, xs, ys, spec, h0, "uoro_grads")
    B, T, _ = prob.xs.shape
    H = prob.params.sizes[1]
    if signs is None:
        signs = _seed(seed).integers(0, 2, (T, B, H)) * 2.0 - 1.0
    res = uoro_pass(prob, _check_signs(signs, T, B, H))
    return res.loss, as_params(res, prob)


class UoroExpectation(NamedTuple):
    mean: Params              # the exact expectation of the UORO gradient
    variance: float           # E ||g - E g||^2 over all parameters
    n_outcomes: int           # 2^(T B H) sign patterns, equally likely


def all_signs(T: int, B: int, H: int) -> np.ndarray:
    """Every sign pattern: (T, N B, H) with N = 2^(T B H); pattern n is batch rows n B .. n B + B-1."""
    bits = T * B * H
    if bits > MAX_ENUMERATED_SIGNS:
        raise ValueError(f"the exact UORO expectation enumerates 2^(T B H) sign patterns; "
                         f"T B H = {T} * {B} * {H} = {bits} is more than {MAX_ENUMERATED_SIGNS}")
    pats = np.array(list(itertools.product((-1.0, 1.0), repeat=bits)))      # (N, T B H)
    N = len(pats)
    return pats.reshape(N, T, B, H).transpose(1, 0, 2, 3).reshape(T, N * B, H)


def uoro_expectation(params, xs, ys, spec, h0=None) -> UoroExpectation:
    """The exact mean and total variance of `uoro_grads` over its finite distribution (every
    sign pattern of every step, equally likely), all patterns in one batched pass."""
    prob = problem(params, xs, ys, spec, h0, "uoro_expectation")
    B, T, _ = prob.xs.shape
    D, H, _ = prob.params.sizes
    signs = all_signs(T, B, H)
    N = signs.shape[1] // B
    # the problem repeated N times along the batch: copy n meets sign pattern n
    rep = prob._replace(xs=np.tile(prob.xs, (N, 1, 1)), h0=np.tile(prob.h0, (N, 1)),
                        ys=np.tile(prob.ys, (N,) + (1,) * (prob.ys.ndim - 1)))
    res = uoro_pass(rep, signs)
    per = res.per_sample.reshape((N, B, -1)).sum(axis=1)                    # (N, P)
    by_param = np.ascontiguousarray(per.T)                                   # (P, N)
    mean = by_param.sum(axis=1) / N                # pairwise summation along N: O(log N) round-off
    dev = by_param - mean[:, None]
    var = float(np.einsum("pn,pn->", dev, dev)) / N
    dU, dW, db = split_theta(mean.reshape(H, -1), D, prob.params.b is not None)
    # V and c do not depend on the signs: any one pattern gives them exactly
    one = uoro_pass(prob, signs[:, :B])
    return UoroExpectation(Params(dU, dW, one.dV, db, one.dc), var, N)
