"""What the oracle says: `GradientMismatch` (and `CandidateError`) when a candidate is wrong,
`CheckReport` when it passed. Messages name the parameter, the worst element, the time step where
it can be told, expected vs actual, the relative error, the minimal shapes and the replay file."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .evaluate import ORDER


class GradientMismatch(AssertionError):
    """A candidate's loss or gradient disagrees with the (confirmed) expected one.

    Attributes: param ("loss", "U", "W", "V", "b", "c" or "h0"), index (tuple into that array),
    expected, actual (the two values at index), rel_error (normwise, of the whole parameter),
    case (the minimal case: spec, params, xs, ys, h0, ...), path (the replay file or None),
    errors (every compared quantity's relative error), rtol, step (a StepReport or None),
    diagnosis (a `diagnose.Diagnosis`: the alternative conventions and constant factors the
    answer matches, or None).
    """

    def __init__(self, message: str, *, param=None, index=None, expected=None, actual=None,
                 rel_error=None, case=None, path=None, errors=None, rtol=None, step=None,
                 diagnosis=None):
        super().__init__(message)
        self.param, self.index = param, index
        self.expected, self.actual, self.rel_error = expected, actual, rel_error
        self.case, self.path, self.errors, self.rtol, self.step = case, path, errors, rtol, step
        self.diagnosis = diagnosis


class CandidateError(GradientMismatch):
    """The candidate raised, returned the wrong keys or shapes, returned NaN/inf, did not return
    within the time limit, or answered the same case differently twice.

    `kind` is "raised", "bad_output", "non_finite", "timeout" or "nondeterministic"."""

    def __init__(self, message: str, *, kind: str, **kwargs):
        super().__init__(message, **kwargs)
        self.kind = kind


@dataclass
class CheckReport:
    """A passed check: how many cases, and the largest relative error seen per quantity."""

    spec: object
    examples: int
    rtol: Optional[float]            # None: by the candidate's dtype
    dtypes: tuple                    # the precisions the candidate answered in
    max_rel_error: dict = field(default_factory=dict)
    seconds: float = 0.0
    within_floor: int = 0            # cases that passed only by the round-off floor (saturation,
                                     # long sequences)
    unjudged: int = 0                # cases above rtol where the round-off model has no bound

    def __str__(self) -> str:
        errs = ", ".join(f"{k} {v:.1e}" for k, v in self.max_rel_error.items())
        tol = (f"rtol {self.rtol:g}" if self.rtol is not None
               else "rtol by dtype: " + ", ".join(str(d) for d in self.dtypes))
        floor = (f"; {self.within_floor} case(s) differed by more than rtol but within the "
                 "round-off floor of the case" if self.within_floor else "")
        if self.unjudged:
            floor += (f"; {self.unjudged} case(s) too ill-conditioned to judge (above rtol, "
                      "where the round-off model cannot bound the error): not checked")
        return (f"passed: {self.examples} case(s) of {describe_spec(self.spec)}; largest "
                f"relative errors: {errs} ({tol}){floor}; {self.seconds:.2f} s")


def describe_spec(spec) -> str:
    trunc = "full BPTT" if spec.truncation is None else repr(spec.truncation)
    unit = {"elman": spec.activation, "gru": f"GRU (reset {spec.gru_reset})",
            "lstm": "LSTM"}[spec.cell]
    return (f"{unit}, {'bias' if spec.bias else 'no bias'}"
            f"{'' if spec.head else ', no head'}, output={spec.output}, "
            f"{spec.loss}, {spec.reduction}, {trunc}")


def describe_case(case) -> str:
    B, T, D = case.xs.shape
    _, H, O = case.params.sizes
    h0 = "h0 given" if case.h0 is not None else "h0 = 0"
    extra = ""
    if getattr(case, "scale", None) is not None:
        extra = f", weights {case.scale!r}"
    if getattr(case, "seed", None) is not None:
        extra += f", seed {case.seed}"
    return f"B={B}, T={T}, D={D}, H={H}, O={O}, {h0}{extra}"


def _fmt(x) -> str:
    return f"{float(x):.10g}"


def _errors_line(errors: dict, failing) -> str:
    parts = [f"{n} {errors[n]:.1e}{' (wrong)' if n in failing else ''}" for n in ORDER
             if n in errors]
    return "relative errors: " + ", ".join(parts)


def mismatch_message(*, spec, case, param, index, expected, actual, rel, errors, rtol,
                     step_text, confirmed, path, header="gradient mismatch", floor=None,
                     failing=(), case_word="minimal case", diagnosis=(), note=None,
                     precision=None, gates=None) -> str:
    what = "loss" if param == "loss" else f"d loss/d {param}"
    where = "" if param == "loss" else f"[{', '.join(map(str, index))}]"
    lines = [
        f"{header} in {what} ({describe_spec(spec)})",
        f"  worst element {param}{where}: expected {_fmt(expected)}, got {_fmt(actual)}; "
        f"normwise relative error {rel:.2e} > rtol {rtol:.2g}",
    ]
    if floor:
        lines[-1] += f" (and beyond the round-off floor {floor:.1e} of this case)"
    if gates:                             # oracle.gates: the wrong gate blocks
        lines.append(f"  {gates}")
    if step_text:
        lines.append(f"  {step_text}")
    lines.extend(f"  {line}" for line in diagnosis)
    lines.append(f"  {_errors_line(errors, failing)}")
    if precision:                         # evaluate.precision_note: float32 round-off
        lines.append(f"  {precision}")
    lines.append(f"  {case_word}: {describe_case(case)}")
    if confirmed:
        lines.append(f"  expected value confirmed by {' and '.join(confirmed)}")
    lines.append(f"  {replay_line(path, note)}")
    return "\n".join(lines)


def candidate_message(*, spec, case, detail, path, kind, note=None) -> str:
    head = {"raised": "candidate raised", "bad_output": "candidate returned an unusable answer",
            "non_finite": "candidate returned a non-finite value",
            "timeout": "candidate timed out",
            "nondeterministic": "candidate is not deterministic"}[kind]
    word = "case" if kind in ("timeout", "nondeterministic") else "minimal case"
    return "\n".join([f"{head} ({describe_spec(spec)})", f"  {detail}",
                      f"  {word}: {describe_case(case)}", f"  {replay_line(path, note)}"])


def replay_line(path, note=None) -> str:
    if path is None:
        return f"replay: {note}" if note else "replay: not saved"
    return f"replay: hg.replay({str(path)!r}, candidate)"


def element(arr, index):
    return float(np.asarray(arr)[index]) if index is not None else float(arr)
