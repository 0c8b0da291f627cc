"""Run a candidate on one case and compare its answers with the hand BPTT.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

A candidate is `candidate(params, xs, ys, h0) -> (loss, grads)`; `grads` is a mapping or an
object with attributes named as the parameters (U, W, V, b, c; W_ih, W_hh, b_ih, b_hh, V, c for
the gated cells), every one of them required, plus optional h0 (for the LSTM the pair
(dh_0, dc_0), or h0 and c0 apart) and xs (dL/dxs, (B, T, D)). Arrays may be numpy, PyTorch
(detached here) or anything `np.asarray` understands. Whatever goes wrong inside the candidate
becomes a `Failure` with one readable line, never an exception of the oracle.
"""
from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import NamedTuple, Optional

import numpy as np

from ..bptt import loss_and_grads
from ..params import tree_map
from ..tolerances import TOLERANCES, rel_error, tolerance_for
from .conditioning import dtype_of, roundoff_floor

# the order errors are listed in (and the first failing one reported): the loss, the weights,
# the biases, the initial state and the inputs
ORDER = ("loss", "U", "W", "W_ih", "W_hh", "V", "b", "b_ih", "b_hh", "c", "h0", "c0", "xs")
OPTIONAL = ("h0", "c0", "xs")                        # checked when the candidate returns them


class Answer(NamedTuple):
    """A candidate's answers, float64, and the precisions they were returned in."""

    loss: float
    grads: dict         # name -> array of the parameter's shape; "h0" only when returned
    dtype: np.dtype     # the lowest precision returned (what the report shows)
    dtypes: Optional[dict] = None   # "loss", U, ... -> the dtype that answer is judged in
                                    # (None: every answer in `dtype`)

    def dtype_of(self, name: str) -> np.dtype:
        """The precision answer `name` is judged in (its returned dtype)."""
        return (self.dtypes or {}).get(name, self.dtype)


class Expected(NamedTuple):
    """The hand BPTT's answers: loss and every gradient, "h0" included."""

    loss: float
    grads: dict


class Failure(NamedTuple):
    """The candidate could not be compared: it raised, or returned something unusable."""

    kind: str           # "raised" | "bad_output" | "non_finite"
    detail: str         # one line
    param: Optional[str] = None
    index: Optional[tuple] = None


class Comparison(NamedTuple):
    errors: dict        # name -> normwise relative error, in ORDER
    failing: tuple      # names whose error exceeds rtol and the round-off floor
    rtol: float         # the first failing answer's rtol (else the loosest one used)
    floors: dict        # name -> round-off floor (only computed when some error exceeds rtol)
    rtols: Optional[dict] = None    # name -> the rtol it was judged by (its dtype's, or rtol=)
    note: Optional[str] = None      # a sentence on precision for the report, or None
    unjudged: tuple = ()            # names above rtol whose round-off floor is unbounded (inf):
                                    # the case is too ill-conditioned to judge them


def expected_answer(case) -> Expected:
    """The hand BPTT's loss and gradients (of h0, c0 and xs included) for `case`."""
    loss, grads, dh0, dxs = loss_and_grads(case.params, case.xs, case.ys, case.spec, h0=case.h0,
                                           wrt_h0=True, wrt_xs=True)
    out = grads.arrays()
    out.update(zip(("h0", "c0"), dh0) if isinstance(dh0, tuple) else [("h0", dh0)])
    out["xs"] = dxs
    return Expected(float(loss), out)


def _as_numpy(value) -> np.ndarray:
    """numpy view of a numpy / PyTorch / JAX array or a number."""
    if hasattr(value, "detach") and callable(value.detach):      # torch.Tensor
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        value = value.numpy()
    return np.asarray(value)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {f.filename}:{f.lineno})"


def call_candidate(candidate, case):
    """Run the candidate on copies of the case's arrays. Returns an Answer or a Failure."""
    params = case.params._replace(**{k: v.copy() for k, v in case.params.arrays().items()})
    h0 = tree_map(np.copy, case.h0)
    try:
        out = candidate(params, case.xs.copy(), case.ys.copy(), h0)
    except Exception as exc:  # noqa: BLE001 - a candidate's crash is a finding, not our crash
        msg = str(exc).splitlines()[0] if str(exc) else ""
        return Failure("raised", f"the candidate raised {type(exc).__name__}: {msg}{_where(exc)}")
    return normalize(out, case)


def normalize(out, case):
    """(loss, grads) as the candidate returned them -> Answer, or a Failure saying what is wrong."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return Failure("bad_output", "the candidate must return (loss, grads), "
                       f"got {type(out).__name__}")
    raw_loss, raw_grads = out
    names = list(case.params.arrays())
    states = ("h0", "c0") if case.spec.cell == "lstm" else ("h0",)
    optional = (*states, "xs")
    absent = [n for n in type(case.params)._fields if n not in names]   # None for this spec
    if isinstance(raw_grads, Mapping):
        unknown = sorted(str(k) for k in raw_grads if k not in (*names, *optional, *absent))
        if unknown:
            return Failure("bad_output", f"grads has unexpected key(s) {unknown}; expected "
                           f"{', '.join(names)} (and optionally {', '.join(optional)})")
        given = {k: v for k, v in raw_grads.items() if v is not None}
    else:
        given = {n: getattr(raw_grads, n) for n in (*names, *optional, *absent)
                 if getattr(raw_grads, n, None) is not None}
        if not given:
            return Failure("bad_output", "grads must be a mapping or have attributes "
                           f"{', '.join(names)}, got {type(raw_grads).__name__}")
    if case.spec.cell == "lstm" and isinstance(given.get("h0"), (tuple, list)):
        if len(given["h0"]) != 2 or "c0" in given:
            return Failure("bad_output", "grads['h0'] of an LSTM is the pair (dh_0, dc_0) "
                           "(or give h0 and c0 apart)", "h0")
        pair = given.pop("h0")
        given.update({n: v for n, v in zip(states, pair) if v is not None})
    missing = [n for n in names if n not in given]
    if missing:
        return Failure("bad_output", f"grads is missing {', '.join(missing)}")
    extra = [n for n in absent if n in given]
    if extra:
        return Failure("bad_output", f"grads has {', '.join(extra)} but the spec has none "
                       f"(bias={case.spec.bias}, head={case.spec.head})")
    shapes = {n: p.shape for n, p in case.params.arrays().items()}
    B, T, D = case.xs.shape
    shapes.update({n: (B, case.params.sizes[1]) for n in states}, xs=(B, T, D))
    grads, dtypes, floats = {}, {}, []
    for n in ORDER[1:]:
        if n not in given:
            continue
        try:
            arr = _as_numpy(given[n])
        except Exception as exc:  # noqa: BLE001
            return Failure("bad_output", f"grads[{n!r}] is not an array ({type(exc).__name__})")
        if arr.dtype.kind not in "fiu":
            return Failure("bad_output", f"grads[{n!r}] must be a real float array, got dtype "
                           f"{arr.dtype}", n)
        if arr.shape != shapes[n]:
            return Failure("bad_output", f"grads[{n!r}] has shape {arr.shape}, expected "
                           f"{shapes[n]}", n)
        if not np.all(np.isfinite(arr)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            return Failure("non_finite", f"grads[{n!r}] is {arr[bad]} at index {bad}", n, bad)
        if arr.dtype.kind == "f":
            floats.append(arr.dtype)
        dtypes[n] = dtype_of(arr.dtype)           # integers are judged as float64
        grads[n] = arr.astype(np.float64)
    try:
        loss_arr = _as_numpy(raw_loss)
    except Exception as exc:  # noqa: BLE001
        return Failure("bad_output", f"loss is not a number ({type(exc).__name__})")
    if loss_arr.size != 1 or loss_arr.dtype.kind not in "fiu":
        return Failure("bad_output", f"loss must be one real number, got dtype {loss_arr.dtype} "
                       f"shape {loss_arr.shape}")
    loss = float(loss_arr.reshape(()))
    if not np.isfinite(loss):
        return Failure("non_finite", f"loss is {loss}", "loss", ())
    dtype = min(floats, key=lambda d: d.itemsize) if floats else np.dtype(np.float64)
    # a loss without a dtype (a Python number, e.g. loss.item()) is judged with the gradients
    dtypes["loss"] = dtype_of(loss_arr.dtype) if hasattr(raw_loss, "dtype") else dtype
    return Answer(loss, grads, dtype, dtypes)


def compare(answer: Answer, expected: Expected, rtol: Optional[float] = None,
            case=None) -> Comparison:
    """Normwise relative error of the loss and every returned gradient.

    Each answer is judged in its own returned dtype (`Answer.dtype_of`): it fails when its error
    exceeds rtol (default: `tolerance_for` its dtype) and, when `case` is given, its largest
    difference also exceeds what round-off in that dtype can produce on this case
    (`conditioning.roundoff_floor`, the error model of `handgrad.tolerances`). Where that
    floor is unbounded (inf), an answer above rtol is listed in `unjudged`, not passed."""
    errors = {"loss": rel_error(answer.loss, expected.loss)}
    for n in ORDER[1:]:
        if n in answer.grads:
            errors[n] = rel_error(answer.grads[n], expected.grads[n])
    rtols = {n: tolerance_for(answer.dtype_of(n)) if rtol is None else float(rtol)
             for n in errors}
    failing = tuple(n for n, e in errors.items() if not e <= rtols[n])
    floors, note, unjudged = {}, None, ()
    if failing and case is not None:
        by_dtype = {}
        for n in failing:
            d = answer.dtype_of(n)
            if d not in by_dtype:
                by_dtype[d] = roundoff_floor(case, d)
            floors[n] = by_dtype[d][n]
        # an unbounded floor (the model cannot bound this case) neither passes nor fails
        unjudged = tuple(n for n in failing if floors[n] == np.inf)
        failing = tuple(n for n in failing
                        if n not in unjudged and not _diff(answer, expected, n) <= floors[n])
        if failing:
            note = precision_note(answer, expected, failing, case)
    used = rtols[primary(failing)] if failing else max(rtols.values())
    return Comparison(errors, failing, used, floors, rtols, note, unjudged)


def _diff(answer: Answer, expected: Expected, name: str) -> float:
    """max |actual - expected| of one answer."""
    if name == "loss":
        return abs(answer.loss - expected.loss)
    return float(np.max(np.abs(answer.grads[name] - expected.grads[name]), initial=0.0))


def _scale(expected: Expected, name: str) -> float:
    if name == "loss":
        return abs(expected.loss)
    return float(np.max(np.abs(expected.grads[name]), initial=0.0))


def precision_note(answer: Answer, expected: Expected, failing, case) -> Optional[str]:
    """The report's sentence when every failing answer was returned in float64 (or wider) but
    its error is the size of float32 round-off: within what float32 explains on this case
    (TOLERANCES["float32"] or the float32 round-off floor) and at least 1/16 of a float32 ulp
    of the answer's largest value (smaller errors are no float32 rounding: a logic error, such
    as a wrong factor of 1 + 1e-9, is not blamed on precision). None otherwise."""
    single = np.dtype(np.float32)
    if any(answer.dtype_of(n).itemsize <= single.itemsize for n in failing):
        return None
    floor32 = roundoff_floor(case, single)
    biggest = 0.0
    for n in failing:
        diff, scale = _diff(answer, expected, n), _scale(expected, n)
        if not diff <= max(TOLERANCES["float32"] * scale, floor32[n]):
            return None
        biggest = max(biggest, diff / scale if scale > 0 else np.inf)
    if not biggest >= np.finfo(single).eps / 16:
        return None
    names = ", ".join(failing)
    return (f"precision: the errors of {names} are the size of float32 round-off (within what "
            "float32 arithmetic explains on this case), but returned as float64 they are judged "
            "as float64: the candidate computes in float32 somewhere (an input, a weight, a "
            "constant or an intermediate array in float32?)")


def primary(failing) -> str:
    """Which failing quantity to report first: the loss (the forward pass is wrong), else the
    first failing gradient in `ORDER` (weights, biases, then h0, c0, xs)."""
    for n in ORDER:
        if n in failing:
            return n
    raise ValueError("nothing is failing")


def worst_element(actual, expected) -> tuple:
    """Index of the largest |actual - expected|."""
    diff = np.abs(np.asarray(actual, float) - np.asarray(expected, float))
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
