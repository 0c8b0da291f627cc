"""Gradient clipping and optimizers over `handgrad.Params` or `GatedParams` (absent arrays stay
`None`).

Every function returns new arrays; nothing is updated in place, so a step that turns out to be
non-finite can be thrown away and the last good parameters kept.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from ..params import Params

OPTIMIZERS = ("sgd", "adam")
CLIPS = ("value", "norm", "none")


class Clip(NamedTuple):
    """kind "value": each element to [-limit, limit] (the tutorial's); "norm": rescale so the
    global L2 norm of all gradients is at most `limit`; "none"."""

    kind: str = "value"
    limit: float = 10.0


def parse_clip(text: str) -> Clip:
    """'value:10', 'norm:5' or 'none' (the CLI's syntax)."""
    t = text.strip().lower()
    if t == "none":
        return Clip("none", math.inf)
    kind, _, num = t.partition(":")
    try:
        limit = float(num)
    except ValueError:
        limit = math.nan
    if kind not in ("value", "norm") or not (limit > 0 and math.isfinite(limit)):
        raise ValueError(f"clip must be 'value:LIMIT', 'norm:LIMIT' (LIMIT > 0) or 'none', got {text!r}")
    return Clip(kind, limit)


def _map(fn, *trees: Params) -> Params:
    """Apply `fn` to matching arrays of several Params (or GatedParams); None stays None."""
    return type(trees[0])(*(None if a[0] is None else fn(*a) for a in zip(*trees)))


def global_norm(grads: Params) -> float:
    """sqrt of the sum of squares of every gradient array."""
    return math.sqrt(sum(float(np.vdot(g, g)) for g in grads if g is not None))


def clip(grads: Params, how: Clip) -> Params:
    """Clip `grads` by value or by global norm (see `Clip`)."""
    if how.kind == "value":
        return _map(lambda g: np.clip(g, -how.limit, how.limit), grads)
    if how.kind == "norm":
        norm = global_norm(grads)
        if norm > how.limit:
            factor = how.limit / norm
            return _map(lambda g: g * factor, grads)
    return grads


class AdamState(NamedTuple):
    m: Params            # first-moment estimates
    v: Params            # second-moment estimates
    step: int


class Optimizer(NamedTuple):
    """`name` "sgd": p - lr g. "adam" (Kingma & Ba 2015, their default betas and eps)."""

    name: str
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def init(self, params: Params) -> Optional[AdamState]:
        if self.name == "sgd":
            return None
        zeros = _map(np.zeros_like, params)
        return AdamState(zeros, zeros, 0)

    def update(self, params: Params, grads: Params, state):
        """One step. Returns (new_params, new_state)."""
        if self.name == "sgd":
            return _map(lambda p, g: p - self.lr * g, params, grads), state
        m = _map(lambda m, g: self.beta1 * m + (1 - self.beta1) * g, state.m, grads)
        v = _map(lambda v, g: self.beta2 * v + (1 - self.beta2) * g * g, state.v, grads)
        step = state.step + 1
        lr = self.lr * math.sqrt(1 - self.beta2 ** step) / (1 - self.beta1 ** step)
        new = _map(lambda p, m_, v_: p - lr * m_ / (np.sqrt(v_) + self.eps), params, m, v)
        return new, AdamState(m, v, step)


def make_optimizer(name: str, lr: float) -> Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be a positive finite number, got {lr!r}")
    return Optimizer(name, float(lr))
