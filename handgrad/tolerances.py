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
- "float64" / "float32": a candidate implementation in that precision, computing the same sums in
  its own order with its own round-off: ~ 1e3 u of its type (errors grow with T and H).
"""
from __future__ import annotations

import numpy as np

TOLERANCES = {
    "jax": 1e-10,
    "complex_step": 1e-12,
    "central": 1e-6,
    "central_roundoff": 8.0,
    "float64": 2e-14,
    "float32": 5.3e-6,
    "ulps": 8.0,
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


def sum_depth(B: int, T: int, D: int, H: int, O: int) -> int:
    """n_b: the most roundings a term meets on its way through the backward pass (see above)."""
    return T * (B + H + O + 4) + 4


def tolerance_for(dtype) -> float:
    """The default tolerance for a candidate's array of `dtype` (integers: float64)."""
    d = np.dtype(dtype)
    return TOLERANCES["float32"] if d.kind == "f" and d.itemsize <= 4 else TOLERANCES["float64"]
