"""Which gate's gradient is wrong: the blocks of the gated cells' weights, one by one.

Size letters: G gate blocks (GRU r, z, n; LSTM i, f, g, o), H hidden units.

W_ih (G H, D), W_hh (G H, H), b_ih and b_hh (G H,) stack one block of H rows per gate. A mistake
in one gate's backward (a derivative taken from the wrong pre-activation, a forgotten factor)
shows in that gate's block first: each block is judged like a whole array, its largest error
over the largest |expected| of the whole parameter (so that a block of tiny values is not
magnified), against the parameter's rtol.
"""
from __future__ import annotations

import numpy as np

from ..params import GATE_NAMES

GATED = ("W_ih", "W_hh", "b_ih", "b_hh")


def block_errors(spec, name: str, actual, expected) -> dict:
    """gate name -> normwise error of that block of the gradient `name`."""
    gates = GATE_NAMES[spec.cell]
    H = expected.shape[0] // len(gates)
    scale = float(np.max(np.abs(expected), initial=0.0))
    out = {}
    for k, gate in enumerate(gates):
        diff = float(np.max(np.abs(actual[k * H:(k + 1) * H] - expected[k * H:(k + 1) * H]),
                            initial=0.0))
        out[gate] = diff / scale if scale > 0 else (np.inf if diff > 0 else 0.0)
    return out


def gate_text(spec, answer_grads: dict, expected_grads: dict, failing, rtols: dict):
    """The report's line naming the wrong gate blocks of the failing gated parameters, or None
    (Elman cells, or no gated parameter failing)."""
    if spec.cell not in GATE_NAMES:
        return None
    parts = []
    for name in (n for n in GATED if n in failing):
        errs = block_errors(spec, name, answer_grads[name], expected_grads[name])
        wrong = [g for g, e in errs.items() if not e <= rtols[name]]
        detail = ", ".join(f"{g} {e:.1e}" for g, e in errs.items())
        parts.append(f"d{name}: {' and '.join(wrong) if wrong else 'no single'} block "
                     f"{'wrong' if wrong else 'stands out'} ({detail})")
    if not parts:
        return None
    return "gate: " + "; ".join(parts)
