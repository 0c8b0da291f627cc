"""Which gate's gradient is wrong: the blocks of the gated cells' weights, one by one.

Size letters: G gate blocks (GRU r, z, n; LSTM i, f, g, o), H hidden units.

W_ih (G H, D), W_hh (G H, H), b_ih and b_hh (G H,) stack one block of H rows per gate. A mistake
in one gate's backward (a derivative taken from the wrong pre-activation, a forgotten factor)
shows in that gate's block first: each block is judged like a whole array, its largest error
over the largest |expected| of the whole parameter (so that a block of tiny values is not
magnified), against the parameter's rtol.

When each wrong block equals another gate's expected block, the candidate's gates are in another
order (Keras orders the GRU's blocks z, r, h where PyTorch and handgrad use r, z, n; TensorFlow's
LSTMCell i, j, f, o where PyTorch uses i, f, g, o): the report names the order it found.
"""
from __future__ import annotations

import numpy as np

from ..params import GATE_NAMES

GATED = ("W_ih", "W_hh", "b_ih", "b_hh")
OTHER_ORDERS = {"gru": "Keras's GRU is z, r, h", "lstm": "TensorFlow's LSTMCell is i, j, f, o"}


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


def block_order(spec, name: str, actual, expected, rtol: float):
    """The gate order of the candidate's blocks of gradient `name` when they are the expected
    blocks in another order (a tuple of gate names, the one whose expected block each actual
    block equals, to `rtol` of the parameter's scale), or None (the identity, or no order)."""
    gates = GATE_NAMES[spec.cell]
    H = expected.shape[0] // len(gates)
    scale = float(np.max(np.abs(expected), initial=0.0))
    if scale == 0:
        return None
    order = []
    for k in range(len(gates)):
        got = actual[k * H:(k + 1) * H]
        same = [gates[j] for j in range(len(gates))
                if np.max(np.abs(got - expected[j * H:(j + 1) * H]), initial=0.0)
                <= rtol * scale]
        if not same:
            return None
        # a block whose expected value is shared (e.g. all zeros) matches several gates:
        # prefer its own
        order.append(gates[k] if gates[k] in same else same[0])
    if tuple(order) == tuple(gates) or sorted(order) != sorted(gates):
        return None
    return tuple(order)


def gate_text(spec, answer_grads: dict, expected_grads: dict, failing, rtols: dict):
    """The report's line naming the wrong gate blocks of the failing gated parameters, or None
    (Elman cells, or no gated parameter failing)."""
    if spec.cell not in GATE_NAMES:
        return None
    parts, orders = [], set()
    for name in (n for n in GATED if n in failing):
        errs = block_errors(spec, name, answer_grads[name], expected_grads[name])
        wrong = [g for g, e in errs.items() if not e <= rtols[name]]
        detail = ", ".join(f"{g} {e:.1e}" for g, e in errs.items())
        blocks = "block" if len(wrong) <= 1 else "blocks"
        parts.append(f"d{name}: {' and '.join(wrong) if wrong else 'no single'} {blocks} "
                     f"{'wrong' if wrong else 'stands out'} ({detail})")
        order = block_order(spec, name, answer_grads[name], expected_grads[name], rtols[name])
        if order is not None:
            orders.add(order)
    if not parts:
        return None
    text = "gate: " + "; ".join(parts)
    if len(orders) == 1:
        found, = orders
        text += (f"; the blocks are the expected ones in the gate order ({', '.join(found)}), "
                 f"not handgrad's ({', '.join(GATE_NAMES[spec.cell])}): gradients returned in "
                 f"another library's gate order ({OTHER_ORDERS[spec.cell]})?")
    return text
