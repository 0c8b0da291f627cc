"""reference: the handgrad model family written again in JAX, differentiated by JAX autodiff.

This package is the autodiff oracle the test suite proves `handgrad` against. Its value is that it
shares as little as possible with handgrad: the equations below are written from the contract
(docs/contract.md: "The model family", "Truncation", "Version 2"), not from handgrad's numpy code.
It is meant to be *obviously right*, not fast: no derivative is written by hand anywhere; every
gradient comes from `jax.value_and_grad` of the loss, and truncation is `jax.lax.stop_gradient`
of the whole recurrent state exactly where the contract cuts.

    import reference
    loss, grads = reference.loss_and_grads(params, xs, ys, spec, h0=None)
    loss, grads, dh0, dxs = reference.loss_and_grads(params, xs, ys, spec, h0,
                                                     wrt_h0=True, wrt_xs=True)

Size letters: B batch, T time steps, D input features, H hidden units, O outputs (O = H without
an output head), G gate blocks (3 GRU, 4 LSTM), S output steps (T for `output="all"`, 1 for
`"last"`).

What is shared with handgrad: the parameter types (`Params`, `GatedParams`), `Spec` and its
truncation classes, and the argument checks (`handgrad._validate.check_inputs`). The cells, the
outputs, the losses, the reduction divisor and the truncation cuts are all written here.

float64 is switched on when this package is imported (`jax_enable_x64`).

Speed: the time loop calls a jitted one-step function per cell (and a jitted loss of one output
step). JAX compiles per array shape, and a compiled step serves every T, truncation and loss of
the same sizes, which keeps the test suite's many small random problems fast. Autodiff sees
through the jitted calls; nothing about the derivative is written by hand.
"""
from __future__ import annotations

import math
from functools import partial

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (after enabling float64)
import numpy as np  # noqa: E402

from handgrad._validate import check_inputs  # noqa: E402
from handgrad.spec import Chunks, Window  # noqa: E402

__all__ = ["loss_and_grads", "loss", "act", "cut_step", "divisor", "surrogate_loss"]


# --- activations ----------------------------------------------------------------------------

def _sign(a):
    """+1 where a >= 0, else -1, as a constant: autodiff must not see through it."""
    return jax.lax.stop_gradient(jnp.where(a >= 0, 1.0, -1.0))


def act(activation: str, a):
    """h = act(a), written so that autodiff of it is accurate when the unit saturates.

    Why not jnp.tanh / jax.nn.sigmoid: JAX derives their derivative from the output,
    (1 - h)(1 + h) and h (1 - h). Near saturation h rounds to +-1 (or 1), and those products lose
    every significant digit (or become exactly zero) although the true derivative, e.g.
    sech^2(20) ~ 1.7e-17, is a perfectly representable number; a reference with output-based
    derivatives would disagree with the complex step there, and be the wrong one. So tanh and
    sigmoid are written from e = exp(-|a|)-style terms, with the sign s of a as a stop-gradient
    constant, and autodiff differentiates that formula: d/da of s (1 - e) / (1 + e) with
    e = exp(-2 s a) is 4 e / (1 + e)^2, exact and cancellation-free. For |a| < 1/2, 1 - e is
    computed as -expm1(-2 |a|): written as 1 - e it would lose relative accuracy for tiny |a|
    (tanh(1e-8) to 8 digits), which an LSTM's h_t = o_t tanh(c_t) exposes in dW_hh when every
    h is tiny (found by the thorough profile: 3.6e-12 against 2e-15 for handgrad). Not for
    larger |a|: JAX derives expm1's derivative from its output too (expm1(x) + 1, zero once
    expm1(-2 |a|) rounds to -1); below 1/2 that output is above -0.64 and the derivative is
    exact. Both branches of every `where` below are finite for every a (e lies in (0, 1]), so
    the branch not taken never sends an inf or NaN into the gradient.

    relu is written as a `where` whose branch at a = 0 is the constant 0, so relu'(0) = 0 (as in
    PyTorch and jax.nn.relu; jnp.maximum would split the tie and give 1/2).

    a: any shape. Returns h of the same shape.
    """
    if activation == "sigmoid":
        s = _sign(a)
        e = jnp.exp(-s * a)                   # e^-|a|, in (0, 1]
        r = 1.0 / (1.0 + e)
        return jnp.where(s > 0, r, e * r)     # 1/(1+e^-a) for a >= 0, e^a/(1+e^a) below
    if activation == "tanh":
        s = _sign(a)
        e = jnp.exp(-2.0 * s * a)             # e^-2|a|, in (0, 1]
        # 1 - e: by expm1 where e is near 1 (cancellation), plainly elsewhere (see above)
        one_minus_e = jnp.where(s * a < 0.5, -jnp.expm1(-2.0 * s * a), 1.0 - e)
        return s * one_minus_e / (1.0 + e)    # tanh(a) = s tanh(|a|) = s (1 - e) / (1 + e)
    if activation == "relu":
        return jnp.where(a > 0, a, 0.0)       # max(a, 0), derivative 0 at a = 0
    if activation == "identity":
        return a                              # a linear recurrence
    raise ValueError(f"activation must be 'sigmoid', 'tanh', 'relu' or 'identity', "
                     f"got {activation!r}")


def sigmoid(a):
    return act("sigmoid", a)


def tanh(a):
    return act("tanh", a)


def log_softmax(o):
    """log softmax(o) over the last axis, shifted by its (constant) max."""
    z = o - jax.lax.stop_gradient(jnp.max(o, axis=-1, keepdims=True))
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))


# --- cells: one time step each (batched, row-major: x_t (B, D), h (B, H)) -------------------

@partial(jax.jit, static_argnums=(5,))
def elman_step(U, W, b, x_t, h_prev, activation: str):
    """h_t (B, H) of the Elman cell. U (H, D), W (H, H), b (H,)."""
    a = x_t @ U.T + h_prev @ W.T + b                  # a_t = U x_t + W h_{t-1} + b
    return act(activation, a)                         # h_t = act(a_t)


@partial(jax.jit, static_argnums=(6,))
def gru_step(W_ih, W_hh, b_ih, b_hh, x_t, h_prev, reset: str):
    """h_t (B, H) of the GRU (PyTorch's layout: gate blocks r, z, n of H rows each).
    W_ih (3H, D), W_hh (3H, H), b_ih, b_hh (3H,); reset "after" (PyTorch) or "before" (Cho et al.).

    W_ir x_t + b_ir is block r of W_ih x_t + b_ih (columns [0, H) of `gi` below), and so on.

    1 - z_t is computed as sigmoid(-a_z), its exact equal: 1 - sigmoid(a_z) by subtraction loses
    relative accuracy as the update gate closes (z_t -> 1), and h_1 = (1 - z_1) n_1 from h_0 = 0
    with it (to 3 digits at a_z = 30; test_reference pins this)."""
    H = W_hh.shape[1]
    r_, z_, n_ = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)   # the gate blocks
    gi = x_t @ W_ih.T + b_ih                          # blocks r, z, n of W_ih x_t + b_ih
    if reset == "after":
        gh = h_prev @ W_hh.T + b_hh                   # blocks r, z, n of W_hh h_{t-1} + b_hh
    else:                                             # blocks r, z (n's multiplies r_t * h_{t-1})
        gh = h_prev @ W_hh[:2 * H].T + b_hh[:2 * H]
    # r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    r = sigmoid(gi[:, r_] + gh[:, r_])
    # z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    a_z = gi[:, z_] + gh[:, z_]
    z = sigmoid(a_z)
    one_minus_z = sigmoid(-a_z)                       # 1 - z_t, without cancellation (docstring)
    if reset == "after":
        # n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
        n = tanh(gi[:, n_] + r * gh[:, n_])
    else:
        # n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)
        n = tanh(gi[:, n_] + (r * h_prev) @ W_hh[n_].T + b_hh[n_])
    return one_minus_z * n + z * h_prev               # h_t = (1 - z_t) * n_t + z_t * h_{t-1}


@jax.jit
def lstm_step(W_ih, W_hh, b_ih, b_hh, x_t, state):
    """(h_t, c_t), each (B, H), of the LSTM (PyTorch's layout, blocks i, f, g, o) from
    state = (h_{t-1}, c_{t-1}). W_ih (4H, D), W_hh (4H, H), b_ih, b_hh (4H,)."""
    h_prev, c_prev = state
    H = W_hh.shape[1]
    pre = x_t @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh   # W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    i = sigmoid(pre[:, 0 * H:1 * H])                  # i_t = sigmoid(block i)
    f = sigmoid(pre[:, 1 * H:2 * H])                  # f_t = sigmoid(block f)
    g = tanh(pre[:, 2 * H:3 * H])                     # g_t = tanh(block g)
    o = sigmoid(pre[:, 3 * H:4 * H])                  # o_t = sigmoid(block o)
    c = f * c_prev + i * g                            # c_t = f_t * c_{t-1} + i_t * g_t
    h = o * tanh(c)                                   # h_t = o_t * tanh(c_t)
    return h, c


def step(params, spec, x_t, state):
    """The recurrent state after one step: h_t (B, H), or (h_t, c_t) for the LSTM."""
    if spec.cell == "elman":
        return elman_step(params.U, params.W, params.b, x_t, state, spec.activation)
    if spec.cell == "gru":
        return gru_step(params.W_ih, params.W_hh, params.b_ih, params.b_hh, x_t, state,
                        spec.gru_reset)
    return lstm_step(params.W_ih, params.W_hh, params.b_ih, params.b_hh, x_t, state)


def hidden(state, spec):
    """h_t (B, H) of a recurrent state (the LSTM's state is the pair (h_t, c_t))."""
    return state[0] if spec.cell == "lstm" else state


def forward(params, spec, xs_tm, start) -> list:
    """[s_0, s_1, .., s_n]: the states after 0..n steps from `start` over xs_tm = [x_1, .., x_n]
    (each (B, D)); a state is h (B, H), or (h, c) for the LSTM."""
    states = [start]
    for x_t in xs_tm:
        states.append(step(params, spec, x_t, states[-1]))
    return states


# --- outputs and losses ---------------------------------------------------------------------

def loss_terms(o_t, y_t, loss: str):
    """The sum over the batch of the loss terms of one output step. o_t (B, O); y_t (B, O)
    float, or (B,) int class ids for cross-entropy."""
    if loss == "half_squared":
        return 0.5 * jnp.sum((o_t - y_t) ** 2)                 # 1/2 ||o_t - y_t||^2
    if loss == "squared":
        return jnp.sum((o_t - y_t) ** 2)                       # ||o_t - y_t||^2
    if loss == "cross_entropy":
        picked = jnp.take_along_axis(log_softmax(o_t), y_t[:, None], axis=1)
        return -jnp.sum(picked)                                # -log softmax(o_t)[y_t]
    if loss == "linear":
        return jnp.sum(y_t * o_t)                              # <y_t, o_t>
    raise ValueError(f"unknown loss {loss!r}")


@partial(jax.jit, static_argnums=(4,))
def step_loss(V, c, h_t, y_t, loss: str):
    """The loss terms of one output step, summed over the batch. V (O, H), c (O,), or both None
    without an output head; h_t (B, H); y_t (B, O) float or (B,) int."""
    o_t = h_t if V is None else h_t @ V.T + c        # o_t = V h_t + c, or o_t = h_t (no head)
    return loss_terms(o_t, y_t, loss)


def divisor(spec, B: int, S: int, O: int) -> int:
    """What the sum of all loss terms is divided by: 1 for "sum"; B for "batch_mean"; for "mean"
    the number of elements, B S O for the squared and linear losses (PyTorch's MSELoss), B S for
    cross-entropy (PyTorch's CrossEntropyLoss: one element per class-id target)."""
    if spec.reduction == "sum":
        return 1
    if spec.reduction == "batch_mean":
        return B
    return B * S if spec.loss == "cross_entropy" else B * S * O


# --- truncation -----------------------------------------------------------------------------

def cut_step(truncation, t: int) -> int:
    """The step whose state is held constant for the loss term at step t (1-based); 0: none,
    the gradient reaches the initial state h_0 (an input, never cut).

    TBPTT(k1, k2): tau(t) = k1 ceil(t / k1) (the end of t's chunk, not clamped at T), and the
    term reaches h_j only for j >= tau(t) - k2. Window(k) = TBPTT(1, k + 1); Chunks(k) =
    TBPTT(k, k); None: full BPTT.
    """
    if truncation is None:
        return 0
    if isinstance(truncation, Window):
        k1, k2 = 1, truncation.k + 1                  # Window(k) = TBPTT(1, k + 1)
    elif isinstance(truncation, Chunks):
        k1, k2 = truncation.k, truncation.k           # Chunks(k) = TBPTT(k, k)
    else:
        k1, k2 = truncation.k1, truncation.k2         # TBPTT(k1, k2)
    tau = k1 * math.ceil(t / k1)                      # the end of t's chunk
    return max(0, tau - k2)


def surrogate_loss(params, state0, xs_tm, ys_tm, spec):
    """The reduced loss in which the state at every loss term's cut is a stop-gradient constant.

    params: Params or GatedParams of jax arrays (zeros for absent biases, None for V and c
    without a head); state0: h_0 (B, H), or (h_0, c_0) for the LSTM; xs_tm: [x_1, .., x_T], each
    (B, D); ys_tm: the targets of the output steps in order, each (B, O) float or (B,) int.

    Each loss term at step t is computed by a forward run over steps cut+1..t that starts from
    stop_gradient(s_cut), the state of the real forward pass (h_cut, and c_cut for the LSTM), or
    from state0 itself when cut == 0. So the term's gradient reaches parameters and inputs
    x_{cut+1}..x_t through the run; x_1..x_cut enter only through the constant. Terms with the
    same cut share one run. The value is the loss: every term is counted once, on the same
    states as the real forward pass.
    """
    T, B = len(xs_tm), hidden(state0, spec).shape[0]
    steps = list(range(1, T + 1)) if spec.output == "all" else [T]   # the output steps
    by_cut = {}                                                     # cut -> its loss steps
    for t in steps:
        by_cut.setdefault(cut_step(spec.truncation, t), []).append(t)
    # s_0 .. s_T of the real forward pass (only a cut needs them: skipped for full BPTT)
    real = forward(params, spec, xs_tm, state0) if max(by_cut) > 0 else None
    total = 0.0
    for j, ts in by_cut.items():
        assert 0 <= j < min(ts)
        start = state0 if j == 0 else jax.lax.stop_gradient(real[j])   # s_j held constant
        run = forward(params, spec, xs_tm[j:max(ts)], start)           # run[i] = s_{j + i}
        for t in ts:
            y_t = ys_tm[steps.index(t)]
            total = total + step_loss(params.V, params.c, hidden(run[t - j], spec), y_t,
                                      spec.loss)
    return total / divisor(spec, B, len(steps), params.sizes[2])


# --- the public functions -------------------------------------------------------------------

def _with_zero_biases(params, spec):
    """Without biases, the bias arrays as exact zeros: x + 0.0 == x in floating point, so the
    model is unchanged, and one compiled step serves both kinds of spec (fewer compilations).
    V and c stay None without an output head."""
    if spec.bias:
        return params
    if spec.gated:
        GH = params.W_hh.shape[0]
        params = params._replace(b_ih=jnp.zeros(GH), b_hh=jnp.zeros(GH))
    else:
        params = params._replace(b=jnp.zeros(params.W.shape[0]))
    if spec.head:
        params = params._replace(c=jnp.zeros(params.V.shape[0]))
    return params


def _prepare(params, xs, ys, spec, h0):
    """Validate (handgrad's checks) and convert to jax: (params with zero biases, state0,
    xs_tm, ys_tm, spec)."""
    params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
    B, H = xs.shape[0], params.sizes[1]
    jparams = type(params)(*(None if p is None else jnp.asarray(p) for p in params))
    if spec.cell == "lstm":
        state0 = (jnp.zeros((B, H)), jnp.zeros((B, H))) if h0 is None else \
            (jnp.asarray(h0[0]), jnp.asarray(h0[1]))
    else:
        state0 = jnp.zeros((B, H)) if h0 is None else jnp.asarray(h0)
    # time-major lists of per-step arrays: no slicing of jax arrays happens later (each slicing
    # op of a new shape would compile on its own; this keeps the suite fast)
    xs_tm = [jnp.asarray(x) for x in np.swapaxes(xs, 0, 1)]
    ys_tm = [jnp.asarray(y) for y in (ys[None] if spec.output == "last" else np.swapaxes(ys, 0, 1))]
    return _with_zero_biases(jparams, spec), state0, xs_tm, ys_tm, spec


def _as_numpy(a):
    return np.asarray(a, dtype=np.float64)


def loss(params, xs, ys, spec, h0=None) -> float:
    """The loss value alone, from one plain forward run (no truncation is involved)."""
    jparams, state0, xs_tm, ys_tm, spec = _prepare(params, xs, ys, spec, h0)
    states = forward(jparams, spec, xs_tm, state0)
    T = len(xs_tm)
    steps = list(range(1, T + 1)) if spec.output == "all" else [T]
    total = sum(float(step_loss(jparams.V, jparams.c, hidden(states[t], spec), y, spec.loss))
                for t, y in zip(steps, ys_tm))
    B = hidden(state0, spec).shape[0]
    return total / divisor(spec, B, len(steps), jparams.sizes[2])


def loss_and_grads(params, xs, ys, spec, h0=None, wrt_h0: bool = False, wrt_xs: bool = False):
    """Loss and its (truncated) gradient by JAX autodiff: the same contract as
    `handgrad.loss_and_grads`.

    params: Params (U (H, D), W (H, H), V (O, H), b (H,), c (O,)) or, for the GRU and the LSTM,
    GatedParams (W_ih (G H, D), W_hh (G H, H), b_ih, b_hh (G H,), V (O, H), c (O,)); None where
    the spec has no such array. xs: (B, T, D); ys: (B, O) | (B, T, O) floats, or (B,) | (B, T)
    int class ids for cross-entropy; h0: (B, H) or None (zeros), for the LSTM the pair
    (h_0, c_0), each (B, H) or None.

    Returns (loss, grads[, dh0][, dxs]), numpy float64 and a python float loss: grads of
    params' type with None where params has None; dh0 (B, H) (the pair (dh_0, dc_0) for the
    LSTM) with wrt_h0=True; dxs (B, T, D) with wrt_xs=True.

    The whole loss is not jitted on purpose: each (spec, T, shapes) would compile once and
    rarely be reused; only the one-step functions are (see the module docstring). The gradient
    with respect to h0 and xs is always taken (one trace for every call) and dropped if unasked.
    """
    for name, value in (("wrt_h0", wrt_h0), ("wrt_xs", wrt_xs)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    jparams, state0, xs_tm, ys_tm, spec = _prepare(params, xs, ys, spec, h0)
    value, (g, dstate0, dxs_tm) = jax.value_and_grad(surrogate_loss, argnums=(0, 1, 2))(
        jparams, state0, xs_tm, ys_tm, spec)
    if not spec.bias:                                 # the zero biases were not parameters
        g = g._replace(**{n: None for n in ("b", "c", "b_ih", "b_hh") if n in g._fields})
    grads = type(g)(*(None if a is None else _as_numpy(a) for a in g))
    out = (float(value), grads)
    if wrt_h0:
        out += (tuple(_as_numpy(d) for d in dstate0) if spec.cell == "lstm"
                else _as_numpy(dstate0),)
    if wrt_xs:
        out += (np.stack([_as_numpy(d) for d in dxs_tm], axis=1),)   # (B, T, D)
    return out
