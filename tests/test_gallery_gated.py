"""The layer styles and the gated cells as users write them: correct ones pass `hg.check` (a
layer checked as a layer, with dx), every catalogued mistake is flagged and shrunk, and its
report names the wrong gate block and the wrong steps; PyTorch's own modules pass.

Specs: a layer is `Spec(head=False, loss="linear", output="all")`, its targets the upstream
gradients dh; d2l's GRU resets before the product (`gru_reset="before"`).
"""
import pytest
from hypothesis import settings

import handgrad as hg
from conftest import need
from handgrad.gallery import (GRU_MISTAKES, LAYER_MISTAKES, LSTM_MISTAKES, d2l_gru, elman_layer,
                              lstm_layer)
from handgrad.oracle import GradientMismatch, check, identify

LAYER = hg.Spec(head=False, loss="linear")                          # tanh Elman layer
RELU_LAYER = hg.Spec(activation="relu", head=False, loss="linear")
LSTM_LAYER = hg.Spec(cell="lstm", head=False, loss="linear")
D2L_GRU = hg.Spec(cell="gru", gru_reset="before")


def searched(n: int) -> int:
    """`n` cases under dev and ci; a quarter of the profile's count under thorough."""
    return max(n, settings().max_examples // 4)


@pytest.mark.parametrize("spec, candidate", [
    (LAYER, elman_layer(LAYER)), (RELU_LAYER, elman_layer(RELU_LAYER)),
    (LSTM_LAYER, lstm_layer(LSTM_LAYER)), (D2L_GRU, d2l_gru(D2L_GRU)),
    (hg.Spec(cell="gru", gru_reset="before", output="last", reduction="mean", bias=False),
     d2l_gru(hg.Spec(cell="gru", gru_reset="before", output="last", reduction="mean",
                     bias=False))),
], ids=["elman-layer", "relu-layer", "lstm-layer", "d2l-gru", "d2l-gru-last-mean"])
def test_correct_styles_pass(spec, candidate):
    report = check(candidate, spec, max_examples=searched(40), save_dir=None)
    assert report.examples == searched(40)
    if spec.head is False:                       # a layer: its dx was checked too
        assert "xs" in report.max_rel_error


# mistake -> the array reported first and, for gated cells, the gate block named wrong
LAYER_CAUGHT = {"carry_dropped": ("U", None), "dx_skips_activation": ("xs", None)}
LSTM_CAUGHT = {"cell_path_forgotten": ("c0", None),           # at T = 1: only dc0 shows it
               "tanh_c_derivative_missing": ("W_ih", None),
               "forget_gate_with_c_t": ("W_ih", "f"), "output_gate_as_tanh": ("W_ih", "o")}
GRU_CAUGHT = {"dz_sign": ("W_ih", "z"),
              # both mistakes live in the carry to h_{t-1}: at T = 1 only dh0 shows them
              "direct_path_dropped": ("h0", None), "reset_not_in_carry": ("h0", None),
              "candidate_derivative_from_h": ("W_ih", "n"),
              "update_gate_with_reset_derivative": ("W_ih", "z")}


def test_every_mistake_is_listed():
    assert set(LAYER_CAUGHT) == set(LAYER_MISTAKES)
    assert set(LSTM_CAUGHT) == set(LSTM_MISTAKES) and len(LSTM_MISTAKES) >= 4
    assert set(GRU_CAUGHT) == set(GRU_MISTAKES) and len(GRU_MISTAKES) >= 5


@pytest.mark.parametrize("style, spec, mistake", [
    *(("elman", LAYER, m) for m in sorted(LAYER_CAUGHT)),
    *(("lstm", LSTM_LAYER, m) for m in sorted(LSTM_CAUGHT)),
    *(("gru", D2L_GRU, m) for m in sorted(GRU_CAUGHT)),
])
def test_mistake_is_flagged_shrunk_and_named(style, spec, mistake, tmp_path):
    make = {"elman": elman_layer, "lstm": lstm_layer, "gru": d2l_gru}[style]
    param, gate = {**LAYER_CAUGHT, **LSTM_CAUGHT, **GRU_CAUGHT}[mistake]
    with pytest.raises(GradientMismatch) as info:
        check(make(spec, mistake), spec, save_dir=tmp_path)
    e = info.value
    text = str(e)
    assert e.param == param, text
    sizes = e.case.sizes
    assert sizes["B"] == 1 and sizes["D"] == 1 and sizes["T"] <= 3 and sizes["H"] <= 2, text
    assert "confirmed by complex step" in text and e.path.exists()
    if param in ("W_ih", "W_hh", "b_ih", "b_hh"):
        assert "gate: d" in text, text                          # the gate blocks are judged
        if gate is not None:
            assert f"d{param}: {gate}" in text or f"and {gate} " in text, text
    if param in ("U", "W_ih"):                                  # the steps are told apart
        assert "time step:" in text, text


def test_identify_tells_the_gru_reset_conventions_apart():
    """A reset-before GRU checked as reset-after is named: the diagnosis says it matches
    gru_reset='before' (issue 11)."""
    spec_after = hg.Spec(cell="gru")
    with pytest.raises(GradientMismatch) as info:
        check(d2l_gru(D2L_GRU), spec_after, save_dir=None)
    assert "gru_reset='before'" in str(info.value)
    assert [a.label for a in info.value.diagnosis.matches] == ["gru_reset='before'"]


@pytest.mark.parametrize("spec", [LSTM_LAYER, D2L_GRU], ids=["lstm", "gru"])
def test_identify_names_full_bptt_of_the_gated_styles(spec):
    candidate = lstm_layer(spec) if spec.cell == "lstm" else d2l_gru(spec)
    assert identify(candidate, spec, save_dir=None).truncation is None


# ----------------------------------------------------------------- PyTorch's own modules

@pytest.fixture(scope="module")
def torch():
    torch = need("torch")
    torch.set_num_threads(1)
    return torch


@pytest.mark.parametrize("kind, spec", [
    ("GRU", hg.Spec(cell="gru")), ("GRUCell", hg.Spec(cell="gru", output="last")),
    ("LSTM", hg.Spec(cell="lstm", truncation=hg.Chunks(3))),
    ("LSTMCell", hg.Spec(cell="lstm", bias=False, reduction="mean")),
    ("RNN", hg.Spec(activation="relu", reduction="batch_mean")),
])
def test_pytorch_modules_pass(torch, kind, spec):
    """Issue 10 and 11: nn.RNN with relu under `loss.sum() / B`, nn.GRU, nn.LSTM and their cells,
    float64, through `handgrad.adapters.from_torch` (detach every 3 steps for Chunks(3))."""
    from handgrad.adapters import from_torch
    module = getattr(torch.nn, kind)
    options = {"batch_first": True} if not kind.endswith("Cell") else {}
    if kind == "RNN":
        options["nonlinearity"] = "relu"
    rnn = module(3, 4, bias=spec.bias, **options).double()
    head = torch.nn.Linear(4, 2, bias=spec.bias).double()
    k = spec.truncation.k if spec.truncation is not None else None
    report = check(from_torch(rnn, spec, head, detach_every=k), spec,
                   max_examples=searched(30), save_dir=None)
    assert report.examples == searched(30)


def test_identify_names_a_layers_truncation(torch):
    """Issue 10: identify tells a layer's candidate (no head, upstream gradients, dx) which
    convention it implements: PyTorch's LSTM layer detached every 4 steps is Chunks(4)."""
    from handgrad.adapters import from_torch
    spec = hg.Spec(cell="lstm", head=False, loss="linear")
    rnn = torch.nn.LSTM(2, 3, batch_first=True).double()
    found = identify(from_torch(rnn, spec, None, detach_every=4), spec, save_dir=None)
    assert found.truncation == hg.Chunks(4)
    assert identify(elman_layer(LAYER), LAYER, save_dir=None).truncation is None
