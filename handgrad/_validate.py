"""Argument checks for the public functions: every error names the argument, what was expected
and what was given. Valid input comes back as float64 (float32 is accepted and promoted)."""
from __future__ import annotations

import numpy as np

from .params import Params
from .spec import Spec


def as_float_array(name: str, value, ndim: int | None = None) -> np.ndarray:
    """`value` as a finite float64 array; ValueError naming `name` otherwise."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__} ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)):
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


def check_params(params, spec: Spec) -> Params:
    """Shapes U (H, D), W (H, H), V (O, H), b (H,), c (O,); b and c present iff spec.bias."""
    try:
        U, W, V, b, c = (getattr(params, n) for n in Params._fields)
    except AttributeError:
        raise ValueError("params must be a handgrad.Params(U, W, V, b, c), "
                         f"got {type(params).__name__}") from None
    U = as_float_array("params.U", U, 2)
    H, D = U.shape
    if H < 1 or D < 1:
        raise ValueError(f"params.U must have shape (H, D) with H, D >= 1, got {U.shape}")
    W = as_float_array("params.W", W, 2)
    if W.shape != (H, H):
        raise ValueError(f"params.W must have shape (H, H) = {(H, H)} to match params.U "
                         f"of shape {U.shape}, got {W.shape}")
    V = as_float_array("params.V", V, 2)
    if V.shape[1] != H or V.shape[0] < 1:
        raise ValueError(f"params.V must have shape (O, H) = (O, {H}), got {V.shape}")
    O = V.shape[0]
    if spec.bias:
        if b is None or c is None:
            raise ValueError("spec.bias is True, so params.b (H,) and params.c (O,) are required, "
                             f"got b={'None' if b is None else 'array'}, "
                             f"c={'None' if c is None else 'array'}")
        b = as_float_array("params.b", b, 1)
        c = as_float_array("params.c", c, 1)
        if b.shape != (H,):
            raise ValueError(f"params.b must have shape (H,) = ({H},), got {b.shape}")
        if c.shape != (O,):
            raise ValueError(f"params.c must have shape (O,) = ({O},), got {c.shape}")
    elif b is not None or c is not None:
        raise ValueError("spec.bias is False, so params.b and params.c must be None")
    return Params(U, W, V, b if spec.bias else None, c if spec.bias else None)


def check_xs(xs, D: int) -> np.ndarray:
    xs = as_float_array("xs", xs, 3)
    if xs.shape[0] < 1 or xs.shape[1] < 1 or xs.shape[2] != D:
        raise ValueError(f"xs must have shape (B, T, D) with B, T >= 1 and D = {D} "
                         f"(params.U is (H, {D})), got {xs.shape}")
    return xs


def check_ys(ys, spec: Spec, B: int, T: int, O: int) -> np.ndarray:
    """(B, O) or (B, T, O) floats; (B,) or (B, T) integer class ids in [0, O) for cross-entropy."""
    lead = (B,) if spec.output == "last" else (B, T)
    lead_txt = "(B,)" if spec.output == "last" else "(B, T)"
    if spec.loss == "cross_entropy":
        arr = np.asarray(ys)
        if not np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
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
        shape_txt = "(B, O)" if spec.output == "last" else "(B, T, O)"
        raise ValueError(f"ys must have shape {shape_txt} = {want} for output={spec.output!r}, "
                         f"got {arr.shape}")
    return arr


def check_h0(h0, B: int, H: int):
    if h0 is None:
        return None
    h0 = as_float_array("h0", h0, 2)
    if h0.shape != (B, H):
        raise ValueError(f"h0 must have shape (B, H) = {(B, H)}, got {h0.shape}")
    return h0


def check_inputs(params, xs, ys, spec, h0):
    """Validate and promote every argument of `loss_and_grads`."""
    spec = check_spec(spec)
    params = check_params(params, spec)
    D, H, O = params.sizes
    xs = check_xs(xs, D)
    B, T, _ = xs.shape
    return params, xs, check_ys(ys, spec, B, T, O), check_h0(h0, B, H), spec
