"""Hypothesis strategies for RNN gradient cases: the ones the test suite and `hg.check` draw.

Exported so users can draw the same cases in their own tests:

    from hypothesis import given
    from handgrad.strategies import cases

    @given(cases())
    def test_my_rnn(case):
        loss, grads = my_rnn(case.params, case.xs, case.ys, case.h0)
        ...

Shapes, the spec, the weight scale and whether h0 is given are drawn by Hypothesis (and shrink
to the smallest failing ones); array values come from a drawn seed, so a case is reproducible
from its `seed` and shrinking acts on structure, not on individual floats.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
from hypothesis import strategies as st

from .params import Params, init_params
from .spec import (ACTIVATIONS, LOSSES, OUTPUTS, REDUCTIONS, TBPTT, Chunks, Spec, Window)

# weight scales: name -> init_params arguments. "saturating" drives tanh/sigmoid units to +-1;
# "tutorial" is the 2019 tutorial's uniform(0, 1) initialisation (every sigmoid unit saturated).
WEIGHT_SCALES = {
    "small": dict(init="normal", scale=0.1),
    "moderate": dict(init="normal", scale=1.0),
    "saturating": dict(init="normal", scale=4.0),
    "tutorial": dict(init="tutorial"),
}


class Case(NamedTuple):
    """One drawn problem. Arrays are float64; ys are int class ids for cross-entropy."""

    spec: Spec
    params: Params
    xs: np.ndarray             # (B, T, D)
    ys: np.ndarray             # (B, O) | (B, T, O) | (B,) | (B, T)
    h0: Optional[np.ndarray]   # (B, H) or None
    scale: str                 # key of WEIGHT_SCALES
    seed: int

    @property
    def sizes(self) -> dict:
        B, T, D = self.xs.shape
        return {"B": B, "T": T, "D": D, "H": self.params.W.shape[0], "O": self.params.V.shape[0]}


def truncations(max_k: int = 8):
    """None, Window(k), Chunks(k) or TBPTT(k1, k2), with k up to `max_k` (shrinks towards None)."""
    k = st.integers(0, max_k)
    return st.one_of(
        st.none(),
        k.map(Window),
        st.integers(1, max_k).map(Chunks),
        st.tuples(st.integers(1, max_k), st.integers(0, max_k)).map(lambda p: TBPTT(p[0], p[0] + p[1])),
    )


def specs(activation=None, bias=None, output=None, loss=None, reduction=None,
          truncation=None, max_k: int = 8):
    """Random `Spec`s; any field given here is held fixed (pass a strategy or a value)."""
    def field(value, default):
        if value is None:
            return default
        return value if isinstance(value, st.SearchStrategy) else st.just(value)
    return st.builds(
        Spec,
        activation=field(activation, st.sampled_from(ACTIVATIONS)),
        bias=field(bias, st.booleans()),
        output=field(output, st.sampled_from(OUTPUTS)),
        loss=field(loss, st.sampled_from(LOSSES)),
        reduction=field(reduction, st.sampled_from(REDUCTIONS)),
        truncation=field(truncation, truncations(max_k)),
    )


def make_case(spec: Spec, B: int, T: int, D: int, H: int, O: int, scale: str = "moderate",
              seed: int = 0, with_h0: bool = True) -> Case:
    """A reproducible case of the given sizes (what the strategies draw, callable by hand)."""
    rng = np.random.default_rng(seed)
    params = init_params(spec, D, H, O, seed=int(rng.integers(2**31)), **WEIGHT_SCALES[scale])
    if spec.bias and scale != "tutorial":   # init_params zeroes biases; a test needs them nonzero
        params = params._replace(b=rng.normal(0, 0.5, H), c=rng.normal(0, 0.5, O))
    xs = rng.normal(size=(B, T, D))
    lead = (B,) if spec.output == "last" else (B, T)
    ys = (rng.integers(0, O, lead) if spec.loss == "cross_entropy"
          else rng.normal(size=lead + (O,)))
    h0 = rng.uniform(-0.9, 0.9, (B, H)) if with_h0 else None
    return Case(spec, params, xs, ys, h0, scale, seed)


def cases(spec=None, max_B: int = 3, max_T: int = 6, max_D: int = 3, max_H: int = 4,
          max_O: int = 3, scales=tuple(WEIGHT_SCALES), h0=None, sizes=None):
    """Random cases: sizes from 1 up to the maxima (or exactly `sizes=(B, T, D, H, O)`, for
    candidates compiled per shape), a spec (`spec`: a Spec, a strategy, or None for `specs()`),
    a weight scale from `scales`, h0 given or None (`h0`: None draws either, True always gives
    one, False never)."""
    # the component strategies are built once here, not inside every draw: building them
    # (st.builds inspects Spec's signature) cost more than drawing from them
    if spec is None:
        spec = specs(max_k=max_T + 1)
    size_strategies = ([st.integers(1, m) for m in (max_B, max_T, max_D, max_H, max_O)]
                       if sizes is None else [st.just(int(n)) for n in sizes])
    scale_strategy = st.sampled_from(list(scales))
    booleans, seeds = st.booleans(), st.integers(0, 2**32 - 1)

    @st.composite
    def draw_case(draw):
        spec_ = draw(spec) if isinstance(spec, st.SearchStrategy) else spec
        sizes = [draw(s) for s in size_strategies]
        scale = draw(scale_strategy)
        with_h0 = draw(booleans) if h0 is None else bool(h0)
        seed = draw(seeds)
        return make_case(spec_, *sizes, scale=scale, seed=seed, with_h0=with_h0)

    return draw_case()
