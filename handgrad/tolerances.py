"""The one tolerance table, and the one comparison metric used by tests, the oracle and the CLI.

Metric: normwise relative error of a whole array, max|actual - expected| / max|expected|
(0 when both are all zeros, inf when only `expected` is).

Why each bound (float64, unit round-off u = 1.1e-16):
- "jax": the hand BPTT and JAX autodiff evaluate the same formulas in a different order; each
  gradient element is a sum of O(T * H) products, so differences are O(T * H * u) ~ 1e-12 for the
  sizes tested, well below 1e-10.
- "complex_step": no subtraction, step 1e-20 makes the O(h^2) term vanish; only round-off of the
  forward pass remains: ~ 1e-14 .. 1e-13. Bound 1e-12.
- "central": O(e^2 f''') + O(u f / e) with e = 6e-6 -> about 1e-10 relative for well-scaled
  problems; 1e-6 leaves room for third derivatives of saturating units.
- "central_roundoff": the O(u f / e) term is *absolute*: rounding the loss f(x +- e) by a few
  ulps of |f| puts about u |f| / e into every central difference, whatever the gradient. Where
  saturated units make the gradient tiny next to the loss (a unit at a = -18: gradient 4e-8,
  loss 0.09), that term alone is 1e-5 of the gradient. So a central difference may also differ by
  central_roundoff * u * |f| / e (in ulps of the loss; measured up to 1.4 on such cases, bound 8),
  see `numdiff.central_roundoff`.
- "float64" / "float32" / "ulps": a candidate implementation, judged per returned array in that
  array's dtype, by the error model below (evaluated per case by `oracle.conditioning`).

The candidates' error model (eps = machine epsilon of the dtype, u = eps / 2 the unit round-off,
gamma(n) = n u / (1 - n u) the bound of n roundings, Higham 2002, ch. 3). A correct candidate
evaluates the same formulas with
  (a) its sums in any order: a sum of n terms is off by at most gamma(n) * (the same sum of the
      terms' absolute values), whatever the order (blocked BLAS, pairwise, FMA included);
  (b) its elementary functions (tanh, sigmoid, exp, log) within "ulps" ulps of the exact value,
      so |h~ - h| <= ulps * eps * |h| (an ulp of x is at most eps |x|). Measured in float64
      against 200-digit values (mpmath), 25,000 points: numpy tanh 1.1 ulps, 1/(1 + exp(-a))
      1.9, jax.nn.sigmoid 1.9, XLA's (jax.numpy) tanh 6.5 near saturation (a = 18..20; float32:
      3.8). "ulps" = 8 covers XLA with 1.2x to spare; a library worse than that is not "a few
      ulps off" and its errors are rightly reported;
  (c) act' computed from the output, as autodiff and tutorials do. With h~ = h + e:
        tanh:    1 - h~^2 (or (1 - h~)(1 + h~)) = act' - 2 h e + roundings:
                 |error| <= 2 |h| e_h + eps h^2 + (ulps + 2) eps act'
        sigmoid: h~ (1 - h~) = act' + (1 - 2h) e + roundings:
                 |error| <= |1 - 2h| e_h + (ulps + 2) eps act'
      (the last term also covers act' computed from a_t by a function ulps off). Near
      saturation act' -> 0 but 2 |h| e_h -> 2 ulps eps: an *absolute* error that can exceed the
      exact act' (a = 19: act' = 1.3e-16, XLA's 1 - tanh^2 off by 1.4e-15).
  (d) the GRU's 1 - z_t by a subtraction (PyTorch computes h_t = n_t + z_t (h_{t-1} - n_t), and
      autograd's dn = dh - z dh): off by the *absolute* error of z_t plus eps (1 - z_t), where
      the hand BPTT's sigmoid(-a_z) is relatively exact as z_t -> 1.
First-order forward error analysis, per element (e_x: the bound on the error of x; s' the
derivative of a gate s; all operations elementwise unless a product with a matrix):
  every cell: the pre-activations, a sum of n = D + H + 3 (4 with two biases) terms,
           e_a_t = gamma(n) (|W_in||x_t| + |b_in| + |W_rec||h_{t-1}| + |b_rec|) + |W_rec| e_h_{t-1}
           (the extra terms: products, the biases, rounding W, x to the dtype); a gate or unit
           s = f(a) within `ulps`: e_s = |s'| e_a + ulps eps |s|; s' from the output: (c)
  Elman    e_h_t = |act'(a_t)| e_a_t + ulps eps |h_t|
  GRU      r, z, n as above; reset after: inner = W_hn h_{t-1} + b_hn (a sum of H + 2),
           e_an = gamma(D + 3)(|W_in x| + |b_in| + |r inner|) + |r| e_inner + |inner| e_r;
           reset before: inner = r h_{t-1}, e_inner = |h_{t-1}| e_r + |r| e_h_{t-1} + eps |inner|,
           e_an = gamma(D + H + 3)(...) + |W_hn| e_inner;
           e_(1-z) = |z'| e_az + ulps eps (z + (1 - z)) + eps (1 - z)                          (d)
           e_h_t = (1 - z) e_n + |n| e_(1-z) + |h_{t-1}| e_z + z e_h_{t-1}
                   + 2 eps (|h_{t-1}| + |n| + |h_t|)    (either form of the step, its roundings)
  LSTM     i, f, g, o as above; e_c_t = |c_{t-1}| e_f + |g| e_i + |i| e_g + f e_c_{t-1}
                   + eps (|f c_{t-1}| + |i g| + |c_t|);
           e_tanh(c) = |tanh'(c)| e_c + ulps eps |tanh c|;  e_h_t = |tanh c| e_o + o e_tanh(c) + eps |h_t|
  outputs  e_o_t = gamma(H + 3) (|V||h_t| + |c|) + |V| e_h_t
  dL/do    squared: scale (e_o + eps (|y| + |o - y|)); cross-entropy: the softmax's
           p (e_o + max e_o + eps |z| + (ulps + O + 2) eps) plus eps |dL/do|
  the cache (what the backward step reads: act'(a_t); the gates, their derivatives, the GRU's
           inner and 1 - z, the LSTM's tanh(c_t) and 1 - tanh^2(c_t)) is off by the bounds above.

1. The worst-case bound. Every local error at its bound with the worst sign:
  gradient G~ - G <= [G_abs(|s| + e_s, |cache| + e_cache, |dL/do| + e_do) - G_abs(|s|, |cache|,
           |dL/do|)] + gamma(n_b) G_abs(|s|, |cache|, |dL/do|)
where G_abs is the hand backward pass run on magnitudes (|weights|, |x_t|, |states|, |cache|): each
cell's backward step is a sum of products, so on magnitudes it bounds every term of every sum; the
one difference, the GRU's dz = ds (h_{t-1} - n_t), becomes |h_{t-1}| + |n_t| by passing -|n_t|.
It is multilinear, so the bracket bounds the first-order effect of e_s, e_cache and e_do, and
  n_b = T (B + H + O + 4) + 4 (Elman), T (B + G H + O + 8) + 4 (G gate blocks) (`sum_depth`):
        along the longest path a term meets, per time step, a sum of O + G H terms (V^T do_t +
        W_rec^T dP_{t+1}), its products and the rounded weights, a few products by gates and
        derivatives and the sum over overlapping sweeps; then the sum over the B T terms of the
        weight gradients. D is not on that path (dW_in's terms are single products).
The loss: the output errors through dL/do, the round-off of every loss term and of their sum. The
hand BPTT's own round-off has the same form with fewer ulps, so the model is evaluated at
eps = eps(dtype) + eps(float64): it bounds the *difference* of the two.
Rigorous to first order, but |W_rec| in the recursions assumes every error keeps its sign through
every step: with mixed-sign weights it grows like (|W_rec| act')^T, 1e228 times the gradient at
(B, T, D, H, O) = (16, 50, 8, 64, 8) with weights N(0, 1/H), inf at (64, 200, 16, 256, 16),
while correct candidates stay at 1e-15 (float64), 1e-6 (float32). It would pass any answer there.

2. The probabilistic bound (Higham & Mary, "A new approach to probabilistic rounding error
analysis", SIAM J. Sci. Comput. 41 (2019)): the roundings of a correct candidate are independent,
mean-zero random variables (|delta| <= u), the model in which rounding errors of long
computations grow like sqrt(n), not n. Then
  (e) a sum of n terms (any order whose partial sums s_k are not correlated with the signs of
      the terms: pairwise, blocked BLAS, left to right; not "all positive terms first") is off
      by sum_k delta_k s_k, of standard deviation <= u sqrt(sum_k s_k^2) <= u sqrt(n)
      sqrt(s^2 + sum_j x_j^2) (a random walk of the x_j around the straight line to s: each
      partial sum is at most about that size), the standard deviation used for every sum;
  (f) an elementary function within `ulps` is off by at most ulps eps |value|: used as its
      standard deviation (real libraries: 0.5 to 2 ulps), and separately as a bias (g);
  (g) a library may round its sigmoid and tanh *coherently* (XLA's tanh is high near
      saturation): such errors add up linearly, not like sqrt(n).
The first-order error of an answer, sum_i L_i delta_i over every local error i, is then measured
through the *signed* recursions of the hand BPTT itself (`oracle.conditioning._probe`): each
local error of (a)-(d) (with (e) for every sum: the pre-activations, inner, the outputs, V^T do_t,
each backward step's W_rec^T dP and the casts of the weights, x and h_0 to the dtype) is added
with a random sign, times a common scale PROBE_SIZE / eps (relative size ~1e-7: the probe stays
linear, and its own float64 round-off is ~1e-9 of the result), to the states after each step, to
the cache, to o_t, dL/do_t and to the gradient each backward step carries; the answers' change
over the scale is one sample of sum_i L_i r_i sigma_i (r_i = +-1), whose mean square is
sum_i L_i^2 sigma_i^2, the variance of the candidate's error in this model. The time sums of
the weight gradients (sum over B T terms), dV, dc and dx_t = W_in^T dP_t are the last operations:
their (e) is added in quadrature. A last, *coherent* probe moves every sigmoid and tanh up by
`ulps` ulps at once, with its consequences within each step (1 - 2s or -2t on the derivatives
from outputs, the cell's combination of the gates in the state, -d on 1 - z) (g). Per element,
  sd = sqrt(mean over TOLERANCES["probes"] = 4 probes of the change^2 + coherent change^2
            + the final sums' variance),
and the bound is TOLERANCES["probe_safety"] = 8 times sd, the largest over the elements. It grows
like the gradient (the signed Jacobian products), and like sqrt(n) in the sums. How often can a
correct candidate exceed it? For one element with Gaussian error of the model's standard
deviation and sd estimated from 4 probes, |error| > 8 sd has probability P(|t_4| > 8) = 1.3e-3;
the model's per-rounding variance sigma^2 is at least 3 times that of a rounding uniform in
[-sigma, sigma], which makes it P(|t_4| > 13.9) = 1.6e-4. Measured (docs/tolerances.md): correct
candidates reach at most 0.22 of it over 8000 candidate runs (2000 cases of every cell at
hg.check's sizes) and 0.10 at the long sizes. The probes are seeded by the case (the same case,
the same floor).

The round-off floor of an answer is the smaller of the two bounds (`oracle.conditioning.
roundoff_floor`); a difference beyond it is not round-off of a correct candidate. Where neither
can bound an answer (the probabilistic bound has no estimate, inf or NaN: values beyond 1e154,
whose squares overflow; and the worst case is inf, NaN or at least max|answer|, a bound that
allows a 100% error), the floor is inf and an answer beyond rtol is reported as *too
ill-conditioned to judge* (`Comparison.unjudged`, `CheckReport.unjudged`, "not judged" in
`handgrad compare`): never passed silently, never failed for a difference the model cannot
explain (tested: states of 1e160 over 40 steps).
The worst case decides where it is the smaller (small cases, positive weights): there no
correct candidate within the model can exceed it. Elsewhere the floor holds with the
probability above, under the assumptions (e)-(g): a candidate whose summation order sorts its
terms by sign, or whose library is biased in another direction than up, is outside them.

The default rtol ("float64", "float32") is the worst-case model for an array without
cancellation (G_abs = |G|) at hg.check's largest default sizes (B, T, D, H, O) = (3, 6, 3, 4, 3)
of the Elman cell: gamma(n_b = 88) at eps(dtype) + eps(float64) = 1.95e-14 (float64) and 5.2e-6
(float32), rounded up. An answer fails when its error exceeds both rtol * max|expected| and the
floor: where the floor is below rtol (small, well-conditioned cases) rtol only saves computing it;
above (saturation, cancellation, gated cells, larger sizes) the floor decides. So the float64
resolution is ~1e-13 at the default sizes (a wrong factor 1 + 1e-9 is flagged on every
well-conditioned case of every cell, tested) and ~3e-13 at (64, 200, 16, 256, 16) (see
docs/tolerances.md).
"""
from __future__ import annotations

import numpy as np

TOLERANCES = {
    "jax": 1e-10,
    "complex_step": 1e-12,
    "central": 1e-6,
    "central_roundoff": 8.0,
    "float64": 2e-14,      # gamma(88) at 2 eps(float64): the model at hg.check's default sizes
    "float32": 5.3e-6,     # gamma(88) at eps(float32) + eps(float64)
    "ulps": 8.0,           # elementary functions of a correct candidate: within 8 ulps
    "probes": 4,           # random probes of the probabilistic round-off bound
    "probe_safety": 8.0,   # its bound: this many estimated standard deviations (see above)
}


def rel_error(actual, expected) -> float:
    """max|actual - expected| / max|expected| (normwise relative error)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise ValueError(f"cannot compare shapes {a.shape} and {e.shape}")
    diff = float(np.max(np.abs(a - e), initial=0.0))
    scale = float(np.max(np.abs(e), initial=0.0))
    if diff == 0.0:
        return 0.0
    return diff / scale if scale > 0 else float("inf")


def cosine(a, b) -> float:
    """Cosine of the angle between two arrays (1.0 when both are zero)."""
    a = np.ravel(np.asarray(a, np.float64))
    b = np.ravel(np.asarray(b, np.float64))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


def gamma(n: int, eps: float) -> float:
    """Higham's gamma_n = n u / (1 - n u), u = eps / 2: the relative error bound of n roundings."""
    nu = n * eps / 2
    return nu / (1 - nu) if nu < 1 else float("inf")


def sum_depth(B: int, T: int, D: int, H: int, O: int, G: int = 1) -> int:
    """n_b: the most roundings a term meets on its way through the backward pass (see above);
    G gate blocks (1 Elman, 3 GRU, 4 LSTM)."""
    return T * (B + H + O + 4) + 4 if G == 1 else T * (B + G * H + O + 8) + 4


def tolerance_for(dtype) -> float:
    """The default tolerance for a candidate's array of `dtype` (integers: float64)."""
    d = np.dtype(dtype)
    return TOLERANCES["float32"] if d.kind == "f" and d.itemsize <= 4 else TOLERANCES["float64"]
