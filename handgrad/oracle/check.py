"""`hg.check`: search for a case where a candidate's gradients are wrong, shrink it, report it.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

Hypothesis draws cases from `handgrad.strategies.cases` with the spec fixed (shapes, weight
scales, inputs, targets, h0) and shrinks a failure to the smallest one (`hypothesis.find`).
The search is derandomized by default (same call, same cases); `seed=` picks another search.
No example database is used unless `database=` is given (a directory path); with one and no
seed, the search is Hypothesis's random one, which replays earlier failures first.

Nothing is written unless asked: replay files go to `save_dir` (None: nowhere), the example
database to `database`, and Hypothesis's own cache of constants found in local source files
(normally `.hypothesis/constants/` in the working directory) to a temporary directory that is
removed after the search.

Every call of the candidate has a time limit (`timeout`, `run.limited`); a call that hangs ends
the search at once (it is not shrunk). A failing case is run twice: a candidate whose two
answers differ is reported as nondeterministic, not as wrong.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from random import Random
from typing import Optional

from .._validate import check_spec
from ..casefile import case_arrays, case_from_arrays, read_case, verify_case, write_case
from ..tolerances import TOLERANCES
from .arguments import (check_candidate, check_count, check_path, check_rtol, check_save_dir,
                        check_sizes, check_timeout)
from .confirm import confirm
from .diagnose import diagnose, larger_case
from .evaluate import Answer, compare, expected_answer, primary, worst_element
from .gates import gate_text
from .locate import locate_steps
from .report import (CandidateError, CheckReport, GradientMismatch, candidate_message,
                     describe_case, element, mismatch_message)
from .run import (ACCUMULATED, DEFAULT_TIMEOUT, NONDETERMINISTIC, accumulated, disagreement,
                  limited, run)

DEFAULT_SAVE_DIR = ".handgrad-failures"


def default_max_T(spec) -> int:
    """Long enough for the spec's truncation to cut something: 2 steps past its reach, >= 6."""
    if spec.truncation is None:
        return 6
    return max(6, spec.truncation.as_tbptt().k2 + 2)


class _Stop(BaseException):
    """Ends the search at once with `error` (a hang, nondeterminism, a strategy that draws
    something else than cases): a BaseException, so Hypothesis neither shrinks nor swallows it."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


@contextmanager
def private_hypothesis_home():
    """Hypothesis caches the constants of local source files under its home directory
    (`.hypothesis/` in the working directory Hypothesis was imported from). For the duration of
    a search, point it at a temporary directory, removed afterwards, so that nothing is written
    that the user did not ask for."""
    from hypothesis import configuration

    previous = vars(configuration).get("__hypothesis_home_directory")
    with tempfile.TemporaryDirectory(prefix="handgrad-hypothesis-") as tmp:
        configuration.set_hypothesis_home_dir(tmp)
        try:
            yield
        finally:
            configuration.set_hypothesis_home_dir(previous)


def check(candidate, spec, max_examples: int = 100, rtol: Optional[float] = None,
          seed: Optional[int] = None, *, max_B: int = 3, max_T: Optional[int] = None,
          max_D: int = 3, max_H: int = 4, max_O: int = 3, sizes=None, scales=None,
          h0=None, strategy=None, save_dir=DEFAULT_SAVE_DIR, database=None,
          timeout: Optional[float] = DEFAULT_TIMEOUT) -> CheckReport:
    """Check `candidate(params, xs, ys, h0) -> (loss, grads)` against the hand BPTT of `spec`.

    Draws up to `max_examples` cases with B <= max_B, T <= max_T (default: past the spec's
    truncation), D <= max_D, H <= max_H, O <= max_O, or every case at exactly
    `sizes=(B, T, D, H, O)` (values still vary: a jit-compiled candidate compiles once), and
    weight scales from `scales` (names in `handgrad.strategies.WEIGHT_SCALES`); `h0`: None draws
    cases with and without an initial state, False only h0=None (for implementations that
    always start from zeros); `strategy`: your own Hypothesis strategy of
    `handgrad.strategies.Case`s instead (the size options are then ignored), e.g.
    `cases(spec, max_T=12).filter(lambda c: c.xs.shape[1] % 3 == 0)`.
    Tolerance: `rtol`, or by the dtype of the candidate's gradients (`TOLERANCES["float64"]` /
    `["float32"]`), above the round-off floor of the case (`oracle.conditioning`).
    `timeout`: seconds per call of the candidate (None: no limit).

    Returns a `CheckReport` when every case passes. Raises `GradientMismatch` (an AssertionError)
    on the minimal failing case, after confirming the expected value, with a diagnosis of the
    likely cause, and saves that case to `save_dir` (None: do not save) for `hg.replay`. A
    candidate that raises, returns something unusable, times out or answers the same case
    differently twice gets a `CandidateError` (a GradientMismatch).
    """
    from hypothesis import HealthCheck, Phase, Verbosity, find, settings
    from hypothesis import strategies as st
    from hypothesis.errors import FlakyFailure, HypothesisException, NoSuchExample

    from ..strategies import WEIGHT_SCALES, Case, cases

    spec = check_spec(spec)
    check_candidate(candidate)
    check_count("max_examples", max_examples)
    max_T = default_max_T(spec) if max_T is None else max_T
    for name, value in (("max_B", max_B), ("max_T", max_T), ("max_D", max_D), ("max_H", max_H),
                        ("max_O", max_O)):
        check_count(name, value)
    sizes = check_sizes(sizes)
    rtol = check_rtol(rtol)
    timeout = check_timeout(timeout)
    scales = tuple(WEIGHT_SCALES) if scales is None else tuple(scales)
    bad = [s for s in scales if s not in WEIGHT_SCALES]
    if not scales or bad:
        raise ValueError(f"scales must be names from {list(WEIGHT_SCALES)}, got {list(scales)}")
    if h0 not in (None, True, False):
        raise ValueError(f"h0 must be None, True or False, got {h0!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    if strategy is not None and not isinstance(strategy, st.SearchStrategy):
        raise ValueError("strategy must be a Hypothesis strategy of handgrad.strategies.Case, "
                         f"got {type(strategy).__name__}")
    if strategy is not None and sizes is not None:
        raise ValueError("give sizes= or strategy=, not both (fix the sizes in your strategy)")
    save_dir = check_save_dir(save_dir)

    db = None
    if database is not None:
        from hypothesis.database import DirectoryBasedExampleDatabase
        db = DirectoryBasedExampleDatabase(os.fspath(check_path("database", database)))
    derandomize = seed is None and db is None
    conf = settings(max_examples=max_examples, derandomize=derandomize, database=db,
                    deadline=None, verbosity=Verbosity.quiet, print_blob=False,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))
    own_strategy = strategy is not None
    if strategy is None:
        strategy = cases(spec=spec, max_B=max_B, max_T=max_T, max_D=max_D, max_H=max_H,
                         max_O=max_O, scales=scales, h0=h0, sizes=sizes)
    timed = limited(candidate, timeout)
    stats = {"examples": 0, "errors": {}, "dtypes": set(), "floored": 0, "unjudged": 0,
             "last_failing": None, "repeated": False}

    def fails(case) -> bool:
        if not isinstance(case, Case):
            raise _Stop(ValueError("strategy must draw handgrad.strategies.Case objects, drew "
                                   f"{type(case).__name__}"))
        stats["examples"] += 1
        got = run(timed, case)
        if not isinstance(got, Answer):
            if got.kind == "timeout":
                raise _Stop(_candidate_error(case, got, save_dir))
            stats["last_failing"] = case
            return True
        expected = expected_answer(case)
        cmp = compare(got, expected, rtol, case)
        stats["dtypes"].add(str(got.dtype))
        for n, e in cmp.errors.items():
            stats["errors"][n] = max(stats["errors"].get(n, 0.0), e)
        stats["floored"] += bool(cmp.floors) and not cmp.failing and not cmp.unjudged
        stats["unjudged"] += bool(cmp.unjudged) and not cmp.failing
        if cmp.failing:
            stats["last_failing"] = case
            if not stats["repeated"]:          # the first failure: is it reproducible?
                stats["repeated"] = True
                why = _nondeterminism(got, run(timed, case), cmp, expected)
                if why:
                    raise _Stop(_nondeterministic(case, why, save_dir))
        return bool(cmp.failing)

    start = time.perf_counter()
    try:
        # derandomized by default; seed= picks another search; a database (when asked for)
        # only works with Hypothesis's own random search, which replays saved failures first
        with private_hypothesis_home():
            minimal = find(strategy, fails, settings=conf,
                           random=None if seed is None else Random(seed))
    except NoSuchExample:
        return CheckReport(spec, stats["examples"], rtol, tuple(sorted(stats["dtypes"])),
                           stats["errors"], time.perf_counter() - start, stats["floored"],
                           stats["unjudged"])
    except _Stop as stop:
        raise stop.error from None
    except FlakyFailure:
        case = stats["last_failing"]
        raise _nondeterministic(case, "a case failed, then passed when Hypothesis ran it "
                                "again", save_dir) from None
    except HypothesisException as exc:
        if not own_strategy:
            raise
        raise ValueError(f"strategy cannot be used: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    judge(timed, minimal, rtol, save_dir)
    raise _nondeterministic(minimal, "it failed on this case during the search and passed "
                            "when run again", save_dir)


def _candidate_error(case, failure, save_dir, path=None) -> CandidateError:
    path, note = (path, None) if path is not None else save_replay(case, save_dir, failure.kind)
    return CandidateError(candidate_message(spec=case.spec, case=case, detail=failure.detail,
                                            path=path, kind=failure.kind, note=note),
                          kind=failure.kind, param=failure.param, index=failure.index,
                          case=case, path=path)


def _nondeterministic(case, why: str, save_dir, path=None) -> CandidateError:
    path, note = (path, None) if path is not None else save_replay(case, save_dir,
                                                                    "nondeterministic")
    return CandidateError(candidate_message(spec=case.spec, case=case, path=path, note=note,
                                            kind="nondeterministic",
                                            detail=f"{NONDETERMINISTIC} ({why})"),
                          kind="nondeterministic", case=case, path=path)


def _nondeterminism(first: Answer, second, cmp, expected) -> Optional[str]:
    """Why two calls on the same case disagree, or None when they agree."""
    if not isinstance(second, Answer):
        return f"the second call failed: {second.detail}"
    why = disagreement(first, second, cmp.rtol)
    grown = why and accumulated(first, second, expected, cmp.rtols or {})
    if grown:
        why += "; " + ACCUMULATED.format(names=", ".join(f"d{n}" for n in grown))
    return why


def judge(candidate, case, rtol=None, save_dir=DEFAULT_SAVE_DIR, path=None, localize=True):
    """Run the candidate on one case; raise the full report if it fails, else return the
    Comparison. `path`: an existing replay file (not saved again). A failing case is run a
    second time: differing answers are reported as nondeterminism."""
    got = run(candidate, case)
    if not isinstance(got, Answer):
        raise _candidate_error(case, got, save_dir, path)
    expected = expected_answer(case)
    cmp = compare(got, expected, rtol, case)
    if not cmp.failing:
        return cmp
    why = _nondeterminism(got, run(candidate, case), cmp, expected)
    if why:
        raise _nondeterministic(case, why, save_dir, path)
    raise mismatch(case, got, expected, cmp,
                   candidate=candidate if localize else None, save_dir=save_dir, path=path)


def mismatch(case, got, expected, cmp, candidate=None, save_dir=None, path=None,
             header="gradient mismatch", case_word="minimal case",
             truncations=None, combine=False) -> GradientMismatch:
    """Build the GradientMismatch for a failing comparison (confirming the expected value and
    diagnosing the likely cause; `truncations`, `combine`: as in `diagnose.alternatives`)."""
    param = primary(cmp.failing)
    if param == "loss":
        index, exp_v, act_v = (), expected.loss, got.loss
    else:
        index = worst_element(got.grads[param], expected.grads[param])
        exp_v, act_v = element(expected.grads[param], index), element(got.grads[param], index)
    confirmed = confirm(case, expected, param, index)
    step = None
    if candidate is not None and param not in ("loss", "V", "c", "xs"):   # truncation-dependent
        step = locate_steps(candidate, case, got, expected, cmp.rtol, param, cmp.floors)
    found = diagnose(case, got, expected, cmp.rtol, truncations, combine)
    if candidate is not None and (found.matches or found.factors):
        found = _confirm_diagnosis(candidate, case, cmp.rtol) or found
    note = None
    if path is None:
        path, note = save_replay(case, save_dir, param)
    message = mismatch_message(spec=case.spec, case=case, param=param, index=index,
                               expected=exp_v, actual=act_v, rel=cmp.errors[param],
                               errors=cmp.errors, rtol=cmp.rtol, floor=cmp.floors.get(param),
                               failing=cmp.failing, case_word=case_word,
                               step_text=step.text if step else None, confirmed=confirmed,
                               path=path, header=header, diagnosis=_diagnosis_lines(found, case),
                               note=note, precision=cmp.note,
                               gates=gate_text(case.spec, got.grads, expected.grads, cmp.failing,
                                               cmp.rtols or {}))
    return GradientMismatch(message, param=param, index=index, expected=exp_v, actual=act_v,
                            rel_error=cmp.errors[param], case=case, path=path,
                            errors=cmp.errors, rtol=cmp.rtol, step=step, diagnosis=found)


def _diagnosis_lines(found, case) -> tuple:
    if not found.lines or found.case is case:
        return found.lines
    return (*found.lines, f"  (diagnosed on a larger case, {describe_case(found.case)}: on "
                          "the minimal one, different causes can give the same numbers)")


def _confirm_diagnosis(candidate, case, rtol):
    """The diagnosis made again on a larger case, where alternatives that coincide on the
    minimal one (a mean and a sum at B = T = O = 1) differ; None if the candidate cannot be run
    on it or gets it right."""
    big = larger_case(case)
    got = run(candidate, big)
    if not isinstance(got, Answer):
        return None
    expected = expected_answer(big)
    if not compare(got, expected, rtol, big).failing:
        return None
    return diagnose(big, got, expected, rtol)


def save_replay(case, save_dir, label: str):
    """Write the case (with its reference answers) to save_dir/<label>-<hash>.npz.

    Returns (path, None), (None, None) when save_dir is None, or (None, why) when the file could
    not be written: the report is never lost to a failed save."""
    if save_dir is None:
        return None, None
    full = case_from_arrays(case.spec, case.params, case.xs, case.ys, case.h0)
    digest = hashlib.sha1()
    for name, arr in sorted(case_arrays(full).items()):
        digest.update(name.encode())
        digest.update(arr.tobytes())
    digest.update(repr(case.spec).encode())
    path = Path(save_dir) / f"{label}-{digest.hexdigest()[:12]}.npz"
    try:
        write_case(path, full)
    except (OSError, ValueError) as exc:
        return None, f"could not be saved to {str(path)!r} ({exc})"
    return path, None


def replay(path, candidate, rtol: Optional[float] = None,
           timeout: Optional[float] = DEFAULT_TIMEOUT) -> CheckReport:
    """Run `candidate` on a saved case (a replay file or any case file).

    Raises GradientMismatch as `check` would; returns a CheckReport of one case when it passes.
    """
    from ..strategies import Case

    path = check_path("path", path)
    check_candidate(candidate)
    rtol = check_rtol(rtol)
    timeout = check_timeout(timeout)
    start = time.perf_counter()
    stored = read_case(path)
    verify_case(path, stored, TOLERANCES["jax"])
    case = Case(stored.spec, stored.params, stored.xs, stored.ys, stored.h0, None, None)
    cmp = judge(limited(candidate, timeout), case, rtol, save_dir=None, path=path)
    return CheckReport(stored.spec, 1, rtol, (), dict(cmp.errors), time.perf_counter() - start,
                       unjudged=int(bool(cmp.unjudged)))
