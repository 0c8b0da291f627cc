"""Metamorphic laws of the hand BPTT: relations between runs that hold whatever the true answer.

- reduction="sum": the gradient of a batch is the sum of the per-sample gradients (dh0: rows);
- the order of the samples in a batch does not matter (dh0 rows follow their samples);
- squared losses: the gradient is affine in the targets;
- zero error (targets = outputs) gives exactly zero gradient.

Round-off: the same sums in another order, so the bound is TOLERANCES["jax"].
"""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad.strategies import cases, specs

TOL = hg.TOLERANCES["jax"]
MORE = settings(max_examples=2 * settings().max_examples)   # cheap numpy-only properties


def run(case, spec=None, xs=None, ys=None, h0=None, params=None):
    return hg.loss_and_grads(case.params if params is None else params,
                             case.xs if xs is None else xs, case.ys if ys is None else ys,
                             case.spec if spec is None else spec,
                             case.h0 if h0 is None else h0, wrt_h0=True)


@MORE
@given(cases(spec=specs(reduction="sum"), max_B=4))
def test_batch_gradient_is_the_sum_of_per_sample_gradients(case):
    B = case.xs.shape[0]
    h0 = case.h0 if case.h0 is not None else np.zeros((B, case.params.W.shape[0]))
    loss, grads, dh0 = run(case, h0=h0)
    parts = [run(case, xs=case.xs[i:i + 1], ys=case.ys[i:i + 1], h0=h0[i:i + 1])
             for i in range(B)]
    assert hg.rel_error(loss, sum(p[0] for p in parts)) <= TOL
    for name, g in grads.arrays().items():
        summed = sum(getattr(p[1], name) for p in parts)
        assert hg.rel_error(g, summed) <= TOL, f"d{name}"
    assert hg.rel_error(dh0, np.concatenate([p[2] for p in parts])) <= TOL, "dh0"


@MORE
@given(cases(max_B=4), st.randoms(use_true_random=False))
def test_batch_order_does_not_matter(case, rnd):
    B = case.xs.shape[0]
    h0 = case.h0 if case.h0 is not None else np.zeros((B, case.params.W.shape[0]))
    perm = list(range(B))
    rnd.shuffle(perm)
    loss, grads, dh0 = run(case, h0=h0)
    lp, gp, hp = run(case, xs=case.xs[perm], ys=case.ys[perm], h0=h0[perm])
    assert hg.rel_error(lp, loss) <= TOL
    for name, g in grads.arrays().items():
        assert hg.rel_error(getattr(gp, name), g) <= TOL, f"d{name}"
    assert hg.rel_error(hp, dh0[perm]) <= TOL, "dh0"


@MORE
@given(cases(spec=specs(loss=st.sampled_from(["half_squared", "squared"]))),
       st.floats(-2.0, 3.0), st.integers(0, 2**32 - 1))
def test_squared_loss_gradient_is_affine_in_the_targets(case, alpha, seed):
    """g(alpha y1 + (1 - alpha) y2) == alpha g(y1) + (1 - alpha) g(y2), for every array."""
    y1 = case.ys
    y2 = np.random.default_rng(seed).normal(size=y1.shape)
    ym = alpha * y1 + (1 - alpha) * y2
    _, g1, h1 = run(case, ys=y1)
    _, g2, h2 = run(case, ys=y2)
    _, gm, hm = run(case, ys=ym)
    for name in case.params.arrays():
        expected = alpha * getattr(g1, name) + (1 - alpha) * getattr(g2, name)
        assert hg.rel_error(getattr(gm, name), expected) <= TOL, f"d{name}"
    assert hg.rel_error(hm, alpha * h1 + (1 - alpha) * h2) <= TOL, "dh0"


@MORE
@given(cases(spec=specs(loss=st.sampled_from(["half_squared", "squared"]))))
def test_zero_error_gives_zero_gradient(case):
    outputs, _ = hg.predict(case.params, case.xs, case.spec, case.h0)
    loss, grads, dh0 = run(case, ys=outputs)
    assert loss == 0.0
    for name, g in grads.arrays().items():
        np.testing.assert_array_equal(g, 0.0, err_msg=f"d{name}")
    np.testing.assert_array_equal(dh0, 0.0)
