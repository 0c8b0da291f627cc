"""Saturation diagnosis: how many hidden units pass (practically) no gradient.

Size letters: B windows, T steps, D input features, H hidden units.

A unit is saturated at a step when act'(a_t) is below SATURATED times its largest possible value
(1/4 for sigmoid, 1 for tanh, relu and identity): less than a millionth of a gradient goes through
it, and after the few factors of a BPTT chain nothing measurable is left (a relu unit at a <= 0
passes exactly none). For the GRU and the LSTM every gate of every unit counts, with the
derivative of its own nonlinearity. This is a diagnosis threshold, not a comparison tolerance.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..bptt import forward_states, initial_state
from ..spec import Spec

SATURATED = 1e-6                      # act'(a) / max act' below this: the unit is saturated
MAX_DERIVATIVE = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "identity": 1.0}
WARN_FRACTION = 0.5                   # say so in plain words above this fraction


class Saturation(NamedTuple):
    fraction: float        # of all (window, step, unit) activations
    fraction_last: float   # at the last step only, which the many-to-one loss sees first
    dead_units: int        # units saturated at every step of every window
    hidden: int            # H
    max_derivative: float  # largest act'(a_t) seen, relative to its maximum

    @property
    def saturated(self) -> bool:
        return self.fraction >= WARN_FRACTION

    def describe(self) -> str:
        """One plain sentence."""
        pct = 100 * self.fraction
        text = (f"{pct:.1f}% of the hidden activations are saturated (derivative below "
                f"{SATURATED:g} of its maximum; {100 * self.fraction_last:.1f}% at the last step; "
                f"{self.dead_units} of {self.hidden} units saturated on every window)")
        if self.saturated:
            text += (": the units are stuck at their limits, almost no gradient reaches U and W, "
                     "and the network can learn little more than a constant through V")
        return text

    def as_dict(self) -> dict:
        return {"fraction": self.fraction, "fraction_last_step": self.fraction_last,
                "dead_units": self.dead_units, "hidden": self.hidden,
                "max_relative_derivative": self.max_derivative}


# the nonlinearity of each gate block of the gated cells (handgrad.cells)
GATE_ACTIVATIONS = {"gru": ("sigmoid", "sigmoid", "tanh"),
                    "lstm": ("sigmoid", "sigmoid", "tanh", "sigmoid")}


def saturation(params, xs, spec: Spec) -> Saturation:
    """Saturation of the hidden units of `params` over the windows `xs` (B, T, D), h_0 = 0."""
    xs_tm = np.ascontiguousarray(np.swapaxes(xs, 0, 1))
    B, H = xs.shape[0], params.sizes[1]
    cache = forward_states(params, xs_tm, initial_state(None, B, H, spec), spec).cache
    if spec.cell == "elman":
        rel = (cache / MAX_DERIVATIVE[spec.activation])[:, :, None]      # (T, B, 1, H)
    else:
        gates = GATE_ACTIVATIONS[spec.cell]
        rel = cache.deriv.reshape(cache.deriv.shape[:2] + (len(gates), H)) / np.array(
            [MAX_DERIVATIVE[g] for g in gates])[:, None]                 # (T, B, G, H)
    sat = rel < SATURATED
    return Saturation(float(sat.mean()), float(sat[-1].mean()),
                      int(sat.all(axis=(0, 1, 2)).sum()), H, float(rel.max()))
