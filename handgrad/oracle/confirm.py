"""Before the oracle blames a candidate, a second, independent method confirms the expected value.

- Complex step, always: the derivative of the (surrogate) loss along the reported element, and
  along one random direction through every parameter and h0 at once, each one complex loss
  evaluation (`handgrad.directional_derivative`), compared with the hand BPTT.
- JAX autodiff (`reference.loss_and_grads`): the loss and every gradient, when the `reference`
  package is already imported in this process (or HANDGRAD_CONFIRM_JAX=1). The oracle does not
  import it by itself: that takes seconds (the first mismatch would wait for it) and switches JAX
  to float64 for the whole process (`jax_enable_x64`), which would silently change a user's
  float32 JAX candidate after the first mismatch.

A disagreement means handgrad itself is wrong; that is raised as `OracleError`, never blamed on
the candidate.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ..numdiff import directional_derivative
from ..tolerances import TOLERANCES, rel_error


class OracleError(RuntimeError):
    """handgrad's expected value could not be confirmed: a bug in handgrad, not in the candidate."""


def _fail(what: str) -> OracleError:
    return OracleError(f"handgrad could not confirm its own expected {what}; this is a bug in "
                       "handgrad, not in the candidate: please report it with the replay file")


def _directional(case, expected, direction: dict) -> tuple[float, float, float]:
    """(complex-step derivative, hand projection, scale) along `direction` (name -> array over
    the parameters, "h0" (and "c0" for the LSTM) and "xs")."""
    names = list(case.params.arrays())
    d_params = type(case.params)(**{n: (direction.get(n, np.zeros_like(p)) if p is not None
                                        else None) for n, p in case.params._asdict().items()})
    d_h0 = direction.get("h0")
    if "c0" in expected.grads:                                   # the LSTM's pair
        d_h0 = (d_h0, direction.get("c0"))
    numeric = directional_derivative(case.params, case.xs, case.ys, case.spec, d_params,
                                     h0=case.h0, direction_h0=d_h0, method="complex",
                                     direction_xs=direction.get("xs"))
    hand = sum(float(np.sum(expected.grads[n] * d)) for n, d in direction.items())
    scale = max((float(np.max(np.abs(expected.grads[n]), initial=0.0))
                 for n in [*names, *(k for k in ("h0", "c0", "xs") if k in expected.grads)]),
                default=0.0)
    scale *= sum(float(np.sum(np.abs(d))) for d in direction.values())
    return numeric, hand, scale


def confirm(case, expected, param: str, index) -> list[str]:
    """Confirm the hand BPTT's answer on `case`; returns what confirmed it, one phrase each."""
    tol = TOLERANCES["complex_step"]
    done = []
    rng = np.random.default_rng(0)
    directions = [{n: rng.standard_normal(np.shape(g)) for n, g in expected.grads.items()}]
    if param in expected.grads:
        one = np.zeros(np.shape(expected.grads[param]))
        one[index] = 1.0
        directions.insert(0, {param: one})
    worst = 0.0
    for direction in directions:
        numeric, hand, scale = _directional(case, expected, direction)
        err = abs(numeric - hand) / scale if scale > 0 else abs(numeric - hand)
        worst = max(worst, err)
        if not err <= tol:
            along = "the element" if len(direction) == 1 else "a random direction"
            raise _fail(f"gradient (complex step along {along} disagrees by {err:.1e})")
    done.append(f"complex step (error {worst:.0e})")
    jax_phrase = _confirm_jax(case, expected)
    if jax_phrase:
        done.append(jax_phrase)
    return done


def _confirm_jax(case, expected):
    """The JAX reference's loss and gradients, or None when it is not in use (see the module
    docstring) or not available."""
    if "reference" not in sys.modules and os.environ.get("HANDGRAD_CONFIRM_JAX") != "1":
        return None
    try:
        import reference
        ref_loss_and_grads = reference.loss_and_grads
    except Exception:  # noqa: BLE001 - jax absent or reference not installed: skip this method
        return None
    tol = TOLERANCES["jax"]
    loss, grads, dh0, dxs = ref_loss_and_grads(case.params, case.xs, case.ys, case.spec,
                                               h0=case.h0, wrt_h0=True, wrt_xs=True)
    got = {**grads.arrays(), "xs": dxs}
    got.update(zip(("h0", "c0"), dh0) if isinstance(dh0, tuple) else [("h0", dh0)])
    errors = {"loss": rel_error(float(loss), expected.loss)}
    for n, want in expected.grads.items():
        errors[n] = rel_error(np.asarray(got[n]), want)
    worst = max(errors.values())
    if not worst <= tol:
        bad = max(errors, key=errors.get)
        raise _fail(f"{bad} (JAX disagrees by {worst:.1e})")
    return f"JAX (error {worst:.0e})"
