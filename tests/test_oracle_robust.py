"""The oracle under faults (issue 9, found by fault injection): candidates that hang or are not
deterministic, bad arguments to every public function, a save_dir that cannot be written, an
unusable strategy, files written without being asked; and the diagnoses of identify and of
compare, and check at fixed sizes."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

import handgrad as hg
from handgrad.gallery import chunked_rnn, rnn
from handgrad.oracle import CandidateError, GradientMismatch, check, identify, replay
from handgrad.strategies import cases

SPEC = hg.Spec()
ROOT = Path(__file__).resolve().parents[1]


def reference_candidate(spec):
    def candidate(params, xs, ys, h0):
        loss, grads, dh0 = hg.loss_and_grads(params, xs, ys, spec, h0=h0, wrt_h0=True)
        return loss, {**grads.arrays(), "h0": dh0}
    return candidate


def sleeper(seconds, swallow=False):
    """A candidate that hangs in time.sleep (optionally inside `except Exception: pass`)."""
    def candidate(params, xs, ys, h0):
        try:
            time.sleep(seconds)
        except Exception:  # noqa: BLE001 - a candidate that swallows everything
            if not swallow:
                raise
        return reference_candidate(SPEC)(params, xs, ys, h0)
    return candidate


# ----------------------------------------------------------------- timeouts

@pytest.mark.parametrize("swallow", [False, True])
def test_a_hanging_candidate_is_stopped_and_reported(swallow):
    start = time.perf_counter()
    with pytest.raises(CandidateError) as info:
        check(sleeper(30, swallow), SPEC, timeout=0.2, save_dir=None)
    assert time.perf_counter() - start < 10
    e = info.value
    assert e.kind == "timeout" and "did not return within 0.2 s" in str(e)
    assert "candidate timed out" in str(e) and e.case is not None


def test_timeout_off_the_main_thread_too():
    """In a thread, SIGALRM cannot be used: the candidate runs in a worker thread instead."""
    box = {}

    def job():
        try:
            identify(sleeper(5), SPEC, timeout=0.2, save_dir=None)
        except CandidateError as e:
            box["e"] = e
    worker = threading.Thread(target=job)
    start = time.perf_counter()
    worker.start()
    worker.join(20)
    assert time.perf_counter() - start < 4
    assert box["e"].kind == "timeout"


def test_a_slow_candidate_within_its_timeout_passes():
    report = check(sleeper(0.01), SPEC, max_examples=5, timeout=5, save_dir=None)
    assert report.examples == 5


# ----------------------------------------------------------------- nondeterminism

def every_third_call_wrong():
    calls = [0]

    def candidate(params, xs, ys, h0):
        calls[0] += 1
        loss, grads = reference_candidate(SPEC)(params, xs, ys, h0)
        if calls[0] % 3 == 0:
            grads["U"] = 1.1 * grads["U"]
        return loss, grads
    return candidate


def noisy(params, xs, ys, h0):
    loss, grads = reference_candidate(SPEC)(params, xs, ys, h0)
    grads["W"] = grads["W"] * (1 + 1e-3 * np.random.default_rng().standard_normal())
    return loss, grads


@pytest.mark.parametrize("candidate", [every_third_call_wrong(), noisy], ids=["flaky", "noisy"])
def test_nondeterminism_is_named_not_flakyfailure(candidate):
    """Found by fault injection: a nondeterministic candidate escaped as Hypothesis's
    FlakyFailure (or was reported as plainly wrong)."""
    with pytest.raises(CandidateError) as info:
        check(candidate, SPEC, max_examples=30, save_dir=None)
    e = info.value
    assert e.kind == "nondeterministic"
    assert ("nondeterministic: two calls on the same case returned different gradients"
            in str(e))
    assert "accumulate" not in str(e)       # differing otherwise than by the gradient


def test_gradients_accumulated_across_calls_are_named():
    """A numpy candidate that adds into gradient buffers it never clears (the PyTorch
    equivalent, a module whose .grad is not zeroed, is in tests/test_library_styles.py)."""
    buffers = {}

    def candidate(params, xs, ys, h0):
        loss, grads = reference_candidate(SPEC)(params, xs, ys, h0)
        for name, g in grads.items():
            if name in buffers and buffers[name].shape == g.shape:
                buffers[name] = buffers[name] + g
            else:
                buffers[name] = np.array(g)
        return loss, {name: buffers[name].copy() for name in grads}

    with pytest.raises(CandidateError) as info:
        check(candidate, SPEC, max_examples=30, save_dir=None)
    e = info.value
    assert e.kind == "nondeterministic" and "accumulate across calls" in str(e), str(e)


# ----------------------------------------------------------------- save_dir

def test_a_bad_save_dir_is_refused_before_any_work(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("mine")
    calls = []

    def counting(params, xs, ys, h0):
        calls.append(1)
        return rnn(SPEC, "dropped_carry")(params, xs, ys, h0)
    for bad in (afile, afile / "sub", 3):
        with pytest.raises(ValueError, match="save_dir"):
            check(counting, SPEC, save_dir=bad)
        with pytest.raises(ValueError, match="save_dir"):
            identify(counting, SPEC, save_dir=bad)
    assert calls == [] and afile.read_text() == "mine"


def test_a_failed_save_never_loses_the_report(tmp_path, monkeypatch):
    import importlib
    check_module = importlib.import_module("handgrad.oracle.check")   # not the function

    def refuse(path, case):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(check_module, "write_case", refuse)
    with pytest.raises(GradientMismatch) as info:
        check(rnn(SPEC, "dropped_carry"), SPEC, save_dir=tmp_path)
    e = info.value
    assert e.param == "U" and e.path is None
    assert "replay: could not be saved" in str(e) and "No space left" in str(e)


# ----------------------------------------------------------------- arguments

@pytest.mark.parametrize("call, words", [
    (lambda: identify(rnn(SPEC), SPEC, rtol=float("nan")), "rtol must be a number in (0, 1)"),
    (lambda: identify(rnn(SPEC), SPEC, rtol=-1), "rtol must be a number in (0, 1)"),
    (lambda: identify(rnn(SPEC), SPEC, rtol=50), "rtol must be a number in (0, 1)"),
    (lambda: identify(rnn(SPEC), SPEC, schedule=()), "schedule must be a non-empty"),
    (lambda: identify(rnn(SPEC), SPEC, schedule=(20, 10)), "schedule must be a non-empty"),
    (lambda: identify(rnn(SPEC), SPEC, schedule=(1,)), "schedule must be a non-empty"),
    (lambda: identify(rnn(SPEC), SPEC, schedule=10), "schedule must be a non-empty"),
    (lambda: identify(rnn(SPEC), SPEC, h0="yes"), "h0 must be True or False"),
    (lambda: identify(rnn(SPEC), SPEC, timeout=0), "timeout must be a number of seconds"),
    (lambda: check(rnn(SPEC), SPEC, timeout=float("inf")), "timeout must be a number"),
    (lambda: check(rnn(SPEC), SPEC, rtol=float("nan")), "rtol must be a number in (0, 1)"),
    (lambda: check(None, SPEC), "candidate must be callable"),
    (lambda: check(rnn(SPEC), SPEC, sizes=(1, 2, 3)), "sizes must be (B, T, D, H, O)"),
    (lambda: check(rnn(SPEC), SPEC, sizes=(1, 2, 3, 0, 1)), "sizes H must be an integer >= 1"),
    (lambda: check(rnn(SPEC), SPEC, sizes=(1, 2, 3, 4, 1), strategy=cases(SPEC)),
     "give sizes= or strategy=, not both"),
    (lambda: replay(None, rnn(SPEC)), "path must be a path (str or os.PathLike), got None"),
    (lambda: replay("case.npz", None), "candidate must be callable"),
    (lambda: replay("case.npz", rnn(SPEC), rtol=2), "rtol must be a number in (0, 1)"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_every_bad_argument_is_a_valueerror_naming_it(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value)


def test_replay_rtol_nan_was_a_wrong_verdict(tmp_path):
    """Found by fault injection: identify and replay accepted rtol=nan (every comparison false:
    a correct candidate was 'wrong') and rtol=50 (a wrong one 'right')."""
    with pytest.raises(GradientMismatch) as info:
        check(rnn(SPEC, "dropped_carry"), SPEC, save_dir=tmp_path)
    path = info.value.path
    for rtol in (float("nan"), 50.0, -1.0):
        with pytest.raises(ValueError, match="rtol"):
            replay(path, rnn(SPEC), rtol=rtol)
        with pytest.raises(ValueError, match="rtol"):
            replay(path, rnn(SPEC, "dropped_carry"), rtol=rtol)
    assert replay(path, rnn(SPEC)).examples == 1


@pytest.mark.parametrize("strategy, words", [
    (3, "strategy must be a Hypothesis strategy"),
    (st.integers(), "strategy must draw handgrad.strategies.Case objects, drew int"),
    (st.nothing(), "strategy cannot be used: Unsatisfiable"),
], ids=["int", "integers", "nothing"])
def test_an_unusable_strategy_is_a_valueerror(strategy, words):
    """Found by fault injection: hypothesis.errors.InvalidArgument leaked out of check."""
    with pytest.raises(ValueError) as info:
        check(rnn(SPEC), SPEC, strategy=strategy, save_dir=None)
    assert words in str(info.value)


# ----------------------------------------------------------------- files

def test_check_writes_nothing_it_was_not_asked_to(tmp_path):
    """Found by fault injection: Hypothesis cached the constants of local source files in
    .hypothesis/constants/ of the working directory, even with save_dir=None. Run in a fresh
    process whose working directory is tmp_path (where Hypothesis puts that cache)."""
    script = ("import handgrad as hg\n"
              "from handgrad.gallery import rnn\n"
              "hg.check(rnn(hg.Spec()), hg.Spec(), max_examples=50, save_dir=None)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=120)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- sizes

def test_sizes_fix_every_shape_and_values_still_vary():
    seen = []

    def recording(params, xs, ys, h0):
        seen.append((xs.shape, params.W.shape, params.V.shape, float(xs.sum())))
        return reference_candidate(SPEC)(params, xs, ys, h0)
    report = check(recording, SPEC, max_examples=25, sizes=(2, 7, 3, 5, 2), save_dir=None)
    assert report.examples == 25
    assert {s[:3] for s in seen} == {((2, 7, 3), (5, 5), (2, 5))}
    assert len({s[3] for s in seen}) > len(seen) // 2      # the values are drawn anew


def test_sizes_still_find_and_report_a_mistake():
    with pytest.raises(GradientMismatch) as info:
        check(rnn(SPEC, "dropped_carry"), SPEC, sizes=(2, 4, 2, 3, 2), save_dir=None)
    assert info.value.case.sizes == {"B": 2, "T": 4, "D": 2, "H": 3, "O": 2}


# ----------------------------------------------------------------- identify's diagnoses

def test_identify_says_when_it_differs_from_the_asked_truncation():
    result = identify(chunked_rnn(SPEC, 3), hg.Spec(truncation=hg.Window(2)), save_dir=None)
    assert result.truncation == hg.Chunks(3)
    assert "DIFFERS from the spec, which asks for Window(2)" in str(result)
    same = identify(chunked_rnn(SPEC, 3), hg.Spec(truncation=hg.Chunks(3)), save_dir=None)
    assert "that is the spec's truncation" in str(same) and "DIFFERS" not in str(same)
    full = identify(rnn(SPEC, "dropped_carry"), SPEC, save_dir=None)
    assert "DIFFERS from the spec, which asks for full BPTT" in str(full)
    assert "carry from step t+1 is dropped" in str(full)


def test_identify_names_another_spec_when_no_convention_matches():
    truncated_sigmoid = reference_candidate(hg.Spec(activation="sigmoid",
                                                    truncation=hg.Window(3)))
    with pytest.raises(GradientMismatch) as info:
        identify(truncated_sigmoid, SPEC, save_dir=None)
    labels = [a.label for a in info.value.diagnosis.matches]
    assert labels == ["activation='sigmoid' with Window(3)"], str(info.value)


def test_identify_suggests_h0_false_for_a_candidate_that_ignores_h0():
    def ignores_h0(params, xs, ys, h0):
        return reference_candidate(hg.Spec(truncation=hg.Window(2)))(params, xs, ys, None)
    with pytest.raises(GradientMismatch) as info:
        identify(ignores_h0, SPEC, save_dir=None)
    assert "check it with h0=False" in str(info.value)
    assert identify(ignores_h0, SPEC, h0=False, save_dir=None).truncation == hg.Window(2)


# ----------------------------------------------------------------- compare's diagnosis

def test_compare_diagnoses_a_candidate_file(tmp_path, capsys):
    """No program to run: the diagnosis is made on the case file itself."""
    from handgrad.casefile import case_from_arrays, write_candidate, write_case
    from handgrad.cli import main
    from handgrad.strategies import make_case

    spec = hg.Spec(reduction="mean")
    drawn = make_case(spec, 3, 4, 2, 3, 2, seed=5)
    write_case(tmp_path / "case.npz", case_from_arrays(spec, drawn.params, drawn.xs, drawn.ys,
                                                       drawn.h0))
    loss, grads = rnn(spec, "mean_vs_sum")(drawn.params, drawn.xs, drawn.ys, drawn.h0)
    dh0 = grads.pop("h0")
    write_candidate(tmp_path / "mine.json", loss, grads, dh0)
    assert main(["compare", str(tmp_path / "case.npz"), str(tmp_path / "mine.json")]) == 1
    out = capsys.readouterr().out
    assert "the gradients are exactly those of reduction='sum' (the loss is the spec's)" in out
    assert "mean vs sum" in out and "divides by 24" in out
