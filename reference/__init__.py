"""reference: the handgrad model written again in JAX, differentiated by JAX autodiff.

This package is the autodiff oracle the test suite proves `handgrad` against. It mirrors
`handgrad/nonlin.py`, `handgrad/losses.py` and `handgrad/bptt.py` equation for equation, and it
is meant to be *obviously right*, not fast: no hand-written derivative appears anywhere; every
gradient comes from `jax.value_and_grad` of the loss, and truncation is `jax.lax.stop_gradient`
applied exactly where the contract says.

    import reference
    loss, grads = reference.loss_and_grads(params, xs, ys, spec, h0=None)            # hg.Params
    loss, grads, dh0 = reference.loss_and_grads(params, xs, ys, spec, h0, wrt_h0=True)

Size letters: B batch, T time steps, D input features, H hidden units, O outputs,
S output steps (T for `output="all"`, 1 for `"last"`).

float64 is switched on when this package is imported (`jax_enable_x64`).

The time loop calls a jitted one-step function (and a jitted one-output-step loss): JAX compiles
per array shape, and a compiled step serves every T, truncation and loss of the same sizes,
which keeps the test suite's many small random problems fast. Autodiff sees through the jitted
calls; nothing about the derivative is written by hand.

Truncation, as the contract defines it: the loss terms of one backward sweep (a `Segment` of
`handgrad.spec.segments`: steps first..last sharing the cut step `cut`) see the hidden state
h_cut as a constant. So the surrogate loss runs, for each segment, a fresh forward pass over
steps cut+1..last that starts from stop_gradient(h_cut) (h_cut taken from one ordinary forward
pass), or from h_0 itself when cut == 0 (h_0 is an input and is never cut). Its value is the
loss (every loss term is counted once, with the same states); its gradient is the truncated
gradient.

The arguments are validated by handgrad's own checks (`handgrad._validate`), and `Params`,
`Spec` and `segments` are handgrad's: only the maths is written twice.
"""
from __future__ import annotations

from functools import partial

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (after enabling float64)
import numpy as np  # noqa: E402

from handgrad._validate import check_inputs  # noqa: E402
from handgrad.losses import loss_count  # noqa: E402
from handgrad.params import Params  # noqa: E402
from handgrad.spec import segments  # noqa: E402

__all__ = ["loss_and_grads", "loss", "act", "forward_states", "surrogate_loss"]


# --- nonlin.py ------------------------------------------------------------------------------

def _sign(a):
    """+1 where a >= 0, else -1, as a constant: autodiff must not see through it."""
    return jax.lax.stop_gradient(jnp.where(a >= 0, 1.0, -1.0))


def act(activation: str, a):
    """h = act(a), written so that autodiff of it is accurate when the unit saturates.

    handgrad.nonlin computes act(a) and act'(a) separately (`act`, `act_derivative`); here only
    act(a) is written, and autodiff finds the derivative. Why not jnp.tanh / jax.nn.sigmoid:
    JAX derives their derivative from the output, (1 - h)(1 + h) and h (1 - h). Near saturation h rounds to +-1 (or 1), and those products lose
    every significant digit (or become exactly zero) although the true derivative, e.g.
    sech^2(20) ~ 1.7e-17, is a perfectly representable number. handgrad computes act'(a) from
    the pre-activation instead (1 / cosh^2 a, 1 / (2 + 2 cosh a)), and the complex step is
    accurate there too; a reference with output-based derivatives
    would then disagree with both at the "saturating" and "tutorial" weight scales, and be the
    wrong one. So the activation is written from e, with the sign s of a as a stop-gradient
    constant, and autodiff differentiates that formula: d/da of s (1 - e) / (1 + e) with
    e = exp(-2 s a) is 4 e / (1 + e)^2, exact and cancellation-free. Both branches of the
    `where` below are finite for every a (e lies in (0, 1]), so the branch not taken never
    sends an inf or NaN into the gradient.

    a: any shape. Returns h of the same shape.
    """
    s = _sign(a)
    if activation == "sigmoid":
        e = jnp.exp(-s * a)                   # in (0, 1]
        r = 1.0 / (1.0 + e)
        return jnp.where(s > 0, r, e * r)     # 1/(1+e^-a) for a >= 0, e^a/(1+e^a) below
    if activation == "tanh":
        e = jnp.exp(-2.0 * s * a)             # in (0, 1]
        return s * (1.0 - e) / (1.0 + e)      # tanh(a) = s tanh(|a|)
    raise ValueError(f"activation must be 'sigmoid' or 'tanh', got {activation!r}")


def log_softmax(o):
    """log softmax(o) over the last axis, shifted by its (constant) max."""
    z = o - jax.lax.stop_gradient(jnp.max(o, axis=-1, keepdims=True))
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))


# --- losses.py ------------------------------------------------------------------------------

def loss_sum(os, ys, loss: str):
    """Sum of all loss terms before reduction. os: (S, B, O); ys: (S, B, O) float or (S, B) int."""
    if loss == "cross_entropy":
        logp = log_softmax(os)
        return -jnp.sum(jnp.take_along_axis(logp, ys[..., None], axis=-1))
    err = os - ys
    total = jnp.sum(err * err)
    return 0.5 * total if loss == "half_squared" else total


# --- bptt.py --------------------------------------------------------------------------------

@partial(jax.jit, static_argnums=(5,))
def step(U, W, b, x_t, h_prev, activation: str):
    """One time step: h_t (B, H) from x_t (B, D) and h_{t-1} (B, H); U (H, D), W (H, H), b (H,)."""
    a = x_t @ U.T + h_prev @ W.T + b                  # a_t = U x_t + W h_{t-1} + b
    return act(activation, a)                         # h_t = act(a_t)


def forward_states(params: Params, xs_tm: list, h_start, activation: str) -> list:
    """[h_0, .., h_T] (each (B, H)) from xs_tm = [x_1, .., x_T] (each (B, D)) and h_start (B, H)."""
    U, W, _, b, _ = _zero_biases(params)
    hs = [h_start]
    for t in range(1, len(xs_tm) + 1):
        hs.append(step(U, W, b, xs_tm[t - 1], hs[t - 1], activation))
    return hs


@partial(jax.jit, static_argnums=(4,))
def step_loss(V, c, h_t, y_t, loss: str):
    """The loss terms of one output step, summed over the batch: o_t = V h_t + c, then
    loss_sum. V (O, H), c (O,), h_t (B, H); y_t (B, O) float or (B,) int."""
    o_t = h_t @ V.T + c                               # o_t = V h_t + c
    return loss_sum(o_t, y_t, loss)


def _zero_biases(params: Params) -> Params:
    """Without biases, b and c are exact zeros: x + 0.0 == x in floating point, so the model is
    unchanged, and one compiled `step` serves both kinds of spec (fewer JAX compilations)."""
    H, O = params.W.shape[0], params.V.shape[0]
    return params._replace(b=jnp.zeros(H) if params.b is None else params.b,
                           c=jnp.zeros(O) if params.c is None else params.c)


def surrogate_loss(params: Params, h0, xs_tm, ys_tm, spec):
    """The reduced loss in which every cut state h_cut is a stop-gradient constant.

    params: Params of jax arrays; h0: (B, H); xs_tm: [x_1, .., x_T], each (B, D);
    ys_tm: [y_first, .., y_T], S targets, each (B, O) float or (B,) int.
    """
    T, B = len(xs_tm), h0.shape[0]
    first_loss_step = 1 if spec.output == "all" else T
    full_hs = forward_states(params, xs_tm, h0, spec.activation)   # the states the cuts hold
    _, _, V, _, c = _zero_biases(params)
    total = 0.0
    for seg in segments(spec.truncation, T, spec.output):
        # a fresh forward run over steps cut+1..last from h_cut, a constant unless cut == 0
        start = h0 if seg.cut == 0 else jax.lax.stop_gradient(full_hs[seg.cut])
        hs = forward_states(params, xs_tm[seg.cut:seg.last], start, spec.activation)
        for t in range(seg.first, seg.last + 1):      # the loss terms of this sweep
            total = total + step_loss(V, c, hs[t - seg.cut], ys_tm[t - first_loss_step],
                                      spec.loss)
    S = T if spec.output == "all" else 1
    return total / loss_count(spec.loss, spec.reduction, (S, B, params.V.shape[0]))


def _prepare(params, xs, ys, spec, h0):
    """Validate (handgrad's checks) and convert to time-major jax arrays."""
    params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
    B, H = xs.shape[0], params.W.shape[0]
    jparams = Params(*(None if p is None else jnp.asarray(p) for p in params))
    jh0 = jnp.zeros((B, H)) if h0 is None else jnp.asarray(h0)
    # time-major lists of per-step arrays: no slicing of jax arrays happens later (each slicing
    # op of a new shape would compile on its own; this keeps the suite fast)
    xs_tm = [jnp.asarray(x) for x in np.swapaxes(xs, 0, 1)]
    ys_tm = [jnp.asarray(y) for y in (ys[None] if spec.output == "last" else np.swapaxes(ys, 0, 1))]
    return jparams, jh0, xs_tm, ys_tm, spec


def loss(params, xs, ys, spec, h0=None) -> float:
    """The loss value alone, from one plain forward run (no truncation is involved)."""
    jparams, jh0, xs_tm, ys_tm, spec = _prepare(params, xs, ys, spec, h0)
    hs = forward_states(jparams, xs_tm, jh0, spec.activation)
    _, _, V, _, c = _zero_biases(jparams)
    steps = range(1, len(hs)) if spec.output == "all" else [len(hs) - 1]
    total = sum(float(step_loss(V, c, hs[t], y, spec.loss)) for t, y in zip(steps, ys_tm))
    S = len(steps)
    return total / loss_count(spec.loss, spec.reduction, (S, jh0.shape[0], jparams.V.shape[0]))


def loss_and_grads(params, xs, ys, spec, h0=None, wrt_h0: bool = False):
    """Loss and its (truncated) gradient by JAX autodiff: the same contract as
    `handgrad.loss_and_grads`.

    params: Params with U (H, D), W (H, H), V (O, H), b (H,), c (O,) (None without bias);
    xs: (B, T, D); ys: (B, O) | (B, T, O) floats or (B,) | (B, T) int class ids;
    h0: (B, H) or None (zeros). Returns (loss, grads) or (loss, grads, dh0), numpy float64.

    The whole loss is not jitted on purpose: each (spec, T, shapes) would compile once and
    rarely be reused; only the one-step functions are (see the module docstring).
    """
    jparams, jh0, xs_tm, ys_tm, spec = _prepare(params, xs, ys, spec, h0)
    # without biases, differentiate with respect to b = c = 0 too and drop those gradients: the
    # same model, and JAX then traces the same computation for both kinds of spec (fewer
    # compilations: a constant b would be a different trace from a differentiated one)
    value, (g, dh0) = jax.value_and_grad(surrogate_loss, argnums=(0, 1))(
        _zero_biases(jparams), jh0, xs_tm, ys_tm, spec)
    if not spec.bias:
        g = g._replace(b=None, c=None)
    grads = Params(*(None if p is None else np.asarray(p, dtype=np.float64) for p in g))
    out = float(value), grads
    return (*out, np.asarray(dh0, dtype=np.float64)) if wrt_h0 else out
