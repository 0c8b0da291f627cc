"""Data for training: the tutorial's sine task, CSV series, scaling, and windows.

Size letters: N values in a series, C columns, T window length, B windows, D input features per
step, O outputs (the target columns).

A series is cut into windows of T consecutive rows; window i (rows i .. i+T-1) predicts the
target columns of row i+T (many-to-one, next value). Two ways to feed a window to the model:

- "position" (the tutorial's): one column only; step t gets the one-hot position vector scaled by
  the value, x_t = v_t e_t, so D = T and column t of U is the weight of step t.
- "steps" (the usual one, and the only one for several columns): step t gets the row of the
  series, x_t = (v_t^1, ..., v_t^C), so D = C.

The split is chronological: the first windows train, the last ones validate, and the scaling is
fitted on the rows the training windows touch only.
"""
from __future__ import annotations

import csv
import math
from typing import NamedTuple

import numpy as np

INPUTS = ("position", "steps")
SCALINGS = ("maxabs", "minmax", "none")


class Series(NamedTuple):
    """A multivariate series and where it came from."""

    values: np.ndarray   # (N, C) float64
    columns: tuple       # C column names
    source: str          # "sine" or the CSV path


class Scaler(NamedTuple):
    """scaled = (value - center) / scale, per column. `scale` is the tutorial's `max_val`."""

    center: np.ndarray   # (C,)
    scale: np.ndarray    # (C,)

    def transform(self, values):
        """values (..., C) -> scaled (..., C)."""
        return (values - self.center) / self.scale

    def inverse(self, scaled, cols=None):
        """scaled (..., C) (or (..., len(cols)) for the columns `cols`) -> data units."""
        if cols is None:
            return scaled * self.scale + self.center
        cols = list(cols)
        return scaled * self.scale[cols] + self.center[cols]


class Windows(NamedTuple):
    """Model-ready windows (scaled)."""

    xs: np.ndarray       # (B, T, D)
    ys: np.ndarray       # (B, O)
    rows: np.ndarray     # (B,) the row of the series each window predicts


class Dataset(NamedTuple):
    """A chronologically split, scaled task."""

    series: Series
    scaler: Scaler
    inputs: str          # "position" | "steps"
    window: int          # T
    target_cols: tuple   # indices of the target columns (O of them)
    train: Windows
    val: Windows


def sine_series(n: int = 200) -> Series:
    """The tutorial's data: sin(k) for k = 0 .. n-1, one column."""
    return Series(np.sin(np.arange(n, dtype=np.float64))[:, None], ("sin",), "sine")


def load_csv(path: str, columns=None) -> Series:
    """Read a CSV file with a header row; keep `columns` (all numeric columns when None).

    Raises ValueError naming the file, column and line for a missing column, a non-numeric,
    missing or non-finite value, or a file with fewer than two data rows.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ValueError(f"cannot read the CSV file {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text CSV file") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed CSV ({exc})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]   # blank lines are not data
    if len(rows) < 3:
        raise ValueError(f"{path}: expected a header row and at least 2 data rows, "
                         f"got {len(rows)} non-empty line(s)")
    header = [h.strip() for h in rows[0]]
    if columns is None:
        columns = [h for h in header if _numeric_column(rows[1:], header.index(h))]
        if not columns:
            raise ValueError(f"{path}: no numeric column found (columns: {', '.join(header)})")
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: no column named {', '.join(map(repr, missing))}; "
                         f"the columns are {', '.join(map(repr, header))}")
    index = [header.index(c) for c in columns]
    values = np.empty((len(rows) - 1, len(columns)))
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ValueError(f"{path}, line {i + 2}: expected {len(header)} fields like the "
                             f"header, got {len(row)}")
        for j, (name, k) in enumerate(zip(columns, index)):
            values[i, j] = _number(row[k], path, name, i + 2)
    return Series(values, tuple(columns), str(path))


def _numeric_column(rows, k: int) -> bool:
    try:
        for row in rows:
            float(row[k])
        return True
    except (ValueError, IndexError):
        return False


def _number(text: str, path, column: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}, line {line}: column {column!r} must be numeric, "
                         f"got {text.strip()!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}, line {line}: column {column!r} must be finite, got {text.strip()!r}")
    return value


def fit_scaler(values, method: str = "maxabs") -> Scaler:
    """Fit on `values` (N, C), the training rows only.

    "maxabs": divide by max|v| (the tutorial's `max_val`), "minmax": map [min, max] to [-1, 1],
    "none": identity. A constant column cannot be scaled (or learned from): ValueError.
    """
    if method not in SCALINGS:
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {method!r}")
    C = values.shape[1]
    if method == "none":
        return Scaler(np.zeros(C), np.ones(C))
    lo, hi = values.min(axis=0), values.max(axis=0)
    if method == "maxabs":
        center, scale = np.zeros(C), np.maximum(np.abs(lo), np.abs(hi))
    else:
        center, scale = (hi + lo) / 2, (hi - lo) / 2
    return Scaler(center, scale)


def check_columns(series: Series, rows: int) -> None:
    """A column that is constant over the first `rows` rows carries nothing to learn from."""
    part = series.values[:rows]
    for j, name in enumerate(series.columns):
        if np.all(part[:, j] == part[0, j]):
            raise ValueError(f"column {name!r} is constant ({part[0, j]:g}) over the first {rows} "
                             "rows (the training part): nothing to learn from or to scale")


def make_windows(scaled, window: int, inputs: str, target_cols, first: int, count: int) -> Windows:
    """Windows first .. first+count-1 of `scaled` (N, C): rows i..i+T-1 predict row i+T."""
    T = window
    idx = np.arange(first, first + count)
    steps = scaled[idx[:, None] + np.arange(T)]              # (B, T, C)
    if inputs == "position":
        xs = steps[:, :, 0, None] * np.eye(T)                # x_t = v_t e_t, (B, T, T)
    else:
        xs = steps                                           # x_t = row t, (B, T, C)
    ys = scaled[idx + T][:, list(target_cols)]               # (B, O)
    return Windows(np.ascontiguousarray(xs), ys, idx + T)


def build_dataset(series: Series, window: int, inputs: str, targets=None,
                  val_fraction: float = 1 / 3, scaling: str = "maxabs") -> Dataset:
    """Split `series` chronologically into training and validation windows, scale, and window.

    targets: column names to predict (default: the first column). The last
    round(val_fraction * number of windows) windows validate (at least 1).
    """
    N, C = series.values.shape
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    if inputs == "position" and C != 1:
        raise ValueError(f"the position input takes one column (D = T); got {C} columns "
                         f"{list(series.columns)}: use --input steps for several columns")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    n_windows = N - window
    if n_windows < 2:
        raise ValueError(f"window {window} is too long for a series of {N} rows: it needs at "
                         f"least {window + 2} rows (one training and one validation window)")
    n_val = min(max(1, round(val_fraction * n_windows)), n_windows - 1)
    n_train = n_windows - n_val
    targets = [series.columns[0]] if targets is None else list(targets)
    missing = [t for t in targets if t not in series.columns]
    if missing or not targets:
        raise ValueError(f"target(s) {missing or targets} must be among the columns "
                         f"{list(series.columns)}")
    target_cols = tuple(series.columns.index(t) for t in targets)
    train_rows = n_train + window                            # rows the training windows touch
    check_columns(series, train_rows)
    scaler = fit_scaler(series.values[:train_rows], scaling)
    scaled = scaler.transform(series.values)
    return Dataset(series, scaler, inputs, window, target_cols,
                   make_windows(scaled, window, inputs, target_cols, 0, n_train),
                   make_windows(scaled, window, inputs, target_cols, n_train, n_val))


def tutorial_dataset() -> Dataset:
    """The tutorial's task: sin(0..199), windows of 50, 100 training and 50 validation windows."""
    return build_dataset(sine_series(200), 50, "position", None, val_fraction=1 / 3)
