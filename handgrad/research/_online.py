"""What RTRL, SnAp and UORO share: the family they support, the forward-in-time loop, and the
layout of the recurrent parameters as one matrix.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, Z = H + D (+ 1 with a
bias) the inputs of one unit, P = H Z the recurrent parameter elements.

The recurrence a_t = W h_{t-1} + U x_t + b is a_t = Theta z_t with

    Theta = [W | U | b]   (H, Z)          z_t = [h_{t-1}, x_t, 1]   (B, Z)

so the immediate derivative of a_t[k] with respect to Theta[i, j] is delta_ki z_t[j]. A forward-mode
method carries some form of the influence dh_t / dTheta forward in time (`Method.advance`) and
reads the gradient of each loss term out of it (`Method.readout`):

    dL_t/dTheta = dL_t/dh_t . dh_t/dTheta          (dL_t/dh_t = dL_t/do_t V, through o_t alone)

V and c are not recurrent: dV = sum_t do_t h_t^T and dc = sum_t do_t, exact for every method.
Nothing is ever backpropagated, so memory does not grow with T.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from .._threads import blas_threads
from .._validate import check_inputs
from ..losses import loss_and_output_grad, loss_count
from ..nonlin import act, act_derivative
from ..params import Params
from ..spec import Spec

ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
LOSSES = ("half_squared", "squared", "cross_entropy", "linear")
REDUCTIONS = ("sum", "mean", "batch_mean")


def check_family(spec, what: str, truncation_ok: bool = False) -> Spec:
    """`spec` if it is an Elman model these methods support; a ValueError naming the field
    otherwise (so that Spec values added later are refused, not silently mishandled)."""
    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be a handgrad.Spec, got {type(spec).__name__}")
    if getattr(spec, "cell", "elman") != "elman":
        raise ValueError(f"{what} supports the Elman cell only (spec.cell='elman'), "
                         f"got spec.cell={spec.cell!r}")
    if getattr(spec, "head", True) is not True:
        raise ValueError(f"{what} needs the output layer o_t = V h_t + c (spec.head=True), "
                         f"got spec.head={spec.head!r}")
    for field, allowed in (("activation", ACTIVATIONS), ("loss", LOSSES),
                           ("reduction", REDUCTIONS)):
        if getattr(spec, field) not in allowed:
            raise ValueError(f"{what} supports spec.{field} in {allowed}, "
                             f"got {getattr(spec, field)!r}")
    if not truncation_ok and spec.truncation is not None:
        raise ValueError(f"{what} computes (an estimate of) the full gradient forward in time: "
                         f"spec.truncation must be None, got {spec.truncation!r} (for truncated "
                         "gradients use hg.loss_and_grads or the streaming Window/Chunks tools)")
    return spec


class Problem(NamedTuple):
    """A validated problem, batch-major as the public API takes it."""

    params: Params
    xs: np.ndarray           # (B, T, D)
    ys: np.ndarray           # (B, O) | (B, T, O) floats, or (B,) | (B, T) int class ids
    spec: Spec
    h0: np.ndarray           # (B, H), zeros when not given
    count: int               # what the reduction divides the summed loss by


def problem(params, xs, ys, spec, h0, what: str) -> Problem:
    check_family(spec, what)
    params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
    B, T, _ = xs.shape
    D, H, O = params.sizes
    count = loss_count(spec.loss, spec.reduction, (1 if spec.output == "last" else T, B, O))
    return Problem(params, xs, ys, spec, np.zeros((B, H)) if h0 is None else h0, count)


def theta(params: Params) -> np.ndarray:
    """[W | U | b] (H, Z)."""
    parts = [params.W, params.U] + ([params.b[:, None]] if params.b is not None else [])
    return np.concatenate(parts, axis=1)


def split_theta(g: np.ndarray, D: int, bias: bool):
    """(H, Z) -> (dU (H, D), dW (H, H), db (H,) or None)."""
    H = g.shape[0]
    return g[:, H:H + D], g[:, :H], (g[:, H + D] if bias else None)


class Method(NamedTuple):
    """A forward-mode gradient method: its carry and the two things it does with it.

    init(B, H, Z) -> carry;  advance(carry, W (H, H), z (B, Z), d (B, H)) -> carry, where d is
    act'(a_t); readout(carry, dh (B, H)) -> (B, H, Z), sample b's dL_t/dTheta;
    readout_h0(carry, dh (B, H)) -> (B, H) dL_t/dh_0, for a method that carries dh_t/dh_0.
    """

    name: str
    init: Callable[[int, int, int], Any]
    advance: Callable[[Any, np.ndarray, np.ndarray, np.ndarray], Any]
    readout: Callable[[Any, np.ndarray], np.ndarray]
    readout_h0: Optional[Callable[[Any, np.ndarray], np.ndarray]] = None


class StepOut(NamedTuple):
    h: np.ndarray            # (B, H) h_t
    z: np.ndarray            # (B, Z) z_t = [h_{t-1}, x_t, 1]
    d: np.ndarray            # (B, H) act'(a_t)


def forward_step(Th: np.ndarray, h_prev, x, activation: str, bias: bool) -> StepOut:
    """One step of the recurrence: a_t = Theta z_t, h_t = act(a_t). Th (H, Z), h_prev (B, H),
    x (B, D)."""
    parts = [h_prev, x] + ([np.ones((h_prev.shape[0], 1))] if bias else [])
    z = np.concatenate(parts, axis=1)                      # (B, Z)
    a = z @ Th.T                                           # a_t = W h_{t-1} + U x_t + b
    with np.errstate(over="ignore"):                       # sigmoid's exp(-a) -> inf is exact
        h = act(activation, a)                             # h_t = act(a_t)
    return StepOut(h, z, act_derivative(activation, a))


class PassResult(NamedTuple):
    loss: float              # reduced as the spec says
    per_sample: np.ndarray   # (B, H, Z) each sample's dL/dTheta (already divided by the count)
    dV: np.ndarray           # (O, H)
    dc: Optional[np.ndarray]  # (O,)
    carry: Any               # the method's carry after step T
    dh0: Optional[np.ndarray] = None   # (B, H) when the method has readout_h0


def forward_pass(prob: Problem, method: Method, after_step: Optional[Callable] = None) -> PassResult:
    """Run `method` over the whole sequence with fixed parameters.

    after_step(t, carry), when given, sees the carry after every step t = 1..T (for tests).
    """
    params, xs, ys, spec = prob.params, prob.xs, prob.ys, prob.spec
    B, T, D = xs.shape
    Th = theta(params)
    H, Z = Th.shape
    V, c = params.V, params.c
    carry = method.init(B, H, Z)
    acc = np.zeros((B, H, Z))
    dV = np.zeros_like(V)
    dc = np.zeros_like(c) if c is not None else None
    dh0 = np.zeros((B, H)) if method.readout_h0 is not None else None
    total = 0.0
    h = prob.h0
    for t in range(1, T + 1):
        step = forward_step(Th, h, xs[:, t - 1], spec.activation, c is not None)
        h = step.h
        carry = method.advance(carry, params.W, step.z, step.d)   # dh_t/dTheta from dh_{t-1}/dTheta
        if after_step is not None:
            after_step(t, carry)
        if spec.output == "all" or t == T:
            y = ys[:, t - 1] if spec.output == "all" else ys
            o = h @ V.T + (c if c is not None else 0.0)            # o_t = V h_t + c
            value, do = loss_and_output_grad(o[None], y[None], spec.loss, "sum")
            do = do[0]                                             # (B, O) dL_t/do_t
            total += value
            dV += do.T @ h                                         # o_t = V h_t + c
            if dc is not None:
                dc += do.sum(axis=0)
            dh = do @ V                                            # dL_t/dh_t through o_t
            acc += method.readout(carry, dh)                       # dL_t/dh_t . dh_t/dTheta
            if dh0 is not None:
                dh0 += method.readout_h0(carry, dh)                # dL_t/dh_t . dh_t/dh_0
    n = prob.count
    return PassResult(total / n, acc / n, dV / n, None if dc is None else dc / n, carry,
                      None if dh0 is None else dh0 / n)


def grouped_pass(prob: Problem, method: Method, group: int, work_per_unit: int = 0) -> PassResult:
    """`forward_pass` over groups of at most `group` samples at a time (the samples are
    independent; a method whose carry is large per sample bounds its memory this way). The carry
    returned is the last group's. BLAS gets one thread when the multiply-adds per step, about
    group H^2 work_per_unit (RTRL: Z), are few (see `handgrad._threads`)."""
    B = prob.xs.shape[0]
    D, H, _ = prob.params.sizes
    with blas_threads(min(B, group) * H * H * (work_per_unit if work_per_unit else 1)):
        if group >= B:
            return forward_pass(prob, method)
        parts = []
        for lo in range(0, B, group):
            sl = slice(lo, lo + group)
            parts.append(forward_pass(prob._replace(xs=prob.xs[sl], ys=prob.ys[sl],
                                                    h0=prob.h0[sl]), method))
    dc = None if parts[0].dc is None else sum(p.dc for p in parts)
    dh0 = None if parts[0].dh0 is None else np.concatenate([p.dh0 for p in parts])
    return PassResult(sum(p.loss for p in parts), np.concatenate([p.per_sample for p in parts]),
                      sum(p.dV for p in parts), dc, parts[-1].carry, dh0)


def as_params(res: PassResult, prob: Problem) -> Params:
    """The summed gradient of a pass as `Params`."""
    dU, dW, db = split_theta(res.per_sample.sum(axis=0), prob.params.sizes[0],
                             prob.params.b is not None)
    return Params(dU, dW, res.dV, db, res.dc)
