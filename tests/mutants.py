"""The catalogue of classic backward-pass mistakes, and how to install one into handgrad.

A mutant replaces exact snippets of one handgrad module's source (each must occur exactly once,
so this file cannot go stale silently: a snippet that is gone fails loudly). `installed(name)`
executes the mutated source as a fresh module and rebinds every function and class it defines
wherever handgrad holds the original (`from .x import f` bindings included), so the whole package
computes with the mistake while the context is open; the JAX reference and the numerical
differentiation keep their own code (a mutant only ever touches the hand backward pass).

Two users:
- tests/test_mutations.py: a quick search for each mutant (Hypothesis against the complex step),
  part of every run;
- tests/mutation_report.py: the whole property suite run with each mutant installed
  (`HANDGRAD_MUTANT=<name>`, see tests/conftest.py), recording which tests kill it; the report is
  docs/mutation-report.md, and test_mutations.py checks it is current.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import types
from pathlib import Path
from typing import NamedTuple

APPEND = None   # an edit whose snippet is APPEND adds its text at the end of the module


class Mutant(NamedTuple):
    module: str          # the handgrad module whose source is edited
    what: str            # the mistake, in words
    edits: tuple         # ((exact snippet, replacement), ...)
    family: dict         # Spec fields that reach the mistake (for the quick search)


_TBPTT_OFF_BY_ONE = '''

def _mutant_segments(truncation, T, output):   # MUTANT: each sweep reaches one step too far
    from handgrad.spec import TBPTT, segments
    if truncation is None:
        return segments(None, T, output)
    tb = truncation.as_tbptt()
    return segments(TBPTT(tb.k1, tb.k2 + 1), T, output)
'''

_LOSS_ONLY_DXS = '''

def _mutant_dP_loss_only(cell, w, fwd, loss, spec):   # MUTANT: each step's own loss term only
    T, B, S = fwd.states.shape[0] - 1, fwd.states.shape[1], fwd.states.shape[2]
    first = 1 if spec.output == "all" else T
    dP = np.zeros((T, B, w.W_in.shape[0]))
    dR = np.empty((1, B, w.W_in.shape[0])) if cell.own_dR else None
    for t in range(first, T + 1):
        ds = np.zeros((1, B, S))
        loss.add_into(ds[0], t)
        cell.back_into(w, fwd.cache, fwd.states, t - 1, t, ds, dP[t - 1:t], None, dR)
    return dP
'''

ELMAN, GRU_AFTER = dict(cell="elman"), dict(cell="gru", gru_reset="after")
GRU_BEFORE, LSTM = dict(cell="gru", gru_reset="before"), dict(cell="lstm")

MUTANTS = {
    # --- the backward sweeps, every cell (handgrad/bptt.py) -------------------------------------
    "carried gradient dropped": Mutant(
        "handgrad.bptt", "dL/ds_t takes only the loss term at t, not the gradient carried back "
        "from step t + 1 (sweep path)",
        (("loss.add_into(ds, t)", "ds[...] = 0.0; loss.add_into(ds, t)"),),
        ELMAN),
    "Window(k) off by one": Mutant(
        "handgrad.bptt", "the many-to-many Window(k) path backpropagates k - 1 transitions "
        "instead of k", (("for i in range(0, k + 1):", "for i in range(0, k):"),
         ("for i in range(k + 1):", "for i in range(k):")), ELMAN),
    "TBPTT(k1, k2) off by one": Mutant(
        "handgrad.bptt", "every truncated sweep reaches k2 + 1 steps back instead of k2",
        (("sweeps = segments(spec.truncation, T, spec.output)",
          "sweeps = _mutant_segments(spec.truncation, T, spec.output)"),
         (APPEND, _TBPTT_OFF_BY_ONE)), ELMAN),
    "truncation ignored": Mutant(
        "handgrad.bptt", "the 'truncated' gradient is full BPTT (sweep path)",
        (("sweeps = segments(spec.truncation, T, spec.output)",
          "sweeps = segments(None, T, spec.output)"),), ELMAN),
    "sweep stops one step early": Mutant(
        "handgrad.bptt", "the backward loop of each sweep skips its earliest step",
        (("range(seg.last, seg.cut, -1)", "range(seg.last, seg.cut + 1, -1)"),), ELMAN),
    "dh0 overwritten": Mutant(
        "handgrad.bptt", "dh0 keeps only the last sweep that reaches h_0 instead of their sum",
        (("ds0 += ds ", "ds0 = 1 * ds "),), ELMAN),
    "dxs misses the carried gradient": Mutant(
        "handgrad.bptt", "dx_t = W_in^T dL/dP_t from step t's own loss term only, without the "
        "gradient carried back from later steps",
        (("dxs_tm[lo:] = dP[lo:] @ w.W_in",
          "dxs_tm[lo:] = _mutant_dP_loss_only(cell, w, fwd, loss, spec)[lo:] @ w.W_in"),
         (APPEND, _LOSS_ONLY_DXS)), ELMAN),
    # --- the loss (handgrad/losses.py) ---------------------------------------------------------
    "batch_mean divided by B*T": Mutant(
        "handgrad.losses", "reduction='batch_mean' divides the gradient by B times the output "
        "steps (a mean over time too) instead of B",
        (("    if reduction == \"batch_mean\":\n        return B\n",
          "    if reduction == \"batch_mean\":\n        return B * S\n"),),
        dict(reduction="batch_mean", output="all")),
    # --- the Elman cell (handgrad/cells/elman.py, handgrad/nonlin.py) ---------------------------
    "act' from the output formula": Mutant(
        "handgrad.cells.elman", "act'(a) by the output-based formula applied to a: a(1 - a) or "
        "1 - a^2", (("act_derivative(self.activation, P, out=P)",
                     # the sigmoid's P holds -a_t here: a (1 - a) is (-P) (1 + P)
                     "(lambda act, a, out: -a * (1 + a) if act == 'sigmoid' else 1 - a * a)"
                     "(self.activation, P, out=P)"),), ELMAN),
    "dW paired with h_t": Mutant(
        "handgrad.cells.elman", "dW sums da_t h_t^T instead of da_t h_{t-1}^T",
        (("outer_sum(dR, states[lo:-1])", "outer_sum(dR, states[lo + 1:])"),), ELMAN),
    "W transposed in the carry": Mutant(
        "handgrad.cells.elman", "dh_{t-1} = W da_t instead of W^T da_t",
        (("matmul_into(dP, w.W_rec, ds_prev)", "matmul_into(dP, w.W_rec.T, ds_prev)"),
         ("np.dot(dP, w.W_rec, ds_prev)", "np.dot(dP, w.W_rec.T, ds_prev)")), ELMAN),
    "relu'(0) = 1": Mutant(
        "handgrad.nonlin", "relu'(0) taken as 1 (PyTorch and JAX use 0)",
        (("positive = np.real(a) > 0", "positive = np.real(a) >= 0"),),
        dict(cell="elman", activation="relu", bias=False)),
    # --- the GRU (handgrad/cells/gru.py) -------------------------------------------------------
    "GRU: dz sign flipped": Mutant(
        "handgrad.cells.gru", "dL/dz = dh (n - h_prev) instead of dh (h_prev - n)",
        (("np.subtract(h_prev, n, out=dz)", "np.subtract(n, h_prev, out=dz)"),), GRU_AFTER),
    "GRU: direct path z * dh dropped": Mutant(
        "handgrad.cells.gru", "dh_{t-1} misses the direct term z_t * dh_t of h_t = ... + z h_{t-1}",
        (("                np.multiply(ds, z, out=ds_prev)\n                ds_prev += rec\n"
          "            return dP, dR, ds_prev",
          "                ds_prev[...] = rec\n            return dP, dR, ds_prev"),), GRU_AFTER),
    "GRU: dr misses W_hn h + b_hn": Mutant(
        "handgrad.cells.gru", "dr = da_n instead of da_n * (W_hn h_{t-1} + b_hn) (reset after)",
        (("np.multiply(da_n, cache.inner[lo:hi], out=dr)", "np.multiply(da_n, 1.0, out=dr)"),),
        GRU_AFTER),
    "GRU: dW_hn misses r": Mutant(
        "handgrad.cells.gru", "the gradient into W_hn h_{t-1} + b_hn is not multiplied by r_t "
        "(reset after)", (("np.multiply(da_n, r, out=dR[..., 2 * H:])", "np.multiply(da_n, 1.0, out=dR[..., 2 * H:])"),),
        GRU_AFTER),
    "GRU: z's derivative from r's pre-activation": Mutant(
        "handgrad.cells.gru", "sigmoid'(a_r) used for the update gate z",
        (("np.multiply(dz, d[..., H:2 * H], out=da_z)", "np.multiply(dz, d[..., :H], out=da_z)"),),
        GRU_AFTER),
    "GRU reset before: carry misses r": Mutant(
        "handgrad.cells.gru", "dh_{t-1} through W_hn (r * h_{t-1}) is not multiplied by r_t "
        "(reset before)", (("np.multiply(d_rh, r, out=tmp)", "np.multiply(d_rh, 1.0, out=tmp)"),), GRU_BEFORE),
    # --- the LSTM (handgrad/cells/lstm.py) -----------------------------------------------------
    "LSTM: cell-state path forgotten": Mutant(
        "handgrad.cells.lstm", "dc_{t-1} = 0: the gradient does not flow back through c_t = f c_{t-1}",
        (("np.multiply(dc_t, f, out=ds_prev[..., H:])", "np.multiply(0 * dc_t, f, out=ds_prev[..., H:])"),),
        LSTM),
    "LSTM: tanh'(c) missing": Mutant(
        "handgrad.cells.lstm", "dc_t = dh_t o_t instead of dh_t o_t tanh'(c_t)",
        (("dc_t *= cache.dtanh_c[lo:hi]", "dc_t *= 1.0"),), LSTM),
    "LSTM: df paired with c_t": Mutant(
        "handgrad.cells.lstm", "df = dc_t c_t instead of dc_t c_{t-1}",
        (("c_prev = states[lo:hi, ..., H:]", "c_prev = states[lo + 1:hi + 1, ..., H:]"),), LSTM),
    "LSTM: o's derivative as tanh'": Mutant(
        "handgrad.cells.lstm", "the output gate's derivative taken as tanh' instead of sigmoid'",
        (('act_derivative("sigmoid", P[..., 3 * H:], out=P[..., 3 * H:])',
          'act_derivative("tanh", P[..., 3 * H:], out=P[..., 3 * H:])'),), LSTM),
    "LSTM: i and f swapped": Mutant(
        "handgrad.cells.lstm", "the input and forget gates' gradients land in each other's blocks",
        (("np.multiply(tmp, d[..., :H], out=dP[..., :H])      # i = sigmoid(a_i)\n"
          "        np.multiply(dc_t, c_prev, out=tmp)\n"
          "        np.multiply(tmp, d[..., H:2 * H], out=dP[..., H:2 * H])  # f = sigmoid(a_f)",
          "gate_i = tmp * d[..., :H]\n"
          "        np.multiply(dc_t, c_prev, out=tmp)\n"
          "        np.multiply(tmp, d[..., H:2 * H], out=dP[..., :H])\n"
          "        dP[..., H:2 * H] = gate_i"),), LSTM),
}


def mutated_source(name: str) -> str:
    """The source of the mutant's module with its edits applied (each snippet exactly once)."""
    mutant = MUTANTS[name]
    path = Path(importlib.import_module(mutant.module).__file__)
    source = path.read_text()
    for old, new in mutant.edits:
        if old is APPEND:
            source += new
            continue
        count = source.count(old)
        if count != 1:
            raise AssertionError(f"mutant {name!r}: snippet {old!r} found {count} times in "
                                 f"{path} (expected exactly once): update tests/mutants.py")
        source = source.replace(old, new)
    return source


@contextlib.contextmanager
def installed(name: str):
    """Within the context, handgrad computes with the mutant `name`."""
    mutant = MUTANTS[name]
    original = importlib.import_module(mutant.module)
    fresh = types.ModuleType(original.__name__)
    fresh.__package__ = original.__package__
    fresh.__file__ = original.__file__
    exec(compile(mutated_source(name), f"<mutant {name!r} of {original.__file__}>", "exec"),
         fresh.__dict__)  # noqa: S102 - our own source, edited by this file
    replaced = {id(obj): fresh.__dict__[attr] for attr, obj in vars(original).items()
                if attr in fresh.__dict__ and getattr(obj, "__module__", None) == original.__name__
                and callable(obj)}
    undo = []
    for module in [m for n, m in sys.modules.items() if n == "handgrad" or n.startswith("handgrad.")]:
        for attr, obj in list(vars(module).items()):
            if id(obj) in replaced:
                undo.append((module, attr, obj))
                setattr(module, attr, replaced[id(obj)])
    try:
        yield fresh
    finally:
        for module, attr, obj in undo:
            setattr(module, attr, obj)
