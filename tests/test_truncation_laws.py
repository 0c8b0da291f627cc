"""Truncation laws: the conventions agree with each other and with the contract's definition.

- Window(k) == TBPTT(1, k + 1); Chunks(k) == TBPTT(k, k)
- any truncation at least as long as the sequence == full BPTT
- V, c gradients and the loss value do not depend on the truncation
- from the definition: with output="all" and reduction="sum", the TBPTT(k1, k2) gradient is the
  sum over t of the gradient of loss term t alone, which reaches back to
  max(0, tau(t) - k2) with tau(t) = k1 ceil(t / k1) (not clamped at T). Term t alone is the many-to-one
  problem on the prefix x_1..x_t whose loss reaches back t - 1 - cut transitions,
  i.e. Window(t - 1 - cut): this re-derives every sweep of `spec.segments` independently.

Round-off: the same sums in another order, as between the hand BPTT and JAX, so the bound is
TOLERANCES["jax"].
"""
import dataclasses
import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad.strategies import cases, make_case, specs, truncations

TOL = hg.TOLERANCES["jax"]
MORE = settings(max_examples=2 * settings().max_examples)   # cheap numpy-only properties


def grads_of(case, truncation):
    spec = dataclasses.replace(case.spec, truncation=truncation)
    return hg.loss_and_grads(case.params, case.xs, case.ys, spec, case.h0, wrt_h0=True)


def assert_same(a, b, what):
    (la, ga, ha), (lb, gb, hb) = a, b
    assert hg.rel_error(la, lb) <= TOL, f"{what}: loss"
    for name, x, y in zip(hg.Params._fields, ga, gb):
        if x is not None:
            assert hg.rel_error(x, y) <= TOL, f"{what}: d{name} rel error {hg.rel_error(x, y):.1e}"
    assert hg.rel_error(ha, hb) <= TOL, f"{what}: dh0"


@MORE
@given(cases(), st.integers(0, 8))
def test_window_is_tbptt_1_k_plus_1(case, k):
    assert_same(grads_of(case, hg.Window(k)), grads_of(case, hg.TBPTT(1, k + 1)), f"Window({k})")


@MORE
@given(cases(), st.integers(1, 8))
def test_chunks_is_tbptt_k_k(case, k):
    assert_same(grads_of(case, hg.Chunks(k)), grads_of(case, hg.TBPTT(k, k)), f"Chunks({k})")


@MORE
@given(cases(), st.integers(0, 3), st.integers(0, 3))
def test_truncation_at_least_as_long_as_the_sequence_is_full_bptt(case, extra, extra2):
    T = case.xs.shape[1]
    full = grads_of(case, None)
    for trunc in (hg.Window(T - 1 + extra), hg.Chunks(T + extra), hg.TBPTT(T + extra, T + extra + extra2)):
        assert_same(grads_of(case, trunc), full, repr(trunc))


@MORE
@given(cases(), truncations(max_k=8))
def test_output_layer_and_loss_do_not_depend_on_truncation(case, truncation):
    """V and c are never truncated, and truncation never changes the loss: bit for bit, since
    the hand BPTT computes them before any sweep."""
    lf, gf, _ = grads_of(case, None)
    lt, gt, _ = grads_of(case, truncation)
    assert lt == lf
    np.testing.assert_array_equal(gt.V, gf.V)
    if gf.c is not None:
        np.testing.assert_array_equal(gt.c, gf.c)


def cut_of(truncation, t, T):
    """The contract's cut for the loss term at step t: max(0, tau(t) - k2)."""
    if truncation is None:
        return 0
    tb = truncation.as_tbptt()
    tau = tb.k1 * math.ceil(t / tb.k1)          # the end of t's chunk, not clamped at T
    return max(0, tau - tb.k2)


@MORE
@given(cases(spec=specs(output="all", reduction="sum")))
# TBPTT with k1 not dividing T, k2 > k1: the last chunk (step 5) is short; its cut is
# tau - k2 = 6 - 3 = 3, measured from the chunk's unclamped end
@example(make_case(hg.Spec(output="all", reduction="sum", truncation=hg.TBPTT(2, 3)),
                   2, 5, 2, 3, 2, seed=1))
def test_gradient_is_the_sum_of_each_loss_terms_truncated_gradient(case):
    B, T, _ = case.xs.shape
    _, grads, dh0 = hg.loss_and_grads(case.params, case.xs, case.ys, case.spec, case.h0,
                                      wrt_h0=True)
    total = [np.zeros_like(g) for g in grads.arrays().values()]
    total_h0 = np.zeros_like(dh0)
    for t in range(1, T + 1):
        cut = cut_of(case.spec.truncation, t, T)
        term = dataclasses.replace(case.spec, output="last", truncation=hg.Window(t - 1 - cut))
        _, g, h = hg.loss_and_grads(case.params, case.xs[:, :t], case.ys[:, t - 1], term,
                                    case.h0, wrt_h0=True)
        total = [a + b for a, b in zip(total, g.arrays().values())]
        total_h0 += h
    for name, got, want in zip(grads.arrays(), grads.arrays().values(), total):
        assert hg.rel_error(got, want) <= TOL, f"d{name}"
    assert hg.rel_error(dh0, total_h0) <= TOL, "dh0"


def test_window_of_the_tutorial_reaches_k_transitions():
    """Window(k) with output="last": the loss at T reaches steps T-k..T, so x_j for j < T-k
    gets no gradient through U (the one-hot position input makes column j of dU the
    contribution of step j)."""
    spec = hg.Spec(activation="sigmoid", bias=False, output="last", truncation=hg.Window(2))
    T = 6
    params = hg.init_params(spec, T, 3, 1, seed=0)
    xs = np.eye(T)[None] * np.arange(1.0, T + 1)[None, :, None]   # x_t = t e_t
    _, grads = hg.loss_and_grads(params, xs, np.array([[0.5]]), spec)
    reached = np.flatnonzero(np.any(grads.U != 0, axis=0)) + 1      # steps with a dU column
    assert list(reached) == [T - 2, T - 1, T]
