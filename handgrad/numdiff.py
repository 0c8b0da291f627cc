"""Numerical differentiation of the loss, for full and truncated BPTT alike.

A truncated gradient is the exact derivative of a *surrogate* loss in which the cut hidden
states h_cut are constants (their values at the point of differentiation). `surrogate_loss`
builds that function, one forward run per backward sweep of `spec.segments`, so central
differences and the complex step differentiate it like any other function.

Complex step: f'(x) v = Im f(x + i h v) / h, free of cancellation, exact to round-off for analytic
code (every operation of the forward pass is analytic; see `nonlin`).
Central differences: (f(x + e v) - f(x - e v)) / 2e, error O(e^2) + O(eps / e).

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.
"""
from __future__ import annotations

import numpy as np

from ._validate import as_float_array, check_inputs
from .bptt import forward_states, initial_state, outputs, time_major
from .losses import loss_count, loss_sum
from .params import Params
from .spec import segments
from .tolerances import TOLERANCES

COMPLEX_STEP = 1e-20    # any h far below sqrt(eps) works: there is no subtraction to cancel
CENTRAL_STEP = 6e-6     # ~ (3 eps)^(1/3): balances the O(e^2) and O(eps/e) errors, times max(1, |x|)


def central_roundoff(loss: float) -> float:
    """The absolute error that rounding the loss puts into a central difference with the
    smallest step: TOLERANCES["central_roundoff"] ulps of |loss| over CENTRAL_STEP."""
    return TOLERANCES["central_roundoff"] * np.finfo(np.float64).eps * abs(loss) / CENTRAL_STEP


def surrogate_loss(params: Params, xs_tm, ys_tm, spec, h0, anchor_hs):
    """The loss in which every cut state h_cut is the constant anchor_hs[cut].

    Its value equals the loss; its exact gradient at params = anchor is the truncated gradient.
    params, h0 may be complex. xs_tm: (T, B, D); ys_tm: (S, B, O) or (S, B) int;
    h0: (B, H); anchor_hs: (T + 1, B, H) real states at the point of differentiation.
    """
    T = xs_tm.shape[0]
    first_loss_step = 1 if spec.output == "all" else T
    total = 0.0
    for seg in segments(spec.truncation, T, spec.output):
        start = h0 if seg.cut == 0 else anchor_hs[seg.cut]          # h_cut: a constant
        hs = forward_states(params, xs_tm[seg.cut:seg.last], start, spec.activation,
                            derivative=False).hs
        os = outputs(params, hs[seg.first - seg.cut:])              # o_first .. o_last
        targets = ys_tm[seg.first - first_loss_step: seg.last - first_loss_step + 1]
        total = total + loss_sum(os, targets, spec.loss)
    S = T if spec.output == "all" else 1
    B, O = xs_tm.shape[1], params.V.shape[0]
    return total / loss_count(spec.loss, spec.reduction, (S, B, O))


class _Problem:
    """A validated problem, flattened: x = (U, W, V, b, c, h0) as one vector."""

    def __init__(self, params, xs, ys, spec, h0):
        params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
        self.spec = spec
        self.xs_tm, self.ys_tm = time_major(xs, ys, spec)
        B, H = xs.shape[0], params.W.shape[0]
        h0 = initial_state(h0, B, H)
        self.anchor_hs = forward_states(params, self.xs_tm, h0, spec.activation,
                                        derivative=False).hs
        self.names = [*params.arrays(), "h0"]
        self.arrays = [*params.arrays().values(), h0]
        self.x = np.concatenate([a.ravel() for a in self.arrays])

    def unflatten(self, x):
        out, i = [], 0
        for a in self.arrays:
            out.append(x[i:i + a.size].reshape(a.shape))
            i += a.size
        return out

    def loss(self, x):
        parts = dict(zip(self.names, self.unflatten(x)))
        h0 = parts.pop("h0")
        return surrogate_loss(Params(**parts), self.xs_tm, self.ys_tm, self.spec, h0,
                              self.anchor_hs)

    def derivative(self, v, method: str) -> float:
        """d/ds loss(x + s v) at s = 0."""
        if method == "complex":
            return float(np.imag(self.loss(self.x + 1j * COMPLEX_STEP * v)) / COMPLEX_STEP)
        if method == "central":
            # the step moves x by e |v|: scale it by 1 / |v| so a long direction does not
            # take a long step (the O(e^2) error grows with |v|^2); |v| = 1 per element
            norm = float(np.linalg.norm(v)) or 1.0
            e = CENTRAL_STEP * max(1.0, float(np.max(np.abs(self.x[v != 0]), initial=0.0))) / norm
            return float((self.loss(self.x + e * v) - self.loss(self.x - e * v)) / (2 * e))
        raise ValueError(f"method must be 'complex' or 'central', got {method!r}")

    def as_result(self, g):
        parts = dict(zip(self.names, self.unflatten(g)))
        dh0 = parts.pop("h0")
        return Params(**parts), dh0


def numerical_grads(params, xs, ys, spec, h0=None, method: str = "complex"):
    """Every element of the (truncated) gradient by numerical differentiation.

    One loss evaluation per element (two for central differences): for small problems.
    Returns (grads: Params, dh0: (B, H)) with the same conventions as `loss_and_grads`.
    """
    prob = _Problem(params, xs, ys, spec, h0)
    g = np.empty(prob.x.size)
    v = np.zeros(prob.x.size)
    for i in range(prob.x.size):
        v[i] = 1.0
        g[i] = prob.derivative(v, method)
        v[i] = 0.0
    return prob.as_result(g)


def directional_derivative(params, xs, ys, spec, direction: Params, h0=None,
                           direction_h0=None, method: str = "complex") -> float:
    """The derivative of the (surrogate) loss along `direction` (a Params of the same shapes,
    plus `direction_h0` (B, H) or None): one or two loss evaluations, for large problems.
    Compare with sum(grad * direction) of a gradient under test.
    """
    prob = _Problem(params, xs, ys, spec, h0)
    if not isinstance(direction, Params):
        raise ValueError(f"direction must be a handgrad.Params, got {type(direction).__name__}")
    given = {**{n: getattr(direction, n) for n in prob.names[:-1]}, "h0": direction_h0}
    parts = []
    for name, a in zip(prob.names, prob.arrays):   # None: no move along that array
        label = "direction_h0" if name == "h0" else f"direction.{name}"
        d = np.zeros(a.shape) if given[name] is None else as_float_array(label, given[name])
        if d.shape != a.shape:
            raise ValueError(f"{label} must have shape {a.shape} (that of {name}), got {d.shape}")
        parts.append(d.ravel())
    return prob.derivative(np.concatenate(parts), method)
