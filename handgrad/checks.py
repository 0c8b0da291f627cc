"""Cross-checks of the hand-derived gradient: the functions behind `handgrad check` and the tests.

Every method answers the same question for one case (a `handgrad.strategies.Case`): the loss and
the (truncated) gradient of every parameter, of h0 (and c0, the LSTM's initial cell state) and of
the inputs xs. `errors` compares two answers with the
project's one metric (`tolerances.rel_error`, normwise relative error per array); `agreement`
puts one method against the hand BPTT and says whether it is within `TOLERANCES[method]`.

What is judged. JAX and the complex step are judged per array (the loss, U, W, V, b, c, h0 each
within tolerance): both carry a relative error of a few ulps on every element, however small the
array. Central differences are judged on the whole gradient vector (all arrays and h0 together):
their error is absolute, about u |f| / e + e^2 |f'''| with e the step, so an array whose
gradient is tiny (dh0 after several contracting steps, ~1e-10) is below their noise floor and a
per-array ratio would be noise over noise. Normalised by the whole gradient the bound holds, plus
the round-off term u |f| / e itself (`numdiff.central_roundoff`), which matters only where the
whole gradient is tiny next to the loss (saturated units).

Methods:
  "hand"          handgrad.loss_and_grads (what is being proven)
  "jax"           reference.loss_and_grads, JAX autodiff (imported lazily; None if jax is missing)
  "complex_step"  handgrad.numerical_grads(method="complex"), per element
  "central"       handgrad.numerical_grads(method="central"), per element

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.
"""
from __future__ import annotations

import importlib.util
from typing import Callable, NamedTuple, Optional

import numpy as np

from .bptt import loss_and_grads
from .numdiff import COMPLEX_RESOLUTION, central_roundoff, numerical_grads
from .params import Params
from .tolerances import TOLERANCES, rel_error

METHODS = ("jax", "complex_step", "central")
JUDGED = {"jax": "per array", "complex_step": "per array", "central": "all"}


class Answer(NamedTuple):
    """One method's answer for one case. `loss` is None for the numerical methods (they
    differentiate the hand forward pass, whose value is the hand loss)."""

    loss: Optional[float]
    grads: Params           # Params or GatedParams, shapes of the parameters (None where absent)
    dh0: object             # (B, H); the pair (dh_0, dc_0) for the LSTM
    dxs: np.ndarray         # (B, T, D)

    def arrays(self) -> dict:
        """Every gradient array by name: the parameters', then h0 (and c0 for the LSTM), xs."""
        out = self.grads.arrays()
        if isinstance(self.dh0, tuple):
            out["h0"], out["c0"] = self.dh0
        else:
            out["h0"] = self.dh0
        out["xs"] = self.dxs
        return out


class Agreement(NamedTuple):
    """A method against the hand gradient: per-array errors, the worst, and the verdict."""

    method: str
    errors: dict            # name ("loss", "U", ..., "h0") -> normwise relative error
    worst_name: str
    worst: float            # the worst error of the arrays judged by `tolerance`
    tolerance: float
    floored: tuple = ()     # arrays beyond `tolerance` but within float64's round-off floor

    @property
    def ok(self) -> bool:
        return self.worst <= self.tolerance


def jax_available() -> bool:
    """Whether the JAX reference can be used (jax is installed)."""
    return importlib.util.find_spec("jax") is not None


def _call(fn: Callable, case) -> Answer:
    return Answer(*fn(case.params, case.xs, case.ys, case.spec, h0=case.h0, wrt_h0=True,
                      wrt_xs=True))


def hand(case, implementation: Callable = loss_and_grads) -> Answer:
    """The hand BPTT's answer (`implementation` lets the mutation tests swap in a mutant)."""
    return _call(implementation, case)


def by_method(case, method: str) -> Answer:
    """The answer of an independent method: "jax", "complex_step" or "central"."""
    if method == "jax":
        import reference   # lazily: `import handgrad` never imports jax
        return _call(reference.loss_and_grads, case)
    if method in ("complex_step", "central"):
        grads, dh0, dxs = numerical_grads(
            case.params, case.xs, case.ys, case.spec, h0=case.h0, wrt_xs=True,
            method="complex" if method == "complex_step" else "central")
        return Answer(None, grads, dh0, dxs)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def complex_step_resolves(answer: Answer) -> bool:
    """Whether every array of `answer` (the hand BPTT's) has an element large enough for the
    complex step to resolve (`numdiff.COMPLEX_RESOLUTION`): a case whose whole array of
    gradients lies in the underflow range (values of 1e-299 behind a saturated softmax, say)
    is beyond the method, not a disagreement."""
    return all(not np.any(g) or float(np.max(np.abs(g))) >= COMPLEX_RESOLUTION
               for g in answer.arrays().values())


def flat(answer: Answer) -> np.ndarray:
    """Every gradient array (parameters, h0, xs) as one vector."""
    return np.concatenate([g.ravel() for g in answer.arrays().values()])


def errors(actual: Answer, expected: Answer) -> dict:
    """Normwise relative error of the loss and of every gradient array, by name ("U", ...,
    "h0", "c0", "xs"), and of the whole gradient vector ("all")."""
    out = {}
    if actual.loss is not None and expected.loss is not None:
        out["loss"] = rel_error(actual.loss, expected.loss)
    got, want = actual.arrays(), expected.arrays()
    if set(got) != set(want):
        raise ValueError(f"the answers hold different arrays: {sorted(got)} and {sorted(want)}")
    for name in want:
        out[name] = rel_error(got[name], want[name])
    out["all"] = rel_error(flat(actual), flat(expected))
    return out


def agreement(case, method: str, actual: Optional[Answer] = None) -> Agreement:
    """Compare the hand answer (or `actual`) with `method` on `case`, against TOLERANCES[method]."""
    actual = hand(case) if actual is None else actual
    other = by_method(case, method)
    errs = errors(actual, other)
    judged = ({"all": errs["all"]} if JUDGED[method] == "all"
              else {k: v for k, v in errs.items() if k != "all"})
    tolerance = TOLERANCES[method]
    floored = ()
    if method == "central":          # plus what rounding the loss explains (tolerances.py)
        scale = float(np.max(np.abs(flat(actual)), initial=0.0))
        loss = actual.loss if actual.loss is not None else hand(case).loss
        tolerance += central_roundoff(loss) / scale if scale > 0 else 0.0
    elif any(not v <= tolerance for v in judged.values()):
        floored = within_roundoff(case, actual, other, [k for k, v in judged.items()
                                                        if not v <= tolerance])
        judged = {k: v for k, v in judged.items() if k not in floored} or {"none": 0.0}
        errs = {**errs, "none": 0.0} if "none" in judged else errs
    worst_name = max(judged, key=judged.get)
    return Agreement(method, errs, worst_name, errs[worst_name], tolerance, floored)


def within_roundoff(case, a: Answer, b: Answer, names) -> tuple:
    """The arrays among `names` whose largest difference between two float64 answers lies
    within the round-off floor of the case (the oracle's error model, handgrad.tolerances): an
    ill-conditioned array (a sum whose terms cancel, a gradient behind saturated units) differs
    by round-off alone beyond a relative bound. For well-conditioned arrays the floor is far
    below the relative tolerances, so this changes nothing there."""
    from .oracle.conditioning import roundoff_floor
    floor = roundoff_floor(case, np.float64)
    got, want = a.arrays(), b.arrays()
    if a.loss is not None and b.loss is not None:
        got["loss"], want["loss"] = np.asarray(a.loss), np.asarray(b.loss)
    return tuple(n for n in names if n in floor and
                 float(np.max(np.abs(got[n] - want[n]), initial=0.0)) <= floor[n])


def describe(agr: Agreement) -> str:
    """A one-line label for an assertion message: which method, which array, how far off."""
    detail = ", ".join(f"{k} {v:.1e}" for k, v in agr.errors.items() if k != "none")
    floored = (f"; within float64's round-off floor: {', '.join(agr.floored)}"
               if agr.floored else "")
    return (f"hand vs {agr.method}: worst {agr.worst_name} rel error {agr.worst:.2e} "
            f"(tolerance {agr.tolerance:.0e}); all: {detail}{floored}")


# --- `handgrad check`: a fixed tour of the family ------------------------------------------

CHECK_SIZES = dict(B=2, T=7, D=3, H=4, O=3)   # one shape for every spec: JAX compiles once


def check_specs():
    """(spec, weight scale, h0 given) covering every cell, activation, reset convention, bias,
    head, output, loss, reduction and truncation kind, each weight scale, with and without h0."""
    from .spec import TBPTT, Chunks, Spec, Window
    S = Spec
    return [
        (S.tutorial(), "tutorial", False),
        (S("sigmoid", False, "last", "half_squared", "sum", Window(5)), "moderate", True),
        (S("tanh", True, "all", "half_squared", "sum", None), "moderate", False),
        (S("tanh", True, "all", "squared", "mean", Window(2)), "saturating", True),
        (S("sigmoid", True, "all", "cross_entropy", "mean", Chunks(3)), "moderate", True),
        (S("tanh", False, "last", "cross_entropy", "sum", TBPTT(2, 4)), "small", False),
        (S("sigmoid", True, "last", "squared", "sum", None), "saturating", True),
        (S("tanh", False, "all", "cross_entropy", "sum", Window(0)), "tutorial", True),
        (S("sigmoid", False, "all", "half_squared", "mean", TBPTT(3, 5)), "small", True),
        (S("tanh", True, "last", "half_squared", "mean", Chunks(2)), "moderate", False),
        (S("sigmoid", True, "all", "squared", "sum", Window(4)), "tutorial", False),
        (S("tanh", True, "all", "cross_entropy", "mean", TBPTT(1, 3)), "saturating", False),
        (S("relu", True, "all", "half_squared", "batch_mean", Chunks(3)), "moderate", True),
        (S("identity", False, "last", "squared", "sum", Window(2)), "small", True),
        (S("tanh", True, "all", "linear", "sum", None, head=False), "moderate", True),
        (S("relu", False, "all", "linear", "batch_mean", Window(1), head=False), "moderate", False),
        (S(cell="gru", truncation=Chunks(3)), "moderate", True),
        (S(cell="gru", gru_reset="before", output="last", reduction="mean"), "saturating", True),
        (S(cell="lstm", loss="cross_entropy", truncation=TBPTT(2, 4)), "moderate", True),
        (S(cell="lstm", head=False, loss="linear", bias=False, truncation=Window(3)), "small",
         False),
    ]


class CheckRow(NamedTuple):
    """One spec of `handgrad check`: its case and one Agreement per method run."""

    case: object            # strategies.Case
    agreements: dict        # method -> Agreement

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.agreements.values())


def run_check(seed: int = 0, methods=METHODS, specs=None) -> list:
    """Hand gradients against each of `methods` on every spec of `check_specs()` (or `specs`).

    Returns a list of CheckRow. Drop "jax" from `methods` when jax is not installed.
    """
    from .strategies import make_case
    rows = []
    for i, (spec, scale, with_h0) in enumerate(check_specs() if specs is None else specs):
        case = make_case(spec, **CHECK_SIZES, scale=scale, seed=seed * 1000 + i, with_h0=with_h0)
        answer = hand(case)
        rows.append(CheckRow(case, {m: agreement(case, m, answer) for m in methods}))
    return rows
