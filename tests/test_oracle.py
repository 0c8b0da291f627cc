"""hg.check, hg.identify, hg.replay: verdicts, determinism, reports, candidate failures, the
round-off floor, the step locator and the confirmation of expected values."""
import os

import numpy as np
import pytest

import handgrad as hg
from handgrad.gallery import chunked_rnn, column_rnn, rnn
from handgrad.gallery.roundoff import roundoff_rnn
from handgrad.oracle import CandidateError, GradientMismatch, OracleError, check, identify, replay
from handgrad.oracle.confirm import confirm
from handgrad.oracle.evaluate import expected_answer
from handgrad.oracle.identify import conventions, identify_cases, _expected, _truncation_error
from handgrad.oracle.evaluate import Answer
from handgrad.strategies import make_case

SPEC = hg.Spec()                                   # tanh, bias, many-to-many, full BPTT


def reference_candidate(spec):
    """A correct candidate written apart from the hand BPTT (handgrad.gallery.roundoff: its own
    loops, sums in another order, act' from the output, activations a few ulps off), so that
    passing it says something; it returns a mapping with h0."""
    candidate = roundoff_rnn(spec)

    def as_mapping(params, xs, ys, h0):
        loss, grads = candidate(params, xs, ys, h0)
        return loss, dict(grads)
    return as_mapping


def test_correct_candidate_passes_and_reports():
    report = check(reference_candidate(SPEC), SPEC, max_examples=30, save_dir=None)
    assert report.examples == 30
    assert set(report.max_rel_error) == {"loss", "U", "W", "V", "b", "c", "h0"}
    # its own round-off: not the hand BPTT's numbers, and far below what a mistake gives
    assert 0 < max(report.max_rel_error.values()) <= 1e-6
    assert "passed: 30 case(s)" in str(report)


def test_params_namedtuple_is_accepted():
    def candidate(params, xs, ys, h0):
        return hg.loss_and_grads(params, xs, ys, SPEC, h0=h0)     # (loss, Params)
    assert "h0" not in check(candidate, SPEC, max_examples=10, save_dir=None).max_rel_error


def test_mismatch_attributes_and_message(tmp_path):
    wrong = rnn(SPEC, "dW_paired_with_h_t")
    with pytest.raises(GradientMismatch) as info:
        check(wrong, SPEC, save_dir=tmp_path)
    e = info.value
    assert isinstance(e, AssertionError) and not isinstance(e, CandidateError)
    assert e.param == "W" and e.index == (0, 0)
    assert e.case.sizes == {"B": 1, "T": 1, "D": 1, "H": 1, "O": 1}
    exp = expected_answer(e.case)
    assert e.expected == exp.grads["W"][e.index] and e.actual != e.expected
    assert e.rel_error == e.errors["W"] > e.rtol == hg.TOLERANCES["float64"]
    assert e.errors["U"] <= e.rtol                # dU is right: only the pairing is wrong
    text = str(e)
    for words in ("d loss/d W", "worst element W[0, 0]", "B=1, T=1, D=1, H=1, O=1",
                  "confirmed by complex step", "dW is assembled wrongly", "hg.replay("):
        assert words in text
    assert e.path.parent == tmp_path and e.path.exists()
    # the replay file reproduces the failure, and a right candidate passes it
    with pytest.raises(GradientMismatch) as again:
        replay(e.path, wrong)
    assert again.value.param == "W" and again.value.index == e.index
    assert replay(e.path, rnn(SPEC)).examples == 1


def test_same_call_same_cases_and_seed_changes_search():
    def logger(log):
        def candidate(params, xs, ys, h0):
            log.append((xs.shape, float(xs.sum())))
            return reference_candidate(SPEC)(params, xs, ys, h0)
        return candidate
    runs = []
    for seed in (None, None, 1):
        log = []
        check(logger(log), SPEC, max_examples=15, seed=seed, save_dir=None)
        runs.append(log)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_nothing_written_to_cwd_without_asking(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GradientMismatch):
        check(rnn(SPEC, "dropped_carry"), SPEC, save_dir=None, max_examples=20)
    check(rnn(SPEC), SPEC, max_examples=5)
    assert os.listdir(tmp_path) == []             # no .hypothesis, no replay file


def _raises(params, xs, ys, h0):
    return 1 / 0


def _bad_key(params, xs, ys, h0):
    loss, grads = reference_candidate(SPEC)(params, xs, ys, h0)
    return loss, {**grads, "dU": grads["U"]}


def _bad_shape(params, xs, ys, h0):
    loss, grads = reference_candidate(SPEC)(params, xs, ys, h0)
    return loss, {**grads, "W": grads["W"].T[:, :1]}


def _nan(params, xs, ys, h0):
    loss, grads = reference_candidate(SPEC)(params, xs, ys, h0)
    grads["V"] = grads["V"] * np.nan
    return loss, grads


def _not_a_pair(params, xs, ys, h0):
    return 3.0


def _missing(params, xs, ys, h0):
    loss, grads = reference_candidate(SPEC)(params, xs, ys, h0)
    del grads["b"]
    return loss, grads


@pytest.mark.parametrize("candidate, kind, words", [
    (_raises, "raised", "raised ZeroDivisionError: division by zero (at "),
    (_bad_key, "bad_output", "unexpected key(s) ['dU']"),
    (_bad_shape, "bad_output", "grads['W'] has shape (2, 1), expected (2, 2)"),
    (_nan, "non_finite", "grads['V'] is nan at index (0, 0)"),
    (_not_a_pair, "bad_output", "must return (loss, grads), got float"),
    (_missing, "bad_output", "grads is missing b"),
])
def test_candidate_failures_are_reports(candidate, kind, words):
    with pytest.raises(CandidateError) as info:
        check(candidate, SPEC, max_examples=10, save_dir=None)
    assert info.value.kind == kind and words in str(info.value)
    assert isinstance(info.value, GradientMismatch)


def test_float32_is_judged_as_float32():
    report = check(column_rnn(SPEC, np.float32), SPEC, max_examples=30, save_dir=None)
    assert report.dtypes == ("float32",)

    def as_float64(params, xs, ys, h0):       # the same answers returned as float64 are judged
        loss, grads = column_rnn(SPEC, np.float32)(params, xs, ys, h0)     # as float64
        return np.float64(loss), {k: v.astype(np.float64) for k, v in grads.items()}
    with pytest.raises(GradientMismatch) as info:
        check(as_float64, SPEC, max_examples=30, rtol=1e-9, save_dir=None)
    assert info.value.rtol == 1e-9


def test_roundoff_floor_spares_correct_saturated_candidates():
    # found by this oracle before the floor existed: 1 - h^2 of a saturated tanh unit has an
    # absolute error of ~eps, so a correct candidate was "wrong" on gradients of ~1e-13
    spec = hg.Spec(output="last")
    for dtype in (np.float64, np.float32):
        report = check(column_rnn(spec, dtype), spec, max_examples=40, scales=("saturating",),
                       save_dir=None)
        assert report.within_floor > 0            # the floor was needed, and it is reported
    # ... and a real mistake on saturating weights is still caught
    with pytest.raises(GradientMismatch):
        check(rnn(spec, "act_of_preactivation"), spec, max_examples=40, scales=("saturating",),
              save_dir=None)


def test_step_locator_names_the_wrong_steps():
    spec = hg.Spec(truncation=hg.Window(1))
    with pytest.raises(GradientMismatch) as info:
        check(rnn(spec, "window_off_by_one"), spec, save_dir=None)
    e = info.value
    # Window(0) instead of Window(1): the terms of step t-1 from loss t are missing, so every
    # step but the last is wrong
    T = e.case.sizes["T"]
    assert e.param == "U" and T == 2
    assert e.step.wrong_steps == (1,) and e.step.worst_step == 1
    assert "t=1 are wrong" in str(e) and "t=2 are right" in str(e)


def test_confirmation_catches_a_wrong_expected_value():
    case = make_case(SPEC, 2, 3, 2, 3, 2, seed=0)
    exp = expected_answer(case)
    assert "complex step" in confirm(case, exp, "W", (0, 0))[0]
    bad = exp._replace(grads={**exp.grads, "W": exp.grads["W"] + 1e-6})
    with pytest.raises(OracleError, match="bug in handgrad"):
        confirm(case, bad, "W", (0, 0))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="spec must be a handgrad.Spec"):
        check(rnn(SPEC), "tanh")
    with pytest.raises(ValueError, match="max_examples must be an integer >= 1"):
        check(rnn(SPEC), SPEC, max_examples=0)
    with pytest.raises(ValueError, match="rtol must be a number in"):
        check(rnn(SPEC), SPEC, rtol=-1)
    with pytest.raises(ValueError, match="scales must be names"):
        check(rnn(SPEC), SPEC, scales=("huge",))
    with pytest.raises(ValueError, match="candidate must be callable"):
        identify(None, SPEC)


# ----------------------------------------------------------------- identify

def test_conventions_are_distinct_and_named_simply():
    for output in ("all", "last"):
        groups = conventions(10, output)
        names = [g[0] for g in groups]
        assert names[0] is None and len(set(map(repr, names))) == len(names)
        if output == "last":      # one loss term: only its cut matters
            assert all(n is None or isinstance(n, hg.Window) for n in names) and len(names) == 10


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("output", ["all", "last"])
def test_identify_cases_separate_every_convention_beyond_float32(activation, output):
    """Every convention at T=10 differs from every other by 10x the float32 tolerance, so
    identify is unambiguous for float32 candidates too."""
    spec = hg.Spec(activation=activation, output=output)
    cases = identify_cases(spec, 10)
    groups = [g[0] for g in conventions(10, output)]
    exps = {repr(g): _expected(cases[0], g) for g in groups}
    for g in groups:
        answer = Answer(0.0, exps[repr(g)].grads, np.dtype(np.float64))
        errs = sorted(_truncation_error(answer, exps[repr(h)]) for h in groups)
        assert errs[0] == 0.0 and errs[1] > 10 * hg.TOLERANCES["float32"], g


@pytest.mark.parametrize("candidate, found", [
    (reference_candidate(SPEC), None),
    (column_rnn(hg.Spec(truncation=hg.Window(3))), hg.Window(3)),
    (column_rnn(hg.Spec(truncation=hg.Window(3)), np.float32), hg.Window(3)),
    (chunked_rnn(SPEC, 5), hg.Chunks(5)),
    (reference_candidate(hg.Spec(truncation=hg.TBPTT(2, 4))), hg.TBPTT(2, 4)),
    (rnn(SPEC, "dropped_carry"), hg.Window(0)),    # no carry = each loss reaches its own step
])
def test_identify_names_the_convention(candidate, found):
    result = identify(candidate, SPEC, save_dir=None)
    assert result.truncation == found
    assert result.seconds < 10 and "identified in" in str(result)


def test_identify_off_by_one_says_what_was_meant():
    spec = hg.Spec(truncation=hg.Window(4))
    result = identify(rnn(spec, "window_off_by_one"), spec, save_dir=None)
    assert result.truncation == hg.Window(3)
    assert "you may have meant bptt_truncate=4" in str(result)


def test_detach_every_k_not_dividing_T_is_chunks_k():
    """Issue 9, false positive 1: a loop that detaches every 3 steps, on T=10, was identified as
    Chunks(3) and then failed `check` with that spec (the old contract clamped the chunk end at
    T). Chunks(k) is now exactly detach-every-k for every T: identify names it, check passes it
    at every T, including those that 3 does not divide."""
    candidate = chunked_rnn(SPEC, 3)
    result = identify(candidate, SPEC, save_dir=None)
    assert result.truncation == hg.Chunks(3) and result.T == 10
    spec = hg.Spec(truncation=result.truncation)
    seen = set()

    def recording(params, xs, ys, h0):
        seen.add(xs.shape[1])
        return candidate(params, xs, ys, h0)
    check(recording, spec, max_examples=40, max_T=10, save_dir=None)
    assert {4, 5, 7} & seen, f"no T that 3 does not divide was drawn: {sorted(seen)}"


def test_identify_many_to_one_names_window():
    # one loss term, at T=10: Chunks(4)'s chunk ends at tau = 12, so the cut is at 12 - 4 = 8 and
    # the loss reaches steps 9..10: the same gradient as Window(1)
    spec = hg.Spec(output="last", truncation=hg.Chunks(4))
    result = identify(reference_candidate(spec), spec, save_dir=None)
    assert result.T == 10 and result.truncation == hg.Window(1)
    assert hg.Chunks(4) in result.equivalents and "Chunks(4)" in str(result)


def test_identify_raises_when_nothing_matches():
    with pytest.raises(GradientMismatch, match="matches no truncation convention"):
        identify(rnn(SPEC, "W_not_transposed"), SPEC, save_dir=None)
    spec = hg.Spec(reduction="mean")
    with pytest.raises(GradientMismatch, match="truncation cannot change them"):
        identify(rnn(spec, "mean_vs_sum"), spec, save_dir=None)
    with pytest.raises(CandidateError):
        identify(_raises, SPEC, save_dir=None)


def test_check_accepts_a_strategy():
    from handgrad.strategies import cases
    spec = hg.Spec(truncation=hg.Chunks(3))
    strategy = cases(spec, max_T=9).filter(lambda c: c.xs.shape[1] % 3 == 0)
    seen = set()

    def recording(params, xs, ys, h0):
        seen.add(xs.shape[1])
        return chunked_rnn(spec, 3)(params, xs, ys, h0)
    assert check(recording, spec, max_examples=20, strategy=strategy,
                 save_dir=None).examples == 20
    assert seen and all(T % 3 == 0 for T in seen)     # only the strategy's cases were drawn


def test_wrong_loss_is_reported_first():
    def doubled(params, xs, ys, h0):
        loss, grads = reference_candidate(SPEC)(params, xs, ys, h0)
        return 2 * loss, grads
    with pytest.raises(GradientMismatch) as info:
        check(doubled, SPEC, save_dir=None)
    e = info.value
    assert e.param == "loss" and e.index == () and e.actual == 2 * e.expected
    assert "mismatch in loss" in str(e)


def test_database_only_where_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GradientMismatch):
        check(rnn(SPEC, "dropped_carry"), SPEC, save_dir=None, database=tmp_path / "db")
    assert os.listdir(tmp_path) == ["db"] and os.listdir(tmp_path / "db")
