"""The known-wrong fixture: the tutorial's published backward pass, bug for bug.

Its loop form (which mirrors the published code) is checked against facts read off the published
code by hand, and against its closed form; and it must stay wrong: far from the exact gradient.
"""
import numpy as np
import pytest

import handgrad as hg
from handgrad.tolerances import gamma, sum_depth
from handgrad.tutorial_code import (BUGS, published_backward, published_backward_closed_form,
                                    published_predict)

T, H = 12, 7
# two float64 evaluations of the same sums in another order: the error model's bound for this
# size (handgrad.tolerances: gamma of the rounding depth of the backward pass), about 2e-14
REORDERED = gamma(sum_depth(1, T, T, H, 1), np.finfo(np.float64).eps)


def _weights(kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "tutorial":
        return rng.uniform(0, 1, (H, T)), rng.uniform(0, 1, (H, H)), rng.uniform(0, 1, (1, H))
    return rng.normal(0, 0.3, (H, T)), rng.normal(0, 0.3, (H, H)), rng.normal(0, 0.3, (1, H))


def _window(seed=1):
    return np.sin(np.arange(T) + seed)


@pytest.mark.parametrize("kind", ["tutorial", "normal"])
@pytest.mark.parametrize("k", [0, 1, 5, T + 3])
def test_closed_form_reproduces_the_loops(kind, k):
    U, W, V = _weights(kind)
    loss, g = published_backward(U, W, V, _window(), 0.3, k)
    loss2, g2 = published_backward_closed_form(U, W, V, _window(), 0.3, k)
    assert loss == loss2
    for name in "UWV":
        assert hg.rel_error(getattr(g2, name), getattr(g, name)) <= REORDERED, name


def test_loss_is_right_and_forward_matches_handgrad():
    U, W, V = _weights("normal")
    x, y = _window(), 0.4
    loss, _ = published_backward(U, W, V, x, y)
    exact, _ = hg.loss_and_grads(hg.Params(U, W, V), (x[:, None] * np.eye(T))[None],
                                 np.array([[y]]), hg.Spec.tutorial())
    assert loss == pytest.approx(exact, rel=1e-13)


def test_dU_and_dW_do_not_depend_on_the_target_bug_2():
    U, W, V = _weights("normal")
    _, a = published_backward(U, W, V, _window(), 0.3)
    _, b = published_backward(U, W, V, _window(), -5.0)
    assert np.array_equal(a.U, b.U) and np.array_equal(a.W, b.W)
    assert not np.array_equal(a.V, b.V)


def test_published_shapes_and_broadcast_columns_bug_3():
    U, W, V = _weights("normal")
    _, g = published_backward(U, W, V, _window(), 0.3)
    assert g.U.shape == (H, T) and g.W.shape == (H, H) and g.V.shape == (1, H)
    assert g.b is None and g.c is None
    assert np.all(g.U == g.U[:, :1]) and np.all(g.W == g.W[:, :1])


def test_dV_sums_the_error_over_every_state_bug_5():
    U, W, V = _weights("normal")
    x, y = _window(), 0.3
    _, g = published_backward(U, W, V, x, y)
    os_, hs = hg.predict(hg.Params(U, W, V), (x[:, None] * np.eye(T))[None], hg.Spec.tutorial())
    expected = (os_[0, 0] - y) * hs[0].sum(axis=0)[None]
    assert hg.rel_error(g.V, expected) <= REORDERED


def test_the_fixture_is_far_from_the_exact_gradient():
    U, W, V = _weights("normal")
    x, y = _window(), 0.3
    _, g = published_backward(U, W, V, x, y, 5)
    _, exact = hg.loss_and_grads(hg.Params(U, W, V), (x[:, None] * np.eye(T))[None],
                                 np.array([[y]]), hg.Spec.tutorial())
    for name in "UWV":
        assert hg.rel_error(getattr(g, name), getattr(exact, name)) > 1.0, name


def test_per_step_inputs_generalise_the_window():
    U, W, V = _weights("normal")
    x = _window()
    a = published_backward(U, W, V, x, 0.3)
    b = published_backward(U, W, V, x[:, None] * np.eye(T), 0.3)
    assert a[0] == b[0] and all(np.array_equal(p, q) for p, q in zip(a[1][:3], b[1][:3]))


def test_published_prediction_feeds_the_whole_window_bug_6():
    U, W, V = _weights("normal")
    x = _window()
    spec = hg.Spec.tutorial()
    right, _ = hg.predict(hg.Params(U, W, V), (x[:, None] * np.eye(T))[None], spec)
    wrong = published_predict(U, W, V, x)
    same_input, _ = hg.predict(hg.Params(U, W, V), np.repeat(x[None, None], T, axis=1), spec)
    assert wrong[0] == pytest.approx(same_input[0, 0], rel=1e-12)
    assert abs(wrong[0] - right[0, 0]) > 1e-3


def test_bad_arguments_raise_value_error():
    U, W, V = _weights("normal")
    for args in ((U, W, V, np.zeros(T + 1), 0.0), (U, W[:2], V, _window(), 0.0),
                 (U, W, V, _window(), [1.0, 2.0])):
        with pytest.raises(ValueError):
            published_backward(*args)
    with pytest.raises(ValueError, match="bptt_truncate"):
        published_backward(U, W, V, _window(), 0.0, -1)
    assert sorted(BUGS) == list(range(1, 9))
