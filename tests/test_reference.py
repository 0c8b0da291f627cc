"""hand == JAX: the hand-derived BPTT against `reference` (JAX autodiff) over the whole version-2
family (Elman sigmoid/tanh/relu/identity, GRU reset after/before, LSTM; bias or not, head or not,
every output, loss, reduction and truncation): the loss, every gradient array, dh0 (both halves
for the LSTM) and dxs, each within TOLERANCES["jax"]. Then the reference's own numerics and
structure, checked without handgrad: the reduction divisors against PyTorch's losses, the
truncation cuts against the contract's wording, the cut blocking gradients into inputs, the
saturated activations, and the gated cells against PyTorch's nn.RNN / nn.GRU / nn.LSTM.

JAX compiles once per array shape. The reference jits one time step and one output step, so a
compile is reused across T, truncations and losses of the same (B, D, H, O); to keep the `ci`
suite fast (compiling is most of its time) these tests draw (B, D, H, O) from a menu of two, all
ones and all different, and T freely. The numerical-differentiation tests (test_numdiff.py)
cover every size.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs (O = H without a head).
"""
import importlib.util
import subprocess
import sys
from typing import NamedTuple, Optional

import numpy as np
import pytest
from conftest import need
from hypothesis import example, given
from hypothesis import strategies as st

import handgrad as hg
from handgrad.params import GatedParams
from handgrad.spec import ACTIVATIONS, LOSSES, OUTPUTS, REDUCTIONS
from handgrad.strategies import WEIGHT_SCALES, truncations

jax = need("jax")
import reference  # noqa: E402

TOL = hg.TOLERANCES["jax"]

# (B, D, H, O): all ones (with T > 1 a scalar recurrence); all different (O = H without a head)
SIZE_MENU = [(1, 1, 1, 1), (3, 2, 4, 5)]
MAX_T = 7

# (cell, activation, gru_reset): every cell variant of the family
CELLS = ([("elman", a, "after") for a in ACTIVATIONS]
         + [("gru", "tanh", "after"), ("gru", "tanh", "before"), ("lstm", "tanh", "after")])

H0_KINDS = ("none", "given", "h_only", "c_only")   # the last two: an LSTM pair with one None


class Case(NamedTuple):
    """One problem: params of the spec's type, xs (B, T, D), ys (per loss and output), h0
    (None, (B, H), or for the LSTM a pair whose halves may be None)."""

    spec: hg.Spec
    params: tuple
    xs: np.ndarray
    ys: np.ndarray
    h0: Optional[object]
    scale: str
    seed: int


def make_case(spec, B, T, D, H, O, scale="moderate", seed=0, h0="given", pad=0) -> Case:
    """A reproducible random case (a local builder: handgrad.strategies.make_case is Elman-only).

    Weights from hg.init_params at the weight scale `scale` (a key of WEIGHT_SCALES); biases
    redrawn N(0, 0.5^2) (init_params zeroes them) except for the tutorial's uniform init; inputs
    N(0, 1); ys class ids for cross-entropy, else N(0, 1) floats (targets, or upstream
    gradients for the linear loss); h0 per `h0` (one of H0_KINDS; for non-LSTM cells "h_only"
    and "c_only" mean "given"); the first `pad` input steps exactly zero (left padding: without
    h0 and biases the pre-activations there are exactly 0, where relu'(0) = 0 matters)."""
    rng = np.random.default_rng(seed)
    O = O if spec.head else H
    params = hg.init_params(spec, D, H, O if spec.head else None,
                            seed=int(rng.integers(2**31)), **WEIGHT_SCALES[scale])
    if spec.bias and scale != "tutorial":
        params = params._replace(**{n: rng.normal(0, 0.5, a.shape) for n, a in
                                    params._asdict().items()
                                    if n in ("b", "b_ih", "b_hh", "c") and a is not None})
    xs = rng.normal(size=(B, T, D))
    xs[:, :pad] = 0.0
    lead = (B,) if spec.output == "last" else (B, T)
    ys = rng.integers(0, O, lead) if spec.loss == "cross_entropy" else rng.normal(size=lead + (O,))
    h = rng.uniform(-0.9, 0.9, (B, H))
    if h0 == "none":
        state = None
    elif spec.cell != "lstm":
        state = h
    else:
        c = rng.normal(0, 1.0, (B, H))
        state = {"given": (h, c), "h_only": (h, None), "c_only": (None, c)}[h0]
    return Case(spec, params, xs, ys, state, scale, seed)


@st.composite
def menu_cases(draw, cell: str):
    """A spec of `cell` over every other field (and every activation or gru_reset of the cell),
    (B, D, H, O) from SIZE_MENU, T up to MAX_T, any weight scale and h0."""
    _, activation, gru_reset = draw(st.sampled_from([c for c in CELLS if c[0] == cell]))
    spec = hg.Spec(activation=activation, bias=draw(st.booleans()),
                   output=draw(st.sampled_from(OUTPUTS)), loss=draw(st.sampled_from(LOSSES)),
                   reduction=draw(st.sampled_from(REDUCTIONS)),
                   truncation=draw(truncations(max_k=7)), head=draw(st.booleans()), cell=cell,
                   gru_reset=gru_reset)
    B, D, H, O = draw(st.sampled_from(SIZE_MENU))
    T = draw(st.integers(1, MAX_T))
    pad = draw(st.integers(0, 9).map(lambda c: max(0, c - 7)))     # one time in five: 1 or 2
    return make_case(spec, B, T, D, H, O, scale=draw(st.sampled_from(list(WEIGHT_SCALES))),
                     seed=draw(st.integers(0, 2**32 - 1)), h0=draw(st.sampled_from(H0_KINDS)),
                     pad=min(pad, T))


def errors(case) -> dict:
    """Normwise relative error of hand against reference per returned array: "loss", each
    parameter gradient by name, "h0" (and "c0" for the LSTM), "xs". Also asserts that both
    return the same types, the same None entries and the same shapes."""
    args = (case.params, case.xs, case.ys, case.spec)
    hand = hg.loss_and_grads(*args, h0=case.h0, wrt_h0=True, wrt_xs=True)
    ref = reference.loss_and_grads(*args, h0=case.h0, wrt_h0=True, wrt_xs=True)
    assert type(ref[0]) is float and type(ref[1]) is type(case.params) is type(hand[1])
    out = {"loss": hg.rel_error(hand[0], ref[0])}
    for name, p, h, r in zip(type(case.params)._fields, case.params, hand[1], ref[1]):
        assert (p is None) == (h is None) == (r is None), name
        if p is not None:
            assert h.shape == r.shape == np.shape(p) and r.dtype == np.float64, name
            out[name] = hg.rel_error(h, r)
    states = zip(("h0", "c0"), hand[2], ref[2]) if case.spec.cell == "lstm" \
        else [("h0", hand[2], ref[2])]
    for name, h, r in states:
        assert h.shape == r.shape == case.xs.shape[:1] + case.params.sizes[1:2], name
        out[name] = hg.rel_error(h, r)
    assert ref[3].shape == hand[3].shape == case.xs.shape
    out["xs"] = hg.rel_error(hand[3], ref[3])
    return out


def assert_agrees(case):
    errs = errors(case)
    worst = max(errs, key=errs.get)
    assert errs[worst] <= TOL, (
        f"hand vs jax: {worst} rel error {errs[worst]:.2e} > {TOL:.0e}; all: "
        + ", ".join(f"{k} {v:.1e}" for k, v in errs.items())
        + f"\ncase: spec={case.spec}, sizes={case.xs.shape} H={case.params.sizes[1]}, "
          f"scale={case.scale}, seed={case.seed}, h0={'given' if case.h0 is not None else 'zero'}")


def _saturating(cell, activation="tanh", **fields):
    spec = hg.Spec(activation=activation, cell=cell, truncation=hg.TBPTT(2, 3), **fields)
    return make_case(spec, 3, 6, 2, 4, 5, scale="saturating", seed=11)


# One property per cell: each compiles only its own cell's steps, and pytest-xdist spreads the
# three over its workers (compiling is most of their time).

@given(menu_cases("elman"))
@example(make_case(hg.Spec.tutorial(), 3, 6, 2, 4, 5, scale="tutorial", seed=0))   # saturated
@example(_saturating("elman", "sigmoid", loss="cross_entropy", reduction="mean"))
@example(_saturating("elman", "relu", head=False, loss="linear"))
# relu'(0) = 0 (PyTorch's and JAX's): left-padded inputs, no h0, no bias: a_1 = a_2 = 0 exactly
@example(make_case(hg.Spec(activation="relu", bias=False, truncation=hg.Window(1)), 3, 4, 2, 4,
                   5, seed=5, h0="none", pad=2))
def test_hand_equals_jax_elman(case):
    assert_agrees(case)


@given(menu_cases("gru"))
@example(_saturating("gru", output="last", reduction="batch_mean"))
@example(_saturating("gru", gru_reset="before", bias=False))
def test_hand_equals_jax_gru(case):
    assert_agrees(case)


@given(menu_cases("lstm"))
@example(_saturating("lstm", loss="squared", reduction="mean"))
@example(_saturating("lstm", head=False, loss="linear", output="last"))
# found by the thorough profile: every h tiny (c_1 ~ 1e-5), the reference's tanh(c) lost relative
# accuracy near 0 (dW_hh off by 3.6e-12; handgrad 2e-15 against mpmath)
@example(make_case(hg.Spec(output="last", loss="linear", head=False, cell="lstm"), 1, 2, 1, 1, 1,
                   scale="saturating", seed=2551, h0="none"))
def test_hand_equals_jax_lstm(case):
    assert_agrees(case)


def test_hand_equals_jax_tutorial_sized():
    """The tutorial's own sizes (H = 100 sigmoid units, T = 50, one-hot position input, uniform
    (0, 1) weights): every unit saturated, the gradients of U and W tiny; JAX agrees anyway."""
    spec = hg.Spec.tutorial()
    params = hg.init_params(spec, 50, 100, 1, seed=3, init="tutorial")
    x = np.sin(np.arange(50.0))
    xs = (x[:, None] * np.eye(50))[None]               # xs[:, t-1] = x[t] e_t, (1, 50, 50)
    ys = np.array([[np.sin(50.0)]])
    assert_agrees(Case(spec, params, xs, ys, None, "tutorial", 3))


# --- the reference's own structure and numerics ---------------------------------------------

@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
def test_reference_loss_is_the_value_and_truncation_free(cell):
    case = make_case(hg.Spec(cell=cell, truncation=hg.Chunks(2)), 3, 5, 2, 4, 5, seed=7)
    full = reference.loss(case.params, case.xs, case.ys, case.spec, case.h0)
    for truncation in (None, hg.Window(0), hg.Chunks(2), hg.TBPTT(2, 3)):
        spec = hg.Spec(cell=cell, truncation=truncation)
        value, _ = reference.loss_and_grads(case.params, case.xs, case.ys, spec, case.h0)
        assert hg.rel_error(value, full) <= TOL
    assert hg.rel_error(full, hg.loss_and_grads(*case[1:4], case.spec, case.h0)[0]) <= TOL


@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("head", [True, False])
def test_reference_returns_numpy_of_the_params_type_and_shapes(cell, bias, head):
    case = make_case(hg.Spec(cell=cell, bias=bias, head=head), 3, 6, 2, 4, 5, seed=1, h0="none")
    out = reference.loss_and_grads(case.params, case.xs, case.ys, case.spec, wrt_h0=True,
                                   wrt_xs=True)
    loss, grads, dh0, dxs = out
    assert isinstance(loss, float) and type(grads) is type(case.params)
    for g, p in zip(grads, case.params):
        assert (g is None) == (p is None)
        assert p is None or (type(g) is np.ndarray and g.dtype == np.float64
                             and g.shape == p.shape)
    halves = dh0 if cell == "lstm" else (dh0,)
    assert isinstance(dh0, tuple) == (cell == "lstm")
    assert len(halves) == (2 if cell == "lstm" else 1)
    assert all(type(d) is np.ndarray and d.dtype == np.float64 and d.shape == (3, 4)
               for d in halves)
    assert type(dxs) is np.ndarray and dxs.dtype == np.float64 and dxs.shape == (3, 6, 2)
    assert len(reference.loss_and_grads(case.params, case.xs, case.ys, case.spec)) == 2
    with pytest.raises(ValueError, match="wrt_xs"):
        reference.loss_and_grads(case.params, case.xs, case.ys, case.spec, wrt_xs=1)


def test_reference_accepts_float32_and_computes_in_float64():
    case = make_case(hg.Spec(cell="lstm", truncation=hg.Window(1)), 1, 5, 1, 1, 1, seed=2)
    f32 = type(case.params)(*(None if p is None else p.astype(np.float32) for p in case.params))
    h0 = tuple(h.astype(np.float32) for h in case.h0)
    args = (f32, case.xs.astype(np.float32), case.ys.astype(np.float32), case.spec, h0)
    got = reference.loss_and_grads(*args, wrt_h0=True, wrt_xs=True)
    want = hg.loss_and_grads(*args, wrt_h0=True, wrt_xs=True)
    assert hg.rel_error(got[0], want[0]) <= TOL
    for g, w in [*zip(got[1].arrays().values(), want[1].arrays().values()),
                 *zip(got[2], want[2]), (got[3], want[3])]:
        assert g.dtype == np.float64 and hg.rel_error(g, w) <= TOL


@pytest.mark.parametrize("T", [1, 2, 5, 7, 10])
def test_cut_step_matches_the_contracts_wording(T):
    """reference.cut_step derives the cut from tau(t) = k1 ceil(t / k1); here the same cut
    from the contract's plain-language descriptions instead."""
    for t in range(1, T + 1):
        assert reference.cut_step(None, t) == 0
        for k in range(0, 9):           # Window(k): the loss at t reaches steps max(1, t-k)..t
            assert reference.cut_step(hg.Window(k), t) == max(1, t - k) - 1
            if k >= T - 1:              # ... and k >= T - 1 is full BPTT
                assert reference.cut_step(hg.Window(k), t) == 0
        for k in range(1, 9):           # Chunks(k): detached after steps k, 2k, ... before t
            detaches = list(range(k, t, k))
            assert reference.cut_step(hg.Chunks(k), t) == (detaches[-1] if detaches else 0)
        for k1 in range(T, T + 3):      # TBPTT(k1, k2) with k1 >= T is full BPTT
            assert reference.cut_step(hg.TBPTT(k1, k1 + 1), t) == 0
        # TBPTT(2, 3): chunks {1, 2}, {3, 4}, ...; each backpropagated 3 steps from its end
        assert reference.cut_step(hg.TBPTT(2, 3), t) == max(0, 2 * ((t + 1) // 2) - 3)


@pytest.mark.parametrize("cell", ["elman", "gru", "lstm"])
def test_a_cut_stops_the_gradient_into_earlier_inputs_and_h0(cell):
    """output="last", T = 5: Chunks(2) cuts at step 4 (tau(5) = 6, not clamped at T), so only
    x_5 gets a gradient; Window(1) reaches x_4 and x_5; the cut leaves dh0 exactly zero."""
    for truncation, reached in ((hg.Chunks(2), 1), (hg.Window(1), 2), (None, 5)):
        spec = hg.Spec(cell=cell, output="last", truncation=truncation)
        case = make_case(spec, 3, 5, 2, 4, 5, seed=5)
        _, _, dh0, dxs = reference.loss_and_grads(*case[1:4], spec, case.h0, wrt_h0=True,
                                                  wrt_xs=True)
        for d in (dh0 if cell == "lstm" else (dh0,)):
            assert np.all(d == 0) == (reached < 5)
        assert np.all(dxs[:, :5 - reached] == 0)
        assert np.all(np.any(dxs[:, 5 - reached:] != 0, axis=(0, 2)))


# found by this test: handgrad's GRU lost 3 digits of h_1 = (1 - z_1) n_1 at a_z = 30 (loss and
# dW_hh off by 1.4e-3) computing 1 - z_t by subtraction; it now takes sigmoid(-a_z)
@pytest.mark.parametrize("gru_reset", ["after", "before"])
@pytest.mark.parametrize("implementation", ["reference", "handgrad"])
def test_gru_with_a_closed_update_gate_against_closed_forms(implementation, gru_reset):
    """B = D = H = 1, T = 2, no bias, no head, h_0 = 0, x_1 = x_2 = 1, W_hh = 0, and W_ih's
    blocks (r, z, n) = (0, 30, 1): r_t = 1/2, z_t = s(30), n_t = tanh(1) for both resets, so
    h_1 = s(-30) tanh(1) (about 7e-14), h_2 = s(-30) tanh(1) + s(30) h_1, with s = sigmoid.
    L = h_2 (loss "linear", y = 1) and, from the contract's equations by hand,
    dL/dW_hz = (h_1 - n_2) s'(30) h_1 = -tanh(1) s(30)^2 s(-30) h_1,
    dL/dW_hn = (1 - z_2) tanh'(1) r_2 h_1 = s(-30) sech^2(1) h_1 / 2, dL/dW_hr = 0.
    numpy evaluates these to a few ulps (no cancellation: s(-30) = 1 / (1 + e^30))."""
    spec = hg.Spec(cell="gru", gru_reset=gru_reset, bias=False, head=False, output="last",
                   loss="linear")
    params = GatedParams(W_ih=np.array([[0.0], [30.0], [1.0]]), W_hh=np.zeros((3, 1)))
    xs, ys = np.ones((1, 2, 1)), np.ones((1, 1))
    s_pos, s_neg = 1 / (1 + np.exp(-30.0)), 1 / (1 + np.exp(30.0))   # z_t and 1 - z_t
    h1 = s_neg * np.tanh(1.0)
    want_loss = s_neg * np.tanh(1.0) + s_pos * h1
    want_W_hh = np.array([[0.0], [-np.tanh(1.0) * s_pos ** 2 * s_neg * h1],
                          [s_neg / np.cosh(1.0) ** 2 * h1 / 2]])
    fn = reference.loss_and_grads if implementation == "reference" else hg.loss_and_grads
    loss, grads = fn(params, xs, ys, spec)
    assert hg.rel_error(loss, want_loss) <= TOL
    assert hg.rel_error(grads.W_hh, want_W_hh) <= TOL


# --- the reduction divisors, checked independently (issue 15.4) -----------------------------

def _numpy_loss_and_grad(loss, reduction, o, y):
    """The reduced loss of outputs o (B, S, O) and targets y ((B, S, O) floats or (B, S) class
    ids), and its gradient with respect to o, by explicit numpy formulas: "mean" divides by the
    number of elements (one per class-id target for cross-entropy), "batch_mean" by B."""
    if loss == "cross_entropy":
        z = o - o.max(axis=-1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)      # softmax(o)
        terms = -np.log(np.take_along_axis(p, y[..., None], axis=-1))
        dterms = p - np.eye(o.shape[-1])[y]
    elif loss == "linear":
        terms, dterms = y * o, y
    else:
        half = 0.5 if loss == "half_squared" else 1.0
        terms, dterms = half * (o - y) ** 2, 2 * half * (o - y)
    n = {"sum": 1, "mean": y.size, "batch_mean": o.shape[0]}[reduction]
    return float(np.sum(terms) / n), dterms / n


def _torch_loss_and_grad(loss, reduction, o, y):
    """The same by PyTorch's functional losses (their reduction="mean" is MSELoss's and
    CrossEntropyLoss's) and autograd; None for the linear loss (no PyTorch counterpart)."""
    import torch
    import torch.nn.functional as F
    if loss == "linear":
        return None
    ot = torch.tensor(o, requires_grad=True)
    torch_reduction = "sum" if reduction == "batch_mean" else reduction
    if loss == "cross_entropy":
        value = F.cross_entropy(ot.reshape(-1, o.shape[-1]), torch.tensor(y).reshape(-1),
                                reduction=torch_reduction)
    else:
        value = F.mse_loss(ot, torch.tensor(y), reduction=torch_reduction)
        value = 0.5 * value if loss == "half_squared" else value
    value = value / o.shape[0] if reduction == "batch_mean" else value
    value.backward()
    return float(value.detach()), ot.grad.numpy()


@pytest.mark.parametrize("output", ["all", "last"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_reduction_divisors_match_pytorch(loss, reduction, output):
    """A model whose outputs are its inputs (identity Elman cell, U = I, W = 0, no bias, no
    head: o_t = h_t = x_t exactly), so the loss and dL/dxs of handgrad and of the reference must
    be PyTorch's loss of xs and its gradient (numpy's formulas when torch is not installed, and
    for the linear loss; checked against PyTorch's when it is): that pins the divisor of every
    reduction, cross-entropy's B S ("mean" over class-id targets) included. B = 3, T = 2,
    O = 4, so B S O, B S, B and their look-alikes (S O, B O) differ (for output="last", S = 1,
    cross-entropy's mean is batch_mean, as the contract says)."""
    B, T, O = 3, 2, 4
    spec = hg.Spec(activation="identity", bias=False, head=False, output=output, loss=loss,
                   reduction=reduction)
    params = hg.Params(np.eye(O), np.zeros((O, O)))
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(B, T, O))
    lead = (B,) if output == "last" else (B, T)
    ys = rng.integers(0, O, lead) if loss == "cross_entropy" else rng.normal(size=lead + (O,))
    o = xs[:, -1:] if output == "last" else xs                      # (B, S, O)
    y = ys[:, None] if output == "last" else ys
    want, dwant = _numpy_loss_and_grad(loss, reduction, o, y)
    if importlib.util.find_spec("torch") is not None:
        by_torch = _torch_loss_and_grad(loss, reduction, o, y)
        if by_torch is not None:
            assert hg.rel_error(want, by_torch[0]) <= TOL       # numpy's formulas are PyTorch's
            assert hg.rel_error(dwant, by_torch[1]) <= TOL
            want, dwant = by_torch
    dwant_xs = np.zeros_like(xs)
    dwant_xs[:, T - o.shape[1]:] = dwant
    for name, fn in (("handgrad", hg.loss_and_grads), ("reference", reference.loss_and_grads)):
        value, _, dxs = fn(params, xs, ys, spec, wrt_xs=True)
        assert hg.rel_error(value, want) <= TOL, name
        assert hg.rel_error(dxs, dwant_xs) <= TOL, name


# --- the reference against PyTorch's own cells -----------------------------------------------

@pytest.mark.parametrize("cell, activation", [("elman", "tanh"), ("elman", "relu"),
                                              ("gru", "tanh"), ("lstm", "tanh")])
def test_reference_equals_pytorch_cells(cell, activation):
    """The reference's equations are PyTorch's: nn.RNN / nn.GRU / nn.LSTM (float64, weights
    copied in, nn.RNN's second bias zero) used as a layer, L = sum <y_t, h_t> (head=False,
    loss="linear"), full BPTT; autograd's gradients of the weights, h0 and xs. Moderate
    weights: PyTorch's tanh and sigmoid derive their gradients from the output, accurate
    away from saturation only. Both are float64 evaluations of the same formulas in different
    orders: TOLERANCES["jax"]."""
    torch = need("torch")
    B, T, D, H = 3, 5, 2, 4
    spec = hg.Spec(activation=activation, cell=cell, head=False, loss="linear")
    case = make_case(spec, B, T, D, H, H, seed=4)
    module = {"elman": lambda: torch.nn.RNN(D, H, nonlinearity=activation, batch_first=True),
              "gru": lambda: torch.nn.GRU(D, H, batch_first=True),
              "lstm": lambda: torch.nn.LSTM(D, H, batch_first=True)}[cell]().double()
    p = case.params
    weights = (p.U, p.W, p.b, np.zeros(H)) if cell == "elman" else p[:4]
    for name, w in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), weights):
        getattr(module, name).data = torch.tensor(w)
    xs = torch.tensor(case.xs, requires_grad=True)
    states = [torch.tensor(h[None], requires_grad=True)
              for h in (case.h0 if cell == "lstm" else (case.h0,))]
    hs, _ = module(xs, tuple(states) if cell == "lstm" else states[0])
    (hs * torch.tensor(case.ys)).sum().backward()
    loss, grads, dh0, dxs = reference.loss_and_grads(p, case.xs, case.ys, spec, case.h0,
                                                     wrt_h0=True, wrt_xs=True)
    assert hg.rel_error(loss, float((hs * torch.tensor(case.ys)).sum().detach())) <= TOL
    names = ("U", "W", "b") if cell == "elman" else ("W_ih", "W_hh", "b_ih", "b_hh")
    for name, torch_name in zip(names, ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                        "bias_hh_l0")):
        assert hg.rel_error(getattr(grads, name),
                            getattr(module, torch_name).grad.numpy()) <= TOL, name
    for d, s in zip(dh0 if cell == "lstm" else (dh0,), states):
        assert hg.rel_error(d, s.grad.numpy()[0]) <= TOL
    assert hg.rel_error(dxs, xs.grad.numpy()) <= TOL


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
def test_reference_activation_derivative_is_accurate_when_saturated(activation):
    """Autodiff of reference.act gives act'(a) to full relative precision even where h rounds
    to +-1: the closed forms 1 / cosh^2 a and 1 / (2 + 2 cosh a) (from the pre-activation, no
    cancellation), relu'(0) = 0, identity' = 1. JAX's own tanh/sigmoid do not (that is why the
    reference writes the activations out). No overflow, no NaN at |a| = 700. And act(a) itself
    is accurate to the last digits near 0 as well (tanh written as (1 - e) / (1 + e) was not)."""
    a = np.array([-700.0, -40.0, -20.0, -1.0, 0.0, 0.5, 20.0, 40.0, 700.0,
                  1e-8, -1e-12, 1e-300])   # tiny |a|: tanh(a) to full relative precision too
    with np.errstate(over="ignore"):      # cosh(700) = inf: the derivative underflows to 0
        h, dh = {"sigmoid": (1 / (1 + np.exp(-a)), 1 / (2 + 2 * np.cosh(a))),
                 "tanh": (np.tanh(a), 1 / np.cosh(a) ** 2),
                 "relu": (np.maximum(a, 0), (a > 0).astype(float)),
                 "identity": (a, np.ones_like(a))}[activation]
    grad = np.asarray(jax.vmap(jax.grad(lambda z: reference.act(activation, z)))(a))
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, dh, rtol=1e-14, atol=0)
    np.testing.assert_allclose(np.asarray(reference.act(activation, a)), h, rtol=1e-15, atol=0)
    if activation in ("sigmoid", "tanh"):
        builtin = jax.nn.sigmoid if activation == "sigmoid" else jax.numpy.tanh
        naive = np.asarray(jax.vmap(jax.grad(builtin))(a))
        assert naive[7] == 0.0 and dh[7] > 0   # the output-based derivative loses it entirely


def test_reference_does_not_import_into_handgrad():
    code = "import sys, handgrad, handgrad.checks; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
