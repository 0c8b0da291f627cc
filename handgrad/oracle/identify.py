"""`hg.identify`: which truncation convention does a candidate's gradient implement?

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

On a few fixed cases of length T the candidate's gradient is compared with the hand BPTT under
every convention up to T: full BPTT, Window(k), Chunks(k), TBPTT(k1, k2). Two conventions give the
same gradient on sequences of length T exactly when every loss term is cut at the same step
(`handgrad.segments`), so conventions are grouped by their sweeps and each group is named by its
simplest member (full, then Window, then Chunks, then TBPTT; smallest k first). For
`output="last"` only the cut of the single sweep matters, so every match is named Window(k).

PyTorch's `h = h.detach()` every k steps is exactly `Chunks(k)` = `TBPTT(k, k)` for every T (the
contract's chunk end tau(t) = k ceil(t / k) is not clamped at T), so it needs no special case.

If the candidate matches full BPTT at T, it might still truncate beyond T - 1 steps: identify
runs again at the next, longer T of the schedule (all conventions again) before it says "full".
The recurrent weights are orthogonal with gain 1.5 (centred for sigmoid), so gradients reach far
back in time and neighbouring conventions differ by far more than float32 round-off (tested).
"""
from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple, Optional

import numpy as np

from .._validate import check_spec
from ..spec import TBPTT, Chunks, Window, segments
from ..tolerances import rel_error, tolerance_for
from .arguments import check_candidate, check_rtol, check_save_dir, check_timeout
from .check import DEFAULT_SAVE_DIR, mismatch, save_replay
from .evaluate import Answer, Expected, compare, expected_answer
from .report import CandidateError, candidate_message, describe_spec
from .run import DEFAULT_TIMEOUT, limited, run

SCHEDULE = (10, 20)       # sequence lengths: the second only when the first says "full"
N_CASES = 2
# every answer a truncation changes: all but the loss and the output layer V, c
TRUNCATION_DEPENDENT = ("U", "W", "b", "W_ih", "W_hh", "b_ih", "b_hh", "h0", "c0", "xs")
GAIN = 1.5                # recurrent gain of the identify cases (see recurrent_weights)
INPUT_SCALE = 0.5


class Identified(NamedTuple):
    """The convention a candidate matches on sequences of length T."""

    truncation: object          # None | Window(k) | Chunks(k) | TBPTT(k1, k2)
    equivalents: tuple          # other names for the same gradient at this T (and output)
    T: int
    rel_error: float            # the match's largest relative error over the compared grads
    runner_up: Optional[tuple]  # (name, relative error) of the closest other convention
    seconds: float
    message: str

    def __str__(self) -> str:
        return self.message


def conventions(T: int, output: str) -> list[tuple]:
    """Every distinct convention on length T: [(simplest name, (other names...)), ...]."""
    named = [None, *(Window(k) for k in range(T - 1)), *(Chunks(k) for k in range(1, T)),
             *(TBPTT(k1, k2) for k1 in range(1, T) for k2 in range(k1, T + 1))]
    groups: dict = {}
    for tr in named:
        groups.setdefault(cuts(segments(tr, T, output)), []).append(tr)
    return [(g[0], tuple(g[1:])) for g in groups.values()]


def cuts(segs) -> tuple:
    """The cut of every loss step: what the gradient depends on (how steps are grouped into
    sweeps does not matter)."""
    return tuple(seg.cut for seg in segs for _ in range(seg.first, seg.last + 1))


def recurrent_weights(activation: str, H: int, seed: int, gain: float = GAIN) -> np.ndarray:
    """W (H, H) that carries gradients far back in time without exploding.

    tanh: gain * a random orthogonal matrix (tanh'(0) = 1). sigmoid: sigma'(0) = 1/4 and
    sigma(0) = 1/2, so 4 * gain * an orthogonal map of the subspace orthogonal to the all-ones
    vector, which sends the offset 1/2 * (1, ..., 1) to zero and keeps pre-activations centred.
    """
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(H, H)))
    q = q * np.sign(np.diag(r))
    if activation != "sigmoid" or H == 1:            # tanh, relu, identity: act'(0) = 1
        return gain * q
    ones = np.ones((H, 1)) / np.sqrt(H)
    basis = np.linalg.qr(np.hstack([ones, rng.normal(size=(H, H - 1))]))[0][:, 1:]  # (H, H-1)
    rotation = np.linalg.qr(rng.normal(size=(H - 1, H - 1)))[0]                  # (H-1, H-1)
    return 4 * gain * basis @ rotation @ basis.T


def identify_cases(spec, T: int, D: int = 2, H: int = 3, O: int = 2, B: int = 2,
                   with_h0: bool = True) -> list:
    """N_CASES fixed cases of length T: inputs scaled by INPUT_SCALE and `recurrent_weights`,
    so that every convention up to T=10 differs from its neighbours by more than 1e-2."""
    from ..strategies import make_case

    out = []
    for i in range(N_CASES):
        case = make_case(spec, B, T, D, H, O, scale="moderate", seed=1000 + i, with_h0=with_h0)
        if spec.cell == "elman":         # gated cells carry gradients through their gates
            W = recurrent_weights(spec.activation, H, seed=2000 + i)
            case = case._replace(params=case.params._replace(W=W))
        out.append(case._replace(xs=INPUT_SCALE * case.xs))
    return out


def _expected(case, truncation) -> Expected:
    return expected_answer(case._replace(spec=dataclasses.replace(case.spec,
                                                                  truncation=truncation)))


def _truncation_error(answer: Answer, expected: Expected) -> float:
    return max(rel_error(answer.grads[n], expected.grads[n])
               for n in TRUNCATION_DEPENDENT if n in answer.grads)


def check_schedule(schedule) -> tuple:
    """A non-empty increasing sequence of sequence lengths >= 2."""
    try:
        values = tuple(schedule)
    except TypeError:
        values = None
    if (not values or any(isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2
                          for T in values)
            or any(a >= b for a, b in zip(values, values[1:]))):
        raise ValueError("schedule must be a non-empty increasing sequence of integers >= 2 "
                         f"(sequence lengths), got {schedule!r}")
    return tuple(int(T) for T in values)


def identify(candidate, spec, rtol: Optional[float] = None, schedule=SCHEDULE,
             save_dir=DEFAULT_SAVE_DIR, h0: bool = True,
             timeout: Optional[float] = DEFAULT_TIMEOUT) -> Identified:
    """Name the truncation convention `candidate` implements (spec.truncation is ignored, but
    the message says when the match differs from it).

    Runs N_CASES fixed cases at each length of `schedule` (the next one only when the previous
    says "full BPTT"); `h0=False` passes h0=None (for implementations that start from zeros);
    `timeout`: seconds per call (None: no limit).

    Raises GradientMismatch when the loss, V or c are wrong (they do not depend on truncation)
    or when no convention matches (reporting the closest one, and the alternative spec the
    answer matches when there is one), CandidateError when the candidate raises, returns
    something unusable or times out.
    """
    spec = check_spec(spec)
    check_candidate(candidate)
    rtol = check_rtol(rtol)
    schedule = check_schedule(schedule)
    save_dir = check_save_dir(save_dir)
    timeout = check_timeout(timeout)
    if h0 not in (True, False):
        raise ValueError(f"h0 must be True or False, got {h0!r}")
    timed = limited(candidate, timeout)
    start = time.perf_counter()
    full_spec = dataclasses.replace(spec, truncation=None)
    result = None
    for T in schedule:
        result = _identify_at(timed, full_spec, T, rtol, save_dir, h0)
        if result[0] is not None:      # a truncation shorter than T: no need to look further
            break
    match, others, T, err, runner, tol = result
    seconds = time.perf_counter() - start
    message = _message(match, others, T, err, runner, tol, spec, seconds)
    return Identified(match, others, T, err, runner, seconds, message)


def _identify_at(candidate, spec, T: int, rtol, save_dir, h0=True):
    cases = identify_cases(spec, T, with_h0=h0)
    answers = []
    for case in cases:
        got = run(candidate, case)
        if not isinstance(got, Answer):
            path, note = save_replay(case, save_dir, got.kind)
            raise CandidateError(candidate_message(spec=spec, case=case, detail=got.detail,
                                                   path=path, kind=got.kind, note=note),
                                 kind=got.kind, case=case, path=path)
        answers.append(got)
    tol = min(tolerance_for(a.dtype) for a in answers) if rtol is None else float(rtol)
    every = [name for name, _ in conventions(T, spec.output)]
    # the loss, V and c do not depend on truncation: check them first
    for case, got in zip(cases, answers):
        exp = _expected(case, None)
        cmp = compare(Answer(got.loss, {n: g for n, g in got.grads.items() if n in ("V", "c")},
                             got.dtype), exp, tol, case)
        if cmp.failing:
            raise mismatch(case, got, exp, cmp, save_dir=save_dir, truncations=every,
                           combine=True,
                           header="identify: the loss, V or c is wrong (truncation cannot "
                                  "change them), so no convention matches; mismatch")
    scored = []       # (error, name, others); the second case only for near matches
    for name, others in conventions(T, spec.output):
        err = _truncation_error(answers[0], _expected(cases[0], name))
        if err <= 100 * tol:
            err = max([err] + [_truncation_error(got, _expected(case, name))
                               for case, got in zip(cases[1:], answers[1:])])
        scored.append((err, name, others))
    scored.sort(key=lambda s: s[0])
    best_err, best, others = scored[0]
    runner = (scored[1][1], scored[1][0]) if len(scored) > 1 else None
    if not best_err <= tol:        # beyond rtol: the round-off floor of each case decides
        truncated = dataclasses.replace(spec, truncation=best)
        for case, got in zip(cases, answers):
            exp = _expected(case, best)
            cmp = compare(got, exp, tol, case._replace(spec=truncated))
            if cmp.failing:
                raise mismatch(case._replace(spec=truncated), got, exp, cmp, save_dir=save_dir,
                               truncations=every, combine=True,
                               header=f"identify: matches no truncation convention up to T={T}; "
                                      f"the closest is {_name(best)}, mismatch")
    return best, others, T, best_err, runner, tol


def _name(tr) -> str:
    return "full BPTT" if tr is None else repr(tr)


def _versus_asked(match, asked, T: int, output: str) -> str:
    """How the identified convention relates to the spec's truncation (the one asked for)."""
    if match == asked:
        return "; that is the spec's truncation" if asked is not None else ""
    if cuts(segments(match, T, output)) == cuts(segments(asked, T, output)):
        return (f"; the spec's {_name(asked)} gives the same gradient at T={T} (longer "
                "sequences may tell them apart: schedule=)")
    text = f"; DIFFERS from the spec, which asks for {_name(asked)}"
    if isinstance(match, Window) and isinstance(asked, Window):
        text += (f": you may have meant bptt_truncate={asked.k} (off by "
                 f"{match.k - asked.k:+d} in the truncation loop?)")
    elif isinstance(match, Window) and match.k == 0:
        text += ": the carry from step t+1 is dropped (each step sees only its own loss term)"
    return text


def _message(match, others, T, err, runner, tol, spec, seconds) -> str:
    if match is None:
        head = (f"matches full BPTT (checked on sequences of up to T={T}: a truncation reaching "
                f"{T - 1} or more steps back would look the same)")
    elif isinstance(match, Window):
        head = (f"matches Window({match.k}): each loss reaches back {match.k} transitions, "
                f"bptt_truncate={match.k} in the tutorial's terms")
    elif isinstance(match, Chunks):
        head = (f"matches Chunks({match.k}): the hidden state is detached every {match.k} "
                f"steps, as h.detach() in PyTorch (TBPTT({match.k}, {match.k}))")
    else:
        head = (f"matches TBPTT({match.k1}, {match.k2}): every {match.k1} steps, backpropagate "
                f"{match.k2} steps")
    head += _versus_asked(match, spec.truncation, T, spec.output)
    lines = [head]
    if others and match is not None:      # full BPTT's equivalents (k >= T) say nothing
        names = [_name(o) for o in others]
        more = f" and {len(names) - 4} more" if len(names) > 4 else ""
        lines.append(f"  same gradient at T={T} (output={spec.output}): {', '.join(names[:4])}{more}")
    if runner and runner[1] <= tol:
        lines.append(f"  {_name(runner[0])} is also within rtol {tol:.0e} ({runner[1]:.1e}): "
                     "the two cannot be told apart at this precision")
    sep = (f"; closest other: {_name(runner[0])} at {runner[1]:.1e}" if runner else "")
    matched = dataclasses.replace(spec, truncation=match)
    lines.append(f"  relative error {err:.1e}{sep}; {describe_spec(matched)}")
    lines.append(f"  identified in {seconds:.2f} s")
    return "\n".join(lines)
