"""Streaming truncated gradients: same result as the batch computation, memory independent of T;
for every cell, head or not, every loss and reduction.

The stream adds the same (loss term, step) products as `loss_and_grads` in another order:
TOLERANCES["jax"] (round-off of reordered float64 sums).
"""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import handgrad as hg
from handgrad.research.streaming import array_blocks, streaming_loss_and_grads
from handgrad.strategies import MEMBERS, cases, make_case, specs

TOL = hg.TOLERANCES["jax"]
stream_truncations = st.one_of(st.integers(0, 6).map(hg.Window), st.integers(1, 6).map(hg.Chunks))


def _stream(case, block):
    if case.spec.output == "all":
        return streaming_loss_and_grads(case.params, array_blocks(case.xs, case.ys, block),
                                        case.spec, h0=case.h0)
    return streaming_loss_and_grads(case.params, array_blocks(case.xs, None, block), case.spec,
                                    ys=case.ys, h0=case.h0)


def state(d):
    """A state gradient as one array: the LSTM's pair (dh_0, dc_0) side by side."""
    return np.concatenate(d, axis=-1) if isinstance(d, tuple) else d


def _assert_stream_equals_batch(case, block):
    loss, grads, dh0 = hg.loss_and_grads(case.params, case.xs, case.ys, case.spec, h0=case.h0,
                                         wrt_h0=True)
    res = _stream(case, block)
    assert res.T == case.xs.shape[1]
    assert res.loss == pytest.approx(loss, rel=TOL, abs=1e-300)
    assert type(res.grads) is type(grads) and list(res.grads.arrays()) == list(grads.arrays())
    for name, expected in grads.arrays().items():
        err = hg.rel_error(getattr(res.grads, name), expected)
        assert err <= TOL, f"d{name}: {err:.2e}"
    assert isinstance(res.dh0, tuple) == isinstance(dh0, tuple)
    assert hg.rel_error(state(res.dh0), state(dh0)) <= TOL
    k = case.spec.truncation.k
    assert res.max_steps_held <= k + 2 + block            # O(k + block) states, never O(T)


@given(cases(spec=specs(truncation=stream_truncations), max_T=12, max_H=4), st.integers(1, 13))
def test_stream_equals_batch(case, block):
    _assert_stream_equals_batch(case, block)


@pytest.mark.parametrize("truncation", [hg.Window(2), hg.Chunks(3)])
@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("member", list(MEMBERS))
def test_stream_equals_batch_for_every_member(member, output, truncation):
    """One fixed case per member (the property above draws them at random), blocks of 3."""
    spec = hg.Spec(**{**MEMBERS[member], "output": output, "truncation": truncation,
                      "head": member != "gru-after", "reduction": "batch_mean"})
    _assert_stream_equals_batch(make_case(spec, 2, 8, 2, 3, 2, seed=4), 3)


def _blocks(T, B, D, O, block, seed=0):
    rng = np.random.default_rng(seed)
    for lo in range(0, T, block):
        n = min(block, T - lo)
        yield rng.normal(size=(B, n, D)), rng.normal(size=(B, n, O))


def _peak(T, spec, params, B, D, O, block):
    tracemalloc.start()
    streaming_loss_and_grads(params, _blocks(T, B, D, O, block), spec)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("truncation", [hg.Window(10), hg.Chunks(10)])
def test_peak_memory_does_not_grow_with_T(truncation):
    """Peak traced memory for T = 800 and T = 8000 is the same (O(k + block) states), while
    storing all states would grow tenfold. (The T = 100,000, B = 8, H = 64 figure is in
    benchmarks/sweep_research.py and the README (Truncation research).)"""
    B, D, H, O, block = 8, 4, 32, 2, 50
    spec = hg.Spec(output="all", truncation=truncation)
    params = hg.init_params(spec, D, H, O, seed=0)
    _peak(100, spec, params, B, D, O, block)                  # warm up lazy imports and caches
    small, large = _peak(800, spec, params, B, D, O, block), _peak(8000, spec, params, B, D, O, block)
    all_states = 8000 * B * H * 8                              # 16.4 MB
    assert large <= 1.1 * small, (small, large)
    assert large < all_states / 5, (large, all_states)
    if isinstance(truncation, hg.Chunks):
        return
    # control: the instrument sees numpy's memory; the batch computation holds every state
    xs, ys = (np.concatenate(a, axis=1) for a in zip(*_blocks(800, B, D, O, block)))
    tracemalloc.start()
    hg.loss_and_grads(params, xs, ys, hg.Spec(output="all"))
    batch_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert batch_peak > 800 * B * H * 8, batch_peak


def test_bad_streams():
    spec = hg.Spec(output="all", truncation=hg.Window(2))
    params = hg.init_params(spec, 2, 3, 1)
    xs, ys = np.zeros((2, 5, 2)), np.zeros((2, 5, 1))
    with pytest.raises(ValueError, match="Window"):
        streaming_loss_and_grads(params, array_blocks(xs, ys), hg.Spec(output="all"))
    with pytest.raises(ValueError, match="at least one block"):
        streaming_loss_and_grads(params, iter(()), spec)
    with pytest.raises(ValueError, match="pair"):
        streaming_loss_and_grads(params, [xs], spec)
    with pytest.raises(ValueError, match="batch size"):
        streaming_loss_and_grads(params, [(xs, ys), (xs[:1], ys[:1])], spec)
    last = hg.Spec(output="last", truncation=hg.Chunks(2))
    with pytest.raises(ValueError, match="ys"):
        streaming_loss_and_grads(params, [xs], last)
    with pytest.raises(ValueError, match="block"):
        list(array_blocks(xs, ys, 0))
