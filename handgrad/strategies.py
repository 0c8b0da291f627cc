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

When `cases()` draws the spec itself, the truncation is drawn *after* the sequence length T, so
that most drawn truncations cut something (k below T - 1): a truncation that never cuts is full
BPTT and tests nothing a full-BPTT case does not.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np
from hypothesis import strategies as st

from .params import Params, init_params
from .spec import (ACTIVATIONS, CELLS, GRU_RESETS, LOSSES, OUTPUTS, REDUCTIONS, TBPTT, Chunks,
                   Spec, Window)

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
    params: Params             # or GatedParams for the GRU and the LSTM
    xs: np.ndarray             # (B, T, D)
    ys: np.ndarray             # (B, O) | (B, T, O) | (B,) | (B, T)   (O = H without a head)
    h0: Optional[object]       # (B, H), the pair (h_0, c_0) for the LSTM, or None
    scale: str                 # key of WEIGHT_SCALES
    seed: int

    @property
    def sizes(self) -> dict:
        B, T, D = self.xs.shape
        D_, H, O = self.params.sizes
        return {"B": B, "T": T, "D": D, "H": H, "O": O}


def truncations(max_k: int = 8):
    """None, Window(k), Chunks(k) or TBPTT(k1, k2), with k up to `max_k` (shrinks towards None)."""
    k = st.integers(0, max_k)
    return st.one_of(
        st.none(),
        k.map(Window),
        st.integers(1, max_k).map(Chunks),
        st.tuples(st.integers(1, max_k), st.integers(0, max_k)).map(lambda p: TBPTT(p[0], p[0] + p[1])),
    )


def cuts_something(truncation, T: int, output: str) -> bool:
    """Whether `truncation` holds some state constant on a length-T sequence (contract: the loss
    at t stops at max(0, k1 ceil(t / k1) - k2))."""
    if truncation is None:
        return False
    tb = truncation.as_tbptt()
    steps = range(1, T + 1) if output == "all" else [T]
    return any(tb.k1 * math.ceil(t / tb.k1) - tb.k2 >= 1 for t in steps)


def truncations_for(T: int):
    """Truncations for a length-T sequence, mostly ones that cut: about 1 draw in 10 is None and
    1 in 10 a truncation at least as long as the sequence; the rest have k < T (shrinks towards
    None, then towards Window(0))."""
    if T < 2:
        return truncations(max_k=2)
    short = st.one_of(
        st.integers(0, T - 2).map(Window),
        st.integers(1, T - 1).map(Chunks),
        st.integers(1, T - 1).flatmap(
            lambda k1: st.integers(k1, T - 1).map(lambda k2: TBPTT(k1, k2))))
    return st.integers(0, 9).flatmap(
        lambda c: st.none() if c == 0 else truncations(max_k=T + 2) if c == 1 else short)


def specs(activation=None, bias=None, output=None, loss=None, reduction=None,
          truncation=None, head=None, cell=None, gru_reset=None, max_k: int = 8):
    """Random `Spec`s; any field given here is held fixed (pass a strategy or a value).

    The cell is drawn first; `activation` is drawn for the Elman cell only and `gru_reset` for
    the GRU only (gated cells keep the default activation). Giving `activation` without `cell`
    means the Elman cell.
    """
    def field(value, default):
        if value is None:
            return default
        return value if isinstance(value, st.SearchStrategy) else st.just(value)

    cells = field(cell, st.just("elman") if activation is not None else st.sampled_from(CELLS))
    activations = field(activation, st.sampled_from(ACTIVATIONS))
    resets = field(gru_reset, st.sampled_from(GRU_RESETS))
    rest = st.fixed_dictionaries({
        "bias": field(bias, st.booleans()), "output": field(output, st.sampled_from(OUTPUTS)),
        "loss": field(loss, st.sampled_from(LOSSES)),
        "reduction": field(reduction, st.sampled_from(REDUCTIONS)),
        "truncation": field(truncation, truncations(max_k)), "head": field(head, st.booleans())})

    @st.composite
    def draw_spec(draw):
        cell_ = draw(cells)
        act = draw(activations) if cell_ == "elman" else "tanh"
        reset = draw(resets) if cell_ == "gru" else "after"
        return Spec(activation=act, cell=cell_, gru_reset=reset, **draw(rest))

    return draw_spec()


# every member of the family that has its own equations: the cell, and the Elman activation or
# the GRU's reset convention. Property tests run each one (specs(**MEMBERS[name]) draws the rest).
MEMBERS = {
    "elman-sigmoid": dict(cell="elman", activation="sigmoid"),
    "elman-tanh": dict(cell="elman", activation="tanh"),
    "elman-relu": dict(cell="elman", activation="relu"),
    "elman-identity": dict(cell="elman", activation="identity"),
    "gru-after": dict(cell="gru", gru_reset="after"),
    "gru-before": dict(cell="gru", gru_reset="before"),
    "lstm": dict(cell="lstm"),
}


def make_case(spec: Spec, B: int, T: int, D: int, H: int, O: int, scale: str = "moderate",
              seed: int = 0, with_h0: bool = True, pad: int = 0) -> Case:
    """A reproducible case of the given sizes (what the strategies draw, callable by hand).
    Without an output head O is H (the `O` given is ignored). `pad`: the first `pad` input
    steps are exactly zero (left padding, as Keras' pad_sequences does by default): without h0
    and biases the pre-activations there are exactly 0, where relu'(0) matters."""
    rng = np.random.default_rng(seed)
    O = O if spec.head else H
    params = init_params(spec, D, H, O if spec.head else None, seed=int(rng.integers(2**31)),
                         **WEIGHT_SCALES[scale])
    if spec.bias and scale != "tutorial":   # init_params zeroes biases; a test needs them nonzero
        params = params._replace(**{n: rng.normal(0, 0.5, a.shape) for n, a in
                                    params.arrays().items() if n in ("b", "c", "b_ih", "b_hh")})
    xs = rng.normal(size=(B, T, D))
    xs[:, :pad] = 0.0
    lead = (B,) if spec.output == "last" else (B, T)
    ys = (rng.integers(0, O, lead) if spec.loss == "cross_entropy"
          else rng.normal(size=lead + (O,)))
    h0 = None
    if with_h0:
        h0 = rng.uniform(-0.9, 0.9, (B, H))
        if spec.cell == "lstm":
            h0 = (h0, rng.uniform(-0.9, 0.9, (B, H)))       # (h_0, c_0)
    return Case(spec, params, xs, ys, h0, scale, seed)


def cases(spec=None, max_B: int = 3, max_T: int = 6, max_D: int = 3, max_H: int = 4,
          max_O: int = 3, scales=tuple(WEIGHT_SCALES), h0=None, sizes=None):
    """Random cases: sizes from 1 up to the maxima (or exactly `sizes` = (B, T, D, H, O)), a spec
    (`spec`: a Spec, a strategy, None to draw one whose truncation mostly cuts (see
    `truncations_for`), or a dict of fields to hold fixed while the rest is drawn that way, e.g.
    `MEMBERS["lstm"]`), a weight scale from `scales`, h0 given or None (`h0`: None draws either,
    True always gives one, False never), and about one case in five left-padded with one or two
    zero input steps (`make_case`'s `pad`)."""
    # the component strategies are built once here, not inside every draw: building them
    # (st.builds inspects Spec's signature) cost more than drawing from them
    if sizes is not None:
        size_strategies = [st.just(int(n)) for n in sizes]
    else:
        size_strategies = [st.integers(1, m) for m in (max_B, max_T, max_D, max_H, max_O)]
        # Hypothesis draws small integers more often than large ones; B = 1 or H = 1 has no
        # batch or hidden-unit mixing to get wrong, and T = 1 cuts nothing: draw B and H = 1
        # about one time in four and T = 1 about one time in ten (each still shrinks to 1)
        for i, ones_in in ((0, 4), (1, 10), (3, 4)):
            m = (max_B, max_T, max_D, max_H, max_O)[i]
            if m > 2:
                size_strategies[i] = st.integers(0, ones_in - 1).flatmap(
                    lambda c, m=m: st.just(1) if c == 0 else st.integers(2, m))
    scale_strategy = st.sampled_from(list(scales))
    seeds = st.integers(0, 2**32 - 1)
    given_h0 = st.integers(0, 2).map(bool)      # h0 given two times in three (shrinks to None)
    pads = st.integers(0, 9).map(lambda c: max(0, c - 7))    # 0 mostly; 1 or 2 one time in five
    spec_for_T = {}

    fixed = spec if isinstance(spec, dict) else {}

    def spec_strategy(T):
        if T not in spec_for_T:
            spec_for_T[T] = specs(**{"truncation": truncations_for(T), **fixed})
        return spec_for_T[T]

    @st.composite
    def draw_case(draw):
        sizes_ = [draw(s) for s in size_strategies]
        if spec is None or isinstance(spec, dict):
            spec_ = draw(spec_strategy(sizes_[1]))
        else:
            spec_ = draw(spec) if isinstance(spec, st.SearchStrategy) else spec
        scale = draw(scale_strategy)
        with_h0 = draw(given_h0) if h0 is None else bool(h0)
        seed = draw(seeds)
        pad = min(draw(pads), sizes_[1])
        return make_case(spec_, *sizes_, scale=scale, seed=seed, with_h0=with_h0, pad=pad)

    return draw_case()


KINK_MARGIN = 1e-3   # central differences move a pre-activation by ~1e-5 per unit of input: keep
                     # every relu pre-activation 100 times that away from its kink at 0


def near_kink(case, margin: float = KINK_MARGIN) -> bool:
    """Whether some relu pre-activation a_t of `case` lies within `margin` of the kink at 0.

    relu is piecewise linear: the complex step stays exact away from a = 0, but a central
    difference whose steps cross the kink mixes two slopes. Tests that use central differences
    on relu cases skip (or filter out) the cases this returns True for; it is False for every
    other activation and cell.
    """
    spec = case.spec
    if spec.cell != "elman" or spec.activation != "relu":
        return False
    from .bptt import predict
    U, W, _, b, _ = case.params
    _, hs = predict(case.params, case.xs, spec, case.h0)             # (B, T, H) h_1 .. h_T
    B, H = case.xs.shape[0], W.shape[0]
    h0 = np.zeros((B, 1, H)) if case.h0 is None else case.h0[:, None]
    a = case.xs @ U.T + np.concatenate([h0, hs[:, :-1]], axis=1) @ W.T   # (B, T, H)
    if b is not None:
        a = a + b
    return bool(np.min(np.abs(a)) < margin)
