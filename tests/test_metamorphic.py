"""Metamorphic laws of the hand BPTT: relations between runs that hold whatever the true answer.

- reduction="sum": the gradient of a batch is the sum of the per-sample gradients (dh0, dxs:
  rows);
- the order of the samples in a batch does not matter (dh0, dxs rows follow their samples);
- squared losses: the gradient is affine in the targets;
- zero error (targets = outputs) gives exactly zero gradient.

Round-off: the same sums in another order, so the bound is TOLERANCES["jax"].
"""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad.params import tree_leaves, tree_map
from handgrad.strategies import cases, specs

TOL = hg.TOLERANCES["jax"]
MORE = settings(max_examples=2 * settings().max_examples)   # cheap numpy-only properties


def run(case, spec=None, xs=None, ys=None, h0=None, params=None):
    """loss, grads, dh0, dxs of the case with any of its parts replaced."""
    return hg.loss_and_grads(case.params if params is None else params,
                             case.xs if xs is None else xs, case.ys if ys is None else ys,
                             case.spec if spec is None else spec,
                             case.h0 if h0 is None else h0, wrt_h0=True, wrt_xs=True)


def initial(case):
    """The case's initial state with zeros filled in: (B, H), or the LSTM's pair."""
    B, H = case.xs.shape[0], case.params.sizes[1]
    if case.h0 is not None:
        return case.h0
    return (np.zeros((B, H)), np.zeros((B, H))) if case.spec.cell == "lstm" else np.zeros((B, H))


def rows(tree, index):
    """The samples `index` of every batch-major array of `tree` (h0, its pair, dh0, dxs)."""
    return tree_map(lambda a: a[index], tree)


def assert_close(got, want, what):
    for i, (g, w) in enumerate(zip(tree_leaves(got), tree_leaves(want))):
        assert hg.rel_error(g, w) <= TOL, f"{what}[{i}]: {hg.rel_error(g, w):.1e}"


@MORE
@given(cases(spec=specs(reduction="sum"), max_B=4))
def test_batch_gradient_is_the_sum_of_per_sample_gradients(case):
    B = case.xs.shape[0]
    h0 = initial(case)
    loss, grads, dh0, dxs = run(case, h0=h0)
    parts = [run(case, xs=case.xs[i:i + 1], ys=case.ys[i:i + 1], h0=rows(h0, slice(i, i + 1)))
             for i in range(B)]
    assert hg.rel_error(loss, sum(p[0] for p in parts)) <= TOL
    summed = [sum(leaves) for leaves in zip(*(tree_leaves(p[1]) for p in parts))]
    assert_close(grads, summed, "grads")
    stacked = [np.concatenate(leaves) for leaves in zip(*(tree_leaves(p[2:]) for p in parts))]
    assert_close((dh0, dxs), stacked, "dh0, dxs rows")


@MORE
@given(cases(max_B=4), st.randoms(use_true_random=False))
def test_batch_order_does_not_matter(case, rnd):
    B = case.xs.shape[0]
    h0 = initial(case)
    perm = list(range(B))
    rnd.shuffle(perm)
    loss, grads, dh0, dxs = run(case, h0=h0)
    lp, gp, hp, xp = run(case, xs=case.xs[perm], ys=case.ys[perm], h0=rows(h0, perm))
    assert hg.rel_error(lp, loss) <= TOL
    assert_close(gp, grads, "grads")
    assert_close((hp, xp), rows((dh0, dxs), perm), "dh0, dxs rows")


@MORE
@given(cases(spec=specs(loss=st.sampled_from(["half_squared", "squared"]))),
       st.floats(-2.0, 3.0), st.integers(0, 2**32 - 1))
def test_squared_loss_gradient_is_affine_in_the_targets(case, alpha, seed):
    """g(alpha y1 + (1 - alpha) y2) == alpha g(y1) + (1 - alpha) g(y2), for every array."""
    y1 = case.ys
    y2 = np.random.default_rng(seed).normal(size=y1.shape)
    ym = alpha * y1 + (1 - alpha) * y2
    _, *g1 = run(case, ys=y1)
    _, *g2 = run(case, ys=y2)
    _, *gm = run(case, ys=ym)
    expected = [alpha * a + (1 - alpha) * b for a, b in zip(tree_leaves(g1), tree_leaves(g2))]
    assert_close(gm, expected, "grads, dh0, dxs")


@MORE
@given(cases(spec=specs(loss=st.sampled_from(["half_squared", "squared"]))))
def test_zero_error_gives_zero_gradient(case):
    outputs, _ = hg.predict(case.params, case.xs, case.spec, case.h0)
    loss, *got = run(case, ys=outputs)
    assert loss == 0.0
    for g in tree_leaves(got):
        np.testing.assert_array_equal(g, 0.0)
