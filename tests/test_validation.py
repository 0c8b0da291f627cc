"""Bad input: every public function raises ValueError naming the argument; float32 is accepted
and computed in float64."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import handgrad as hg
from handgrad.params import tree_leaves, tree_map
from handgrad.strategies import cases, make_case
from conftest import need

SPEC = hg.Spec(activation="tanh", bias=True, output="all", loss="half_squared")
CE = hg.Spec(output="all", loss="cross_entropy")
CASE = make_case(SPEC, 2, 3, 2, 3, 2, seed=0)
CE_CASE = make_case(CE, 2, 3, 2, 3, 4, seed=0)
P = CASE.params


def _reference():
    need("jax")
    import reference
    return reference.loss_and_grads


def full_grad_functions():
    """Every public function taking (params, xs, ys, spec, h0): the hand BPTT, the numerical
    gradients, and the JAX reference."""
    return [
        pytest.param(lambda *a, **k: hg.loss_and_grads(*a, **k), id="loss_and_grads"),
        pytest.param(lambda *a, **k: hg.numerical_grads(*a, **k), id="numerical_grads"),
        pytest.param(lambda *a, **k: hg.directional_derivative(a[0], a[1], a[2], a[3], P, **k),
                     id="directional_derivative"),
        pytest.param(lambda *a, **k: _reference()(*a, **k), id="reference.loss_and_grads"),
    ]


def _nan(a, index=(0,)):
    a = np.array(a, dtype=float)
    a[index] = np.nan
    return a


# (label, params, xs, ys, spec, h0, words the message must contain)
BAD = [
    ("params not Params", (P.U, P.W, P.V, P.b, P.c), CASE.xs, CASE.ys, SPEC, None, ["params"]),
    ("U 3-d", P._replace(U=P.U[None]), CASE.xs, CASE.ys, SPEC, None, ["params.U", "(1, 3, 2)"]),
    ("W not square", P._replace(W=np.ones((3, 2))), CASE.xs, CASE.ys, SPEC, None,
     ["params.W", "(3, 3)", "(3, 2)"]),
    ("V wrong H", P._replace(V=np.ones((2, 4))), CASE.xs, CASE.ys, SPEC, None, ["params.V", "(2, 4)"]),
    ("b wrong", P._replace(b=np.ones(4)), CASE.xs, CASE.ys, SPEC, None, ["params.b", "(4,)"]),
    ("c wrong", P._replace(c=np.ones(3)), CASE.xs, CASE.ys, SPEC, None, ["params.c", "(3,)"]),
    ("b missing", P._replace(b=None), CASE.xs, CASE.ys, SPEC, None, ["params.b"]),
    ("bias given without bias", P, CASE.xs, CASE.ys, hg.Spec(bias=False), None, ["params.b"]),
    ("U NaN", P._replace(U=_nan(P.U, (0, 1))), CASE.xs, CASE.ys, SPEC, None,
     ["params.U", "finite", "(0, 1)"]),
    ("W inf", P._replace(W=np.full((3, 3), np.inf)), CASE.xs, CASE.ys, SPEC, None,
     ["params.W", "finite"]),
    ("U complex", P._replace(U=P.U + 0j), CASE.xs, CASE.ys, SPEC, None, ["params.U", "complex"]),
    ("xs 2-d", P, CASE.xs[0], CASE.ys, SPEC, None, ["xs", "3-dimensional", "(3, 2)"]),
    ("xs wrong D", P, CASE.xs[..., :1], CASE.ys, SPEC, None, ["xs", "D = 2", "(2, 3, 1)"]),
    ("xs empty T", P, CASE.xs[:, :0], CASE.ys[:, :0], SPEC, None, ["xs", "(2, 0, 2)"]),
    ("xs NaN", P, _nan(CASE.xs, (1, 2, 0)), CASE.ys, SPEC, None, ["xs", "finite", "(1, 2, 0)"]),
    ("xs strings", P, "abc", CASE.ys, SPEC, None, ["xs"]),
    ("ys wrong shape", P, CASE.xs, CASE.ys[:, 0], SPEC, None, ["ys", "(B, T, O)", "(2, 2)"]),
    ("ys last vs all", P, CASE.xs, CASE.ys, hg.Spec(output="last"), None, ["ys", "(B, O)"]),
    ("ys inf", P, CASE.xs, _nan(CASE.ys, (0, 0, 1)) * 0 + np.inf, SPEC, None, ["ys", "finite"]),
    ("ys None", P, CASE.xs, None, SPEC, None, ["ys"]),
    ("h0 wrong shape", P, CASE.xs, CASE.ys, SPEC, np.zeros((2, 4)), ["h0", "(2, 3)", "(2, 4)"]),
    ("h0 NaN", P, CASE.xs, CASE.ys, SPEC, _nan(np.zeros((2, 3))), ["h0", "finite"]),
    ("spec not Spec", P, CASE.xs, CASE.ys, "tanh", None, ["spec"]),
    ("CE float targets", CE_CASE.params, CE_CASE.xs, CE_CASE.ys.astype(float), CE, None,
     ["ys", "integer"]),
    ("CE target = O", CE_CASE.params, CE_CASE.xs, np.full((2, 3), 4), CE, None,
     ["ys", "[0, 4)", "4"]),
    ("CE negative target", CE_CASE.params, CE_CASE.xs, np.full((2, 3), -1), CE, None,
     ["ys", "[0, 4)", "-1"]),
    ("CE targets wrong shape", CE_CASE.params, CE_CASE.xs, np.zeros((2,), int), CE, None,
     ["ys", "(B, T)"]),
]


@pytest.mark.parametrize("fn", full_grad_functions())
@pytest.mark.parametrize("label, params, xs, ys, spec, h0, words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_value_error_naming_the_argument(fn, label, params, xs, ys, spec, h0,
                                                          words):
    with pytest.raises(ValueError) as info:
        fn(params, xs, ys, spec, h0=h0)
    for word in words:
        assert word in str(info.value), f"{label}: {word!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("label, params, xs, spec, h0, words", [
    (b[0], b[1], b[2], b[4], b[5], b[6]) for b in BAD
    if not b[0].startswith(("ys", "CE")) and b[0] != "bias given without bias"
] + [("bias given without bias", P, CASE.xs, hg.Spec(bias=False), None, ["params.b"])],
    ids=lambda v: v if isinstance(v, str) else "")
def test_predict_rejects_bad_input(label, params, xs, spec, h0, words):
    with pytest.raises(ValueError) as info:
        hg.predict(params, xs, spec, h0=h0)
    for word in words:
        assert word in str(info.value), f"{label}: {word!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("call, words", [
    (lambda: hg.init_params("tanh", 2, 3, 1), ["spec"]),
    (lambda: hg.init_params(SPEC, 0, 3, 1), ["input_dim", "0"]),
    (lambda: hg.init_params(SPEC, 2, -1, 1), ["hidden_dim", "-1"]),
    (lambda: hg.init_params(SPEC, 2, 3, 1.5), ["output_dim", "1.5"]),
    (lambda: hg.init_params(SPEC, True, 3, 1), ["input_dim"]),
    (lambda: hg.init_params(SPEC, 2, 3, 1, init="xavier"), ["init", "xavier"]),
    (lambda: hg.init_params(SPEC, 2, 3, 1, scale=0.0), ["scale"]),
    (lambda: hg.init_params(SPEC, 2, 3, 1, scale=np.nan), ["scale"]),
    (lambda: hg.init_params(SPEC, 2, 3, 1, scale="big"), ["scale", "big"]),
    (lambda: hg.init_params(SPEC, 2, 3, 1, seed=-1), ["seed", "-1"]),
    (lambda: hg.init_params(SPEC, 2, 3, 1, seed="x"), ["seed"]),
    (lambda: hg.numerical_grads(P, CASE.xs, CASE.ys, SPEC, method="forward"), ["method", "forward"]),
    (lambda: hg.loss_and_grads(P, CASE.xs, CASE.ys, SPEC, wrt_h0="yes"), ["wrt_h0", "yes"]),
    (lambda: hg.directional_derivative(P, CASE.xs, CASE.ys, SPEC, None), ["direction"]),
    (lambda: hg.directional_derivative(P, CASE.xs, CASE.ys, SPEC, P._replace(W=np.ones(3))),
     ["direction.W", "(3, 3)"]),
    (lambda: hg.directional_derivative(P, CASE.xs, CASE.ys, SPEC, P._replace(V=_nan(P.V))),
     ["direction.V", "finite"]),
    (lambda: hg.directional_derivative(P, CASE.xs, CASE.ys, SPEC, P, direction_h0=np.ones(3)),
     ["direction_h0", "(2, 3)"]),
    (lambda: hg.directional_derivative(P, CASE.xs, CASE.ys, SPEC, P, method="x"), ["method"]),
    (lambda: hg.Spec(activation="softplus"), ["activation", "softplus"]),
    (lambda: hg.Spec(cell="lstm", activation="relu"), ["activation", "tanh", "lstm"]),
    (lambda: hg.Spec(cell="rnn"), ["cell", "rnn"]),
    (lambda: hg.Spec(cell="lstm", gru_reset="before"), ["gru_reset", "gru"]),
    (lambda: hg.Spec(head=1), ["head"]),
    (lambda: hg.init_params(hg.Spec(head=False), 2, 3, 4), ["output_dim", "head"]),
    (lambda: hg.init_params(SPEC, 2, 3), ["output_dim"]),
    (lambda: hg.loss_and_grads(P, CASE.xs, CASE.ys, SPEC, wrt_xs=1), ["wrt_xs"]),
    (lambda: hg.loss_and_grads(P, CASE.xs.astype("m8[s]"), CASE.ys, SPEC), ["xs", "timedelta"]),
    (lambda: hg.parse_truncation(None), ["truncation", "NoneType"]),
    (lambda: hg.segments(5, 3, "all"), ["truncation", "5"]),
    (lambda: hg.Spec(output="first"), ["output", "first"]),
    (lambda: hg.Spec(loss="l1"), ["loss", "l1"]),
    (lambda: hg.Spec(reduction="max"), ["reduction", "max"]),
    (lambda: hg.Spec(bias=1), ["bias"]),
    (lambda: hg.Spec(truncation=5), ["truncation", "5"]),
    (lambda: hg.Spec(truncation="window:5"), ["truncation"]),
    (lambda: hg.Window(-1), ["Window", "-1"]),
    (lambda: hg.Window(1.5), ["Window", "1.5"]),
    (lambda: hg.Window(True), ["Window"]),
    (lambda: hg.Window("3"), ["Window"]),
    (lambda: hg.Chunks(0), ["Chunks", "0"]),
    (lambda: hg.TBPTT(0, 2), ["k1", "0"]),
    (lambda: hg.TBPTT(3, 2), ["k1", "k2"]),
    (lambda: hg.TBPTT(2, None), ["k2"]),
    (lambda: hg.segments(None, 0, "all"), ["T", "0"]),
    (lambda: hg.segments(None, 3, "every"), ["output", "every"]),
    (lambda: hg.parse_truncation("window:x"), ["truncation", "window:x"]),
    (lambda: hg.Spec.from_dict({"activation": "tanh", "colour": 1}), ["colour"]),
], ids=lambda v: "" if callable(v) else "+".join(v) if isinstance(v, list) else str(v))
def test_other_public_functions_reject_bad_input(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


def test_truncations_accept_numpy_integers_as_plain_ints():
    w = hg.Window(np.int64(3))
    assert w == hg.Window(3) and type(w.k) is int
    assert hg.TBPTT(np.int32(2), np.int64(4)) == hg.TBPTT(2, 4)


@given(cases())
def test_float32_input_is_accepted_and_computed_in_float64(case):
    """float32 arrays give the float64 answer for the same (float32-rounded) values."""
    def to(dtype):
        return lambda a: a.astype(dtype)
    f32 = tree_map(to(np.float32), case.params)
    xs32 = case.xs.astype(np.float32)
    ys32 = case.ys if case.spec.loss == "cross_entropy" else case.ys.astype(np.float32)
    h032 = tree_map(to(np.float32), case.h0)
    got = hg.loss_and_grads(f32, xs32, ys32, case.spec, h032, wrt_h0=True, wrt_xs=True)
    want = hg.loss_and_grads(tree_map(to(np.float64), f32), xs32.astype(np.float64),
                             np.asarray(ys32).astype(case.ys.dtype), case.spec,
                             tree_map(to(np.float64), h032), wrt_h0=True, wrt_xs=True)
    assert type(got[0]) is float and got[0] == want[0]
    for g, w in zip(tree_leaves(got[1:]), tree_leaves(want[1:])):
        assert g.dtype == np.float64
        np.testing.assert_array_equal(g, w)
    os, hs = hg.predict(f32, xs32, case.spec, h032)
    assert os.dtype == np.float64 and hs.dtype == np.float64


@given(st.sampled_from(["int32", "int64", "uint8"]))
def test_integer_class_ids_of_any_integer_dtype(dtype):
    loss, _ = hg.loss_and_grads(CE_CASE.params, CE_CASE.xs, CE_CASE.ys.astype(dtype), CE)
    assert loss == hg.loss_and_grads(CE_CASE.params, CE_CASE.xs, CE_CASE.ys, CE)[0]
