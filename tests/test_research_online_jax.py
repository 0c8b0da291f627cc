"""RTRL == JAX autodiff (the `reference` package): loss, every gradient and dh0 within
TOLERANCES["jax"], over the Elman family (every activation, output, loss, reduction) on a small fixed menu of
shapes (JAX compiles per shape;
see test_reference.py). RTRL == hand BPTT is proven in test_research_online.py over every shape.
"""
import pytest

import handgrad as hg
from conftest import need
from handgrad.research import rtrl_grads
from handgrad.strategies import make_case

need("jax")                     # skips outside CI when jax is missing; fails in CI
import reference  # noqa: E402

TOL = hg.TOLERANCES["jax"]
SIZE_MENU = [(1, 1, 1, 1, 1), (1, 5, 2, 1, 3), (3, 6, 3, 4, 3)]   # as test_reference.py
SPECS = [
    hg.Spec(),
    hg.Spec(activation="sigmoid", bias=False, output="last", loss="half_squared"),
    hg.Spec(activation="tanh", output="all", loss="squared", reduction="mean"),
    hg.Spec(activation="sigmoid", output="last", loss="cross_entropy", reduction="mean"),
    hg.Spec(activation="tanh", bias=False, output="all", loss="cross_entropy"),
]


# every spec once, the sizes of the menu in turn, every other one with saturated units
CASES = [(spec, SIZE_MENU[i % 3], ("moderate", "saturating")[i % 2])
         for i, spec in enumerate(SPECS)]


@pytest.mark.parametrize("spec, sizes, scale", CASES,
                         ids=[f"{s.activation}-{s.output}-{s.loss}-{sc}" for s, _, sc in CASES])
def test_rtrl_equals_jax(spec, sizes, scale):
    case = make_case(spec, *sizes, scale=scale, seed=sum(sizes) + len(spec.loss))
    loss, grads, dh0 = rtrl_grads(case.params, case.xs, case.ys, spec, h0=case.h0, wrt_h0=True)
    want_loss, want, want_dh0 = reference.loss_and_grads(case.params, case.xs, case.ys, spec,
                                                         h0=case.h0, wrt_h0=True)
    assert hg.rel_error(loss, want_loss) <= TOL
    for name, expected in want.arrays().items():
        assert hg.rel_error(getattr(grads, name), expected) <= TOL, name
    assert hg.rel_error(dh0, want_dh0) <= TOL
