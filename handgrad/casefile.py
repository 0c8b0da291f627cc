"""Case files and candidate files: the language-neutral oracle on disk (`.npz` or `.json`).

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs.

A **case file** holds one problem and its reference answers:

    U (H, D)  W (H, H)  V (O, H)  b (H,)  c (O,)      b, c absent when spec.bias is False
    xs (B, T, D)  ys (B, O) | (B, T, O) | (B,) | (B, T) int for cross-entropy
    h0 (B, H)                                         absent when the initial state is zero
    spec                                              JSON text (.npz) or object (.json), Spec.to_dict()
    loss ()  grad_U  grad_W  grad_V  grad_b  grad_c  grad_h0 (B, H)

A **candidate file** holds an implementation's answers on that case: `grad_U`, `grad_W`,
`grad_V` (and `grad_b`, `grad_c` with bias) required, `grad_h0` and `loss` optional.

`.npz` files are read by handgrad._files.read_npz, which checks every member's name and declared
size before decompressing anything and every `.npy` header (no object arrays, no size other than
the member declares) before allocating; files larger than its limit (MAX_FILE_BYTES, 256 MiB;
HANDGRAD_MAX_FILE_MB raises it) are refused; `.json` files hold the same names with arrays as
nested lists of numbers. Unknown names are an error. Every malformed input raises ValueError with
one line naming the file and what is wrong. Writes are atomic (temp file in the same folder, then
`os.replace`).
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from ._files import max_json_bytes, read_capped, read_npz, write_bytes_atomic
from ._validate import check_inputs
from .bptt import loss_and_grads
from .params import Params
from .spec import Spec

PARAM_NAMES = ("U", "W", "V", "b", "c")
GRAD_NAMES = tuple(f"grad_{n}" for n in (*PARAM_NAMES, "h0"))
CASE_NAMES = frozenset({*PARAM_NAMES, "xs", "ys", "h0", "spec", "loss", *GRAD_NAMES})
CANDIDATE_NAMES = frozenset({"loss", *GRAD_NAMES})


class CaseFile(NamedTuple):
    """A problem and its reference answers (everything float64, ys int for cross-entropy)."""

    spec: Spec
    params: Params
    xs: np.ndarray              # (B, T, D)
    ys: np.ndarray              # (B, O) | (B, T, O) | (B,) | (B, T)
    h0: Optional[np.ndarray]    # (B, H) or None (zeros)
    loss: float
    grads: Params               # reference gradients, shapes of params
    dh0: np.ndarray             # (B, H) reference gradient of the initial state


class CandidateFile(NamedTuple):
    """An implementation's answers: `grads` maps U, W, V (b, c, h0) to arrays."""

    grads: dict
    loss: Optional[float]
    dtype: np.dtype             # the precision the candidate computed in (judges the tolerance)


# ---------------------------------------------------------------- building and writing


def case_from_arrays(spec: Spec, params: Params, xs, ys, h0=None) -> CaseFile:
    """Validate a problem and attach its reference loss and gradients (hand BPTT)."""
    params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
    loss, grads, dh0 = loss_and_grads(params, xs, ys, spec, h0=h0, wrt_h0=True)
    return CaseFile(spec, params, xs, ys, h0, float(loss), grads, dh0)


def case_arrays(case: CaseFile) -> dict:
    """The named arrays of a case file (what `write_case` stores)."""
    out = {k: v for k, v in case.params.arrays().items()}
    out["xs"], out["ys"] = case.xs, case.ys
    if case.h0 is not None and np.any(case.h0 != 0):
        out["h0"] = case.h0
    out["loss"] = np.float64(case.loss)
    for name, g in case.grads.arrays().items():
        out[f"grad_{name}"] = g
    out["grad_h0"] = case.dh0
    return out


def candidate_arrays(loss, grads, dh0=None) -> dict:
    """The named arrays of a candidate file. grads: a Params or a mapping U, W, V (b, c)."""
    items = grads.arrays() if isinstance(grads, Params) else dict(grads)
    out = {f"grad_{k}": np.asarray(v) for k, v in items.items() if v is not None}
    if dh0 is not None:
        out["grad_h0"] = np.asarray(dh0)
    if loss is not None:
        out["loss"] = np.asarray(loss)
    return out


def write_case(path, case: CaseFile) -> Path:
    """Write `case` to `path` (.npz or .json by suffix), atomically."""
    arrays = case_arrays(case)
    return _write(path, arrays, spec=case.spec.to_dict())


def write_candidate(path, loss, grads, dh0=None) -> Path:
    """Write an implementation's answers to `path` (.npz or .json by suffix), atomically."""
    return _write(path, candidate_arrays(loss, grads, dh0), spec=None)


def _suffix(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in (".npz", ".json"):
        raise ValueError(f"{path}: file name must end in .npz or .json, got {suffix or 'no suffix'!r}")
    return suffix


def _write(path, arrays: dict, spec) -> Path:
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".npz":
        if spec is not None:
            arrays = {**arrays, "spec": np.array(json.dumps(spec))}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
    else:
        doc = {} if spec is None else {"spec": spec}
        doc.update({k: np.asarray(v).tolist() for k, v in arrays.items()})
        body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items())
        data = ("{\n" + body + "\n}\n").encode()        # one line per name
    write_bytes_atomic(path, data)
    return path


# ---------------------------------------------------------------- reading raw names


def _read_raw(path) -> tuple[dict, object]:
    """{name: np.ndarray} and the raw spec entry (None when absent) of a .npz or .json file.

    Both go through handgrad._files: regular files only, at most the file limit (MAX_FILE_BYTES,
    raised by HANDGRAD_MAX_FILE_MB); an .npz has its member names (any of CASE_NAMES) and
    declared sizes checked before anything is decompressed.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".npz":
        arrays = read_npz(path, CASE_NAMES)
        return arrays, arrays.pop("spec", None)
    return _read_json(path, read_capped(path, max_json_bytes()))


def _read_json(path, data: bytes) -> tuple[dict, object]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not valid JSON ({msg})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: the JSON document must be an object of named arrays, "
                         f"got {type(doc).__name__}")
    spec = doc.pop("spec", None)
    arrays = {}
    for name, value in doc.items():
        arrays[name] = _json_array(path, name, value)
    return arrays, spec


def _json_array(path, name: str, value) -> np.ndarray:
    """Nested lists of numbers (no bools, no strings, rectangular) -> np.ndarray."""
    def walk(v, depth):
        if depth > 8:
            raise ValueError("nested deeper than 8 levels")
        if isinstance(v, list):
            for item in v:
                walk(item, depth + 1)
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"holds a {type(v).__name__}, expected numbers")
        elif isinstance(v, int) and abs(v) > 2**53:
            raise ValueError(f"holds the integer {v}, too large")
    try:
        walk(value, 0)
        arr = np.array(value)
    except (ValueError, TypeError, OverflowError) as exc:
        msg = str(exc).splitlines()[0]
        if "inhomogeneous" in msg or "sequence" in msg:
            msg = "nested lists are not rectangular"
        raise ValueError(f"{path}: {name!r} must be a number or nested lists of numbers ({msg})") from None
    if arr.dtype == object:
        raise ValueError(f"{path}: {name!r} must be rectangular nested lists of numbers")
    return arr


# ---------------------------------------------------------------- validating


def _check_names(path, arrays: dict, allowed, required, what: str) -> None:
    unknown = sorted(set(arrays) - set(allowed))
    if unknown:
        raise ValueError(f"{path}: unknown name(s) {unknown} in {what} "
                         f"(allowed: {', '.join(sorted(allowed))})")
    missing = [n for n in required if n not in arrays]
    if missing:
        raise ValueError(f"{path}: {what} is missing {', '.join(missing)}")


def _float(path, name: str, arr: np.ndarray, shape=None) -> np.ndarray:
    """A finite real array (float, or integer from JSON), optionally of a given shape."""
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{path}: {name!r} must hold real numbers, got dtype {arr.dtype}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{path}: {name!r} must have shape {tuple(shape)}, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{path}: {name!r} must be finite, got {arr[bad]} at index {bad}")
    return arr


def _scalar(path, name: str, arr: np.ndarray) -> float:
    if arr.size != 1 or arr.ndim > 1:
        raise ValueError(f"{path}: {name!r} must be a single number, got shape {arr.shape}")
    return float(_float(path, name, arr).reshape(()))


def _spec(path, raw) -> Spec:
    if raw is None:
        raise ValueError(f"{path}: case file is missing spec")
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind != "U" or raw.ndim != 0:
            raise ValueError(f"{path}: 'spec' must be a JSON string, got dtype {raw.dtype} "
                             f"shape {raw.shape}")
        raw = str(raw)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{path}: 'spec' is not valid JSON ({str(exc).splitlines()[0]})") from None
    try:
        return Spec.from_dict(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def read_case(path) -> CaseFile:
    """Read and validate a case file; its reference answers are checked against its inputs."""
    arrays, raw_spec = _read_raw(path)
    spec = _spec(path, raw_spec)
    with_bias = ("b", "c", "grad_b", "grad_c") if spec.bias else ()
    allowed = CASE_NAMES - {"spec"}
    if not spec.bias:
        allowed = allowed - {"b", "c", "grad_b", "grad_c"}
    required = ("U", "W", "V", *with_bias[:2], "xs", "ys", "loss",
                "grad_U", "grad_W", "grad_V", *with_bias[2:], "grad_h0")
    _check_names(path, arrays, allowed, required,
                 f"a case file (spec.bias={spec.bias})")
    floats = {n: _float(path, n, arrays[n]) for n in arrays if n != "ys"}
    ys = arrays["ys"]
    if spec.loss == "cross_entropy":
        if ys.dtype.kind not in "iu":
            raise ValueError(f"{path}: 'ys' must hold integer class ids for cross-entropy, "
                             f"got dtype {ys.dtype}")
    else:
        ys = _float(path, "ys", ys)
    params = Params(*(floats.get(n) for n in PARAM_NAMES))
    try:
        params, xs, ys, h0, spec = check_inputs(params, floats["xs"], ys, spec, floats.get("h0"))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    B = xs.shape[0]
    H = params.W.shape[0]
    grads = Params(*(None if p is None else
                     _float(path, f"grad_{n}", floats[f"grad_{n}"], p.shape).astype(np.float64)
                     for n, p in zip(PARAM_NAMES, params)))
    dh0 = _float(path, "grad_h0", floats["grad_h0"], (B, H)).astype(np.float64)
    loss = _scalar(path, "loss", floats["loss"])
    return CaseFile(spec, params, xs, ys, h0, loss, grads, dh0)


def verify_case(path, case: CaseFile, rtol: float) -> None:
    """Check the stored reference answers against the hand BPTT on the stored inputs."""
    from .tolerances import rel_error
    fresh = case_from_arrays(case.spec, case.params, case.xs, case.ys, case.h0)
    pairs = [("loss", case.loss, fresh.loss), ("grad_h0", case.dh0, fresh.dh0)]
    pairs += [(f"grad_{n}", a, e) for n, a, e in zip(PARAM_NAMES, case.grads, fresh.grads)
              if e is not None]
    for name, stored, expected in pairs:
        err = rel_error(stored, expected)
        if err > rtol:
            raise ValueError(f"{path}: the stored reference {name} does not match the case's "
                             f"inputs (relative error {err:.2e}); regenerate it with `handgrad case`")


def read_candidate(path, case: CaseFile) -> CandidateFile:
    """Read a candidate's answers and check their names and shapes against `case`."""
    arrays, raw_spec = _read_raw(path)
    if raw_spec is not None:
        raise ValueError(f"{path}: unknown name 'spec' in a candidate file (it belongs in the case file)")
    names = ["U", "W", "V"] + (["b", "c"] if case.spec.bias else [])
    allowed = {"loss", "grad_h0", *(f"grad_{n}" for n in names)}
    _check_names(path, arrays, allowed, [f"grad_{n}" for n in names],
                 f"a candidate file (spec.bias={case.spec.bias})")
    shapes = {n: p.shape for n, p in zip(PARAM_NAMES, case.params) if p is not None}
    shapes["h0"] = case.dh0.shape
    grads = {}
    for key, arr in arrays.items():
        if key == "loss":
            continue
        n = key[len("grad_"):]
        grads[n] = _float(path, key, arr, shapes[n])
    loss = _scalar(path, "loss", arrays["loss"]) if "loss" in arrays else None
    floats = [a.dtype for a in grads.values() if a.dtype.kind == "f"]
    dtype = min(floats, key=lambda d: d.itemsize) if floats else np.dtype(np.float64)
    return CandidateFile({k: v.astype(np.float64) for k, v in grads.items()}, loss, dtype)
