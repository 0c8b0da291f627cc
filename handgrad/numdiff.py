"""Numerical differentiation of the loss, for full and truncated BPTT alike, every cell.

A truncated gradient is the exact derivative of a *surrogate* loss in which the cut states s_cut
are constants (their values at the point of differentiation). `surrogate_loss` builds that
function from the contract's definition directly, loss term by loss term: the term at step t
starts from the state s_cut(t), with cut(t) = max(0, tau(t) - k2) and tau(t) = k1 ceil(t / k1)
(`cut_of`), held constant unless cut(t) = 0. It shares nothing with the hand BPTT's sweeps
(`spec.segments`) or its loss divisor (`losses.loss_count`): both are written again here from
the contract, so a mistake in either would show up as a disagreement.

Complex step: f'(x) v = Im f(x + i h v) / h, free of cancellation, exact to round-off for analytic
code (every operation of the forward pass is analytic; see `nonlin`).
Central differences, the five-point stencil (8 [f(x + e v) - f(x - e v)] - [f(x + 2e v) -
f(x - 2e v)]) / 12e: truncation error e^4 |f^(5)| / 30 (the e^2 term of the two-point formula
cancels; it is large where saturating units make f''' large), round-off 18/12 u |f| / e.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.
"""
from __future__ import annotations

import math

import numpy as np

from ._validate import as_float_array, check_inputs
from .bptt import forward_states, hidden_states, initial_state, outputs, state_gradient, time_major
from .losses import loss_sum
from .tolerances import TOLERANCES

COMPLEX_STEP = 1e-20    # any h far below sqrt(eps) works: there is no subtraction to cancel
# the complex step carries a derivative f' in the imaginary part h f': once that falls below the
# smallest normal float (2.2e-308) it is subnormal and loses digits. Derivatives below this (with
# a factor 1e3 for the intermediate terms of a sum) are beyond what the complex step resolves:
# 2.2e-285. No smaller h helps, and a larger one brings back the O(h^2) error.
COMPLEX_RESOLUTION = 1e3 * np.finfo(np.float64).tiny / COMPLEX_STEP
CENTRAL_STEP = 6e-6     # times max(1, |x|): round-off u |f| / e ~ 2e-11 |f|; truncation ~ e^4 f^(5)


def central_roundoff(loss: float) -> float:
    """The absolute error that rounding the loss puts into a central difference with the
    smallest step: TOLERANCES["central_roundoff"] ulps of |loss| over CENTRAL_STEP."""
    return TOLERANCES["central_roundoff"] * np.finfo(np.float64).eps * abs(loss) / CENTRAL_STEP


def cut_of(truncation, t: int, T: int) -> int:
    """The contract's cut of the loss term at step t (1-based) of a length-T sequence: the loss
    reaches s_j only for j > cut; s_cut is a constant when cut >= 1."""
    if truncation is None:
        return 0
    if hasattr(truncation, "k1"):                 # TBPTT(k1, k2)
        k1, k2 = truncation.k1, truncation.k2
    elif type(truncation).__name__ == "Window":   # Window(k) = TBPTT(1, k + 1)
        k1, k2 = 1, truncation.k + 1
    else:                                         # Chunks(k) = TBPTT(k, k)
        k1 = k2 = truncation.k
    tau = k1 * math.ceil(t / k1)                  # the end of t's chunk, not clamped at T
    return max(0, tau - k2)


def divisor(spec, B: int, T: int, O: int) -> int:
    """The contract's reduction: sum 1, batch_mean B, mean the number of elements (B S O; B S
    for cross-entropy), S = T for output="all", 1 for "last"."""
    S = T if spec.output == "all" else 1
    if spec.reduction == "sum":
        return 1
    if spec.reduction == "batch_mean":
        return B
    return B * S if spec.loss == "cross_entropy" else B * S * O


def surrogate_loss(params, xs_tm, ys_tm, spec, h0, anchor_states):
    """The loss in which every cut state s_cut is the constant anchor_states[cut].

    Its value equals the loss; its exact gradient at params = anchor is the truncated gradient.
    params, xs_tm and h0 may be complex. xs_tm: (T, B, D); ys_tm: (S, B, O) or (S, B) int;
    h0: the initial state (B, W); anchor_states: (T + 1, B, W) real states at the point of
    differentiation. Loss terms that share a cut share one forward run.
    """
    T, B, _ = xs_tm.shape
    steps = range(1, T + 1) if spec.output == "all" else [T]
    by_cut: dict = {}
    for i, t in enumerate(steps):                 # i: the term's index in ys_tm
        by_cut.setdefault(cut_of(spec.truncation, t, T), []).append((i, t))
    total = 0.0
    for cut, terms in by_cut.items():
        start = h0 if cut == 0 else anchor_states[cut]             # s_cut: a constant
        last = terms[-1][1]
        states = forward_states(params, xs_tm[cut:last], start, spec, derivative=False).states
        hs = hidden_states(states, spec)                            # h_cut .. h_last
        for i, t in terms:
            total = total + loss_sum(outputs(params, hs[t - cut][None]), ys_tm[i][None], spec.loss)
    O = params.sizes[2]
    return total / divisor(spec, B, T, O)


class _Problem:
    """A validated problem, flattened: x = (parameters..., h0 [, xs]) as one vector."""

    def __init__(self, params, xs, ys, spec, h0, wrt_xs=False):
        params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
        self.spec, self.ys, self.cls = spec, ys, type(params)
        B, H = xs.shape[0], params.sizes[1]
        s0 = initial_state(h0, B, H, spec)
        xs_tm, self.ys_tm = time_major(xs, ys, spec)
        self.anchor = forward_states(params, xs_tm, s0, spec, derivative=False).states
        self.names = [*params.arrays(), "h0"] + (["xs"] if wrt_xs else [])
        self.arrays = [*params.arrays().values(), s0] + ([xs] if wrt_xs else [])
        self.xs = xs
        self.x = np.concatenate([a.ravel() for a in self.arrays])

    def unflatten(self, x):
        out, i = {}, 0
        for name, a in zip(self.names, self.arrays):
            out[name] = x[i:i + a.size].reshape(a.shape)
            i += a.size
        return out

    def loss(self, x):
        parts = self.unflatten(x)
        s0 = parts.pop("h0")
        xs = parts.pop("xs", self.xs)
        xs_tm = np.ascontiguousarray(np.swapaxes(xs, 0, 1))
        return surrogate_loss(self.cls(**parts), xs_tm, self.ys_tm, self.spec, s0, self.anchor)

    def derivative(self, v, method: str) -> float:
        """d/ds loss(x + s v) at s = 0."""
        if method == "complex":
            return float(np.imag(self.loss(self.x + 1j * COMPLEX_STEP * v)) / COMPLEX_STEP)
        if method == "central":
            # the step moves x by e |v|: scale it by 1 / |v| so a long direction does not
            # take a long step (the O(e^2) error grows with |v|^2); |v| = 1 per element
            norm = float(np.linalg.norm(v)) or 1.0
            e = CENTRAL_STEP * max(1.0, float(np.max(np.abs(self.x[v != 0]), initial=0.0))) / norm
            near = self.loss(self.x + e * v) - self.loss(self.x - e * v)
            far = self.loss(self.x + 2 * e * v) - self.loss(self.x - 2 * e * v)
            return float((8 * near - far) / (12 * e))
        raise ValueError(f"method must be 'complex' or 'central', got {method!r}")

    def as_result(self, g):
        parts = self.unflatten(g)
        ds0 = parts.pop("h0")
        dxs = parts.pop("xs", None)
        out = (self.cls(**parts), state_gradient(ds0, self.spec))
        return out + (dxs,) if dxs is not None else out


def numerical_grads(params, xs, ys, spec, h0=None, method: str = "complex", wrt_xs: bool = False):
    """Every element of the (truncated) gradient by numerical differentiation.

    One loss evaluation per element (two for central differences): for small problems.
    Returns (grads, dh0) or, with `wrt_xs=True`, (grads, dh0, dxs (B, T, D)), with the same
    conventions as `loss_and_grads` (dh0 a pair for the LSTM).
    """
    if method not in ("complex", "central"):
        raise ValueError(f"method must be 'complex' or 'central', got {method!r}")
    prob = _Problem(params, xs, ys, spec, h0, wrt_xs)
    g = np.empty(prob.x.size)
    v = np.zeros(prob.x.size)
    for i in range(prob.x.size):
        v[i] = 1.0
        g[i] = prob.derivative(v, method)
        v[i] = 0.0
    return prob.as_result(g)


def directional_derivative(params, xs, ys, spec, direction, h0=None, direction_h0=None,
                           method: str = "complex", direction_xs=None) -> float:
    """The derivative of the (surrogate) loss along `direction` (parameters of the same type and
    shapes as `params`, plus `direction_h0` (B, H) (a pair for the LSTM) and `direction_xs`
    (B, T, D), each None for no move): one or two loss evaluations, for large problems.
    Compare with sum(grad * direction) of a gradient under test.
    """
    prob = _Problem(params, xs, ys, spec, h0, wrt_xs=direction_xs is not None)
    if not isinstance(direction, prob.cls):
        raise ValueError(f"direction must be a handgrad.{prob.cls.__name__}, "
                         f"got {type(direction).__name__}")
    if isinstance(direction_h0, (tuple, list)):           # the LSTM's pair (h_0, c_0)
        B, W = prob.arrays[prob.names.index("h0")].shape
        halves = []
        for i, d in enumerate(direction_h0):
            d = np.zeros((B, W // 2)) if d is None else as_float_array(f"direction_h0[{i}]", d)
            if d.shape != (B, W // 2):
                raise ValueError(f"direction_h0[{i}] must have shape {(B, W // 2)}, got {d.shape}")
            halves.append(d)
        direction_h0 = np.concatenate(halves, axis=-1)
    given = {**{n: getattr(direction, n) for n in prob.names if n not in ("h0", "xs")},
             "h0": direction_h0, "xs": direction_xs}
    parts = []
    for name, a in zip(prob.names, prob.arrays):   # None: no move along that array
        label = {"h0": "direction_h0", "xs": "direction_xs"}.get(name, f"direction.{name}")
        d = np.zeros(a.shape) if given[name] is None else as_float_array(label, given[name])
        if d.shape != a.shape:
            raise ValueError(f"{label} must have shape {a.shape} (that of {name}), got {d.shape}")
        parts.append(d.ravel())
    return prob.derivative(np.concatenate(parts), method)
