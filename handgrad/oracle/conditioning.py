"""How far a *correct* implementation in a given precision can be from the exact gradient.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

The normwise relative error max|a - e| / max|e| is ill-conditioned when a gradient is tiny because
every unit saturates: the textbook act'(a_t) = 1 - h_t^2 (or h_t (1 - h_t)), computed from a
rounded h_t, has an *absolute* error of a few units of round-off, so a correct float32 (or even
float64) implementation can be off by many times a gradient of 1e-13. Such a candidate is not
wrong, and the oracle must not say it is.

So a difference counts as a mismatch only when it also exceeds this round-off floor:

    floor_p = max (G_abs(delta) - G_abs(0))_p  +  n eps max G_abs(0)_p

where G_abs(delta) is the hand BPTT run on absolute values (|W|, |V|, |x_t|, |h_t|, |dL/do_t|)
with act'(a_t) replaced by |act'(a_t)| + delta, delta = 2 eps of the candidate's dtype (the
absolute error of act' computed from h), so its first term bounds the effect of those errors;
the second is the classic n eps bound on accumulated sums (n = T (B + D + H + O)). For
well-conditioned cases the floor is orders of magnitude below rtol * max|e| and changes nothing.
"""
from __future__ import annotations

import numpy as np

from ..bptt import Forward, backward, forward_states, initial_state, output_states, outputs, time_major
from ..losses import loss_and_output_grad


def roundoff_floor(case, dtype) -> dict:
    """name -> the largest difference round-off in `dtype` can explain, for U, W, V, b, c, h0."""
    eps = float(np.finfo(np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.float64).eps)
    spec = case.spec
    xs_tm, ys_tm = time_major(case.xs, case.ys, spec)
    B, T, D = case.xs.shape
    H, O = case.params.W.shape[0], case.params.V.shape[0]
    fwd = forward_states(case.params, xs_tm, initial_state(case.h0, B, H), spec)
    os = outputs(case.params, output_states(fwd.states, spec.output))
    _, dos = loss_and_output_grad(os, ys_tm, spec.loss, spec.reduction)
    absolute = case.params._replace(**{k: np.abs(v) for k, v in case.params.arrays().items()})
    hs_abs, dact_abs = np.abs(fwd.states), np.abs(fwd.cache)

    def g_abs(delta):
        grads, dh0, _ = backward(absolute, np.abs(xs_tm), Forward(hs_abs, dact_abs + delta),
                              np.abs(dos), spec)
        out = grads.arrays()
        out["h0"] = dh0
        return out

    base, bumped = g_abs(0.0), g_abs(2 * eps)
    n = T * (B + D + H + O)
    return {k: float(np.max(bumped[k] - base[k], initial=0.0)
                     + n * eps * np.max(base[k], initial=0.0)) for k in base}
