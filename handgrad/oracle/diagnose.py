"""Name the cause of a mismatch: another convention, a constant factor, an ignored h0.

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs, S output steps
(T for output="all", 1 for "last").

Most wrong gradients people send are right for *another* question: another activation, loss,
reduction or truncation than the spec says, or the problem without its h0; or the right
gradient times a constant (the two PyTorch biases added, a mean taken over the batch only, a
clipped or scaled gradient). On the failing case the oracle computes the exact answer of each
such alternative (hand BPTT, so each costs one small gradient) and says which one the candidate
matches.

The alternatives come from the Spec's allowed values (`handgrad.spec.ACTIVATIONS`, `LOSSES`,
`REDUCTIONS`, `GRU_RESETS`, and every truncation convention that differs on the case's length), so values
added to the Spec are tried without a change here. A value that does not apply to the case
(a loss whose targets have another type, a field a cell does not allow) is skipped.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import NamedTuple, Optional

import numpy as np

from .. import spec as spec_module
from ..losses import loss_count
from ..spec import Window
from ..tolerances import rel_error
from .evaluate import Answer, Expected, expected_answer

# Spec fields whose alternatives are tried, and the module-level tuple of each one's values
FIELDS = (("activation", "ACTIVATIONS"), ("loss", "LOSSES"), ("reduction", "REDUCTIONS"),
          ("gru_reset", "GRU_RESETS"))      # the GRU's reset before/after the product


class Alternative(NamedTuple):
    """A question the candidate may be answering instead of the spec's."""

    label: str                  # "activation='sigmoid'", "Window(0)", "h0 ignored"
    spec: object
    h0_ignored: bool


class Diagnosis(NamedTuple):
    """What the candidate's answer is, if not the spec's. `lines`: the report's sentences."""

    matches: tuple              # Alternatives whose exact gradients the candidate returns
    loss_matches: tuple         # of those, the ones whose loss it returns too
    factors: dict               # name -> constant factor actual / expected (only real factors)
    lines: tuple
    case: object = None         # the case it was made on


def _hidden_and_outputs(case) -> tuple:
    """(H, O) of a case: H from the recurrent weights (W, or a gated cell's W_hh (G H, H)), O
    from float targets (one per output) or from V (class ids)."""
    W = getattr(case.params, "W", None)
    H = (W if W is not None else case.params.W_hh).shape[1]
    ys = np.asarray(case.ys)
    O = ys.shape[-1] if ys.dtype.kind == "f" else case.params.V.shape[0]
    return H, O


def larger_case(case):
    """A case a little larger than `case` (same spec, scale and h0 or not): a minimal case can
    be too small to tell alternatives apart (at B = T = O = 1, a mean is a sum)."""
    from ..strategies import make_case

    B, T, D = case.xs.shape
    H, O = _hidden_and_outputs(case)
    return make_case(case.spec, max(B, 3), max(T + 2, 5), max(D, 2), max(H, 3), max(O, 2),
                     scale=getattr(case, "scale", None) or "moderate", seed=1,
                     with_h0=case.h0 is not None)


def _expected(case, spec, h0_ignored: bool) -> Optional[Expected]:
    """The exact answer of `case` under `spec` (h0 = 0 if `h0_ignored`), or None if `spec`
    does not apply to the case's arrays."""
    try:
        return expected_answer(case._replace(spec=spec, h0=None if h0_ignored else case.h0))
    except (ValueError, TypeError):
        return None


def alternatives(case, truncations=None, combine: bool = False) -> list[Alternative]:
    """Every single change to the question: one Spec field to another allowed value, another
    truncation (the simplest name of each distinct convention at the case's T: `truncations`,
    default `identify.conventions`), or h0 ignored (when the case has a nonzero h0).
    `combine=True` also tries each field's values with each truncation (for `identify`, whose
    truncation is unknown)."""
    from .identify import conventions

    spec = case.spec
    if truncations is None:
        T = case.xs.shape[1]
        truncations = [name for name, _ in conventions(T, spec.output)]
    out = []
    for field, values in FIELDS:
        for value in getattr(spec_module, values, ()):
            if value == getattr(spec, field):
                continue
            try:
                other = dataclasses.replace(spec, **{field: value})
            except (ValueError, TypeError):
                continue
            out.append(Alternative(f"{field}={value!r}", other, False))
            if combine:
                out.extend(Alternative(f"{field}={value!r} with {_name(tr)}",
                                       dataclasses.replace(other, truncation=tr), False)
                           for tr in truncations if tr != spec.truncation)
    for tr in truncations:
        if tr != spec.truncation:
            out.append(Alternative(_name(tr), dataclasses.replace(spec, truncation=tr), False))
    if case.h0 is not None and np.any(case.h0 != 0):
        out.append(Alternative("h0 = 0 (h0 ignored)", spec, True))
        if combine:
            out.extend(Alternative(f"h0 = 0 (h0 ignored) with {_name(tr)}",
                                   dataclasses.replace(spec, truncation=tr), True)
                       for tr in truncations if tr != spec.truncation)
    return out


def _name(truncation) -> str:
    return "full BPTT" if truncation is None else repr(truncation)


def _matches(answer: Answer, expected: Expected, rtol: float) -> tuple[bool, bool]:
    """(every returned gradient matches, the loss matches too)."""
    grads = all(rel_error(g, expected.grads[n]) <= rtol for n, g in answer.grads.items())
    return grads, rel_error(answer.loss, expected.loss) <= rtol


def constant_factor(actual, expected, rtol: float) -> Optional[float]:
    """f when actual = f * expected within rtol (normwise) and f is not 1; else None."""
    a, e = np.ravel(np.asarray(actual, float)), np.ravel(np.asarray(expected, float))
    ee = float(e @ e)
    if ee == 0.0:
        return None
    f = float(a @ e) / ee
    if abs(f - 1.0) <= rtol or f == 0.0 or not rel_error(a, f * e) <= rtol:
        return None
    return f


def common_factor(answer: Answer, expected: Expected, rtol: float) -> Optional[float]:
    """f when every returned weight gradient is f times the expected one (those exactly zero
    excepted; at least two nonzero) and dh0, if returned, is either right or scaled alike (a
    clipped gradient leaves dh0 alone); else None."""
    names = [n for n in answer.grads if n != "h0" and np.any(expected.grads[n] != 0)]
    if len(names) < 2 or any(np.any(answer.grads[n] != 0) for n in answer.grads
                             if n != "h0" and n not in names):
        return None
    a = np.concatenate([np.ravel(answer.grads[n]) for n in names])
    e = np.concatenate([np.ravel(expected.grads[n]) for n in names])
    f = constant_factor(a, e, rtol)
    if f is None or any(not rel_error(answer.grads[n], f * expected.grads[n]) <= rtol
                        for n in names):
        return None
    if "h0" in answer.grads and not any(
            rel_error(answer.grads["h0"], k * expected.grads["h0"]) <= rtol for k in (1.0, f)):
        return None
    return f


def _nice(f: float) -> bool:
    """f is p/q with small p, q (a count, a half): a factor worth naming even on one element."""
    r = Fraction(f).limit_denominator(8)
    return r.numerator != 0 and abs(r.numerator) <= 64 and abs(float(r) - f) <= 1e-9 * abs(f)


def _fraction(f: float) -> str:
    """2.0 -> '2.00x', 0.25 -> '1/4 (0.25x)'."""
    if abs(f) < 1:
        inverse = Fraction(1 / f).limit_denominator(1)
        if abs(float(inverse) - 1 / f) <= 1e-9 * abs(1 / f):
            return f"{'-' if f < 0 else ''}1/{abs(int(inverse))} ({f:.3g}x)"
    return f"{f:.3g}x" if abs(f) < 1 else f"{f:.2f}x" if abs(f) < 100 else f"{f:.4g}x"


def _close(f: float, ratio: float) -> bool:
    return abs(f - ratio) <= 1e-6 * abs(ratio)


def factor_causes(f: float, case, names, common: bool, loss_factor: Optional[float],
                  loss_right: bool) -> list[str]:
    """What usually makes gradients `f` times the right ones, given the case's sizes. `names`:
    the gradients that carry the factor (`common`: all of them); `loss_factor`: the loss's own
    factor when it is the same (None otherwise); `loss_right`: the loss is right."""
    spec = case.spec
    B, T = case.xs.shape[:2]
    S = T if spec.output == "all" else 1
    O = _hidden_and_outputs(case)[1]
    shape = (S, B, O)
    causes = []
    if set(names) == {"b"} and _close(f, 2.0):
        causes.append("PyTorch's two hidden biases: the gradients of bias_ih and bias_hh were "
                      "added, but b = bias_ih + bias_hh, so each one's gradient alone is db")
    if not common:
        if not causes:
            causes.append(f"only d{', d'.join(names)} carries it: look at how that gradient "
                          "alone is accumulated or scaled")
        return causes
    mine = loss_count(spec.loss, spec.reduction, shape)
    for other in getattr(spec_module, "REDUCTIONS", ()):
        if other == spec.reduction:
            continue
        try:
            theirs = loss_count(spec.loss, other, shape)
        except (ValueError, KeyError, TypeError):
            continue
        if _close(f, mine / theirs):
            causes.append(f"mean vs sum: the gradient of reduction={other!r}, which divides by "
                          f"{theirs}, where the spec's {spec.reduction!r} divides by {mine}")
    if B > 1 and _close(f, mine / B) and not any(c.startswith("mean vs sum") for c in causes):
        causes.append(f"a mean over the batch only: divided by B={B} (loss.sum() / B, sum over "
                      f"time, mean over the batch) where the spec's {spec.reduction!r} divides "
                      f"by {mine}")
    halves = {"half_squared": 0.5, "squared": 1.0}
    if spec.loss in halves:
        for other, k in halves.items():
            if other != spec.loss and _close(f, k / halves[spec.loss]):
                causes.append(f"the derivative of loss={other!r} "
                              f"({'no ' if k == 1.0 else ''}1/2 in front of the squared error)")
    if loss_right and not causes:
        causes.append("the loss is right, so the gradient was scaled after it was computed: "
                      "gradient clipping (by global norm), a learning rate or a loss scale "
                      "folded into it")
    elif loss_factor is not None and not causes:
        causes.append("the loss is scaled the same way: a weight or a count in the loss")
    return causes


def diagnose(case, answer: Answer, expected: Expected, rtol: float,
             truncations=None, combine: bool = False) -> Diagnosis:
    """Which alternative question the candidate's answer on `case` matches, and which of its
    gradients are a constant times the right one."""
    matches, loss_matches = [], []
    for alt in alternatives(case, truncations, combine):
        exp = _expected(case, alt.spec, alt.h0_ignored)
        if exp is None:
            continue
        grads_ok, loss_ok = _matches(answer, exp, rtol)
        if grads_ok:
            matches.append(alt)
            if loss_ok:
                loss_matches.append(alt)
    factors = {}
    common = common_factor(answer, expected, rtol)
    if common is not None:
        factors = {n: common for n in answer.grads if np.any(expected.grads[n] != 0)
                   and rel_error(answer.grads[n], expected.grads[n]) > rtol}
    elif not matches:            # one gradient scaled alone: named only when credible
        for n, g in answer.grads.items():
            f = constant_factor(g, expected.grads[n], rtol)
            if f is not None and (np.count_nonzero(expected.grads[n]) > 1 or _nice(f)):
                factors[n] = f
    loss_factor = constant_factor(answer.loss, expected.loss, rtol)
    lines = _alternative_lines(case, matches, loss_matches, answer, expected, rtol,
                               hint=not combine)
    lines += _factor_lines(case, factors, common is not None, loss_factor, answer, expected,
                           rtol)
    return Diagnosis(tuple(matches), tuple(loss_matches), factors, tuple(lines), case)


def _alternative_lines(case, matches, loss_matches, answer, expected, rtol,
                       hint: bool = True) -> list[str]:
    if not matches:
        return []
    loss_right = rel_error(answer.loss, expected.loss) <= rtol
    names = ", ".join(a.label for a in matches)
    if len(matches) > 1:
        head = (f"diagnosis: the gradients are exactly those of any of {names} (this case is "
                "too small to tell them apart)")
    else:
        alt = matches[0]
        whose = ("the loss is the spec's" if loss_right else
                 "the loss is theirs too" if alt in loss_matches else "the loss is neither's")
        head = f"diagnosis: the gradients are exactly those of {alt.label} ({whose})"
    lines = [head]
    for alt in matches:
        why = _why(alt, case.spec, hint)
        if why:
            lines.append(f"  {alt.label}: {why}")
    return lines


def _why(alt: Alternative, spec, hint: bool = True) -> str:
    """One sentence per way `alt` differs from the spec."""
    parts = []
    for field, _ in FIELDS:
        mine, theirs = getattr(spec, field), getattr(alt.spec, field)
        if mine != theirs:
            parts.append(f"the spec says {field}={mine!r}: check the candidate's {field}, or "
                         "the spec you gave the oracle")
    if alt.h0_ignored:
        parts.append("the candidate ignores h0 and starts from zeros; if it always does, check "
                     "it with h0=False (and document that it takes no initial state)")
    tr = alt.spec.truncation
    if tr != spec.truncation:
        asked = _name(spec.truncation)
        if isinstance(tr, Window) and tr.k == 0 and spec.output == "last":
            parts.append("the carry is dropped: only the last step gets a gradient, nothing is "
                         "carried back from it to earlier steps (dh_next never applied); the spec "
                         f"asks for {asked}")
        elif isinstance(tr, Window) and tr.k == 0:
            parts.append("the carry is dropped: each step sees only its own loss term, not the "
                         f"gradient carried back from step t+1 (dh_next); the spec asks for {asked}")
        else:
            parts.append(f"a truncated gradient ({_name(tr)}) where the spec asks for {asked}"
                         + ("; hg.identify names the convention on longer sequences"
                            if hint else ""))
    return "; ".join(parts)


def _factor_lines(case, factors, common: bool, loss_factor, answer, expected,
                  rtol) -> list[str]:
    if not factors:
        return []
    loss_right = rel_error(answer.loss, expected.loss) <= rtol
    lines = []
    h0_right = "h0" in answer.grads and "h0" not in factors
    every = "every weight gradient" if h0_right else "every gradient"
    for n, f in ({every: next(iter(factors.values()))} if common
                 else {f"d{n}": f for n, f in factors.items()}).items():
        scaled_loss = loss_factor is not None and _close(loss_factor, f)
        text = f"factor: {n} is {_fraction(f)} the expected one"
        text += (", and so is the loss" if scaled_loss else
                 " (the loss is right)" if loss_right else "")
        if common and h0_right:
            text += "; dh0 is right"
        if not common:
            right = [m for m in answer.grads if m != n[1:]
                     and rel_error(answer.grads[m], expected.grads[m]) <= rtol]
            if right:
                text += f"; d{', d'.join(right)} {'is' if len(right) == 1 else 'are'} right"
        lines.append(text)
        names = list(factors) if common else [n[1:]]
        for cause in factor_causes(f, case, names, common, loss_factor if scaled_loss else None,
                                   loss_right):
            lines.append(f"  usually: {cause}")
    return lines
