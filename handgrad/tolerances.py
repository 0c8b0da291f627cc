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
First-order forward error analysis of the Elman model then gives, per element:
  states   e_a_t = gamma(D + H + 3) (|U||x_t| + |W||h_{t-1}| + |b|) + |W| e_h_{t-1}
           e_h_t = |act'(a_t)| e_a_t + ulps eps |h_t|         (+3: products, the bias, and
                                                                 rounding U, x to the dtype)
  outputs  e_o_t = gamma(H + 3) (|V||h_t| + |c|) + |V| e_h_t
  dL/do    squared: scale (e_o + eps (|y| + |o - y|)); cross-entropy: the softmax's
           p (e_o + max e_o + eps |z| + (ulps + O + 2) eps) plus eps |dL/do|
  gradient G~ - G <= [G_abs(|h| + e_h, |act'| + delta, |dL/do| + e_do) - G_abs(|h|, |act'|,
           |dL/do|)] + gamma(n_b) G_abs(|h|, |act'|, |dL/do|)
where G_abs is the hand backward pass on absolute values (it bounds every term of every sum, and
it is multilinear, so the bracket bounds the first-order effect of e_h, delta and e_do), and
  n_b = T (B + H + O + 4) + 4 (`sum_depth`): along the longest path a term meets, per time step,
        a sum of O + H terms (V^T do_t + W^T da_{t+1}), its products and the rounded weights, one
        product by act' and the sum over overlapping sweeps; then the sum over the B T terms of
        dU, dW, db, dV, dc. D is not on that path (dU's terms are single products).
The loss gets the same treatment (the output errors through dL/do, the round-off of every loss
term and of their sum). The hand BPTT's own round-off has the same form with fewer ulps, so the
model is evaluated at eps = eps(dtype) + eps(float64): it bounds the *difference* of the two.
This is the round-off floor (`oracle.conditioning.roundoff_floor`); a difference beyond it is
not round-off of a correct candidate, to first order.

The default rtol ("float64", "float32") is the same model for an array without cancellation
(G_abs = |G|) at hg.check's largest default sizes (B, T, D, H, O) = (3, 6, 3, 4, 3): gamma(n_b =
88) at eps(dtype) + eps(float64) = 1.95e-14 (float64) and 5.2e-6 (float32), rounded up. An answer
fails when its error exceeds both rtol * max|expected| and the floor: where the floor is below
rtol (small, well-conditioned cases) rtol only saves computing it; above (saturation,
cancellation, larger sizes) the floor decides. So the float64 resolution is ~1e-13 at the
default sizes (a wrong factor 1 + 1e-9 is flagged on every well-conditioned case, tested), and
the margin is the model's: measured over 2000 random cases (docs/tolerances.md), correct
candidates built to sit at the model's limits (8 ulps in every activation, tanh above 1 included)
reach 0.94 of the allowed difference in float32 and 0.28 in float64. A worst-case bound that
adversarial candidates nearly attain is the point, not a lack of margin: no correct candidate
within the model can exceed it.

Limitation (open): |W| in the recursions assumes every rounding error adds up with the same sign
through every step. With mixed-sign weights, long sequences and many units (T = 50, H = 64,
weights N(0, 1/H)) that bound grows like (0.8 sqrt(H) act')^T and stops saying anything (1e228
times the gradient; inf at T = 200, H = 256), while correct candidates stay at 1e-15 (float64)
and 1e-6 (float32). There the floor accepts any difference: on such cases the oracle cannot flag
U, W, b, h0 (nor, through the states, V, c and the loss), as it could not before this model. A bound that propagates the local
errors through the signed recursion (probabilistic, Higham & Mary 2019) is the fix.
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
