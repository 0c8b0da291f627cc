"""Proof of teeth: every gallery mistake is caught and shrunk to a minimal case, every correct
style passes, and identify names the truncation of each truncated style."""
import numpy as np
import pytest
from hypothesis import settings

import handgrad as hg
from handgrad.gallery import MISTAKES, chunked_rnn, column_rnn, rnn, tutorial_rnn
from handgrad.oracle import GradientMismatch, check, identify
from conftest import need

FULL = hg.Spec()                                        # tanh, bias, many-to-many, full BPTT
ONES = {"B": 1, "T": 1, "D": 1, "H": 1, "O": 1}

MEAN = hg.Spec(reduction="mean")


def searched(n: int) -> int:
    """`n` cases under the dev and ci profiles; a quarter of the profile's count under
    `thorough` (500): correct candidates must pass the harder search too."""
    return max(n, settings().max_examples // 4)

# mistake -> (spec, the gradient reported first, the minimal sizes and why)
CAUGHT = {
    "act_of_preactivation": (FULL, "U", ONES),                         # wrong at any size
    "dropped_carry": (FULL, "U", {**ONES, "T": 2}),                    # needs a carry
    "dW_paired_with_h_t": (FULL, "W", ONES),                           # h_1 != h_0 at T=1
    "W_not_transposed": (FULL, "h0", {**ONES, "H": 2}),                # W == W^T when H=1
    "window_off_by_one": (hg.Spec(truncation=hg.Window(2)), "U", {**ONES, "T": 3}),  # k+1 steps
    "mean_vs_sum": (MEAN, "U", None),                                  # needs a count of 2
    "dh0_not_carried": (FULL, "h0", ONES),
    "biases_summed": (FULL, "b", ONES),
    "mean_over_batch_only": (MEAN, "loss", None),                      # B*T*O / B must be 2
    "clipped_gradient": (FULL, "U", ONES),
    "ignores_h0": (FULL, "loss", ONES),                                # with an h0, any size
    "other_activation": (FULL, "loss", ONES),
    "missing_half": (FULL, "U", ONES),
}

# mistake -> what the diagnosis names (checked on the report of the test above): the
# alternative the gradients match, or the constant factor and its usual cause. The mistakes
# not listed are no other convention and no constant factor; the time step names them.
DIAGNOSED = {
    "dropped_carry": ("Window(0)", "the carry is dropped"),
    "window_off_by_one": ("Window(1)", "where the spec asks for Window(2)"),
    "mean_vs_sum": ("reduction='sum'", "mean vs sum"),
    "biases_summed": ({"b": 2.0}, "bias_ih and bias_hh were added"),
    # a mean over the batch only is reduction='batch_mean' (version 2 of the contract)
    "mean_over_batch_only": ("reduction='batch_mean'", "the spec says reduction='mean'"),
    "clipped_gradient": ("clip", "gradient clipping"),
    "ignores_h0": ("h0 = 0 (h0 ignored)", "check it with h0=False"),
    "other_activation": ("activation='sigmoid'", "the spec says activation='tanh'"),
    "missing_half": ("loss='squared'", "no 1/2 in front of the squared error"),
}


def test_every_mistake_is_listed():
    assert set(CAUGHT) == set(MISTAKES) and len(MISTAKES) >= 5


@pytest.mark.parametrize("mistake", sorted(CAUGHT))
def test_mistake_is_caught_and_shrunk(mistake, tmp_path):
    spec, param, sizes = CAUGHT[mistake]
    with pytest.raises(GradientMismatch) as info:
        check(rnn(spec, mistake), spec, save_dir=tmp_path)
    e = info.value
    assert e.param == param, str(e)
    if sizes is None:                       # mean over B * T * O elements: 2 of them
        s = e.case.sizes
        assert s["B"] * s["T"] * s["O"] == 2 and s["D"] == s["H"] == 1, s
    else:
        assert e.case.sizes == sizes, str(e)
    assert e.path.exists() and "confirmed by complex step" in str(e)
    assert e.rel_error > e.rtol
    found, words = DIAGNOSED.get(mistake, (None, None))
    labels = [a.label for a in e.diagnosis.matches]
    if found is None:                        # no alternative and no factor explains it
        assert not labels and not e.diagnosis.factors, str(e)
    elif isinstance(found, str) and found != "clip":
        assert labels == [found], str(e)
    elif isinstance(found, dict):            # one gradient scaled alone
        assert e.diagnosis.factors == pytest.approx(found) and not labels, str(e)
    else:                                    # every weight gradient scaled alike
        factors = set(round(f, 9) for f in e.diagnosis.factors.values())
        assert len(factors) == 1 and not labels, str(e)
        if found != "clip":
            assert factors == {found}, str(e)
        else:                                # clip_grad_norm_ scaled every weight gradient
            norm = np.sqrt(sum(np.sum(g ** 2) for n, g in _clipped_answer(e).grads.items() if n != "h0"))
            assert norm == pytest.approx(1e-3), str(e)
    if words:
        assert words in str(e), str(e)


def test_dropped_carry_in_a_many_to_one_network_is_named_for_it(tmp_path):
    """Many-to-one, only the last step has a loss term: a dropped carry means no earlier step
    gets a gradient at all, and the diagnosis says so (not "each step sees its own loss term",
    which only describes many-to-many)."""
    spec = hg.Spec(output="last")
    with pytest.raises(GradientMismatch) as info:
        check(rnn(spec, "dropped_carry"), spec, save_dir=tmp_path)
    e = info.value
    assert [a.label for a in e.diagnosis.matches] == ["Window(0)"], str(e)
    assert "only the last step gets a gradient" in str(e), str(e)
    assert "its own loss term" not in str(e), str(e)


def _clipped_answer(e):
    """The clipping candidate's answer on the case its diagnosis was made on."""
    from handgrad.oracle.evaluate import call_candidate
    return call_candidate(rnn(e.case.spec, "clipped_gradient"), e.diagnosis.case)


def test_tutorial_published_backward_is_caught():
    pytest.importorskip("handgrad.tutorial_code")
    spec = hg.Spec.tutorial()
    with pytest.raises(GradientMismatch) as info:
        check(tutorial_rnn(), spec, h0=False, save_dir=None)
    assert info.value.param == "U" and info.value.case.sizes == ONES
    with pytest.raises(GradientMismatch):       # no truncation convention explains it either
        identify(tutorial_rnn(), spec, h0=False, save_dir=None)


@pytest.mark.parametrize("spec, candidate", [
    (FULL, rnn(FULL)),
    (FULL, column_rnn(FULL)),
    (FULL, column_rnn(FULL, np.float32)),
    (hg.Spec.tutorial(), column_rnn(hg.Spec.tutorial())),      # the tutorial's model, right
    (hg.Spec(truncation=hg.Window(2), reduction="mean"),
     rnn(hg.Spec(truncation=hg.Window(2), reduction="mean"))),
    (hg.Spec(activation="sigmoid", output="last", loss="squared", truncation=hg.Window(1)),
     column_rnn(hg.Spec(activation="sigmoid", output="last", loss="squared",
                        truncation=hg.Window(1)))),
], ids=["classic", "column", "column-float32", "column-tutorial", "classic-window-mean",
        "column-window-last"])
def test_correct_style_passes(spec, candidate):
    report = check(candidate, spec, max_examples=searched(60), save_dir=None)
    assert report.examples == searched(60)


def test_chunked_style_passes_and_is_identified():
    spec = hg.Spec(truncation=hg.Chunks(2), activation="sigmoid")
    check(chunked_rnn(spec, 2), spec, max_examples=searched(40), max_T=9, save_dir=None)   # every T
    assert identify(chunked_rnn(spec, 2), spec, save_dir=None).truncation == hg.Chunks(2)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_window_style_is_identified(k):
    spec = hg.Spec(truncation=hg.Window(k))
    assert identify(column_rnn(spec), spec, save_dir=None).truncation == hg.Window(k)


# ----------------------------------------------------------------- PyTorch, when installed

@pytest.fixture(scope="module")
def torch_rnn():
    need("torch")
    from handgrad.gallery.torch_style import torch_rnn
    return torch_rnn


def test_torch_full_passes(torch_rnn):
    check(torch_rnn(FULL), FULL, max_examples=searched(40), save_dir=None)
    spec = hg.Spec(activation="sigmoid", output="last", reduction="mean", bias=False)
    check(torch_rnn(spec), spec, max_examples=searched(20), save_dir=None)


def test_torch_float32_is_judged_as_float32(torch_rnn):
    import torch
    report = check(torch_rnn(FULL, dtype=torch.float32), FULL, max_examples=searched(20), save_dir=None)
    assert report.dtypes == ("float32",)


@pytest.mark.parametrize("k", [2, 3])
def test_torch_detach_is_chunks(torch_rnn, k):
    spec = hg.Spec(truncation=hg.Chunks(k))
    check(torch_rnn(spec, detach_every=k), spec, max_examples=searched(20), max_T=3 * k + 1,
          save_dir=None)                                 # every T, k dividing it or not
    found = identify(torch_rnn(spec, detach_every=k), spec, save_dir=None)
    assert found.truncation == hg.Chunks(k)
