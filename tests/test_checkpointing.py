"""loss_and_grads(..., memory=bytes): checkpointed full BPTT gives the gradient of the plain
backward pass (to round-off), keeps what it says, and refuses what it cannot do."""
import gc
import tracemalloc

import numpy as np
import pytest

import handgrad as hg
from handgrad.bptt import memory_needed

SPECS = [hg.Spec(cell="elman", activation="sigmoid", output="all"),
         hg.Spec(cell="elman", activation="relu", output="last", head=False, bias=False),
         hg.Spec(cell="gru", output="all", loss="cross_entropy"),
         hg.Spec(cell="gru", gru_reset="before", output="last", reduction="mean"),
         hg.Spec(cell="lstm", output="all", head=False),
         hg.Spec(cell="lstm", output="last")]


def problem(spec, B=3, T=17, D=4, H=5, O=3, seed=0):
    rng = np.random.default_rng(seed)
    O = H if not spec.head else O
    params = hg.init_params(spec, D, H, O, seed=seed, scale=1.5)
    xs = rng.normal(size=(B, T, D))
    if spec.loss == "cross_entropy":
        ys = rng.integers(0, O, size=(B, T) if spec.output == "all" else (B,))
    else:
        ys = rng.normal(size=(B, T, O) if spec.output == "all" else (B, O))
    h0 = rng.normal(size=(B, H))
    if spec.cell == "lstm":
        h0 = (h0, rng.normal(size=(B, H)))
    return params, xs, ys, h0


def leaves(result):
    loss, grads, dh0, dxs = result
    out = [np.asarray(loss)] + [g for g in grads if g is not None]
    return out + (list(dh0) if isinstance(dh0, tuple) else [dh0]) + [dxs]


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@pytest.mark.parametrize("stretch", [1, 4, 8])
def test_checkpointed_gradient_equals_the_plain_one(spec, stretch):
    params, xs, ys, h0 = problem(spec)
    B, T, _ = xs.shape
    plain = hg.loss_and_grads(params, xs, ys, spec, h0, wrt_h0=True, wrt_xs=True)
    budget = memory_needed(spec, B, T, 5, stretch)
    assert budget < memory_needed(spec, B, T, 5)
    ckpt = hg.loss_and_grads(params, xs, ys, spec, h0, wrt_h0=True, wrt_xs=True, memory=budget)
    for got, want in zip(leaves(ckpt), leaves(plain)):
        assert hg.rel_error(got, want) <= hg.TOLERANCES["jax"]     # a different summation order


def test_a_budget_that_holds_everything_changes_nothing():
    spec = SPECS[0]
    params, xs, ys, h0 = problem(spec)
    plain = hg.loss_and_grads(params, xs, ys, spec, h0, wrt_h0=True)
    roomy = hg.loss_and_grads(params, xs, ys, spec, h0, wrt_h0=True, memory=1e12)
    for got, want in zip(leaves(roomy + (None,)), leaves(plain + (None,))):
        if want is not None:
            assert np.array_equal(got, want)


def test_checkpointing_keeps_a_fraction_of_the_states():
    """T = 600: the plain backward keeps every state and act'(a_t); checkpoints every ~sqrt(T)
    steps keep a few dozen states."""
    spec = hg.Spec(cell="elman", activation="tanh", output="last")
    B, T, D, H = 4, 600, 3, 32
    params, xs, ys, _ = problem(spec, B=B, T=T, D=D, H=H, O=2)
    stretch = 25
    budget = memory_needed(spec, B, T, H, stretch)

    def peak(**kw):
        gc.collect()
        tracemalloc.start()
        try:
            hg.loss_and_grads(params, xs, ys, spec, **kw)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    full, ckpt = peak(), peak(memory=budget)
    states = (T + 1) * B * H * 8
    assert full >= 2 * states
    assert ckpt <= budget + 0.25 * states       # inputs' time-major slices, outputs, gradients
    assert ckpt <= full / 5


@pytest.mark.parametrize("memory", [-1, 0, True, "1e6", float("nan")])
def test_a_bad_budget_is_a_value_error(memory):
    spec = SPECS[0]
    params, xs, ys, _ = problem(spec)
    with pytest.raises(ValueError, match="memory must be None or a positive number of bytes"):
        hg.loss_and_grads(params, xs, ys, spec, memory=memory)


def test_a_budget_below_the_best_checkpointing_names_the_minimum():
    spec = SPECS[0]
    params, xs, ys, _ = problem(spec)
    with pytest.raises(ValueError, match=r"memory must be at least \d+ bytes for B=3, T=17"):
        hg.loss_and_grads(params, xs, ys, spec, memory=100)


def test_checkpointing_needs_full_bptt():
    spec = hg.Spec(truncation=hg.Window(3))
    params, xs, ys, _ = problem(spec)
    with pytest.raises(ValueError, match="needs full BPTT"):
        hg.loss_and_grads(params, xs, ys, spec, memory=2000)
