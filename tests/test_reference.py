"""hand == JAX: the hand-derived BPTT against `reference` (JAX autodiff), loss, every gradient
and dh0, within TOLERANCES["jax"] per array; and the reference's own numerics.

JAX compiles once per array shape. The reference jits one time step and one output step, so a
compile is reused across T, truncations and losses of the same (B, D, H, O); to keep the `ci`
suite fast these tests draw sizes from a small menu (which includes every size 1) instead of
every combination. The numerical-differentiation tests (test_numdiff.py) cover every size.
"""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad import checks
from handgrad.strategies import WEIGHT_SCALES, make_case, specs

jax = pytest.importorskip("jax")
import reference  # noqa: E402

# (B, T, D, H, O): all ones; B = H = 1 with T > 1 (a scalar recurrence); the strategies' largest
SIZE_MENU = [(1, 1, 1, 1, 1), (1, 5, 2, 1, 3), (3, 6, 3, 4, 3)]


@st.composite
def menu_cases(draw, spec=None):
    """`handgrad.strategies` cases, with sizes from SIZE_MENU."""
    spec = draw(specs(max_k=7) if spec is None else spec)
    sizes = draw(st.sampled_from(SIZE_MENU))
    scale = draw(st.sampled_from(list(WEIGHT_SCALES)))
    return make_case(spec, *sizes, scale=scale, seed=draw(st.integers(0, 2**32 - 1)),
                     with_h0=draw(st.booleans()))


def assert_agrees(case, method="jax"):
    agr = checks.agreement(case, method)
    assert agr.ok, f"{checks.describe(agr)}\ncase: spec={case.spec}, sizes={case.sizes}, " \
                   f"scale={case.scale}, seed={case.seed}, h0={'given' if case.h0 is not None else 'zero'}"


@settings(max_examples=2 * settings().max_examples)   # cheap once the menu is compiled
@given(menu_cases())
@example(make_case(hg.Spec.tutorial(), 3, 6, 3, 4, 3, scale="tutorial", seed=0))   # saturated
def test_hand_equals_jax(case):
    assert_agrees(case, "jax")


def test_hand_equals_jax_tutorial_sized():
    """The tutorial's own sizes (H = 100 sigmoid units, T = 50, one-hot position input, uniform
    (0, 1) weights): every unit saturated, the gradients of U and W tiny; JAX agrees anyway."""
    spec = hg.Spec.tutorial()
    params = hg.init_params(spec, 50, 100, 1, seed=3, init="tutorial")
    x = np.sin(np.arange(50.0))
    xs = (x[:, None] * np.eye(50))[None]               # xs[:, t-1] = x[t] e_t, (1, 50, 50)
    ys = np.array([[np.sin(50.0)]])
    case = make_case(spec, 1, 1, 1, 1, 1)._replace(params=params, xs=xs, ys=ys, h0=None)
    assert_agrees(case, "jax")


def test_reference_loss_matches_value_and_truncation_free():
    case = make_case(hg.Spec(truncation=hg.Chunks(2)), 2, 4, 1, 3, 2, seed=7)
    full = reference.loss(case.params, case.xs, case.ys, case.spec, case.h0)
    value, _ = reference.loss_and_grads(case.params, case.xs, case.ys, case.spec, case.h0)
    assert hg.rel_error(value, full) <= hg.TOLERANCES["jax"]
    assert hg.rel_error(value, hg.loss_and_grads(*case[1:4], case.spec, case.h0)[0]) \
        <= hg.TOLERANCES["jax"]


def test_reference_returns_numpy_params_of_the_right_shapes():
    case = make_case(hg.Spec(bias=False), 2, 4, 1, 3, 2, seed=1, with_h0=False)
    loss, grads, dh0 = reference.loss_and_grads(case.params, case.xs, case.ys, case.spec,
                                                wrt_h0=True)
    assert isinstance(loss, float) and isinstance(grads, hg.Params)
    assert grads.b is None and grads.c is None
    for g, p in zip(grads.arrays().values(), case.params.arrays().values()):
        assert type(g) is np.ndarray and g.dtype == np.float64 and g.shape == p.shape
    assert dh0.shape == (2, 3) and dh0.dtype == np.float64


def test_reference_accepts_float32_and_computes_in_float64():
    case = make_case(hg.Spec(truncation=hg.Window(1)), 1, 5, 2, 1, 3, seed=2)
    f32 = hg.Params(*(None if p is None else p.astype(np.float32) for p in case.params))
    args = (f32, case.xs.astype(np.float32), case.ys.astype(np.float32), case.spec,
            case.h0.astype(np.float32))
    loss, grads, dh0 = reference.loss_and_grads(*args, wrt_h0=True)
    want = hg.loss_and_grads(*args, wrt_h0=True)
    assert hg.rel_error(loss, want[0]) <= hg.TOLERANCES["jax"]
    for g, w in zip(grads.arrays().values(), want[1].arrays().values()):
        assert g.dtype == np.float64 and hg.rel_error(g, w) <= hg.TOLERANCES["jax"]
    assert dh0.dtype == np.float64 and hg.rel_error(dh0, want[2]) <= hg.TOLERANCES["jax"]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_reference_activation_derivative_is_accurate_when_saturated(activation):
    """Autodiff of reference.activate gives act'(a) to full relative precision even where
    h rounds to +-1, matching handgrad.nonlin; JAX's own tanh/sigmoid do not (that is why the
    reference writes the activations out). No overflow, no NaN at |a| = 700."""
    from handgrad.nonlin import act, act_derivative
    a = np.array([-700.0, -40.0, -20.0, -1.0, 0.0, 0.5, 20.0, 40.0, 700.0])
    grad = jax.vmap(jax.grad(lambda z: reference.act(activation, z)))(a)
    h, dh = act(activation, a.copy()), act_derivative(activation, a)
    assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_allclose(np.asarray(grad), dh, rtol=1e-14, atol=0)
    np.testing.assert_allclose(np.asarray(reference.act(activation, a)), h, rtol=1e-15,
                               atol=0)
    builtin = jax.nn.sigmoid if activation == "sigmoid" else jax.numpy.tanh
    naive = np.asarray(jax.vmap(jax.grad(builtin))(a))
    assert naive[7] == 0.0 and dh[7] > 0     # the output-based derivative loses it entirely


def test_reference_does_not_import_into_handgrad():
    import subprocess
    import sys
    code = "import sys, handgrad, handgrad.checks; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
