"""Which time step's contribution to dU (and db) is wrong: the oracle splits U by time step.

(For the gated cells the same is done with W_ih and b_ih, which play U's and b's part.)

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

The weights are shared over time, so a candidate only returns dU = sum_t dL/da_t x_t^T. To see
the terms, the oracle runs the candidate on an *equivalent* problem with D' = T * D (+ T with
bias) inputs: step t's input x_t sits in block t of x'_t (zeros elsewhere) and U' = [U ... U]
repeats U, so U' x'_t = U x_t and every hidden state, output and loss is unchanged. The gradient
of block t of U' is exactly step t's term dL/da_t x_t^T. With bias, b moves into T extra columns
of U' fed by a constant 1 at step t (b' = 0), so column t's gradient is step t's term of db.

This needs nothing from the candidate but that it works for any D. The split is trusted only if
the candidate is consistent with itself: its blocks must add up to the dU it returned on the
original problem (within rtol), and its other gradients must not change.

W's terms dL/da_t h_{t-1}^T cannot be split this way (h_{t-1} is not an input), but they share
dL/da_t with U's terms: when every step of dU is right and dW is wrong, dL/da_t is right and dW is
assembled wrongly from it; when dU is wrong from some step on, so is dL/da_t.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ..params import Params
from ..tolerances import rel_error
from .evaluate import Answer, expected_answer
from .run import run


class StepReport(NamedTuple):
    """Per-step errors of dU (and db) terms; `text` is the sentence for the report."""

    u_errors: Optional[np.ndarray]     # (T,) normwise error of each step's dU term, or None
    b_errors: Optional[np.ndarray]     # (T,) same for db, or None
    wrong_steps: tuple                 # 1-based steps whose term is wrong (U or b)
    worst_step: Optional[int]
    text: str


class _Split(NamedTuple):
    spec: object
    params: object
    xs: np.ndarray
    ys: np.ndarray
    h0: Optional[object]


def input_names(params) -> tuple:
    """The names of the input weights and of the input bias: ("U", "b"), or ("W_ih", "b_ih")."""
    return ("U", "b") if isinstance(params, Params) else ("W_ih", "b_ih")


def split_by_step(case) -> _Split:
    """The equivalent problem with one block of the input weights (and one column for the input
    bias) per time step."""
    B, T, D = case.xs.shape
    w_name, b_name = input_names(case.params)
    W_in, b_in = getattr(case.params, w_name), getattr(case.params, b_name)
    extra = T if b_in is not None else 0
    xs = np.zeros((B, T, T * D + extra))
    for t in range(T):
        xs[:, t, t * D:(t + 1) * D] = case.xs[:, t]      # x_t in block t
        if b_in is not None:
            xs[:, t, T * D + t] = 1.0                    # the bias as a constant input of step t
    blocks = [W_in] * T + ([np.repeat(b_in[:, None], T, axis=1)] if b_in is not None else [])
    params = case.params._replace(**{w_name: np.concatenate(blocks, axis=1),  # (G H, T D + extra)
                                     b_name: None if b_in is None else np.zeros_like(b_in)})
    return _Split(case.spec, params, xs, case.ys, case.h0)


def _ranges(steps) -> str:
    """(1, 2, 3, 5) -> 't=1..3, 5'."""
    if not steps:
        return "none"
    parts, start, prev = [], steps[0], steps[0]
    for s in (*steps[1:], None):
        if s is not None and s == prev + 1:
            prev = s
            continue
        parts.append(f"{start}" if start == prev else f"{start}..{prev}")
        if s is not None:
            start = prev = s
    return "t=" + ", ".join(parts)


def per_step_errors(actual_blocks, expected_blocks, scale, floor=0.0) -> np.ndarray:
    """(T,) max|actual_t - expected_t| / scale for each step's term (normwise, over the whole
    parameter's scale so that tiny terms are not magnified); 0 where the difference is within
    the round-off floor."""
    diff = np.abs(actual_blocks - expected_blocks).reshape(len(actual_blocks), -1).max(axis=1)
    diff = np.where(diff <= floor, 0.0, diff)
    return diff / scale if scale > 0 else np.where(diff > 0, np.inf, 0.0)


def locate_steps(candidate, case, answer: Answer, expected, rtol: float, param: str,
                 floors=None) -> StepReport:
    """Split the candidate's input-weight gradient (and the input bias's) by time step and say
    which steps are wrong."""
    T, D = case.xs.shape[1], case.xs.shape[2]
    w_name, b_name = input_names(case.params)
    split = split_by_step(case)
    got = run(candidate, split)
    if not isinstance(got, Answer):
        return StepReport(None, None, (), None, "time step: could not be told (the candidate "
                          f"fails on the step-split problem with D={split.xs.shape[2]}: {got.detail})")
    want = expected_answer(split)
    U_got, U_want = got.grads[w_name], want.grads[w_name]
    # the candidate must agree with itself: blocks add up to its own gradient, others unchanged
    own_sum = U_got[:, :T * D].reshape(-1, T, D).sum(axis=1)
    consistent = rel_error(own_sum, answer.grads[w_name]) <= rtol
    for n in answer.grads:
        if n not in (w_name, b_name, "xs") and n in got.grads:
            consistent = consistent and rel_error(got.grads[n], answer.grads[n]) <= rtol
    if not consistent:
        return StepReport(None, None, (), None, "time step: could not be told (the candidate's "
                          "gradients change when the input is split by step, so its per-step "
                          "terms cannot be trusted)")
    u_scale = float(np.max(np.abs(expected.grads[w_name]), initial=0.0))
    u_err = per_step_errors(U_got[:, :T * D].reshape(-1, T, D).transpose(1, 0, 2),
                            U_want[:, :T * D].reshape(-1, T, D).transpose(1, 0, 2), u_scale,
                            floors.get(w_name, 0.0) if floors else 0.0)
    b_err = None
    if getattr(case.params, b_name) is not None:
        b_scale = float(np.max(np.abs(expected.grads[b_name]), initial=0.0))
        b_err = per_step_errors(U_got[:, T * D:].T, U_want[:, T * D:].T, b_scale,
                                floors.get(b_name, 0.0) if floors else 0.0)
    worst_err = u_err if b_err is None else np.maximum(u_err, b_err)
    wrong = tuple(int(t) + 1 for t in np.flatnonzero(~(worst_err <= rtol)))
    worst = int(np.argmax(np.nan_to_num(worst_err, nan=np.inf))) + 1 if wrong else None
    names = (w_name, b_name if b_err is not None else None, "W" if w_name == "U" else "W_hh")
    return StepReport(u_err, b_err, wrong, worst, _sentence(param, wrong, worst, T, names))


def _sentence(param: str, wrong: tuple, worst, T: int, names) -> str:
    w_name, b_name, rec = names
    terms = f"d{w_name} and d{b_name} terms" if b_name else f"d{w_name} terms"
    right = tuple(t for t in range(1, T + 1) if t not in wrong)
    if not wrong:
        if param == rec:
            return (f"time step: dL/da_t is right at every step (every step's d{w_name} term "
                    f"matches), so d{rec} is assembled wrongly from dL/da_t and h_{{t-1}} "
                    "(paired with h_t instead of h_{t-1}? transposed?)")
        if param in ("h0", "c0"):
            how = "dh0 = W^T dL/da_1" if w_name == "U" else "through step 1's gates and state"
            return (f"time step: dL/da_t is right at every step (every step's d{w_name} term "
                    f"matches), so d{param} is taken wrongly from dL/da_1 ({how})")
        return f"time step: every step's {terms} match; the error is in how they are summed"
    text = f"time step: the {terms} of {_ranges(wrong)} are wrong (worst at t={worst})"
    if right:
        text += f", those of {_ranges(right)} are right"
    if param not in (w_name, b_name):
        text += f"; dL/da_t is wrong at those steps, and {param}'s gradient with it"
    return text
