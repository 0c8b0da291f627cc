"""Case files and candidate files: the language-neutral oracle on disk (`.npz` or `.json`).

Size letters: B batch, T time steps, D inputs, H hidden units, O outputs (O = H without an output
head), G gate blocks (3 GRU, 4 LSTM).

A **case file** holds one problem and its reference answers:

    U (H, D)  W (H, H)  b (H,)                         the Elman cell (spec.cell = "elman"), or
    W_ih (G H, D)  W_hh (G H, H)  b_ih, b_hh (G H,)    the GRU and the LSTM (PyTorch's layout)
    V (O, H)  c (O,)                                   the output head (absent with head=False)
                                                       (biases absent when spec.bias is False)
    xs (B, T, D)  ys (B, O) | (B, T, O) | (B,) | (B, T) int for cross-entropy
    h0 (B, H)  c0 (B, H)                               absent when zero; c0 for the LSTM only
    spec                                               JSON text (.npz) or object (.json), Spec.to_dict()
    loss ()  grad_<each parameter>  grad_h0 (B, H)  grad_c0 (B, H) (LSTM)  grad_xs (B, T, D)

A **candidate file** holds an implementation's answers on that case: `grad_<each parameter>`
required; `grad_h0`, `grad_c0`, `grad_xs` and `loss` optional (checked when present).

`.npz` files are read by handgrad._files.read_npz, which checks every member's name and declared
size before decompressing anything and every `.npy` header (no object arrays, no size other than
the member declares) before allocating; files larger than its limit (handgrad._files.MAX_FILE_BYTES, 256 MiB;
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
from .params import GatedParams, Params, param_names, params_type
from .spec import Spec

# every name a case or candidate file of any spec may hold: an .npz's member names are checked
# against these before anything is decompressed (read_case / read_candidate then check the names
# the file's own spec allows)
_ANY_PARAM = tuple(dict.fromkeys((*Params._fields, *GatedParams._fields)))
FILE_NAMES = frozenset({*_ANY_PARAM, "xs", "ys", "h0", "c0", "spec", "loss",
                        *(f"grad_{n}" for n in (*_ANY_PARAM, "h0", "c0", "xs"))})


def state_names(spec) -> tuple:
    """The initial-state arrays of `spec`: ("h0",), or ("h0", "c0") for the LSTM."""
    return ("h0", "c0") if spec.cell == "lstm" else ("h0",)


def as_pair(state, spec) -> dict:
    """An initial state (or its gradient) by name: {"h0": ...} or {"h0": ..., "c0": ...}."""
    if state is None:
        return {}
    return dict(zip(state_names(spec), state if spec.cell == "lstm" else (state,)))


class CaseFile(NamedTuple):
    """A problem and its reference answers (everything float64, ys int for cross-entropy)."""

    spec: Spec
    params: object              # Params (Elman) or GatedParams (GRU, LSTM)
    xs: np.ndarray              # (B, T, D)
    ys: np.ndarray              # (B, O) | (B, T, O) | (B,) | (B, T)
    h0: Optional[object]        # (B, H), the LSTM's pair (h_0, c_0), or None (zeros)
    loss: float
    grads: object               # reference gradients, the type and shapes of params
    dh0: object                 # (B, H) reference gradient of h0; the pair for the LSTM
    dxs: np.ndarray             # (B, T, D) reference gradient of the inputs

    def expected_arrays(self) -> dict:
        """Every reference gradient by name: the parameters', h0 (c0), xs."""
        return {**self.grads.arrays(), **as_pair(self.dh0, self.spec), "xs": self.dxs}


class CandidateFile(NamedTuple):
    """An implementation's answers: `grads` maps parameter names (and h0, c0, xs) to arrays."""

    grads: dict
    loss: Optional[float]
    dtype: np.dtype             # the lowest precision of its arrays
    dtypes: Optional[dict] = None   # name -> the dtype each array was stored in (judges it)


# ---------------------------------------------------------------- building and writing


def case_from_arrays(spec: Spec, params, xs, ys, h0=None) -> CaseFile:
    """Validate a problem and attach its reference loss and gradients (hand BPTT)."""
    params, xs, ys, h0, spec = check_inputs(params, xs, ys, spec, h0)
    loss, grads, dh0, dxs = loss_and_grads(params, xs, ys, spec, h0=h0, wrt_h0=True, wrt_xs=True)
    return CaseFile(spec, params, xs, ys, h0, float(loss), grads, dh0, dxs)


def case_arrays(case: CaseFile) -> dict:
    """The named arrays of a case file (what `write_case` stores)."""
    out = dict(case.params.arrays())
    out["xs"], out["ys"] = case.xs, case.ys
    for name, state in as_pair(case.h0, case.spec).items():
        if np.any(state != 0):
            out[name] = state
    out["loss"] = np.float64(case.loss)
    for name, g in case.expected_arrays().items():
        out[f"grad_{name}"] = g
    return out


def candidate_arrays(loss, grads, dh0=None, dxs=None) -> dict:
    """The named arrays of a candidate file. grads: a Params, GatedParams or mapping of arrays;
    dh0: (B, H), or the LSTM's pair (dh_0, dc_0)."""
    items = grads.arrays() if hasattr(grads, "arrays") else dict(grads)
    out = {f"grad_{k}": np.asarray(v) for k, v in items.items() if v is not None}
    if isinstance(dh0, (tuple, list)):
        out.update({f"grad_{n}": np.asarray(v) for n, v in zip(("h0", "c0"), dh0) if v is not None})
    elif dh0 is not None:
        out["grad_h0"] = np.asarray(dh0)
    if dxs is not None:
        out["grad_xs"] = np.asarray(dxs)
    if loss is not None:
        out["loss"] = np.asarray(loss)
    return out


def write_case(path, case: CaseFile, exclusive: bool = False) -> Path:
    """Write `case` to `path` (.npz or .json by suffix), atomically; with `exclusive`, fail
    (ValueError) rather than replace a file that exists by then (another run's)."""
    arrays = case_arrays(case)
    return _write(path, arrays, spec=case.spec.to_dict(), exclusive=exclusive)


def write_candidate(path, loss, grads, dh0=None, dxs=None) -> Path:
    """Write an implementation's answers to `path` (.npz or .json by suffix), atomically."""
    return _write(path, candidate_arrays(loss, grads, dh0, dxs), spec=None)


def _suffix(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in (".npz", ".json"):
        raise ValueError(f"{path}: file name must end in .npz or .json, got {suffix or 'no suffix'!r}")
    return suffix


def _write(path, arrays: dict, spec, exclusive: bool = False) -> Path:
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
    write_bytes_atomic(path, data, exclusive=exclusive)
    return path


# ---------------------------------------------------------------- reading raw names


def _read_raw(path) -> tuple[dict, object]:
    """{name: np.ndarray} and the raw spec entry (None when absent) of a .npz or .json file.

    Both go through handgrad._files: regular files only, at most the file limit (256 MiB,
    raised by HANDGRAD_MAX_FILE_MB); an .npz has its member names (any of FILE_NAMES) and
    declared sizes checked before anything is decompressed.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".npz":
        arrays = read_npz(path, FILE_NAMES)
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
    names = param_names(spec)
    states = state_names(spec)
    gradients = tuple(f"grad_{n}" for n in (*names, *states, "xs"))
    allowed = {*names, "xs", "ys", *states, "loss", *gradients}
    required = (*names, "xs", "ys", "loss", *gradients)
    _check_names(path, arrays, allowed, required,
                 f"a case file (cell={spec.cell}, bias={spec.bias}, head={spec.head})")
    floats = {n: _float(path, n, arrays[n]) for n in arrays if n != "ys"}
    ys = arrays["ys"]
    if spec.loss == "cross_entropy":
        if ys.dtype.kind not in "iu":
            raise ValueError(f"{path}: 'ys' must hold integer class ids for cross-entropy, "
                             f"got dtype {ys.dtype}")
    else:
        ys = _float(path, "ys", ys)
    params = params_type(spec)(**{n: floats.get(n) for n in names})
    h0 = None
    if any(n in floats for n in states):
        h0 = tuple(floats.get(n) for n in states) if spec.cell == "lstm" else floats["h0"]
        if spec.cell == "lstm" and len(h0) == 2 and h0[0] is None:   # c0 alone: h0 is zero
            h0 = (np.zeros_like(h0[1]), h0[1])
    try:
        params, xs, ys, h0, spec = check_inputs(params, floats["xs"], ys, spec, h0)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    B, T, D = xs.shape
    H = params.sizes[1]
    grads = type(params)(**{n: _float(path, f"grad_{n}", floats[f"grad_{n}"],
                                      getattr(params, n).shape).astype(np.float64)
                            for n in names})
    dstate = tuple(_float(path, f"grad_{n}", floats[f"grad_{n}"], (B, H)).astype(np.float64)
                   for n in states)
    dh0 = dstate if spec.cell == "lstm" else dstate[0]
    dxs = _float(path, "grad_xs", floats["grad_xs"], (B, T, D)).astype(np.float64)
    loss = _scalar(path, "loss", floats["loss"])
    return CaseFile(spec, params, xs, ys, h0, loss, grads, dh0, dxs)


def verify_case(path, case: CaseFile, rtol: float) -> None:
    """Check the stored reference answers against the hand BPTT on the stored inputs."""
    from .tolerances import rel_error
    fresh = case_from_arrays(case.spec, case.params, case.xs, case.ys, case.h0)
    pairs = [("loss", case.loss, fresh.loss)]
    stored = case.expected_arrays()
    pairs += [(f"grad_{n}", stored[n], e) for n, e in fresh.expected_arrays().items()]
    for name, stored_value, expected in pairs:
        err = rel_error(stored_value, expected)
        if err > rtol:
            raise ValueError(f"{path}: the stored reference {name} does not match the case's "
                             f"inputs (relative error {err:.2e}); regenerate it with `handgrad case`")


def read_candidate(path, case: CaseFile) -> CandidateFile:
    """Read a candidate's answers and check their names and shapes against `case`."""
    arrays, raw_spec = _read_raw(path)
    if raw_spec is not None:
        raise ValueError(f"{path}: unknown name 'spec' in a candidate file (it belongs in the case file)")
    names = param_names(case.spec)
    optional = (*state_names(case.spec), "xs")
    allowed = {"loss", *(f"grad_{n}" for n in (*names, *optional))}
    _check_names(path, arrays, allowed, [f"grad_{n}" for n in names],
                 f"a candidate file (cell={case.spec.cell}, bias={case.spec.bias}, "
                 f"head={case.spec.head})")
    shapes = {n: a.shape for n, a in case.expected_arrays().items()}
    grads = {}
    for key, arr in arrays.items():
        if key == "loss":
            continue
        n = key[len("grad_"):]
        grads[n] = _float(path, key, arr, shapes[n])
    loss = _scalar(path, "loss", arrays["loss"]) if "loss" in arrays else None
    floats = [a.dtype for a in grads.values() if a.dtype.kind == "f"]
    dtype = min(floats, key=lambda d: d.itemsize) if floats else np.dtype(np.float64)
    dtypes = {k: v.dtype if v.dtype.kind == "f" else np.dtype(np.float64) for k, v in grads.items()}
    return CandidateFile({k: v.astype(np.float64) for k, v in grads.items()}, loss, dtype, dtypes)
