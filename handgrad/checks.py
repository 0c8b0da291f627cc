"""Cross-checks of the hand-derived gradient: the functions behind `handgrad check` and the tests.

Every method answers the same question for one case (a `handgrad.strategies.Case`): the loss and
the (truncated) gradient of every parameter and of h0. `errors` compares two answers with the
project's one metric (`tolerances.rel_error`, normwise relative error per array); `agreement`
puts one method against the hand BPTT and says whether it is within `TOLERANCES[method]`.

What is judged. JAX and the complex step are judged per array (the loss, U, W, V, b, c, h0 each
within tolerance): both carry a relative error of a few ulps on every element, however small the
array. Central differences are judged on the whole gradient vector (all arrays and h0 together):
their error is absolute, about u |f| / e + e^2 |f'''| with e the step, so an array whose
gradient is tiny (dh0 after several contracting steps, ~1e-10) is below their noise floor and a
per-array ratio would be noise over noise. Normalised by the whole gradient the bound holds.

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
from .numdiff import numerical_grads
from .params import Params
from .tolerances import TOLERANCES, rel_error

METHODS = ("jax", "complex_step", "central")
NAMES = ("loss", "U", "W", "V", "b", "c", "h0", "all")   # "all": the whole gradient vector
JUDGED = {"jax": "per array", "complex_step": "per array", "central": "all"}


class Answer(NamedTuple):
    """One method's answer for one case. `loss` is None for the numerical methods (they
    differentiate the hand forward pass, whose value is the hand loss)."""

    loss: Optional[float]
    grads: Params           # U (H, D), W (H, H), V (O, H), b (H,), c (O,) (None without bias)
    dh0: np.ndarray         # (B, H)


class Agreement(NamedTuple):
    """A method against the hand gradient: per-array errors, the worst, and the verdict."""

    method: str
    errors: dict            # name ("loss", "U", ..., "h0") -> normwise relative error
    worst_name: str
    worst: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.worst <= self.tolerance


def jax_available() -> bool:
    """Whether the JAX reference can be used (jax is installed)."""
    return importlib.util.find_spec("jax") is not None


def _call(fn: Callable, case) -> Answer:
    loss, grads, dh0 = fn(case.params, case.xs, case.ys, case.spec, h0=case.h0, wrt_h0=True)
    return Answer(loss, grads, dh0)


def hand(case, implementation: Callable = loss_and_grads) -> Answer:
    """The hand BPTT's answer (`implementation` lets the mutation tests swap in a mutant)."""
    return _call(implementation, case)


def by_method(case, method: str) -> Answer:
    """The answer of an independent method: "jax", "complex_step" or "central"."""
    if method == "jax":
        import reference   # lazily: `import handgrad` never imports jax
        return _call(reference.loss_and_grads, case)
    if method in ("complex_step", "central"):
        grads, dh0 = numerical_grads(case.params, case.xs, case.ys, case.spec, h0=case.h0,
                                     method="complex" if method == "complex_step" else "central")
        return Answer(None, grads, dh0)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def flat(answer: Answer) -> np.ndarray:
    """Every gradient array and dh0 as one vector."""
    return np.concatenate([g.ravel() for g in answer.grads if g is not None] + [answer.dh0.ravel()])


def errors(actual: Answer, expected: Answer) -> dict:
    """Normwise relative error of every array both answers have, by name (see `NAMES`), and of
    the whole gradient vector ("all")."""
    out = {}
    if actual.loss is not None and expected.loss is not None:
        out["loss"] = rel_error(actual.loss, expected.loss)
    for name, a, e in zip(Params._fields, actual.grads, expected.grads):
        if (a is None) != (e is None):
            raise ValueError(f"gradient {name} is present in one answer only")
        if a is not None:
            out[name] = rel_error(a, e)
    out["h0"] = rel_error(actual.dh0, expected.dh0)
    out["all"] = rel_error(flat(actual), flat(expected))
    return out


def agreement(case, method: str, actual: Optional[Answer] = None) -> Agreement:
    """Compare the hand answer (or `actual`) with `method` on `case`, against TOLERANCES[method]."""
    actual = hand(case) if actual is None else actual
    errs = errors(actual, by_method(case, method))
    judged = ({"all": errs["all"]} if JUDGED[method] == "all"
              else {k: v for k, v in errs.items() if k != "all"})
    worst_name = max(judged, key=judged.get)
    return Agreement(method, errs, worst_name, errs[worst_name], TOLERANCES[method])


def describe(agr: Agreement) -> str:
    """A one-line label for an assertion message: which method, which array, how far off."""
    detail = ", ".join(f"{k} {v:.1e}" for k, v in agr.errors.items())
    return (f"hand vs {agr.method}: worst {agr.worst_name} rel error {agr.worst:.2e} "
            f"(tolerance {agr.tolerance:.0e}); all: {detail}")
