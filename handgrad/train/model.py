"""A trained model on disk: one `.npz` holding the weights, the data scale and what it was
trained on, so that `handgrad forecast MODEL` needs nothing else.

Arrays: `U` (H, D), `W` (H, H), `V` (O, H), `b` (H,) and `c` (O,) when the spec has biases,
`series` (N, C) the raw series, `center` (C,) and `scale` (C,) the scaling (scaled =
(value - center) / scale; `scale` is the tutorial's `max_val`), and `meta`, a JSON string.
Files are untrusted: read by handgrad._files.read_npz (member names and declared sizes checked
before anything is decompressed, no pickles, a size limit), then every name, shape, the format
version and every field of `meta` checked; writes are atomic (temporary file in the same folder,
fsync, then `os.replace`).
"""
from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np

from .._files import read_npz, write_atomic
from .._validate import as_float_array, check_params
from ..params import GatedParams, Params, param_names, params_type
from ..spec import Spec
from .data import INPUTS, MAX_ABS_VALUE, Scaler, Series

FORMAT = "handgrad-model"
VERSION = 1
MODEL_NAMES = frozenset({*Params._fields, *GatedParams._fields, "series", "center", "scale",
                         "meta", "time"})           # any cell's; checked before decompressing


class Model(NamedTuple):
    params: Params
    spec: Spec
    series: Series
    scaler: Scaler
    inputs: str          # "position" | "steps"
    window: int          # T
    target_cols: tuple   # indices into series.columns
    n_train: int         # training windows (the validation windows follow)
    meta: dict


def save_model(path: str, model: Model) -> None:
    """Write `model` to `path` (.npz) atomically."""
    write_atomic(path, lambda fh: write_model(fh, model))


def write_model(fh, model: Model) -> None:
    """Write `model` as .npz to the binary file `fh`."""
    meta = dict(model.meta, format=FORMAT, version=VERSION, spec=model.spec.to_dict(),
                columns=list(model.series.columns), source=model.series.source,
                inputs=model.inputs, window=model.window, target_cols=list(model.target_cols),
                n_train=model.n_train, time_name=model.series.time_name)
    arrays = dict(model.params.arrays(), series=model.series.values, center=model.scaler.center,
                  scale=model.scaler.scale, meta=np.array(json.dumps(meta)))
    if model.series.time is not None:
        arrays["time"] = model.series.time
    np.savez(fh, **arrays)


def load_model(path: str) -> Model:
    """Read and check a model written by `save_model`; ValueError says what is wrong."""
    try:
        arrays = read_npz(path, MODEL_NAMES)
    except ValueError as exc:
        why = str(exc).removeprefix(f"{path}: ")
        raise ValueError(f"{path}: not a handgrad model (.npz): {why}") from None
    if "meta" not in arrays:
        raise ValueError(f"{path}: not a handgrad model: no meta")
    meta = _meta(path, arrays["meta"])
    try:
        spec = Spec.from_dict(meta["spec"])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    base = {*param_names(spec), "series", "center", "scale", "meta"}
    if set(arrays) - {"time"} != base:
        raise ValueError(f"{path}: expected arrays {sorted(base)} (and time, optionally) for a "
                         f"{spec.cell} model (bias={spec.bias}), got {sorted(arrays)}")
    try:
        params = check_params(params_type(spec)(**{n: arrays[n] for n in param_names(spec)}),
                              spec)
        series = as_float_array("series", arrays["series"], 2)
        center = as_float_array("center", arrays["center"], 1)
        scale = as_float_array("scale", arrays["scale"], 1)
        time = None if "time" not in arrays else as_float_array("time", arrays["time"], 1)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    N, C = series.shape
    columns, targets = meta["columns"], meta["target_cols"]
    window, inputs, n_train = meta["window"], meta["inputs"], meta["n_train"]
    D, _, O = params.sizes
    problems = [
        (center.shape != (C,) or scale.shape != (C,) or np.any(scale == 0),
         f"center and scale must have shape ({C},) with nonzero scale"),
        (np.any(np.abs(series) > MAX_ABS_VALUE) or np.any(np.abs(scale) > MAX_ABS_VALUE)
         or np.any(np.abs(center) > MAX_ABS_VALUE),
         f"series, center and scale must lie within +-{MAX_ABS_VALUE:g}"),
        (time is not None and time.shape != (N,), f"time must have shape ({N},)"),
        (not isinstance(meta.get("time_name", ""), str), "meta.time_name must be a string"),
        (not (isinstance(columns, list) and len(columns) == C and all(isinstance(c, str) for c in columns)),
         f"meta.columns must be {C} names"),
        (not (isinstance(targets, list) and len(targets) == O
              and all(_is_int(t) and 0 <= t < C for t in targets)),
         f"meta.target_cols must be {O} column indices below {C}"),
        (inputs not in INPUTS, f"meta.inputs must be one of {INPUTS}"),
        (not (_is_int(window) and 1 <= window < N), f"meta.window must lie in [1, {N})"),
        (not (_is_int(n_train) and _is_int(window) and 1 <= n_train < N - window),
         f"meta.n_train must lie in [1, {N} - window)"),
    ]
    for bad, message in problems:
        if bad:
            raise ValueError(f"{path}: {message}")
    want_D = window if inputs == "position" else C
    if D != want_D:
        raise ValueError(f"{path}: the model has {D} input columns, but inputs={inputs!r} with window "
                         f"{window} and {C} column(s) needs {want_D}")
    time_name = meta.get("time_name", "") if time is not None else ""
    return Model(params, spec, Series(series, tuple(columns), str(meta.get("source", "")), time,
                                      time_name),
                 Scaler(center, scale), inputs, window, tuple(targets), n_train, meta)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _meta(path, arr) -> dict:
    if arr.shape != () or arr.dtype.kind != "U":
        raise ValueError(f"{path}: meta must be a JSON string")
    try:
        meta = json.loads(str(arr))
    except (ValueError, RecursionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: meta is not valid JSON ({msg})") from None
    need = {"format", "version", "spec", "columns", "target_cols", "inputs", "window", "n_train"}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not need <= set(meta):
        raise ValueError(f"{path}: meta must be a {FORMAT} object with the fields {sorted(need)}")
    if meta["version"] != VERSION or isinstance(meta["version"], bool):
        raise ValueError(f"{path}: model format version {meta['version']!r} is not supported "
                         f"(this handgrad reads version {VERSION})")
    spec = meta["spec"]
    fields = set(Spec().to_dict())
    if not isinstance(spec, dict) or set(spec) != fields:
        got = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise ValueError(f"{path}: meta.spec must have exactly the fields {sorted(fields)}, "
                         f"got {got}")
    return meta
