"""Argument checks for the public functions: every error names the argument, what was expected
and what was given. Valid input comes back as float64 (float32 is accepted and promoted).

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs (O = H without an output
head), G gate blocks (3 GRU, 4 LSTM).
"""
from __future__ import annotations

import numpy as np

from .params import GATES, param_names, params_type
from .spec import Spec


def as_float_array(name: str, value, ndim: int | None = None) -> np.ndarray:
    """`value` as a finite float64 array; ValueError naming `name` otherwise."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__} ({exc})") from None
    if arr.dtype == object or arr.dtype.kind not in "fiu":       # no bool, complex, timedelta
        raise ValueError(f"{name} must be a real float array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} must be finite, got {arr[bad]} at index {bad}")
    return arr


def check_spec(spec) -> Spec:
    if not isinstance(spec, Spec):
        raise ValueError(f"spec must be a handgrad.Spec, got {type(spec).__name__}")
    return spec


def _shape_txt(shape) -> str:
    return "(" + ", ".join(shape) + ("," if len(shape) == 1 else "") + ")"


def check_params(params, spec: Spec):
    """A `Params` (Elman) or `GatedParams` (GRU, LSTM) of consistent shapes: arrays present
    exactly as the spec says (biases iff spec.bias, V and c iff spec.head), float64."""
    cls = params_type(spec)
    if not isinstance(params, tuple) or not all(hasattr(params, n) for n in cls._fields):
        raise ValueError(f"params must be a handgrad.{cls.__name__}({', '.join(cls._fields)}) for "
                         f"cell={spec.cell!r}, got {type(params).__name__}")
    wanted = param_names(spec)
    present = [n for n in cls._fields if getattr(params, n) is not None]
    missing = [f"params.{n}" for n in wanted if n not in present]
    extra = [f"params.{n}" for n in present if n not in wanted]
    if missing or extra:
        why = f"spec.bias={spec.bias}, spec.head={spec.head}"
        raise ValueError(f"with {why} the params are {', '.join(wanted)}: "
                         + (f"{', '.join(missing)} required" if missing else "")
                         + ("; " if missing and extra else "")
                         + (f"{', '.join(extra)} must be None" if extra else ""))
    G = GATES.get(spec.cell, 1)
    w_in, w_rec = cls._fields[:2]                         # U, W or W_ih, W_hh
    arrays = {n: as_float_array(f"params.{n}", getattr(params, n)) for n in wanted}
    inp = arrays[w_in]
    if inp.ndim != 2 or inp.shape[0] < G or inp.shape[0] % G or inp.shape[1] < 1:
        want = "(H, D) with H, D >= 1" if G == 1 else f"({G} H, D) with H, D >= 1"
        raise ValueError(f"params.{w_in} must have shape {want}, got {inp.shape}")
    H = inp.shape[0] // G
    rec = arrays[w_rec]
    if rec.shape != (G * H, H):
        want = f"(H, H) = {(H, H)}" if G == 1 else f"({G} H, H) = {(G * H, H)}"
        raise ValueError(f"params.{w_rec} must have shape {want} to match params.{w_in} of "
                         f"shape {inp.shape}, got {rec.shape}")
    O = H
    if spec.head:
        V = arrays["V"]
        if V.ndim != 2 or V.shape[1] != H or V.shape[0] < 1:
            raise ValueError(f"params.V must have shape (O, H) = (O, {H}), got {V.shape}")
        O = V.shape[0]
    sizes = {"b": (H,), "b_ih": (G * H,), "b_hh": (G * H,), "c": (O,)}
    for n, shape in sizes.items():
        if n in arrays and arrays[n].shape != shape:
            letters = {"b": ("H",), "b_ih": (f"{G} H",), "b_hh": (f"{G} H",), "c": ("O",)}[n]
            raise ValueError(f"params.{n} must have shape {_shape_txt(letters)} = {shape}, "
                             f"got {arrays[n].shape}")
    return cls(**{n: arrays.get(n) for n in cls._fields})


def check_xs(xs, D: int) -> np.ndarray:
    xs = as_float_array("xs", xs, 3)
    if xs.shape[0] < 1 or xs.shape[1] < 1 or xs.shape[2] != D:
        raise ValueError(f"xs must have shape (B, T, D) with B, T >= 1 and D = {D} "
                         f"(from params), got {xs.shape}")
    return xs


def check_ys(ys, spec: Spec, B: int, T: int, O: int) -> np.ndarray:
    """(B, O) or (B, T, O) floats; (B,) or (B, T) integer class ids in [0, O) for cross-entropy.
    For `loss="linear"` the floats are the upstream gradients dL/do_t (O = H without a head)."""
    lead = (B,) if spec.output == "last" else (B, T)
    lead_txt = "(B,)" if spec.output == "last" else "(B, T)"
    if spec.loss == "cross_entropy":
        arr = np.asarray(ys)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"ys must be integer class ids for loss='cross_entropy', "
                             f"got dtype {arr.dtype}")
        if arr.shape != lead:
            raise ValueError(f"ys must have shape {lead_txt} = {lead} for output={spec.output!r} "
                             f"and loss='cross_entropy', got {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= O):
            raise ValueError(f"ys class ids must lie in [0, O) = [0, {O}), "
                             f"got values from {arr.min()} to {arr.max()}")
        return arr.astype(np.intp)
    arr = as_float_array("ys", ys)
    want = lead + (O,)
    if arr.shape != want:
        o = "O" if spec.head else "H"
        shape_txt = f"(B, {o})" if spec.output == "last" else f"(B, T, {o})"
        what = " (the upstream gradients dL/do_t)" if spec.loss == "linear" else ""
        raise ValueError(f"ys must have shape {shape_txt} = {want}{what} for "
                         f"output={spec.output!r}, got {arr.shape}")
    return arr


def check_h0(h0, B: int, H: int, spec: Spec = None):
    """None, or the initial state: (B, H) for the Elman cell and the GRU; for the LSTM the pair
    (h_0, c_0), each (B, H) or None (zeros). An LSTM pair comes back as a tuple of two arrays
    (zeros filled in), or None when both are None."""
    if spec is not None and spec.cell == "lstm":
        if h0 is None:
            return None
        if not isinstance(h0, (tuple, list)) or len(h0) != 2:
            raise ValueError("h0 must be None or the pair (h_0, c_0) for cell='lstm', each "
                             f"(B, H) = {(B, H)} or None, got {type(h0).__name__}")
        if h0[0] is None and h0[1] is None:
            return None
        return tuple(np.zeros((B, H)) if part is None else _state("h0[%d]" % i, part, B, H)
                     for i, part in enumerate(h0))
    if h0 is None:
        return None
    return _state("h0", h0, B, H)


def _state(name, value, B, H):
    arr = as_float_array(name, value, 2)
    if arr.shape != (B, H):
        raise ValueError(f"{name} must have shape (B, H) = {(B, H)}, got {arr.shape}")
    return arr


def check_inputs(params, xs, ys, spec, h0):
    """Validate and promote every argument of `loss_and_grads`."""
    spec = check_spec(spec)
    params = check_params(params, spec)
    D, H, O = params.sizes
    xs = check_xs(xs, D)
    B, T, _ = xs.shape
    return params, xs, check_ys(ys, spec, B, T, O), check_h0(h0, B, H, spec), spec
