"""Correct, with every kind of round-off a real implementation has: the oracle's precision tests.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, S output steps.

`roundoff_rnn(spec)` is a correct candidate for every Elman spec (tanh or sigmoid; every loss,
output, reduction and truncation), written the way real code differs from the hand BPTT:

- its sums run in another order: the backward pass goes sweep by sweep (`spec.segments`),
  time-reversed, accumulating dU, dW, db one step at a time, and dV, dc by per-sample loops;
- its tanh / sigmoid are off by up to `ulps` ulps (default: TOLERANCES["ulps"]): each element
  is moved by np.nextafter a random number of times in a random direction (or, with
  `coherent=True`, always `ulps` ulps up, like a library whose tanh is biased near saturation),
  reproducibly from the case's arrays;
- act' is computed from the output like autodiff and tutorials do: 1 - h^2, h (1 - h);
- `dtype` is the precision it computes in; `returned` maps array names ("loss", "U", ..., "h0")
  to the dtype they are returned as (default: `dtype`), e.g. {"U": np.float64} for a float32
  computation returned as float64.
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..spec import segments
from ..tolerances import TOLERANCES


def _rng(*arrays) -> np.random.Generator:
    """A generator seeded by the case's arrays: the same case, the same perturbations."""
    digest = hashlib.sha1()
    for a in arrays:
        if a is not None:
            digest.update(np.ascontiguousarray(a).tobytes())
    return np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))


def perturb_ulps(x, ulps: int, rng, coherent: bool = False):
    """x moved by up to `ulps` ulps per element (random count and direction), or by exactly
    `ulps` ulps towards +inf when `coherent`. Exact zeros stay zero: tanh(0), relu(a <= 0) are
    exact in every library (a subnormal in their place would be an infinite relative error)."""
    x = np.array(x)
    if ulps == 0:
        return x
    zero = x == 0
    steps = (np.full(x.shape, ulps) if coherent else rng.integers(-ulps, ulps + 1, x.shape))
    up = np.asarray(np.inf, x.dtype)
    for i in range(1, ulps + 1):
        x = np.where(steps >= i, np.nextafter(x, up), x)
        x = np.where(steps <= -i, np.nextafter(x, -up), x)
    return np.where(zero, 0.0, x).astype(x.dtype)


def unit(kind: str, a, dtype, ulps: int, rng, coherent: bool = False):
    """tanh(a) or sigmoid(a) = 1 / (1 + exp(-a)) in `dtype`, moved by up to `ulps` ulps
    (`perturb_ulps`)."""
    h = np.tanh(a) if kind == "tanh" else np.reciprocal(1 + np.exp(-a))
    return perturb_ulps(h, ulps, rng, coherent).astype(dtype)


def tutorial_loss(spec, dtype, os, ys):
    """os (B, S, O) -> loss and dL/do (B, S, O) in `dtype`, as a tutorial writes them; ys
    (B, S, O) or (B, S) class ids."""
    B = os.shape[0]
    if spec.loss == "cross_entropy":
        z = os - os.max(axis=-1, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=-1, keepdims=True)
        logp = z - np.log(total)
        onehot = np.eye(os.shape[-1], dtype=dtype)[ys]
        n = {"sum": 1, "mean": ys.size, "batch_mean": B}[spec.reduction]
        return -np.sum(logp * onehot) / dtype.type(n), (e / total - onehot) / dtype.type(n)
    n = {"sum": 1, "mean": os.size, "batch_mean": B}[spec.reduction]
    if spec.loss == "linear":                               # <y, o>: the upstream gradient y
        return np.sum(ys * os) / dtype.type(n), ys / dtype.type(n)
    err = os - ys
    k = dtype.type(0.5 if spec.loss == "half_squared" else 1.0)
    return k * np.sum(err * err) / dtype.type(n), (2 * k / dtype.type(n)) * err


def roundoff_rnn(spec, dtype=np.float64, ulps=None, coherent: bool = False, returned=None):
    """A correct candidate for `spec` with reordered sums, activations `ulps` ulps off and act'
    from the output, computing in `dtype` (see the module docstring)."""
    ulps = int(TOLERANCES["ulps"]) if ulps is None else int(ulps)
    dtype = np.dtype(dtype)
    returned = dict(returned or {})

    def activation(a, rng):
        return unit(spec.activation, a, dtype, ulps, rng, coherent)

    def act_grad(h):
        one = dtype.type(1)
        return one - h * h if spec.activation == "tanh" else h * (one - h)   # from the output

    def loss_and_dos(os, ys):
        return tutorial_loss(spec, dtype, os, ys)

    def candidate(params, xs, ys, h0):
        rng = _rng(xs, ys, h0, *params.arrays().values())
        U, W, V, b, c = (None if p is None else np.asarray(p, dtype) for p in params)
        xs = np.asarray(xs, dtype)
        B, T, _ = xs.shape
        H = W.shape[0]
        hs = [np.zeros((B, H), dtype) if h0 is None else np.asarray(h0, dtype)]
        for t in range(T):                                   # a_t = W h_{t-1} + U x_t + b
            a = hs[-1] @ W.T + xs[:, t] @ U.T
            hs.append(activation(a if b is None else a + b, rng))
        steps = list(range(1, T + 1)) if spec.output == "all" else [T]
        os = np.stack([hs[t] @ V.T + (0 if c is None else c) for t in steps], axis=1)
        ys_ = ys if spec.loss == "cross_entropy" else np.asarray(ys, dtype)
        loss, dos = loss_and_dos(os, ys_ if spec.output == "all" else ys_[:, None])
        g = {n: np.zeros(p.shape, dtype) for n, p in zip("UWVbc", (U, W, V, b, c))
             if p is not None}
        g["h0"] = np.zeros((B, H), dtype)
        for i in range(B):                                   # o_t = V h_t + c, per sample
            for j, t in enumerate(steps):
                g["V"] += np.outer(dos[i, j], hs[t][i])
                if c is not None:
                    g["c"] += dos[i, j]
        do_at = {t: dos[:, j] for j, t in enumerate(steps)}
        for seg in reversed(segments(spec.truncation, T, spec.output)):
            dh = np.zeros((B, H), dtype)                     # dL/dh_t carried from t + 1
            for t in range(seg.last, seg.cut, -1):
                if t >= seg.first:
                    dh = dh + do_at[t] @ V                   # loss term t through o_t
                da = dh * act_grad(hs[t])                    # h_t = act(a_t), act' from h_t
                g["U"] += da.T @ xs[:, t - 1]                # a_t = U x_t + W h_{t-1} + b
                g["W"] += da.T @ hs[t - 1]
                if b is not None:
                    g["b"] += da.sum(axis=0)
                dh = da @ W                                  # carry to h_{t-1}
            if seg.cut == 0:
                g["h0"] += dh                                # reached h_0
        out = {n: np.asarray(v, returned.get(n, dtype)) for n, v in g.items()}
        return np.asarray(loss, returned.get("loss", dtype))[()], out

    candidate.__name__ = f"roundoff_rnn_{dtype.name}"
    return candidate


def scaled(candidate, name: str, factor: float):
    """`candidate` with one answer ("loss" or an array name) multiplied by `factor`: a wrong
    candidate whose error is exactly a relative `factor - 1` (on top of its round-off)."""
    def wrong(params, xs, ys, h0):
        loss, grads = candidate(params, xs, ys, h0)
        if name == "loss":
            return loss * factor, grads
        return loss, {**grads, name: grads[name] * factor}
    wrong.__name__ = f"{getattr(candidate, '__name__', 'candidate')}_{name}_x{factor!r}"
    return wrong
