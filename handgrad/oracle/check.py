"""`hg.check`: search for a case where a candidate's gradients are wrong, shrink it, report it.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

Hypothesis draws cases from `handgrad.strategies.cases` with the spec fixed (shapes, weight
scales, inputs, targets, h0) and shrinks a failure to the smallest one (`hypothesis.find`).
The search is derandomized by default (same call, same cases); `seed=` picks another search.
No example database is used unless `database=` is given (a directory path); with one and no
seed, the search is Hypothesis's random one, which replays earlier failures first.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from random import Random
from typing import Optional

from .._validate import check_spec
from ..casefile import case_arrays, case_from_arrays, read_case, verify_case, write_case
from ..tolerances import TOLERANCES
from .confirm import confirm
from .evaluate import Answer, call_candidate, compare, expected_answer, primary, worst_element
from .locate import locate_steps
from .report import (CandidateError, CheckReport, GradientMismatch, candidate_message, element,
                     mismatch_message)

DEFAULT_SAVE_DIR = ".handgrad-failures"


def default_max_T(spec) -> int:
    """Long enough for the spec's truncation to cut something: 2 steps past its reach, >= 6."""
    if spec.truncation is None:
        return 6
    return max(6, spec.truncation.as_tbptt().k2 + 2)


def _check_count(name, value, lowest=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")


def check(candidate, spec, max_examples: int = 100, rtol: Optional[float] = None,
          seed: Optional[int] = None, *, max_B: int = 3, max_T: Optional[int] = None,
          max_D: int = 3, max_H: int = 4, max_O: int = 3, scales=None,
          h0=None, strategy=None, save_dir=DEFAULT_SAVE_DIR, database=None) -> CheckReport:
    """Check `candidate(params, xs, ys, h0) -> (loss, grads)` against the hand BPTT of `spec`.

    Draws up to `max_examples` cases with B <= max_B, T <= max_T (default: past the spec's
    truncation), D <= max_D, H <= max_H, O <= max_O and weight scales from `scales` (names in
    `handgrad.strategies.WEIGHT_SCALES`); `h0`: None draws cases with and without an initial
    state, False only h0=None (for implementations that always start from zeros); `strategy`:
    your own Hypothesis strategy of `handgrad.strategies.Case`s instead (the size options are
    then ignored), e.g. `cases(spec, max_T=12).filter(lambda c: c.xs.shape[1] % 3 == 0)`.
    Tolerance: `rtol`, or by the dtype of the candidate's gradients (`TOLERANCES["float64"]` /
    `["float32"]`), above the round-off floor of the case (`oracle.conditioning`).

    Returns a `CheckReport` when every case passes. Raises `GradientMismatch` (an AssertionError)
    on the minimal failing case, after confirming the expected value, and saves that case to
    `save_dir` (None: do not save) for `hg.replay`. A candidate that raises or returns something
    unusable gets a `CandidateError` (a GradientMismatch).
    """
    from hypothesis import HealthCheck, Phase, Verbosity, find, settings
    from hypothesis.errors import NoSuchExample

    from ..strategies import WEIGHT_SCALES, cases

    spec = check_spec(spec)
    if not callable(candidate):
        raise ValueError(f"candidate must be callable, got {type(candidate).__name__}")
    _check_count("max_examples", max_examples)
    max_T = default_max_T(spec) if max_T is None else max_T
    for name, value in (("max_B", max_B), ("max_T", max_T), ("max_D", max_D), ("max_H", max_H),
                        ("max_O", max_O)):
        _check_count(name, value)
    if rtol is not None and not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise ValueError(f"rtol must be a number in (0, 1), got {rtol!r}")
    scales = tuple(WEIGHT_SCALES) if scales is None else tuple(scales)
    bad = [s for s in scales if s not in WEIGHT_SCALES]
    if not scales or bad:
        raise ValueError(f"scales must be names from {list(WEIGHT_SCALES)}, got {list(scales)}")
    if h0 not in (None, True, False):
        raise ValueError(f"h0 must be None, True or False, got {h0!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")

    db = None
    if database is not None:
        from hypothesis.database import DirectoryBasedExampleDatabase
        db = DirectoryBasedExampleDatabase(os.fspath(database))
    derandomize = seed is None and db is None
    conf = settings(max_examples=max_examples, derandomize=derandomize, database=db,
                    deadline=None, verbosity=Verbosity.quiet, print_blob=False,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))
    if strategy is None:
        strategy = cases(spec=spec, max_B=max_B, max_T=max_T, max_D=max_D, max_H=max_H,
                         max_O=max_O, scales=scales, h0=h0)
    stats = {"examples": 0, "errors": {}, "dtypes": set(), "floored": 0}

    def fails(case) -> bool:
        stats["examples"] += 1
        got = call_candidate(candidate, case)
        if not isinstance(got, Answer):
            return True
        cmp = compare(got, expected_answer(case), rtol, case)
        stats["dtypes"].add(str(got.dtype))
        for n, e in cmp.errors.items():
            stats["errors"][n] = max(stats["errors"].get(n, 0.0), e)
        stats["floored"] += bool(cmp.floors) and not cmp.failing
        return bool(cmp.failing)

    start = time.perf_counter()
    try:
        # derandomized by default; seed= picks another search; a database (when asked for)
        # only works with Hypothesis's own random search, which replays saved failures first
        minimal = find(strategy, fails, settings=conf,
                       random=None if seed is None else Random(seed))
    except NoSuchExample:
        return CheckReport(spec, stats["examples"], rtol, tuple(sorted(stats["dtypes"])),
                           stats["errors"], time.perf_counter() - start, stats["floored"])
    judge(candidate, minimal, rtol, save_dir)
    raise CandidateError(candidate_message(
        spec=spec, case=minimal, path=None, kind="flaky",
        detail="it failed on this case during the search and passed when run again"),
        kind="flaky", case=minimal)


def judge(candidate, case, rtol=None, save_dir=DEFAULT_SAVE_DIR, path=None, localize=True):
    """Run the candidate on one case; raise the full report if it fails, else return the
    Comparison. `path`: an existing replay file (not saved again)."""
    got = call_candidate(candidate, case)
    if not isinstance(got, Answer):
        path = path or save_replay(case, save_dir, got.kind)
        raise CandidateError(candidate_message(spec=case.spec, case=case, detail=got.detail,
                                               path=path, kind=got.kind),
                             kind=got.kind, param=got.param, index=got.index, case=case, path=path)
    expected = expected_answer(case)
    cmp = compare(got, expected, rtol, case)
    if not cmp.failing:
        return cmp
    raise mismatch(case, got, expected, cmp,
                   candidate=candidate if localize else None, save_dir=save_dir, path=path)


def mismatch(case, got, expected, cmp, candidate=None, save_dir=None, path=None,
             header="gradient mismatch", case_word="minimal case") -> GradientMismatch:
    """Build the GradientMismatch for a failing comparison (confirming the expected value)."""
    param = primary(cmp.failing)
    if param == "loss":
        index, exp_v, act_v = (), expected.loss, got.loss
    else:
        index = worst_element(got.grads[param], expected.grads[param])
        exp_v, act_v = element(expected.grads[param], index), element(got.grads[param], index)
    confirmed = confirm(case, expected, param, index)
    step = None
    if candidate is not None and param in ("U", "W", "b", "h0"):
        step = locate_steps(candidate, case, got, expected, cmp.rtol, param, cmp.floors)
    path = path or save_replay(case, save_dir, param)
    message = mismatch_message(spec=case.spec, case=case, param=param, index=index,
                               expected=exp_v, actual=act_v, rel=cmp.errors[param],
                               errors=cmp.errors, rtol=cmp.rtol, floor=cmp.floors.get(param),
                               failing=cmp.failing, case_word=case_word,
                               step_text=step.text if step else None, confirmed=confirmed,
                               path=path, header=header, note=cmp.note)
    return GradientMismatch(message, param=param, index=index, expected=exp_v, actual=act_v,
                            rel_error=cmp.errors[param], case=case, path=path,
                            errors=cmp.errors, rtol=cmp.rtol, step=step)


def save_replay(case, save_dir, label: str):
    """Write the case (with its reference answers) to save_dir/<label>-<hash>.npz; None when
    save_dir is None."""
    if save_dir is None:
        return None
    full = case_from_arrays(case.spec, case.params, case.xs, case.ys, case.h0)
    digest = hashlib.sha1()
    for name, arr in sorted(case_arrays(full).items()):
        digest.update(name.encode())
        digest.update(arr.tobytes())
    digest.update(repr(case.spec).encode())
    path = Path(save_dir) / f"{label}-{digest.hexdigest()[:12]}.npz"
    write_case(path, full)
    return path


def replay(path, candidate, rtol: Optional[float] = None) -> CheckReport:
    """Run `candidate` on a saved case (a replay file or any case file).

    Raises GradientMismatch as `check` would; returns a CheckReport of one case when it passes.
    """
    from ..strategies import Case

    start = time.perf_counter()
    stored = read_case(path)
    verify_case(path, stored, TOLERANCES["jax"])
    case = Case(stored.spec, stored.params, stored.xs, stored.ys, stored.h0, None, None)
    cmp = judge(candidate, case, rtol, save_dir=None, path=path)
    return CheckReport(stored.spec, 1, rtol, (), dict(cmp.errors), time.perf_counter() - start)
