"""Run a candidate on one case and compare its answers with the hand BPTT.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

A candidate is `candidate(params, xs, ys, h0) -> (loss, grads)`; `grads` is a mapping or an
object with attributes U, W, V (b, c with bias; an optional h0). Arrays may be numpy, PyTorch
(detached here) or anything `np.asarray` understands. Whatever goes wrong inside the candidate
becomes a `Failure` with one readable line, never an exception of the oracle.
"""
from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import NamedTuple, Optional

import numpy as np

from ..bptt import loss_and_grads
from ..tolerances import rel_error, tolerance_for

ORDER = ("loss", "U", "W", "V", "b", "c", "h0")     # the order errors are listed in


class Answer(NamedTuple):
    """A candidate's answers, float64, and the precision it computed in."""

    loss: float
    grads: dict         # name -> array of the parameter's shape; "h0" only when returned
    dtype: np.dtype


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
    rtol: float
    floors: dict        # name -> round-off floor (only computed when some error exceeds rtol)


def expected_answer(case) -> Expected:
    """The hand BPTT's loss and gradients (dh0 included) for `case`."""
    loss, grads, dh0 = loss_and_grads(case.params, case.xs, case.ys, case.spec, h0=case.h0,
                                      wrt_h0=True)
    out = grads.arrays()
    out["h0"] = dh0
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
    h0 = None if case.h0 is None else case.h0.copy()
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
    names = [n for n, p in case.params._asdict().items() if p is not None]
    if isinstance(raw_grads, Mapping):
        unknown = sorted(str(k) for k in raw_grads if k not in (*names, "h0"))
        if unknown:
            return Failure("bad_output", f"grads has unexpected key(s) {unknown}; expected "
                           f"{', '.join(names)} (and optionally h0)")
        given = {k: v for k, v in raw_grads.items() if v is not None}
    else:
        given = {n: getattr(raw_grads, n) for n in (*names, "h0")
                 if getattr(raw_grads, n, None) is not None}
        if not given:
            return Failure("bad_output", "grads must be a mapping or have attributes "
                           f"{', '.join(names)}, got {type(raw_grads).__name__}")
    missing = [n for n in names if n not in given]
    if missing:
        return Failure("bad_output", f"grads is missing {', '.join(missing)}")
    if not case.spec.bias:
        extra = [n for n in ("b", "c") if n in given]
        if extra:
            return Failure("bad_output", f"grads has {', '.join(extra)} but spec.bias is False")
    shapes = {n: p.shape for n, p in case.params._asdict().items() if p is not None}
    shapes["h0"] = (case.xs.shape[0], case.params.W.shape[0])
    grads, dtypes = {}, []
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
            dtypes.append(arr.dtype)
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
    dtype = min(dtypes, key=lambda d: d.itemsize) if dtypes else np.dtype(np.float64)
    return Answer(loss, grads, dtype)


def compare(answer: Answer, expected: Expected, rtol: Optional[float] = None,
            case=None) -> Comparison:
    """Normwise relative error of the loss and every returned gradient.

    A quantity fails when its error exceeds rtol (default: the tolerance of the candidate's
    dtype) and, when `case` is given, its largest difference also exceeds what round-off in the
    candidate's dtype can produce on this case (`conditioning.roundoff_floor`)."""
    tol = tolerance_for(answer.dtype) if rtol is None else float(rtol)
    errors = {"loss": rel_error(answer.loss, expected.loss)}
    for n in ORDER[1:]:
        if n in answer.grads:
            errors[n] = rel_error(answer.grads[n], expected.grads[n])
    failing = tuple(n for n, e in errors.items() if not e <= tol)
    floors = {}
    if failing and case is not None:
        from .conditioning import roundoff_floor
        floors = roundoff_floor(case, answer.dtype)
        failing = tuple(n for n in failing if n == "loss" or not
                        np.max(np.abs(answer.grads[n] - expected.grads[n])) <= floors[n])
    return Comparison(errors, failing, tol, floors)


def primary(failing) -> str:
    """Which failing quantity to report first: the loss (the forward pass is wrong), else the
    first failing weight gradient in the order U, W, V, b, c, else h0."""
    for n in ORDER:
        if n in failing:
            return n
    raise ValueError("nothing is failing")


def worst_element(actual, expected) -> tuple:
    """Index of the largest |actual - expected|."""
    diff = np.abs(np.asarray(actual, float) - np.asarray(expected, float))
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
